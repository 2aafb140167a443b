//! `balcaoctl status`: one screen with each step's state from the state file
//! and, on the running system, whether each service the steps set up is
//! active (`systemctl is-active`). Anything not done or not active makes the
//! exit code non-zero.

use std::fmt::Write as _;

use super::root::SETUP_FILE;
use super::setup;
use super::state::{State, StateError, Status};
use super::steps::Step;
use super::{Lang, Root, System};
use crate::command::Cmd;

/// The fact a step records when it is done but degraded; shown and unhealthy.
pub const WARNING_FACT: &str = "warning";

/// One service's health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceHealth {
    pub name: String,
    /// What `systemctl is-active` printed (`active`, `inactive`, `failed`, ...).
    pub state: String,
}

/// Everything the status screen shows.
#[derive(Debug)]
pub struct Report {
    pub text: String,
    pub healthy: bool,
}

pub fn services(system: &dyn System, steps: &[Box<dyn Step>]) -> Vec<ServiceHealth> {
    let mut names: Vec<&str> = Vec::new();
    for step in steps {
        for name in step.services() {
            if !names.contains(name) {
                names.push(name);
            }
        }
    }
    names
        .into_iter()
        .filter(|name| known_unit(system, name))
        .map(|name| {
            let cmd = Cmd::new("systemctl").args(["is-active", name]);
            let state = match system.run(&cmd) {
                Ok(out) => out.stdout_text().trim().to_owned(),
                // is-active exits non-zero for anything but active and prints the state.
                Err(crate::command::CommandError::Failed { output, .. }) => {
                    let text = output.trim();
                    if text.is_empty() { "unknown" } else { text }.to_owned()
                }
                Err(e) => e.to_string(),
            };
            ServiceHealth {
                name: name.to_owned(),
                state,
            }
        })
        .collect()
}

/// Whether systemd knows the unit: an image without Jitsi has no prosody
/// or jicofo, and their absence is not a fault there.
fn known_unit(system: &dyn System, name: &str) -> bool {
    let cmd = Cmd::new("systemctl").args(["show", "--property=LoadState", "--value", name]);
    match system.run(&cmd) {
        Ok(out) => out.stdout_text().trim() != "not-found",
        Err(_) => true,
    }
}

pub fn report(
    root: &Root,
    system: &dyn System,
    steps: &[Box<dyn Step>],
) -> Result<Report, StateError> {
    let state = State::load(root)?;
    let (answers, _) = setup::read_preseed(root).unwrap_or_default();
    let lang = answers.lang();
    let mut healthy = true;
    let mut text = String::new();

    let _ = writeln!(
        text,
        "{}",
        lang.t("Balcão Virtual: situação", "Balcão Virtual: status")
    );
    match answers.get("domain") {
        Some(domain) => {
            let _ = writeln!(
                text,
                "  {} https://{domain}/",
                lang.t("Endereço:", "Address:")
            );
        }
        None => {
            let _ = writeln!(
                text,
                "  {} {SETUP_FILE}",
                lang.t("Domínio ainda não definido em", "Domain not set yet in")
            );
        }
    }

    let _ = writeln!(text, "\n{}", lang.t("Etapas:", "Steps:"));
    for step in steps {
        let record = state.record(step.name());
        let status = record.map(|r| r.status).unwrap_or_default();
        // A step done in a degraded way (TLS on a self-signed certificate
        // while Let's Encrypt retries) records a `warning` fact.
        let warning = record
            .filter(|_| status == Status::Done)
            .and_then(|r| r.facts.get(WARNING_FACT));
        healthy &= status == Status::Done && warning.is_none();
        let word = match warning {
            Some(_) => lang.t("[atenção]", "[warning]"),
            None => status_word(lang, status),
        };
        let when = record
            .filter(|r| r.at > 0)
            .map(|r| format_time(r.at))
            .unwrap_or_default();
        let _ = writeln!(
            text,
            "  {word:<12} {:<10} {}  {when}",
            step.name(),
            step.title(lang)
        );
        if let Some(error) = record.and_then(|r| r.error.as_deref()) {
            let _ = writeln!(text, "               {error}");
        }
        // Health checks a step recorded when it last finished (jitsi-health).
        for (key, value) in record.iter().flat_map(|r| &r.facts) {
            if let Some(what) = key.strip_prefix("health_") {
                let _ = writeln!(text, "               {what}: {value}");
            }
        }
        if let Some(warning) = warning {
            let _ = writeln!(text, "               {warning}");
        }
    }

    if root.is_system() {
        let _ = writeln!(text, "\n{}", lang.t("Serviços:", "Services:"));
        for service in services(system, steps) {
            let ok = service.state == "active";
            healthy &= ok;
            let word = if ok {
                "[ok]"
            } else {
                lang.t("[FALHA]", "[FAILED]")
            };
            let _ = writeln!(text, "  {word:<12} {:<10} {}", service.name, service.state);
        }
    }
    let _ = writeln!(
        text,
        "\n{}",
        if healthy {
            lang.t("Tudo certo.", "All good.")
        } else {
            lang.t(
                "Há pendências: veja acima; `balcaoctl firstboot` retoma as etapas, journalctl -u balcao-firstboot mostra os detalhes.",
                "Something needs attention (above); `balcaoctl firstboot` resumes the steps, journalctl -u balcao-firstboot has the details.",
            )
        }
    );
    Ok(Report { text, healthy })
}

fn status_word(lang: Lang, status: Status) -> &'static str {
    match status {
        Status::Done => "[ok]",
        Status::Pending => lang.t("[pendente]", "[pending]"),
        Status::Running => lang.t("[interrompida]", "[interrupted]"),
        Status::Failed => lang.t("[FALHOU]", "[FAILED]"),
    }
}

/// `YYYY-MM-DD HH:MM UTC` from seconds since the epoch.
pub fn format_time(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::appliance::steps;
    use crate::appliance::system::FakeSystem;

    #[test]
    fn times() {
        assert_eq!(format_time(0), "1970-01-01 00:00 UTC");
        assert_eq!(format_time(1_796_300_000), "2026-12-03 12:13 UTC");
        assert_eq!(format_time(951_782_400), "2000-02-29 00:00 UTC");
    }

    #[test]
    fn pending_and_failed_steps_are_unhealthy() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path());
        let all = steps::all();
        let mut state = State::default();
        for s in &all {
            state.mark(s.name(), Status::Done, None);
        }
        state.save(&root).unwrap();
        let fake = FakeSystem::new();
        let ok = report(&root, &fake, &all).unwrap();
        assert!(ok.healthy, "{}", ok.text);
        assert!(
            fake.commands().is_empty(),
            "no systemctl under another root"
        );

        state.mark(
            "firewall",
            Status::Failed,
            Some("`ufw enable` falhou".into()),
        );
        state.mark("message", Status::Running, None);
        state.save(&root).unwrap();
        let bad = report(&root, &fake, &all).unwrap();
        assert!(!bad.healthy);
        assert!(bad.text.contains("[FALHOU]") && bad.text.contains("`ufw enable` falhou"));
        assert!(bad.text.contains("[interrompida]"));

        state.set_facts(
            "jitsi-health",
            [("health_jvb".to_owned(), "ok".to_owned())].into(),
        );
        state.save(&root).unwrap();
        let with_health = report(&root, &fake, &all).unwrap();
        assert!(with_health.text.contains("jvb: ok"), "{}", with_health.text);
    }

    #[test]
    fn warning_fact_of_a_done_step_is_shown_and_unhealthy() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path());
        let all = steps::all();
        let mut state = State::default();
        for s in &all {
            state.mark(s.name(), Status::Done, None);
        }
        state.set_facts(
            "tls",
            [(WARNING_FACT.to_owned(), "porta 80 fechada".to_owned())].into(),
        );
        state.save(&root).unwrap();
        let report = report(&root, &FakeSystem::new(), &all).unwrap();
        assert!(!report.healthy);
        assert!(report.text.contains("[atenção]"), "{}", report.text);
        assert!(report.text.contains("porta 80 fechada"), "{}", report.text);
    }

    #[test]
    fn inactive_service_is_unhealthy() {
        let fake = FakeSystem::new();
        fake.reply("systemctl is-active ssh", "active\n", true);
        fake.reply("systemctl is-active ufw", "inactive\n", false);
        let health = services(&fake, &steps::all());
        let names: Vec<&str> = health.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "ssh",
                "ufw",
                "prosody",
                "jicofo",
                "jitsi-videobridge2",
                "nginx",
                "coturn"
            ]
        );
        assert_eq!(
            health[0],
            ServiceHealth {
                name: "ssh".into(),
                state: "active".into()
            }
        );
        assert_eq!(health[1].state, "inactive");

        // On an image without Jitsi its services are not there at all.
        fake.reply(
            "systemctl show --property=LoadState --value prosody",
            "not-found\n",
            true,
        );
        let names: Vec<String> = services(&fake, &steps::all())
            .into_iter()
            .map(|h| h.name)
            .collect();
        assert!(!names.contains(&"prosody".to_owned()), "{names:?}");
        assert!(names.contains(&"jicofo".to_owned()));
    }
}
