//! Running external tools: every program balcao calls (mmdebstrap, mkfs, qemu-img,
//! prosodyctl, ufw, ...) goes through [`Cmd`], which logs the command line at debug
//! level, captures its output, and turns a failure into an error that carries the
//! command line and the tail of what it printed.
//!
//! Secrets never travel on a command line: pass them with [`Cmd::stdin`], which is
//! neither logged nor kept in errors.

use std::ffi::{OsStr, OsString};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Mutex;

/// Processes started through [`Cmd`] and not yet finished, so that an
/// interrupted program can stop them before it exits.
static RUNNING: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// Stops every running child's process group: SIGTERM first (as a terminal's
/// Ctrl-C reaches a whole group), then SIGKILL for what is still there after
/// `patience`. mmdebstrap, for one, ignores SIGTERM while dpkg works inside
/// its chroot; the mounts it then leaves are for the caller to undo.
pub fn terminate_children(patience: std::time::Duration) {
    let pids: Vec<u32> = RUNNING.lock().map(|r| r.clone()).unwrap_or_default();
    let alive = |pids: &[u32]| {
        pids.iter()
            .any(|pid| Path::new(&format!("/proc/{pid}")).exists())
    };
    for signal in ["-TERM", "-KILL"] {
        for pid in &pids {
            let _ = Command::new("kill")
                .args([signal, "--", &format!("-{pid}")])
                .status();
        }
        let deadline = std::time::Instant::now() + patience;
        while std::time::Instant::now() < deadline && alive(&pids) {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        if !alive(&pids) {
            break;
        }
    }
}

/// Keeps a child's pid in [`RUNNING`] while it lives.
struct Registered(u32);

impl Registered {
    fn new(pid: u32) -> Registered {
        if let Ok(mut r) = RUNNING.lock() {
            r.push(pid);
        }
        Registered(pid)
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        if let Ok(mut r) = RUNNING.lock() {
            r.retain(|&p| p != self.0);
        }
    }
}

/// How many lines of a failed command's output an error keeps.
const ERROR_TAIL_LINES: usize = 25;

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("could not start `{command}`: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status}):\n{output}")]
    Failed {
        command: String,
        status: ExitStatus,
        output: String,
    },
}

/// One external command, built up and then run once.
#[derive(Debug, Clone)]
pub struct Cmd {
    program: OsString,
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
    dir: Option<PathBuf>,
    stdin: Option<Vec<u8>>,
}

/// What a command printed, once it has succeeded.
#[derive(Debug, Clone)]
pub struct Output {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Output {
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

impl Cmd {
    pub fn new(program: impl AsRef<OsStr>) -> Self {
        Cmd {
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            envs: Vec::new(),
            dir: None,
            stdin: None,
        }
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.envs
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.dir = Some(dir.as_ref().to_owned());
        self
    }

    /// Bytes written to the command's standard input. Never logged: this is the
    /// way to hand a password to a tool.
    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(bytes.into());
        self
    }

    /// What [`Cmd::stdin`] will feed the command, for test doubles that check
    /// a secret went there and not on the command line.
    pub fn stdin_bytes(&self) -> Option<&[u8]> {
        self.stdin.as_deref()
    }

    /// The command line as a person would type it, for logs and errors.
    pub fn display(&self) -> String {
        std::iter::once(&self.program)
            .chain(&self.args)
            .map(|part| shell_quote(&part.to_string_lossy()))
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn command(&self) -> Command {
        use std::os::unix::process::CommandExt;
        let mut command = Command::new(&self.program);
        command.args(&self.args);
        // Each tool leads its own process group, so that stopping it reaches
        // every process it started (see `terminate_children`).
        command.process_group(0);
        for (key, value) in &self.envs {
            command.env(key, value);
        }
        if let Some(dir) = &self.dir {
            command.current_dir(dir);
        }
        command
    }

    fn spawn_error(&self, source: std::io::Error) -> CommandError {
        CommandError::Spawn {
            command: self.display(),
            source,
        }
    }

    /// Runs the command to completion, capturing its output; a non-zero exit
    /// is an error carrying the tail of stderr (or stdout when stderr is empty).
    pub fn run(&self) -> Result<Output, CommandError> {
        tracing::debug!("$ {}", self.display());
        let mut command = self.command();
        command
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().map_err(|e| self.spawn_error(e))?;
        let _registered = Registered::new(child.id());

        // Feed stdin from a thread so a chatty child can't deadlock us.
        let feeder = match (self.stdin.clone(), child.stdin.take()) {
            (Some(bytes), Some(mut pipe)) => Some(std::thread::spawn(move || {
                let _ = pipe.write_all(&bytes);
            })),
            _ => None,
        };
        let output = child.wait_with_output().map_err(|e| self.spawn_error(e))?;
        if let Some(feeder) = feeder {
            let _ = feeder.join();
        }

        if output.status.success() {
            Ok(Output {
                stdout: output.stdout,
                stderr: output.stderr,
            })
        } else {
            let text = if output.stderr.iter().any(|b| !b.is_ascii_whitespace()) {
                &output.stderr
            } else {
                &output.stdout
            };
            Err(CommandError::Failed {
                command: self.display(),
                status: output.status,
                output: tail(&String::from_utf8_lossy(text), ERROR_TAIL_LINES),
            })
        }
    }

    /// Runs the command and hands each line of its standard error to `on_line`
    /// as it arrives (for progress on long stages). Standard output is
    /// discarded; a failure carries the last lines seen.
    pub fn run_streaming(&self, mut on_line: impl FnMut(&str)) -> Result<(), CommandError> {
        tracing::debug!("$ {}", self.display());
        let mut command = self.command();
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().map_err(|e| self.spawn_error(e))?;
        let _registered = Registered::new(child.id());
        let mut recent: std::collections::VecDeque<String> = Default::default();
        if let Some(stderr) = child.stderr.take() {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                on_line(&line);
                if recent.len() == ERROR_TAIL_LINES {
                    recent.pop_front();
                }
                recent.push_back(line);
            }
        }
        let status = child.wait().map_err(|e| self.spawn_error(e))?;
        if status.success() {
            Ok(())
        } else {
            Err(CommandError::Failed {
                command: self.display(),
                status,
                output: recent.into_iter().collect::<Vec<_>>().join("\n"),
            })
        }
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.trim_end().lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Quotes one word for a POSIX shell when it needs it.
pub fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b));
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// A program the build host must have, and the Debian package that brings it.
#[derive(Debug, Clone, Copy)]
pub struct HostTool {
    pub program: &'static str,
    pub package: &'static str,
}

#[derive(Debug, thiserror::Error)]
#[error(
    "missing tools on this machine: {}\ninstall them with:\n  apt-get install {}",
    .programs.join(", "),
    .packages.join(" ")
)]
pub struct MissingTools {
    pub programs: Vec<String>,
    pub packages: Vec<String>,
}

/// Checks that every tool is on PATH (or at its absolute path), and names all
/// the missing ones at once with the line that installs them.
pub fn require_tools(tools: &[HostTool]) -> Result<(), MissingTools> {
    let mut programs = Vec::new();
    let mut packages: Vec<String> = Vec::new();
    for tool in tools {
        if find_program(tool.program).is_none() {
            programs.push(tool.program.to_owned());
            if !packages.iter().any(|p| p == tool.package) {
                packages.push(tool.package.to_owned());
            }
        }
    }
    if programs.is_empty() {
        Ok(())
    } else {
        Err(MissingTools { programs, packages })
    }
}

/// Where `program` would be found: itself when it is a path, else the first
/// match on PATH (plus the sbin folders, which root's tools live in).
pub fn find_program(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        let path = PathBuf::from(program);
        return path.is_file().then_some(path);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_leaves_plain_words_alone() {
        assert_eq!(shell_quote("mkfs.ext4"), "mkfs.ext4");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn failure_carries_command_and_output() {
        let err = Cmd::new("sh")
            .args(["-c", "echo boom >&2; exit 3"])
            .run()
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("sh -c"), "{text}");
        assert!(text.contains("boom"), "{text}");
    }

    #[test]
    fn stdin_reaches_the_command() {
        let out = Cmd::new("cat").stdin("secret\n").run().unwrap();
        assert_eq!(out.stdout_text(), "secret\n");
    }

    #[test]
    fn missing_tools_are_listed_with_their_package() {
        let err = require_tools(&[
            HostTool {
                program: "sh",
                package: "dash",
            },
            HostTool {
                program: "no-such-tool-1",
                package: "pkg-a",
            },
            HostTool {
                program: "no-such-tool-2",
                package: "pkg-a",
            },
        ])
        .unwrap_err();
        assert_eq!(err.programs, ["no-such-tool-1", "no-such-tool-2"]);
        assert!(err.to_string().contains("apt-get install pkg-a"));
    }
}
