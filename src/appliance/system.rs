//! The one seam between first boot and the running system: every external
//! program (hostnamectl, ufw, ssh-keygen, systemctl, vmtoolsd) runs through a
//! [`System`]. On the appliance that is [`RealSystem`], which hands the command
//! to [`Cmd`]; tests use [`FakeSystem`], which records each command line and
//! answers with canned output.

use std::collections::VecDeque;
use std::sync::Mutex;

use crate::command::{Cmd, CommandError, Output};

pub trait System: Sync {
    /// Runs the command (or pretends to) and returns what it printed.
    fn run(&self, cmd: &Cmd) -> Result<Output, CommandError>;

    /// Whether `program` can be run here.
    fn has_program(&self, program: &str) -> bool;

    /// Seconds since the epoch at which this machine booted; `None` when unknown.
    fn boot_time(&self) -> Option<u64>;
}

/// The running machine.
pub struct RealSystem;

impl System for RealSystem {
    fn run(&self, cmd: &Cmd) -> Result<Output, CommandError> {
        cmd.run()
    }

    fn has_program(&self, program: &str) -> bool {
        crate::command::find_program(program).is_some()
    }

    fn boot_time(&self) -> Option<u64> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        stat.lines()
            .find_map(|line| line.strip_prefix("btime "))
            .and_then(|value| value.trim().parse().ok())
    }
}

/// A pretend machine for tests: records command lines, answers from a script.
#[derive(Default)]
pub struct FakeSystem {
    /// Every command line run, in order.
    pub log: Mutex<Vec<String>>,
    /// (prefix of the command line, stdout, success) tried in order; the first
    /// matching entry answers, and is used up when `once` is set.
    replies: Mutex<VecDeque<Reply>>,
    pub boot_time: Option<u64>,
    /// Programs reported missing by `has_program`.
    pub missing: Vec<String>,
}

struct Reply {
    prefix: String,
    stdout: String,
    ok: bool,
    once: bool,
}

impl FakeSystem {
    pub fn new() -> FakeSystem {
        FakeSystem::default()
    }

    /// A machine where these programs are not installed.
    pub fn without(programs: &[&str]) -> FakeSystem {
        FakeSystem {
            missing: programs.iter().map(|p| p.to_string()).collect(),
            ..FakeSystem::default()
        }
    }

    /// Commands starting with `prefix` print `stdout` and succeed (or fail).
    pub fn reply(&self, prefix: &str, stdout: &str, ok: bool) {
        self.push(prefix, stdout, ok, false);
    }

    /// Like [`FakeSystem::reply`] but answers one command only, before the
    /// lasting replies.
    pub fn reply_once(&self, prefix: &str, stdout: &str, ok: bool) {
        self.push(prefix, stdout, ok, true);
    }

    fn push(&self, prefix: &str, stdout: &str, ok: bool, once: bool) {
        let reply = Reply {
            prefix: prefix.to_owned(),
            stdout: stdout.to_owned(),
            ok,
            once,
        };
        let mut replies = self.replies.lock().unwrap();
        if once {
            replies.push_front(reply);
        } else {
            replies.push_back(reply);
        }
    }

    pub fn commands(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

impl System for FakeSystem {
    fn run(&self, cmd: &Cmd) -> Result<Output, CommandError> {
        let line = cmd.display();
        self.log.lock().unwrap().push(line.clone());
        let mut replies = self.replies.lock().unwrap();
        let found = replies.iter().position(|r| line.starts_with(&r.prefix));
        let (stdout, ok) = match found {
            Some(i) => {
                let (stdout, ok) = (replies[i].stdout.clone(), replies[i].ok);
                if replies[i].once {
                    replies.remove(i);
                }
                (stdout, ok)
            }
            None => (String::new(), true),
        };
        if ok {
            Ok(Output {
                stdout: stdout.into_bytes(),
                stderr: Vec::new(),
            })
        } else {
            // A real failed status, so the error reads like the real one.
            let status = std::process::Command::new("false")
                .status()
                .map_err(|source| CommandError::Spawn {
                    command: line.clone(),
                    source,
                })?;
            Err(CommandError::Failed {
                command: line,
                status,
                output: stdout,
            })
        }
    }

    fn has_program(&self, program: &str) -> bool {
        !self.missing.iter().any(|m| m == program)
    }

    fn boot_time(&self) -> Option<u64> {
        self.boot_time
    }
}
