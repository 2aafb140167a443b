//! Runs the steps in order and records each in the state file: `running`
//! before it starts, `done` (with its facts) or `failed` after. A step already
//! recorded as done whose effect is still there is skipped; one left
//! `running` by a power loss, or whose effect has gone, is applied again
//! (steps are idempotent). The first failure stops the run: later steps
//! build on earlier ones.

use super::setup::Setup;
use super::state::{State, StateError, Status};
use super::steps::{Context, Step, StepError};
use super::{Root, System};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("a etapa `{step}` falhou: {source}")]
    Step {
        step: String,
        #[source]
        source: StepError,
    },
    #[error("a etapa `{step}` terminou mas a verificação diz que ela não está feita; veja `balcaoctl status` e o journal (journalctl -u balcao-firstboot)")]
    NotDoneAfterApply { step: String },
}

/// What happened to one step, as it happens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Starting {
        step: String,
        title: String,
    },
    Done {
        step: String,
        title: String,
    },
    AlreadyDone {
        step: String,
        title: String,
    },
    Failed {
        step: String,
        title: String,
        error: String,
    },
}

/// Everything a run needs.
pub struct Runner<'a> {
    pub root: &'a Root,
    pub system: &'a dyn System,
    pub setup: &'a Setup,
    pub steps: &'a [Box<dyn Step>],
}

impl Runner<'_> {
    /// Resets every step that `--reconfigure` redoes to pending, and saves.
    pub fn reset_for_reconfigure(&self, state: &mut State) -> Result<(), StateError> {
        for step in self.steps {
            if !step.once_per_instance() && state.record(step.name()).is_some() {
                state.mark(step.name(), Status::Pending, None);
            }
        }
        state.save(self.root)
    }

    /// Runs the steps not yet done; `report` hears about each.
    pub fn run(&self, state: &mut State, report: &mut dyn FnMut(&Event)) -> Result<(), RunError> {
        let lang = self.setup.language;
        for step in self.steps {
            let name = step.name().to_owned();
            let title = step.title(lang).to_owned();

            if state.status(&name) == Status::Done {
                let ctx = self.context(state);
                let still = step.is_done(&ctx).map_err(|source| RunError::Step {
                    step: name.clone(),
                    source,
                })?;
                if still {
                    report(&Event::AlreadyDone { step: name, title });
                    continue;
                }
                tracing::info!("etapa `{name}` estava feita mas o efeito sumiu; refazendo");
            }

            report(&Event::Starting {
                step: name.clone(),
                title: title.clone(),
            });
            state.mark(&name, Status::Running, None);
            state.save(self.root)?;

            let result = {
                let ctx = self.context(state);
                step.apply(&ctx)
                    .and_then(|facts| step.is_done(&ctx).map(|done| (facts, done)))
            };
            match result {
                Ok((facts, true)) => {
                    state.mark(&name, Status::Done, None);
                    state.set_facts(&name, facts);
                    state.save(self.root)?;
                    report(&Event::Done { step: name, title });
                }
                Ok((_, false)) => {
                    let err = RunError::NotDoneAfterApply { step: name.clone() };
                    self.fail(state, &name, &title, &err.to_string(), report)?;
                    return Err(err);
                }
                Err(source) => {
                    self.fail(state, &name, &title, &source.to_string(), report)?;
                    return Err(RunError::Step { step: name, source });
                }
            }
        }
        Ok(())
    }

    /// Whether every step is recorded as done.
    pub fn all_done(&self, state: &State) -> bool {
        self.steps
            .iter()
            .all(|s| state.status(s.name()) == Status::Done)
    }

    fn context<'s>(&'s self, state: &'s State) -> Context<'s> {
        Context {
            root: self.root,
            system: self.system,
            setup: self.setup,
            state,
        }
    }

    fn fail(
        &self,
        state: &mut State,
        name: &str,
        title: &str,
        error: &str,
        report: &mut dyn FnMut(&Event),
    ) -> Result<(), RunError> {
        state.mark(name, Status::Failed, Some(error.to_owned()));
        state.save(self.root)?;
        report(&Event::Failed {
            step: name.to_owned(),
            title: title.to_owned(),
            error: error.to_owned(),
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::appliance::setup::Answers;
    use crate::appliance::steps::Facts;
    use crate::appliance::system::FakeSystem;
    use crate::appliance::Lang;
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Where a test step "loses power".
    #[derive(Clone, Copy, PartialEq, Debug)]
    enum Cut {
        None,
        BeforeEffect,
        AfterEffect,
    }

    /// A step whose effect is a file `/fx/NAME` holding a counter of applies.
    struct FileStep {
        name: &'static str,
        cut: std::sync::Mutex<Cut>,
        applies: AtomicUsize,
    }

    impl FileStep {
        fn new(name: &'static str) -> FileStep {
            FileStep {
                name,
                cut: std::sync::Mutex::new(Cut::None),
                applies: AtomicUsize::new(0),
            }
        }
        fn path(&self) -> String {
            format!("/fx/{}", self.name)
        }
    }

    impl Step for FileStep {
        fn name(&self) -> &'static str {
            self.name
        }
        fn title(&self, _: Lang) -> &'static str {
            self.name
        }
        fn is_done(&self, ctx: &Context) -> Result<bool, StepError> {
            Ok(ctx.root.exists(&self.path()))
        }
        fn apply(&self, ctx: &Context) -> Result<Facts, StepError> {
            if *self.cut.lock().unwrap() == Cut::BeforeEffect {
                panic!("power lost before {}", self.name);
            }
            self.applies.fetch_add(1, Ordering::SeqCst);
            // Idempotent: the same content however often it runs.
            ctx.root.write_atomic(&self.path(), b"done", 0o644)?;
            if *self.cut.lock().unwrap() == Cut::AfterEffect {
                panic!("power lost after {}", self.name);
            }
            Ok([("ran".to_owned(), self.name.to_owned())].into())
        }
    }

    fn setup() -> Setup {
        let mut a = Answers::default();
        a.offer("domain", "b.tjxx.jus.br").unwrap();
        a.offer("email", "a@tjxx.jus.br").unwrap();
        a.offer("admin.user", "ana").unwrap();
        Setup::from_answers(&a).unwrap()
    }

    const NAMES: [&str; 4] = ["one", "two", "three", "four"];

    #[test]
    fn interrupted_after_each_step_resumes_and_finishes() {
        for cut_at in 0..NAMES.len() {
            for cut in [Cut::BeforeEffect, Cut::AfterEffect] {
                let dir = tempfile::tempdir().unwrap();
                let root = Root::new(dir.path());
                let fake = FakeSystem::new();
                let setup = setup();
                let file_steps: Vec<FileStep> = NAMES.iter().map(|n| FileStep::new(n)).collect();
                *file_steps[cut_at].cut.lock().unwrap() = cut;
                let steps: Vec<Box<dyn Step>> = file_steps
                    .into_iter()
                    .map(|s| Box::new(s) as Box<dyn Step>)
                    .collect();
                let runner = Runner {
                    root: &root,
                    system: &fake,
                    setup: &setup,
                    steps: &steps,
                };

                // First boot: the machine stops inside step `cut_at`.
                let mut state = State::load(&root).unwrap();
                let crashed =
                    catch_unwind(AssertUnwindSafe(|| runner.run(&mut state, &mut |_| {})));
                assert!(crashed.is_err(), "the cut must stop the run");
                let on_disk = State::load(&root).unwrap();
                for (i, name) in NAMES.iter().enumerate() {
                    let want = match i.cmp(&cut_at) {
                        std::cmp::Ordering::Less => Status::Done,
                        std::cmp::Ordering::Equal => Status::Running,
                        std::cmp::Ordering::Greater => Status::Pending,
                    };
                    assert_eq!(
                        on_disk.status(name),
                        want,
                        "cut {cut:?} at {cut_at}, step {name}"
                    );
                }

                // Next boot: power is back, the run resumes from the file.
                let steps: Vec<Box<dyn Step>> = NAMES
                    .iter()
                    .map(|n| Box::new(FileStep::new(n)) as Box<dyn Step>)
                    .collect();
                let runner = Runner {
                    root: &root,
                    system: &fake,
                    setup: &setup,
                    steps: &steps,
                };
                let mut state = State::load(&root).unwrap();
                let mut events = Vec::new();
                runner
                    .run(&mut state, &mut |e| events.push(e.clone()))
                    .unwrap();
                assert!(runner.all_done(&State::load(&root).unwrap()));
                let redone: Vec<&str> = events
                    .iter()
                    .filter_map(|e| match e {
                        Event::Done { step, .. } => Some(step.as_str()),
                        _ => None,
                    })
                    .collect();
                assert_eq!(redone, NAMES[cut_at..].to_vec(), "cut {cut:?} at {cut_at}");
                for name in NAMES {
                    assert!(root.exists(&format!("/fx/{name}")));
                    assert_eq!(state.fact(name, "ran"), Some(name));
                }

                // A third run changes nothing.
                let mut events = Vec::new();
                runner
                    .run(&mut state, &mut |e| events.push(e.clone()))
                    .unwrap();
                assert!(events
                    .iter()
                    .all(|e| matches!(e, Event::AlreadyDone { .. })));
            }
        }
    }

    #[test]
    fn vanished_effect_is_redone_and_failure_stops_the_run() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path());
        let fake = FakeSystem::new();
        let setup = setup();
        let steps: Vec<Box<dyn Step>> = NAMES
            .iter()
            .map(|n| Box::new(FileStep::new(n)) as Box<dyn Step>)
            .collect();
        let runner = Runner {
            root: &root,
            system: &fake,
            setup: &setup,
            steps: &steps,
        };
        let mut state = State::default();
        runner.run(&mut state, &mut |_| {}).unwrap();

        root.remove("/fx/two").unwrap();
        let mut events = Vec::new();
        runner
            .run(&mut state, &mut |e| events.push(e.clone()))
            .unwrap();
        assert_eq!(
            events
                .iter()
                .filter(|e| matches!(e, Event::Done { .. }))
                .count(),
            1
        );
        assert!(root.exists("/fx/two"));

        // A folder where step three's file goes makes its write fail.
        root.remove("/fx/three").unwrap();
        std::fs::create_dir_all(root.path("/fx/three/x")).unwrap();
        state = State::default();
        state.save(&root).unwrap();
        let err = runner.run(&mut state, &mut |_| {}).unwrap_err();
        assert!(err.to_string().contains("`three`"), "{err}");
        let on_disk = State::load(&root).unwrap();
        assert_eq!(on_disk.status("three"), Status::Failed);
        assert!(on_disk.record("three").unwrap().error.is_some());
        assert_eq!(on_disk.status("four"), Status::Pending);
    }
}
