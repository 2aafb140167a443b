//! The `tls` step: a certificate nginx and coturn can start with, then the
//! one browsers accept. Every mode first makes sure a certificate for the
//! domain is installed (a self-signed one when nothing usable is there).
//! `letsencrypt` then checks DNS and port 80 and asks the CA through
//! certbot; when that fails the step still counts as done (the appliance
//! works, with a warning in `balcaoctl status`) and the retry timer takes
//! over. `own` waits for `balcaoctl tls use`; `self-signed` stops there.
//! Facts: fingerprint, issuer, expiry and source of the installed
//! certificate, plus the pending reason and attempt count.

use super::{Context, Facts, Step, StepError};
use crate::appliance::setup;
use crate::appliance::state::now;
use crate::appliance::tls::acme::{Certbot, Request};
use crate::appliance::tls::own::{self, OwnFiles};
use crate::appliance::tls::preflight::Network;
use crate::appliance::tls::retry::{self, Attempt};
use crate::appliance::tls::{cli, selfsigned, TlsError, FACT_WARNING};
use crate::appliance::Lang;

#[derive(Default)]
pub struct Tls {
    /// certbot as the appliance runs it; tests give other folders.
    pub certbot: Certbot,
}

impl From<TlsError> for StepError {
    fn from(e: TlsError) -> StepError {
        match e {
            TlsError::File(f) => StepError::File(f),
            TlsError::Command(c) => StepError::Command(c),
            other => StepError::Check(other.to_string()),
        }
    }
}

impl Tls {
    /// The step's work with the network given (tests use loopback).
    pub fn apply_with(&self, ctx: &Context, net: &Network) -> Result<Facts, StepError> {
        let domain = &ctx.setup.domain;
        // Facts of an earlier run carry the retry count over a resume.
        let mut facts = ctx
            .state
            .record(self.name())
            .map(|r| r.facts.clone())
            .unwrap_or_default();
        match ctx.setup.tls_mode.as_str() {
            "letsencrypt" => {
                let attempt = Attempt {
                    root: ctx.root,
                    system: ctx.system,
                    certbot: &self.certbot,
                    request: Request {
                        domain,
                        email: &ctx.setup.email,
                        directory: ctx.setup.acme_directory.as_deref(),
                    },
                    network: net,
                };
                retry::attempt(&attempt, &mut facts)?;
            }
            mode => {
                let (mut info, _) = selfsigned::ensure(ctx.root, ctx.system, domain)?;
                retry::clear_pending(&mut facts);
                retry::set_timer(ctx.root, ctx.system, false)?;
                let mut refusal = None;
                if mode == "own" {
                    if let Some(files) = own_files(ctx)? {
                        match own::use_own(ctx.root, ctx.system, domain, &files, now() as i64) {
                            Ok((checked, _)) => info = checked.leaf,
                            Err(TlsError::Own(refused)) => refusal = Some(refused.to_string()),
                            Err(other) => return Err(other.into()),
                        }
                    }
                }
                let source = retry::source_of(&info, false);
                retry::describe(&mut facts, &info, source);
                if mode == "own" && info.self_issued() {
                    let why = match refusal {
                        Some(reason) => format!("o certificado de tls.cert foi recusado: {reason}"),
                        None => "o certificado do tribunal ainda não foi instalado".into(),
                    };
                    facts.insert(
                        FACT_WARNING.into(),
                        format!("modo own: usando certificado autoassinado; {why}; instale-o com `balcaoctl tls use CERT KEY --chain CADEIA` ou corrija tls.cert/tls.key em setup.toml"),
                    );
                }
            }
        }
        Ok(facts)
    }
}

/// The court's certificate files named in setup.toml (`tls.cert`,
/// `tls.key`, optional `tls.chain`, `tls.ca`), when both are given.
fn own_files(ctx: &Context) -> Result<Option<OwnFiles>, StepError> {
    let (answers, _) =
        setup::read_preseed(ctx.root).map_err(|e| StepError::Check(e.to_string()))?;
    let path = |key: &str| answers.get(key).map(|p| ctx.root.path(p));
    Ok(match (path("tls.cert"), path("tls.key")) {
        (Some(cert), Some(key)) => Some(OwnFiles {
            cert,
            key,
            chain: path("tls.chain"),
            ca: path("tls.ca"),
        }),
        _ => None,
    })
}

impl Step for Tls {
    fn name(&self) -> &'static str {
        "tls"
    }

    fn title(&self, lang: Lang) -> &'static str {
        lang.t("Certificado TLS", "TLS certificate")
    }

    fn is_done(&self, ctx: &Context) -> Result<bool, StepError> {
        let domain = &ctx.setup.domain;
        Ok(selfsigned::installed(ctx.root, domain)?
            .is_some_and(|info| selfsigned::usable(&info, domain)))
    }

    fn apply(&self, ctx: &Context) -> Result<Facts, StepError> {
        let net = cli::system_network(ctx.root, ctx.system, ctx.setup.public_ip.as_deref());
        self.apply_with(ctx, &net)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::appliance::setup::{Answers, Setup};
    use crate::appliance::state::State;
    use crate::appliance::system::FakeSystem;
    use crate::appliance::tls::{jitsi_paths, FACT_ATTEMPTS, FACT_FINGERPRINT, FACT_SOURCE};
    use crate::appliance::Root;
    use std::time::Duration;

    const DOMAIN: &str = "b.tjxx.jus.br";

    fn setup(mode: &str) -> Setup {
        let mut a = Answers::default();
        a.offer("domain", DOMAIN).unwrap();
        a.offer("email", "a@tjxx.jus.br").unwrap();
        a.offer("admin.user", "ana").unwrap();
        a.offer("tls.mode", mode).unwrap();
        Setup::from_answers(&a).unwrap()
    }

    /// A real self-signed pair from openssl, for FakeSystem to hand out.
    fn real_pair() -> (String, String) {
        crate::appliance::tls::selfsigned::generate(&crate::appliance::system::RealSystem, DOMAIN)
            .expect("this test needs `openssl`: apt-get install openssl")
    }

    fn fake_with_openssl() -> FakeSystem {
        let (cert, key) = real_pair();
        let fake = FakeSystem::new();
        fake.reply("openssl genpkey", &key, true);
        fake.reply("openssl req", &cert, true);
        fake
    }

    #[test]
    fn self_signed_mode_installs_once_and_records_the_fingerprint() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path());
        let fake = fake_with_openssl();
        let setup = setup("self-signed");
        let state = State::default();
        let ctx = Context {
            root: &root,
            system: &fake,
            setup: &setup,
            state: &state,
        };
        let step = Tls::default();
        assert!(!step.is_done(&ctx).unwrap());
        let facts = step.apply(&ctx).unwrap();
        assert!(step.is_done(&ctx).unwrap());
        let (crt, _) = jitsi_paths(DOMAIN);
        let text = std::fs::read(root.path(&crt)).unwrap();
        let info = crate::appliance::tls::cert::parse_first(&text, "x").unwrap();
        assert_eq!(facts[FACT_FINGERPRINT], info.fingerprint);
        assert_eq!(facts[FACT_SOURCE], "self-signed");
        assert!(!facts.contains_key(FACT_WARNING));

        // Again: the valid certificate is kept, openssl is not run again.
        let openssl = || {
            fake.commands()
                .iter()
                .filter(|c| c.starts_with("openssl"))
                .count()
        };
        assert_eq!(openssl(), 2);
        step.apply(&ctx).unwrap();
        assert_eq!(openssl(), 2);
        assert_eq!(std::fs::read(root.path(&crt)).unwrap(), text);
    }

    #[test]
    fn letsencrypt_without_dns_keeps_self_signed_and_schedules_a_retry() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path());
        let fake = fake_with_openssl();
        let setup = setup("letsencrypt");
        let state = State::default();
        let ctx = Context {
            root: &root,
            system: &fake,
            setup: &setup,
            state: &state,
        };
        let nothing = |_: &str| Err(std::io::Error::other("Name or service not known"));
        let net = Network {
            http_port: 9,
            resolve: &nothing,
            local: vec!["192.0.2.10".parse().unwrap()],
            public_ip: None,
            timeout: Duration::from_secs(1),
        };
        let step = Tls::default();
        let facts = step.apply_with(&ctx, &net).unwrap();
        assert!(step.is_done(&ctx).unwrap(), "self-signed is in place");
        let warning = &facts[FACT_WARNING];
        assert!(
            warning.contains("crie o registro A b.tjxx.jus.br -> 192.0.2.10"),
            "{warning}"
        );
        assert_eq!(facts[FACT_ATTEMPTS], "1");
        assert_eq!(facts[FACT_SOURCE], "self-signed");
        // The CA was never asked.
        assert!(
            !fake.commands().iter().any(|c| c.starts_with("certbot")),
            "{:?}",
            fake.commands()
        );

        // A resume counts on from the recorded attempts.
        let mut state = State::default();
        state.set_facts("tls", facts);
        let ctx = Context {
            root: &root,
            system: &fake,
            setup: &setup,
            state: &state,
        };
        let facts = step.apply_with(&ctx, &net).unwrap();
        assert_eq!(facts[FACT_ATTEMPTS], "2");
    }

    #[test]
    fn a_test_root_never_reaches_dns_or_the_ca() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path());
        let fake = fake_with_openssl();
        let setup = setup("letsencrypt");
        let state = State::default();
        let ctx = Context {
            root: &root,
            system: &fake,
            setup: &setup,
            state: &state,
        };
        let facts = Tls::default().apply(&ctx).unwrap();
        assert!(facts[FACT_WARNING].contains("--root"), "{facts:?}");
        assert!(
            fake.commands().iter().all(|c| c.starts_with("openssl")),
            "{:?}",
            fake.commands()
        );
    }

    #[test]
    fn own_mode_installs_the_files_named_in_setup_toml_or_says_why_not() {
        use crate::appliance::root::SETUP_FILE;
        use crate::appliance::system::RealSystem;
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path());
        // The court's certificate: here self-signed, trusted through tls.ca.
        let (cert, key) = real_pair();
        root.write_atomic("/root/tj.crt", cert.as_bytes(), 0o644)
            .unwrap();
        root.write_atomic("/root/tj.key", key.as_bytes(), 0o600)
            .unwrap();
        let preseed = format!(
            "domain = \"{DOMAIN}\"\n[tls]\nmode = \"own\"\ncert = \"/root/tj.crt\"\nkey = \"/root/tj.key\"\nca = \"/root/tj.crt\"\n"
        );
        root.write_atomic(SETUP_FILE, preseed.as_bytes(), 0o600)
            .unwrap();
        let setup = setup("own");
        let state = State::default();
        let ctx = Context {
            root: &root,
            system: &RealSystem,
            setup: &setup,
            state: &state,
        };
        let facts = Tls::default().apply(&ctx).unwrap();
        let want = crate::appliance::tls::cert::parse_first(cert.as_bytes(), "x").unwrap();
        assert_eq!(facts[FACT_FINGERPRINT], want.fingerprint);
        // Self-signed is what this one is; installed from tls.cert all the same.
        let (crt, _) = jitsi_paths(DOMAIN);
        assert_eq!(std::fs::read_to_string(root.path(&crt)).unwrap(), cert);

        // Without the trusted root it is refused, and the reason is shown.
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path());
        root.write_atomic("/root/tj.crt", cert.as_bytes(), 0o644)
            .unwrap();
        root.write_atomic("/root/tj.key", key.as_bytes(), 0o600)
            .unwrap();
        let preseed = preseed.replace("ca = \"/root/tj.crt\"\n", "");
        root.write_atomic(SETUP_FILE, preseed.as_bytes(), 0o600)
            .unwrap();
        let ctx = Context {
            root: &root,
            system: &RealSystem,
            setup: &setup,
            state: &state,
        };
        let facts = Tls::default().apply(&ctx).unwrap();
        assert!(
            facts[FACT_WARNING].contains("tls.cert foi recusado"),
            "{facts:?}"
        );
        assert!(facts[FACT_WARNING].contains("--ca"), "{facts:?}");
        assert_ne!(std::fs::read_to_string(root.path(&crt)).unwrap(), cert);
    }

    #[test]
    fn own_mode_warns_until_tls_use() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path());
        let fake = fake_with_openssl();
        let setup = setup("own");
        let state = State::default();
        let ctx = Context {
            root: &root,
            system: &fake,
            setup: &setup,
            state: &state,
        };
        let facts = Tls::default().apply(&ctx).unwrap();
        assert!(facts[FACT_WARNING].contains("balcaoctl tls use"));
    }
}
