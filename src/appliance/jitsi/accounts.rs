//! Staff accounts on the main host: the people who may open rooms.
//!
//! `prosodyctl register USER HOST PASSWORD` would put the password on the
//! command line, where `ps` and the logs see it. `prosodyctl adduser JID` and
//! `prosodyctl passwd JID` read it from standard input instead: prosody 0.12
//! asks "Enter new password:" and "Retype new password:" and reads one line
//! for each (util/human/io.lua, read_password), so the password goes on
//! stdin twice, one per line. That is why a password may not hold a line
//! break.
//!
//! Staff live on DOMAIN itself (internal_hashed after the secure-domain
//! edit), never on auth.DOMAIN, and `focus`/`jvb` are Jitsi's own accounts.

use std::path::PathBuf;

use super::{Domain, JitsiError};
use crate::command::{Cmd, CommandError};

/// Names Jitsi's packages use for their own accounts.
const RESERVED_USERS: &[&str] = &["focus", "jvb", "jibri", "jigasi", "recorder"];

/// Runs prosodyctl, with the system configuration or another one (tests).
#[derive(Debug, Clone, Default)]
pub struct Prosodyctl {
    config: Option<PathBuf>,
}

/// A staff member's XMPP address on the main host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaffJid(String);

impl StaffJid {
    pub fn new(user: &str, domain: &Domain) -> Result<StaffJid, JitsiError> {
        let refuse = |reason| {
            Err(JitsiError::User {
                user: user.to_owned(),
                reason,
            })
        };
        if user.is_empty() || user.len() > 64 {
            return refuse("use 1 to 64 characters");
        }
        if !user
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        {
            return refuse("use only lowercase letters, digits, dots, hyphens and underscores");
        }
        if RESERVED_USERS.contains(&user) {
            return refuse("that name belongs to one of Jitsi's own services");
        }
        Ok(StaffJid(format!("{user}@{domain}")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The two lines prosodyctl reads (password, then its confirmation).
fn password_lines(jid: &StaffJid, password: &str) -> Result<String, JitsiError> {
    let refuse = |reason| {
        Err(JitsiError::Password {
            jid: jid.0.clone(),
            reason,
        })
    };
    if password.is_empty() {
        return refuse("it is empty");
    }
    if password.contains(['\n', '\r']) {
        return refuse("it contains a line break, which prosodyctl cannot read");
    }
    Ok(format!("{password}\n{password}\n"))
}

impl Prosodyctl {
    /// prosodyctl with the system's /etc/prosody/prosody.cfg.lua.
    pub fn system() -> Prosodyctl {
        Prosodyctl { config: None }
    }

    /// prosodyctl with another configuration file (`--config`).
    pub fn with_config(config: impl Into<PathBuf>) -> Prosodyctl {
        Prosodyctl {
            config: Some(config.into()),
        }
    }

    fn base(&self) -> Cmd {
        let cmd = Cmd::new("prosodyctl");
        match &self.config {
            Some(config) => cmd.arg("--config").arg(config),
            None => cmd,
        }
    }

    /// The command that creates the account; the password is only in its
    /// standard input.
    pub fn adduser_cmd(&self, jid: &StaffJid, password: &str) -> Result<Cmd, JitsiError> {
        Ok(self
            .base()
            .args(["adduser", jid.as_str()])
            .stdin(password_lines(jid, password)?))
    }

    /// The command that changes the account's password, the same way.
    pub fn passwd_cmd(&self, jid: &StaffJid, password: &str) -> Result<Cmd, JitsiError> {
        Ok(self
            .base()
            .args(["passwd", jid.as_str()])
            .stdin(password_lines(jid, password)?))
    }

    /// Creates a staff account. An existing account is an error
    /// ([`JitsiError::AccountExists`]): use [`Prosodyctl::set_password`].
    pub fn add_staff(&self, jid: &StaffJid, password: &str) -> Result<(), JitsiError> {
        match self.adduser_cmd(jid, password)?.run() {
            Ok(_) => Ok(()),
            Err(CommandError::Failed { ref output, .. }) if output.contains("already exists") => {
                Err(JitsiError::AccountExists { jid: jid.0.clone() })
            }
            Err(source) => Err(JitsiError::Prosodyctl {
                action: "create the account",
                jid: jid.0.clone(),
                source,
            }),
        }
    }

    /// Sets a staff account's password.
    pub fn set_password(&self, jid: &StaffJid, password: &str) -> Result<(), JitsiError> {
        self.passwd_cmd(jid, password)?
            .run()
            .map(|_| ())
            .map_err(|source| JitsiError::Prosodyctl {
                action: "change the password of",
                jid: jid.0.clone(),
                source,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domain() -> Domain {
        Domain::parse("meet.example.org").unwrap()
    }

    #[test]
    fn password_stays_off_the_command_line() {
        let jid = StaffJid::new("maria.silva", &domain()).unwrap();
        let cmd = Prosodyctl::system()
            .adduser_cmd(&jid, "s3cret pass")
            .unwrap();
        assert_eq!(
            cmd.display(),
            "prosodyctl adduser maria.silva@meet.example.org"
        );
        let cmd = Prosodyctl::with_config("/tmp/p.cfg.lua")
            .passwd_cmd(&jid, "s3cret pass")
            .unwrap();
        assert_eq!(
            cmd.display(),
            "prosodyctl --config /tmp/p.cfg.lua passwd maria.silva@meet.example.org"
        );
        assert!(!cmd.display().contains("s3cret"));
        assert_eq!(
            password_lines(&jid, "s3cret pass").unwrap(),
            "s3cret pass\ns3cret pass\n"
        );
    }

    #[test]
    fn bad_names_and_passwords_are_refused() {
        for user in ["", "focus", "jvb", "Maria", "a@b", "a b", "a/b"] {
            assert!(StaffJid::new(user, &domain()).is_err(), "{user:?}");
        }
        let jid = StaffJid::new("ana", &domain()).unwrap();
        assert!(password_lines(&jid, "").is_err());
        let err = password_lines(&jid, "a\nb").unwrap_err().to_string();
        assert!(err.contains("line break") && !err.contains("a\nb"), "{err}");
    }
}
