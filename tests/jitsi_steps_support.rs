//! Shared by the jitsi_steps* tests: a pretend appliance ([`Machine`]) that
//! answers the commands the Jitsi steps run the way the real tools would
//! (a debconf database fed on standard input, apt and dpkg marking packages
//! installed, prosodyctl creating account files, services answering or not),
//! and records every command line with its standard input; plus the files
//! Jitsi's packages generate for a domain, rendered from Jitsi's real
//! templates (shared/jitsi/upstream/, found through BALCAO_SHARED).
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::Mutex;

use balcao::appliance::setup::{Answers, Setup};
use balcao::appliance::state::State;
use balcao::appliance::steps::jitsi_common::{DPKG_STATUS, JITSI_PACKAGES, LOCAL_INDEX};
use balcao::appliance::steps::Context;
use balcao::appliance::{Root, System};
use balcao::command::{require_tools, Cmd, CommandError, HostTool, Output};

pub const DOMAIN: &str = "balcao.tjxx.jus.br";
pub const PASSWORD: &str = "senha-muito-boa";
pub const LOCAL_IP: &str = "10.0.0.5";

/// What the pretend machine does and remembers.
#[derive(Default)]
pub struct Machine {
    pub root: PathBuf,
    /// (command line, standard input) of every command, in order.
    pub log: Mutex<Vec<(String, String)>>,
    pub debconf: Mutex<BTreeMap<String, String>>,
    /// Parts of command lines that fail, with what they print.
    pub failing: Mutex<Vec<(String, String)>>,
    /// Services whose health check fails for this many more rounds.
    pub unhealthy: Mutex<BTreeMap<String, usize>>,
    /// Packages `apt-get --simulate` reports besides Jitsi's.
    pub extra_installs: Mutex<Vec<String>>,
}

impl Machine {
    pub fn new(root: &Path) -> Machine {
        Machine {
            root: root.to_owned(),
            ..Machine::default()
        }
    }

    /// Commands whose line contains `needle` fail, printing `output`.
    pub fn fail(&self, needle: &str, output: &str) {
        self.failing
            .lock()
            .unwrap()
            .push((needle.to_owned(), output.to_owned()));
    }

    pub fn heal(&self) {
        self.failing.lock().unwrap().clear();
    }

    pub fn commands(&self) -> Vec<String> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .map(|(l, _)| l.clone())
            .collect()
    }

    pub fn stdin_of(&self, prefix: &str) -> Vec<String> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|(l, _)| l.starts_with(prefix))
            .map(|(_, s)| s.clone())
            .collect()
    }

    pub fn clear_log(&self) {
        self.log.lock().unwrap().clear();
    }

    /// Commands that change something (everything but reads and probes).
    pub fn changing_commands(&self) -> Vec<String> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|(line, input)| {
                !(line.starts_with("curl ")
                    || line == "hostname -I"
                    || (line == "debconf-communicate"
                        && input.lines().all(|l| l.starts_with("GET "))))
            })
            .map(|(l, _)| l.clone())
            .collect()
    }

    fn failed(line: &str, code: i32, output: &str) -> CommandError {
        CommandError::Failed {
            command: line.to_owned(),
            status: ExitStatus::from_raw(code << 8),
            output: output.to_owned(),
        }
    }

    fn debconf_communicate(&self, line: &str, input: &str) -> Result<String, CommandError> {
        let mut db = self.debconf.lock().unwrap();
        let mut out = String::new();
        for command in input.lines() {
            let mut words = command.splitn(3, ' ');
            match (words.next(), words.next(), words.next()) {
                (Some("GET"), Some(name), _) => match db.get(name) {
                    Some(value) => out.push_str(&format!("0 {value}\n")),
                    None => {
                        // The answer goes to stdout; what a failed command
                        // carries is stderr, here a warning as on a fresh VM.
                        return Err(Self::failed(
                            line,
                            10,
                            "perl: warning: Setting locale failed.",
                        ));
                    }
                },
                (Some("SET"), Some(name), value) => {
                    db.insert(name.to_owned(), value.unwrap_or("").trim().to_owned());
                    out.push_str("0 value set\n");
                }
                _ => return Err(Self::failed(line, 20, "20 unsupported command")),
            }
        }
        Ok(out)
    }

    fn install_jitsi(&self) {
        let status: String = JITSI_PACKAGES
            .iter()
            .map(|p| format!("Package: {p}\nStatus: install ok installed\nVersion: 2.0.0\n\n"))
            .collect();
        let path = self.root.join(DPKG_STATUS.trim_start_matches('/'));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, status).unwrap();
    }

    fn account_file(&self, jid: &str) -> PathBuf {
        let (user, host) = jid.split_once('@').unwrap();
        self.root
            .join("var/lib/prosody")
            .join(balcao::appliance::users::store_name(host))
            .join("accounts")
            .join(format!(
                "{}.dat",
                balcao::appliance::users::store_name(user)
            ))
    }
}

impl System for Machine {
    fn run(&self, cmd: &Cmd) -> Result<Output, CommandError> {
        let line = cmd.display();
        let input = String::from_utf8_lossy(cmd.stdin_bytes().unwrap_or_default()).into_owned();
        self.log.lock().unwrap().push((line.clone(), input.clone()));
        let ok = |text: &str| {
            Ok(Output {
                stdout: text.as_bytes().to_vec(),
                stderr: Vec::new(),
            })
        };
        if let Some((_, output)) = self
            .failing
            .lock()
            .unwrap()
            .iter()
            .find(|(needle, _)| line.contains(needle.as_str()))
        {
            return Err(Self::failed(&line, 100, output));
        }

        let words: Vec<&str> = line.split_whitespace().collect();
        match words[0] {
            "debconf-set-selections" => {
                let mut db = self.debconf.lock().unwrap();
                for l in input.lines() {
                    let parts: Vec<&str> = l.splitn(4, ' ').collect();
                    db.insert(parts[1].to_owned(), parts[3].to_owned());
                }
                ok("")
            }
            "debconf-communicate" => self.debconf_communicate(&line, &input).and_then(|o| ok(&o)),
            "sh" if words.contains(&"--simulate") => {
                let mut text = String::from("NOTE: This is only a simulation!\n");
                for p in JITSI_PACKAGES
                    .iter()
                    .map(|p| p.to_string())
                    .chain(self.extra_installs.lock().unwrap().iter().cloned())
                {
                    text.push_str(&format!("Inst {p} (2.0.0 local [all])\n"));
                }
                ok(&text)
            }
            "apt-get" if words.contains(&"install") => {
                self.install_jitsi();
                ok("")
            }
            "hostname" => ok(&format!("{LOCAL_IP} fe80::5054:ff:fe12:3456 \n")),
            "prosodyctl" => {
                let jid = words.last().unwrap();
                let file = self.account_file(jid);
                match words[words.len() - 2] {
                    "adduser" if file.exists() => {
                        Err(Self::failed(&line, 1, "That user already exists"))
                    }
                    "adduser" | "passwd" => {
                        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
                        std::fs::write(&file, "return { stored_key = \"x\" };\n").unwrap();
                        ok("")
                    }
                    "deluser" => {
                        std::fs::remove_file(&file).unwrap();
                        ok("")
                    }
                    other => panic!("unexpected prosodyctl {other}"),
                }
            }
            "curl" => {
                let service = if line.contains(":8080/") {
                    "jitsi-videobridge2"
                } else if line.contains(":8888/") {
                    "jicofo"
                } else if line.contains(":5280/") {
                    "prosody"
                } else {
                    "nginx"
                };
                let mut unhealthy = self.unhealthy.lock().unwrap();
                match unhealthy.get_mut(service) {
                    Some(rounds) if *rounds > 0 => {
                        *rounds -= 1;
                        Err(Self::failed(
                            &line,
                            7,
                            "curl: (7) Failed to connect to 127.0.0.1: Connection refused",
                        ))
                    }
                    _ => ok(""),
                }
            }
            "dpkg" | "systemctl" | "nginx" => ok(""),
            "apt-get" => ok(""),
            other => panic!("the pretend machine does not know `{other}` ({line})"),
        }
    }

    fn has_program(&self, _: &str) -> bool {
        true
    }

    fn boot_time(&self) -> Option<u64> {
        None
    }
}

pub fn setup_with(password: Option<&str>, public_ip: Option<&str>) -> Setup {
    let mut a = Answers::default();
    a.offer("domain", DOMAIN).unwrap();
    a.offer("email", "ti@tjxx.jus.br").unwrap();
    a.offer("admin.user", "atendimento").unwrap();
    if let Some(p) = password {
        a.offer("admin.password", p).unwrap();
    }
    if let Some(ip) = public_ip {
        a.offer("network.public_ip", ip).unwrap();
    }
    Setup::from_answers(&a).unwrap()
}

pub fn context<'a>(
    root: &'a Root,
    system: &'a dyn System,
    setup: &'a Setup,
    state: &'a State,
) -> Context<'a> {
    Context {
        root,
        system,
        setup,
        state,
    }
}

pub fn write(root: &Path, rel: &str, text: &str) {
    let path = root.join(rel.trim_start_matches('/'));
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

pub fn read(root: &Path, rel: &str) -> String {
    std::fs::read_to_string(root.join(rel.trim_start_matches('/'))).unwrap_or_default()
}

/// A root like the image: the local repository's index is there.
pub fn image_root() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let index: String = JITSI_PACKAGES
        .iter()
        .map(|p| format!("Package: {p}\nVersion: 2.0.0\nArchitecture: all\n\n"))
        .collect();
    write(dir.path(), LOCAL_INDEX, &index);
    dir
}

pub fn need_tools(tools: &[(&'static str, &'static str)]) {
    let list: Vec<HostTool> = tools
        .iter()
        .map(|(program, package)| HostTool { program, package })
        .collect();
    if let Err(missing) = require_tools(&list) {
        panic!("these tests need host tools: {missing}");
    }
}

pub fn upstream(file: &str) -> String {
    let shared = std::env::var_os("BALCAO_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared"));
    let path = shared.join("jitsi/upstream").join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {} (set BALCAO_SHARED to the folder holding jitsi/upstream/): {e}",
            path.display()
        )
    })
}

/// The files the packages generate for DOMAIN, from Jitsi's templates.
pub fn render_jitsi_files(root: &Path) {
    let host = upstream("prosody.cfg.lua-jvb.example")
        .replace("jitmeet.example.com", DOMAIN)
        .replace("focusUser", "focus")
        .replace("__turnSecret__", "turnSecretForTests");
    write(
        root,
        &format!("etc/prosody/conf.avail/{DOMAIN}.cfg.lua"),
        &host,
    );
    write(
        root,
        &format!("etc/jitsi/meet/{DOMAIN}-config.js"),
        &upstream("config.js").replace("jitsi-meet.example.com", DOMAIN),
    );
    write(
        root,
        "etc/jitsi/jicofo/jicofo.conf",
        &format!("jicofo {{\n  xmpp: {{\n    client: {{\n      xmpp-domain: \"{DOMAIN}\"\n      domain: \"auth.{DOMAIN}\"\n      username: \"focus\"\n      password: \"focusPasswordForTests\"\n    }}\n  }}\n}}\n"),
    );
    write(
        root,
        "etc/jitsi/videobridge/jvb.conf",
        "videobridge {\n    http-servers {\n        public {\n            port = 9090\n        }\n    }\n}\n",
    );
    write(
        root,
        &format!("etc/nginx/sites-available/{DOMAIN}.conf"),
        &upstream("jitsi-meet.example").replace("jitsi-meet.example.com", DOMAIN),
    );
}

/// The overlay's nginx include, as the image carries it.
pub fn overlay_units_conf() -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("overlays/appliance/etc/nginx/balcao/units.conf"),
    )
    .unwrap()
}

pub fn set_of(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}
