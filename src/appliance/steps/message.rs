//! The last step: the address and next steps in `/etc/issue.d/` and
//! `/etc/motd.d/`, from the answers and what earlier steps recorded (the TLS
//! step's certificate fingerprint, the SSH key fingerprint).

use super::{Context, Facts, Step, StepError};
use crate::appliance::message::{self, Addresses};
use crate::appliance::root::{ISSUE_FILE, MOTD_FILE};
use crate::appliance::Lang;
use crate::command::Cmd;

pub struct LoginMessage;

/// This machine's addresses from `hostname -I`, on the running system only.
pub fn machine_addresses(
    ctx_root: &crate::appliance::Root,
    system: &dyn crate::appliance::System,
) -> Option<String> {
    if !ctx_root.is_system() {
        return None;
    }
    let out = system.run(&Cmd::new("hostname").arg("-I")).ok()?;
    let list = out.stdout_text().trim().to_owned();
    (!list.is_empty()).then_some(list)
}

impl LoginMessage {
    fn texts(&self, ctx: &Context) -> (String, String) {
        let known = machine_addresses(ctx.root, ctx.system);
        let motd_addresses = match known.as_deref() {
            Some(list) => Addresses::Known(list),
            None => Addresses::Unknown,
        };
        let issue = message::done_text(ctx.setup, ctx.state, Addresses::IssueEscape);
        let motd = message::done_text(ctx.setup, ctx.state, motd_addresses);
        (issue, motd)
    }
}

impl Step for LoginMessage {
    fn name(&self) -> &'static str {
        "message"
    }

    fn title(&self, lang: Lang) -> &'static str {
        lang.t(
            "Mensagem do console e do login",
            "Console and login message",
        )
    }

    fn is_done(&self, ctx: &Context) -> Result<bool, StepError> {
        // Done when the files hold the finished text, not the pending one.
        let issue = ctx.root.read_optional(ISSUE_FILE)?.unwrap_or_default();
        let motd = ctx.root.read_optional(MOTD_FILE)?.unwrap_or_default();
        let want = format!("https://{}/", ctx.setup.domain);
        Ok(issue.contains(&want) && motd.contains(&want))
    }

    fn apply(&self, ctx: &Context) -> Result<Facts, StepError> {
        let (issue, motd) = self.texts(ctx);
        message::write(ctx.root, &issue, &motd)?;
        Ok(Facts::new())
    }
}
