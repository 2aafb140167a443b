//! The appliance's certificate, from first boot on: a self-signed one so
//! nginx starts at all, then Let's Encrypt (or another ACME CA) through
//! Debian's certbot, or the court's own certificate checked and installed by
//! `balcaoctl tls use`. Every certificate lands where Jitsi's nginx site and
//! coturn read it (`install`), and what is installed is recorded as facts of
//! the first-boot step `tls` in the state file (fingerprint, issuer, expiry,
//! and a `warning` while a Let's Encrypt attempt is pending a retry).
//!
//! Pipeline: `selfsigned` (always first) -> `preflight` (DNS and port 80,
//! before spending the CA's rate limit) -> `acme` (certbot; its deploy hook
//! calls back into `install`) -> `retry` (timer with back-off on failure).
//! `own` checks a court's certificate; `cert` reads certificates; `cli` is
//! `balcaoctl tls`.

pub mod acme;
pub mod cert;
pub mod cli;
pub mod install;
pub mod own;
pub mod preflight;
pub mod retry;
pub mod selfsigned;

use super::root::FileError;
use crate::command::CommandError;

/// Jitsi's folder for the site certificate (jitsi-meet-web-config, nginx site
/// `ssl_certificate /etc/jitsi/meet/DOMAIN.crt`).
pub const JITSI_CERT_DIR: &str = "/etc/jitsi/meet";
/// Where nginx serves `/.well-known/acme-challenge/` from on port 80 (Jitsi's
/// nginx site, `root /usr/share/jitsi-meet`).
pub const WEBROOT: &str = "/usr/share/jitsi-meet";
/// coturn's configuration, whose `cert=` and `pkey=` lines name the files it reads.
pub const TURNSERVER_CONF: &str = "/etc/turnserver.conf";
/// The shell wrapper certbot runs after each issuance or renewal (overlay).
pub const DEPLOY_HOOK: &str = "/usr/lib/balcao/tls-deploy-hook";
/// The timer that retries a failed Let's Encrypt attempt (overlay).
pub const RETRY_TIMER: &str = "balcao-tls-retry.timer";
/// Let's Encrypt's production ACME directory, used when `tls.acme_directory` is unset.
pub const LETSENCRYPT_DIRECTORY: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// Debian's CA bundle (package ca-certificates), trusted for `tls use` chains.
pub const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The state-file step the facts below belong to (shared with the login message).
pub const STEP: &str = crate::appliance::message::TLS_STEP;
/// SHA-256 of the installed certificate (DER), colon hex.
pub const FACT_FINGERPRINT: &str = crate::appliance::message::FINGERPRINT_FACT;
pub const FACT_ISSUER: &str = "issuer";
/// Expiry, `YYYY-MM-DD HH:MM UTC`.
pub const FACT_EXPIRES: &str = "expires";
/// `self-signed`, `letsencrypt` or `own`.
pub const FACT_SOURCE: &str = "source";
/// Set while the appliance runs on a certificate browsers refuse; shown by
/// `balcaoctl status`.
pub const FACT_WARNING: &str = crate::appliance::status::WARNING_FACT;
/// Failed Let's Encrypt attempts in a row.
pub const FACT_ATTEMPTS: &str = "attempts";
/// Seconds since the epoch when the retry timer may try again.
pub const FACT_NEXT_RETRY: &str = "next_retry";

/// The certificate and key files Jitsi's nginx site reads for `domain`.
pub fn jitsi_paths(domain: &str) -> (String, String) {
    (
        format!("{JITSI_CERT_DIR}/{domain}.crt"),
        format!("{JITSI_CERT_DIR}/{domain}.key"),
    )
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error(transparent)]
    Cert(#[from] cert::CertError),
    #[error(transparent)]
    Own(#[from] own::Refused),
    #[error(transparent)]
    State(#[from] crate::appliance::state::StateError),
    #[error(transparent)]
    Setup(#[from] crate::appliance::setup::SetupError),
    #[error("{0}")]
    Other(String),
}
