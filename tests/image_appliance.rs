//! The appliance end to end, against the STAND-IN Jitsi repository
//! (tests/standin): recipes/balcao-virtual.toml built with Jitsi's key checked
//! and its packages baked and locked; first boot from a NoCloud preseed
//! installs them offline and locks room creation to staff; checked from the
//! host over SSH, HTTPS and XMPP.
//!
//! TLS against Pebble (Let's Encrypt's test CA) on the host's loopback,
//! which the guest reaches as 10.0.2.2: the guest asks a DNS server on the
//! host (pebble-challtestsrv on 127.0.0.1:53), Pebble validates HTTP-01
//! through a port forwarded to the guest's port 80. First boot meets a DNS
//! record that points elsewhere, keeps the self-signed certificate and
//! schedules a retry; once the record is right, `balcaoctl tls renew` gets
//! Pebble's certificate, which nginx then serves to the host.
//!
//! The private counter with real XMPP clients (tests/lobby/scenario.py,
//! `--appliance`) through an SSH tunnel to the guest's prosody.

#[path = "support/pebble.rs"]
mod pebble;
mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use balcao::qemu::{BootSpec, Firmware, Vm};
use pebble::Pebble;
use support::*;

const DOMAIN: &str = "balcao.tjteste.jus.br";
const STAFF_PASSWORD: &str = "senha-do-servidor-123";
/// The host as a QEMU guest on user networking sees it.
const GUEST_HOST: &str = "10.0.2.2";
/// The guest's own address on QEMU's user network.
const GUEST_ADDRESS: &str = "10.0.2.15";
/// An address that is not the guest's (TEST-NET-1).
const ELSEWHERE: &str = "192.0.2.80";

/// The DNS server the guest asks (its resolved is pointed at the host):
/// every name is `address`. Port 53, the only one a resolver asks.
fn guest_dns(dir: &Path, address: &str) -> pebble::Process {
    pebble::dns_server(
        "127.0.0.1:53",
        address,
        dir.join(format!("guest-dns-{address}.log")),
    )
}

/// The stand-in repository, served on 127.0.0.1 while the value lives.
struct Standin {
    dir: PathBuf,
    port: u16,
    server: Child,
}

impl Standin {
    fn start(name: &str) -> Standin {
        let dir = test_dir().join(name);
        let _ = std::fs::remove_dir_all(&dir);
        run(Command::new(repo().join("tests/standin/build-repo")).arg(&dir));
        let port = balcao::qemu::free_port().unwrap();
        let server = Command::new("python3")
            .args([
                "-m",
                "http.server",
                "--bind",
                "127.0.0.1",
                &port.to_string(),
                "--directory",
            ])
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 serves the stand-in repository");
        std::thread::sleep(Duration::from_secs(1));
        Standin { dir, port, server }
    }

    fn fingerprint(&self) -> String {
        std::fs::read_to_string(self.dir.join("standin-key.fingerprint"))
            .unwrap()
            .trim()
            .to_owned()
    }

    /// `--repo` pointing the recipe's Jitsi repository here.
    fn repo_arg(&self, fingerprint: &str) -> String {
        format!(
            "jitsi=http://127.0.0.1:{},key={},fingerprint={fingerprint}",
            self.port,
            self.dir.join("standin-key.gpg.key").display()
        )
    }
}

impl Drop for Standin {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

/// What a finished command printed, standard output then standard error.
fn printed(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Where the appliance's root filesystem is cached: its own folder, emptied
/// at each run, because each run's stand-in key makes a new 1.2 GB entry.
fn appliance_cache() -> PathBuf {
    test_dir().join("cache-appliance")
}

fn balcao_build(recipe: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_balcao"))
        .arg("build")
        .arg(recipe)
        .arg("--out")
        .arg(out)
        .arg("--balcaoctl")
        .arg(env!("CARGO_BIN_EXE_balcaoctl"))
        .arg("--cache")
        .arg(appliance_cache())
        .args(extra)
        .output()
        .unwrap()
}

/// An SSH tunnel from a port on the host's loopback to a port on the
/// guest's (prosody's 5222 stays closed in the firewall, as it should);
/// closed when dropped.
struct Tunnel {
    local: u16,
    ssh: Child,
}

impl Tunnel {
    fn open(key: &SshKey, ssh_port: u16, remote_port: u16) -> Tunnel {
        let local = balcao::qemu::free_port().unwrap();
        let mut ssh = ssh_command(key, ssh_port)
            .args(["-N", "-o", "ExitOnForwardFailure=yes", "-L"])
            .arg(format!("127.0.0.1:{local}:127.0.0.1:{remote_port}"))
            .arg("root@127.0.0.1")
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", local)).is_err() {
            if let Ok(Some(status)) = ssh.try_wait() {
                panic!("the SSH tunnel to the guest's port {remote_port} ended: {status}");
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the SSH tunnel to the guest's port {remote_port} did not open"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        Tunnel { local, ssh }
    }
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        let _ = self.ssh.kill();
        let _ = self.ssh.wait();
    }
}

/// Tries an XMPP login with a real client through an SSH tunnel to the
/// guest's prosody.
fn xmpp_login(key: &SshKey, ssh_port: u16, jid: &str, password: Option<&str>) -> (i32, String) {
    let tunnel = Tunnel::open(key, ssh_port, 5222);
    let mut cmd = Command::new("python3");
    cmd.arg(repo().join("tests/xmpp/login.py"))
        .args(["127.0.0.1", &tunnel.local.to_string(), jid]);
    match password {
        Some(p) => {
            cmd.env("XMPP_PASSWORD", p);
        }
        None => {
            cmd.arg("--anonymous");
        }
    }
    let out = cmd
        .output()
        .expect("python3 with slixmpp (pip install slixmpp)");
    drop(tunnel);
    let text = printed(&out);
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn a_wrong_pinned_fingerprint_stops_the_build_and_names_both() {
    let standin = Standin::start("standin-wrong-key");
    let out = tempfile::tempdir().unwrap();
    let wrong = "0123456789ABCDEF0123456789ABCDEF01234567";
    let result = balcao_build(
        &repo().join("recipes/balcao-virtual.toml"),
        out.path(),
        &[
            "--repo",
            &standin.repo_arg(wrong),
            "--lockfile",
            "/nonexistent/never-written.lock",
        ],
    );
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert_eq!(result.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(wrong) && stderr.contains(&standin.fingerprint()),
        "{stderr}"
    );
    assert!(stderr.contains("recipe pins"), "{stderr}");
    let files: Vec<_> = std::fs::read_dir(out.path()).unwrap().collect();
    assert!(files.is_empty(), "the failed build left files");
}

#[test]
fn the_appliance_installs_jitsi_offline_and_locks_rooms_to_staff() {
    let standin = Standin::start("standin");
    let out = test_dir().join("balcao-virtual");
    let _ = std::fs::remove_dir_all(&out);
    let _ = std::fs::remove_dir_all(appliance_cache());
    let lock_dir = tempfile::tempdir().unwrap();
    let lock = lock_dir.path().join("balcao-virtual.lock");
    let repo_arg = standin.repo_arg(&standin.fingerprint());
    let lock_arg = lock.display().to_string();

    let result = balcao_build(
        &repo().join("recipes/balcao-virtual.toml"),
        &out,
        &[
            "--format",
            "raw,qcow2",
            "--repo",
            &repo_arg,
            "--lockfile",
            &lock_arg,
        ],
    );
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    eprintln!("{}", String::from_utf8_lossy(&result.stdout));
    let locked = std::fs::read_to_string(&lock).unwrap();
    assert!(
        locked.contains("name = \"jitsi-meet\"") && locked.contains("sha256 = "),
        "{locked}"
    );
    let raw = out.join("balcao-virtual-0.1.0.raw");

    // A package that no longer matches the lockfile stops the build.
    let altered_dir = tempfile::tempdir().unwrap();
    let altered = altered_dir.path().join("altered.lock");
    let mut text = locked.clone();
    let at = text.find("sha256 = \"").unwrap() + 10;
    text.replace_range(at..at + 8, "00000000");
    std::fs::write(&altered, text).unwrap();
    let refused = balcao_build(
        &repo().join("recipes/balcao-virtual.toml"),
        altered_dir.path(),
        &[
            "--format",
            "raw",
            "--repo",
            &repo_arg,
            "--lockfile",
            &altered.display().to_string(),
        ],
    );
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("the package was altered") && stderr.contains("--update-lock"),
        "{stderr}"
    );
    assert!(!altered_dir.path().join("balcao-virtual-0.1.0.raw").exists());

    // Pebble on the host; the guest trusts the CA of Pebble's API through
    // cloud-init and asks the host's DNS server, whose record for the
    // domain points elsewhere at first.
    let dir = tempfile::tempdir().unwrap();
    let http_port = pebble::free_port();
    let ca = Pebble::start(dir.path(), http_port, &[GUEST_HOST]);
    let mut dns = guest_dns(dir.path(), ELSEWHERE);
    let api_ca = std::fs::read_to_string(&ca.api_ca).unwrap();
    let mut extra = String::from("ca_certs:\n  trusted:\n    - |\n");
    for line in api_ca.lines() {
        extra.push_str(&format!("      {line}\n"));
    }
    extra.push_str(&format!(
        "bootcmd:\n  - [sh, -c, \"mkdir -p /etc/systemd/resolved.conf.d && printf '[Resolve]\\\\nDNS={GUEST_HOST}\\\\n' > /etc/systemd/resolved.conf.d/balcao-test.conf && systemctl restart systemd-resolved\"]\n"
    ));

    // First boot from a NoCloud preseed.
    let key = SshKey::new();
    let setup = format!(
        "domain = \"{DOMAIN}\"\nemail = \"ti@tjteste.jus.br\"\n[admin]\nuser = \"atendimento\"\npassword = \"{STAFF_PASSWORD}\"\n[tls]\nmode = \"letsencrypt\"\nacme_directory = \"https://{GUEST_HOST}:{}/dir\"\n",
        ca.acme_port
    );
    let seed = nocloud_seed_with(dir.path(), &key, Some(&setup), "appliance-1", &extra);
    let ssh_port = balcao::qemu::free_port().unwrap();
    let https_port = balcao::qemu::free_port().unwrap();
    let mut spec = BootSpec::new(&out.join("balcao-virtual-0.1.0.qcow2"), Firmware::Uefi);
    spec.memory_mib = 3072;
    spec.ssh_port = Some(ssh_port);
    spec.forwards = vec![(https_port, 443), (http_port, 80)];
    spec.extra_drives = vec![seed];

    let _slot = vm_slot();
    let mut vm = Vm::start(&spec).unwrap();
    vm.wait_for(" login:", Duration::from_secs(1200))
        .unwrap_or_else(|e| panic!("first boot of the appliance: {e}"));
    eprintln!(
        "appliance: power-on to login prompt (Jitsi installed) in {:.1} s",
        vm.elapsed().as_secs_f64()
    );
    wait_for_ssh(&key, ssh_port, Duration::from_secs(120));

    // The DNS record pointed elsewhere: the CA was not asked, the
    // self-signed certificate stays, the reason is given and a retry is due.
    let tls = ssh_ok(&key, ssh_port, "balcaoctl tls status");
    assert!(
        tls.contains("autoassinado") && tls.contains("Pendente:") && tls.contains(ELSEWHERE),
        "after first boot with a wrong DNS record:\n{tls}"
    );
    let timer = ssh(&key, ssh_port, "systemctl is-active balcao-tls-retry.timer");
    assert_eq!(timer.1.trim(), "active", "the retry timer: {}", timer.1);
    let root_pem = dir.path().join("pebble-root.pem");
    std::fs::write(&root_pem, ca.issuing_root()).unwrap();
    let verified = |path: &str| {
        Command::new("curl")
            .args(["-sS", "--max-time", "30", "--cacert"])
            .arg(&root_pem)
            .args(["--resolve", &format!("{DOMAIN}:{https_port}:127.0.0.1")])
            .arg(format!("https://{DOMAIN}:{https_port}{path}"))
            .output()
            .unwrap()
    };
    assert!(
        !verified("/").status.success(),
        "the self-signed certificate passed as Pebble's"
    );

    // The record is put right; the renewal gets Pebble's certificate and
    // nginx serves it, with the conference left running.
    drop(dns);
    dns = guest_dns(dir.path(), GUEST_ADDRESS);
    let pids = "systemctl show -p MainPID --value prosody jicofo jitsi-videobridge2";
    let before = ssh_ok(&key, ssh_port, pids);
    let renewed = ssh(&key, ssh_port, "balcaoctl tls renew");
    assert_eq!(
        renewed.0,
        0,
        "balcaoctl tls renew:\n{}\n--- Pebble ---\n{}\n--- DNS ---\n{}",
        renewed.1,
        ca.log(),
        dns.log()
    );
    assert!(renewed.1.contains("certificado em uso"), "{}", renewed.1);
    let page = verified("/");
    assert!(
        page.status.success() && String::from_utf8_lossy(&page.stdout).contains("<html"),
        "nginx does not serve Pebble's certificate: {}",
        String::from_utf8_lossy(&page.stderr)
    );
    assert_eq!(
        ssh_ok(&key, ssh_port, pids),
        before,
        "prosody, jicofo or the videobridge restarted for the new certificate"
    );
    let timer = ssh(&key, ssh_port, "systemctl is-active balcao-tls-retry.timer");
    assert_eq!(timer.1.trim(), "inactive", "the retry timer: {}", timer.1);
    let dry = ssh(&key, ssh_port, "balcaoctl tls renew --dry-run");
    assert!(
        dry.0 == 0 && dry.1.contains("ensaio de renovação aprovado"),
        "renewal dry run:\n{}",
        dry.1
    );
    let tls = ssh_ok(&key, ssh_port, "balcaoctl tls status");
    assert!(
        tls.contains("Pebble") && !tls.contains("Pendente:"),
        "{tls}"
    );

    let status = ssh(&key, ssh_port, "balcaoctl status");
    assert_eq!(
        status.0, 0,
        "balcaoctl status reports a problem:\n{}",
        status.1
    );
    let installed = ssh_ok(&key, ssh_port, "dpkg-query -W -f '${Package} ${Status}\\n' jitsi-meet jitsi-meet-prosody jicofo jitsi-videobridge2");
    assert_eq!(
        installed.matches("install ok installed").count(),
        4,
        "{installed}"
    );

    // The firewall as required.
    let ufw = ssh_ok(&key, ssh_port, "ufw status");
    for rule in [
        "22/tcp",
        "80/tcp",
        "443/tcp",
        "10000/udp",
        "3478/udp",
        "5349/tcp",
    ] {
        assert!(ufw.contains(rule), "{ufw}");
    }
    for closed in ["5222", "5269", "5280", "8080", "8888", "4443"] {
        assert!(!ufw.contains(closed), "port {closed} open:\n{ufw}");
    }

    // HTTPS through nginx, from the host.
    let page = run(Command::new("curl")
        .args([
            "-sk",
            "--max-time",
            "30",
            "--resolve",
            &format!("{DOMAIN}:{https_port}:127.0.0.1"),
        ])
        .arg(format!("https://{DOMAIN}:{https_port}/")));
    assert!(
        page.contains("<html"),
        "nginx did not serve a page:\n{page}"
    );

    // Importing units changes what nginx serves, page and JSON alike.
    let unit = "1ª Vara Cível de Teste";
    assert!(!page.contains(unit));
    ssh_ok(
        &key,
        ssh_port,
        &format!(
            "printf 'nome;cidade;horario\\n{unit};Rio Branco;seg-sex 08:00-18:00\\n' > /tmp/unidades.csv \
             && balcaoctl units import /tmp/unidades.csv"
        ),
    );
    let fetch = |path: &str| {
        run(Command::new("curl")
            .args([
                "-sk",
                "--max-time",
                "30",
                "--resolve",
                &format!("{DOMAIN}:{https_port}:127.0.0.1"),
            ])
            .arg(format!("https://{DOMAIN}:{https_port}{path}")))
    };
    let page = fetch("/");
    assert!(
        page.contains(unit),
        "the imported unit is not on the page:\n{page}"
    );
    assert!(page.contains("Entrar no balcão"), "{page}");
    let json = fetch("/units.json");
    assert!(
        json.contains(unit),
        "the imported unit is not in units.json:\n{json}"
    );

    // Real XMPP logins.
    let (code, text) = xmpp_login(&key, ssh_port, DOMAIN, None);
    assert_eq!(
        code, 1,
        "anonymous login to {DOMAIN} must be refused: {text}"
    );
    let (code, text) = xmpp_login(
        &key,
        ssh_port,
        &format!("atendimento@{DOMAIN}"),
        Some(STAFF_PASSWORD),
    );
    assert_eq!(code, 0, "the staff account must log in: {text}");
    let (code, text) = xmpp_login(
        &key,
        ssh_port,
        &format!("atendimento@{DOMAIN}"),
        Some("senha-errada-0000"),
    );
    assert_eq!(code, 1, "a wrong password must be refused: {text}");
    let (code, text) = xmpp_login(&key, ssh_port, &format!("guest.{DOMAIN}"), None);
    assert_eq!(
        code, 0,
        "anonymous login to guest.{DOMAIN} must work: {text}"
    );

    // The private counter, with the real prosody and its Jitsi configuration.
    let focus_password = ssh_ok(
        &key,
        ssh_port,
        "hocon -f /etc/jitsi/jicofo/jicofo.conf get jicofo.xmpp.client.password",
    );
    let tunnel = Tunnel::open(&key, ssh_port, 5222);
    let scenario = Command::new("python3")
        .arg(repo().join("tests/lobby/scenario.py"))
        .args(["--appliance", "--port", &tunnel.local.to_string()])
        .args(["--domain", DOMAIN, "--staff", "atendimento"])
        .env("BALCAO_STAFF_PASSWORD", STAFF_PASSWORD)
        .env(
            "BALCAO_FOCUS_PASSWORD",
            focus_password.trim().trim_matches('"'),
        )
        .output()
        .expect("python3 with slixmpp (pip install slixmpp)");
    drop(tunnel);
    let said = printed(&scenario);
    eprintln!("{said}");
    if !(scenario.status.success() && said.contains("all checks passed")) {
        let (_, log) = ssh(&key, ssh_port, "tail -n 40 /var/log/prosody/prosody.log");
        panic!(
            "the private-room story failed in the appliance:\n{said}\n--- prosody's log ---\n{log}"
        );
    }

    // No secret of this instance is in the image file.
    let secrets = ssh_ok(
        &key,
        ssh_port,
        "set -e; cat /etc/machine-id; \
         hocon -f /etc/jitsi/videobridge/jvb.conf get videobridge.apis.xmpp-client.configs.shard.PASSWORD 2>/dev/null || true; \
         hocon -f /etc/jitsi/jicofo/jicofo.conf get jicofo.xmpp.client.password 2>/dev/null || true; \
         sed -n 's/.*external_service_secret *= *\"\\(.*\\)\".*/\\1/p' /etc/prosody/conf.avail/*.cfg.lua; \
         sed -n 's/^static-auth-secret=//p' /etc/turnserver.conf; \
         awk '{print $2}' /etc/ssh/ssh_host_ed25519_key.pub; \
         sed -n 2p /etc/letsencrypt/live/*/privkey.pem",
    );
    let secrets: Vec<&str> = secrets
        .lines()
        .map(|l| l.trim().trim_matches('"'))
        .filter(|l| l.len() >= 16)
        .collect();
    assert!(
        secrets.len() >= 4,
        "too few secrets found to compare: {secrets:?}"
    );
    let patterns = dir.path().join("secrets");
    std::fs::write(&patterns, secrets.join("\n")).unwrap();
    let found = Command::new("grep")
        .args(["-a", "-c", "-F", "-f"])
        .arg(&patterns)
        .arg(&raw)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&found.stdout).trim(),
        "0",
        "a secret of the running appliance is also in the image file"
    );
}
