//! Customizing the unpacked root: the recipe's overlays, the `balcaoctl`
//! binary, fstab and GRUB defaults, the services to enable, then hygiene
//! (nothing of the build machine or of one instance stays in the image) and
//! the package manifest.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::command::{Cmd, CommandError};
use crate::disk::assemble::{kernel_cmdline, FilesystemIds};

#[derive(Debug, thiserror::Error)]
pub enum CustomizeError {
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "overlay {overlay}: {path} is a {kind}; overlays may hold only files, folders and symlinks"
    )]
    OddFile {
        overlay: PathBuf,
        path: PathBuf,
        kind: &'static str,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CustomizeError + '_ {
    move |source| CustomizeError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Copies an overlay folder over the root: files replace what is there, owned
/// by root, keeping their permission bits; symlinks are copied as links.
pub fn apply_overlay(overlay: &Path, root: &Path) -> Result<usize, CustomizeError> {
    let mut count = 0;
    let mut stack = vec![PathBuf::new()];
    while let Some(relative) = stack.pop() {
        let dir = overlay.join(&relative);
        let mut entries: Vec<_> = fs::read_dir(&dir)
            .map_err(io(&dir))?
            .collect::<Result<_, _>>()
            .map_err(io(&dir))?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let rel = relative.join(entry.file_name());
            let from = entry.path();
            let to = root.join(&rel);
            let kind = entry.file_type().map_err(io(&from))?;
            if kind.is_dir() {
                if !to.is_dir() {
                    fs::create_dir_all(&to).map_err(io(&to))?;
                    let mode = fs::metadata(&from).map_err(io(&from))?.permissions();
                    fs::set_permissions(&to, mode).map_err(io(&to))?;
                }
                stack.push(rel);
            } else if kind.is_symlink() {
                let target = fs::read_link(&from).map_err(io(&from))?;
                let _ = fs::remove_file(&to);
                std::os::unix::fs::symlink(&target, &to).map_err(io(&to))?;
                count += 1;
            } else if kind.is_file() {
                let _ = fs::remove_file(&to);
                fs::copy(&from, &to).map_err(io(&to))?;
                count += 1;
            } else {
                return Err(CustomizeError::OddFile {
                    overlay: overlay.to_owned(),
                    path: rel,
                    kind: "special file",
                });
            }
        }
    }
    Ok(count)
}

/// Installs the appliance program as /usr/bin/balcaoctl.
pub fn install_balcaoctl(binary: &Path, root: &Path) -> Result<(), CustomizeError> {
    let to = root.join("usr/bin/balcaoctl");
    fs::copy(binary, &to).map_err(io(binary))?;
    fs::set_permissions(&to, fs::Permissions::from_mode(0o755)).map_err(io(&to))?;
    Ok(())
}

/// fstab by UUID, and GRUB's defaults so that update-grub after a kernel
/// update writes the same consoles the builder's grub.cfg has.
pub fn write_boot_config(root: &Path, ids: &FilesystemIds) -> Result<(), CustomizeError> {
    let fstab = root.join("etc/fstab");
    let text = format!(
        "# Written by balcao. The root partition grows to fill the disk at boot.\n\
         UUID={root} / ext4 rw,discard,errors=remount-ro 0 1\n\
         UUID={esp} /boot/efi vfat umask=0077,nofail 0 2\n",
        root = ids.root_uuid,
        esp = ids.esp_fstab_id(),
    );
    fs::write(&fstab, text).map_err(io(&fstab))?;
    let efi = root.join("boot/efi");
    fs::create_dir_all(&efi).map_err(io(&efi))?;

    // Everything but root= (which update-grub adds itself).
    let cmdline = kernel_cmdline(&ids.root_uuid);
    let consoles = cmdline
        .split_whitespace()
        .filter(|w| w.starts_with("console="))
        .collect::<Vec<_>>()
        .join(" ");
    let dir = root.join("etc/default/grub.d");
    fs::create_dir_all(&dir).map_err(io(&dir))?;
    let path = dir.join("50-balcao.cfg");
    let text = format!(
        "# Written by balcao: consoles on VGA and serial, short menu.\n\
         GRUB_CMDLINE_LINUX=\"{consoles}\"\n\
         GRUB_TERMINAL=\"console serial\"\n\
         GRUB_SERIAL_COMMAND=\"serial --unit=0 --speed=115200\"\n\
         GRUB_TIMEOUT=2\n\
         GRUB_DISABLE_OS_PROBER=true\n"
    );
    fs::write(&path, text).map_err(io(&path))?;
    Ok(())
}

/// Enables systemd units inside the image (no running systemd needed).
pub fn enable_services(root: &Path, units: &[String]) -> Result<(), CustomizeError> {
    if units.is_empty() {
        return Ok(());
    }
    Cmd::new("chroot")
        .arg(root)
        .args(["systemctl", "enable"])
        .args(units)
        .run()?;
    Ok(())
}

/// Removes what must not ship: identity of the build or of an instance
/// (machine-id, SSH host keys, cloud-init state), apt lists and caches, logs,
/// shell history, temporary files.
pub fn clean(root: &Path) -> Result<(), CustomizeError> {
    // An empty machine-id makes systemd treat the next boot as a first boot.
    let machine_id = root.join("etc/machine-id");
    fs::write(&machine_id, "").map_err(io(&machine_id))?;
    remove(&root.join("var/lib/dbus/machine-id"))?;
    remove(&root.join("var/lib/systemd/random-seed"))?;
    remove(&root.join("var/lib/systemd/credential.secret"))?;

    remove_matching(&root.join("etc/ssh"), |n| n.starts_with("ssh_host_"))?;
    for dir in [
        "var/lib/apt/lists",
        "var/cache/apt",
        "var/lib/cloud",
        "tmp",
        "var/tmp",
    ] {
        remove_matching(&root.join(dir), |n| {
            n != "partial" && n != "lock" && n != "auxfiles"
        })?;
    }
    remove_matching(&root.join("var/cache/debconf"), |n| n.ends_with("-old"))?;
    remove_matching(&root.join("etc"), |n| {
        [
            "passwd-", "group-", "shadow-", "gshadow-", "subuid-", "subgid-",
        ]
        .contains(&n)
    })?;
    for history in ["root/.bash_history", "root/.lesshst", "root/.viminfo"] {
        remove(&root.join(history))?;
    }
    clear_logs(&root.join("var/log"))?;
    Ok(())
}

/// Empties every file under /var/log, keeping the folders (and their owners,
/// which services expect).
fn clear_logs(dir: &Path) -> Result<(), CustomizeError> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries {
        let entry = entry.map_err(io(dir))?;
        let path = entry.path();
        let kind = entry.file_type().map_err(io(&path))?;
        if kind.is_dir() {
            if entry.file_name() == "journal" {
                remove_matching(&path, |_| true)?;
            } else {
                clear_logs(&path)?;
            }
        } else if kind.is_file() {
            let rotated = entry.file_name().to_str().is_some_and(|n| {
                n.ends_with(".gz")
                    || n.rsplit('.')
                        .next()
                        .is_some_and(|s| s.parse::<u32>().is_ok())
            });
            if rotated {
                fs::remove_file(&path).map_err(io(&path))?;
            } else {
                fs::write(&path, "").map_err(io(&path))?;
            }
        }
    }
    Ok(())
}

fn remove(path: &Path) -> Result<(), CustomizeError> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path).map_err(io(path)),
        Ok(_) => fs::remove_file(path).map_err(io(path)),
        Err(_) => Ok(()),
    }
}

fn remove_matching(dir: &Path, matches: impl Fn(&str) -> bool) -> Result<(), CustomizeError> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries {
        let entry = entry.map_err(io(dir))?;
        if entry.file_name().to_str().is_some_and(&matches) {
            remove(&entry.path())?;
        }
    }
    Ok(())
}

/// Every installed package: name, version and architecture, tab-separated,
/// sorted by name.
pub fn package_manifest(root: &Path) -> Result<String, CustomizeError> {
    let out = Cmd::new("chroot")
        .arg(root)
        .args([
            "dpkg-query",
            "--show",
            "--showformat=${Package}\\t${Version}\\t${Architecture}\\n",
        ])
        .run()?;
    let mut lines: Vec<String> = out.stdout_text().lines().map(str::to_owned).collect();
    lines.sort();
    Ok(lines.join("\n") + "\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlays_replace_files_and_keep_modes_and_links() {
        let overlay = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        let o = overlay.path();
        fs::create_dir_all(o.join("etc/systemd/system")).unwrap();
        fs::write(o.join("etc/motd"), "new").unwrap();
        fs::write(o.join("etc/systemd/system/x.service"), "[Unit]").unwrap();
        fs::create_dir_all(o.join("usr/lib/balcao")).unwrap();
        let script = o.join("usr/lib/balcao/run");
        fs::write(&script, "#!/bin/sh\n").unwrap();
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::symlink("/dev/null", o.join("etc/masked")).unwrap();

        fs::create_dir_all(root.path().join("etc")).unwrap();
        fs::write(root.path().join("etc/motd"), "old").unwrap();
        let n = apply_overlay(o, root.path()).unwrap();
        assert_eq!(n, 4);
        assert_eq!(
            fs::read_to_string(root.path().join("etc/motd")).unwrap(),
            "new"
        );
        let mode = fs::metadata(root.path().join("usr/lib/balcao/run"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
        assert_eq!(
            fs::read_link(root.path().join("etc/masked")).unwrap(),
            Path::new("/dev/null")
        );
    }

    #[test]
    fn cleaning_removes_identity_history_and_logs() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        for dir in [
            "etc/ssh",
            "var/lib/dbus",
            "var/lib/apt/lists/partial",
            "var/log/apt",
            "root",
            "tmp",
        ] {
            fs::create_dir_all(r.join(dir)).unwrap();
        }
        fs::write(
            r.join("etc/machine-id"),
            "0123456789abcdef0123456789abcdef\n",
        )
        .unwrap();
        fs::write(r.join("var/lib/dbus/machine-id"), "x").unwrap();
        fs::write(r.join("etc/ssh/ssh_host_ed25519_key"), "secret").unwrap();
        fs::write(r.join("etc/ssh/sshd_config"), "keep").unwrap();
        fs::write(r.join("var/lib/apt/lists/deb.debian.org_Packages"), "x").unwrap();
        fs::write(r.join("var/log/apt/history.log"), "x").unwrap();
        fs::write(r.join("var/log/dpkg.log.1"), "x").unwrap();
        fs::write(r.join("root/.bash_history"), "x").unwrap();
        fs::write(r.join("tmp/leftover"), "x").unwrap();
        fs::write(r.join("etc/shadow-"), "x").unwrap();

        clean(r).unwrap();
        assert_eq!(fs::read(r.join("etc/machine-id")).unwrap(), b"");
        assert!(!r.join("var/lib/dbus/machine-id").exists());
        assert!(!r.join("etc/ssh/ssh_host_ed25519_key").exists());
        assert!(r.join("etc/ssh/sshd_config").exists());
        assert!(!r.join("var/lib/apt/lists/deb.debian.org_Packages").exists());
        assert!(r.join("var/lib/apt/lists/partial").is_dir());
        assert_eq!(fs::read(r.join("var/log/apt/history.log")).unwrap(), b"");
        assert!(!r.join("var/log/dpkg.log.1").exists());
        assert!(!r.join("root/.bash_history").exists());
        assert!(!r.join("tmp/leftover").exists());
        assert!(!r.join("etc/shadow-").exists());
    }
}
