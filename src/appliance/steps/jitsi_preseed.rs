//! `jitsi-preseed`: Jitsi's debconf answers, before the packages install. The
//! domain, a self-signed certificate for now (the TLS step replaces it), no
//! JaaS (it would send the court's domain to a hosted service), and fresh
//! secrets for the videobridge, jicofo and the TURN server, drawn from
//! /dev/urandom on this machine so no two appliances share them.
//!
//! Everything goes to `debconf-set-selections` on standard input, never on
//! a command line; values are read back one question at a time with
//! `debconf-communicate`, whose output is never logged. A secret already in
//! debconf is kept: a half-done install whose videobridge took secret A must
//! not see secret B in the next package. Once Jitsi is installed this step
//! has nothing left to do; `jitsi-install` clears the secrets from debconf
//! afterwards (see there for why they are emptied, not purged).

use super::jitsi_common::{in_scope, missing_packages, out_of_scope_facts};
use super::{Context, Facts, Step, StepError};
use crate::appliance::root::FileError;
use crate::appliance::{Lang, System};
use crate::command::{Cmd, CommandError};

/// One debconf question: the package that owns it in Jitsi's templates, its
/// name and its type (from the jitsi-meet debian/*.templates files).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Question {
    pub owner: &'static str,
    pub name: &'static str,
    pub kind: &'static str,
}

pub const HOSTNAME: Question = Question {
    owner: "jitsi-videobridge2",
    name: "jitsi-videobridge/jvb-hostname",
    kind: "string",
};
pub const CERT_CHOICE: Question = Question {
    owner: "jitsi-meet-web-config",
    name: "jitsi-meet/cert-choice",
    kind: "select",
};
pub const JAAS_CHOICE: Question = Question {
    owner: "jitsi-meet-web-config",
    name: "jitsi-meet/jaas-choice",
    kind: "boolean",
};
pub const JVB_SECRET: Question = Question {
    owner: "jitsi-videobridge2",
    name: "jitsi-videobridge/jvbsecret",
    kind: "password",
};
pub const JICOFO_PASSWORD: Question = Question {
    owner: "jicofo",
    name: "jicofo/jicofo-authpassword",
    kind: "password",
};
/// A string, not a password, in Jitsi's templates: debconf keeps it in the
/// world-readable config.dat, one more reason to clear it after install.
pub const TURN_SECRET: Question = Question {
    owner: "jitsi-meet-prosody",
    name: "jitsi-meet-prosody/turn-secret",
    kind: "string",
};

/// The secrets the packages would otherwise make up themselves.
pub const SECRETS: [Question; 3] = [JVB_SECRET, JICOFO_PASSWORD, TURN_SECRET];

/// The exact choice text in jitsi-meet-web-config's template.
pub const SELF_SIGNED: &str = "Generate a new self-signed certificate";

/// Length of each generated secret: 32 characters from 62 is about 190 bits.
const SECRET_CHARS: usize = 32;

/// The non-secret answers for `domain`.
pub fn answers(domain: &str) -> [(Question, String); 3] {
    [
        (HOSTNAME, domain.to_owned()),
        (CERT_CHOICE, SELF_SIGNED.to_owned()),
        (JAAS_CHOICE, "false".to_owned()),
    ]
}

/// One line of `debconf-set-selections` input.
pub fn selection_line(question: &Question, value: &str) -> String {
    format!(
        "{} {} {} {value}\n",
        question.owner, question.name, question.kind
    )
}

/// Reads one question's value with `debconf-communicate`; `None` when
/// debconf does not know the question. The value is never logged.
pub fn debconf_get(system: &dyn System, name: &str) -> Result<Option<String>, StepError> {
    let cmd = Cmd::new("debconf-communicate").stdin(format!("GET {name}\n"));
    match system.run(&cmd) {
        Ok(out) => {
            let text = out.stdout_text();
            let line = text.lines().next().unwrap_or("");
            let value = line.strip_prefix('0').unwrap_or(line);
            Ok(Some(value.strip_prefix(' ').unwrap_or(value).to_owned()))
        }
        // debconf answers "10 NAME doesn't exist" and exits 10. Judge by the
        // exit code: the answer is on stdout, and stderr may hold unrelated
        // warnings (locale, frontend) that the error would carry instead.
        Err(CommandError::Failed { status, .. }) if status.code() == Some(10) => Ok(None),
        Err(CommandError::Failed { command, status, .. }) => Err(StepError::Check(format!(
            "`{command}` falhou ({status}) ao ler a pergunta {name} do debconf; \
             veja se outro apt ou dpkg está rodando (o banco do debconf fica travado) e rode `balcaoctl firstboot` de novo"
        ))),
        Err(e) => Err(e.into()),
    }
}

/// Random text of [A-Za-z0-9] from /dev/urandom.
pub fn random_secret() -> Result<String, FileError> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let urandom = std::path::PathBuf::from("/dev/urandom");
    let fail = |source| FileError::Read {
        path: urandom.clone(),
        source,
    };
    let mut file = std::fs::File::open(&urandom).map_err(fail)?;
    let mut secret = String::with_capacity(SECRET_CHARS);
    let mut buf = [0u8; 64];
    while secret.len() < SECRET_CHARS {
        std::io::Read::read_exact(&mut file, &mut buf).map_err(fail)?;
        // 248 = 4 * 62: bytes above it are dropped so every character is
        // equally likely.
        for b in buf.iter().filter(|b| **b < 248) {
            if secret.len() == SECRET_CHARS {
                break;
            }
            secret.push(ALPHABET[usize::from(*b) % ALPHABET.len()] as char);
        }
    }
    Ok(secret)
}

pub struct JitsiPreseed;

impl JitsiPreseed {
    /// The selections still to set: answers that differ, and a fresh secret
    /// for each secret question debconf holds no value for. The second
    /// element lists the secrets, to scrub them from any error text.
    fn pending(&self, ctx: &Context) -> Result<(String, Vec<String>), StepError> {
        let mut text = String::new();
        for (question, value) in answers(&ctx.setup.domain) {
            if debconf_get(ctx.system, question.name)?.as_deref() != Some(value.as_str()) {
                text.push_str(&selection_line(&question, &value));
            }
        }
        let mut secrets = Vec::new();
        for question in SECRETS {
            let current = debconf_get(ctx.system, question.name)?;
            if current.as_deref().unwrap_or("").is_empty() {
                let secret = random_secret()?;
                text.push_str(&selection_line(&question, &secret));
                secrets.push(secret);
            }
        }
        Ok((text, secrets))
    }

    /// Once Jitsi is installed the answers have been used; only the domain
    /// matters then: Jitsi's packages cannot move an install to a new name.
    fn installed_for_other_domain(&self, ctx: &Context) -> Result<Option<String>, StepError> {
        let current = debconf_get(ctx.system, HOSTNAME.name)?.unwrap_or_default();
        Ok((!current.is_empty() && current != ctx.setup.domain).then_some(current))
    }
}

impl Step for JitsiPreseed {
    fn name(&self) -> &'static str {
        "jitsi-preseed"
    }

    fn title(&self, lang: Lang) -> &'static str {
        lang.t(
            "Respostas do Jitsi (debconf) e segredos novos",
            "Jitsi's answers (debconf) and fresh secrets",
        )
    }

    fn is_done(&self, ctx: &Context) -> Result<bool, StepError> {
        if !in_scope(ctx)? {
            return Ok(true);
        }
        if missing_packages(ctx.root)?.is_empty() {
            return Ok(self.installed_for_other_domain(ctx)?.is_none());
        }
        Ok(self.pending(ctx)?.0.is_empty())
    }

    fn apply(&self, ctx: &Context) -> Result<Facts, StepError> {
        if !in_scope(ctx)? {
            return Ok(out_of_scope_facts());
        }
        if missing_packages(ctx.root)?.is_empty() {
            if let Some(old) = self.installed_for_other_domain(ctx)? {
                return Err(StepError::Check(format!(
                    "o Jitsi já está instalado para {old}, e os pacotes do Jitsi não trocam de domínio \
                     (jvb.conf e jicofo.conf ficariam com o nome antigo); use {old} como domínio em \
                     /etc/balcao/setup.toml, ou instale um appliance novo para {}",
                    ctx.setup.domain
                )));
            }
            return Ok([("debconf".to_owned(), "jitsi já instalado".to_owned())].into());
        }

        let (text, secrets) = self.pending(ctx)?;
        if !text.is_empty() {
            let cmd = Cmd::new("debconf-set-selections").stdin(text);
            ctx.system.run(&cmd).map_err(|e| scrub(e, &secrets))?;
        }
        Ok([
            ("domain".to_owned(), ctx.setup.domain.clone()),
            ("certificate".to_owned(), "self-signed".to_owned()),
            ("jaas".to_owned(), "false".to_owned()),
        ]
        .into())
    }
}

/// A failed command's error with every secret replaced by `***`, in case the
/// tool quoted its input back.
pub fn scrub(error: CommandError, secrets: &[String]) -> StepError {
    match error {
        CommandError::Failed {
            command,
            status,
            mut output,
        } => {
            for secret in secrets.iter().filter(|s| !s.is_empty()) {
                output = output.replace(secret.as_str(), "***");
            }
            StepError::Command(CommandError::Failed {
                command,
                status,
                output,
            })
        }
        other => StepError::Command(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_fresh_and_plain() {
        let a = random_secret().unwrap();
        let b = random_secret().unwrap();
        assert_eq!(a.len(), SECRET_CHARS);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric()), "{a}");
        assert_ne!(a, b);
    }

    #[test]
    fn selection_lines_name_owner_question_and_type() {
        assert_eq!(
            selection_line(&CERT_CHOICE, SELF_SIGNED),
            "jitsi-meet-web-config jitsi-meet/cert-choice select Generate a new self-signed certificate\n"
        );
        assert_eq!(
            selection_line(&JAAS_CHOICE, "false"),
            "jitsi-meet-web-config jitsi-meet/jaas-choice boolean false\n"
        );
    }
}
