//! The `tls` step's Let's Encrypt path against Pebble, the ACME test server,
//! on loopback only (Debian packages pebble, certbot, openssl):
//! pebble-challtestsrv answers Pebble's DNS with 127.0.0.1 for every name, a
//! small web server in this test plays nginx serving the Jitsi webroot on the
//! port Pebble validates HTTP-01 on, and the real certbot runs with its
//! folders in a temporary directory and REQUESTS_CA_BUNDLE pointing at the
//! throwaway CA that signed Pebble's own HTTPS certificate.
//!
//! Order: the challenge not served (preflight refuses; the CA is not asked),
//! the ACME server unreachable (certbot fails), then success: Pebble's
//! certificate replaces the self-signed one through balcaoctl's deploy hook,
//! `certbot renew --dry-run` passes, and a forced renewal installs a new one.
//! Every process started here is killed when the test ends, pass or fail.

#[path = "support/pebble.rs"]
mod pebble;
mod tls_support;

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use balcao::appliance::setup::{Answers, Setup};
use balcao::appliance::state::{now, State, Status};
use balcao::appliance::steps::tls::Tls;
use balcao::appliance::steps::{Context, Step};
use balcao::appliance::system::{RealSystem, System};
use balcao::appliance::tls::acme::{Certbot, Request};
use balcao::appliance::tls::cert;
use balcao::appliance::tls::cli::renew_now;
use balcao::appliance::tls::preflight::{self, Network};
use balcao::appliance::tls::retry::Outcome;
use balcao::appliance::tls::{
    jitsi_paths, FACT_ATTEMPTS, FACT_FINGERPRINT, FACT_NEXT_RETRY, FACT_SOURCE, FACT_WARNING,
    WEBROOT,
};
use balcao::appliance::Root;
use pebble::{dns_server, free_port, Pebble};
use tls_support::{appliance_root, balcaoctl_tls, require_tool, text, BALCAOCTL, DOMAIN};

/// Plays nginx's port 80: serves files under `webroot` for any Host.
struct WebServer {
    port: u16,
    /// When set, only balcao's own preflight files are served: the CA's
    /// challenge gets a 404, as when port 80 reaches another machine.
    preflight_only: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl WebServer {
    fn start(webroot: PathBuf) -> WebServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let preflight_only = Arc::new(AtomicBool::new(false));
        let only = preflight_only.clone();
        let thread = std::thread::spawn(move || {
            while !stopping.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let _ = serve_one(stream, &webroot, only.load(Ordering::SeqCst));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        WebServer {
            port,
            preflight_only,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for WebServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve_one(stream: TcpStream, webroot: &Path, preflight_only: bool) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
            break;
        }
    }
    let safe = !path.contains("..")
        && path.starts_with("/.well-known/acme-challenge/")
        && (!preflight_only || path.contains("balcao-preflight-"));
    let body = if safe {
        fs::read(webroot.join(path.trim_start_matches('/'))).ok()
    } else {
        None
    };
    let mut stream = stream;
    match body {
        Some(b) => {
            write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                b.len()
            )?;
            stream.write_all(&b)?;
        }
        None => stream.write_all(
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )?,
    }
    stream.flush()
}

fn setup(directory: &str) -> Setup {
    let mut a = Answers::default();
    a.offer("domain", DOMAIN).unwrap();
    a.offer("email", "ti@tjxx.jus.br").unwrap();
    a.offer("admin.user", "atendimento").unwrap();
    a.offer("tls.mode", "letsencrypt").unwrap();
    a.offer("tls.acme_directory", directory).unwrap();
    Setup::from_answers(&a).unwrap()
}

fn loopback(_: &str) -> std::io::Result<Vec<IpAddr>> {
    Ok(vec![IpAddr::from([127, 0, 0, 1])])
}

#[test]
fn pebble_failure_paths_then_issuance_renewal_and_deploy_hook() {
    for (program, package) in [
        ("pebble", "pebble"),
        ("pebble-challtestsrv", "pebble"),
        ("certbot", "certbot"),
        ("openssl", "openssl"),
        ("dig", "bind9-dnsutils"),
    ] {
        require_tool(program, package);
    }
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();

    // The appliance root and its webroot, served by the stand-in nginx.
    let root_dir = work.join("root");
    appliance_root(&root_dir, "letsencrypt");
    let root = Root::new(&root_dir);
    fs::create_dir_all(root.path(WEBROOT)).unwrap();
    let web = WebServer::start(root.path(WEBROOT));

    // Pebble, validating HTTP-01 on the stand-in nginx's port; its DNS
    // gives 127.0.0.1 for every name.
    let pebble = Pebble::start(work, web.port, &[]);
    let acme_port = pebble.acme_port;

    // The appliance's own DNS check, with the real `dig`, against a DNS
    // server like the court's.
    let dns_port = free_port();
    let dns = dns_server(
        &format!("127.0.0.1:{dns_port}"),
        "192.0.2.80",
        work.join("dns.log"),
    );
    assert_eq!(
        preflight::dns_lookup(DOMAIN, &[IpAddr::from([127, 0, 0, 1])], dns_port)
            .unwrap_or_else(|e| panic!("{e}\n{}", dns.log())),
        [IpAddr::from([192, 0, 2, 80])]
    );
    drop(dns);
    let silent = preflight::dns_lookup(DOMAIN, &[IpAddr::from([127, 0, 0, 1])], free_port())
        .unwrap_err()
        .to_string();
    assert!(silent.contains("nenhum servidor DNS respondeu"), "{silent}");
    let directory = format!("https://127.0.0.1:{acme_port}/dir");

    // certbot with its folders here, trusting the throwaway CA, and
    // balcaoctl's deploy hook working on the temporary root.
    let certbot = Certbot {
        program: "certbot".into(),
        config_dir: Some(work.join("letsencrypt")),
        work_dir: Some(work.join("certbot-work")),
        logs_dir: Some(work.join("certbot-logs")),
        env: vec![(
            "REQUESTS_CA_BUNDLE".into(),
            pebble.api_ca.display().to_string(),
        )],
        deploy_hook: format!("{BALCAOCTL} tls --root {} deploy-hook", root_dir.display()),
    };
    let step = Tls {
        certbot: certbot.clone(),
    };
    let (crt, key) = jitsi_paths(DOMAIN);
    let net_to = |port: u16| Network {
        http_port: port,
        resolve: &loopback,
        local: vec![IpAddr::from([127, 0, 0, 1])],
        public_ip: None,
        timeout: Duration::from_secs(5),
    };

    // 1. Nothing serves the challenge: preflight says so, the CA is not asked.
    let good = setup(&directory);
    let mut state = State::default();
    let closed = free_port();
    let facts = {
        let ctx = Context {
            root: &root,
            system: &RealSystem,
            setup: &good,
            state: &state,
        };
        let facts = step.apply_with(&ctx, &net_to(closed)).unwrap();
        assert!(step.is_done(&ctx).unwrap(), "the self-signed one serves");
        facts
    };
    let warning = &facts[FACT_WARNING];
    eprintln!("warning: {warning}");
    assert!(
        warning.contains("o nginx não serve /.well-known/acme-challenge/"),
        "{warning}"
    );
    assert!(warning.contains("nova tentativa automática"), "{warning}");
    assert_eq!(facts[FACT_ATTEMPTS], "1");
    assert_eq!(facts[FACT_SOURCE], "self-signed");
    let next: u64 = facts[FACT_NEXT_RETRY].parse().unwrap();
    assert!(
        next >= now() + 800 && next <= now() + 900,
        "15 minutes: {next}"
    );
    assert!(
        !work.join("letsencrypt").exists(),
        "certbot must not run when preflight fails"
    );
    let self_signed = fs::read(root.path(&crt)).unwrap();
    let info = cert::parse_first(&self_signed, "crt").unwrap();
    assert!(info.self_issued() && info.covers(DOMAIN));
    // As the runner records it: done, with a warning.
    state.mark("tls", Status::Done, None);
    state.set_facts("tls", facts);
    state.save(&root).unwrap();

    // The pending retry shows in both status screens.
    let shown = balcaoctl_tls(&root_dir, &["status"]);
    assert!(
        text(&shown.stdout).contains("Pendente:"),
        "{}",
        text(&shown.stdout)
    );
    let overall = Command::new(BALCAOCTL)
        .args(["status", "--root"])
        .arg(&root_dir)
        .output()
        .unwrap();
    assert!(!overall.status.success());
    assert!(
        text(&overall.stdout).contains("[atenção]"),
        "{}",
        text(&overall.stdout)
    );

    eprintln!("{:?} 1 preflight refusal done", started.elapsed());
    // 2. The ACME server cannot be reached: certbot fails, self-signed stays.
    let down = setup(&format!("https://127.0.0.1:{}/dir", free_port()));
    let facts = {
        let ctx = Context {
            root: &root,
            system: &RealSystem,
            setup: &down,
            state: &state,
        };
        step.apply_with(&ctx, &net_to(web.port)).unwrap()
    };
    let warning = &facts[FACT_WARNING];
    eprintln!("warning: {warning}");
    assert!(
        warning.contains("não foi possível falar com o servidor ACME"),
        "{warning}"
    );
    assert_eq!(facts[FACT_ATTEMPTS], "2", "the count goes on");
    let next: u64 = facts[FACT_NEXT_RETRY].parse().unwrap();
    assert!(next > now() + 3000, "one hour after the second failure");
    assert_eq!(
        fs::read(root.path(&crt)).unwrap(),
        self_signed,
        "self-signed kept"
    );
    state.set_facts("tls", facts);
    state.save(&root).unwrap();

    eprintln!("{:?} 2 unreachable ACME done", started.elapsed());

    // 2b. Port 80 looks fine from here but the CA's challenge goes unanswered
    //     (as when DNS or NAT sends it elsewhere): certbot's own reason.
    web.preflight_only.store(true, Ordering::SeqCst);
    let facts = {
        let ctx = Context {
            root: &root,
            system: &RealSystem,
            setup: &good,
            state: &state,
        };
        step.apply_with(&ctx, &net_to(web.port)).unwrap()
    };
    web.preflight_only.store(false, Ordering::SeqCst);
    let warning = &facts[FACT_WARNING];
    eprintln!("warning: {warning}");
    assert!(
        warning.contains("não conseguiu validar http://balcao.tjxx.jus.br/")
            && warning.contains("porta TCP 80"),
        "{warning}"
    );
    assert!(warning.contains("404"), "certbot's detail: {warning}");
    assert_eq!(facts[FACT_ATTEMPTS], "3");
    assert_eq!(
        fs::read(root.path(&crt)).unwrap(),
        self_signed,
        "self-signed kept"
    );
    state.set_facts("tls", facts);
    state.save(&root).unwrap();
    eprintln!(
        "{:?} 2b challenge refused by the CA done",
        started.elapsed()
    );
    // 3. Pebble answers: its certificate replaces the self-signed one.
    let facts = {
        let ctx = Context {
            root: &root,
            system: &RealSystem,
            setup: &good,
            state: &state,
        };
        let facts = step
            .apply_with(&ctx, &net_to(web.port))
            .unwrap_or_else(|e| panic!("{e}\npebble:\n{}", pebble.log()));
        assert!(step.is_done(&ctx).unwrap());
        facts
    };
    assert!(
        !facts.contains_key(FACT_WARNING),
        "{facts:?}\npebble log:\n{}",
        pebble.log()
    );
    assert_eq!(facts[FACT_SOURCE], "letsencrypt");
    assert!(!facts.contains_key(FACT_ATTEMPTS));
    let live = work.join(format!("letsencrypt/live/{DOMAIN}"));
    let installed = fs::read(root.path(&crt)).unwrap();
    assert_eq!(installed, fs::read(live.join("fullchain.pem")).unwrap());
    assert_eq!(
        fs::read(root.path(&key)).unwrap(),
        fs::read(live.join("privkey.pem")).unwrap()
    );
    let issued = cert::parse_first(&installed, "crt").unwrap();
    assert!(!issued.self_issued(), "{}", issued.issuer);
    assert!(issued.issuer.contains("Pebble"), "{}", issued.issuer);
    assert_eq!(issued.names, [DOMAIN]);
    assert_eq!(facts[FACT_FINGERPRINT], issued.fingerprint);
    // No challenge or preflight file is left in the webroot.
    let left: Vec<_> = fs::read_dir(root.path(&format!("{WEBROOT}/.well-known/acme-challenge")))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");

    // The deploy hook ran: certbot keeps it for renewals, and it recorded
    // the certificate in the state file itself (nobody held the lock).
    let renewal =
        fs::read_to_string(work.join(format!("letsencrypt/renewal/{DOMAIN}.conf"))).unwrap();
    assert!(
        renewal.contains("deploy-hook") || renewal.contains("renew_hook"),
        "{renewal}"
    );
    assert!(renewal.contains(BALCAOCTL), "{renewal}");
    let saved = State::load(&root).unwrap();
    assert_eq!(
        saved.fact("tls", FACT_FINGERPRINT),
        Some(issued.fingerprint.as_str())
    );

    eprintln!("{:?} 3 issued done", started.elapsed());
    // 4. certbot's renewal works with what the step configured.
    // `--server` given, or certbot's dry run would go to LE's staging server.
    let dry = certbot.renew(DOMAIN, &directory, false, true);
    assert!(dry.display().contains(&format!("--server {directory}")));
    RealSystem
        .run(&dry)
        .unwrap_or_else(|e| panic!("{e}\npebble:\n{}", pebble.log()));
    eprintln!("{:?} renew --dry-run passed", started.elapsed());

    // 5. A forced renewal (`balcaoctl tls renew --force`) installs the new one.
    let mut facts = saved.record("tls").unwrap().facts.clone();
    let request = Request {
        domain: DOMAIN,
        email: "ti@tjxx.jus.br",
        directory: Some(&directory),
    };
    let outcome = renew_now(
        &root,
        &RealSystem,
        &certbot,
        request,
        &net_to(web.port),
        true,
        &mut facts,
    )
    .unwrap_or_else(|e| panic!("{e}\npebble:\n{}", pebble.log()));
    let renewed = cert::parse_first(&fs::read(root.path(&crt)).unwrap(), "crt").unwrap();
    assert_ne!(renewed.fingerprint, issued.fingerprint);
    assert_eq!(outcome, Outcome::Issued(renewed.fingerprint.clone()));
    assert_eq!(facts[FACT_FINGERPRINT], renewed.fingerprint);

    drop(pebble);
    drop(web);
}
