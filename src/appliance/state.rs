//! The record of first boot, `/var/lib/balcao/state.toml`: for each step its
//! status, when it last changed, and the facts it wants shown later (a
//! certificate fingerprint, SSH key fingerprints; never a secret). Rewritten
//! atomically on every change, so after a power loss it says which step was
//! running and the runner starts that step again.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::root::{FileError, STATE_FILE};
use super::Root;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error("{path} está corrompido ({message}); apague-o e rode `balcaoctl firstboot` para refazer as etapas (elas não repetem o que já está feito)")]
    Corrupt { path: String, message: String },
}

/// Where a step stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    #[default]
    Pending,
    /// Started and not finished: the machine stopped or the step crashed.
    Running,
    Done,
    Failed,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    pub status: Status,
    /// Seconds since the epoch of the last change.
    #[serde(default)]
    pub at: u64,
    /// The last error, for `balcaoctl status`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Non-secret facts the step recorded for later messages.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub facts: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// Times `balcaoctl firstboot` ran to the end.
    #[serde(default)]
    pub completed_runs: u32,
    #[serde(default)]
    pub steps: BTreeMap<String, StepRecord>,
}

impl State {
    pub fn load(root: &Root) -> Result<State, StateError> {
        match root.read_optional(STATE_FILE)? {
            None => Ok(State::default()),
            Some(text) => toml::from_str(&text).map_err(|e| StateError::Corrupt {
                path: root.path(STATE_FILE).display().to_string(),
                message: e.to_string(),
            }),
        }
    }

    pub fn save(&self, root: &Root) -> Result<(), StateError> {
        let text = toml::to_string(self).map_err(|e| StateError::Corrupt {
            path: root.path(STATE_FILE).display().to_string(),
            message: e.to_string(),
        })?;
        root.write_atomic(STATE_FILE, text.as_bytes(), 0o644)?;
        Ok(())
    }

    pub fn status(&self, step: &str) -> Status {
        self.steps.get(step).map(|r| r.status).unwrap_or_default()
    }

    pub fn record(&self, step: &str) -> Option<&StepRecord> {
        self.steps.get(step)
    }

    pub fn fact(&self, step: &str, fact: &str) -> Option<&str> {
        self.steps.get(step)?.facts.get(fact).map(String::as_str)
    }

    /// Sets the step's status (and error), stamping the time.
    pub fn mark(&mut self, step: &str, status: Status, error: Option<String>) {
        let record = self.steps.entry(step.to_owned()).or_default();
        record.status = status;
        record.error = error;
        record.at = now();
    }

    pub fn set_facts(&mut self, step: &str, facts: BTreeMap<String, String>) {
        self.steps.entry(step.to_owned()).or_default().facts = facts;
    }
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path());
        assert_eq!(State::load(&root).unwrap(), State::default());
        let mut state = State::default();
        state.mark("hostname", Status::Done, None);
        state.mark("firewall", Status::Failed, Some("ufw falhou".into()));
        state.set_facts(
            "secrets",
            [("ssh".to_owned(), "SHA256:x".to_owned())].into(),
        );
        state.save(&root).unwrap();
        let back = State::load(&root).unwrap();
        assert_eq!(back, state);
        assert_eq!(back.status("hostname"), Status::Done);
        assert_eq!(back.status("hosts"), Status::Pending);
        assert_eq!(back.fact("secrets", "ssh"), Some("SHA256:x"));
    }

    #[test]
    fn corrupt_state_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path());
        root.write_atomic(STATE_FILE, b"steps = 3", 0o644).unwrap();
        let err = State::load(&root).unwrap_err().to_string();
        assert!(err.contains("state.toml"), "{err}");
    }
}
