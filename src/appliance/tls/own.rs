//! The court's own certificate (corporate CA or ICP-Brasil): `balcaoctl tls
//! use CERT KEY [--chain FILE] [--ca ROOT]`. Everything is checked before
//! anything is written, so a refusal leaves the machine as it was: the key
//! belongs to the certificate (same public key, asked of `openssl pkey`), a
//! name in subjectAltName covers the domain, the certificate is in date, and
//! `openssl verify` builds the chain to a trusted root (Debian's CA bundle,
//! or `--ca`: ICP-Brasil roots are not in Debian's store).

use std::path::{Path, PathBuf};

use super::cert::{self, CertInfo};
use super::install::{self, Installed};
use super::{TlsError, SYSTEM_CA_BUNDLE};
use crate::appliance::{Root, System};
use crate::command::{Cmd, CommandError};

/// Fewer days left than this draws a warning.
pub const WARN_DAYS: i64 = 30;

/// Why a certificate was not installed; nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("não foi possível ler {path}: {source}; confira o caminho do arquivo")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Cert(#[from] cert::CertError),
    #[error("{path} não é uma chave privada PEM legível ({detail}); use a chave (-----BEGIN PRIVATE KEY-----) que gerou o pedido do certificado")]
    KeyUnreadable { path: PathBuf, detail: String },
    #[error("a chave {path} está protegida por senha, e o nginx precisa dela aberta; salve uma cópia sem senha com `openssl pkey -in {path} -out chave-aberta.key` e use essa")]
    KeyEncrypted { path: PathBuf },
    #[error("a chave {key} não corresponde ao certificado {cert} (chaves públicas diferentes); use a chave privada que gerou o pedido (CSR) deste certificado")]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("o certificado não tem nomes DNS (subjectAltName){}; navegadores exigem {domain} no subjectAltName: peça à autoridade certificadora um certificado com esse nome", .common_name.as_ref().map(|c| format!(", só o CN {c}")).unwrap_or_default())]
    NoNames {
        domain: String,
        common_name: Option<String>,
    },
    #[error("o certificado vale para {} e não para {domain}; peça um certificado com {domain} (ou *.{}) no subjectAltName", .names.join(", "), .domain.split_once('.').map(|d| d.1).unwrap_or(""))]
    WrongName { domain: String, names: Vec<String> },
    #[error("o certificado expirou em {expired}; renove-o com a autoridade certificadora e rode `balcaoctl tls use` com o novo")]
    Expired { expired: String },
    #[error("o certificado só vale a partir de {starts}; confira o relógio desta máquina (timedatectl) ou aguarde essa data")]
    NotYetValid { starts: String },
    #[error("a cadeia do certificado não fecha até uma raiz confiável ({detail}). {hint}")]
    ChainIncomplete { detail: String, hint: String },
    #[error("o openssl falhou ao conferir o certificado: {0}; instale o pacote openssl")]
    Openssl(CommandError),
}

/// The files `tls use` was given.
#[derive(Debug, Clone)]
pub struct OwnFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Intermediate certificates (the certificate file may also carry them).
    pub chain: Option<PathBuf>,
    /// The root to trust instead of Debian's CA bundle.
    pub ca: Option<PathBuf>,
}

/// A certificate that passed every check, ready to install.
#[derive(Debug, Clone)]
pub struct Checked {
    pub leaf: CertInfo,
    /// Leaf then intermediates, PEM (what nginx's ssl_certificate wants).
    pub fullchain: Vec<u8>,
    pub key: Vec<u8>,
    /// Worth saying, not worth refusing (expires soon).
    pub warnings: Vec<String>,
}

fn read(path: &Path) -> Result<Vec<u8>, Refused> {
    std::fs::read(path).map_err(|source| Refused::Read {
        path: path.to_owned(),
        source,
    })
}

/// Checks the files for `domain` at `now` (seconds since the epoch).
pub fn check(
    system: &dyn System,
    domain: &str,
    files: &OwnFiles,
    now: i64,
) -> Result<Checked, Refused> {
    let cert_bytes = read(&files.cert)?;
    let mut certs = cert::parse_pem(&cert_bytes, &files.cert.display().to_string())?;
    if let Some(chain) = &files.chain {
        certs.extend(cert::parse_pem(
            &read(chain)?,
            &chain.display().to_string(),
        )?);
    }
    let leaf = certs.remove(0);
    let intermediates: Vec<CertInfo> = certs.into_iter().filter(|c| !c.self_issued()).collect();

    // The key: PEM, not encrypted, and the certificate's own.
    let key = read(&files.key)?;
    let key_text = String::from_utf8_lossy(&key).into_owned();
    match cert::key_kind(&key_text) {
        None => {
            return Err(Refused::KeyUnreadable {
                path: files.key.clone(),
                detail: "nenhum bloco -----BEGIN ... PRIVATE KEY-----".into(),
            })
        }
        Some((_, true)) => {
            return Err(Refused::KeyEncrypted {
                path: files.key.clone(),
            })
        }
        Some(_) => {}
    }
    let public = system
        .run(
            &Cmd::new("openssl")
                .args(["pkey", "-in", "/dev/stdin", "-pubout", "-outform", "DER"])
                .stdin(key.clone()),
        )
        .map_err(|e| match e {
            CommandError::Failed { output, .. } => Refused::KeyUnreadable {
                path: files.key.clone(),
                detail: output.lines().next().unwrap_or_default().to_owned(),
            },
            other => Refused::Openssl(other),
        })?
        .stdout;
    if public != leaf.public_key {
        return Err(Refused::KeyMismatch {
            cert: files.cert.clone(),
            key: files.key.clone(),
        });
    }

    // Names, then dates.
    if leaf.names.is_empty() {
        return Err(Refused::NoNames {
            domain: domain.to_owned(),
            common_name: leaf.common_name.clone(),
        });
    }
    if !leaf.covers(domain) {
        return Err(Refused::WrongName {
            domain: domain.to_owned(),
            names: leaf.names.clone(),
        });
    }
    if now < leaf.not_before {
        return Err(Refused::NotYetValid {
            starts: leaf.starts_text(),
        });
    }
    if now > leaf.not_after {
        return Err(Refused::Expired {
            expired: leaf.expires_text(),
        });
    }
    let mut warnings = Vec::new();
    let left = leaf.days_left(now);
    if left < WARN_DAYS {
        warnings.push(format!(
            "atenção: o certificado expira em {left} dias ({}); providencie a renovação",
            leaf.expires_text()
        ));
    }

    verify_chain(system, &leaf, &intermediates, files.ca.as_deref())?;

    let mut fullchain = leaf.pem.clone();
    for c in &intermediates {
        fullchain.push_str(&c.pem);
    }
    Ok(Checked {
        leaf,
        fullchain: fullchain.into_bytes(),
        key,
        warnings,
    })
}

/// `openssl verify` from the leaf through the intermediates to the trusted root.
fn verify_chain(
    system: &dyn System,
    leaf: &CertInfo,
    intermediates: &[CertInfo],
    ca: Option<&Path>,
) -> Result<(), Refused> {
    let dir = tempfile::tempdir().map_err(|source| Refused::Read {
        path: std::env::temp_dir(),
        source,
    })?;
    let leaf_path = dir.path().join("leaf.pem");
    let inter_path = dir.path().join("intermediates.pem");
    let write = |path: &Path, text: &str| {
        std::fs::write(path, text).map_err(|source| Refused::Read {
            path: path.to_owned(),
            source,
        })
    };
    write(&leaf_path, &leaf.pem)?;
    let mut cmd = Cmd::new("openssl").arg("verify").arg("-CAfile");
    cmd = match ca {
        Some(ca) => cmd.arg(ca),
        None => cmd.arg(SYSTEM_CA_BUNDLE),
    };
    if !intermediates.is_empty() {
        let all: String = intermediates.iter().map(|c| c.pem.as_str()).collect();
        write(&inter_path, &all)?;
        cmd = cmd.arg("-untrusted").arg(&inter_path);
    }
    cmd = cmd.arg(&leaf_path);
    match system.run(&cmd) {
        Ok(_) => Ok(()),
        Err(CommandError::Failed { output, .. }) => {
            let detail = output
                .lines()
                .find(|l| l.contains("error"))
                .unwrap_or_else(|| output.lines().next().unwrap_or_default())
                .trim()
                .to_owned();
            let hint = match ca {
                None => "Se o certificado é ICP-Brasil ou de uma AC interna, a raiz não está no repositório do Debian: informe o certificado raiz com --ca RAIZ.crt; se faltam intermediárias, passe-as com --chain CADEIA.pem".to_owned(),
                Some(ca) => format!("Confira se --chain traz todas as intermediárias e se {} é a raiz que emitiu a cadeia", ca.display()),
            };
            Err(Refused::ChainIncomplete { detail, hint })
        }
        Err(other) => Err(Refused::Openssl(other)),
    }
}

/// Checks, then installs for `domain`; a refusal changes nothing.
pub fn use_own(
    root: &Root,
    system: &dyn System,
    domain: &str,
    files: &OwnFiles,
    now: i64,
) -> Result<(Checked, Installed), TlsError> {
    let checked = check(system, domain, files, now)?;
    let done = install::install(root, system, domain, &checked.fullchain, &checked.key)?;
    Ok((checked, done))
}
