//! The fallback certificate: self-signed for DOMAIN, so nginx (and with it the
//! ACME challenge on port 80) runs before any CA has answered. Jitsi's own
//! install makes one when its cert-choice is self-signed; that one (or any
//! certificate already installed) is kept when it names DOMAIN in its
//! subjectAltName and is in date, otherwise openssl makes a new one: P-256
//! key, SAN=DOMAIN, two years. The key travels through openssl's stdin and
//! stdout, never through a temporary file.

use super::cert::{self, CertInfo};
use super::install::{self, Installed};
use super::{jitsi_paths, TlsError};
use crate::appliance::state::now;
use crate::appliance::{Root, System};
use crate::command::Cmd;

/// Lifetime of a generated certificate, in days.
pub const DAYS: u32 = 730;

/// The certificate installed at Jitsi's path for `domain`, if any can be read.
pub fn installed(root: &Root, domain: &str) -> Result<Option<CertInfo>, TlsError> {
    let (crt, key) = jitsi_paths(domain);
    let Some(text) = root.read_optional(&crt)? else {
        return Ok(None);
    };
    if !root.exists(&key) {
        return Ok(None);
    }
    Ok(cert::parse_first(text.as_bytes(), &root.path(&crt).display().to_string()).ok())
}

/// Whether `info` can serve `domain` now (browsers aside: self-signed counts).
pub fn usable(info: &CertInfo, domain: &str) -> bool {
    info.covers(domain) && info.in_date(now() as i64)
}

/// Makes sure some certificate for `domain` is installed: keeps a usable one,
/// else generates and installs a self-signed one. Returns what is installed.
pub fn ensure(
    root: &Root,
    system: &dyn System,
    domain: &str,
) -> Result<(CertInfo, Installed), TlsError> {
    if let Some(info) = installed(root, domain)? {
        if usable(&info, domain) {
            return Ok((info, Installed::default()));
        }
        tracing::info!(
            "o certificado instalado não serve para {domain} (nomes {:?}, válido até {}); gerando um autoassinado",
            info.names,
            info.expires_text()
        );
    }
    let (cert_pem, key_pem) = generate(system, domain)?;
    let info = cert::parse_first(cert_pem.as_bytes(), "openssl req -x509")?;
    let done = install::install(
        root,
        system,
        domain,
        cert_pem.as_bytes(),
        key_pem.as_bytes(),
    )?;
    Ok((info, done))
}

/// A new key and self-signed certificate for `domain`, as PEM text.
pub fn generate(system: &dyn System, domain: &str) -> Result<(String, String), TlsError> {
    let key = system
        .run(&Cmd::new("openssl").args([
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ]))?
        .stdout_text();
    let cert = system
        .run(
            &Cmd::new("openssl")
                .args(["req", "-new", "-x509", "-key", "/dev/stdin", "-sha256"])
                .args(["-days", &DAYS.to_string()])
                .args(["-subj", &format!("/CN={domain}")])
                .args(["-addext", &format!("subjectAltName=DNS:{domain}")])
                .args(["-addext", "basicConstraints=critical,CA:FALSE"])
                .args(["-addext", "extendedKeyUsage=serverAuth"])
                .stdin(key.clone()),
        )?
        .stdout_text();
    Ok((cert, key))
}
