//! The console wizard: asks, in order, the questions of `answers::QUESTIONS`
//! that no preseed or OVF value answered (the language is never asked: it
//! comes from setup.toml or OVF, Portuguese otherwise), re-asks after a value
//! the checks refuse or a password typed differently twice, shows a summary
//! and asks for confirmation. It talks through a [`Terminal`], so tests drive
//! it with scripted input and the appliance with a real console.
//!
//! What the screen shows (Portuguese; English with `language = "en"`):
//!
//! ```text
//! Domínio do serviço
//!   Nome completo pelo qual o público acessa, por exemplo balcao.tjxx.jus.br
//! Domínio do serviço: _
//!   Valor inválido: ...            (then the same prompt again)
//! Senha do primeiro servidor: _    (nothing echoed)
//! Repita a senha: _
//!   As senhas não conferem; digite de novo.
//! Certificado TLS [letsencrypt]: _ (Enter keeps the value in brackets)
//! Resumo: ...
//! Confirma e aplica? [s/n]: _
//! ```

use std::io;

use super::setup::{Answers, DEFAULT_TLS_MODE};
use super::validate;
use super::Lang;
use crate::answers::{question, Kind, Question, QUESTIONS};

/// A place to talk to a person.
pub trait Terminal {
    fn say(&mut self, text: &str) -> io::Result<()>;
    /// One line without its end, `None` at end of input.
    fn read_line(&mut self) -> io::Result<Option<String>>;
    /// Shows `prompt` and reads a line with echo turned off (before the
    /// prompt appears, so nothing typed early is echoed) when on a terminal.
    fn read_secret(&mut self, prompt: &str) -> io::Result<Option<String>>;
}

#[derive(Debug, thiserror::Error)]
pub enum WizardError {
    #[error("a entrada terminou antes do fim do assistente; nada foi alterado. Rode `balcaoctl firstboot` de novo")]
    EndOfInput,
    #[error("erro no console: {0}; nada foi alterado. Rode `balcaoctl firstboot` de novo")]
    Io(#[from] io::Error),
}

/// The keys the wizard asks for, in question order: every required one
/// still missing, and the optional ones not given, except the language.
pub fn keys_to_ask(answers: &Answers, everything: bool) -> Vec<&'static str> {
    let any_missing = !answers.missing().is_empty();
    QUESTIONS
        .iter()
        .filter(|q| q.key != "language")
        .filter(|q| everything || (any_missing && !answers.has(q.key)))
        .map(|q| q.key)
        .collect()
}

/// Asks `keys`, starting from `answers`; returns the confirmed answers.
/// With `keep_password`, an empty password keeps the current one.
pub fn run(
    term: &mut dyn Terminal,
    mut answers: Answers,
    keys: &[&'static str],
    keep_password: bool,
) -> Result<Answers, WizardError> {
    let lang = answers.lang();
    term.say(lang.t(
        "\n=== Balcão Virtual: configuração inicial ===\n",
        "\n=== Balcão Virtual: initial setup ===\n",
    ))?;
    loop {
        for key in keys {
            let Some(q) = question(key) else { continue };
            match q.kind {
                Kind::Password => ask_password(term, lang, q, &mut answers, keep_password)?,
                _ => ask_value(term, lang, q, &mut answers)?,
            }
        }
        term.say(&summary(lang, &answers, keep_password))?;
        loop {
            term.say(lang.t("Confirma e aplica? [s/n]: ", "Confirm and apply? [y/n]: "))?;
            let line = term.read_line()?.ok_or(WizardError::EndOfInput)?;
            match line.trim().to_lowercase().as_str() {
                "s" | "sim" | "y" | "yes" => return Ok(answers),
                "n" | "nao" | "não" | "no" => break,
                _ => {}
            }
        }
        term.say(lang.t(
            "\nVamos refazer as perguntas; Enter mantém o valor entre colchetes.\n",
            "\nLet's go through the questions again; Enter keeps the value in brackets.\n",
        ))?;
    }
}

fn label(lang: Lang, q: &Question) -> &'static str {
    lang.t(q.label_pt, q.label_en)
}

fn ask_value(
    term: &mut dyn Terminal,
    lang: Lang,
    q: &Question,
    answers: &mut Answers,
) -> Result<(), WizardError> {
    let label = label(lang, q);
    term.say(&format!("\n{label}\n  {}\n", lang.t(q.help_pt, q.help_en)))?;
    let options: &[&str] = match q.kind {
        Kind::Choice(list) => list,
        _ => &[],
    };
    if !options.is_empty() {
        let listed: Vec<String> = options
            .iter()
            .enumerate()
            .map(|(i, o)| format!("{}) {o}", i + 1))
            .collect();
        term.say(&format!(
            "  {} {}\n",
            lang.t("Opções:", "Options:"),
            listed.join("  ")
        ))?;
    }
    loop {
        let default = answers
            .get(q.key)
            .map(str::to_owned)
            .or_else(|| (q.key == "tls.mode").then(|| DEFAULT_TLS_MODE.to_owned()));
        match &default {
            Some(d) => term.say(&format!("{label} [{d}]: "))?,
            None => term.say(&format!("{label}: "))?,
        }
        let line = term.read_line()?.ok_or(WizardError::EndOfInput)?;
        let mut typed = line.trim().to_owned();
        if let Ok(n) = typed.parse::<usize>() {
            if (1..=options.len()).contains(&n) {
                typed = options[n - 1].to_owned();
            }
        }
        if typed.is_empty() {
            match default {
                Some(d) => typed = d,
                None if !q.required => return Ok(()),
                None => {
                    term.say(lang.t("  Resposta obrigatória.\n", "  An answer is required.\n"))?;
                    continue;
                }
            }
        }
        match answers.offer(q.key, &typed) {
            Ok(()) => return Ok(()),
            Err(invalid) => term.say(&format!(
                "  {} {}\n",
                lang.t("Valor inválido:", "Invalid value:"),
                invalid.message(lang)
            ))?,
        }
    }
}

fn ask_password(
    term: &mut dyn Terminal,
    lang: Lang,
    q: &Question,
    answers: &mut Answers,
    keep_password: bool,
) -> Result<(), WizardError> {
    let label = label(lang, q);
    term.say(&format!("\n{label}\n  {}\n", lang.t(q.help_pt, q.help_en)))?;
    if keep_password {
        term.say(lang.t(
            "  Enter sem digitar nada mantém a senha atual.\n",
            "  Enter without typing keeps the current password.\n",
        ))?;
    }
    loop {
        let first = term
            .read_secret(&format!("{label}: "))?
            .ok_or(WizardError::EndOfInput)?;
        if first.is_empty() && keep_password {
            answers.set_password(None);
            return Ok(());
        }
        if let Err(invalid) = validate::password(&first) {
            term.say(&format!(
                "  {} {}\n",
                lang.t("Valor inválido:", "Invalid value:"),
                invalid.message(lang)
            ))?;
            continue;
        }
        let second = term
            .read_secret(lang.t("Repita a senha: ", "Repeat the password: "))?
            .ok_or(WizardError::EndOfInput)?;
        if first != second {
            term.say(lang.t(
                "  As senhas não conferem; digite de novo.\n",
                "  The passwords differ; type them again.\n",
            ))?;
            continue;
        }
        answers
            .offer(q.key, &first)
            .map_err(|e| io::Error::other(e.to_string()))?;
        return Ok(());
    }
}

/// The answers, one a line; the password never shown.
pub fn summary(lang: Lang, answers: &Answers, keep_password: bool) -> String {
    let mut out = lang.t("\nResumo:\n", "\nSummary:\n").to_owned();
    for q in QUESTIONS {
        let shown = match q.kind {
            Kind::Password if answers.password().is_some() => {
                lang.t("(definida)", "(set)").to_owned()
            }
            Kind::Password if keep_password => lang.t("(mantida)", "(kept)").to_owned(),
            _ => match answers.get(q.key) {
                Some(v) => v.to_owned(),
                None if q.key == "tls.mode" => DEFAULT_TLS_MODE.to_owned(),
                None if q.key == "language" => "pt-BR".to_owned(),
                None => lang.t("(nenhum)", "(none)").to_owned(),
            },
        };
        out.push_str(&format!("  {}: {shown}\n", label(lang, q)));
    }
    out
}

/// A terminal fed from a script, for tests: records everything said.
#[derive(Default)]
pub struct ScriptedTerminal {
    pub input: std::collections::VecDeque<String>,
    pub output: String,
}

impl ScriptedTerminal {
    pub fn new(lines: &[&str]) -> ScriptedTerminal {
        ScriptedTerminal {
            input: lines.iter().map(|l| l.to_string()).collect(),
            output: String::new(),
        }
    }
}

impl Terminal for ScriptedTerminal {
    fn say(&mut self, text: &str) -> io::Result<()> {
        self.output.push_str(text);
        Ok(())
    }
    fn read_line(&mut self) -> io::Result<Option<String>> {
        let line = self.input.pop_front();
        if let Some(l) = &line {
            self.output.push_str(l);
            self.output.push('\n');
        }
        Ok(line)
    }
    fn read_secret(&mut self, prompt: &str) -> io::Result<Option<String>> {
        self.output.push_str(prompt);
        let line = self.input.pop_front();
        self.output.push('\n');
        Ok(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::appliance::setup::Setup;

    #[test]
    fn bad_values_and_mismatched_passwords_are_asked_again() {
        let mut term = ScriptedTerminal::new(&[
            "192.0.2.1",          // IP address: refused
            "Balcao.TJXX.jus.br", // accepted, lowercased
            "ti",                 // not an e-mail
            "ti@tjxx.jus.br",
            "focus", // reserved
            "atendimento",
            "curta",           // too short
            "senha-muito-boa", // then a different repeat
            "senha-muito-bo",
            "senha-muito-boa",
            "senha-muito-boa",
            "", // TLS: default letsencrypt
            "", // no public IP
            "s",
        ]);
        let answers = Answers::default();
        let keys = keys_to_ask(&answers, false);
        assert_eq!(
            keys,
            [
                "domain",
                "email",
                "admin.user",
                "admin.password",
                "tls.mode",
                "network.public_ip"
            ]
        );
        let got = run(&mut term, answers, &keys, false).unwrap();
        let setup = Setup::from_answers(&got).unwrap();
        assert_eq!(setup.domain, "balcao.tjxx.jus.br");
        assert_eq!(setup.admin_user, "atendimento");
        assert_eq!(setup.tls_mode, "letsencrypt");
        assert_eq!(setup.public_ip, None);
        assert_eq!(setup.admin_password.unwrap().expose(), "senha-muito-boa");
        let out = &term.output;
        assert!(out.contains("é um endereço IP"), "{out}");
        assert!(out.contains("não é um e-mail válido"));
        assert!(out.contains("reservado pelo Jitsi"));
        assert!(out.contains("pelo menos 10 caracteres"));
        assert_eq!(out.matches("As senhas não conferem").count(), 1);
        assert!(!out.contains("senha-muito"), "password shown: {out}");
        assert!(out.contains("Senha do primeiro servidor: (definida)"));
    }

    #[test]
    fn refusing_the_summary_asks_again_with_defaults() {
        let mut preset = Answers::default();
        preset.offer("email", "ti@tjxx.jus.br").unwrap();
        preset.offer("tls.mode", "own").unwrap();
        let keys = keys_to_ask(&preset, false);
        assert_eq!(
            keys,
            [
                "domain",
                "admin.user",
                "admin.password",
                "network.public_ip"
            ]
        );
        let mut term = ScriptedTerminal::new(&[
            "a.tjxx.jus.br",
            "ana",
            "0123456789",
            "0123456789",
            "10.0.0.5",
            "203.0.113.7",
            "talvez",
            "n",
            "b.tjxx.jus.br",
            "",
            "0123456789",
            "0123456789",
            "",
            "sim",
        ]);
        let got = run(&mut term, preset, &keys, false).unwrap();
        assert_eq!(got.get("domain"), Some("b.tjxx.jus.br"));
        assert_eq!(got.get("admin.user"), Some("ana"));
        assert_eq!(got.get("network.public_ip"), Some("203.0.113.7"));
        assert_eq!(got.get("tls.mode"), Some("own"));
        assert!(term.output.contains("Domínio do serviço [a.tjxx.jus.br]: "));
        assert!(term.output.contains("não é um endereço público"));
    }

    #[test]
    fn choices_take_numbers_and_reconfigure_keeps_password() {
        let mut preset = Answers::default();
        for (k, v) in [
            ("domain", "a.tjxx.jus.br"),
            ("email", "ti@tjxx.jus.br"),
            ("admin.user", "ana"),
        ] {
            preset.offer(k, v).unwrap();
        }
        assert_eq!(
            keys_to_ask(&preset, false),
            ["admin.password", "tls.mode", "network.public_ip"]
        );
        let keys = keys_to_ask(&preset, true);
        let mut term = ScriptedTerminal::new(&["", "", "", "", "9", "2", "", "s"]);
        let got = run(&mut term, preset, &keys, true).unwrap();
        assert_eq!(got.get("tls.mode"), Some("self-signed"));
        assert!(got.password().is_none());
        assert!(term.output.contains("(mantida)"));
    }

    #[test]
    fn end_of_input_is_an_error() {
        let mut term = ScriptedTerminal::new(&["a.tjxx.jus.br"]);
        let keys = keys_to_ask(&Answers::default(), false);
        assert!(matches!(
            run(&mut term, Answers::default(), &keys, false),
            Err(WizardError::EndOfInput)
        ));
    }
}
