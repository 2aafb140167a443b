//! Reading certificates: the PEM blocks of a file, and for each the facts the
//! appliance shows and checks (names, issuer, validity, SHA-256 fingerprint,
//! public key). Parsing is `x509-parser`, so it needs no external program and
//! runs the same in tests; the browser rules for names live here too.

use sha2::{Digest, Sha256};
use x509_parser::extensions::GeneralName;
use x509_parser::pem::Pem;

use crate::appliance::status::format_time;

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("{what}: nenhum certificado PEM (-----BEGIN CERTIFICATE-----) encontrado; use o arquivo em formato PEM (converta DER com `openssl x509 -inform der -in ARQ -out ARQ.pem`)")]
    NoCertificate { what: String },
    #[error("{what}: certificado ilegível ({message}); confira se o arquivo não foi cortado ou alterado")]
    Unreadable { what: String, message: String },
}

/// One certificate, as far as the appliance cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    pub subject: String,
    pub issuer: String,
    /// DNS names of the subjectAltName extension, lower case.
    pub names: Vec<String>,
    /// The subject's common name, when it has one (browsers ignore it for names).
    pub common_name: Option<String>,
    /// Seconds since the epoch.
    pub not_before: i64,
    pub not_after: i64,
    /// SHA-256 of the DER certificate, colon hex upper case.
    pub fingerprint: String,
    /// SubjectPublicKeyInfo, DER.
    pub public_key: Vec<u8>,
    /// Whether it is a CA certificate (basicConstraints CA:TRUE).
    pub is_ca: bool,
    /// The certificate again as one PEM block.
    pub pem: String,
}

impl CertInfo {
    /// Signed by itself (subject and issuer the same).
    pub fn self_issued(&self) -> bool {
        self.subject == self.issuer
    }

    /// Whether one of its names covers `domain` (see [`name_covers`]).
    pub fn covers(&self, domain: &str) -> bool {
        self.names.iter().any(|n| name_covers(n, domain))
    }

    /// Valid at `now` (seconds since the epoch).
    pub fn in_date(&self, now: i64) -> bool {
        self.not_before <= now && now <= self.not_after
    }

    pub fn expires_text(&self) -> String {
        format_time(self.not_after.max(0) as u64)
    }

    pub fn starts_text(&self) -> String {
        format_time(self.not_before.max(0) as u64)
    }

    /// Whole days left at `now` (negative once expired).
    pub fn days_left(&self, now: i64) -> i64 {
        (self.not_after - now).div_euclid(86_400)
    }
}

/// Whether a certificate name covers `domain` as browsers decide: the same
/// name (case aside), or a wildcard `*.rest` for exactly one more label
/// (`*.tjxx.jus.br` covers `balcao.tjxx.jus.br`, not `a.balcao.tjxx.jus.br`).
pub fn name_covers(name: &str, domain: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    if name == domain {
        return true;
    }
    match (name.strip_prefix("*."), domain.split_once('.')) {
        (Some(rest), Some((first, domain_rest))) => {
            !first.is_empty() && rest == domain_rest && rest.contains('.')
        }
        _ => false,
    }
}

/// Every certificate in PEM `text`, in file order; `what` names the file in errors.
pub fn parse_pem(text: &[u8], what: &str) -> Result<Vec<CertInfo>, CertError> {
    let mut out = Vec::new();
    for block in Pem::iter_from_buffer(text) {
        let block = block.map_err(|e| CertError::Unreadable {
            what: what.to_owned(),
            message: e.to_string(),
        })?;
        if block.label != "CERTIFICATE" {
            continue;
        }
        out.push(from_der(&block.contents, what)?);
    }
    if out.is_empty() {
        return Err(CertError::NoCertificate {
            what: what.to_owned(),
        });
    }
    Ok(out)
}

/// The first certificate of PEM `text`.
pub fn parse_first(text: &[u8], what: &str) -> Result<CertInfo, CertError> {
    Ok(parse_pem(text, what)?.remove(0))
}

fn from_der(der: &[u8], what: &str) -> Result<CertInfo, CertError> {
    let unreadable = |message: String| CertError::Unreadable {
        what: what.to_owned(),
        message,
    };
    let (_, cert) =
        x509_parser::parse_x509_certificate(der).map_err(|e| unreadable(e.to_string()))?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for general in &san.value.general_names {
            if let GeneralName::DNSName(name) = general {
                names.push(name.to_ascii_lowercase());
            }
        }
    }
    let common_name = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_owned);
    let is_ca = matches!(cert.basic_constraints(), Ok(Some(bc)) if bc.value.ca);
    Ok(CertInfo {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        names,
        common_name,
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        fingerprint: fingerprint(der),
        public_key: cert.public_key().raw.to_vec(),
        is_ca,
        pem: to_pem("CERTIFICATE", der),
    })
}

/// SHA-256 of `der`, as `AB:CD:...`.
pub fn fingerprint(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// DER bytes as a PEM block with 64-column base64 lines.
pub fn to_pem(label: &str, der: &[u8]) -> String {
    let encoded = base64(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in encoded.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The label of the first PEM block that is not a certificate (the key's
/// kind: `PRIVATE KEY`, `EC PRIVATE KEY`, `ENCRYPTED PRIVATE KEY`, ...), and
/// whether it is encrypted the old OpenSSL way (`Proc-Type: 4,ENCRYPTED`).
pub fn key_kind(text: &str) -> Option<(String, bool)> {
    let start = text.find("-----BEGIN ")?;
    let rest = &text[start + 11..];
    let label = rest.split("-----").next()?.to_owned();
    let encrypted = label.contains("ENCRYPTED") || rest.contains("Proc-Type: 4,ENCRYPTED");
    Some((label, encrypted))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_covers_one_label_only() {
        assert!(name_covers("balcao.tjxx.jus.br", "Balcao.TJXX.jus.br"));
        assert!(name_covers("*.tjxx.jus.br", "balcao.tjxx.jus.br"));
        assert!(!name_covers("*.tjxx.jus.br", "a.balcao.tjxx.jus.br"));
        assert!(!name_covers("*.tjxx.jus.br", "tjxx.jus.br"));
        assert!(!name_covers("*.br", "jus.br"));
        assert!(!name_covers("outro.tjxx.jus.br", "balcao.tjxx.jus.br"));
        assert!(!name_covers("*.balcao.tjxx.jus.br", "balcao.tjxx.jus.br"));
    }

    #[test]
    fn base64_matches_known_values() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn key_kinds() {
        assert_eq!(
            key_kind("-----BEGIN PRIVATE KEY-----\nabc\n"),
            Some(("PRIVATE KEY".into(), false))
        );
        assert_eq!(
            key_kind("-----BEGIN ENCRYPTED PRIVATE KEY-----\n"),
            Some(("ENCRYPTED PRIVATE KEY".into(), true))
        );
        assert_eq!(
            key_kind("-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n"),
            Some(("RSA PRIVATE KEY".into(), true))
        );
        assert_eq!(key_kind("nada"), None);
    }

    #[test]
    fn garbage_is_refused_with_the_file_name() {
        let err = parse_pem(b"hello", "/tmp/x.crt").unwrap_err().to_string();
        assert!(err.contains("/tmp/x.crt"), "{err}");
    }
}
