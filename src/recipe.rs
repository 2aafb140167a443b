//! What a recipe may say, and its validation: the first stage of the pipeline
//! (recipe -> root filesystem -> disk -> formats).
//!
//! A recipe is a TOML file under `recipes/`. Paths in it (overlays, key files)
//! are relative to the recipe's own folder. Every mistake is reported with the
//! file, the field and what is allowed, before anything is built.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The Debian releases the builder knows how to make bootable.
pub const SUITES: &[&str] = &["bookworm"];

/// A recipe, read and checked.
#[derive(Debug, Clone)]
pub struct Recipe {
    /// The recipe file, as given.
    pub path: PathBuf,
    pub name: String,
    pub version: String,
    pub description: String,
    pub debian: Debian,
    pub repositories: Vec<Repository>,
    /// Overlay folders, resolved against the recipe's folder, applied in order.
    pub overlays: Vec<PathBuf>,
    pub disk: Disk,
    pub services: Vec<String>,
    pub machine: Machine,
}

#[derive(Debug, Clone)]
pub struct Debian {
    pub suite: String,
    /// None: the build host's own Debian mirror.
    pub mirror: Option<String>,
    pub components: Vec<String>,
    /// Add `SUITE-security` and `SUITE-updates` next to the main suite.
    pub security: bool,
    pub packages: Vec<String>,
}

/// An extra apt repository whose key is checked against a pinned fingerprint.
#[derive(Debug, Clone)]
pub struct Repository {
    pub name: String,
    pub url: String,
    /// `stable/` for a flat repository such as Jitsi's.
    pub suite: String,
    pub components: Vec<String>,
    pub key: KeySource,
    /// Upper-case hex, 40 characters, no spaces.
    pub fingerprint: String,
    /// Packages from this repository installed into the image.
    pub install: Vec<String>,
    /// Packages (with their dependencies from this repository) downloaded into
    /// a local repository inside the image, for offline install at first boot.
    pub bake: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    Url(String),
    File(PathBuf),
}

#[derive(Debug, Clone, Copy)]
pub struct Disk {
    pub size_bytes: u64,
}

/// Virtual hardware the OVA descriptor asks for.
#[derive(Debug, Clone, Copy)]
pub struct Machine {
    pub cpus: u32,
    pub memory_mib: u32,
}

/// A recipe mistake: which file, which field, what is wrong and what is allowed.
#[derive(Debug, thiserror::Error)]
pub struct RecipeError {
    pub file: PathBuf,
    pub field: String,
    pub message: String,
}

impl fmt::Display for RecipeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "recipe {}: {}", self.file.display(), self.message)
        } else {
            write!(
                f,
                "recipe {}: field `{}`: {}",
                self.file.display(),
                self.field,
                self.message
            )
        }
    }
}

// The file as written; `deny_unknown_fields` turns a misspelt key into an error
// that names it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRecipe {
    name: String,
    version: String,
    #[serde(default)]
    description: String,
    debian: RawDebian,
    #[serde(default, rename = "repository")]
    repositories: Vec<RawRepository>,
    #[serde(default)]
    overlays: Vec<String>,
    disk: RawDisk,
    #[serde(default)]
    services: RawServices,
    #[serde(default)]
    machine: RawMachine,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDebian {
    suite: String,
    mirror: Option<String>,
    #[serde(default = "default_components")]
    components: Vec<String>,
    #[serde(default = "yes")]
    security: bool,
    packages: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRepository {
    name: String,
    url: String,
    suite: String,
    #[serde(default)]
    components: Vec<String>,
    key: String,
    fingerprint: String,
    #[serde(default)]
    install: Vec<String>,
    #[serde(default)]
    bake: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDisk {
    size: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawServices {
    #[serde(default)]
    enable: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMachine {
    #[serde(default = "default_cpus")]
    cpus: u32,
    #[serde(default = "default_memory")]
    memory: String,
}

impl Default for RawMachine {
    fn default() -> Self {
        RawMachine {
            cpus: default_cpus(),
            memory: default_memory(),
        }
    }
}

fn default_components() -> Vec<String> {
    vec!["main".into()]
}
fn yes() -> bool {
    true
}
fn default_cpus() -> u32 {
    2
}
fn default_memory() -> String {
    "4GiB".into()
}

/// The smallest disk the builder makes: the boot partitions take 128 MiB and
/// Debian with a kernel needs about a gigabyte more.
const MIN_DISK_BYTES: u64 = 1 << 30;
/// The largest disk a recipe may ask for (2 TiB, the VHD format's ceiling).
const MAX_DISK_BYTES: u64 = 2040 << 30;

impl Recipe {
    /// Reads and checks a recipe file.
    pub fn load(path: &Path) -> Result<Recipe, RecipeError> {
        let text = std::fs::read_to_string(path).map_err(|e| RecipeError {
            file: path.to_owned(),
            field: String::new(),
            message: format!("cannot read it: {e}"),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Recipe::parse(&text, path, base)
    }

    /// Checks recipe text; `base` is the folder relative paths start from.
    pub fn parse(text: &str, path: &Path, base: &Path) -> Result<Recipe, RecipeError> {
        let err = |field: &str, message: String| RecipeError {
            file: path.to_owned(),
            field: field.to_owned(),
            message,
        };
        let raw: RawRecipe = toml::from_str(text)
            .map_err(|e| err("", format!("{}", e).trim_end().replace('\n', "\n  ")))?;

        check_name(&raw.name).map_err(|m| err("name", m))?;
        check_version(&raw.version).map_err(|m| err("version", m))?;

        if !SUITES.contains(&raw.debian.suite.as_str()) {
            return Err(err(
                "debian.suite",
                format!(
                    "`{}` is not supported; allowed: {}",
                    raw.debian.suite,
                    SUITES.join(", ")
                ),
            ));
        }
        if let Some(mirror) = &raw.debian.mirror {
            check_url(mirror).map_err(|m| err("debian.mirror", m))?;
        }
        for c in &raw.debian.components {
            if !["main", "contrib", "non-free", "non-free-firmware"].contains(&c.as_str()) {
                return Err(err(
                    "debian.components",
                    format!("`{c}` is not a Debian component; allowed: main, contrib, non-free, non-free-firmware"),
                ));
            }
        }
        if raw.debian.packages.is_empty() {
            return Err(err(
                "debian.packages",
                "the list is empty; name at least the kernel, e.g. \"linux-image-amd64\"".into(),
            ));
        }
        for p in &raw.debian.packages {
            check_package(p).map_err(|m| err("debian.packages", m))?;
        }
        if raw
            .debian
            .packages
            .iter()
            .any(|p| p.starts_with("linux-image-cloud"))
        {
            return Err(err(
                "debian.packages",
                "the cloud kernel lacks the AHCI, E1000 and LSI drivers VirtualBox and VMware present; use linux-image-amd64".into(),
            ));
        }

        let mut repositories = Vec::new();
        for (i, r) in raw.repositories.into_iter().enumerate() {
            let field = |f: &str| format!("repository[{i}].{f}");
            check_name(&r.name).map_err(|m| err(&field("name"), m))?;
            if repositories.iter().any(|x: &Repository| x.name == r.name) {
                return Err(err(
                    &field("name"),
                    format!(
                        "`{}` is used by two repositories; names must be unique",
                        r.name
                    ),
                ));
            }
            check_url(&r.url).map_err(|m| err(&field("url"), m))?;
            if r.suite.is_empty() || r.suite.contains(char::is_whitespace) {
                return Err(err(
                    &field("suite"),
                    "must be a suite name such as `bookworm`, or `stable/` for a flat repository"
                        .into(),
                ));
            }
            if r.suite.ends_with('/') != r.components.is_empty() {
                return Err(err(
                    &field("components"),
                    "a flat repository (suite ending in `/`) has no components; a normal one needs at least one".into(),
                ));
            }
            let fingerprint =
                normalize_fingerprint(&r.fingerprint).map_err(|m| err(&field("fingerprint"), m))?;
            let key = if r.key.starts_with("http://") || r.key.starts_with("https://") {
                KeySource::Url(r.key)
            } else {
                let file = base.join(&r.key);
                if !file.is_file() {
                    return Err(err(
                        &field("key"),
                        format!(
                            "no key file at {} (give an https:// URL or a path relative to the recipe)",
                            file.display()
                        ),
                    ));
                }
                KeySource::File(file)
            };
            for p in r.install.iter().chain(&r.bake) {
                check_package(p).map_err(|m| err(&field("install/bake"), m))?;
            }
            repositories.push(Repository {
                name: r.name,
                url: r.url,
                suite: r.suite,
                components: r.components,
                key,
                fingerprint,
                install: r.install,
                bake: r.bake,
            });
        }

        let mut overlays = Vec::new();
        for o in &raw.overlays {
            let dir = base.join(o);
            if !dir.is_dir() {
                return Err(err(
                    "overlays",
                    format!(
                        "no folder at {} (paths are relative to the recipe)",
                        dir.display()
                    ),
                ));
            }
            overlays.push(dir);
        }

        let size_bytes = parse_size(&raw.disk.size).map_err(|m| err("disk.size", m))?;
        if !(MIN_DISK_BYTES..=MAX_DISK_BYTES).contains(&size_bytes) {
            return Err(err(
                "disk.size",
                format!(
                    "{} is out of range; allowed: 1GiB to 2040GiB",
                    raw.disk.size
                ),
            ));
        }
        if size_bytes % (1 << 20) != 0 {
            return Err(err(
                "disk.size",
                "must be a whole number of MiB (e.g. \"3GiB\" or \"2560MiB\")".into(),
            ));
        }

        for s in &raw.services.enable {
            let ok = [".service", ".timer", ".socket", ".path", ".target"]
                .iter()
                .any(|suffix| s.ends_with(suffix))
                && !s.contains('/');
            if !ok {
                return Err(err(
                    "services.enable",
                    format!("`{s}` is not a systemd unit name (e.g. \"ssh.service\")"),
                ));
            }
        }

        if !(1..=64).contains(&raw.machine.cpus) {
            return Err(err("machine.cpus", "must be between 1 and 64".into()));
        }
        let memory = parse_size(&raw.machine.memory).map_err(|m| err("machine.memory", m))?;
        if memory < (1 << 30) || memory % (1 << 20) != 0 {
            return Err(err(
                "machine.memory",
                "must be at least 1GiB and a whole number of MiB".into(),
            ));
        }

        Ok(Recipe {
            path: path.to_owned(),
            name: raw.name,
            version: raw.version,
            description: raw.description,
            debian: Debian {
                suite: raw.debian.suite,
                mirror: raw.debian.mirror,
                components: raw.debian.components,
                security: raw.debian.security,
                packages: raw.debian.packages,
            },
            repositories,
            overlays,
            disk: Disk { size_bytes },
            services: raw.services.enable,
            machine: Machine {
                cpus: raw.machine.cpus,
                memory_mib: (memory >> 20) as u32,
            },
        })
    }

    /// The base name of every output file: `NAME-VERSION`.
    pub fn artifact_stem(&self) -> String {
        format!("{}-{}", self.name, self.version)
    }
}

fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 40
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not allowed; use lowercase letters, digits and `-`, starting with a letter, at most 40"
        ))
    }
}

fn check_version(version: &str) -> Result<(), String> {
    let ok = !version.is_empty()
        && version.len() <= 32
        && version.starts_with(|c: char| c.is_ascii_digit())
        && version
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._+~-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{version}` is not allowed; start with a digit, then letters, digits and . _ + ~ - (e.g. \"1.0.0\")"
        ))
    }
}

fn check_url(url: &str) -> Result<(), String> {
    let ok = ["http://", "https://", "file:/"]
        .iter()
        .any(|scheme| url.starts_with(scheme))
        && !url.contains(char::is_whitespace);
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{url}` is not a URL apt can use; give http://, https:// or file:/ (e.g. \"http://deb.debian.org/debian\")"
        ))
    }
}

/// Debian package names (policy 5.6.1), optionally pinned as `name=version`.
fn check_package(spec: &str) -> Result<(), String> {
    let name = spec.split_once('=').map_or(spec, |(n, _)| n);
    let ok = name.len() >= 2
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{spec}` is not a Debian package name (lowercase letters, digits, + - .; optionally `=version`)"
        ))
    }
}

fn normalize_fingerprint(text: &str) -> Result<String, String> {
    let hex: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    if hex.len() == 40 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(hex.to_ascii_uppercase())
    } else {
        Err(format!(
            "`{text}` is not an OpenPGP v4 fingerprint; give all 40 hex digits (a short key id is not enough to pin a key)"
        ))
    }
}

/// Sizes as people write them: `3GiB`, `2560MiB`, `4G` (binary units).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(digits_end);
    let shift = match unit.trim() {
        "" | "B" => 0,
        "K" | "KiB" => 10,
        "M" | "MiB" => 20,
        "G" | "GiB" => 30,
        "T" | "TiB" => 40,
        _ => u32::MAX,
    };
    let n: u64 = number
        .parse()
        .map_err(|_| ())
        .ok()
        .filter(|_| shift != u32::MAX)
        .ok_or_else(|| format!("`{text}` is not a size; write e.g. \"3GiB\" or \"2560MiB\""))?;
    n.checked_shl(shift)
        .filter(|v| v >> shift == n)
        .ok_or_else(|| format!("`{text}` is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name = "minimal"
version = "0.1.0"
[debian]
suite = "bookworm"
packages = ["linux-image-amd64", "openssh-server"]
[disk]
size = "2GiB"
[services]
enable = ["ssh.service"]
"#;

    fn parse(text: &str) -> Result<Recipe, RecipeError> {
        Recipe::parse(text, Path::new("recipes/test.toml"), Path::new("."))
    }

    #[test]
    fn a_good_recipe_parses_with_defaults() {
        let r = parse(GOOD).unwrap();
        assert_eq!(r.artifact_stem(), "minimal-0.1.0");
        assert_eq!(r.debian.components, ["main"]);
        assert!(r.debian.security);
        assert_eq!(r.disk.size_bytes, 2 << 30);
        assert_eq!(r.machine.cpus, 2);
        assert_eq!(r.machine.memory_mib, 4096);
        assert!(r.debian.mirror.is_none());
    }

    fn error_of(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn errors_name_the_file_and_the_field() {
        let e = error_of(&GOOD.replace("bookworm", "buster"));
        assert!(e.contains("recipes/test.toml"), "{e}");
        assert!(e.contains("debian.suite"), "{e}");
        assert!(e.contains("allowed: bookworm"), "{e}");

        let e = error_of(&GOOD.replace("2GiB", "two gigs"));
        assert!(e.contains("disk.size") && e.contains("3GiB"), "{e}");

        let e = error_of(&GOOD.replace("0.1.0", "v1"));
        assert!(e.contains("`version`"), "{e}");

        let e = error_of(&GOOD.replace("\"ssh.service\"", "\"ssh\""));
        assert!(e.contains("services.enable"), "{e}");
    }

    #[test]
    fn unknown_and_missing_fields_are_named() {
        let e = error_of(&GOOD.replace("[disk]", "colour = \"red\"\n[disk]"));
        assert!(e.contains("colour"), "{e}");
        let e = error_of(&GOOD.replace("size = \"2GiB\"", ""));
        assert!(e.contains("size"), "{e}");
    }

    #[test]
    fn the_cloud_kernel_is_refused() {
        let e = error_of(&GOOD.replace("linux-image-amd64", "linux-image-cloud-amd64"));
        assert!(e.contains("AHCI"), "{e}");
    }

    #[test]
    fn package_names_follow_debian_policy() {
        assert!(check_package("linux-image-amd64").is_ok());
        assert!(check_package("lua5.4").is_ok());
        assert!(check_package("g++").is_ok());
        assert!(check_package("jitsi-meet=2.0.9955-1").is_ok());
        assert!(check_package("Bad_Name").is_err());
        assert!(check_package("x").is_err());
        assert!(check_package("a b").is_err());
    }

    #[test]
    fn repositories_need_a_full_fingerprint_and_a_sane_layout() {
        let repo = |fpr: &str, suite: &str, comps: &str| {
            format!(
                "{GOOD}\n[[repository]]\nname = \"jitsi\"\nurl = \"https://download.jitsi.org\"\nsuite = \"{suite}\"\ncomponents = [{comps}]\nkey = \"https://download.jitsi.org/jitsi-key.gpg.key\"\nfingerprint = \"{fpr}\"\nbake = [\"jitsi-meet\"]\n"
            )
        };
        let full = "ffd6 5a0d a2be bdeb 73d4 4c8b b4d2 d216 f1fd 7806";
        let r = parse(&repo(full, "stable/", "")).unwrap();
        assert_eq!(
            r.repositories[0].fingerprint,
            "FFD65A0DA2BEBDEB73D44C8BB4D2D216F1FD7806"
        );
        assert_eq!(r.repositories[0].bake, ["jitsi-meet"]);

        let e = error_of(&repo("B4D2D216F1FD7806", "stable/", ""));
        assert!(e.contains("repository[0].fingerprint"), "{e}");
        let e = error_of(&repo(full, "stable/", "\"main\""));
        assert!(e.contains("repository[0].components"), "{e}");
        let e = error_of(&repo(full, "bookworm", ""));
        assert!(e.contains("repository[0].components"), "{e}");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("3GiB").unwrap(), 3 << 30);
        assert_eq!(parse_size("2560MiB").unwrap(), 2560 << 20);
        assert_eq!(parse_size("4G").unwrap(), 4 << 30);
        assert!(parse_size("3 gigabytes").is_err());
        assert!(parse_size("GiB").is_err());
        assert!(parse_size("99999999999T").is_err());
        assert!(error_of(&GOOD.replace("2GiB", "512MiB")).contains("out of range"));
    }

    #[test]
    fn overlays_must_exist() {
        let e = error_of(&GOOD.replace("[disk]", "overlays = [\"no/such/dir\"]\n[disk]"));
        assert!(e.contains("overlays") && e.contains("no/such/dir"), "{e}");
    }
}
