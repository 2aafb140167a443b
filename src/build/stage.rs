//! One line per build stage with its duration, and a spinner showing what a
//! long stage is doing when stderr is a terminal.

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// A stage in progress; [`Stage::done`] logs its duration.
pub struct Stage {
    name: &'static str,
    started: Instant,
    spinner: Option<ProgressBar>,
}

impl Stage {
    pub fn start(name: &'static str) -> Stage {
        tracing::info!("{name}...");
        let spinner = std::io::IsTerminal::is_terminal(&std::io::stderr()).then(|| {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("  {spinner} {elapsed:>4} {wide_msg}")
                    .expect("constant template"),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Stage {
            name,
            started: Instant::now(),
            spinner,
        }
    }

    /// Shows what the stage is doing now (a tool's progress line).
    pub fn progress(&self, message: &str) {
        match &self.spinner {
            Some(bar) => bar.set_message(message.to_owned()),
            None => tracing::debug!("  {message}"),
        }
    }

    pub fn done(self) -> Duration {
        let elapsed = self.started.elapsed();
        if let Some(bar) = &self.spinner {
            bar.finish_and_clear();
        }
        tracing::info!("{} done in {:.1} s", self.name, elapsed.as_secs_f64());
        elapsed
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        if let Some(bar) = &self.spinner {
            bar.finish_and_clear();
        }
    }
}
