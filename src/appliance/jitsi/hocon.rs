//! The HOCON edits (jicofo.conf, jvb.conf), made with the `hocon` CLI from
//! Debian's ruby-hocon, the tool Jitsi's postinst scripts use on the same
//! files. It keeps comments and layout; a key that already holds the wanted
//! value is left alone, so each edit is idempotent.
//!
//! The file's text goes to the CLI on standard input and comes back on
//! standard output: nothing is written here, the caller installs the result.

use std::net::IpAddr;

use serde_json::{json, Value};

use super::{Domain, JitsiError};
use crate::command::{Cmd, CommandError};

/// The `hocon` program (Debian package ruby-hocon).
const HOCON: &str = "hocon";

fn hocon_error(what: &str, source: CommandError) -> JitsiError {
    JitsiError::Hocon {
        what: what.to_owned(),
        source,
    }
}

/// The value at `path` as JSON, or None when the file does not set it.
fn get(text: &str, path: &str) -> Result<Option<Value>, JitsiError> {
    match Cmd::new(HOCON).args(["-j", "get", path]).stdin(text).run() {
        Ok(out) => {
            let raw = out.stdout_text();
            let value = serde_json::from_str(raw.trim())
                // `hocon -j get` prints plain strings unquoted in some versions.
                .unwrap_or_else(|_| Value::String(raw.trim().to_owned()));
            Ok(Some(value))
        }
        Err(CommandError::Failed { ref output, .. })
            if output.contains("Can't find the given path") =>
        {
            Ok(None)
        }
        Err(e) => Err(hocon_error(path, e)),
    }
}

fn set(text: &str, path: &str, value: &str) -> Result<String, JitsiError> {
    Cmd::new(HOCON)
        .args(["set", path, value])
        .stdin(text)
        .run()
        .map(|out| out.stdout_text())
        .map_err(|e| hocon_error(path, e))
}

fn unset(text: &str, path: &str) -> Result<String, JitsiError> {
    Cmd::new(HOCON)
        .args(["unset", path])
        .stdin(text)
        .run()
        .map(|out| out.stdout_text())
        .map_err(|e| hocon_error(path, e))
}

/// Sets `path` to `value` (HOCON syntax) unless it already equals `wanted`.
fn ensure(text: String, path: &str, wanted: &Value, value: &str) -> Result<String, JitsiError> {
    if get(&text, path)?.as_ref() == Some(wanted) {
        Ok(text)
    } else {
        set(&text, path, value)
    }
}

/// Sets several keys of one object (`parent.key = value` for each), reading
/// the object once: each `hocon` run starts a Ruby interpreter.
fn ensure_keys(
    text: String,
    parent: &str,
    keys: &[(&str, Value, String)],
) -> Result<String, JitsiError> {
    let current = match get(&text, parent) {
        Ok(current) => current,
        // An object hocon cannot resolve as a whole (a `${...}` inside it):
        // fall back to one read per key.
        Err(JitsiError::Hocon { .. }) => {
            let mut text = text;
            for (key, wanted, value) in keys {
                text = ensure(text, &format!("{parent}.{key}"), wanted, value)?;
            }
            return Ok(text);
        }
        Err(e) => return Err(e),
    };
    let mut text = text;
    for (key, wanted, value) in keys {
        if current.as_ref().and_then(|c| c.get(key)) != Some(wanted) {
            text = set(&text, &format!("{parent}.{key}"), value)?;
        }
    }
    Ok(text)
}

/// Jicofo asks XMPP logins of whoever opens a room (login page on the main
/// domain), and runs its health checks so /about/health answers.
pub(super) fn jicofo_secure_domain(text: &str, domain: &Domain) -> Result<String, JitsiError> {
    let text = ensure_keys(
        text.to_owned(),
        "jicofo.authentication",
        &[
            ("enabled", json!(true), "true".to_owned()),
            ("type", json!("XMPP"), "XMPP".to_owned()),
            ("login-url", json!(domain.as_str()), format!("\"{domain}\"")),
        ],
    )?;
    ensure_keys(
        text,
        "jicofo.health",
        &[("enabled", json!(true), "true".to_owned())],
    )
}

pub(super) const STATIC_MAPPINGS: &str = "ice4j.harvest.mapping.static-mappings";
pub(super) const REQUIRE_VALID_ADDRESS: &str = "videobridge.health.require-valid-address";

/// The videobridge's public address: a static NAT mapping when there is one;
/// otherwise no stale mapping and no address requirement in its health.
pub(super) fn jvb_address(
    text: &str,
    public_ip: Option<IpAddr>,
    local_ip: IpAddr,
) -> Result<String, JitsiError> {
    match public_ip {
        Some(public) => {
            if public.is_ipv4() != local_ip.is_ipv4() {
                return Err(JitsiError::AddressFamilies {
                    local: local_ip,
                    public,
                });
            }
            let wanted = json!([{
                "local-address": local_ip.to_string(),
                "public-address": public.to_string(),
            }]);
            let value =
                format!("[{{ local-address = \"{local_ip}\", public-address = \"{public}\" }}]");
            ensure(text.to_owned(), STATIC_MAPPINGS, &wanted, &value)
        }
        None => {
            let text = if get(text, STATIC_MAPPINGS)?.is_some() {
                unset(text, STATIC_MAPPINGS)?
            } else {
                text.to_owned()
            };
            ensure(text, REQUIRE_VALID_ADDRESS, &json!(false), "false")
        }
    }
}
