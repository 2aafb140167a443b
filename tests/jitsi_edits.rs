//! The secure-domain edits against files rendered from Jitsi's real templates
//! (shared/jitsi/upstream/, found through BALCAO_SHARED) the way the
//! packages' postinst scripts render them, checked by the real parsers:
//! prosody's configuration loader, node, the hocon CLI, and prosodyctl for
//! staff accounts. Each edit is applied twice: the second time changes
//! nothing.

use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use balcao::appliance::jitsi::accounts::{Prosodyctl, StaffJid};
use balcao::appliance::jitsi::{
    install_checked, secure_domain_edits, Check, Domain, JitsiError, Outcome,
};
use balcao::command::{require_tools, Cmd, HostTool};
use serde_json::{json, Value};

const DOMAIN: &str = "balcao.tjxx.jus.br";
const TURN_SECRET: &str = "turnSecretForTests";
const FOCUS_PASSWORD: &str = "focusPasswordForTests";

fn need_tools() {
    if let Err(missing) = require_tools(&[
        HostTool {
            program: "lua5.4",
            package: "lua5.4",
        },
        HostTool {
            program: "prosodyctl",
            package: "prosody",
        },
        HostTool {
            program: "node",
            package: "nodejs",
        },
        HostTool {
            program: "hocon",
            package: "ruby-hocon",
        },
    ]) {
        panic!("the Jitsi edit tests need host tools: {missing}");
    }
    assert!(
        Path::new("/usr/lib/prosody/core/configmanager.lua").is_file(),
        "prosody's Lua modules are missing from /usr/lib/prosody: apt-get install prosody"
    );
}

fn upstream(file: &str) -> String {
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

fn domain() -> Domain {
    Domain::parse(DOMAIN).unwrap()
}

fn write(root: &Path, rel: &str, text: &str) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn read(root: &Path, rel: impl AsRef<Path>) -> String {
    std::fs::read_to_string(root.join(rel)).unwrap()
}

/// What the packages generate for DOMAIN, as their postinst scripts do it.
fn render_install(root: &Path) {
    let host = upstream("prosody.cfg.lua-jvb.example")
        .replace("jitmeet.example.com", DOMAIN)
        .replace("focusUser", "focus")
        .replace("__turnSecret__", TURN_SECRET);
    write(
        root,
        &format!("etc/prosody/conf.avail/{DOMAIN}.cfg.lua"),
        &host,
    );
    let config_js = upstream("config.js").replace("jitsi-meet.example.com", DOMAIN);
    write(
        root,
        &format!("etc/jitsi/meet/{DOMAIN}-config.js"),
        &config_js,
    );
    write(
        root,
        "etc/jitsi/jicofo/jicofo.conf",
        &format!(
            "jicofo {{\n    // XMPP connection to prosody\n    xmpp: {{\n      client: {{\n        client-proxy: \"focus.{DOMAIN}\"\n        xmpp-domain: \"{DOMAIN}\"\n        domain: \"auth.{DOMAIN}\"\n        username: \"focus\"\n        password: \"{FOCUS_PASSWORD}\"\n      }}\n      trusted-domains: [ \"recorder.{DOMAIN}\" ]\n    }}\n    bridge: {{\n      brewery-jid: \"JvbBrewery@internal.auth.{DOMAIN}\"\n    }}\n}}\n"
        ),
    );
    write(
        root,
        "etc/jitsi/videobridge/jvb.conf",
        &format!(
            "videobridge {{\n    http-servers {{\n        public {{\n            port = 9090\n        }}\n    }}\n    websockets {{\n        enabled = true\n        domain = \"{DOMAIN}:443\"\n        tls = true\n    }}\n}}\n# STUN to learn the public address\nice4j {{\n    harvest {{\n        mapping {{\n            stun {{\n                addresses = [ \"meet-jit-si-turnrelay.jitsi.net:443\" ]\n            }}\n        }}\n    }}\n}}\n"
        ),
    );
}

/// Applies every edit twice under `root`: changed, then unchanged.
fn apply_twice(root: &Path, public_ip: Option<IpAddr>) {
    let local: IpAddr = "10.0.0.5".parse().unwrap();
    for edit in secure_domain_edits(&domain(), public_ip, local) {
        let before = read(root, &edit.path);
        let first = edit
            .apply_at(root)
            .unwrap_or_else(|e| panic!("{}: {e}", edit.path.display()));
        let after = read(root, &edit.path);
        assert_eq!(
            first == Outcome::Changed,
            before != after,
            "{}",
            edit.path.display()
        );
        assert_eq!(
            edit.apply_at(root).unwrap(),
            Outcome::Unchanged,
            "{} changed on the second run",
            edit.path.display()
        );
        assert_eq!(read(root, &edit.path), after);
        assert_eq!(
            edit.apply(&after).unwrap(),
            after,
            "{}",
            edit.path.display()
        );
    }
    let leftovers: Vec<_> = walk(root)
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(".balcao-new."))
        .collect();
    assert!(leftovers.is_empty(), "staging files left: {leftovers:?}");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// Values prosody itself reads from a configuration file: (host, key) pairs.
fn prosody_values(file: &Path, queries: &[(&str, &str)]) -> Vec<String> {
    let script = r#"
package.path = "/usr/lib/prosody/?.lua;" .. package.path
package.cpath = "/usr/lib/prosody/?.so;" .. package.cpath
local cm = require "core.configmanager"
assert(cm.load(arg[1]))
for i = 2, #arg, 2 do print(tostring(cm.get(arg[i], arg[i + 1]))) end
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

fn hocon_json(file: &Path, key: &str) -> Value {
    let out = Cmd::new("hocon")
        .arg("-i")
        .arg(file)
        .args(["-j", "get", key])
        .run()
        .unwrap_or_else(|e| panic!("hocon could not read {key} from {}: {e}", file.display()));
    serde_json::from_str(&out.stdout_text()).unwrap()
}

fn node_hosts(file: &Path) -> Value {
    let script = "const fs = require('fs'), vm = require('vm');\
        const ctx = {}; vm.runInNewContext(fs.readFileSync(process.argv[1], 'utf8'), ctx);\
        console.log(JSON.stringify(ctx.config.hosts));";
    let out = Cmd::new("node")
        .args(["-e", script])
        .arg(file)
        .run()
        .unwrap_or_else(|e| panic!("node could not evaluate {}: {e}", file.display()));
    serde_json::from_str(&out.stdout_text()).unwrap()
}

#[test]
fn secure_domain_on_a_fresh_install_intranet_only() {
    need_tools();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    render_install(root);
    let jicofo = root.join("etc/jitsi/jicofo/jicofo.conf");
    std::fs::set_permissions(&jicofo, std::fs::Permissions::from_mode(0o640)).unwrap();
    let original_host = read(root, format!("etc/prosody/conf.avail/{DOMAIN}.cfg.lua"));

    apply_twice(root, None);

    // Prosody: staff log in on the main host, guests on guest.DOMAIN, the
    // rest as Jitsi made it.
    let host_file = root.join(format!("etc/prosody/conf.avail/{DOMAIN}.cfg.lua"));
    let guest = format!("guest.{DOMAIN}");
    let auth = format!("auth.{DOMAIN}");
    assert_eq!(
        prosody_values(
            &host_file,
            &[
                (DOMAIN, "authentication"),
                (&guest, "authentication"),
                (&guest, "c2s_require_encryption"),
                (&auth, "authentication"),
                (DOMAIN, "c2s_require_encryption"),
                (DOMAIN, "main_muc"),
                ("*", "external_service_secret"),
            ]
        ),
        [
            "internal_hashed",
            "jitsi-anonymous",
            "false",
            "internal_hashed",
            "false",
            &format!("conference.{DOMAIN}"),
            TURN_SECRET,
        ]
    );
    let edited_host = read(root, &host_file);
    assert!(edited_host.contains("    authentication = \"internal_hashed\" -- do not delete me\n"));
    let changed: Vec<_> = original_host
        .lines()
        .zip(edited_host.lines())
        .filter(|(a, b)| a != b)
        .collect();
    assert_eq!(
        changed.len(),
        1,
        "only the main host's authentication line changes: {changed:?}"
    );

    // config.js, evaluated by node.
    let hosts = node_hosts(&root.join(format!("etc/jitsi/meet/{DOMAIN}-config.js")));
    assert_eq!(hosts["anonymousdomain"], json!(guest));
    assert_eq!(hosts["domain"], json!(DOMAIN));
    assert_eq!(hosts["muc"], json!(format!("conference.{DOMAIN}")));

    // jicofo.conf: authentication and health on, connection untouched,
    // comment and mode kept.
    assert_eq!(
        hocon_json(&jicofo, "jicofo.authentication"),
        json!({ "enabled": true, "type": "XMPP", "login-url": DOMAIN })
    );
    assert_eq!(hocon_json(&jicofo, "jicofo.health.enabled"), json!(true));
    assert_eq!(
        hocon_json(&jicofo, "jicofo.xmpp.client.password"),
        json!(FOCUS_PASSWORD)
    );
    assert!(read(root, &jicofo).contains("// XMPP connection to prosody\n"));
    assert_eq!(
        std::fs::metadata(&jicofo).unwrap().permissions().mode() & 0o777,
        0o640
    );

    // jvb.conf: no address required for health, STUN setting kept.
    let jvb = root.join("etc/jitsi/videobridge/jvb.conf");
    assert_eq!(
        hocon_json(&jvb, "videobridge.health.require-valid-address"),
        json!(false)
    );
    assert_eq!(
        hocon_json(&jvb, "ice4j.harvest.mapping"),
        json!({ "stun": { "addresses": ["meet-jit-si-turnrelay.jitsi.net:443"] } })
    );
    assert!(read(root, &jvb).contains("# STUN to learn the public address\n"));
}

#[test]
fn public_address_gives_a_static_mapping_and_removing_it_converges() {
    need_tools();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    render_install(root);
    let jvb = root.join("etc/jitsi/videobridge/jvb.conf");

    apply_twice(root, Some("203.0.113.7".parse().unwrap()));
    assert_eq!(
        hocon_json(&jvb, "ice4j.harvest.mapping.static-mappings"),
        json!([{ "local-address": "10.0.0.5", "public-address": "203.0.113.7" }])
    );

    // A new public address replaces the old one; none removes the mapping.
    apply_twice(root, Some("198.51.100.9".parse().unwrap()));
    let mappings = hocon_json(&jvb, "ice4j.harvest.mapping.static-mappings");
    assert_eq!(mappings[0]["public-address"], json!("198.51.100.9"));
    assert_eq!(mappings.as_array().unwrap().len(), 1);
    apply_twice(root, None);
    assert!(!read(root, &jvb).contains("static-mappings"));
    assert_eq!(
        hocon_json(&jvb, "videobridge.health.require-valid-address"),
        json!(false)
    );

    let err = secure_domain_edits(
        &domain(),
        Some("2001:db8::1".parse().unwrap()),
        "10.0.0.5".parse().unwrap(),
    )
    .pop()
    .unwrap()
    .apply_at(root)
    .unwrap_err();
    assert!(err.to_string().contains("address families"), "{err}");
}

#[test]
fn jicofo_reference_defaults_are_switched_in_place() {
    need_tools();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let reference = upstream("jicofo-reference.conf");
    write(root, "etc/jitsi/jicofo/jicofo.conf", &reference);
    let edit = secure_domain_edits(&domain(), None, "10.0.0.5".parse().unwrap())
        .into_iter()
        .find(|e| e.path.ends_with("jicofo.conf"))
        .unwrap();
    assert_eq!(edit.apply_at(root).unwrap(), Outcome::Changed);
    assert_eq!(edit.apply_at(root).unwrap(), Outcome::Unchanged);
    let file = root.join("etc/jitsi/jicofo/jicofo.conf");
    let auth = hocon_json(&file, "jicofo.authentication");
    assert_eq!(auth["enabled"], json!(true));
    assert_eq!(auth["type"], json!("XMPP"));
    assert_eq!(auth["login-url"], json!(DOMAIN));
    assert_eq!(auth["enable-auto-login"], json!(true));
    assert_eq!(hocon_json(&file, "jicofo.health.enabled"), json!(true));
    assert_eq!(
        hocon_json(&file, "jicofo.health.interval"),
        json!("10 seconds")
    );
    let text = read(root, &file);
    assert!(text.contains("// Whether to perform health checks."));
    assert_eq!(
        text.lines().count(),
        reference.lines().count() + 1,
        "only login-url is added:\n{text}"
    );
}

#[test]
fn a_file_its_parser_rejects_is_not_installed() {
    need_tools();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let cases: [(&str, &str, &str, Check); 3] = [
        (
            "host.cfg.lua",
            "VirtualHost \"a.org\"\n",
            "VirtualHost \"a.org\"\n  authentication = \n",
            Check::ProsodyConfig,
        ),
        (
            "a-config.js",
            "var config = {};\n",
            "var config = { hosts: { ;\n",
            Check::JavaScript,
        ),
        (
            "jicofo.conf",
            "jicofo { a = 1 }\n",
            "jicofo { a = \n",
            Check::Hocon { key: "jicofo" },
        ),
    ];
    for (name, good, bad, check) in cases {
        let path = dir.join(name);
        std::fs::write(&path, good).unwrap();
        let err = install_checked(&path, bad, &check).unwrap_err();
        assert!(
            matches!(err, JitsiError::CheckFailed { .. }),
            "{name}: {err}"
        );
        let text = err.to_string();
        assert!(
            text.contains(name) && text.contains("previous file is kept"),
            "{text}"
        );
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            good,
            "{name} was replaced"
        );
        assert_eq!(
            std::fs::read_dir(dir).unwrap().count(),
            cases_written(dir),
            "{name}: staging file left"
        );
        install_checked(&path, good, &check).unwrap_or_else(|e| panic!("{name}: {e}"));
    }

    // A jicofo.conf without the jicofo section is not accepted either.
    let path = dir.join("empty.conf");
    std::fs::write(&path, "other { }\n").unwrap();
    assert!(install_checked(&path, "other { a = 1 }\n", &Check::Hocon { key: "jicofo" }).is_err());
}

fn cases_written(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            !e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with(".balcao-new.")
        })
        .count()
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

/// Prosody's file-storage name: every character but [A-Za-z0-9] as %xx.
fn store_name(name: &str) -> String {
    name.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02x}")
            }
        })
        .collect()
}

/// Whether prosody's stored SCRAM keys for USER on HOST match PASSWORD.
fn password_matches(data: &Path, host: &str, user: &str, password: &str) -> bool {
    let account = data
        .join(store_name(host))
        .join("accounts")
        .join(format!("{}.dat", store_name(user)));
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
    let script_file = data.join("check.lua");
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
fn staff_accounts_are_registered_with_the_password_on_stdin_only() {
    need_tools();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    render_install(root);
    apply_twice(root, None);

    // prosodyctl reads the edited host file, with data kept in the temp folder.
    // As root prosodyctl runs as the prosody user, which must reach the files.
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).unwrap();
    let data = root.join("data");
    std::fs::create_dir_all(&data).unwrap();
    give_to_prosody_if_root(&data);
    let config = root.join("prosody.cfg.lua");
    std::fs::write(
        &config,
        format!(
            "data_path = {data:?}\npidfile = {pid:?}\nlog = {{ error = \"*console\" }}\ncertificates = {certs:?}\nInclude {host:?}\n",
            data = data.display().to_string(),
            pid = root.join("prosody.pid").display().to_string(),
            certs = root.display().to_string(),
            host = root.join(format!("etc/prosody/conf.avail/{DOMAIN}.cfg.lua")).display().to_string(),
        ),
    )
    .unwrap();
    let prosodyctl = Prosodyctl::with_config(&config);
    let jid = StaffJid::new("maria.silva", &domain()).unwrap();
    let password = "Senha de teste 1!";

    let cmd = prosodyctl.adduser_cmd(&jid, password).unwrap();
    assert!(!cmd.display().contains("Senha"), "{}", cmd.display());
    prosodyctl.add_staff(&jid, password).unwrap();
    assert!(password_matches(&data, DOMAIN, "maria.silva", password));
    assert!(!password_matches(&data, DOMAIN, "maria.silva", "wrong"));

    let again = prosodyctl.add_staff(&jid, password).unwrap_err();
    assert!(matches!(again, JitsiError::AccountExists { .. }), "{again}");

    prosodyctl.set_password(&jid, "Outra senha 2?").unwrap();
    assert!(password_matches(
        &data,
        DOMAIN,
        "maria.silva",
        "Outra senha 2?"
    ));
    assert!(!password_matches(&data, DOMAIN, "maria.silva", password));
}
