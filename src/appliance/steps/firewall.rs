//! Firewall: ufw with incoming traffic denied by default and the ports the
//! appliance serves opened: SSH, HTTP (certificate challenges and redirect),
//! HTTPS, the videobridge's media port and the TURN server's ports. The old
//! 4443/tcp (ICE over TCP) is obsolete since the videobridge dropped it in
//! 2024, and is closed when an earlier setup opened it. Rules the operator
//! added are left alone.

use super::{Context, Facts, Step, StepError};
use crate::appliance::Lang;
use crate::command::Cmd;

/// One port ufw opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FirewallRule {
    /// As ufw writes it: `443/tcp`.
    pub port: &'static str,
    pub what_pt: &'static str,
    pub what_en: &'static str,
}

/// The ports open to everyone (from the Jitsi notes: 22, 80, 443/tcp,
/// 10000/udp, 3478/udp, 5349/tcp).
pub const RULES: &[FirewallRule] = &[
    FirewallRule {
        port: "22/tcp",
        what_pt: "SSH",
        what_en: "SSH",
    },
    FirewallRule {
        port: "80/tcp",
        what_pt: "HTTP (validação do certificado)",
        what_en: "HTTP (certificate validation)",
    },
    FirewallRule {
        port: "443/tcp",
        what_pt: "HTTPS",
        what_en: "HTTPS",
    },
    FirewallRule {
        port: "10000/udp",
        what_pt: "áudio e vídeo (videobridge)",
        what_en: "audio and video (videobridge)",
    },
    FirewallRule {
        port: "3478/udp",
        what_pt: "TURN",
        what_en: "TURN",
    },
    FirewallRule {
        port: "5349/tcp",
        what_pt: "TURN sobre TLS",
        what_en: "TURN over TLS",
    },
];

/// Ports earlier Jitsi guides opened that nothing listens on any more.
pub const OBSOLETE: &[&str] = &["4443/tcp"];

pub struct Firewall;

/// What `ufw status verbose` says, as far as this step cares.
#[derive(Debug, Default, PartialEq)]
pub struct UfwStatus {
    pub active: bool,
    pub deny_incoming: bool,
    /// Ports with an ALLOW IN rule from anywhere.
    pub allowed: Vec<String>,
}

pub fn parse_status(text: &str) -> UfwStatus {
    let mut status = UfwStatus::default();
    for line in text.lines() {
        let line = line.trim();
        if line == "Status: active" {
            status.active = true;
        } else if let Some(defaults) = line.strip_prefix("Default:") {
            status.deny_incoming = defaults.contains("deny (incoming)");
        } else if line.contains("ALLOW IN") || line.contains("ALLOW ") {
            let port = line.split_whitespace().next().unwrap_or("");
            // "22/tcp (v6)" is the same port for IPv6.
            if !status.allowed.iter().any(|p| p == port) {
                status.allowed.push(port.to_owned());
            }
        }
    }
    status
}

fn status(ctx: &Context) -> Result<UfwStatus, StepError> {
    let out = ctx
        .system
        .run(&Cmd::new("ufw").args(["status", "verbose"]))?;
    Ok(parse_status(&out.stdout_text()))
}

impl Step for Firewall {
    fn name(&self) -> &'static str {
        "firewall"
    }

    fn title(&self, lang: Lang) -> &'static str {
        lang.t(
            "Firewall (ufw: 22, 80, 443/tcp, 10000, 3478/udp, 5349/tcp)",
            "Firewall (ufw: 22, 80, 443/tcp, 10000, 3478/udp, 5349/tcp)",
        )
    }

    fn services(&self) -> &'static [&'static str] {
        &["ufw"]
    }

    fn is_done(&self, ctx: &Context) -> Result<bool, StepError> {
        let now = status(ctx)?;
        Ok(now.active
            && now.deny_incoming
            && RULES
                .iter()
                .all(|r| now.allowed.iter().any(|p| p == r.port))
            && !OBSOLETE.iter().any(|o| now.allowed.iter().any(|p| p == o)))
    }

    fn apply(&self, ctx: &Context) -> Result<Facts, StepError> {
        let ufw = |args: &[&str]| ctx.system.run(&Cmd::new("ufw").args(args));
        let before = status(ctx)?;
        ufw(&["default", "deny", "incoming"])?;
        ufw(&["default", "allow", "outgoing"])?;
        for rule in RULES {
            if !before.allowed.iter().any(|p| p == rule.port) {
                ufw(&["allow", rule.port])?;
            }
        }
        for port in OBSOLETE {
            if before.allowed.iter().any(|p| p == port) {
                ufw(&["delete", "allow", port])?;
            }
        }
        if !before.active {
            ufw(&["--force", "enable"])?;
        }
        Ok(Facts::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub const ACTIVE: &str = "Status: active\nLogging: on (low)\nDefault: deny (incoming), allow (outgoing), deny (routed)\nNew profiles: skip\n\nTo                         Action      From\n--                         ------      ----\n22/tcp                     ALLOW IN    Anywhere\n80/tcp                     ALLOW IN    Anywhere\n443/tcp                    ALLOW IN    Anywhere\n10000/udp                  ALLOW IN    Anywhere\n3478/udp                   ALLOW IN    Anywhere\n5349/tcp                   ALLOW IN    Anywhere\n22/tcp (v6)                ALLOW IN    Anywhere (v6)\n";

    #[test]
    fn status_is_parsed() {
        let s = parse_status(ACTIVE);
        assert!(s.active && s.deny_incoming);
        assert_eq!(
            s.allowed,
            [
                "22/tcp",
                "80/tcp",
                "443/tcp",
                "10000/udp",
                "3478/udp",
                "5349/tcp"
            ]
        );
        let off = parse_status("Status: inactive\n");
        assert_eq!(off, UfwStatus::default());
    }
}
