//! Let's Encrypt (or any ACME CA) through Debian's certbot: `certonly
//! --webroot` on Jitsi's webroot, with balcao's deploy hook, which certbot
//! saves in the renewal file so certbot.timer's renewals install the new
//! certificate too. After certbot returns, the certificate is installed from
//! its `live/DOMAIN/` folder as well: when certbot keeps a still-valid
//! certificate it runs no hook, and the Jitsi files may still hold the
//! self-signed one.

use std::path::{Path, PathBuf};

use super::cert::{self, CertInfo};
use super::install::{self, Installed};
use super::preflight::{self, Network};
use super::{TlsError, DEPLOY_HOOK, LETSENCRYPT_DIRECTORY, WEBROOT};
use crate::appliance::{Lang, Root, System};
use crate::command::{Cmd, CommandError};

/// Runs `$0 "$@"` with its standard output sent to standard error.
pub const MERGE_OUTPUT: &str = "exec \"$0\" \"$@\" 1>&2";

/// certbot's own folders (`/etc/letsencrypt` and friends unless given), and
/// what it runs after an issuance.
#[derive(Debug, Clone)]
pub struct Certbot {
    pub program: String,
    pub config_dir: Option<PathBuf>,
    pub work_dir: Option<PathBuf>,
    pub logs_dir: Option<PathBuf>,
    /// Extra environment (tests: REQUESTS_CA_BUNDLE for a private ACME CA).
    pub env: Vec<(String, String)>,
    /// The command line certbot runs after each issuance or renewal.
    pub deploy_hook: String,
}

impl Default for Certbot {
    fn default() -> Certbot {
        Certbot {
            program: "certbot".into(),
            config_dir: None,
            work_dir: None,
            logs_dir: None,
            env: Vec::new(),
            deploy_hook: DEPLOY_HOOK.into(),
        }
    }
}

/// One certificate to ask for.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub domain: &'a str,
    pub email: &'a str,
    /// ACME directory URL; Let's Encrypt production when `None`.
    pub directory: Option<&'a str>,
}

impl Request<'_> {
    pub fn directory(&self) -> &str {
        self.directory.unwrap_or(LETSENCRYPT_DIRECTORY)
    }
}

/// Why no certificate came from the CA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// A check before asking the CA failed; the CA was not asked.
    Preflight(preflight::Problem),
    /// The ACME server could not be reached.
    Unreachable { directory: String, detail: String },
    /// The CA could not fetch or accept the challenge file.
    Challenge { domain: String, detail: String },
    /// certbot ran and failed otherwise (rate limit, account, ...).
    Certbot { detail: String },
    /// certbot succeeded but its files could not be installed.
    Install { detail: String },
}

impl Failure {
    pub fn message(&self, lang: Lang) -> String {
        match (self, lang) {
            (Failure::Preflight(p), _) => p.message(lang),
            (Failure::Unreachable { directory, detail }, Lang::Pt) => format!(
                "não foi possível falar com o servidor ACME {directory} ({detail}); libere a saída HTTPS (TCP 443) desta máquina ou confira tls.acme_directory"
            ),
            (Failure::Unreachable { directory, detail }, Lang::En) => format!(
                "could not reach the ACME server {directory} ({detail}); allow outgoing HTTPS (TCP 443) from this machine or check tls.acme_directory"
            ),
            (Failure::Challenge { domain, detail }, Lang::Pt) => format!(
                "a autoridade certificadora não conseguiu validar http://{domain}/.well-known/acme-challenge/ ({detail}); confira se, pela internet, o registro DNS de {domain} e a porta TCP 80 (firewall e NAT) chegam a esta máquina"
            ),
            (Failure::Challenge { domain, detail }, Lang::En) => format!(
                "the certificate authority could not validate http://{domain}/.well-known/acme-challenge/ ({detail}); check that, from the internet, {domain}'s DNS record and TCP port 80 (firewall and NAT) reach this machine"
            ),
            (Failure::Certbot { detail }, Lang::Pt) => format!(
                "o certbot não obteve o certificado: {detail} (detalhes em /var/log/letsencrypt/letsencrypt.log)"
            ),
            (Failure::Certbot { detail }, Lang::En) => format!(
                "certbot did not obtain the certificate: {detail} (details in /var/log/letsencrypt/letsencrypt.log)"
            ),
            (Failure::Install { detail }, Lang::Pt) => {
                format!("o certificado foi emitido mas não instalado: {detail}")
            }
            (Failure::Install { detail }, Lang::En) => {
                format!("the certificate was issued but not installed: {detail}")
            }
        }
    }
}

impl Certbot {
    fn base(&self) -> Cmd {
        // certbot says why a challenge failed on stdout and only "Some
        // challenges have failed" on stderr; a failed command's error keeps
        // stderr, so both are sent there.
        let mut cmd = Cmd::new("sh").args(["-c", MERGE_OUTPUT, &self.program]);
        for (flag, dir) in [
            ("--config-dir", &self.config_dir),
            ("--work-dir", &self.work_dir),
            ("--logs-dir", &self.logs_dir),
        ] {
            if let Some(dir) = dir {
                cmd = cmd.arg(flag).arg(dir);
            }
        }
        for (key, value) in &self.env {
            cmd = cmd.env(key, value);
        }
        cmd
    }

    /// certbot's folder for `domain`'s current certificate.
    pub fn live_dir(&self, domain: &str) -> PathBuf {
        self.config_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("/etc/letsencrypt"))
            .join("live")
            .join(domain)
    }

    /// Whether certbot holds a certificate for `domain`.
    pub fn has_lineage(&self, domain: &str) -> bool {
        self.live_dir(domain).join("fullchain.pem").exists()
    }

    /// `certbot certonly --webroot ...` for `req`, with the webroot under `root`.
    pub fn certonly(&self, root: &Root, req: &Request) -> Cmd {
        self.base()
            .args([
                "certonly",
                "--non-interactive",
                "--agree-tos",
                "--no-eff-email",
            ])
            .args(["--webroot", "-w"])
            .arg(root.path(WEBROOT))
            .args(["-d", req.domain, "--cert-name", req.domain])
            .args(["-m", req.email])
            .args(["--server", req.directory()])
            .args(["--keep-until-expiring", "--deploy-hook", &self.deploy_hook])
    }

    /// `certbot renew` for `domain`'s certificate, from the ACME server
    /// `directory` (given explicitly: with `--dry-run` certbot would otherwise
    /// switch to Let's Encrypt's staging server).
    pub fn renew(&self, domain: &str, directory: &str, force: bool, dry_run: bool) -> Cmd {
        let mut cmd = self
            .base()
            .args(["renew", "--non-interactive", "--cert-name", domain])
            .args(["--server", directory])
            // Someone (or the retry timer) is waiting: no random delay of up
            // to 8 minutes, which is for certbot.timer's unattended runs.
            .arg("--no-random-sleep-on-renew");
        if force {
            cmd = cmd.arg("--force-renewal");
        }
        if dry_run {
            cmd = cmd.arg("--dry-run");
        }
        cmd
    }

    /// Installs certbot's current certificate for `domain` where Jitsi reads it.
    pub fn install_live(
        &self,
        root: &Root,
        system: &dyn System,
        domain: &str,
    ) -> Result<(CertInfo, Installed), TlsError> {
        install_lineage(root, system, domain, &self.live_dir(domain))
    }
}

/// Installs `fullchain.pem` and `privkey.pem` of a certbot lineage folder.
pub fn install_lineage(
    root: &Root,
    system: &dyn System,
    domain: &str,
    lineage: &Path,
) -> Result<(CertInfo, Installed), TlsError> {
    let read = |name: &str| {
        let path = lineage.join(name);
        std::fs::read(&path)
            .map_err(|source| crate::appliance::root::FileError::Read { path, source })
    };
    let chain = read("fullchain.pem")?;
    let key = read("privkey.pem")?;
    let info = cert::parse_first(&chain, &lineage.join("fullchain.pem").display().to_string())?;
    let done = install::install(root, system, domain, &chain, &key)?;
    Ok((info, done))
}

/// Preflight, then certbot, then install: the certificate now served.
pub fn obtain(
    root: &Root,
    system: &dyn System,
    certbot: &Certbot,
    req: &Request,
    net: &Network,
) -> Result<CertInfo, Failure> {
    let warnings = preflight::check(root, req.domain, net).map_err(Failure::Preflight)?;
    for warning in warnings {
        tracing::warn!("{warning}");
    }

    if let Err(e) = system.run(&certbot.certonly(root, req)) {
        return Err(match classify(&e, req.directory()) {
            Failure::Certbot { detail } if is_challenge(&detail) => Failure::Challenge {
                domain: req.domain.to_owned(),
                detail,
            },
            other => other,
        });
    }
    certbot
        .install_live(root, system, req.domain)
        .map(|(info, _)| info)
        .map_err(|e| Failure::Install {
            detail: e.to_string(),
        })
}

/// Turns certbot's failure into the reason people can act on.
pub fn classify(error: &CommandError, directory: &str) -> Failure {
    let output = match error {
        CommandError::Failed { output, .. } => output.clone(),
        CommandError::Spawn { source, .. } => {
            return Failure::Certbot {
                detail: format!(
                    "certbot não pôde ser executado ({source}); instale o pacote certbot"
                ),
            }
        }
    };
    let lower = output.to_ascii_lowercase();
    let unreachable = [
        "connection refused",
        "failed to establish a new connection",
        "max retries exceeded",
        "name or service not known",
        "temporary failure in name resolution",
        "network is unreachable",
        "timed out",
    ];
    let detail = summary(&output);
    if lower.contains("unable to connect to acme server")
        || (unreachable.iter().any(|u| lower.contains(u)) && !lower.contains("challenge"))
    {
        Failure::Unreachable {
            directory: directory.to_owned(),
            detail,
        }
    } else {
        Failure::Certbot { detail }
    }
}

/// Whether certbot's summary is about the HTTP-01 challenge (ACME error
/// types `unauthorized`, `connection`, `dns`).
fn is_challenge(detail: &str) -> bool {
    ["Type:   unauthorized", "Type:   connection", "Type:   dns"]
        .iter()
        .any(|t| detail.contains(t))
}

/// The few lines of certbot's output that say what went wrong.
fn summary(output: &str) -> String {
    let wanted: Vec<&str> = output
        .lines()
        .map(str::trim)
        .filter(|l| {
            l.starts_with("Detail:")
                || l.starts_with("Type:")
                || l.starts_with("Domain:")
                || l.contains("Error")
                || l.contains("error")
        })
        .collect();
    let lines = if wanted.is_empty() {
        output
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect()
    } else {
        wanted
    };
    let tail = &lines[lines.len().saturating_sub(4)..];
    tail.join(" / ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certonly_line_has_what_the_appliance_needs() {
        let root = Root::new("/");
        let certbot = Certbot::default();
        let line = certbot
            .certonly(
                &root,
                &Request {
                    domain: "b.tjxx.jus.br",
                    email: "ti@tjxx.jus.br",
                    directory: Some("https://acme.tjxx.jus.br/dir"),
                },
            )
            .display();
        assert_eq!(
            line,
            "sh -c 'exec \"$0\" \"$@\" 1>&2' certbot certonly --non-interactive --agree-tos --no-eff-email --webroot -w /usr/share/jitsi-meet -d b.tjxx.jus.br --cert-name b.tjxx.jus.br -m ti@tjxx.jus.br --server https://acme.tjxx.jus.br/dir --keep-until-expiring --deploy-hook /usr/lib/balcao/tls-deploy-hook"
        );
        let prod = Request {
            domain: "x",
            email: "y",
            directory: None,
        };
        assert_eq!(prod.directory(), LETSENCRYPT_DIRECTORY);
    }

    #[test]
    fn failures_are_told_apart() {
        let status = std::process::Command::new("false").status().unwrap();
        let fail = |output: &str| CommandError::Failed {
            command: "certbot".into(),
            status,
            output: output.into(),
        };
        let down = classify(
            &fail("An unexpected error occurred:\nrequests.exceptions.ConnectionError: HTTPSConnectionPool(host='127.0.0.1', port=14000): Max retries exceeded (Caused by NewConnectionError: Failed to establish a new connection: [Errno 111] Connection refused)"),
            "https://127.0.0.1:14000/dir",
        );
        assert!(matches!(down, Failure::Unreachable { .. }), "{down:?}");
        assert!(down.message(Lang::Pt).contains("TCP 443"));
        let refused = classify(
            &fail("Certbot failed to authenticate some domains (authenticator: webroot).\n  Domain: b.tjxx.jus.br\n  Type:   connection\n  Detail: 127.0.0.1: Fetching http://b.tjxx.jus.br/.well-known/acme-challenge/x: Connection refused\n\nHint: ..."),
            "d",
        );
        let text = refused.message(Lang::Pt);
        assert!(matches!(refused, Failure::Certbot { .. }), "{refused:?}");
        assert!(text.contains("Detail: 127.0.0.1: Fetching"), "{text}");
    }
}
