//! `/etc/hosts`: maps the domain (and the short name) to this machine, on
//! 127.0.1.1 as Debian does for a host without a fixed address, so Jitsi's
//! components reach each other by the public name even when the address comes
//! from DHCP. The line is marked; other lines the operator wrote stay, except
//! an older 127.0.1.1 line, which would give a second name to the address.

use super::{Context, Facts, Step, StepError};
use crate::appliance::Lang;

pub const HOSTS_FILE: &str = "/etc/hosts";
/// Debian's address for the machine's own name.
pub const SELF_ADDRESS: &str = "127.0.1.1";
/// Marks the line this step owns.
const MARK: &str = "# balcao";

pub struct Hosts;

/// The file's text with our line in place.
pub fn render(current: &str, domain: &str, short: &str) -> String {
    let ours = format!("{SELF_ADDRESS}\t{domain} {short}\t{MARK}");
    let mut lines: Vec<String> = Vec::new();
    let mut placed = false;
    for line in current.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if line.trim_end().ends_with(MARK) || first == SELF_ADDRESS {
            continue;
        }
        lines.push(line.to_owned());
        // Right after localhost, where a reader looks for it.
        if !placed && first == "127.0.0.1" {
            lines.push(ours.clone());
            placed = true;
        }
    }
    if !placed {
        if lines.is_empty() {
            lines.push("127.0.0.1\tlocalhost".to_owned());
        }
        lines.push(ours);
    }
    let mut text = lines.join("\n");
    text.push('\n');
    text
}

impl Step for Hosts {
    fn name(&self) -> &'static str {
        "hosts"
    }

    fn title(&self, lang: Lang) -> &'static str {
        lang.t("Domínio em /etc/hosts", "Domain in /etc/hosts")
    }

    fn is_done(&self, ctx: &Context) -> Result<bool, StepError> {
        let current = ctx.root.read_optional(HOSTS_FILE)?.unwrap_or_default();
        let setup = ctx.setup;
        Ok(render(&current, &setup.domain, setup.host_name()) == current)
    }

    fn apply(&self, ctx: &Context) -> Result<Facts, StepError> {
        let current = ctx.root.read_optional(HOSTS_FILE)?.unwrap_or_default();
        let text = render(&current, &ctx.setup.domain, ctx.setup.host_name());
        if text != current {
            ctx.root.write_atomic(HOSTS_FILE, text.as_bytes(), 0o644)?;
        }
        Ok(Facts::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEBIAN: &str = "127.0.0.1\tlocalhost\n127.0.1.1\tdebian\n\n# The following lines are desirable for IPv6 capable hosts\n::1     localhost ip6-localhost ip6-loopback\nff02::1 ip6-allnodes\n";

    #[test]
    fn replaces_debian_line_and_keeps_the_rest() {
        let text = render(DEBIAN, "balcao.tjxx.jus.br", "balcao");
        assert_eq!(
            text,
            "127.0.0.1\tlocalhost\n127.0.1.1\tbalcao.tjxx.jus.br balcao\t# balcao\n\n# The following lines are desirable for IPv6 capable hosts\n::1     localhost ip6-localhost ip6-loopback\nff02::1 ip6-allnodes\n"
        );
        assert_eq!(
            render(&text, "balcao.tjxx.jus.br", "balcao"),
            text,
            "second run changes nothing"
        );
        let renamed = render(&text, "video.tjyy.jus.br", "video");
        assert!(renamed.contains("127.0.1.1\tvideo.tjyy.jus.br video\t# balcao"));
        assert!(!renamed.contains("balcao.tjxx"));
    }

    #[test]
    fn empty_or_missing_file_gets_localhost_too() {
        let text = render("", "b.tjxx.jus.br", "b");
        assert_eq!(
            text,
            "127.0.0.1\tlocalhost\n127.0.1.1\tb.tjxx.jus.br b\t# balcao\n"
        );
        let text = render("10.0.0.9 nas\n", "b.tjxx.jus.br", "b");
        assert_eq!(text, "10.0.0.9 nas\n127.0.1.1\tb.tjxx.jus.br b\t# balcao\n");
    }
}
