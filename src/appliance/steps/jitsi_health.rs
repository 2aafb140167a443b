//! `jitsi-health`: restarts the services whose files earlier steps changed
//! (prosody, jicofo, jitsi-videobridge2, nginx; listed in the restart file so
//! a power loss in between still ends in a restart), then waits until each
//! answers on this machine: the videobridge's and jicofo's health endpoints,
//! prosody's BOSH endpoint, and the HTTPS site through nginx. The Java
//! services take a while to start, so it keeps asking for up to two minutes.
//!
//! The HTTPS check does not verify the certificate: at this point it is the
//! self-signed one the install made (the TLS step replaces it), and the check
//! is about nginx answering for the domain, not about trust. It connects to
//! 127.0.0.1 with the domain as the TLS server name and Host header.

use std::time::{Duration, Instant};

use super::jitsi_common::{in_scope, out_of_scope_facts, pending_restarts, restart_cmd};
use super::jitsi_common::{RESTART_FILE, SERVICES};
use super::{Context, Facts, Step, StepError};
use crate::appliance::Lang;
use crate::command::{Cmd, CommandError};

/// One thing that must answer.
#[derive(Debug, Clone)]
pub struct Probe {
    /// Key in the step's facts.
    pub key: &'static str,
    /// The systemd service that answers it, for the error message.
    pub service: &'static str,
    pub cmd: Cmd,
}

/// `curl` quietly, failing on HTTP errors, a few seconds at most.
fn curl() -> Cmd {
    Cmd::new("curl").args(["-fsS", "-o", "/dev/null", "--max-time", "5"])
}

/// What is checked for `domain`.
pub fn probes(domain: &str) -> Vec<Probe> {
    vec![
        Probe {
            key: "health_prosody",
            service: "prosody",
            // mod_bosh answers GET with a short page; the Host header picks
            // the domain's virtual host, as nginx's proxy does.
            cmd: curl()
                .args(["-H", &format!("Host: {domain}")])
                .arg("http://127.0.0.1:5280/http-bind"),
        },
        Probe {
            key: "health_jicofo",
            service: "jicofo",
            cmd: curl().arg("http://127.0.0.1:8888/about/health"),
        },
        Probe {
            key: "health_jvb",
            service: "jitsi-videobridge2",
            cmd: curl().arg("http://127.0.0.1:8080/about/health"),
        },
        Probe {
            key: "health_https",
            service: "nginx",
            // -k: the certificate is still the self-signed one (see above).
            cmd: curl()
                .args(["-k", "--resolve", &format!("{domain}:443:127.0.0.1")])
                .arg(format!("https://{domain}/")),
        },
    ]
}

/// Why one probe failed, short enough for the status screen.
fn failure(e: CommandError) -> String {
    match e {
        CommandError::Failed { output, .. } => {
            let line = output.lines().last().unwrap_or("").trim().to_owned();
            if line.is_empty() {
                "sem resposta".to_owned()
            } else {
                line
            }
        }
        other => other.to_string(),
    }
}

pub struct JitsiHealth {
    /// How long to keep asking before giving up.
    pub patience: Duration,
    /// Pause between rounds.
    pub pause: Duration,
}

impl Default for JitsiHealth {
    fn default() -> Self {
        JitsiHealth {
            patience: Duration::from_secs(120),
            pause: Duration::from_secs(3),
        }
    }
}

impl JitsiHealth {
    /// One round: each probe's result.
    fn round(&self, ctx: &Context) -> Vec<(Probe, Result<(), String>)> {
        probes(&ctx.setup.domain)
            .into_iter()
            .map(|probe| {
                let result = ctx.system.run(&probe.cmd).map(|_| ()).map_err(failure);
                (probe, result)
            })
            .collect()
    }
}

impl Step for JitsiHealth {
    fn name(&self) -> &'static str {
        "jitsi-health"
    }

    fn title(&self, lang: Lang) -> &'static str {
        lang.t(
            "Serviços do Jitsi reiniciados e respondendo",
            "Jitsi services restarted and answering",
        )
    }

    fn services(&self) -> &'static [&'static str] {
        &["prosody", "jicofo", "jitsi-videobridge2", "nginx", "coturn"]
    }

    fn is_done(&self, ctx: &Context) -> Result<bool, StepError> {
        if !in_scope(ctx)? {
            return Ok(true);
        }
        Ok(
            pending_restarts(ctx.root)?.is_empty()
                && self.round(ctx).iter().all(|(_, r)| r.is_ok()),
        )
    }

    fn apply(&self, ctx: &Context) -> Result<Facts, StepError> {
        if !in_scope(ctx)? {
            return Ok(out_of_scope_facts());
        }

        // Restart what changed; with nothing listed, only what is not
        // answering gets a restart.
        let mut restart = pending_restarts(ctx.root)?;
        if restart.is_empty() {
            let failing: Vec<&str> = self
                .round(ctx)
                .into_iter()
                .filter(|(_, r)| r.is_err())
                .map(|(p, _)| p.service)
                .collect();
            restart = SERVICES
                .iter()
                .copied()
                .filter(|s| failing.contains(s))
                .collect();
        }
        for service in &restart {
            ctx.system.run(&restart_cmd(service))?;
        }
        ctx.root.remove(RESTART_FILE)?;

        let started = Instant::now();
        loop {
            let results = self.round(ctx);
            if results.iter().all(|(_, r)| r.is_ok()) {
                let mut facts: Facts = results
                    .iter()
                    .map(|(p, _)| (p.key.to_owned(), "ok".to_owned()))
                    .collect();
                facts.insert("restarted".into(), restart.join(" "));
                return Ok(facts);
            }
            if started.elapsed() >= self.patience {
                let failed: Vec<String> = results
                    .into_iter()
                    .filter_map(|(p, r)| {
                        r.err()
                            .map(|why| format!("{} ({}): {why}", p.service, p.cmd.display()))
                    })
                    .collect();
                return Err(StepError::Check(format!(
                    "depois de {} s ainda não respondem: {}. Veja `journalctl -u SERVIÇO` \
                     para cada um e rode `balcaoctl firstboot` de novo",
                    self.patience.as_secs(),
                    failed.join("; ")
                )));
            }
            std::thread::sleep(self.pause);
        }
    }
}
