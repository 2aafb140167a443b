//! The Jitsi steps with the real tools wherever they can run on a test
//! machine without harm:
//!
//! - debconf-set-selections and debconf-communicate against a temporary
//!   debconf database (DEBCONF_SYSTEMRC pointing at a temporary
//!   debconf.conf laid out like Debian's);
//! - apt-get update and a simulated install against the STAND-IN Jitsi
//!   packages (tests/standin) in a flat local repository, with a temporary
//!   apt state and a made-up dpkg status holding every Debian dependency;
//! - `nginx -t` on a temporary tree holding Jitsi's site with the units
//!   include and the overlay's units.conf;
//! - prosodyctl for the first staff account and for `balcaoctl user`, with
//!   a temporary prosody configuration and data folder.
//!
//! Nothing is installed and no service is started: every command that would
//! change the host is refused by the test's own System.

#[path = "jitsi_steps_support.rs"]
mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use balcao::appliance::state::State;
use balcao::appliance::steps::jitsi_install::{
    apt_source_options, index_packages, list_line, simulate_cmd, simulated_installs, JitsiInstall,
};
use balcao::appliance::steps::jitsi_preseed::{JitsiPreseed, SELF_SIGNED};
use balcao::appliance::steps::jitsi_secure::JitsiSecure;
use balcao::appliance::steps::jitsi_site::{add_include, nginx_test};
use balcao::appliance::steps::Step;
use balcao::appliance::{users, Root, System};
use balcao::command::{Cmd, CommandError, Output};
use support::*;

/// Runs debconf for real against `conf`, the rest on the pretend machine.
struct RealDebconf {
    conf: PathBuf,
    machine: Machine,
    real: std::sync::Mutex<Vec<String>>,
}

impl System for RealDebconf {
    fn run(&self, cmd: &Cmd) -> Result<Output, CommandError> {
        let line = cmd.display();
        if line.starts_with("debconf-") {
            self.real.lock().unwrap().push(line);
            cmd.clone().env("DEBCONF_SYSTEMRC", &self.conf).run()
        } else {
            self.machine.run(cmd)
        }
    }
    fn has_program(&self, _: &str) -> bool {
        true
    }
    fn boot_time(&self) -> Option<u64> {
        None
    }
}

fn debconf_conf(db: &Path) -> String {
    let d = db.display();
    format!(
        "Config: configdb\nTemplates: templatedb\n\n\
         Name: config\nDriver: File\nMode: 644\nReject-Type: password\nFilename: {d}/config.dat\n\n\
         Name: passwords\nDriver: File\nMode: 600\nBackup: false\nRequired: false\nAccept-Type: password\nFilename: {d}/passwords.dat\n\n\
         Name: configdb\nDriver: Stack\nStack: config, passwords\n\n\
         Name: templatedb\nDriver: File\nMode: 644\nFilename: {d}/templates.dat\n"
    )
}

fn real_get(conf: &Path, question: &str) -> String {
    let out = Cmd::new("debconf-communicate")
        .env("DEBCONF_SYSTEMRC", conf)
        .stdin(format!("GET {question}\n"))
        .run()
        .unwrap_or_else(|e| panic!("{question}: {e}"));
    let text = out.stdout_text();
    text.trim_end_matches('\n')
        .strip_prefix("0")
        .unwrap()
        .trim_start_matches(' ')
        .to_owned()
}

#[test]
fn debconf_gets_the_answers_and_loses_the_secrets_after_install() {
    need_tools(&[
        ("debconf-set-selections", "debconf"),
        ("debconf-communicate", "debconf"),
    ]);
    let dir = image_root();
    let root = Root::new(dir.path());
    let db = dir.path().join("var/cache/debconf");
    std::fs::create_dir_all(&db).unwrap();
    let conf = dir.path().join("debconf.conf");
    std::fs::write(&conf, debconf_conf(&db)).unwrap();
    let system = RealDebconf {
        conf: conf.clone(),
        machine: Machine::new(dir.path()),
        real: Default::default(),
    };
    let (setup, state) = (setup_with(Some(PASSWORD), None), State::default());
    let ctx = context(&root, &system, &setup, &state);

    assert!(!JitsiPreseed.is_done(&ctx).unwrap());
    JitsiPreseed.apply(&ctx).unwrap();
    assert_eq!(real_get(&conf, "jitsi-videobridge/jvb-hostname"), DOMAIN);
    assert_eq!(real_get(&conf, "jitsi-meet/cert-choice"), SELF_SIGNED);
    assert_eq!(real_get(&conf, "jitsi-meet/jaas-choice"), "false");
    let secrets: Vec<String> = [
        "jitsi-videobridge/jvbsecret",
        "jicofo/jicofo-authpassword",
        "jitsi-meet-prosody/turn-secret",
    ]
    .iter()
    .map(|q| real_get(&conf, q))
    .collect();
    for s in &secrets {
        assert_eq!(s.len(), 32, "{s:?}");
    }
    // Password questions live in the private database.
    let passwords = std::fs::read_to_string(db.join("passwords.dat")).unwrap();
    assert!(passwords.contains(&secrets[0]) && passwords.contains(&secrets[1]));
    let mode = std::fs::metadata(db.join("passwords.dat"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "passwords.dat must be private");
    for line in system.real.lock().unwrap().iter() {
        for s in &secrets {
            assert!(!line.contains(s.as_str()), "{line}");
        }
    }

    assert!(JitsiPreseed.is_done(&ctx).unwrap());
    let before = system.real.lock().unwrap().len();
    JitsiPreseed.apply(&ctx).unwrap();
    let again: Vec<String> = system.real.lock().unwrap()[before..].to_vec();
    assert!(
        again.iter().all(|l| l == "debconf-communicate"),
        "a second preseed only reads: {again:?}"
    );

    // The install (apt on the pretend machine) empties them everywhere.
    JitsiInstall.apply(&ctx).unwrap();
    for q in [
        "jitsi-videobridge/jvbsecret",
        "jicofo/jicofo-authpassword",
        "jitsi-meet-prosody/turn-secret",
    ] {
        assert_eq!(real_get(&conf, q), "", "{q}");
    }
    assert_eq!(real_get(&conf, "jitsi-videobridge/jvb-hostname"), DOMAIN);
    for entry in std::fs::read_dir(&db).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for s in &secrets {
            assert!(
                !text.contains(s.as_str()),
                "{} keeps a secret",
                path.display()
            );
        }
    }
    assert!(JitsiInstall.is_done(&ctx).unwrap());
}

/// Builds the stand-in repository and lays it out as the image carries it:
/// a flat folder of .debs with its `Packages` index.
fn flat_standin_repo(work: &Path) -> PathBuf {
    need_tools(&[
        ("dpkg-deb", "dpkg"),
        ("apt-ftparchive", "apt-utils"),
        ("gpg", "gpg"),
        ("gpgconf", "gpgconf"),
        ("python3", "python3"),
        ("apt-get", "apt"),
    ]);
    let out = work.join("standin");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/standin/build-repo");
    Cmd::new(&script)
        .arg(&out)
        .run()
        .unwrap_or_else(|e| panic!("building the stand-in repository: {e}"));
    let repo = work.join("root/var/lib/balcao/jitsi-repo");
    std::fs::create_dir_all(&repo).unwrap();
    for entry in std::fs::read_dir(out.join("stable")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "deb") {
            std::fs::copy(&path, repo.join(path.file_name().unwrap())).unwrap();
        }
    }
    let index = Cmd::new("apt-ftparchive")
        .args(["packages", "."])
        .current_dir(&repo)
        .run()
        .unwrap();
    std::fs::write(repo.join("Packages"), index.stdout).unwrap();
    repo
}

/// A dpkg status with every dependency of the repository's packages that
/// the repository does not carry, as if the image had them installed;
/// `without` is left out.
fn dpkg_status_with_dependencies(index: &str, without: &str) -> String {
    let local = index_packages(index);
    let mut deps = std::collections::BTreeSet::new();
    for line in index.lines() {
        let Some(list) = line
            .strip_prefix("Depends:")
            .or_else(|| line.strip_prefix("Pre-Depends:"))
        else {
            continue;
        };
        for dep in list.split(',') {
            let first = dep.split('|').next().unwrap();
            let name = first.split_whitespace().next().unwrap().to_owned();
            if !local.contains(&name) && name != without {
                deps.insert(name);
            }
        }
    }
    deps.iter()
        .map(|p| {
            format!(
                "Package: {p}\nStatus: install ok installed\nPriority: optional\nSection: misc\n\
                 Maintainer: test <t@example.org>\nArchitecture: all\nVersion: 999:1\n\
                 Description: present in the image\n\n"
            )
        })
        .collect()
}

/// `cmd` (an apt-get command) with apt's state kept in `work` and the
/// made-up dpkg status; apt takes options after the command words too.
fn in_temp_apt(cmd: Cmd, work: &Path, status: &Path) -> Result<Output, CommandError> {
    for d in ["state/lists/partial", "cache/archives/partial", "log"] {
        std::fs::create_dir_all(work.join(d)).unwrap();
    }
    let w = work.display();
    cmd.args([
        "-o".to_owned(),
        format!("Dir::State={w}/state"),
        "-o".to_owned(),
        format!("Dir::State::status={}", status.display()),
        "-o".to_owned(),
        format!("Dir::Cache={w}/cache"),
        "-o".to_owned(),
        format!("Dir::Log={w}/log"),
        "-o".to_owned(),
        "Debug::NoLocking=true".to_owned(),
    ])
    .run()
}

fn update(work: &Path, list: &Path, status: &Path) -> Result<Output, CommandError> {
    let cmd = Cmd::new("apt-get")
        .args(apt_source_options(&list.display().to_string()))
        .arg("update");
    in_temp_apt(cmd, work, status)
}

fn simulate(work: &Path, list: &Path, status: &Path) -> Result<Output, CommandError> {
    in_temp_apt(simulate_cmd(&list.display().to_string()), work, status)
}

#[test]
fn apt_installs_jitsi_from_the_flat_repository_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path();
    let repo = flat_standin_repo(work);
    let index = std::fs::read_to_string(repo.join("Packages")).unwrap();
    let list = work.join("balcao-jitsi-local.list");
    std::fs::write(&list, list_line(&repo.display().to_string())).unwrap();
    let status = work.join("status");
    std::fs::write(&status, dpkg_status_with_dependencies(&index, "")).unwrap();

    update(work, &list, &status).unwrap_or_else(|e| panic!("apt-get update: {e}"));
    let out = simulate(work, &list, &status).unwrap_or_else(|e| {
        panic!(
            "apt-get --simulate install: {e}\nstatus:\n{}",
            std::fs::read_to_string(&status).unwrap()
        )
    });
    let wanted: std::collections::BTreeSet<String> =
        simulated_installs(&out.stdout_text()).into_iter().collect();
    assert_eq!(
        wanted,
        set_of(balcao::appliance::steps::jitsi_common::JITSI_PACKAGES),
        "{}",
        out.stdout_text()
    );
    assert!(wanted.iter().all(|p| index_packages(&index).contains(p)));

    // A Debian dependency missing from the image: apt has nowhere to get it.
    std::fs::write(&status, dpkg_status_with_dependencies(&index, "prosody")).unwrap();
    let err = simulate(work, &list, &status).unwrap_err().to_string();
    assert!(
        err.contains("unmet dependencies") && err.contains("prosody"),
        "{err}"
    );
}

#[test]
fn nginx_accepts_jitsis_site_with_the_units_include() {
    need_tools(&[("nginx", "nginx"), ("openssl", "openssl")]);
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let key = t.join("site.key");
    let crt = t.join("site.crt");
    Cmd::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", &format!("/CN={DOMAIN}")])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&crt)
        .run()
        .unwrap();
    let units = t.join("units.conf");
    std::fs::write(&units, overlay_units_conf()).unwrap();
    let site = upstream("jitsi-meet.example")
        .replace("jitsi-meet.example.com", DOMAIN)
        .replace(
            &format!("/etc/jitsi/meet/{DOMAIN}.crt"),
            &crt.display().to_string(),
        )
        .replace(
            &format!("/etc/jitsi/meet/{DOMAIN}.key"),
            &key.display().to_string(),
        )
        .replace(
            "/var/log/nginx/access.log",
            &t.join("access.log").display().to_string(),
        );
    let with_include = add_include(&site, &units.display().to_string()).unwrap();
    assert_ne!(with_include, site);
    let site_file = t.join("site.conf");
    std::fs::write(&site_file, &with_include).unwrap();
    assert!(
        Path::new("/etc/nginx/mime.types").is_file(),
        "nginx's mime.types is missing: apt-get install nginx"
    );
    let conf = t.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "pid {t}/nginx.pid;\nerror_log {t}/error.log;\nevents {{}}\nhttp {{\n    include /etc/nginx/mime.types;\n    access_log {t}/access.log;\n    include {site};\n}}\n",
            t = t.display(),
            site = site_file.display()
        ),
    )
    .unwrap();
    nginx_test(&conf)
        .run()
        .unwrap_or_else(|e| panic!("nginx refused the site with the include: {e}"));

    // A broken include is caught.
    std::fs::write(&units, "location = / {\n    root /var/lib/balcao/www;\n").unwrap();
    let err = nginx_test(&conf).run().unwrap_err().to_string();
    assert!(
        err.contains("units.conf") || err.contains("unexpected end"),
        "{err}"
    );
}

/// Real prosodyctl for prosodyctl commands, fixed address for hostname -I.
struct RealProsody;

impl System for RealProsody {
    fn run(&self, cmd: &Cmd) -> Result<Output, CommandError> {
        let line = cmd.display();
        if line == "hostname -I" {
            return Ok(Output {
                stdout: format!("{LOCAL_IP}\n").into_bytes(),
                stderr: Vec::new(),
            });
        }
        assert!(line.starts_with("prosodyctl --config "), "refused: {line}");
        cmd.run()
    }
    fn has_program(&self, _: &str) -> bool {
        true
    }
    fn boot_time(&self) -> Option<u64> {
        None
    }
}

/// The user prosodyctl runs as: as root it switches to `prosody`, which must
/// own the data folder.
fn give_to_prosody_if_root(dir: &Path) {
    let uid = Cmd::new("id").arg("-u").run().unwrap().stdout_text();
    if uid.trim() == "0" {
        let user = Cmd::new("id")
            .args(["-u", "prosody"])
            .run()
            .expect("no prosody user: apt-get install prosody");
        let group = Cmd::new("id").args(["-g", "prosody"]).run().unwrap();
        std::os::unix::fs::chown(
            dir,
            Some(user.stdout_text().trim().parse().unwrap()),
            Some(group.stdout_text().trim().parse().unwrap()),
        )
        .unwrap();
    }
}

/// Whether prosody's stored SCRAM keys for USER on DOMAIN match PASSWORD.
fn password_matches(root: &Path, user: &str, password: &str) -> bool {
    let account = root.join(format!(
        "var/lib/prosody/{}/accounts/{}.dat",
        users::store_name(DOMAIN),
        users::store_name(user)
    ));
    let script = r#"
package.path = "/usr/lib/prosody/?.lua;" .. package.path
package.cpath = "/usr/lib/prosody/?.so;" .. package.cpath
local scram = require "util.sasl.scram"
local hex = require "util.hex"
local account = dofile(arg[1])
local password = io.read("l")
local ok, stored, server = scram.getAuthenticationDatabaseSHA1(password, account.salt, account.iteration_count)
print(ok and hex.to(stored) == account.stored_key and hex.to(server) == account.server_key)
"#;
    let script_file = root.join("check-password.lua");
    std::fs::write(&script_file, script).unwrap();
    let out = Cmd::new("lua5.4")
        .arg(&script_file)
        .arg(&account)
        .stdin(format!("{password}\n"))
        .run()
        .unwrap_or_else(|e| panic!("cannot read the account {}: {e}", account.display()));
    out.stdout_text().trim() == "true"
}

#[test]
fn first_account_and_balcaoctl_user_with_real_prosodyctl() {
    need_tools(&[
        ("lua5.4", "lua5.4"),
        ("prosodyctl", "prosody"),
        ("node", "nodejs"),
        ("hocon", "ruby-hocon"),
    ]);
    let dir = image_root();
    let r = dir.path();
    std::fs::set_permissions(r, std::fs::Permissions::from_mode(0o755)).unwrap();
    render_jitsi_files(r);
    write(
        r,
        "/var/lib/dpkg/status",
        "Package: jitsi-meet\nStatus: install ok installed\n\n",
    );
    let data = r.join("var/lib/prosody");
    std::fs::create_dir_all(&data).unwrap();
    give_to_prosody_if_root(&data);
    write(
        r,
        "/etc/prosody/prosody.cfg.lua",
        &format!(
            "data_path = {data:?}\npidfile = {pid:?}\nlog = {{ error = \"*console\" }}\ncertificates = {certs:?}\nInclude {host:?}\n",
            data = data.display().to_string(),
            pid = r.join("prosody.pid").display().to_string(),
            certs = r.display().to_string(),
            host = r.join(format!("etc/prosody/conf.avail/{DOMAIN}.cfg.lua")).display().to_string(),
        ),
    );
    write(
        r,
        "/etc/balcao/setup.toml",
        &format!("domain = \"{DOMAIN}\"\n[admin]\nuser = \"atendimento\"\n"),
    );
    let root = Root::new(r);
    let (setup, state) = (setup_with(Some(PASSWORD), None), State::default());
    let ctx = context(&root, &RealProsody, &setup, &state);

    JitsiSecure.apply(&ctx).unwrap();
    assert!(JitsiSecure.is_done(&ctx).unwrap());
    assert!(password_matches(r, "atendimento", PASSWORD));
    assert_eq!(
        users::list_accounts(
            &root,
            &balcao::appliance::jitsi::Domain::parse(DOMAIN).unwrap()
        )
        .unwrap(),
        ["atendimento"]
    );
    // Again: the account exists, so the password is set, not a second account.
    let other = setup_with(Some("outra-senha-boa"), None);
    JitsiSecure
        .apply(&context(&root, &RealProsody, &other, &state))
        .unwrap();
    assert!(password_matches(r, "atendimento", "outra-senha-boa"));

    let balcaoctl = |args: &[&str], input: &str| {
        use std::io::Write;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_balcaoctl"))
            .args(args)
            .arg("--root")
            .arg(r)
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
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "balcaoctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    balcaoctl(&["user", "add", "maria.silva"], "Senha de teste 1!\n");
    assert!(password_matches(r, "maria.silva", "Senha de teste 1!"));
    assert_eq!(
        balcaoctl(&["user", "list"], ""),
        "atendimento\nmaria.silva\n"
    );
    balcaoctl(&["user", "passwd", "maria.silva"], "Outra senha 2?\n");
    assert!(password_matches(r, "maria.silva", "Outra senha 2?"));
    assert!(!password_matches(r, "maria.silva", "Senha de teste 1!"));
    balcaoctl(&["user", "remove", "maria.silva"], "");
    assert_eq!(balcaoctl(&["user", "list"], ""), "atendimento\n");
}

#[test]
fn the_steps_are_listed_in_firstboot_help() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_balcaoctl"))
        .args(["firstboot", "--help"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("firewall, jitsi-preseed, jitsi-install, jitsi-secure, jitsi-site, jitsi-health, tls, message"),
        "{text}"
    );
}
