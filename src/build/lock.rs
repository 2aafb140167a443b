//! The Debian half of the lockfile: every package installed in the image
//! with its version and the SHA-256 its mirror's signed index gives for it
//! (apt checks each downloaded .deb against that digest, so it is the .deb's
//! own). `balcao lock` writes it; a build with it installs those versions
//! and fails naming each package that moved.

use std::fs;
use std::path::{Path, PathBuf};

use super::repository::{Locked, Lockfile};

/// Where the hook below leaves apt's records of the installed packages.
const INDEX_RECORD: &str = "var/lib/balcao/installed-index";

/// An mmdebstrap customize hook, run while apt's lists are still in the new
/// root: apt's index records (version and SHA-256) of every installed
/// package, for the builder to read after unpacking.
pub fn index_hook() -> String {
    format!(
        "mkdir -p \"$1/var/lib/balcao\" && chroot \"$1\" dpkg-query -W -f '${{db:Status-Abbrev}}${{Package}}=${{Version}}\\n' | grep '^ii ' | cut -c4- > \"$1/{INDEX_RECORD}.wanted\" && chroot \"$1\" xargs -a /{INDEX_RECORD}.wanted apt-cache show > \"$1/{INDEX_RECORD}\" && rm \"$1/{INDEX_RECORD}.wanted\""
    )
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "{root}/{INDEX_RECORD} is missing: this root filesystem was made without the package \
         record (an old cache entry?); run `balcao cache clean` and build again"
    )]
    NoRecord { root: PathBuf },
    #[error("package {name} {version} is installed but no apt index lists it, so its SHA-256 is unknown")]
    NotIndexed { name: String, version: String },
    #[error(
        "the Debian packages differ from the lockfile {lock}:\n{changes}\n\
         The mirror has moved on (a point release or a security update) or a package was \
         altered. To take the new packages: `balcao lock RECIPE`, review the lockfile's diff, \
         and commit it."
    )]
    Moved { lock: PathBuf, changes: String },
    #[error(
        "the mirror no longer offers these locked versions (lockfile {lock}):\n{changes}\n\
         To take what the mirror has now: `balcao lock RECIPE`, review the lockfile's diff, \
         and commit it."
    )]
    Gone { lock: PathBuf, changes: String },
    #[error("lockfile {path}: {message}")]
    Bad { path: PathBuf, message: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LockError + '_ {
    move |source| LockError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Reads (and removes) the record the hook left in an unpacked root: one
/// entry per installed package, sorted by name.
pub fn take_installed(root: &Path) -> Result<Vec<Locked>, LockError> {
    let record = root.join(INDEX_RECORD);
    let text = match fs::read_to_string(&record) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(LockError::NoRecord {
                root: root.to_owned(),
            })
        }
        Err(e) => return Err(io(&record)(e)),
    };
    fs::remove_file(&record).map_err(io(&record))?;
    let dpkg_status = root.join("var/lib/dpkg/status");
    let status = fs::read_to_string(&dpkg_status).map_err(io(&dpkg_status))?;
    installed_with_digests(&status, &text)
}

/// Installed packages (from dpkg's status file) joined with the digests of
/// apt's index records.
pub fn installed_with_digests(status: &str, index: &str) -> Result<Vec<Locked>, LockError> {
    let records = stanzas(index);
    let mut out = Vec::new();
    for s in stanzas(status) {
        if !field(s, "Status").is_some_and(|v| v.ends_with(" installed")) {
            continue;
        }
        let (Some(name), Some(version)) = (field(s, "Package"), field(s, "Version")) else {
            continue;
        };
        let sha256 = records
            .iter()
            .find(|r| field(r, "Package") == Some(name) && field(r, "Version") == Some(version))
            .and_then(|r| field(r, "SHA256"))
            .ok_or_else(|| LockError::NotIndexed {
                name: name.to_owned(),
                version: version.to_owned(),
            })?;
        out.push(Locked {
            name: name.to_owned(),
            version: version.to_owned(),
            sha256: sha256.to_owned(),
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out.dedup_by(|a, b| a.name == b.name);
    Ok(out)
}

fn stanzas(text: &str) -> Vec<&str> {
    text.split("\n\n")
        .filter(|s| !s.trim().is_empty())
        .collect()
}

fn field<'a>(stanza: &'a str, name: &str) -> Option<&'a str> {
    stanza.lines().find_map(|l| {
        l.strip_prefix(name)
            .and_then(|rest| rest.strip_prefix(':'))
            .map(str::trim)
    })
}

/// The lockfile's Debian entries; None when there are none (an unlocked build).
pub fn read(lock: &Path) -> Result<Option<Vec<Locked>>, LockError> {
    let file = read_file(lock)?;
    Ok((!file.debian.is_empty()).then_some(file.debian))
}

fn read_file(lock: &Path) -> Result<Lockfile, LockError> {
    match fs::read_to_string(lock) {
        Ok(text) => toml::from_str(&text).map_err(|e| LockError::Bad {
            path: lock.to_owned(),
            message: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Lockfile::default()),
        Err(e) => Err(io(lock)(e)),
    }
}

/// Replaces the lockfile's Debian entries, keeping the rest.
pub fn write(lock: &Path, installed: &[Locked]) -> Result<(), LockError> {
    let mut file = read_file(lock)?;
    file.debian = installed.to_vec();
    super::repository::write_lockfile(lock, &file).map_err(|e| LockError::Bad {
        path: lock.to_owned(),
        message: e.to_string(),
    })
}

/// `name=version` for each locked package: what mmdebstrap is asked to
/// install, so apt picks exactly those.
pub fn pins(locked: &[Locked]) -> Vec<String> {
    locked
        .iter()
        .map(|l| format!("{}={}", l.name, l.version))
        .collect()
}

/// Compares what was installed with the lockfile.
pub fn check(lock: &Path, locked: &[Locked], installed: &[Locked]) -> Result<(), LockError> {
    let changes = super::repository::lock_changes(locked, installed, "installed");
    if changes.is_empty() {
        Ok(())
    } else {
        Err(LockError::Moved {
            lock: lock.to_owned(),
            changes,
        })
    }
}

/// Whether the differences could come from a cached root made from an older
/// state of the mirror (versions differ), rather than from an altered package
/// (same version, other digest), which no rebuild can cure.
pub fn versions_differ(locked: &[Locked], installed: &[Locked]) -> bool {
    locked.len() != installed.len()
        || locked
            .iter()
            .zip(installed)
            .any(|(l, i)| l.name != i.name || l.version != i.version)
}

/// apt's "Version 'V' for 'P' was not found" lines, when a pinned install
/// failed because the mirror dropped a locked version.
pub fn gone_versions(lock: &Path, failure: &str) -> Option<LockError> {
    let mut lines = Vec::new();
    for line in failure.lines() {
        let Some(rest) = line.split("Version '").nth(1) else {
            continue;
        };
        let Some((version, rest)) = rest.split_once("' for '") else {
            continue;
        };
        let Some((name, _)) = rest.split_once("' was not found") else {
            continue;
        };
        let line = format!("  {name}: version {version} in the lockfile, gone from the mirror");
        if !lines.contains(&line) {
            lines.push(line);
        }
    }
    (!lines.is_empty()).then(|| LockError::Gone {
        lock: lock.to_owned(),
        changes: lines.join("\n"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Package: bash\nStatus: install ok installed\nVersion: 5.2.15-2+b7\n\n\
Package: old-conf\nStatus: deinstall ok config-files\nVersion: 1\n\n\
Package: sudo\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1.9.13p3-1+deb12u1\n";
    const INDEX: &str = "Package: bash\nVersion: 5.2.15-2+b7\nSHA256: aaaa\n\n\
Package: sudo\nVersion: 1.9.13p3-1\nSHA256: 0000\n\n\
Package: sudo\nVersion: 1.9.13p3-1+deb12u1\nSHA256: bbbb\n\n";

    fn locked(name: &str, version: &str, sha: &str) -> Locked {
        Locked {
            name: name.into(),
            version: version.into(),
            sha256: sha.into(),
        }
    }

    #[test]
    fn installed_packages_get_the_digest_of_their_exact_version() {
        let got = installed_with_digests(STATUS, INDEX).unwrap();
        assert_eq!(
            got,
            [
                locked("bash", "5.2.15-2+b7", "aaaa"),
                locked("sudo", "1.9.13p3-1+deb12u1", "bbbb")
            ]
        );
        let err =
            installed_with_digests(STATUS, "Package: bash\nVersion: 5.2.15-2+b7\nSHA256: a\n")
                .unwrap_err()
                .to_string();
        assert!(err.contains("sudo 1.9.13p3-1+deb12u1"), "{err}");
    }

    #[test]
    fn the_debian_section_is_written_beside_the_baked_one() {
        let dir = tempfile::tempdir().unwrap();
        let lock = dir.path().join("r.lock");
        assert_eq!(read(&lock).unwrap(), None);
        fs::write(
            &lock,
            "[[package]]\nname = \"jitsi-meet\"\nversion = \"1\"\nsha256 = \"cc\"\n",
        )
        .unwrap();
        let debian = installed_with_digests(STATUS, INDEX).unwrap();
        write(&lock, &debian).unwrap();
        assert_eq!(read(&lock).unwrap().unwrap(), debian);
        let text = fs::read_to_string(&lock).unwrap();
        assert!(text.contains("jitsi-meet"), "{text}");
        assert_eq!(
            pins(&debian),
            ["bash=5.2.15-2+b7", "sudo=1.9.13p3-1+deb12u1"]
        );
    }

    #[test]
    fn moved_and_altered_packages_are_named() {
        let lock = Path::new("recipes/minimal.lock");
        let locked_set = [
            locked("bash", "5.2.15-2+b7", "aaaa"),
            locked("sudo", "1.9", "bbbb"),
        ];
        let same = locked_set.clone();
        assert!(check(lock, &locked_set, &same).is_ok());
        let newer = [
            locked("bash", "5.2.15-2+b8", "ffff"),
            locked("sudo", "1.9", "bbbb"),
        ];
        let err = check(lock, &locked_set, &newer).unwrap_err().to_string();
        assert!(
            err.contains("bash: version 5.2.15-2+b7 in the lockfile, 5.2.15-2+b8 now"),
            "{err}"
        );
        assert!(err.contains("balcao lock"), "{err}");
        assert!(versions_differ(&locked_set, &newer));
        let altered = [
            locked("bash", "5.2.15-2+b7", "eeee"),
            locked("sudo", "1.9", "bbbb"),
        ];
        let err = check(lock, &locked_set, &altered).unwrap_err().to_string();
        assert!(
            err.contains("bash: same version 5.2.15-2+b7 but SHA-256 aaaa"),
            "{err}"
        );
        assert!(!versions_differ(&locked_set, &altered));
    }

    #[test]
    fn versions_the_mirror_dropped_are_named() {
        let failure = "E: Version '5.2.15-2+b7' for 'bash' was not found\nE: Version '1' for 'x' was not found\n";
        let err = gone_versions(Path::new("m.lock"), failure)
            .unwrap()
            .to_string();
        assert!(err.contains("bash: version 5.2.15-2+b7 in the lockfile, gone from the mirror"));
        assert!(err.contains("  x: version 1"));
        assert!(gone_versions(Path::new("m.lock"), "E: something else").is_none());
    }
}
