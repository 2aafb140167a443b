//! The root filesystem: second stage of the pipeline. mmdebstrap installs the
//! recipe's packages from its Debian mirror into a tarball, which is cached
//! under a key made of everything that goes into it, then unpacked into the
//! work folder for the later stages to customize.

use std::fs;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::command::{Cmd, CommandError};
use crate::recipe::Recipe;

use super::stage::Stage;

/// Used when neither the recipe, `--mirror`, nor the build host name a mirror.
pub const FALLBACK_MIRROR: &str = "http://deb.debian.org/debian";

/// Packages every image gets whatever the recipe says: the boot loader's
/// module folders (the builder makes GRUB's images from them), systemd as init,
/// and what a disk that grows at first boot needs.
pub const BASE_PACKAGES: &[&str] = &[
    "systemd-sysv",
    "udev",
    "kmod",
    "initramfs-tools",
    "grub-pc-bin",
    "grub-efi-amd64-bin",
    "grub2-common",
    "cloud-guest-utils",
    "e2fsprogs",
];

#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RootfsError + '_ {
    move |source| RootfsError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The Debian mirror of the build host, from its apt sources: the first
/// `http(s)` URI serving a plain suite (not `-security`).
pub fn host_mirror() -> Option<String> {
    let mut texts = Vec::new();
    for path in ["/etc/apt/sources.list"] {
        if let Ok(text) = fs::read_to_string(path) {
            texts.push(text);
        }
    }
    if let Ok(dir) = fs::read_dir("/etc/apt/sources.list.d") {
        let mut paths: Vec<_> = dir.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        paths.sort();
        for path in paths {
            if path
                .extension()
                .is_some_and(|e| e == "sources" || e == "list")
            {
                if let Ok(text) = fs::read_to_string(&path) {
                    texts.push(text);
                }
            }
        }
    }
    texts.iter().find_map(|t| mirror_in_sources(t))
}

/// Finds a Debian mirror in one apt sources file, one-line or deb822 style.
pub fn mirror_in_sources(text: &str) -> Option<String> {
    let debian = |uri: &str| {
        (uri.starts_with("http://") || uri.starts_with("https://"))
            && uri.trim_end_matches('/').ends_with("/debian")
    };
    for line in text.lines().map(str::trim) {
        let mut words = line.split_whitespace();
        if words.next() == Some("deb") {
            let uri = words.find(|w| !w.starts_with('['))?;
            if debian(uri) {
                return Some(uri.trim_end_matches('/').to_owned());
            }
        }
        if let Some(uris) = line.strip_prefix("URIs:") {
            if let Some(uri) = uris.split_whitespace().find(|u| debian(u)) {
                return Some(uri.trim_end_matches('/').to_owned());
            }
        }
    }
    None
}

/// The apt source lines for the image, in the order mmdebstrap takes them.
pub fn debian_sources(recipe: &Recipe, mirror: &str) -> Vec<String> {
    let suite = &recipe.debian.suite;
    let components = recipe.debian.components.join(" ");
    let mut lines = vec![format!("deb {mirror} {suite} {components}")];
    if recipe.debian.security {
        lines.push(format!("deb {mirror} {suite}-updates {components}"));
        // The security archive sits beside the main one on Debian's own
        // mirrors; a court's mirror that carries it names it the same way.
        if let Some(base) = mirror.strip_suffix("/debian") {
            lines.push(format!(
                "deb {base}/debian-security {suite}-security {components}"
            ));
        }
    }
    lines
}

/// Every package the image gets, sorted and without repeats: the base, the
/// recipe's Debian packages, and those installed from extra repositories.
pub fn package_set(recipe: &Recipe) -> Vec<String> {
    let mut all: Vec<String> = BASE_PACKAGES
        .iter()
        .map(|s| s.to_string())
        .chain(recipe.debian.packages.iter().cloned())
        .chain(
            recipe
                .repositories
                .iter()
                .flat_map(|r| r.install.iter().cloned()),
        )
        .collect();
    all.sort();
    all.dedup();
    all
}

/// The package set with each locked package asked for at its locked version
/// (`name=version`), locked packages the recipe does not name included.
pub fn with_pins(packages: &[String], pins: &[String]) -> Vec<String> {
    let pinned = |name: &str| pins.iter().any(|p| p.split('=').next() == Some(name));
    let mut out: Vec<String> = packages.iter().filter(|p| !pinned(p)).cloned().collect();
    out.extend(pins.iter().cloned());
    out
}

/// What the cached tarball depends on: a change to any of it makes a new one.
pub fn cache_key(recipe: &Recipe, sources: &[String], epoch: Option<u64>) -> String {
    let mut h = Sha256::new();
    h.update(b"balcao rootfs v2\0");
    h.update(env!("CARGO_PKG_VERSION"));
    for line in sources {
        h.update(line.as_bytes());
        h.update([0]);
    }
    for p in package_set(recipe) {
        h.update(p.as_bytes());
        h.update([0]);
    }
    for r in &recipe.repositories {
        for part in [&r.name, &r.url, &r.suite, &r.fingerprint]
            .into_iter()
            .chain(&r.components)
            .chain(&r.bake)
        {
            h.update(part.as_bytes());
            h.update([0]);
        }
    }
    if let Some(epoch) = epoch {
        h.update(b"epoch");
        h.update(epoch.to_le_bytes());
    }
    hex::encode(&h.finalize()[..16])
}

/// Runs mmdebstrap into `tarball` (written under a temporary name first).
/// `sources` are one-line apt sources or paths of deb822 `.sources` files;
/// `hooks` are shell commands run on the finished root (`$1`) before
/// mmdebstrap's own clean-up.
pub fn debootstrap(
    recipe: &Recipe,
    sources: &[String],
    hooks: &[String],
    pins: &[String],
    tarball: &Path,
    scratch: &Path,
    epoch: Option<u64>,
) -> Result<(), RootfsError> {
    let stage = Stage::start("root filesystem (mmdebstrap)");
    let partial = tarball.with_extension("tar.partial");
    let _ = fs::remove_file(&partial);
    let mut cmd = Cmd::new("mmdebstrap")
        .args(["--mode=root", "--variant=apt", "--format=tar"])
        .arg(format!(
            "--include={}",
            with_pins(&package_set(recipe), pins).join(",")
        ))
        .arg("--aptopt=Acquire::Retries \"3\"")
        .arg("--dpkgopt=path-exclude=/usr/share/doc/*/changelog*")
        .args(hooks.iter().map(|h| format!("--customize-hook={h}")))
        .arg(&recipe.debian.suite)
        .arg(&partial)
        .args(sources)
        .env("TMPDIR", scratch);
    if let Some(epoch) = epoch {
        cmd = cmd.env("SOURCE_DATE_EPOCH", epoch.to_string());
    }
    cmd.run_streaming(|line| {
        if let Some(message) = line.strip_prefix("I: ") {
            stage.progress(message);
        }
    })?;
    fs::rename(&partial, tarball).map_err(io(tarball))?;
    stage.done();
    Ok(())
}

/// Unpacks a root tarball into an empty folder, keeping owners, modes and
/// extended attributes (file capabilities live there).
pub fn unpack(tarball: &Path, into: &Path) -> Result<(), RootfsError> {
    fs::create_dir_all(into).map_err(io(into))?;
    Cmd::new("tar")
        .args(["--numeric-owner", "--xattrs", "--xattrs-include=*", "-xpf"])
        .arg(tarball)
        .arg("-C")
        .arg(into)
        .run()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirrors_are_found_in_both_source_styles() {
        let one_line =
            "# comment\ndeb [arch=amd64] http://ftp.br.debian.org/debian/ bookworm main\n";
        assert_eq!(
            mirror_in_sources(one_line).as_deref(),
            Some("http://ftp.br.debian.org/debian")
        );
        let deb822 = "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm\n";
        assert_eq!(
            mirror_in_sources(deb822).as_deref(),
            Some("http://deb.debian.org/debian")
        );
        let ubuntu = "deb http://archive.ubuntu.com/ubuntu noble main\n";
        assert_eq!(mirror_in_sources(ubuntu), None);
    }

    fn recipe() -> Recipe {
        Recipe::parse(
            "name = \"t\"\nversion = \"1\"\n[debian]\nsuite = \"bookworm\"\npackages = [\"linux-image-amd64\", \"udev\"]\n[disk]\nsize = \"2GiB\"\n",
            Path::new("t.toml"),
            Path::new("."),
        )
        .unwrap()
    }

    #[test]
    fn sources_include_updates_and_security() {
        let lines = debian_sources(&recipe(), "http://deb.debian.org/debian");
        assert_eq!(
            lines,
            [
                "deb http://deb.debian.org/debian bookworm main",
                "deb http://deb.debian.org/debian bookworm-updates main",
                "deb http://deb.debian.org/debian-security bookworm-security main",
            ]
        );
    }

    #[test]
    fn package_set_is_sorted_and_unique_and_keys_follow_it() {
        let r = recipe();
        let set = package_set(&r);
        assert!(set.windows(2).all(|w| w[0] < w[1]));
        assert!(set.contains(&"grub-efi-amd64-bin".to_string()));
        let sources = debian_sources(&r, FALLBACK_MIRROR);
        let key = cache_key(&r, &sources, None);
        assert_eq!(key, cache_key(&r, &sources, None));
        assert_ne!(key, cache_key(&r, &sources, Some(1)));
        let mut other = r.clone();
        other.debian.packages.push("sudo".into());
        assert_ne!(key, cache_key(&other, &sources, None));
        let pins = ["udev=252.38-1~deb12u1".to_owned(), "bash=5.2".to_owned()];
        let pinned = with_pins(&set, &pins);
        assert!(pinned.contains(&"udev=252.38-1~deb12u1".to_owned()));
        assert!(!pinned.contains(&"udev".to_owned()));
        assert!(pinned.contains(&"bash=5.2".to_owned()));
        assert_eq!(pinned.len(), set.len() + 1);
    }
}
