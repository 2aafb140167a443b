//! `balcaoctl firstboot`: gathers the answers (setup.toml, then OVF
//! properties, then the wizard for what is still missing), writes them back to
//! setup.toml, runs the steps, and tells the consoles, the journal and the
//! login message how it went. A bad preseed or OVF value stops everything
//! before any change: it is reported and first boot stays pending.
//!
//! Exit codes: 0 done (or nothing to do), 2 bad answers in setup.toml or the
//! OVF properties, 3 answers missing and no console to ask them on, 1 a step
//! or anything else failed.

use std::path::PathBuf;

use super::console::{self, Broadcast, Console, StdTerminal};
use super::message;
use super::root::{DONE_FILE, LOCK_FILE};
use super::runner::{Event, RunError, Runner};
use super::setup::{self, Answers, Problem, Setup, SetupError};
use super::state::{State, StateError};
use super::steps;
use super::wizard::{self, Terminal, WizardError};
use super::{ovf, Lang, Root, System};

#[derive(Debug, thiserror::Error)]
pub enum FirstbootError {
    #[error("respostas inválidas:\n{}", .0.iter().map(|p| format!("  - {}", p.message(Lang::Pt))).collect::<Vec<_>>().join("\n"))]
    BadAnswers(Vec<Problem>),
    #[error(transparent)]
    Setup(#[from] SetupError),
    #[error("faltam respostas ({}) e não há console para perguntá-las; grave-as em /etc/balcao/setup.toml e rode `balcaoctl firstboot`", .0.join(", "))]
    NoConsole(Vec<&'static str>),
    #[error(transparent)]
    Wizard(#[from] WizardError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Run(#[from] RunError),
    #[error(transparent)]
    File(#[from] super::root::FileError),
    #[error("outra execução de `balcaoctl firstboot` está em andamento (veja `systemctl status balcao-firstboot` ou o console); espere ela terminar")]
    Busy,
    #[error("não foi possível ler o ambiente OVF {path}: {source}")]
    OvfFile {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl FirstbootError {
    pub fn exit_code(&self) -> u8 {
        match self {
            FirstbootError::BadAnswers(_) | FirstbootError::Setup(SetupError::Syntax { .. }) => 2,
            FirstbootError::NoConsole(_) => 3,
            _ => 1,
        }
    }
}

/// How `balcaoctl firstboot` was asked to run.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub root: PathBuf,
    /// Console devices for the wizard; empty means standard input and output.
    pub consoles: Vec<PathBuf>,
    pub reconfigure: bool,
    /// Read the OVF environment from this file instead of guestinfo.
    pub ovf_env: Option<PathBuf>,
}

/// How the run ended when it succeeded.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    AlreadyDone,
    Finished,
}

pub fn run(opts: &Options, system: &dyn System) -> Result<Outcome, FirstbootError> {
    let root = Root::new(&opts.root);
    let Some(_lock) = root.try_lock(LOCK_FILE)? else {
        return Err(FirstbootError::Busy);
    };
    let steps = steps::all();
    let mut state = State::load(&root)?;
    let all_done = steps
        .iter()
        .all(|s| state.status(s.name()) == super::state::Status::Done);
    if all_done && !opts.reconfigure {
        tracing::info!(
            "primeira inicialização já concluída; nada a fazer (use --reconfigure para refazer)"
        );
        return Ok(Outcome::AlreadyDone);
    }

    // Preseed first, then OVF; a wrong value anywhere stops before any change.
    let (mut answers, mut problems) = match setup::read_preseed(&root) {
        Ok(found) => found,
        Err(e) => {
            let lang = Lang::Pt;
            report_pending(&root, &opts.consoles, lang, &[e.to_string()]);
            return Err(e.into());
        }
    };
    let ovf_xml = match &opts.ovf_env {
        Some(path) => {
            Some(
                std::fs::read_to_string(path).map_err(|source| FirstbootError::OvfFile {
                    path: path.clone(),
                    source,
                })?,
            )
        }
        None if root.is_system() => ovf::fetch(system),
        None => None,
    };
    if let Some(xml) = ovf_xml {
        let (from_ovf, ovf_problems) = ovf::answers(&xml);
        answers.fill_from(&from_ovf);
        problems.extend(ovf_problems);
    }
    let lang = answers.lang();
    if !problems.is_empty() {
        let reasons: Vec<String> = problems.iter().map(|p| p.message(lang)).collect();
        report_pending(&root, &opts.consoles, lang, &reasons);
        return Err(FirstbootError::BadAnswers(problems));
    }

    // The wizard for whatever is missing (everything, on --reconfigure).
    let keys = wizard::keys_to_ask(&answers, opts.reconfigure);
    let mut outputs = Broadcast::default();
    if keys.is_empty() {
        for console in console::open_all(&opts.consoles) {
            if let Ok(out) = console.output() {
                outputs.outputs.push(out);
            }
        }
    } else {
        // Keeping the current password makes sense only once one was used.
        let keep_password = opts.reconfigure && state.completed_runs > 0;
        answers = if opts.consoles.is_empty() {
            wizard::run(&mut StdTerminal::new(), answers, &keys, keep_password)?
        } else {
            let consoles = console::open_all(&opts.consoles);
            for c in &consoles {
                if let Ok(out) = c.output() {
                    outputs.outputs.push(out);
                }
            }
            let missing = answers.missing();
            let waiting = [lang
                .t(
                    "aguardando as respostas no console (tty1 ou serial)",
                    "waiting for answers on the console (tty1 or serial)",
                )
                .to_owned()];
            let _ = message::write_pending(&root, lang, &waiting);
            let intro = lang.t(
                "\nBalcão Virtual: configuração inicial.\n",
                "\nBalcão Virtual: initial setup.\n",
            );
            let Some(mut chosen) = console::claim(consoles, lang, intro) else {
                return Err(FirstbootError::NoConsole(missing));
            };
            let others = chosen.name().to_owned();
            for out in outputs.outputs.iter_mut().filter(|o| o.name != others) {
                out.say(&console::elsewhere(lang, &others));
            }
            wizard_on(&mut chosen, answers, &keys, keep_password)?
        };
    }
    let Some(setup) = Setup::from_answers(&answers) else {
        return Err(FirstbootError::NoConsole(answers.missing()));
    };

    // Keep the answers (and the password, until used) for a resume after power loss.
    setup::write_setup(&root, &setup, setup.admin_password.as_ref())?;
    let runner = Runner {
        root: &root,
        system,
        setup: &setup,
        steps: &steps,
    };
    if opts.reconfigure {
        root.remove(DONE_FILE)?;
        runner.reset_for_reconfigure(&mut state)?;
    }

    let lang = setup.language;
    outputs.say(lang.t("\nAplicando a configuração:\n", "\nApplying the setup:\n"));
    let result = runner.run(&mut state, &mut |event| {
        let line = progress_line(lang, event);
        tracing::info!("{}", line.trim());
        outputs.say(&line);
    });
    if let Err(e) = result {
        let reason = e.to_string();
        let _ = message::write_pending(&root, lang, &[reason]);
        outputs.say(&message::pending_text(lang, &[e.to_string()]));
        return Err(e.into());
    }

    // Every step that needed the password has run: remove it from the file.
    setup::remove_password(&root)?;
    state.completed_runs += 1;
    state.save(&root)?;
    root.write_atomic(DONE_FILE, b"", 0o644)?;
    let known = steps::message::machine_addresses(&root, system);
    let addresses = match known.as_deref() {
        Some(list) => message::Addresses::Known(list),
        None => message::Addresses::Unknown,
    };
    let text = message::done_text(&setup, &state, addresses);
    outputs.say(&format!("\n{text}\n"));
    if opts.consoles.is_empty() {
        println!("\n{text}");
    }
    Ok(Outcome::Finished)
}

fn wizard_on(
    console: &mut Console,
    answers: Answers,
    keys: &[&'static str],
    keep_password: bool,
) -> Result<Answers, WizardError> {
    let term: &mut dyn Terminal = console;
    wizard::run(term, answers, keys, keep_password)
}

/// One line per step event, as the consoles and the journal show it.
pub fn progress_line(lang: Lang, event: &Event) -> String {
    match event {
        Event::Starting { title, .. } => format!("  ... {title}\n"),
        Event::Done { title, .. } => format!("  [ok] {title}\n"),
        Event::AlreadyDone { title, .. } => {
            format!("  [ok] {title} ({})\n", lang.t("já feito", "already done"))
        }
        Event::Failed { title, error, .. } => {
            format!("  [{}] {title}: {error}\n", lang.t("FALHOU", "FAILED"))
        }
    }
}

/// Says why first boot is pending on the consoles and in the login message
/// (the caller logs the error to stderr, which is the journal).
fn report_pending(root: &Root, consoles: &[PathBuf], lang: Lang, reasons: &[String]) {
    let text = message::pending_text(lang, reasons);
    if let Err(e) = message::write_pending(root, lang, reasons) {
        tracing::error!("{e}");
    }
    for console in console::open_all(consoles) {
        if let Ok(mut out) = console.output() {
            out.say(&format!("\n{text}"));
        }
    }
}
