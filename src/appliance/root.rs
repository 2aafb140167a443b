//! The folder the appliance's files live under: `/` on the appliance, a
//! temporary folder in tests. Every file a step reads or writes is named by its
//! absolute path on the appliance and resolved here, and written atomically
//! (temporary file, fsync, rename, fsync of the folder) so a power loss leaves
//! either the old or the new content.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Where the first-boot answers are read from (written by the operator or
/// cloud-init `write_files`).
pub const SETUP_FILE: &str = "/etc/balcao/setup.toml";
/// The per-step record of first boot.
pub const STATE_FILE: &str = "/var/lib/balcao/state.toml";
/// Present once every step is done; the unit does not start while it exists.
pub const DONE_FILE: &str = "/var/lib/balcao/firstboot.done";
/// Held (flock) while `balcaoctl firstboot` runs, so the unit and an
/// administrator's run never overlap.
pub const LOCK_FILE: &str = "/var/lib/balcao/firstboot.lock";
/// Shown by agetty before the login prompt (util-linux reads `/etc/issue.d/*.issue`).
pub const ISSUE_FILE: &str = "/etc/issue.d/balcao.issue";
/// Shown after login by pam_motd (Debian reads `/etc/motd.d/` by default).
pub const MOTD_FILE: &str = "/etc/motd.d/balcao";

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("não foi possível ler {path}: {source} (verifique as permissões; rode como root)")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("não foi possível gravar {path}: {source} (verifique o espaço em disco e as permissões; rode como root)")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The root folder every appliance path is taken relative to.
#[derive(Debug, Clone)]
pub struct Root {
    dir: PathBuf,
}

impl Root {
    pub fn new(dir: impl Into<PathBuf>) -> Root {
        Root { dir: dir.into() }
    }

    /// True when this is the running system's own root (`/`): only then may
    /// steps talk to systemd, hostnamectl or ufw.
    pub fn is_system(&self) -> bool {
        self.dir == Path::new("/")
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The real location of the appliance path `path` (absolute, as on the appliance).
    pub fn path(&self, path: &str) -> PathBuf {
        self.dir.join(path.trim_start_matches('/'))
    }

    /// The file's text, or `None` when it does not exist.
    pub fn read_optional(&self, path: &str) -> Result<Option<String>, FileError> {
        let real = self.path(path);
        match fs::read_to_string(&real) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(FileError::Read { path: real, source }),
        }
    }

    pub fn exists(&self, path: &str) -> bool {
        self.path(path).exists()
    }

    /// Replaces the file's content atomically, creating its folder; `mode` is
    /// the permission bits of the new file.
    pub fn write_atomic(&self, path: &str, content: &[u8], mode: u32) -> Result<(), FileError> {
        let real = self.path(path);
        let fail = |source| FileError::Write {
            path: real.clone(),
            source,
        };
        let dir = real.parent().unwrap_or(Path::new("/"));
        fs::create_dir_all(dir).map_err(fail)?;
        let name = real.file_name().unwrap_or_default().to_string_lossy();
        let temp = dir.join(format!(".{name}.new"));
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&temp)
            .map_err(fail)?;
        // The mode given to open() is filtered by the umask; set it exactly.
        file.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(fail)?;
        file.write_all(content).map_err(fail)?;
        file.sync_all().map_err(fail)?;
        drop(file);
        fs::rename(&temp, &real).map_err(fail)?;
        if let Ok(folder) = fs::File::open(dir) {
            let _ = folder.sync_all();
        }
        Ok(())
    }

    /// Takes an exclusive lock on the file (created when missing); `None`
    /// when another process holds it. The lock lasts as long as the file.
    pub fn try_lock(&self, path: &str) -> Result<Option<fs::File>, FileError> {
        use std::os::fd::AsRawFd;
        let real = self.path(path);
        let fail = |source| FileError::Write {
            path: real.clone(),
            source,
        };
        fs::create_dir_all(real.parent().unwrap_or(Path::new("/"))).map_err(fail)?;
        let file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&real)
            .map_err(fail)?;
        // SAFETY: flock only takes the descriptor, which `file` keeps open.
        let taken = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
        Ok(taken.then_some(file))
    }

    pub fn remove(&self, path: &str) -> Result<(), FileError> {
        let real = self.path(path);
        match fs::remove_file(&real) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(FileError::Write { path: real, source }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_sets_mode_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path());
        root.write_atomic("/etc/balcao/setup.toml", b"a", 0o600)
            .unwrap();
        root.write_atomic("/etc/balcao/setup.toml", b"b", 0o600)
            .unwrap();
        let real = dir.path().join("etc/balcao/setup.toml");
        assert_eq!(fs::read_to_string(&real).unwrap(), "b");
        assert_eq!(
            fs::metadata(&real).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(!dir.path().join("etc/balcao/.setup.toml.new").exists());
        assert!(!root.is_system());
        assert!(Root::new("/").is_system());
    }
}
