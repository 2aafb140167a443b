//! The private counter with real XMPP clients: a prosody on this host's
//! loopback runs balcao's `mod_balcao_private_rooms`, enabled in its
//! configuration by the same edit first boot applies to Jitsi's host file
//! (`balcao::appliance::jitsi::lobby`), and tests/lobby/scenario.py (slixmpp)
//! plays one staff member and two anonymous guests against it.
//!
//! Also: the edit on the host file rendered from Jitsi's real template
//! (shared/jitsi/upstream/, through BALCAO_SHARED), before and after the
//! secure-domain edit, read back with prosody's own configuration loader.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use balcao::appliance::jitsi::accounts::{Prosodyctl, StaffJid};
use balcao::appliance::jitsi::lobby::{self, private_rooms_edit, MODULE, PLUGIN_DIR};
use balcao::appliance::jitsi::{secure_domain_edits, Domain, Outcome};
use balcao::command::{require_tools, Cmd, CommandError, HostTool};

const DOMAIN: &str = "balcao.tjxx.jus.br";
const STAFF_USER: &str = "atendente";
const STAFF_PASSWORD: &str = "senha de teste do balcao";
const FOCUS_PASSWORD: &str = "focusPasswordForTests";

fn crate_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The folder of the image's prosody modules, in this checkout.
fn plugin_source() -> PathBuf {
    crate_root().join("overlays/appliance/usr/share/balcao/prosody-plugins")
}

fn domain() -> Domain {
    Domain::parse(DOMAIN).unwrap()
}

fn need_prosody() {
    if let Err(missing) = require_tools(&[
        HostTool {
            program: "prosody",
            package: "prosody",
        },
        HostTool {
            program: "prosodyctl",
            package: "prosody",
        },
        HostTool {
            program: "lua5.4",
            package: "lua5.4",
        },
    ]) {
        panic!("the private-room tests need host tools: {missing}");
    }
    assert!(
        Path::new("/usr/lib/prosody/core/configmanager.lua").is_file(),
        "prosody's Lua modules are missing from /usr/lib/prosody: apt-get install prosody"
    );
}

fn need_slixmpp() {
    if let Err(missing) = require_tools(&[HostTool {
        program: "python3",
        package: "python3",
    }]) {
        panic!("the private-room XMPP test needs host tools: {missing}");
    }
    if let Err(e) = Cmd::new("python3").args(["-c", "import slixmpp"]).run() {
        panic!(
            "the private-room XMPP test needs the Python package slixmpp \
             (pip install slixmpp): {e}"
        );
    }
}

/// Values prosody itself reads from a configuration file: (host, key) pairs,
/// lists joined with spaces.
fn prosody_values(file: &Path, queries: &[(&str, &str)]) -> Vec<String> {
    let script = r#"
package.path = "/usr/lib/prosody/?.lua;" .. package.path
package.cpath = "/usr/lib/prosody/?.so;" .. package.cpath
local cm = require "core.configmanager"
assert(cm.load(arg[1]))
for i = 2, #arg, 2 do
    local v = cm.get(arg[i], arg[i + 1])
    if type(v) == "table" then v = table.concat(v, " ") end
    print(tostring(v))
end
"#;
    let mut cmd = Cmd::new("lua5.4").arg("-").arg(file).stdin(script);
    for (host, key) in queries {
        cmd = cmd.args([host, key]);
    }
    cmd.run()
        .unwrap_or_else(|e| panic!("prosody could not read {}: {e}", file.display()))
        .stdout_text()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn upstream_host_file() -> String {
    let shared = std::env::var_os("BALCAO_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate_root().join("../shared"));
    let path = shared.join("jitsi/upstream/prosody.cfg.lua-jvb.example");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| {
            panic!(
                "cannot read {} (set BALCAO_SHARED to the folder holding jitsi/upstream/): {e}",
                path.display()
            )
        })
        .replace("jitmeet.example.com", DOMAIN)
        .replace("focusUser", "focus")
        .replace("__turnSecret__", "turnSecretForTests")
}

#[test]
fn the_edit_enables_the_module_on_jitsis_host_file_once() {
    need_prosody();
    let conference = format!("conference.{DOMAIN}");

    for secure_first in [false, true] {
        let root = tempfile::tempdir().unwrap();
        let edit = private_rooms_edit(&domain());
        let file = root.path().join(&edit.path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, upstream_host_file()).unwrap();

        let secure = secure_domain_edits(&domain(), None, "10.0.0.5".parse().unwrap()).remove(0);
        assert_eq!(secure.path, edit.path);
        if secure_first {
            secure.apply_at(root.path()).unwrap();
        }
        assert_eq!(edit.apply_at(root.path()).unwrap(), Outcome::Changed);
        let once = std::fs::read_to_string(&file).unwrap();
        assert_eq!(edit.apply_at(root.path()).unwrap(), Outcome::Unchanged);
        if !secure_first {
            secure.apply_at(root.path()).unwrap();
            assert_eq!(edit.apply_at(root.path()).unwrap(), Outcome::Unchanged);
        }
        assert_eq!(
            edit.apply(&std::fs::read_to_string(&file).unwrap())
                .unwrap(),
            std::fs::read_to_string(&file).unwrap()
        );
        assert_eq!(once.matches(MODULE).count(), 1, "{once}");

        let values = prosody_values(
            &file,
            &[
                ("*", "plugin_paths"),
                (&conference, "modules_enabled"),
                (&conference, "balcao_staff_host"),
                (&format!("lobby.{DOMAIN}"), "modules_enabled"),
                (DOMAIN, "modules_enabled"),
            ],
        );
        assert_eq!(
            values[0],
            format!("/usr/share/jitsi-meet/prosody-plugins/ {PLUGIN_DIR}")
        );
        assert_eq!(
            values[1],
            format!(
                "muc_hide_all muc_meeting_id muc_domain_mapper muc_rate_limit \
                 muc_password_whitelist {MODULE}"
            )
        );
        assert_eq!(values[2], DOMAIN);
        assert!(!values[3].contains(MODULE), "{}", values[3]);
        assert!(!values[4].contains(MODULE), "{}", values[4]);
    }
}

/// A prosody running in the foreground for one test; killed on drop.
struct Prosody {
    child: Child,
    log: PathBuf,
}

impl Prosody {
    fn start(config: &Path, log: &Path, port: u16) -> Prosody {
        let child = Command::new("prosody")
            .arg("--config")
            .arg(config)
            .arg("-F")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("could not start prosody (apt-get install prosody)");
        let mut prosody = Prosody {
            child,
            log: log.to_owned(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = prosody.child.try_wait() {
                panic!(
                    "prosody exited ({status}) before listening:\n{}",
                    prosody.log_tail()
                );
            }
            assert!(
                Instant::now() < deadline,
                "prosody did not listen on 127.0.0.1:{port} within 20 s:\n{}",
                prosody.log_tail()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        prosody
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }
}

impl Drop for Prosody {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("no free loopback port")
        .port()
}

/// A Jitsi-shaped host file for loopback: staff on DOMAIN, anonymous guests
/// on guest.DOMAIN, jicofo's focus account on auth.DOMAIN (an admin of the
/// conference component, as in Jitsi's template) (prosody's own `anonymous`: Jitsi's `jitsi-anonymous` is
/// not on this host), the conference component without our module yet but
/// with a test-only one that opens rooms behind the forms' back
/// (tests/lobby/plugins/), and
/// everything prosody writes kept under `dir`. No certificates, so no TLS:
/// loopback only.
fn test_config(dir: &Path, port: u16) -> String {
    let d = dir.display();
    let plugins = plugin_source();
    format!(
        r#"-- balcao's private-room test (tests/lobby_xmpp.rs); loopback only.
plugin_paths = {{ "{plugins}", "{test_plugins}" }}
run_as_root = true
pidfile = "{d}/prosody.pid"
data_path = "{d}/data"
certificates = "{d}/certs"
log = {{ debug = "{d}/prosody.log" }}
modules_enabled = {{ "roster"; "saslauth"; "disco"; "ping" }}
modules_disabled = {{ "s2s"; "offline" }}
c2s_ports = {{ {port} }}
c2s_interfaces = {{ "127.0.0.1" }}
c2s_direct_tls_ports = {{ }}
legacy_ssl_ports = {{ }}
c2s_require_encryption = false
allow_unencrypted_plain_auth = true

VirtualHost "{DOMAIN}"
    authentication = "internal_hashed"

VirtualHost "guest.{DOMAIN}"
    authentication = "anonymous"

VirtualHost "auth.{DOMAIN}"
    authentication = "internal_hashed"

Component "conference.{DOMAIN}" "muc"
    storage = "memory"
    muc_room_locking = false
    admins = {{ "focus@auth.{DOMAIN}" }}
    modules_enabled = {{
        "muc_mam";
        "balcao_test_open_room";
    }}
"#,
        plugins = plugins.display(),
        test_plugins = crate_root().join("tests/lobby/plugins").display(),
    )
}

#[test]
fn two_guests_knock_and_only_the_admitted_one_enters() {
    need_prosody();
    need_slixmpp();
    assert!(
        plugin_source()
            .join("mod_balcao_private_rooms.lua")
            .is_file(),
        "the module is missing from {}",
        plugin_source().display()
    );

    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    for sub in ["data", "certs"] {
        std::fs::create_dir_all(dir.path().join(sub)).unwrap();
    }

    // The configuration gets the module the way first boot gives it to
    // Jitsi's host file.
    let edit = private_rooms_edit(&domain());
    let config = dir.path().join(&edit.path);
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    std::fs::write(&config, test_config(dir.path(), port)).unwrap();
    assert_eq!(edit.apply_at(dir.path()).unwrap(), Outcome::Changed);
    let text = std::fs::read_to_string(&config).unwrap();
    assert_eq!(lobby::enable_private_rooms(&text, &domain()).unwrap(), text);

    let staff = StaffJid::new(STAFF_USER, &domain()).unwrap();
    Prosodyctl::with_config(&config)
        .add_staff(&staff, STAFF_PASSWORD)
        .unwrap_or_else(|e| panic!("registering the staff account: {e}"));

    // Jicofo's account, as jitsi-meet-prosody registers it.
    Cmd::new("prosodyctl")
        .arg("--config")
        .arg(&config)
        .args(["adduser", &format!("focus@auth.{DOMAIN}")])
        .stdin(format!("{FOCUS_PASSWORD}\n{FOCUS_PASSWORD}\n"))
        .run()
        .unwrap_or_else(|e| panic!("registering focus@auth.{DOMAIN}: {e}"));

    let log = dir.path().join("prosody.log");
    let prosody = Prosody::start(&config, &log, port);
    let run = Cmd::new("python3")
        .arg(crate_root().join("tests/lobby/scenario.py"))
        .args(["--port", &port.to_string(), "--domain", DOMAIN, "--staff"])
        .arg(STAFF_USER)
        .env("BALCAO_STAFF_PASSWORD", STAFF_PASSWORD)
        .env("BALCAO_FOCUS_PASSWORD", FOCUS_PASSWORD)
        .run();
    match run {
        Ok(out) => {
            let said = out.stdout_text();
            assert!(
                said.contains("all checks passed"),
                "the scenario ended without its last check:\n{said}"
            );
            assert!(
                log_says(&prosody, "was admitted to sala1@conference."),
                "prosody's log does not show the admission:\n{}",
                prosody.log_tail()
            );
            // What Jitsi's lobby plugin would act on (the test plugin logs it).
            assert!(
                log_says(
                    &prosody,
                    "a lobby room was requested for sala1@conference.balcao.tjxx.jus.br (members-only: true)"
                ),
                "the module did not ask for a Jitsi lobby room:\n{}",
                prosody.log_tail()
            );
        }
        Err(CommandError::Failed { output, .. }) => panic!(
            "the private-room scenario failed:\n{output}\n--- prosody's log (last lines) ---\n{}",
            prosody.log_tail()
        ),
        Err(e) => panic!("could not run the scenario: {e}"),
    }
    drop(prosody);
}

fn log_says(prosody: &Prosody, needle: &str) -> bool {
    std::fs::read_to_string(&prosody.log)
        .map(|t| t.contains(needle))
        .unwrap_or(false)
}
