//! The first-boot steps. Each one has a name (its key in the state file), an
//! idempotent `apply`, and `is_done`, which looks at the machine (not at the
//! state file) to say whether the step's effect is in place. The runner uses
//! both: a step recorded as done whose effect is gone is applied again.
//!
//! Later work adds steps here (Jitsi, TLS), before `message`, which writes the
//! login message from what the earlier steps recorded.

use std::collections::BTreeMap;

use super::root::FileError;
use super::setup::Setup;
use super::state::State;
use super::{Lang, Root, System};
use crate::command::CommandError;

pub mod firewall;
pub mod hostname;
pub mod hosts;
pub mod jitsi_common;
pub mod jitsi_health;
pub mod jitsi_install;
pub mod jitsi_preseed;
pub mod jitsi_secure;
pub mod jitsi_site;
pub mod message;
pub mod secrets;
pub mod tls;

/// Facts a step records for later messages (never secrets).
pub type Facts = BTreeMap<String, String>;

#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error("{0}")]
    Check(String),
}

/// What a step works with.
pub struct Context<'a> {
    pub root: &'a Root,
    pub system: &'a dyn System,
    pub setup: &'a Setup,
    /// The state as it was before this step (for facts of earlier steps).
    pub state: &'a State,
}

pub trait Step {
    /// Key in the state file; never changes once released.
    fn name(&self) -> &'static str;

    /// One line for the console and `balcaoctl status`.
    fn title(&self, lang: Lang) -> &'static str;

    /// Steps that must happen once per machine (fresh secrets) and are not
    /// redone by `--reconfigure`.
    fn once_per_instance(&self) -> bool {
        false
    }

    /// systemd services this step sets up, checked by `balcaoctl status`.
    fn services(&self) -> &'static [&'static str] {
        &[]
    }

    /// Whether the step's effect is in place on the machine.
    fn is_done(&self, ctx: &Context) -> Result<bool, StepError>;

    /// Brings the machine to the step's effect; running it again when the
    /// effect is already there changes nothing.
    fn apply(&self, ctx: &Context) -> Result<Facts, StepError>;
}

/// Every step, in the order they run.
pub fn all() -> Vec<Box<dyn Step>> {
    vec![
        Box::new(secrets::Secrets),
        Box::new(hostname::Hostname),
        Box::new(hosts::Hosts),
        Box::new(firewall::Firewall),
        Box::new(jitsi_preseed::JitsiPreseed),
        Box::new(jitsi_install::JitsiInstall),
        Box::new(jitsi_secure::JitsiSecure),
        Box::new(jitsi_site::JitsiSite),
        Box::new(jitsi_health::JitsiHealth::default()),
        Box::new(tls::Tls::default()),
        Box::new(message::LoginMessage),
    ]
}
