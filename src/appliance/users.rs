//! `balcaoctl user`: the staff accounts that may open rooms, on the domain
//! first boot configured (read from setup.toml). Accounts are created,
//! changed and removed with prosodyctl, the password on its standard input
//! only; the list is read from prosody's own account storage, since
//! prosodyctl 0.12 has no command that lists users. The first staff account
//! is made by the `jitsi-secure` first-boot step with the same functions.
//!
//! Passwords are asked twice without echo on a terminal, or read from
//! standard input when it is not one (for scripts), and are checked with the
//! wizard's rules (at least 10 characters). Names Jitsi uses for its own
//! services (`focus`, `jvb`, `recorder`, ...) are refused.

use std::collections::BTreeSet;
use std::io;

use super::jitsi::accounts::{Prosodyctl, StaffJid};
use super::jitsi::Domain;
use super::root::FileError;
use super::setup::{self, Secret};
use super::validate::{self, Invalid};
use super::wizard::Terminal;
use super::{Lang, Root, System};
use crate::command::{Cmd, CommandError};

/// Prosody's data folder on Debian (`data_path`).
pub const PROSODY_DATA: &str = "/var/lib/prosody";
/// Prosody's main configuration on Debian.
pub const PROSODY_CONFIG: &str = "/etc/prosody/prosody.cfg.lua";
/// Times a password is asked again on a terminal after a mistake.
const TRIES: usize = 3;

#[derive(Debug, clap::Args)]
#[command(
    about = "Contas da equipe que abre as salas: add, remove, list, passwd",
    long_about = "Contas da equipe que abre as salas do Balcão, no domínio configurado na \
        primeira inicialização.\n\n\
        A senha (pelo menos 10 caracteres) é pedida duas vezes no terminal, sem eco; \
        quando a entrada não é um terminal, é lida da primeira linha da entrada padrão \
        (uma segunda linha, se houver, precisa ser igual). Nunca passe a senha na linha \
        de comando.\n\n\
        Staff accounts on the domain set at first boot; messages follow `language` in \
        /etc/balcao/setup.toml."
)]
pub struct UserArgs {
    /// Raiz do sistema (outra que / só para testes)
    #[arg(long, global = true, default_value = "/")]
    pub root: std::path::PathBuf,

    #[command(subcommand)]
    pub action: UserAction,
}

#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand)]
pub enum UserAction {
    /// Cria uma conta (pede a senha)
    Add { user: String },
    /// Remove uma conta
    Remove { user: String },
    /// Lista as contas
    List,
    /// Troca a senha de uma conta (pede a senha nova)
    Passwd { user: String },
}

/// Why a `balcaoctl user` command failed, in both languages.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error(
        "o domínio ainda não foi configurado ({}); rode `balcaoctl firstboot` primeiro",
        setup_file()
    )]
    NoDomain,
    #[error(transparent)]
    Setup(#[from] setup::SetupError),
    #[error(transparent)]
    File(#[from] FileError),
    #[error("{}", .0.pt)]
    Invalid(Invalid),
    #[error("a conta {0} já existe; para trocar a senha use `balcaoctl user passwd`")]
    Exists(String),
    #[error("a conta {0} não existe; veja as contas com `balcaoctl user list`")]
    Missing(String),
    #[error("as duas senhas digitadas são diferentes; nada foi alterado")]
    Mismatch,
    #[error("a entrada terminou antes da senha; nada foi alterado")]
    NoPassword,
    #[error("erro ao ler a senha: {0}")]
    Io(#[from] io::Error),
    #[error("o prosodyctl falhou: {0}\nveja se o prosody está instalado e configurado (`balcaoctl status`)")]
    Prosodyctl(CommandError),
    #[error("{0}")]
    Jitsi(#[from] super::jitsi::JitsiError),
}

fn setup_file() -> &'static str {
    super::root::SETUP_FILE
}

impl UserError {
    /// The message in the appliance's language.
    pub fn message(&self, lang: Lang) -> String {
        if lang == Lang::Pt {
            return self.to_string();
        }
        match self {
            UserError::NoDomain => format!(
                "the domain is not configured yet ({}); run `balcaoctl firstboot` first",
                setup_file()
            ),
            UserError::Invalid(invalid) => invalid.en.clone(),
            UserError::Exists(jid) => {
                format!("the account {jid} already exists; to change its password use `balcaoctl user passwd`")
            }
            UserError::Missing(jid) => {
                format!("the account {jid} does not exist; see the accounts with `balcaoctl user list`")
            }
            UserError::Mismatch => "the two passwords differ; nothing was changed".to_owned(),
            UserError::NoPassword => "input ended before the password; nothing was changed".to_owned(),
            UserError::Io(e) => format!("could not read the password: {e}"),
            UserError::Prosodyctl(e) => format!(
                "prosodyctl failed: {e}\ncheck that prosody is installed and configured (`balcaoctl status`)"
            ),
            other => other.to_string(),
        }
    }
}

/// Prosody's file-storage name: every byte but [A-Za-z0-9] as `%xx`
/// (util/datamanager.lua), so `balcao.tjxx.jus.br` is `balcao%2etjxx%2ejus%2ebr`.
pub fn store_name(name: &str) -> String {
    name.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02x}")
            }
        })
        .collect()
}

/// The reverse of [`store_name`]; `None` for a name prosody would not write.
pub fn decode_store_name(stored: &str) -> Option<String> {
    let bytes = stored.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = stored.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The folder holding DOMAIN's accounts, as an appliance path.
pub fn accounts_dir(domain: &Domain) -> String {
    format!("{PROSODY_DATA}/{}/accounts", store_name(domain.as_str()))
}

/// Whether prosody has an account for `user` on `domain` under `root`.
pub fn account_exists(root: &Root, domain: &Domain, user: &str) -> bool {
    root.exists(&format!(
        "{}/{}.dat",
        accounts_dir(domain),
        store_name(user)
    ))
}

/// The accounts on `domain`, sorted.
pub fn list_accounts(root: &Root, domain: &Domain) -> Result<Vec<String>, FileError> {
    let dir = root.path(&accounts_dir(domain));
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(FileError::Read { path: dir, source }),
    };
    let mut names = BTreeSet::new();
    for entry in entries {
        let entry = entry.map_err(|source| FileError::Read {
            path: dir.clone(),
            source,
        })?;
        let file = entry.file_name().to_string_lossy().into_owned();
        if let Some(name) = file.strip_suffix(".dat").and_then(decode_store_name) {
            names.insert(name);
        }
    }
    Ok(names.into_iter().collect())
}

/// prosodyctl for this root: the system's configuration on `/`, the root's
/// own `etc/prosody/prosody.cfg.lua` elsewhere (tests).
pub fn prosodyctl_for(root: &Root) -> Prosodyctl {
    if root.is_system() {
        Prosodyctl::system()
    } else {
        Prosodyctl::with_config(root.path(PROSODY_CONFIG))
    }
}

/// `prosodyctl deluser JID`.
pub fn deluser_cmd(root: &Root, jid: &StaffJid) -> Cmd {
    let base = match root.is_system() {
        true => Cmd::new("prosodyctl"),
        false => Cmd::new("prosodyctl")
            .arg("--config")
            .arg(root.path(PROSODY_CONFIG)),
    };
    base.args(["deluser", jid.as_str()])
}

/// A new password: on a terminal asked twice without echo (again after a
/// mistake, a few times); otherwise the first line of input, and the second
/// one, when there is one, must repeat it.
pub fn read_new_password(
    term: &mut dyn Terminal,
    interactive: bool,
    lang: Lang,
) -> Result<Secret, UserError> {
    if !interactive {
        let first = term.read_line()?.ok_or(UserError::NoPassword)?;
        validate::password(&first).map_err(UserError::Invalid)?;
        if let Some(second) = term.read_line()? {
            if !second.is_empty() && second != first {
                return Err(UserError::Mismatch);
            }
        }
        return Ok(Secret::new(first));
    }
    let mut last = UserError::NoPassword;
    for _ in 0..TRIES {
        let first = term
            .read_secret(lang.t("Senha nova: ", "New password: "))?
            .ok_or(UserError::NoPassword)?;
        term.say("\n")?;
        if let Err(invalid) = validate::password(&first) {
            term.say(&format!("{}\n", invalid.message(lang)))?;
            last = UserError::Invalid(invalid);
            continue;
        }
        let second = term
            .read_secret(lang.t("Repita a senha: ", "Repeat the password: "))?
            .ok_or(UserError::NoPassword)?;
        term.say("\n")?;
        if first != second {
            term.say(&format!("{}\n", UserError::Mismatch.message(lang)))?;
            last = UserError::Mismatch;
            continue;
        }
        return Ok(Secret::new(first));
    }
    Err(last)
}

/// The appliance's domain and language, from setup.toml.
pub fn appliance_domain(root: &Root) -> Result<(Domain, Lang), UserError> {
    let (answers, _) = setup::read_preseed(root)?;
    let lang = answers.lang();
    let domain = answers.get("domain").ok_or(UserError::NoDomain)?;
    Ok((Domain::parse(domain)?, lang))
}

fn checked_user(user: &str) -> Result<String, UserError> {
    validate::user(user).map_err(UserError::Invalid)
}

fn run_prosodyctl(system: &dyn System, cmd: &Cmd) -> Result<(), UserError> {
    system.run(cmd).map(|_| ()).map_err(UserError::Prosodyctl)
}

/// Runs one `balcaoctl user` action; returns what to print on success.
pub fn run(
    root: &Root,
    action: &UserAction,
    system: &dyn System,
    term: &mut dyn Terminal,
    interactive: bool,
) -> Result<String, UserError> {
    let (domain, lang) = appliance_domain(root)?;
    let prosodyctl = prosodyctl_for(root);
    match action {
        UserAction::List => {
            let names = list_accounts(root, &domain)?;
            if names.is_empty() {
                return Ok(format!(
                    "{} {domain}; {}\n",
                    lang.t("Nenhuma conta em", "No accounts on"),
                    lang.t(
                        "crie uma com `balcaoctl user add NOME`",
                        "create one with `balcaoctl user add NAME`"
                    )
                ));
            }
            Ok(names.iter().map(|n| format!("{n}\n")).collect())
        }
        UserAction::Add { user } => {
            let user = checked_user(user)?;
            let jid = StaffJid::new(&user, &domain)?;
            if account_exists(root, &domain, &user) {
                return Err(UserError::Exists(jid.as_str().to_owned()));
            }
            let password = read_new_password(term, interactive, lang)?;
            run_prosodyctl(system, &prosodyctl.adduser_cmd(&jid, password.expose())?)?;
            Ok(format!(
                "{} {}.\n",
                lang.t("Conta criada:", "Account created:"),
                jid.as_str()
            ))
        }
        UserAction::Passwd { user } => {
            let user = checked_user(user)?;
            let jid = StaffJid::new(&user, &domain)?;
            if !account_exists(root, &domain, &user) {
                return Err(UserError::Missing(jid.as_str().to_owned()));
            }
            let password = read_new_password(term, interactive, lang)?;
            run_prosodyctl(system, &prosodyctl.passwd_cmd(&jid, password.expose())?)?;
            Ok(format!(
                "{} {}.\n",
                lang.t("Senha trocada:", "Password changed:"),
                jid.as_str()
            ))
        }
        UserAction::Remove { user } => {
            let user = checked_user(user)?;
            let jid = StaffJid::new(&user, &domain)?;
            if !account_exists(root, &domain, &user) {
                return Err(UserError::Missing(jid.as_str().to_owned()));
            }
            run_prosodyctl(system, &deluser_cmd(root, &jid))?;
            Ok(format!(
                "{} {}.\n",
                lang.t("Conta removida:", "Account removed:"),
                jid.as_str()
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_names_round_trip() {
        assert_eq!(store_name("balcao.tjxx.jus.br"), "balcao%2etjxx%2ejus%2ebr");
        assert_eq!(store_name("ana-maria_1"), "ana%2dmaria%5f1");
        for name in ["maria.silva", "ana-maria_1", "x"] {
            assert_eq!(decode_store_name(&store_name(name)).as_deref(), Some(name));
        }
        assert_eq!(decode_store_name("bad%2"), None);
    }
}
