//! The first-boot answers: read from the preseed file `/etc/balcao/setup.toml`
//! (keys as in `answers::QUESTIONS`, dotted keys become tables), merged with
//! the OVF properties and the wizard's answers, and written back to the same
//! file so a power loss can resume. The staff password stays in the file (mode
//! 0600) only until first boot has finished with it, then the file is
//! rewritten without it. Comments and unknown formatting the operator wrote are
//! kept: the file is edited with `toml_edit`, not regenerated.

use std::collections::BTreeMap;
use std::fmt;

use toml_edit::{DocumentMut, Item, Table};

use super::root::{FileError, SETUP_FILE};
use super::validate::{self, Invalid};
use super::{Lang, Root};
use crate::answers::{Kind, QUESTIONS};

/// Keys setup.toml may hold besides the questions.
pub const EXTRA_KEYS: &[&str] = &[
    "tls.acme_directory",
    "tls.cert",
    "tls.key",
    "tls.chain",
    "tls.ca",
];
/// Certificate mode when none is given.
pub const DEFAULT_TLS_MODE: &str = "letsencrypt";

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error("{path} não é TOML válido: {message}\ncorrija o arquivo (veja as chaves em `balcaoctl firstboot --help`) e rode `balcaoctl firstboot` de novo")]
    Syntax { path: String, message: String },
}

/// A password: never printed by `Debug`, never `Display`ed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Where an answer came from, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Preseed,
    Ovf,
    Wizard,
}

impl Source {
    pub fn describe(self, lang: Lang) -> &'static str {
        match self {
            Source::Preseed => SETUP_FILE,
            Source::Ovf => lang.t("propriedades OVF (vCenter)", "OVF properties (vCenter)"),
            Source::Wizard => lang.t("assistente", "wizard"),
        }
    }
}

/// A refused answer from a file or the OVF environment.
#[derive(Debug, Clone)]
pub struct Problem {
    pub source: Source,
    pub key: String,
    pub invalid: Invalid,
}

impl Problem {
    pub fn message(&self, lang: Lang) -> String {
        format!(
            "{} `{}`: {}",
            self.source.describe(lang),
            self.key,
            self.invalid.message(lang)
        )
    }
}

/// Answers known so far, by setup.toml key, each already checked and
/// normalised. The password is held as a [`Secret`].
#[derive(Debug, Clone, Default)]
pub struct Answers {
    values: BTreeMap<String, String>,
    password: Option<Secret>,
}

impl Answers {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    pub fn password(&self) -> Option<&Secret> {
        self.password.as_ref()
    }

    pub fn has(&self, key: &str) -> bool {
        if key == "admin.password" {
            self.password.is_some()
        } else {
            self.values.contains_key(key)
        }
    }

    /// Checks `value` for `key` and keeps it; empty values are ignored.
    pub fn offer(&mut self, key: &str, value: &str) -> Result<(), Invalid> {
        if value.trim().is_empty() {
            return Ok(());
        }
        let clean = validate::check(key, value)?;
        if key == "admin.password" {
            self.password = Some(Secret::new(clean));
        } else {
            self.values.insert(key.to_owned(), clean);
        }
        Ok(())
    }

    pub fn set_password(&mut self, password: Option<Secret>) {
        self.password = password;
    }

    pub fn forget(&mut self, key: &str) {
        self.values.remove(key);
        if key == "admin.password" {
            self.password = None;
        }
    }

    /// Fills every key missing here from `other`.
    pub fn fill_from(&mut self, other: &Answers) {
        for (key, value) in &other.values {
            self.values
                .entry(key.clone())
                .or_insert_with(|| value.clone());
        }
        if self.password.is_none() {
            self.password = other.password.clone();
        }
    }

    /// Required questions still without an answer.
    pub fn missing(&self) -> Vec<&'static str> {
        QUESTIONS
            .iter()
            .filter(|q| q.required && !self.has(q.key))
            .map(|q| q.key)
            .collect()
    }

    pub fn lang(&self) -> Lang {
        Lang::from_code(self.get("language"))
    }
}

/// The complete, checked first-boot answers the steps work from.
#[derive(Debug, Clone)]
pub struct Setup {
    pub domain: String,
    pub email: String,
    pub language: Lang,
    pub admin_user: String,
    /// `None` once used, or when a reconfiguration keeps the current one.
    pub admin_password: Option<Secret>,
    pub tls_mode: String,
    pub acme_directory: Option<String>,
    pub public_ip: Option<String>,
}

impl Setup {
    /// The setup, when every required answer is present.
    pub fn from_answers(answers: &Answers) -> Option<Setup> {
        Some(Setup {
            domain: answers.get("domain")?.to_owned(),
            email: answers.get("email")?.to_owned(),
            language: answers.lang(),
            admin_user: answers.get("admin.user")?.to_owned(),
            admin_password: answers.password().cloned(),
            tls_mode: answers
                .get("tls.mode")
                .unwrap_or(DEFAULT_TLS_MODE)
                .to_owned(),
            acme_directory: answers.get("tls.acme_directory").map(str::to_owned),
            public_ip: answers.get("network.public_ip").map(str::to_owned),
        })
    }

    /// The short host name: the domain's first label.
    pub fn host_name(&self) -> &str {
        self.domain.split('.').next().unwrap_or(&self.domain)
    }

    fn pairs(&self) -> Vec<(&'static str, Option<&str>)> {
        let language = match self.language {
            Lang::Pt => "pt-BR",
            Lang::En => "en",
        };
        vec![
            ("domain", Some(&self.domain)),
            ("email", Some(&self.email)),
            ("language", Some(language)),
            ("admin.user", Some(&self.admin_user)),
            ("tls.mode", Some(&self.tls_mode)),
            ("tls.acme_directory", self.acme_directory.as_deref()),
            ("network.public_ip", self.public_ip.as_deref()),
        ]
    }
}

/// Every key setup.toml may hold.
fn known_key(key: &str) -> bool {
    QUESTIONS.iter().any(|q| q.key == key) || EXTRA_KEYS.contains(&key)
}

fn load_document(root: &Root) -> Result<Option<DocumentMut>, SetupError> {
    let Some(text) = root.read_optional(SETUP_FILE)? else {
        return Ok(None);
    };
    text.parse::<DocumentMut>()
        .map(Some)
        .map_err(|e| SetupError::Syntax {
            path: root.path(SETUP_FILE).display().to_string(),
            message: e.to_string(),
        })
}

/// Reads the preseed file: the answers it gives, and the values it gives
/// wrongly (unknown keys, wrong types, values refused by the checks).
pub fn read_preseed(root: &Root) -> Result<(Answers, Vec<Problem>), SetupError> {
    let mut answers = Answers::default();
    let mut problems = Vec::new();
    let Some(doc) = load_document(root)? else {
        return Ok((answers, problems));
    };
    let mut flat = Vec::new();
    flatten("", doc.as_table(), &mut flat);
    for (key, text) in flat {
        let problem = |pt: String, en: String| Problem {
            source: Source::Preseed,
            key: key.clone(),
            invalid: Invalid { pt, en },
        };
        if !known_key(&key) {
            problems.push(problem(
                "chave desconhecida; as chaves válidas estão em `balcaoctl firstboot --help`"
                    .into(),
                "unknown key; the valid keys are listed in `balcaoctl firstboot --help`".into(),
            ));
            continue;
        }
        let Some(value) = text else {
            problems.push(problem(
                "o valor precisa estar entre aspas (texto)".into(),
                "the value must be a quoted string".into(),
            ));
            continue;
        };
        if let Err(invalid) = answers.offer(&key, value) {
            problems.push(Problem {
                source: Source::Preseed,
                key,
                invalid,
            });
        }
    }
    Ok((answers, problems))
}

/// Every leaf of the document as (dotted key, its text when it is a string);
/// `[admin]` tables and `admin = { ... }` inline tables read the same.
fn flatten<'a>(prefix: &str, table: &'a Table, out: &mut Vec<(String, Option<&'a str>)>) {
    let join = |name: &str| {
        if prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{prefix}.{name}")
        }
    };
    for (name, item) in table.iter() {
        let key = join(name);
        if let Some(inner) = item.as_table() {
            flatten(&key, inner, out);
        } else if let Some(inline) = item.as_inline_table() {
            for (inner_name, value) in inline.iter() {
                out.push((format!("{key}.{inner_name}"), value.as_str()));
            }
        } else {
            out.push((key, item.as_str()));
        }
    }
}

/// Writes the answers into setup.toml (mode 0600), keeping what else the file
/// says; the password is written only when `password` is given, and removed
/// otherwise.
pub fn write_setup(
    root: &Root,
    setup: &Setup,
    password: Option<&Secret>,
) -> Result<(), SetupError> {
    let mut doc = load_document(root)?.unwrap_or_default();
    for (key, value) in setup.pairs() {
        set_key(&mut doc, key, value);
    }
    set_key(&mut doc, "admin.password", password.map(Secret::expose));
    root.write_atomic(SETUP_FILE, doc.to_string().as_bytes(), 0o600)?;
    Ok(())
}

/// Rewrites setup.toml without the password; nothing happens when it holds none.
pub fn remove_password(root: &Root) -> Result<bool, SetupError> {
    let Some(mut doc) = load_document(root)? else {
        return Ok(false);
    };
    let had = doc
        .get("admin")
        .and_then(|admin| admin.get("password"))
        .is_some();
    if had {
        set_key(&mut doc, "admin.password", None);
        root.write_atomic(SETUP_FILE, doc.to_string().as_bytes(), 0o600)?;
    }
    Ok(had)
}

fn set_key(doc: &mut DocumentMut, key: &str, value: Option<&str>) {
    let (table_name, name) = match key.split_once('.') {
        Some((table, name)) => (Some(table), name),
        None => (None, key),
    };
    let table = match table_name {
        None => doc.as_table_mut(),
        Some(table_name) => {
            if value.is_none() && doc.get(table_name).is_none() {
                return;
            }
            let entry = doc
                .as_table_mut()
                .entry(table_name)
                .or_insert_with(|| Item::Table(Table::new()));
            match entry.as_table_mut() {
                Some(table) => table,
                None => {
                    *entry = Item::Table(Table::new());
                    entry.as_table_mut().expect("just made a table")
                }
            }
        }
    };
    match value {
        // In place when present, so the key keeps the comments written above it.
        Some(value) => match table.get_mut(name) {
            Some(item) if item.as_str() == Some(value) => {}
            Some(item) => *item = toml_edit::value(value),
            None => {
                table.insert(name, toml_edit::value(value));
            }
        },
        None => {
            table.remove(name);
        }
    }
}

/// What the preseed keys are, for `--help`.
pub fn keys_help() -> String {
    let mut text = String::new();
    for q in QUESTIONS {
        let kind = match q.kind {
            Kind::Text => String::new(),
            Kind::Password => " (senha)".to_owned(),
            Kind::Choice(list) => format!(" ({})", list.join(" | ")),
        };
        text.push_str(&format!("  {}{kind}: {}\n", q.key, q.label_pt));
    }
    text.push_str("  tls.acme_directory: diretório ACME (padrão: Let's Encrypt produção)\n");
    text.push_str("  tls.cert, tls.key, tls.chain, tls.ca: arquivos do certificado do tribunal (modo own; conferidos como em `balcaoctl tls use`)\n");
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"# written by cloud-init
domain = "Balcao.TJXX.jus.br"
email = "ti@tjxx.jus.br"
language = "pt-BR"
[admin]
user = "atendimento"
password = "senha-muito-boa"   # removed after use
[tls]
mode = "letsencrypt"
acme_directory = "https://acme-staging-v02.api.letsencrypt.org/directory"
[network]
public_ip = "203.0.113.7"
"#;

    fn root_with(text: &str) -> (tempfile::TempDir, Root) {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path());
        root.write_atomic(SETUP_FILE, text.as_bytes(), 0o600)
            .unwrap();
        (dir, root)
    }

    #[test]
    fn full_preseed_reads_and_normalises() {
        let (_dir, root) = root_with(SAMPLE);
        let (answers, problems) = read_preseed(&root).unwrap();
        assert!(problems.is_empty(), "{problems:?}");
        assert!(answers.missing().is_empty());
        let setup = Setup::from_answers(&answers).unwrap();
        assert_eq!(setup.domain, "balcao.tjxx.jus.br");
        assert_eq!(setup.host_name(), "balcao");
        assert_eq!(setup.admin_password.unwrap().expose(), "senha-muito-boa");
        assert_eq!(setup.public_ip.as_deref(), Some("203.0.113.7"));
        assert!(setup.acme_directory.unwrap().contains("staging"));
        assert!(!format!("{answers:?}").contains("senha-muito-boa"));
    }

    #[test]
    fn bad_values_unknown_keys_and_types_are_problems() {
        let (_dir, root) = root_with(
            "domain = \"10.0.0.1\"\ndominio = \"x.y\"\nemail = 3\n[admin]\nuser = \"focus\"\npassword = \"curta\"\n",
        );
        let (answers, problems) = read_preseed(&root).unwrap();
        let mut keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        keys.sort();
        assert_eq!(
            keys,
            ["admin.password", "admin.user", "domain", "dominio", "email"]
        );
        assert!(problems
            .iter()
            .all(|p| !p.message(Lang::Pt).contains("curta")));
        assert!(answers.missing().contains(&"domain"));
    }

    #[test]
    fn broken_toml_names_the_file() {
        let (_dir, root) = root_with("domain = \n");
        let err = read_preseed(&root).unwrap_err().to_string();
        assert!(err.contains("setup.toml"), "{err}");
    }

    #[test]
    fn absent_file_gives_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (answers, problems) = read_preseed(&Root::new(dir.path())).unwrap();
        assert!(problems.is_empty());
        assert_eq!(answers.missing().len(), 4);
    }

    #[test]
    fn password_removal_keeps_the_rest() {
        let (dir, root) = root_with(SAMPLE);
        assert!(remove_password(&root).unwrap());
        let text = std::fs::read_to_string(dir.path().join("etc/balcao/setup.toml")).unwrap();
        assert!(!text.contains("senha-muito-boa"), "{text}");
        assert!(!text.contains("password"), "{text}");
        assert!(text.contains("# written by cloud-init"));
        assert!(text.contains("user = \"atendimento\""));
        assert!(!remove_password(&root).unwrap());
        let (answers, problems) = read_preseed(&root).unwrap();
        assert!(problems.is_empty());
        assert_eq!(answers.missing(), ["admin.password"]);
    }

    #[test]
    fn written_setup_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path());
        let mut answers = Answers::default();
        for (k, v) in [
            ("domain", "b.tjxx.jus.br"),
            ("email", "a@tjxx.jus.br"),
            ("admin.user", "ana"),
            ("admin.password", "0123456789"),
        ] {
            answers.offer(k, v).unwrap();
        }
        let setup = Setup::from_answers(&answers).unwrap();
        write_setup(&root, &setup, setup.admin_password.as_ref()).unwrap();
        let (back, problems) = read_preseed(&root).unwrap();
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(back.get("tls.mode"), Some("letsencrypt"));
        assert_eq!(back.password().unwrap().expose(), "0123456789");
        write_setup(&root, &setup, None).unwrap();
        assert!(read_preseed(&root).unwrap().0.password().is_none());
    }
}
