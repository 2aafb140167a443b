//! Hostname: the domain's first label (`balcao` for `balcao.tjxx.jus.br`);
//! `/etc/hosts` then gives the full name. On the running system through
//! `hostnamectl` (which also changes the live name); under another root by
//! writing `/etc/hostname`.

use super::{Context, Facts, Step, StepError};
use crate::appliance::Lang;
use crate::command::Cmd;

pub const HOSTNAME_FILE: &str = "/etc/hostname";
/// The kernel's live hostname.
const LIVE_HOSTNAME: &str = "/proc/sys/kernel/hostname";

pub struct Hostname;

impl Step for Hostname {
    fn name(&self) -> &'static str {
        "hostname"
    }

    fn title(&self, lang: Lang) -> &'static str {
        lang.t("Nome da máquina", "Host name")
    }

    fn is_done(&self, ctx: &Context) -> Result<bool, StepError> {
        let want = ctx.setup.host_name();
        let file = ctx.root.read_optional(HOSTNAME_FILE)?.unwrap_or_default();
        if file.trim() != want {
            return Ok(false);
        }
        if ctx.root.is_system() {
            let live = std::fs::read_to_string(LIVE_HOSTNAME).unwrap_or_default();
            return Ok(live.trim() == want);
        }
        Ok(true)
    }

    fn apply(&self, ctx: &Context) -> Result<Facts, StepError> {
        let name = ctx.setup.host_name();
        if ctx.root.is_system() {
            ctx.system
                .run(&Cmd::new("hostnamectl").args(["set-hostname", name]))?;
        } else {
            ctx.root
                .write_atomic(HOSTNAME_FILE, format!("{name}\n").as_bytes(), 0o644)?;
        }
        Ok(Facts::new())
    }
}
