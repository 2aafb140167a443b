//! Jitsi's "secure domain" at first boot: court staff sign in to open a room,
//! citizens and lawyers join it as anonymous guests.
//!
//! This sits in the first-boot pipeline after the offline install of Jitsi's
//! packages (which generates its files for the domain) and before the restart
//! of prosody, jicofo and jitsi-videobridge2. It edits the files that install
//! generated; it never writes them from scratch, so Jitsi's own defaults and
//! secrets stay as the packages made them.
//!
//! A step calls [`secure_domain_edits`] and runs each [`Edit`] against the
//! root filesystem with [`Edit::apply_at`]:
//!
//! ```no_run
//! # use balcao::appliance::jitsi::*;
//! # fn main() -> Result<(), JitsiError> {
//! let domain = Domain::parse("balcao.tjxx.jus.br")?;
//! let local = "10.0.0.5".parse().unwrap();
//! for edit in secure_domain_edits(&domain, None, local) {
//!     let outcome = edit.apply_at(std::path::Path::new("/"))?;
//!     println!("{}: {outcome:?}", edit.path.display());
//! }
//! # Ok(()) }
//! ```
//!
//! Each edit is a pure function from the file's text to its new text, and is
//! idempotent: applied to its own output it changes nothing, so a first boot
//! that is interrupted and run again converges. [`Edit::apply_at`] installs
//! the new text only when the file's real parser accepts it (prosody's own
//! configuration loader, `node --check`, the `hocon` CLI); otherwise the
//! previous file stays in place and the error says why ([`check`]).
//!
//! The HOCON files (jicofo.conf, jvb.conf) are edited through the `hocon`
//! CLI from Debian's ruby-hocon, the tool Jitsi's own postinst scripts use: it
//! keeps comments and layout, and setting a key that already holds the wanted
//! value is skipped, which makes those edits idempotent. The prosody host
//! file and config.js are edited as text, line by line, because no tool
//! edits Lua or JavaScript while keeping the rest of the file as written.
//!
//! Staff accounts are registered with [`accounts::Prosodyctl`], with the
//! password on prosodyctl's standard input only.

pub mod accounts;
pub mod check;
mod config_js;
mod hocon;
pub mod lobby;
mod prosody;

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::command::CommandError;

pub use check::{install_checked, Check, Installed};

/// Where the Jitsi packages keep the files this module edits, relative to the
/// root filesystem (paths from jitsi-meet-prosody, jitsi-meet-web-config,
/// jicofo and jitsi-videobridge2 postinst scripts).
pub mod paths {
    use super::Domain;
    use std::path::PathBuf;

    /// The prosody host file jitsi-meet-prosody renders for the domain.
    pub fn prosody_host(domain: &Domain) -> PathBuf {
        PathBuf::from(format!("etc/prosody/conf.avail/{domain}.cfg.lua"))
    }

    /// The web client's configuration jitsi-meet-web-config renders.
    pub fn config_js(domain: &Domain) -> PathBuf {
        PathBuf::from(format!("etc/jitsi/meet/{domain}-config.js"))
    }

    /// Jicofo's HOCON configuration.
    pub const JICOFO_CONF: &str = "etc/jitsi/jicofo/jicofo.conf";

    /// The videobridge's HOCON configuration.
    pub const JVB_CONF: &str = "etc/jitsi/videobridge/jvb.conf";
}

#[derive(Debug, thiserror::Error)]
pub enum JitsiError {
    #[error("invalid domain {domain:?}: {reason}; give a DNS name such as balcao.tjsp.jus.br")]
    Domain {
        domain: String,
        reason: &'static str,
    },

    #[error(
        "{what}: {detail}; was Jitsi installed for this domain (jitsi-videobridge/jvb-hostname)?"
    )]
    NotGenerated { what: &'static str, detail: String },

    #[error("the NAT mapping mixes address families (local {local}, public {public}); give the public address in the same family as the local one")]
    AddressFamilies { local: IpAddr, public: IpAddr },

    #[error("`hocon` could not edit {what} (Debian package ruby-hocon): {source}")]
    Hocon {
        what: String,
        #[source]
        source: CommandError,
    },

    #[error("{path} was not installed: {tool} rejects the edited file, so the previous file is kept:\n{output}")]
    CheckFailed {
        path: PathBuf,
        tool: &'static str,
        output: String,
    },

    #[error("could not run {tool} to check {path} (Debian package {package}): {source}")]
    Checker {
        path: PathBuf,
        tool: &'static str,
        package: &'static str,
        #[source]
        source: CommandError,
    },

    #[error("could not {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("editing {path}: {source}")]
    Edit {
        path: PathBuf,
        #[source]
        source: Box<JitsiError>,
    },

    #[error("invalid staff user name {user:?}: {reason}")]
    User { user: String, reason: &'static str },

    #[error("the password for {jid} was refused: {reason}")]
    Password { jid: String, reason: &'static str },

    #[error("the account {jid} already exists; change its password instead (prosodyctl passwd)")]
    AccountExists { jid: String },

    #[error("prosodyctl could not {action} {jid}: {source}")]
    Prosodyctl {
        action: &'static str,
        jid: String,
        #[source]
        source: CommandError,
    },
}

/// The service's DNS name (Jitsi's `jitsi-videobridge/jvb-hostname`),
/// checked so it can be written into Lua, JavaScript and HOCON strings as is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Domain(String);

impl Domain {
    pub fn parse(name: &str) -> Result<Domain, JitsiError> {
        let refuse = |reason| {
            Err(JitsiError::Domain {
                domain: name.to_owned(),
                reason,
            })
        };
        if name.is_empty() {
            return refuse("it is empty");
        }
        // guest.DOMAIN must fit in a DNS name too.
        if name.len() > 253 - "guest.".len() {
            return refuse("it is longer than 247 characters");
        }
        for label in name.split('.') {
            if label.is_empty() {
                return refuse("it has an empty label (two dots, or a dot at an end)");
            }
            if label.len() > 63 {
                return refuse("a label is longer than 63 characters");
            }
            if !label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            {
                return refuse("only lowercase letters, digits, hyphens and dots are allowed");
            }
            if label.starts_with('-') || label.ends_with('-') {
                return refuse("a label starts or ends with a hyphen");
            }
        }
        Ok(Domain(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The anonymous guests' host, `guest.DOMAIN`.
    pub fn guest(&self) -> String {
        format!("guest.{}", self.0)
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

type EditFn = Box<dyn Fn(&str) -> Result<String, JitsiError> + Send + Sync>;

/// One change to one file Jitsi generated: where it is, how to change its
/// text, and which parser must accept the result.
pub struct Edit {
    /// The file, relative to the root filesystem.
    pub path: PathBuf,
    /// What the edit does, for logs.
    pub summary: String,
    /// The parser the edited text must pass before it is installed.
    pub check: Check,
    apply: EditFn,
}

impl fmt::Debug for Edit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Edit")
            .field("path", &self.path)
            .field("summary", &self.summary)
            .field("check", &self.check)
            .finish_non_exhaustive()
    }
}

/// What [`Edit::apply_at`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The file already said what the edit wants.
    Unchanged,
    /// The edited file passed its check and replaced the old one.
    Changed,
}

impl Edit {
    fn new(
        path: PathBuf,
        summary: impl Into<String>,
        check: Check,
        apply: impl Fn(&str) -> Result<String, JitsiError> + Send + Sync + 'static,
    ) -> Edit {
        Edit {
            path,
            summary: summary.into(),
            check,
            apply: Box::new(apply),
        }
    }

    /// The file's new text. Pure apart from the `hocon` CLI the HOCON edits
    /// run; applying it to its own result gives the same text.
    pub fn apply(&self, text: &str) -> Result<String, JitsiError> {
        (self.apply)(text)
    }

    /// Reads the file under `root`, applies the edit, and installs the result
    /// if it differs and passes its check; the old file stays otherwise.
    pub fn apply_at(&self, root: &Path) -> Result<Outcome, JitsiError> {
        let path = root.join(&self.path);
        let old = std::fs::read_to_string(&path).map_err(|source| JitsiError::Io {
            action: "read Jitsi's generated file",
            path: path.clone(),
            source,
        })?;
        let new = self.apply(&old).map_err(|source| JitsiError::Edit {
            path: path.clone(),
            source: Box::new(source),
        })?;
        if new == old {
            return Ok(Outcome::Unchanged);
        }
        install_checked(&path, &new, &self.check)?;
        Ok(Outcome::Changed)
    }
}

/// The edits that turn a fresh Jitsi install for `domain` into a secure
/// domain: staff-only room creation on the main host, anonymous guests on
/// `guest.DOMAIN`, jicofo's XMPP authentication and health checks, and the
/// videobridge's address: a static NAT mapping `local_ip` -> `public_ip` when
/// a public address is given, otherwise no address requirement for health
/// (an intranet-only appliance) and no stale mapping.
pub fn secure_domain_edits(
    domain: &Domain,
    public_ip: Option<IpAddr>,
    local_ip: IpAddr,
) -> Vec<Edit> {
    let mut edits = Vec::new();

    let d = domain.clone();
    edits.push(Edit::new(
        paths::prosody_host(domain),
        format!(
            "main host internal_hashed, anonymous guests on {}",
            domain.guest()
        ),
        Check::ProsodyConfig,
        move |text| prosody::secure_domain(text, &d),
    ));

    let d = domain.clone();
    edits.push(Edit::new(
        paths::config_js(domain),
        format!("hosts.anonymousdomain = '{}'", domain.guest()),
        Check::JavaScript,
        move |text| config_js::set_anonymous_domain(text, &d),
    ));

    let d = domain.clone();
    edits.push(Edit::new(
        PathBuf::from(paths::JICOFO_CONF),
        "XMPP authentication and health checks",
        Check::Hocon {
            key: "jicofo.authentication.enabled",
        },
        move |text| hocon::jicofo_secure_domain(text, &d),
    ));

    let (summary, key) = match public_ip {
        Some(public) => (
            format!("static NAT mapping {local_ip} -> {public}"),
            hocon::STATIC_MAPPINGS,
        ),
        None => (
            "no public address: health does not require one".to_owned(),
            hocon::REQUIRE_VALID_ADDRESS,
        ),
    };
    edits.push(Edit::new(
        PathBuf::from(paths::JVB_CONF),
        summary,
        Check::Hocon { key },
        move |text| hocon::jvb_address(text, public_ip, local_ip),
    ));

    edits
}

/// Rebuilds text from lines, keeping whether the original ended in a newline.
fn join_lines(lines: &[String], original: &str) -> String {
    let mut out = lines.join("\n");
    if original.ends_with('\n') || original.is_empty() {
        out.push('\n');
    }
    out
}

/// The leading whitespace of a line.
fn indent_of(line: &str) -> &str {
    &line[..line.len() - line.trim_start().len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_are_checked() {
        assert!(Domain::parse("balcao.tjsp.jus.br").is_ok());
        assert!(Domain::parse("meet-1.example.org").is_ok());
        for bad in [
            "",
            "Balcao.jus.br",
            "a..b",
            ".a.b",
            "a.b.",
            "-a.b",
            "a-.b",
            "a b.c",
            "a\"b.c",
            "a'b.c",
            "a.b/c",
        ] {
            let err = Domain::parse(bad).unwrap_err().to_string();
            assert!(err.contains("invalid domain"), "{bad:?}: {err}");
        }
        assert_eq!(Domain::parse("x.org").unwrap().guest(), "guest.x.org");
    }

    #[test]
    fn edits_name_the_generated_files() {
        let d = Domain::parse("meet.example.org").unwrap();
        let edits = secure_domain_edits(&d, None, "10.0.0.5".parse().unwrap());
        let paths: Vec<_> = edits.iter().map(|e| e.path.display().to_string()).collect();
        assert_eq!(
            paths,
            [
                "etc/prosody/conf.avail/meet.example.org.cfg.lua",
                "etc/jitsi/meet/meet.example.org-config.js",
                "etc/jitsi/jicofo/jicofo.conf",
                "etc/jitsi/videobridge/jvb.conf",
            ]
        );
        assert!(edits.iter().all(|e| e.path.is_relative()));
    }

    #[test]
    fn missing_file_is_reported_with_its_path() {
        let d = Domain::parse("meet.example.org").unwrap();
        let root = tempfile::tempdir().unwrap();
        let edit = secure_domain_edits(&d, None, "10.0.0.5".parse().unwrap()).remove(1);
        let err = edit.apply_at(root.path()).unwrap_err().to_string();
        assert!(err.contains("meet.example.org-config.js"), "{err}");
    }
}
