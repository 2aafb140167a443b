//! `balcaoctl user`: the logic against the pretend machine (passwords asked
//! twice on a terminal, read from input in scripts, never on a command
//! line; reserved and bad names, short passwords; the list from prosody's
//! storage names), and the binary itself with a stand-in prosodyctl on PATH
//! that records its arguments and standard input.

#[path = "jitsi_steps_support.rs"]
mod support;

use std::collections::VecDeque;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

use balcao::appliance::users::{self, UserAction};
use balcao::appliance::wizard::Terminal;
use balcao::appliance::{Lang, Root};
use support::*;

/// A terminal that answers from a script and keeps what was shown.
struct Script {
    lines: VecDeque<String>,
    shown: String,
    secrets_asked: usize,
}

impl Script {
    fn new(lines: &[&str]) -> Script {
        Script {
            lines: lines.iter().map(|s| s.to_string()).collect(),
            shown: String::new(),
            secrets_asked: 0,
        }
    }
}

impl Terminal for Script {
    fn say(&mut self, text: &str) -> std::io::Result<()> {
        self.shown.push_str(text);
        Ok(())
    }
    fn read_line(&mut self) -> std::io::Result<Option<String>> {
        Ok(self.lines.pop_front())
    }
    fn read_secret(&mut self, prompt: &str) -> std::io::Result<Option<String>> {
        self.secrets_asked += 1;
        self.shown.push_str(prompt);
        Ok(self.lines.pop_front())
    }
}

fn appliance(language: &str) -> (tempfile::TempDir, Root) {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "/etc/balcao/setup.toml",
        &format!(
            "domain = \"{DOMAIN}\"\nlanguage = \"{language}\"\n[admin]\nuser = \"atendimento\"\n"
        ),
    );
    let root = Root::new(dir.path());
    (dir, root)
}

fn add(user: &str) -> UserAction {
    UserAction::Add { user: user.into() }
}

#[test]
fn add_asks_twice_on_a_terminal_and_passes_the_password_on_stdin() {
    let (dir, root) = appliance("pt-BR");
    let machine = Machine::new(dir.path());
    // A short one, a mismatch, then a good one.
    let mut term = Script::new(&[
        "curta",
        "senha-boa-123",
        "senha-boa-124",
        "senha-boa-123",
        "senha-boa-123",
    ]);
    let said = users::run(&root, &add("maria.silva"), &machine, &mut term, true).unwrap();
    assert_eq!(said, format!("Conta criada: maria.silva@{DOMAIN}.\n"));
    assert_eq!(term.secrets_asked, 5);
    assert!(
        term.shown.contains("pelo menos 10 caracteres"),
        "{}",
        term.shown
    );
    assert!(term.shown.contains("diferentes"), "{}", term.shown);
    assert!(!term.shown.contains("senha-boa"), "{}", term.shown);

    let config = root
        .path("/etc/prosody/prosody.cfg.lua")
        .display()
        .to_string();
    let line = format!("prosodyctl --config {config} adduser maria.silva@{DOMAIN}");
    assert_eq!(machine.commands(), std::slice::from_ref(&line));
    assert_eq!(machine.stdin_of(&line), ["senha-boa-123\nsenha-boa-123\n"]);

    // It exists now: a second add is refused before any password is asked.
    let mut term = Script::new(&[]);
    let err = users::run(&root, &add("maria.silva"), &machine, &mut term, true).unwrap_err();
    assert!(err.message(Lang::Pt).contains("já existe"), "{err}");
    assert!(err.message(Lang::En).contains("already exists"));
    assert_eq!(term.secrets_asked, 0);
}

#[test]
fn scripts_give_the_password_on_input() {
    let (dir, root) = appliance("pt-BR");
    let machine = Machine::new(dir.path());
    let mut term = Script::new(&["senha-de-script-1"]);
    users::run(&root, &add("joao"), &machine, &mut term, false).unwrap();
    assert_eq!(
        machine.stdin_of("prosodyctl"),
        ["senha-de-script-1\nsenha-de-script-1\n"]
    );
    // A second line must repeat the first.
    let mut term = Script::new(&["senha-de-script-1", "outra-senha-2"]);
    let err = users::run(
        &root,
        &UserAction::Passwd {
            user: "joao".into(),
        },
        &machine,
        &mut term,
        false,
    )
    .unwrap_err();
    assert!(err.to_string().contains("diferentes"), "{err}");
    let mut term = Script::new(&[]);
    let err = users::run(&root, &add("ana"), &machine, &mut term, false).unwrap_err();
    assert!(err.to_string().contains("entrada terminou"), "{err}");
    for line in machine.commands() {
        assert!(!line.contains("senha"), "{line}");
    }
}

#[test]
fn reserved_and_bad_names_are_refused_in_the_appliance_language() {
    let (dir, root) = appliance("en");
    let machine = Machine::new(dir.path());
    for (name, words) in [
        ("focus", "reserved"),
        ("jvb", "reserved"),
        ("recorder", "reserved"),
        ("Maria Silva", "not a valid user name"),
        ("a@b", "not a valid user name"),
    ] {
        let mut term = Script::new(&["senha-boa-123", "senha-boa-123"]);
        let err = users::run(&root, &add(name), &machine, &mut term, true).unwrap_err();
        let (_, lang) = users::appliance_domain(&root).unwrap();
        assert_eq!(lang, Lang::En);
        assert!(
            err.message(lang).contains(words),
            "{name}: {}",
            err.message(lang)
        );
    }
    assert!(machine.commands().is_empty());
}

#[test]
fn list_passwd_and_remove() {
    let (dir, root) = appliance("pt-BR");
    let machine = Machine::new(dir.path());
    let mut term = Script::new(&[]);
    let empty = users::run(&root, &UserAction::List, &machine, &mut term, false).unwrap();
    assert!(empty.contains("Nenhuma conta"), "{empty}");

    // Accounts as prosody stores them (every non-alphanumeric byte as %xx).
    let accounts = "/var/lib/prosody/balcao%2etjxx%2ejus%2ebr/accounts";
    write(
        dir.path(),
        &format!("{accounts}/maria%2esilva.dat"),
        "return {};",
    );
    write(
        dir.path(),
        &format!("{accounts}/ana%2dpaula.dat"),
        "return {};",
    );
    write(
        dir.path(),
        &format!("{accounts}/atendimento.dat"),
        "return {};",
    );
    let listed = users::run(&root, &UserAction::List, &machine, &mut term, false).unwrap();
    assert_eq!(listed, "ana-paula\natendimento\nmaria.silva\n");

    let missing = users::run(
        &root,
        &UserAction::Passwd {
            user: "pedro".into(),
        },
        &machine,
        &mut term,
        false,
    )
    .unwrap_err();
    assert!(missing.to_string().contains("não existe"), "{missing}");

    let mut term = Script::new(&["troca-de-senha-1"]);
    users::run(
        &root,
        &UserAction::Passwd {
            user: "ana-paula".into(),
        },
        &machine,
        &mut term,
        false,
    )
    .unwrap();
    users::run(
        &root,
        &UserAction::Remove {
            user: "maria.silva".into(),
        },
        &machine,
        &mut term,
        false,
    )
    .unwrap();
    let config = root
        .path("/etc/prosody/prosody.cfg.lua")
        .display()
        .to_string();
    assert_eq!(
        machine.commands(),
        [
            format!("prosodyctl --config {config} passwd ana-paula@{DOMAIN}"),
            format!("prosodyctl --config {config} deluser maria.silva@{DOMAIN}"),
        ]
    );
    let listed = users::run(&root, &UserAction::List, &machine, &mut term, false).unwrap();
    assert_eq!(listed, "ana-paula\natendimento\n");
}

#[test]
fn no_domain_yet_says_to_run_firstboot() {
    let dir = tempfile::tempdir().unwrap();
    let root = Root::new(dir.path());
    let machine = Machine::new(dir.path());
    let mut term = Script::new(&[]);
    let err = users::run(&root, &UserAction::List, &machine, &mut term, false).unwrap_err();
    assert!(err.to_string().contains("balcaoctl firstboot"), "{err}");
}

const PROSODYCTL_STUB: &str = r#"#!/bin/sh
# Stand-in prosodyctl: records its arguments and its standard input.
echo "prosodyctl $*" >> "$STUB_LOG"
cat >> "$STUB_LOG"
"#;

#[test]
fn the_binary_reads_the_password_from_input_and_never_takes_it_as_an_argument() {
    let (dir, _root) = appliance("pt-BR");
    let stubs = dir.path().join("stubs");
    std::fs::create_dir_all(&stubs).unwrap();
    let stub = stubs.join("prosodyctl");
    std::fs::write(&stub, PROSODYCTL_STUB).unwrap();
    std::fs::set_permissions(&stub, std::fs::Permissions::from_mode(0o755)).unwrap();
    let log = dir.path().join("calls.log");
    let path = format!(
        "{}:{}",
        stubs.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let balcaoctl = |args: &[&str], input: &str| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_balcaoctl"))
            .args(args)
            .arg("--root")
            .arg(dir.path())
            .env("PATH", &path)
            .env("STUB_LOG", &log)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };

    let out = balcaoctl(&["user", "add", "maria.silva"], "uma-senha-longa\n");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("Conta criada"));
    let calls = std::fs::read_to_string(&log).unwrap();
    let first = calls.lines().next().unwrap();
    assert!(
        first.ends_with(&format!("adduser maria.silva@{DOMAIN}")),
        "{calls}"
    );
    assert!(!first.contains("uma-senha"), "{calls}");
    assert!(
        calls.contains("uma-senha-longa\numa-senha-longa\n"),
        "{calls}"
    );

    let out = balcaoctl(&["user", "add", "jvb"], "uma-senha-longa\n");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("erro:") && err.contains("reservado"), "{err}");

    let out = balcaoctl(&["user", "add", "pedro"], "curta\n");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("10 caracteres"));

    let out = balcaoctl(&["user", "list"], "");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("Nenhuma conta"));
}
