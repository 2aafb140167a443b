//! The STAND-IN Jitsi repository (tests/standin/): builds it into a temporary
//! folder, serves it on loopback and asks a throwaway apt configuration to
//! trust it with the signed-by key, then with a different key, which must fail.
//! Nothing is installed on this machine.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use balcao::command::{require_tools, Cmd, CommandError, HostTool};

const PACKAGES: &[&str] = &[
    "jitsi-meet",
    "jitsi-videobridge2",
    "jicofo",
    "jitsi-meet-web",
    "jitsi-meet-web-config",
    "jitsi-meet-prosody",
    "jitsi-meet-turnserver",
];

fn crate_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn shared_dir() -> PathBuf {
    std::env::var_os("BALCAO_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate_root().join("../shared"))
}

fn need_tools() {
    if let Err(missing) = require_tools(&[
        HostTool {
            program: "dpkg-deb",
            package: "dpkg",
        },
        HostTool {
            program: "apt-ftparchive",
            package: "apt-utils",
        },
        HostTool {
            program: "apt-get",
            package: "apt",
        },
        HostTool {
            program: "gpg",
            package: "gpg",
        },
        HostTool {
            program: "gpgconf",
            package: "gpgconf",
        },
        HostTool {
            program: "python3",
            package: "python3",
        },
    ]) {
        panic!("the stand-in repository test needs host tools: {missing}");
    }
}

/// `tests/standin/serve` running in the background; stopped on drop.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start(repo: &Path) -> Server {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("no free loopback port")
            .port();
        let child = Command::new(crate_root().join("tests/standin/serve"))
            .arg(repo)
            .arg(port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("could not start tests/standin/serve");
        let server = Server { child, port };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "tests/standin/serve did not listen on 127.0.0.1:{port} within 20 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A throwaway apt configuration: its own sources list, state, cache and an
/// empty trusted keyring folder, so only the signed-by key can vouch.
struct Apt {
    dir: PathBuf,
}

impl Apt {
    fn new(dir: &Path, list_line: &str) -> Apt {
        for sub in [
            "state/lists/partial",
            "cache/archives/partial",
            "etc/parts",
            "etc/trusted",
            "debs",
        ] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        std::fs::write(dir.join("status"), "").unwrap();
        std::fs::write(dir.join("etc/sources.list"), format!("{list_line}\n")).unwrap();
        Apt {
            dir: dir.to_owned(),
        }
    }

    fn cmd(&self, program: &str) -> Cmd {
        let d = |sub: &str| self.dir.join(sub).display().to_string();
        Cmd::new(program).args([
            "-o".to_owned(),
            format!("Dir::Etc::SourceList={}", d("etc/sources.list")),
            "-o".to_owned(),
            format!("Dir::Etc::SourceParts={}", d("etc/parts")),
            "-o".to_owned(),
            format!("Dir::Etc::TrustedParts={}", d("etc/trusted")),
            "-o".to_owned(),
            format!("Dir::Etc::Trusted={}", d("etc/trusted/none.gpg")),
            "-o".to_owned(),
            format!("Dir::State={}", d("state")),
            "-o".to_owned(),
            format!("Dir::State::status={}", d("status")),
            "-o".to_owned(),
            format!("Dir::Cache={}", d("cache")),
            "-o".to_owned(),
            "APT::Sandbox::User=root".to_owned(),
            "-o".to_owned(),
            "Debug::NoLocking=1".to_owned(),
        ])
    }

    fn update(&self) -> Result<String, CommandError> {
        self.cmd("apt-get").arg("update").run().map(|out| {
            format!(
                "{}{}",
                out.stdout_text(),
                String::from_utf8_lossy(&out.stderr)
            )
        })
    }
}

fn build_repo(out: &Path) {
    Cmd::new("bash")
        .arg(crate_root().join("tests/standin/build-repo"))
        .arg(out)
        .env("BALCAO_SHARED", shared_dir())
        .run()
        .unwrap_or_else(|e| panic!("tests/standin/build-repo failed: {e}"));
}

fn other_keyring(dir: &Path) -> PathBuf {
    let home = dir.join("other-gnupg");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::set_permissions(&home, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    Cmd::new("gpg")
        .env("GNUPGHOME", &home)
        .args([
            "--batch",
            "--quiet",
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "",
        ])
        .args([
            "--quick-generate-key",
            "Not the stand-in <other@balcao.invalid>",
        ])
        .args(["ed25519", "sign", "never"])
        .run()
        .expect("could not make a second test key");
    let exported = Cmd::new("gpg")
        .env("GNUPGHOME", &home)
        .args(["--batch", "--export"])
        .run()
        .expect("could not export the second test key");
    let _ = Cmd::new("gpgconf")
        .env("GNUPGHOME", &home)
        .args(["--kill", "gpg-agent"])
        .run();
    let keyring = dir.join("other-keyring.gpg");
    std::fs::write(&keyring, exported.stdout).unwrap();
    keyring
}

#[test]
fn standin_repository_verifies_with_its_key_and_only_with_it() {
    need_tools();
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    build_repo(&repo);

    // The key files the recipe would pin.
    let fingerprint = std::fs::read_to_string(repo.join("standin-key.fingerprint")).unwrap();
    let fingerprint = fingerprint.trim();
    assert_eq!(fingerprint.len(), 40, "fingerprint file: {fingerprint:?}");
    assert!(fingerprint.chars().all(|c| c.is_ascii_hexdigit()));
    let armored = std::fs::read_to_string(repo.join("standin-key.gpg.key")).unwrap();
    assert!(armored.starts_with("-----BEGIN PGP PUBLIC KEY BLOCK-----"));
    let shown = Cmd::new("gpg")
        .args(["--batch", "--with-colons", "--show-keys"])
        .arg(repo.join("standin-key.gpg.key"))
        .run()
        .unwrap()
        .stdout_text();
    assert!(shown.contains(fingerprint), "{shown}");
    for file in [
        "Packages",
        "Packages.gz",
        "Release",
        "InRelease",
        "Release.gpg",
    ] {
        assert!(
            repo.join("stable").join(file).is_file(),
            "stable/{file} missing"
        );
    }

    let server = Server::start(&repo);
    let url = format!("http://127.0.0.1:{}", server.port);

    // With the repository's own key: update verifies and lists every package.
    let keyring = repo.join("standin-keyring.gpg");
    let good = Apt::new(
        &tmp.path().join("apt-good"),
        &format!("deb [signed-by={}] {url} stable/", keyring.display()),
    );
    let log = good
        .update()
        .unwrap_or_else(|e| panic!("apt-get update against the stand-in failed: {e}"));
    assert!(!log.contains("NO_PUBKEY"), "{log}");
    for package in PACKAGES {
        let show = good
            .cmd("apt-cache")
            .args(["show", package])
            .run()
            .unwrap_or_else(|e| panic!("apt-cache show {package}: {e}"))
            .stdout_text();
        assert!(show.contains(&format!("Package: {package}\n")), "{show}");
        assert!(
            show.contains("+standin1"),
            "{package} version not marked: {show}"
        );
        assert!(
            show.contains("STAND-IN"),
            "{package} description not marked: {show}"
        );
    }

    // The metapackage's relations are Jitsi's.
    let meta = good
        .cmd("apt-cache")
        .args(["show", "jitsi-meet"])
        .run()
        .unwrap()
        .stdout_text();
    assert!(
        meta.contains("Pre-Depends: jitsi-videobridge2 (= 2.3.0+standin1)"),
        "{meta}"
    );
    for dep in [
        "jicofo (= ",
        "jitsi-meet-web (= ",
        "jitsi-meet-web-config (= ",
        "jitsi-meet-prosody (= ",
    ] {
        assert!(meta.contains(dep), "jitsi-meet lacks {dep}: {meta}");
    }
    assert!(
        meta.contains("Recommends: jitsi-meet-turnserver (= 2.0.0+standin1)"),
        "{meta}"
    );
    let prosody = good
        .cmd("apt-cache")
        .args(["show", "jitsi-meet-prosody"])
        .run()
        .unwrap()
        .stdout_text();
    for dep in [
        "prosody (>= 0.12.0)",
        "lua-sec",
        "lua-basexx",
        "lua-luaossl",
        "lua-cjson",
        "lua-inspect",
    ] {
        assert!(prosody.contains(dep), "jitsi-meet-prosody lacks {dep}");
    }

    // Packages download (apt checks their hashes against the signed index),
    // and carry Jitsi's debconf questions.
    let debs = tmp.path().join("apt-good/debs");
    good.cmd("apt-get")
        .arg("download")
        .args(PACKAGES)
        .current_dir(&debs)
        .run()
        .unwrap_or_else(|e| panic!("apt-get download from the stand-in failed: {e}"));
    let web_config = std::fs::read_dir(&debs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains("jitsi-meet-web-config_"))
        .expect("jitsi-meet-web-config was not downloaded");
    let control = tmp.path().join("web-config-control");
    Cmd::new("dpkg-deb")
        .arg("-e")
        .arg(&web_config)
        .arg(&control)
        .run()
        .unwrap();
    let templates = std::fs::read_to_string(control.join("templates")).unwrap();
    assert!(templates.contains(
        "Template: jitsi-meet/cert-choice\nType: select\nChoices: Let's Encrypt certificates, \
         I want to use my own certificate, Generate a new self-signed certificate\n"
    ));
    assert!(templates.contains("Template: jitsi-meet/jaas-choice\nType: boolean\n"));
    assert!(std::fs::read_to_string(control.join("config"))
        .unwrap()
        .contains("jitsi-meet/cert-choice"));
    assert_eq!(std::fs::read_dir(&debs).unwrap().count(), PACKAGES.len());

    // With another key the same repository must not verify.
    let other = other_keyring(tmp.path());
    let bad = Apt::new(
        &tmp.path().join("apt-bad"),
        &format!("deb [signed-by={}] {url} stable/", other.display()),
    );
    let err = bad
        .update()
        .expect_err("apt-get update trusted the stand-in with a different key")
        .to_string();
    assert!(
        err.contains("NO_PUBKEY") || err.contains("not signed"),
        "{err}"
    );
    assert!(
        bad.cmd("apt-cache")
            .args(["show", "jitsi-meet"])
            .run()
            .is_err(),
        "packages listed although the signature did not verify"
    );
    drop(server);
}

/// A stand-in daemon extracted from its package, on a free port, reading
/// `conf`; stopped on drop.
struct Daemon {
    child: Child,
    port: u16,
}

impl Daemon {
    fn start(script: &Path, role: &str, conf: &Path) -> Daemon {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("no free loopback port")
            .port();
        let child = Command::new("python3")
            .arg(script)
            .arg(role)
            .env("STANDIN_CONF", conf)
            .env("STANDIN_PORT", port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("could not start the stand-in daemon with python3");
        let daemon = Daemon { child, port };
        // It reads its configuration with `hocon` (Ruby) before listening.
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the stand-in {role} did not listen on 127.0.0.1:{port} within 60 s"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        daemon
    }

    fn health(&self) -> u16 {
        match ureq::get(&format!("http://127.0.0.1:{}/about/health", self.port)).call() {
            Ok(response) => response.status(),
            Err(ureq::Error::Status(code, _)) => code,
            Err(e) => panic!("no answer from the stand-in on port {}: {e}", self.port),
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn standin_daemons_turn_healthy_with_the_secure_domain_edits() {
    need_tools();
    if let Err(missing) = require_tools(&[HostTool {
        program: "hocon",
        package: "ruby-hocon",
    }]) {
        panic!("the stand-in daemons need host tools: {missing}");
    }
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    build_repo(&repo);
    let unpacked = tmp.path().join("unpacked");
    for deb in std::fs::read_dir(repo.join("stable")).unwrap() {
        let deb = deb.unwrap().path();
        let name = deb.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("jitsi-videobridge2_") || name.starts_with("jicofo_") {
            Cmd::new("dpkg-deb")
                .arg("-x")
                .arg(&deb)
                .arg(&unpacked)
                .run()
                .unwrap();
        }
    }
    let jvb_daemon = unpacked.join("usr/share/jitsi-standin/standin-daemon");
    let jicofo_daemon = unpacked.join("usr/share/jitsi-standin/standin-daemon-jicofo");

    // Files in the shape the stand-in postinst scripts write them.
    let root = tmp.path().join("root");
    let jvb_conf = root.join(balcao::appliance::jitsi::paths::JVB_CONF);
    let jicofo_conf = root.join(balcao::appliance::jitsi::paths::JICOFO_CONF);
    std::fs::create_dir_all(jvb_conf.parent().unwrap()).unwrap();
    std::fs::create_dir_all(jicofo_conf.parent().unwrap()).unwrap();
    std::fs::write(
        &jvb_conf,
        "videobridge {\n    websockets {\n        enabled = true\n    }\n}\nice4j {\n    harvest {\n        mapping {\n            stun {\n                addresses = [ \"meet-jit-si-turnrelay.jitsi.net:443\" ]\n            }\n        }\n    }\n}\n",
    )
    .unwrap();
    std::fs::write(
        &jicofo_conf,
        "jicofo {\n    xmpp: {\n      client: {\n        username: \"focus\"\n      }\n    }\n}\n",
    )
    .unwrap();

    // Before: the bridge has no address, jicofo no health checks.
    assert_eq!(
        Daemon::start(&jvb_daemon, "videobridge", &jvb_conf).health(),
        500
    );
    assert_eq!(
        Daemon::start(&jicofo_daemon, "jicofo", &jicofo_conf).health(),
        404
    );

    let domain = balcao::appliance::jitsi::Domain::parse("meet.example.org").unwrap();
    for edit in
        balcao::appliance::jitsi::secure_domain_edits(&domain, None, "10.0.0.5".parse().unwrap())
    {
        if edit.path.ends_with("jvb.conf") || edit.path.ends_with("jicofo.conf") {
            edit.apply_at(&root)
                .unwrap_or_else(|e| panic!("{}: {e}", edit.path.display()));
        }
    }

    // After a restart (the daemons read their configuration at start).
    assert_eq!(
        Daemon::start(&jvb_daemon, "videobridge", &jvb_conf).health(),
        200
    );
    assert_eq!(
        Daemon::start(&jicofo_daemon, "jicofo", &jicofo_conf).health(),
        200
    );
}
