//! Extra apt repositories (Jitsi's): their signing key fetched and checked
//! against the fingerprint pinned in the recipe, the key given to apt with
//! `signed-by` (never apt-key), and the packages to bake downloaded into a
//! flat local repository inside the image, checked against the recipe's
//! lockfile, so that first boot installs them offline.

use std::fs;
use std::path::{Path, PathBuf};

use crate::command::{Cmd, CommandError};
use crate::recipe::{KeySource, Repository};

/// Where a repository's baked packages live in the image, and the folder's
/// name inside it (the appliance's Jitsi step reads `/var/lib/balcao/jitsi-repo`).
pub fn baked_dir(name: &str) -> String {
    format!("var/lib/balcao/{name}-repo")
}

/// The keyring path in the image, as the `signed-by` option names it.
pub fn keyring_path(name: &str) -> String {
    format!("/usr/share/keyrings/{name}-keyring.gpg")
}

#[derive(Debug, thiserror::Error)]
pub enum RepositoryError {
    #[error(
        "repository `{repo}`: the key from {source_desc} has fingerprint\n  {actual}\nbut the recipe pins\n  {pinned}\nThe key was rotated or the download was tampered with. Check the new fingerprint with the publisher before changing the recipe."
    )]
    FingerprintMismatch {
        repo: String,
        source_desc: String,
        pinned: String,
        actual: String,
    },
    #[error("repository `{repo}`: downloading its key from {url}: {message}")]
    Download {
        repo: String,
        url: String,
        message: String,
    },
    #[error("repository `{repo}`: {path} holds no OpenPGP public key")]
    NoKey { repo: String, path: String },
    #[error(
        "repository `{repo}`: baked packages differ from the lockfile {lock}:\n{changes}\nIf this change is expected, rebuild with --update-lock and review the lockfile's diff."
    )]
    LockMismatch {
        repo: String,
        lock: PathBuf,
        changes: String,
    },
    #[error("lockfile {path}: {message}")]
    BadLock { path: PathBuf, message: String },
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RepositoryError + '_ {
    move |source| RepositoryError::Io {
        path: path.to_owned(),
        source,
    }
}

/// A repository whose key has been checked.
#[derive(Debug, Clone)]
pub struct CheckedRepository {
    pub repo: Repository,
    /// The key, armored, for deb822 `Signed-By:` during the build.
    pub armored: String,
    /// The key, binary, installed as the image's keyring.
    pub keyring: Vec<u8>,
}

/// `--repo NAME=URL[,key=SOURCE][,fingerprint=FPR]`: points a recipe's
/// repository at another mirror (a court's own, or a test stand-in).
#[derive(Debug, Clone)]
pub struct RepoOverride {
    pub name: String,
    pub url: String,
    pub key: Option<KeySource>,
    pub fingerprint: Option<String>,
}

impl std::str::FromStr for RepoOverride {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let usage = "write NAME=URL[,key=PATH_OR_URL][,fingerprint=HEX], e.g. jitsi=https://mirror.tjxx.jus.br/jitsi";
        let mut parts = text.split(',');
        let (name, url) = parts
            .next()
            .and_then(|p| p.split_once('='))
            .ok_or_else(|| format!("`{text}`: {usage}"))?;
        let mut o = RepoOverride {
            name: name.to_owned(),
            url: url.to_owned(),
            key: None,
            fingerprint: None,
        };
        for part in parts {
            match part.split_once('=') {
                Some(("key", k)) if k.starts_with("http://") || k.starts_with("https://") => {
                    o.key = Some(KeySource::Url(k.into()))
                }
                Some(("key", k)) => o.key = Some(KeySource::File(k.into())),
                Some(("fingerprint", f)) => {
                    o.fingerprint = Some(f.replace(' ', "").to_ascii_uppercase())
                }
                _ => return Err(format!("`{part}` in `{text}`: {usage}")),
            }
        }
        Ok(o)
    }
}

/// Applies `--repo` overrides to the recipe's repositories.
pub fn apply_overrides(
    repos: &[Repository],
    overrides: &[RepoOverride],
) -> Result<Vec<Repository>, String> {
    let mut out = repos.to_vec();
    for o in overrides {
        let repo = out.iter_mut().find(|r| r.name == o.name).ok_or_else(|| {
            format!(
                "--repo {}: the recipe has no repository named `{}`",
                o.name, o.name
            )
        })?;
        repo.url = o.url.clone();
        if let Some(key) = &o.key {
            repo.key = key.clone();
        }
        if let Some(f) = &o.fingerprint {
            repo.fingerprint = f.clone();
        }
    }
    Ok(out)
}

/// Fetches the repository's key and checks it against the pinned fingerprint.
pub fn check_key(repo: &Repository, scratch: &Path) -> Result<CheckedRepository, RepositoryError> {
    let (bytes, source_desc) = match &repo.key {
        KeySource::File(path) => (
            fs::read(path).map_err(io(path))?,
            path.display().to_string(),
        ),
        KeySource::Url(url) => (download(&repo.name, url)?, url.clone()),
    };

    // A throwaway GnuPG home, and no agent: nothing touches the host's
    // keyrings, and a deep build directory (the agent's socket path is
    // limited to 107 bytes) cannot break the check.
    let home = tempfile::tempdir_in(scratch).map_err(io(scratch))?;
    let gpg = |args: &[&str]| {
        Cmd::new("gpg")
            .args(["--batch", "--no-tty", "--no-autostart", "--homedir"])
            .arg(home.path())
            .args(args)
            .stdin(bytes.clone())
    };
    let listing = gpg(&["--with-colons", "--show-keys"]).run()?.stdout_text();
    let actual = primary_fingerprints(&listing);
    if actual.is_empty() {
        return Err(RepositoryError::NoKey {
            repo: repo.name.clone(),
            path: source_desc,
        });
    }
    if actual.len() != 1 || actual[0] != repo.fingerprint {
        return Err(RepositoryError::FingerprintMismatch {
            repo: repo.name.clone(),
            source_desc,
            pinned: repo.fingerprint.clone(),
            actual: actual.join(", "),
        });
    }
    // `import-export` normalises the key without storing it anywhere.
    let export = ["--import-options", "import-export", "--import"];
    let armored = gpg(&[&["--armor"][..], &export].concat())
        .run()?
        .stdout_text();
    let keyring = gpg(&export).run()?.stdout;
    Ok(CheckedRepository {
        repo: repo.clone(),
        armored,
        keyring,
    })
}

fn download(repo: &str, url: &str) -> Result<Vec<u8>, RepositoryError> {
    let err = |message: String| RepositoryError::Download {
        repo: repo.into(),
        url: url.into(),
        message,
    };
    let response = ureq::get(url)
        .timeout(std::time::Duration::from_secs(60))
        .call()
        .map_err(|e| err(e.to_string()))?;
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut response.into_reader().take(1 << 20), &mut bytes)
        .map_err(|e| err(e.to_string()))?;
    Ok(bytes)
}

use std::io::Read as _;

/// Fingerprints of primary keys in `gpg --with-colons` output.
fn primary_fingerprints(listing: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut after_pub = false;
    for line in listing.lines() {
        let fields: Vec<&str> = line.split(':').collect();
        match fields.first() {
            Some(&"pub") => after_pub = true,
            Some(&"fpr") if after_pub => {
                out.push(fields.get(9).unwrap_or(&"").to_ascii_uppercase());
                after_pub = false;
            }
            Some(&"sub") => after_pub = false,
            _ => {}
        }
    }
    out
}

/// A deb822 sources file with the key inline, for mmdebstrap: it works for
/// apt both outside and inside the new root.
pub fn build_sources(checked: &CheckedRepository) -> String {
    let r = &checked.repo;
    let mut key = String::new();
    for line in checked.armored.trim_end().lines() {
        key.push_str("\n ");
        key.push_str(if line.is_empty() { "." } else { line });
    }
    let components = if r.components.is_empty() {
        String::new()
    } else {
        format!("Components: {}\n", r.components.join(" "))
    };
    format!(
        "Types: deb\nURIs: {}\nSuites: {}\n{components}Signed-By:{key}\n",
        r.url, r.suite
    )
}

/// The one-line source the image keeps, pointing at the keyring file.
pub fn image_list(repo: &Repository) -> String {
    let mut line = format!(
        "deb [signed-by={}] {} {}",
        keyring_path(&repo.name),
        repo.url,
        repo.suite
    );
    for c in &repo.components {
        line.push(' ');
        line.push_str(c);
    }
    line + "\n"
}

/// A shell hook for mmdebstrap that downloads the repository's bake list
/// (with whatever they need that is not installed) into the image's local
/// repository folder.
pub fn bake_hook(repo: &Repository) -> String {
    let dir = baked_dir(&repo.name);
    format!(
        "mkdir -p \"$1/{dir}/partial\" && chroot \"$1\" apt-get install --download-only --yes --no-install-recommends -o Dir::Cache::archives=/{dir}/ {} && rm -rf \"$1/{dir}/partial\" \"$1/{dir}/lock\"",
        repo.bake.join(" ")
    )
}

/// One baked package: what the lockfile records.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Locked {
    pub name: String,
    pub version: String,
    pub sha256: String,
}

/// The recipe's lockfile: the baked packages (`[[package]]`) and, once
/// `balcao lock` has run, every Debian package installed (`[[debian]]`).
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Lockfile {
    #[serde(default, rename = "package", skip_serializing_if = "Vec::is_empty")]
    pub packages: Vec<Locked>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub debian: Vec<Locked>,
}

/// Writes the lockfile whole, under a temporary name first.
pub fn write_lockfile(path: &Path, lock: &Lockfile) -> Result<(), RepositoryError> {
    let text = format!(
        "# Written by `balcao build` (baked packages) and `balcao lock` (Debian packages):\n\
         # the exact packages in the image. A build whose packages differ fails;\n\
         # `balcao lock` and `balcao build --update-lock` rewrite this file.\n\n{}",
        toml::to_string(lock).expect("lockfile serializes")
    );
    let partial = path.with_extension("lock.partial");
    fs::write(&partial, text).map_err(io(&partial))?;
    fs::rename(&partial, path).map_err(io(path))
}

/// Writes the flat repository's `Packages` index for the baked .debs and
/// returns what the lockfile records of them.
pub fn index_baked(root: &Path, repo: &Repository) -> Result<Vec<Locked>, RepositoryError> {
    let dir = root.join(baked_dir(&repo.name));
    let mut debs: Vec<PathBuf> = fs::read_dir(&dir)
        .map_err(io(&dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "deb"))
        .collect();
    debs.sort();
    let mut index = String::new();
    let mut locked = Vec::new();
    for deb in &debs {
        let control = Cmd::new("dpkg-deb")
            .arg("--field")
            .arg(deb)
            .run()?
            .stdout_text();
        let field = |name: &str| {
            control
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{name}: ")))
                .unwrap_or("")
                .to_owned()
        };
        let sha256 = crate::export::sha256_file(deb).map_err(|e| RepositoryError::Io {
            path: deb.clone(),
            source: std::io::Error::other(e.to_string()),
        })?;
        let size = fs::metadata(deb).map_err(io(deb))?.len();
        let file_name = deb.file_name().unwrap_or_default().to_string_lossy();
        index.push_str(control.trim_end());
        index.push_str(&format!(
            "\nFilename: ./{file_name}\nSize: {size}\nSHA256: {sha256}\n\n"
        ));
        locked.push(Locked {
            name: field("Package"),
            version: field("Version"),
            sha256,
        });
    }
    let packages = dir.join("Packages");
    fs::write(&packages, index).map_err(io(&packages))?;
    locked.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(locked)
}

/// Compares the baked packages with the lockfile; writes the lockfile when
/// it does not exist yet or when `update` is set.
pub fn check_lock(
    lock_path: &Path,
    repo: &str,
    baked: &[Locked],
    update: bool,
) -> Result<(), RepositoryError> {
    let existing: Option<Lockfile> = match fs::read_to_string(lock_path) {
        Ok(text) => Some(toml::from_str(&text).map_err(|e| RepositoryError::BadLock {
            path: lock_path.to_owned(),
            message: e.to_string(),
        })?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io(lock_path)(e)),
    };
    // A lockfile that so far holds only Debian packages (`balcao lock`)
    // has nothing baked to hold these to yet.
    let baked_lock = existing.as_ref().filter(|l| !l.packages.is_empty());
    if let (Some(lock), false) = (baked_lock, update) {
        let changes = lock_changes(&lock.packages, baked, "baked");
        if !changes.is_empty() {
            return Err(RepositoryError::LockMismatch {
                repo: repo.to_owned(),
                lock: lock_path.to_owned(),
                changes,
            });
        }
        return Ok(());
    }
    let mut lock = existing.unwrap_or_default();
    lock.packages = baked.to_vec();
    write_lockfile(lock_path, &lock)?;
    tracing::info!(
        "lockfile {} written ({} packages)",
        lock_path.display(),
        baked.len()
    );
    Ok(())
}

/// One line per difference, empty when the two agree.
pub fn lock_changes(locked: &[Locked], baked: &[Locked], what: &str) -> String {
    let mut lines = Vec::new();
    for b in baked {
        match locked.iter().find(|l| l.name == b.name) {
            None => lines.push(format!("  {}: not in the lockfile (now {})", b.name, b.version)),
            Some(l) if l.version != b.version => lines.push(format!(
                "  {}: version {} in the lockfile, {} now",
                b.name, l.version, b.version
            )),
            Some(l) if l.sha256 != b.sha256 => lines.push(format!(
                "  {}: same version {} but SHA-256 {} in the lockfile, {} now (the package was altered)",
                b.name, b.version, l.sha256, b.sha256
            )),
            Some(_) => {}
        }
    }
    for l in locked {
        if !baked.iter().any(|b| b.name == l.name) {
            lines.push(format!(
                "  {}: in the lockfile but no longer {what}",
                l.name
            ));
        }
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn locked(name: &str, version: &str, sha: &str) -> Locked {
        Locked {
            name: name.into(),
            version: version.into(),
            sha256: sha.into(),
        }
    }

    #[test]
    fn primary_fingerprints_skip_subkeys() {
        let listing = "tru::1:0:0:0:0:0:1:0\npub:-:255:22:B4D2D216F1FD7806:1:::-:::scESC::::::23::0:\nfpr:::::::::FFD65A0DA2BEBDEB73D44C8BB4D2D216F1FD7806:\nuid:-::::1::X::Jitsi:::::::::0:\nsub:-:255:18:AAAA:1::::::e::::::23:\nfpr:::::::::1111111111111111111111111111111111111111:\n";
        assert_eq!(
            primary_fingerprints(listing),
            ["FFD65A0DA2BEBDEB73D44C8BB4D2D216F1FD7806"]
        );
    }

    /// A public key made for this test only; its secret half was discarded.
    const TEST_KEY: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/throwaway-public-key.asc"
    );
    const TEST_FPR: &str = "5CD71A94A26E0E50E14D7C78809D63DAB61078A1";

    fn test_repo(fingerprint: &str) -> Repository {
        Repository {
            name: "jitsi".into(),
            url: "http://127.0.0.1:1".into(),
            suite: "stable/".into(),
            components: vec![],
            key: KeySource::File(TEST_KEY.into()),
            fingerprint: fingerprint.into(),
            install: vec![],
            bake: vec![],
        }
    }

    #[test]
    fn key_check_works_under_a_deep_build_directory() {
        // CI checks out under a longer path than a developer's machine; a
        // GnuPG agent socket there would exceed the 107-byte limit.
        let top = tempfile::tempdir().unwrap();
        let deep = top.path().join("d".repeat(60)).join("e".repeat(60));
        fs::create_dir_all(&deep).unwrap();
        let checked = check_key(&test_repo(TEST_FPR), &deep).unwrap();
        assert!(checked
            .armored
            .starts_with("-----BEGIN PGP PUBLIC KEY BLOCK-----"));
        assert_eq!(checked.keyring[0] & 0x80, 0x80, "binary OpenPGP packets");
        assert!(checked.keyring.len() > 400);
    }

    #[test]
    fn key_check_names_both_fingerprints_on_mismatch() {
        let scratch = tempfile::tempdir().unwrap();
        let pinned = "FFD65A0DA2BEBDEB73D44C8BB4D2D216F1FD7806";
        let err = check_key(&test_repo(pinned), scratch.path())
            .expect_err("a different key must be refused")
            .to_string();
        assert!(err.contains(pinned) && err.contains(TEST_FPR), "{err}");
    }

    #[test]
    fn overrides_parse_and_apply() {
        let o: RepoOverride = "jitsi=http://127.0.0.1:8080,key=/tmp/k.asc,fingerprint=ab cd"
            .parse()
            .unwrap();
        assert_eq!(o.url, "http://127.0.0.1:8080");
        assert_eq!(o.key, Some(KeySource::File("/tmp/k.asc".into())));
        assert_eq!(o.fingerprint.as_deref(), Some("ABCD"));
        assert!("jitsi".parse::<RepoOverride>().is_err());
        assert!("jitsi=http://x,colour=red".parse::<RepoOverride>().is_err());
        let repo = Repository {
            name: "jitsi".into(),
            url: "https://download.jitsi.org".into(),
            suite: "stable/".into(),
            components: vec![],
            key: KeySource::Url("https://download.jitsi.org/jitsi-key.gpg.key".into()),
            fingerprint: "F".repeat(40),
            install: vec![],
            bake: vec!["jitsi-meet".into()],
        };
        let applied = apply_overrides(std::slice::from_ref(&repo), &[o]).unwrap();
        assert_eq!(applied[0].url, "http://127.0.0.1:8080");
        let other: RepoOverride = "court=http://x".parse().unwrap();
        assert!(apply_overrides(std::slice::from_ref(&repo), &[other])
            .unwrap_err()
            .contains("no repository named `court`"));
        assert_eq!(
            image_list(&repo),
            "deb [signed-by=/usr/share/keyrings/jitsi-keyring.gpg] https://download.jitsi.org stable/\n"
        );
        assert!(bake_hook(&repo)
            .contains("Dir::Cache::archives=/var/lib/balcao/jitsi-repo/ jitsi-meet"));
    }

    #[test]
    fn lock_differences_are_named() {
        let lock = [
            locked("jicofo", "1.0", "aa"),
            locked("jitsi-meet", "2.0", "bb"),
        ];
        assert_eq!(lock_changes(&lock, &lock, "baked"), "");
        let tampered = [
            locked("jicofo", "1.0", "cc"),
            locked("jitsi-meet", "2.0", "bb"),
        ];
        assert!(lock_changes(&lock, &tampered, "baked")
            .contains("jicofo: same version 1.0 but SHA-256 aa"));
        let moved = [
            locked("jicofo", "1.1", "aa"),
            locked("jitsi-meet", "2.0", "bb"),
        ];
        assert!(
            lock_changes(&lock, &moved, "baked").contains("version 1.0 in the lockfile, 1.1 now")
        );
        let fewer = [locked("jicofo", "1.0", "aa")];
        assert!(lock_changes(&lock, &fewer, "baked")
            .contains("jitsi-meet: in the lockfile but no longer baked"));
    }

    #[test]
    fn lockfile_is_written_then_enforced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.lock");
        let baked = [locked("jicofo", "1.0", "aa")];
        check_lock(&path, "jitsi", &baked, false).unwrap();
        check_lock(&path, "jitsi", &baked, false).unwrap();
        let altered = [locked("jicofo", "1.0", "bb")];
        let err = check_lock(&path, "jitsi", &altered, false)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--update-lock") && err.contains("altered"),
            "{err}"
        );
        check_lock(&path, "jitsi", &altered, true).unwrap();
        check_lock(&path, "jitsi", &altered, false).unwrap();
    }

    #[test]
    fn deb822_sources_carry_the_key_inline() {
        let checked = CheckedRepository {
            repo: Repository {
                name: "jitsi".into(),
                url: "http://127.0.0.1:1".into(),
                suite: "stable/".into(),
                components: vec![],
                key: KeySource::File("k".into()),
                fingerprint: "F".repeat(40),
                install: vec![],
                bake: vec![],
            },
            armored: "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmDMEZ\n-----END PGP PUBLIC KEY BLOCK-----\n".into(),
            keyring: vec![],
        };
        let s = build_sources(&checked);
        assert!(
            s.contains(
                "Suites: stable/\nSigned-By:\n -----BEGIN PGP PUBLIC KEY BLOCK-----\n .\n mDMEZ\n"
            ),
            "{s}"
        );
        assert!(!s.contains("Components"));
    }
}
