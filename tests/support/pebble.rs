//! Pebble, Let's Encrypt's test ACME server, with its DNS
//! (pebble-challtestsrv), both from Debian's `pebble` package, on this
//! host's loopback for the TLS tests. Included with `#[path]` by
//! tests/tls_pebble.rs and tests/image_appliance.rs. Every process started
//! here is killed when its handle is dropped, pass or fail.
#![allow(dead_code)]

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A background process; killed when dropped.
pub struct Process {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Process {
    pub fn start(name: &'static str, cmd: &mut Command, log: PathBuf) -> Process {
        let out = fs::File::create(&log).unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("could not start {name} (apt-get install pebble): {e}"));
        Process { name, child, log }
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the process accepts TCP connections on 127.0.0.1:`port`.
    pub fn wait_for_port(&mut self, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("{} exited ({status}):\n{}", self.name, self.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("{} did not listen on {port}:\n{}", self.name, self.log());
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port free on 127.0.0.1 right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl (apt-get install openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A DNS server (pebble-challtestsrv) on `listen` (`ADDRESS:PORT`, UDP and
/// TCP) that answers `ipv4` for every name and has no AAAA records.
pub fn dns_server(listen: &str, ipv4: &str, log: PathBuf) -> Process {
    let mut server = Process::start(
        "pebble-challtestsrv",
        Command::new("pebble-challtestsrv")
            .args(["-defaultIPv4", ipv4, "-defaultIPv6", ""])
            .args(["-dns01", listen])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args(["-management", &format!("127.0.0.1:{}", free_port())]),
        log,
    );
    let port: u16 = listen.rsplit(':').next().unwrap().parse().unwrap();
    server.wait_for_port(port);
    server
}

/// Pebble and the DNS it resolves challenge names with (every name is
/// 127.0.0.1), validating HTTP-01 on 127.0.0.1:`http_port`.
pub struct Pebble {
    /// The ACME server: `https://127.0.0.1:PORT/dir`.
    pub acme_port: u16,
    /// The CA that signed Pebble's own HTTPS certificate (PEM file), for
    /// clients of the ACME API; not the CA of the certificates it issues.
    pub api_ca: PathBuf,
    management_port: u16,
    pebble: Process,
    _dns: Process,
}

impl Pebble {
    /// Starts both in `work`; Pebble's HTTPS certificate names `localhost`,
    /// 127.0.0.1 and the `extra_ips` (e.g. 10.0.2.2, the host as a QEMU
    /// guest on user networking reaches it).
    pub fn start(work: &Path, http_port: u16, extra_ips: &[&str]) -> Pebble {
        let pki = work.join("pebble-pki");
        fs::create_dir_all(&pki).unwrap();
        openssl(
            &pki,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-days",
                "30",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-subj",
                "/CN=Pebble API test CA",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
        let mut san = String::from("DNS:localhost,IP:127.0.0.1");
        for ip in extra_ips {
            san.push_str(&format!(",IP:{ip}"));
        }
        fs::write(
            pki.join("ext.cnf"),
            format!("basicConstraints = critical,CA:FALSE\nextendedKeyUsage = serverAuth\nsubjectAltName = {san}\n"),
        )
        .unwrap();
        openssl(
            &pki,
            &[
                "req",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                "pebble.key",
                "-out",
                "pebble.csr",
                "-subj",
                "/CN=localhost",
            ],
        );
        openssl(
            &pki,
            &[
                "x509",
                "-req",
                "-in",
                "pebble.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "30",
                "-extfile",
                "ext.cnf",
                "-out",
                "pebble.pem",
            ],
        );

        let dns_port = free_port();
        let dns = dns_server(
            &format!("127.0.0.1:{dns_port}"),
            "127.0.0.1",
            work.join("pebble-dns.log"),
        );
        let acme_port = free_port();
        let management_port = free_port();
        let config = serde_json::json!({
            "pebble": {
                "listenAddress": format!("127.0.0.1:{acme_port}"),
                "managementListenAddress": format!("127.0.0.1:{management_port}"),
                "certificate": pki.join("pebble.pem"),
                "privateKey": pki.join("pebble.key"),
                "httpPort": http_port,
                "tlsPort": free_port(),
                "ocspResponderURL": "",
                "externalAccountBindingRequired": false
            }
        });
        fs::write(work.join("pebble.json"), config.to_string()).unwrap();
        let mut pebble = Process::start(
            "pebble",
            Command::new("pebble")
                .arg("-config")
                .arg(work.join("pebble.json"))
                .args(["-dnsserver", &format!("127.0.0.1:{dns_port}")])
                .env("PEBBLE_VA_NOSLEEP", "1")
                .env("PEBBLE_WFE_NONCEREJECT", "0"),
            work.join("pebble.log"),
        );
        pebble.wait_for_port(acme_port);
        Pebble {
            acme_port,
            api_ca: pki.join("ca.pem"),
            management_port,
            pebble,
            _dns: dns,
        }
    }

    pub fn log(&self) -> String {
        self.pebble.log()
    }

    /// The root Pebble signs certificates with (made afresh at each start),
    /// from its management API.
    pub fn issuing_root(&self) -> String {
        let out = Command::new("curl")
            .args(["-sS", "--fail", "--max-time", "10", "--cacert"])
            .arg(&self.api_ca)
            .arg(format!(
                "https://127.0.0.1:{}/roots/0",
                self.management_port
            ))
            .output()
            .expect("curl (apt-get install curl)");
        assert!(
            out.status.success(),
            "Pebble's root: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}
