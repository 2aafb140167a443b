//! One Let's Encrypt attempt and what follows from it. Success installs the
//! certificate, clears any pending retry and stops the retry timer; failure
//! keeps the self-signed certificate, records the reason (fact `warning`,
//! shown by `balcaoctl status`), counts the attempt and starts
//! `balcao-tls-retry.timer`, whose service (`balcaoctl tls renew --retry`)
//! tries again once the back-off has passed: 15 minutes, 1 hour, 6 hours,
//! then daily.

use super::acme::{self, Certbot, Request};
use super::cert::CertInfo;
use super::preflight::Network;
use super::{selfsigned, TlsError};
use super::{
    FACT_ATTEMPTS, FACT_EXPIRES, FACT_FINGERPRINT, FACT_ISSUER, FACT_NEXT_RETRY, FACT_SOURCE,
    FACT_WARNING, RETRY_TIMER, STEP,
};
use crate::appliance::root::LOCK_FILE;
use crate::appliance::state::{now, State};
use crate::appliance::steps::Facts;
use crate::appliance::{Lang, Root, System};
use crate::command::Cmd;

/// Waits after the 1st, 2nd, 3rd failure, then every day.
pub const BACKOFF: &[u64] = &[15 * 60, 60 * 60, 6 * 60 * 60];
pub const DAILY: u64 = 24 * 60 * 60;
/// A CA certificate with fewer days left than this is asked for again.
pub const RENEW_DAYS: i64 = 30;

/// Seconds to wait after `failures` failed attempts in a row.
pub fn backoff(failures: u32) -> u64 {
    let i = failures.saturating_sub(1) as usize;
    BACKOFF.get(i).copied().unwrap_or(DAILY)
}

/// Where the installed certificate came from.
pub fn source_of(info: &CertInfo, from_acme: bool) -> &'static str {
    if info.self_issued() {
        "self-signed"
    } else if from_acme {
        "letsencrypt"
    } else {
        "own"
    }
}

/// Sets the facts describing `info`, keeping the others.
pub fn describe(facts: &mut Facts, info: &CertInfo, source: &str) {
    facts.insert(FACT_FINGERPRINT.into(), info.fingerprint.clone());
    facts.insert(FACT_ISSUER.into(), info.issuer.clone());
    facts.insert(FACT_EXPIRES.into(), info.expires_text());
    facts.insert(FACT_SOURCE.into(), source.into());
}

/// Clears a pending retry.
pub fn clear_pending(facts: &mut Facts) {
    for key in [FACT_WARNING, FACT_ATTEMPTS, FACT_NEXT_RETRY] {
        facts.remove(key);
    }
}

/// Counts a failure; returns when the next attempt may run.
pub fn record_failure(facts: &mut Facts, reason: &str, at: u64) -> u64 {
    let failures = facts
        .get(FACT_ATTEMPTS)
        .and_then(|a| a.parse::<u32>().ok())
        .unwrap_or(0)
        + 1;
    let next = at + backoff(failures);
    facts.insert(FACT_ATTEMPTS.into(), failures.to_string());
    facts.insert(FACT_NEXT_RETRY.into(), next.to_string());
    facts.insert(
        FACT_WARNING.into(),
        format!(
            "usando certificado autoassinado (navegadores recusam): {reason}; nova tentativa automática em {}",
            crate::appliance::status::format_time(next)
        ),
    );
    next
}

/// Starts or stops the retry timer on the running system.
pub fn set_timer(root: &Root, system: &dyn System, on: bool) -> Result<(), TlsError> {
    if !root.is_system() {
        return Ok(());
    }
    let verb = if on { "enable" } else { "disable" };
    system.run(&Cmd::new("systemctl").args([verb, "--now", RETRY_TIMER]))?;
    Ok(())
}

/// Everything one attempt needs.
pub struct Attempt<'a> {
    pub root: &'a Root,
    pub system: &'a dyn System,
    pub certbot: &'a Certbot,
    pub request: Request<'a>,
    pub network: &'a Network<'a>,
}

/// What an attempt ended with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A CA certificate is installed.
    Issued(String),
    /// Kept the self-signed certificate; the reason and the next try.
    Pending { reason: String, next: u64 },
}

/// Self-signed first, then the CA unless a CA certificate with time left is
/// already installed; updates `facts` and the timer either way.
pub fn attempt(a: &Attempt, facts: &mut Facts) -> Result<Outcome, TlsError> {
    let domain = a.request.domain;
    let (current, _) = selfsigned::ensure(a.root, a.system, domain)?;
    let fresh = !current.self_issued() && current.days_left(now() as i64) >= RENEW_DAYS;
    if fresh && a.certbot.has_lineage(domain) {
        describe(facts, &current, "letsencrypt");
        clear_pending(facts);
        set_timer(a.root, a.system, false)?;
        return Ok(Outcome::Issued(current.fingerprint));
    }

    match acme::obtain(a.root, a.system, a.certbot, &a.request, a.network) {
        Ok(info) => {
            describe(facts, &info, "letsencrypt");
            clear_pending(facts);
            set_timer(a.root, a.system, false)?;
            tracing::info!(
                "certificado de {} instalado para {domain}, válido até {}",
                info.issuer,
                info.expires_text()
            );
            Ok(Outcome::Issued(info.fingerprint))
        }
        Err(failure) => {
            let reason = failure.message(Lang::Pt);
            describe(facts, &current, source_of(&current, false));
            let next = record_failure(facts, &reason, now());
            set_timer(a.root, a.system, true)?;
            tracing::warn!("{reason}");
            Ok(Outcome::Pending { reason, next })
        }
    }
}

/// Changes the `tls` step's facts in the state file, holding the first-boot
/// lock so a running first boot's own write is not lost. `None` when first
/// boot holds the lock (it records the facts itself).
pub fn update_facts<T>(
    root: &Root,
    change: impl FnOnce(&mut Facts) -> Result<T, TlsError>,
) -> Result<Option<T>, TlsError> {
    let Some(_lock) = root.try_lock(LOCK_FILE)? else {
        return Ok(None);
    };
    let mut state = State::load(root)?;
    let mut facts = state
        .record(STEP)
        .map(|r| r.facts.clone())
        .unwrap_or_default();
    let result = change(&mut facts)?;
    state.set_facts(STEP, facts);
    state.save(root)?;
    Ok(Some(result))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_then_stays_daily() {
        let waits: Vec<u64> = (1..=6).map(backoff).collect();
        assert_eq!(waits, [900, 3600, 21_600, 86_400, 86_400, 86_400]);
    }

    #[test]
    fn failures_count_up_and_success_clears() {
        let mut facts = Facts::new();
        let next = record_failure(&mut facts, "porta 80 fechada", 1_000);
        assert_eq!(next, 1_900);
        let next = record_failure(&mut facts, "porta 80 fechada", 2_000);
        assert_eq!(next, 5_600);
        assert_eq!(facts[FACT_ATTEMPTS], "2");
        assert!(facts[FACT_WARNING].contains("porta 80 fechada"));
        clear_pending(&mut facts);
        assert!(facts.is_empty());
    }
}
