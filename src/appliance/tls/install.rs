//! Putting a certificate where it is used: `/etc/jitsi/meet/DOMAIN.crt` and
//! `.key` (Jitsi's nginx site), plus whatever other files `/etc/turnserver.conf`
//! names in `cert=` / `pkey=` (Jitsi's template points coturn at the same
//! files; Jitsi's Let's Encrypt script moves it to copies under
//! /etc/coturn/certs). Then nginx is reloaded (open connections stay up) and
//! coturn restarted (media flows through the videobridge, not coturn, for
//! most calls). Files identical to what would be written are left alone and
//! nothing is reloaded, so running it twice changes nothing.

use std::os::unix::fs::PermissionsExt;

use super::{jitsi_paths, TlsError, TURNSERVER_CONF};
use crate::appliance::{Root, System};
use crate::command::Cmd;

/// Group allowed to read the key (Debian's ssl-cert package creates it).
pub const KEY_GROUP: &str = "ssl-cert";
/// The user coturn runs as (Debian's coturn package).
pub const TURN_GROUP: &str = "turnserver";

/// What [`install`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Installed {
    /// Files written (appliance paths).
    pub written: Vec<String>,
    /// Services reloaded or restarted.
    pub reloaded: Vec<String>,
}

/// Where coturn reads its certificate and key, from turnserver.conf's
/// `cert=` and `pkey=` lines (`None` when the file or the line is absent).
pub fn turn_paths(root: &Root) -> Result<(Option<String>, Option<String>), TlsError> {
    let text = root.read_optional(TURNSERVER_CONF)?.unwrap_or_default();
    let value = |key: &str| {
        text.lines()
            .map(str::trim)
            .filter(|l| !l.starts_with('#'))
            .find_map(|l| l.strip_prefix(key))
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    Ok((value("cert="), value("pkey=")))
}

/// Installs `cert_pem` (leaf first, then intermediates) and `key_pem` for
/// `domain`, and reloads what reads them when anything changed.
pub fn install(
    root: &Root,
    system: &dyn System,
    domain: &str,
    cert_pem: &[u8],
    key_pem: &[u8],
) -> Result<Installed, TlsError> {
    let (crt, key) = jitsi_paths(domain);
    let mut done = Installed::default();
    write_if_changed(root, &crt, cert_pem, 0o644, None, &mut done)?;
    write_if_changed(root, &key, key_pem, 0o640, Some(KEY_GROUP), &mut done)?;

    let (turn_cert, turn_key) = turn_paths(root)?;
    let mut turn_changed = false;
    if let Some(path) = turn_cert.filter(|p| *p != crt) {
        turn_changed |= write_if_changed(root, &path, cert_pem, 0o644, None, &mut done)?;
    }
    if let Some(path) = turn_key.filter(|p| *p != key) {
        turn_changed |= write_if_changed(root, &path, key_pem, 0o640, Some(TURN_GROUP), &mut done)?;
    }

    // Only the running system has services to tell.
    if !done.written.is_empty() && root.is_system() {
        if tell(system, "try-reload-or-restart", "nginx")? {
            done.reloaded.push("nginx".into());
        }
        if (turn_changed || root.exists(TURNSERVER_CONF)) && tell(system, "try-restart", "coturn")?
        {
            done.reloaded.push("coturn".into());
        }
    }
    Ok(done)
}

/// Asks systemd to reload or restart a service if it runs. A service this
/// image does not have (the minimal image has no nginx) is no error:
/// systemctl says so with exit status 5.
fn tell(system: &dyn System, verb: &str, service: &str) -> Result<bool, TlsError> {
    match system.run(&Cmd::new("systemctl").args([verb, service])) {
        Ok(_) => Ok(true),
        Err(crate::command::CommandError::Failed { status, .. }) if status.code() == Some(5) => {
            Ok(false)
        }
        Err(e) => Err(e.into()),
    }
}

/// Writes the file unless it already holds `content`. A file that exists
/// keeps its mode and group (as Jitsi's packaging made them, which is what
/// coturn's access depends on); a new one gets `mode` and `group`, when that
/// group exists in the root's /etc/group and we run as root.
fn write_if_changed(
    root: &Root,
    path: &str,
    content: &[u8],
    mode: u32,
    group: Option<&str>,
    done: &mut Installed,
) -> Result<bool, TlsError> {
    use std::os::unix::fs::MetadataExt;
    let real = root.path(path);
    if std::fs::read(&real).is_ok_and(|old| old == content) {
        return Ok(false);
    }
    let (mode, gid) = match std::fs::metadata(&real) {
        Ok(meta) => (meta.permissions().mode() & 0o777, Some(meta.gid())),
        Err(_) => (mode, group.and_then(|g| group_id(root, g))),
    };
    root.write_atomic(path, content, mode)?;
    if let Some(gid) = gid {
        set_group(&real, gid);
    }
    done.written.push(path.to_owned());
    Ok(true)
}

/// The group's id from the root's /etc/group.
fn group_id(root: &Root, group: &str) -> Option<u32> {
    let text = root.read_optional("/etc/group").ok()??;
    text.lines().find_map(|line| {
        let mut fields = line.split(':');
        (fields.next()? == group)
            .then(|| fields.nth(1)?.parse().ok())
            .flatten()
    })
}

fn set_group(path: &std::path::Path, gid: u32) {
    use std::os::unix::ffi::OsStrExt;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return;
    }
    let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return;
    };
    // SAFETY: c_path is a valid NUL-terminated string; uid -1 keeps the owner.
    let rc = unsafe { libc::chown(c_path.as_ptr(), u32::MAX, gid) };
    if rc != 0 {
        tracing::warn!(
            "não foi possível mudar o grupo de {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::appliance::system::FakeSystem;

    #[test]
    fn installs_for_nginx_and_separate_coturn_copies_once() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path());
        root.write_atomic(
            TURNSERVER_CONF,
            b"realm=b.tjxx.jus.br\n# cert=/old\ncert=/etc/coturn/certs/b.fullchain.pem\npkey=/etc/coturn/certs/b.privkey.pem\n",
            0o644,
        )
        .unwrap();
        let fake = FakeSystem::new();
        let done = install(&root, &fake, "b.tjxx.jus.br", b"CERT", b"KEY").unwrap();
        assert_eq!(
            done.written,
            [
                "/etc/jitsi/meet/b.tjxx.jus.br.crt",
                "/etc/jitsi/meet/b.tjxx.jus.br.key",
                "/etc/coturn/certs/b.fullchain.pem",
                "/etc/coturn/certs/b.privkey.pem"
            ]
        );
        let key = root.path("/etc/jitsi/meet/b.tjxx.jus.br.key");
        assert_eq!(std::fs::read(&key).unwrap(), b"KEY");
        assert_eq!(
            std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o640
        );
        // An existing file keeps its mode.
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        install(&root, &fake, "b.tjxx.jus.br", b"CERT", b"KEY2").unwrap();
        assert_eq!(
            std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
        install(&root, &fake, "b.tjxx.jus.br", b"CERT", b"KEY").unwrap();
        // Not the running system: no systemctl.
        assert!(fake.commands().is_empty());
        let again = install(&root, &fake, "b.tjxx.jus.br", b"CERT", b"KEY").unwrap();
        assert_eq!(again, Installed::default());
    }

    #[test]
    fn jitsi_template_paths_are_not_written_twice() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path());
        root.write_atomic(
            TURNSERVER_CONF,
            b"cert=/etc/jitsi/meet/b.tjxx.jus.br.crt\npkey=/etc/jitsi/meet/b.tjxx.jus.br.key\n",
            0o644,
        )
        .unwrap();
        let done = install(&root, &FakeSystem::new(), "b.tjxx.jus.br", b"C", b"K").unwrap();
        assert_eq!(done.written.len(), 2);
    }
}
