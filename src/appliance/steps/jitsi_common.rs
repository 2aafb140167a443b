//! What the Jitsi steps share: where the image keeps the baked Jitsi
//! packages, which packages make up Jitsi, whether dpkg has them installed,
//! whether a root is one the Jitsi steps act on, and the list of services a
//! later step must restart because an earlier one changed their files.
//!
//! The Jitsi steps run after `firewall` and before `message`:
//! `jitsi-preseed` (debconf answers and fresh secrets), `jitsi-install`
//! (offline install from the image's local repository), `jitsi-secure`
//! (secure domain and the first staff account), `jitsi-site` (the units page
//! in Jitsi's nginx site), `jitsi-health` (restart and health checks).

use std::collections::BTreeSet;

use super::{Context, Facts, StepError};
use crate::appliance::root::FileError;
use crate::appliance::Root;
use crate::command::Cmd;

/// The flat repository the image builder fills with the Jitsi packages it
/// verified against the pinned key and the lockfile (no signature here).
pub const LOCAL_REPO: &str = "/var/lib/balcao/jitsi-repo";
/// Its index; its presence tells an image that carries Jitsi.
pub const LOCAL_INDEX: &str = "/var/lib/balcao/jitsi-repo/Packages";
/// Shipped by overlays/appliance: this image is meant to carry Jitsi.
pub const JITSI_IMAGE_MARKER: &str = "/usr/share/balcao/jitsi-appliance";
/// The apt source this appliance installs Jitsi from, and only that.
pub const LOCAL_LIST: &str = "/etc/apt/sources.list.d/balcao-jitsi-local.list";
/// dpkg's record of installed packages (Debian's path).
pub const DPKG_STATUS: &str = "/var/lib/dpkg/status";
/// Services to restart, one a line, written by the steps that change their
/// configuration and emptied by `jitsi-health` once it restarted them, so a
/// power loss in between still ends in a restart.
pub const RESTART_FILE: &str = "/var/lib/balcao/jitsi-restart";

/// What the install asks apt for. `jitsi-meet` only recommends the TURN
/// package, and `--no-install-recommends` would drop it: it is named too.
pub const REQUESTED: &[&str] = &["jitsi-meet", "jitsi-meet-turnserver"];

/// Jitsi's own packages once installed: the metapackage, what it depends on
/// (jitsi-meet-debian-meta), and the TURN package.
pub const JITSI_PACKAGES: &[&str] = &[
    "jitsi-meet",
    "jitsi-videobridge2",
    "jicofo",
    "jitsi-meet-web",
    "jitsi-meet-web-config",
    "jitsi-meet-prosody",
    "jitsi-meet-turnserver",
];

/// The services Jitsi runs, in the order they are restarted: prosody first
/// (the others log in to it), nginx last (it proxies prosody).
pub const SERVICES: &[&str] = &["prosody", "jicofo", "jitsi-videobridge2", "nginx"];

/// Packages dpkg records as fully installed under `root`.
pub fn installed_packages(root: &Root) -> Result<BTreeSet<String>, FileError> {
    let text = root.read_optional(DPKG_STATUS)?.unwrap_or_default();
    Ok(parse_dpkg_status(&text))
}

/// The names of the packages with `Status: install ok installed`.
pub fn parse_dpkg_status(text: &str) -> BTreeSet<String> {
    let mut installed = BTreeSet::new();
    for stanza in text.split("\n\n") {
        let mut name = None;
        let mut ok = false;
        for line in stanza.lines() {
            if let Some(value) = line.strip_prefix("Package:") {
                name = Some(value.trim().to_owned());
            } else if let Some(value) = line.strip_prefix("Status:") {
                ok = value.trim() == "install ok installed";
            }
        }
        if let (Some(name), true) = (name, ok) {
            installed.insert(name);
        }
    }
    installed
}

/// Jitsi packages not (fully) installed under `root`.
pub fn missing_packages(root: &Root) -> Result<Vec<&'static str>, FileError> {
    let installed = installed_packages(root)?;
    Ok(JITSI_PACKAGES
        .iter()
        .copied()
        .filter(|p| !installed.contains(*p))
        .collect())
}

/// Whether the Jitsi steps act on this root: when it is a Jitsi image (the
/// appliance overlay's marker, or the local repository, is there) or Jitsi
/// is installed. Otherwise (the minimal test image, the first-boot CLI
/// tests' temporary roots) they have nothing to do. A Jitsi image whose
/// repository is missing is in scope, and the install step says what is
/// wrong.
pub fn in_scope(ctx: &Context) -> Result<bool, StepError> {
    if ctx.root.exists(JITSI_IMAGE_MARKER) || ctx.root.exists(LOCAL_INDEX) {
        return Ok(true);
    }
    let installed = installed_packages(ctx.root)?;
    Ok(JITSI_PACKAGES.iter().any(|p| installed.contains(*p)))
}

/// The facts of a Jitsi step that had nothing to do under this root.
pub fn out_of_scope_facts() -> Facts {
    [(
        "jitsi".to_owned(),
        "imagem sem Jitsi / image without Jitsi".to_owned(),
    )]
    .into()
}

/// Services waiting for a restart, in [`SERVICES`] order.
pub fn pending_restarts(root: &Root) -> Result<Vec<&'static str>, FileError> {
    let text = root.read_optional(RESTART_FILE)?.unwrap_or_default();
    let listed: BTreeSet<&str> = text.lines().map(str::trim).collect();
    Ok(SERVICES
        .iter()
        .copied()
        .filter(|s| listed.contains(s))
        .collect())
}

/// Adds services to the restart list (kept across a power loss).
pub fn request_restart(root: &Root, services: &[&str]) -> Result<(), FileError> {
    let mut all: BTreeSet<String> = pending_restarts(root)?
        .into_iter()
        .map(str::to_owned)
        .collect();
    let before = all.len();
    all.extend(services.iter().map(|s| (*s).to_owned()));
    if all.len() == before && root.exists(RESTART_FILE) {
        return Ok(());
    }
    let text: String = all.iter().map(|s| format!("{s}\n")).collect();
    root.write_atomic(RESTART_FILE, text.as_bytes(), 0o644)
}

/// `systemctl restart SERVICE`.
pub fn restart_cmd(service: &str) -> Cmd {
    Cmd::new("systemctl").args(["restart", &format!("{service}.service")])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dpkg_status_counts_only_fully_installed_packages() {
        let text = "Package: jicofo\nStatus: install ok installed\nVersion: 1\n\nPackage: jitsi-meet\nStatus: install ok unpacked\n\nPackage: nginx\nVersion: 1\nStatus: install ok installed\n";
        let got: Vec<String> = parse_dpkg_status(text).into_iter().collect();
        assert_eq!(got, ["jicofo", "nginx"]);
    }

    #[test]
    fn restart_list_merges_and_keeps_order() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path());
        assert!(pending_restarts(&root).unwrap().is_empty());
        request_restart(&root, &["nginx"]).unwrap();
        request_restart(&root, &["prosody", "nginx"]).unwrap();
        assert_eq!(pending_restarts(&root).unwrap(), ["prosody", "nginx"]);
    }
}
