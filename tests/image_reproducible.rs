//! Reproducible, cached and locked builds of recipes/minimal.toml (issue 6),
//! with the real `balcao` binary, as root:
//! - a build from scratch gives the same bytes as the shared build (which
//!   the first image test binary made from scratch into the cache);
//! - changing one overlay file reuses the cached root filesystem and changes
//!   that file only, compared file by file in the two ext4 filesystems;
//! - `--check-reproducible` builds twice and says so;
//! - `balcao lock` records every Debian package, a locked build accepts the
//!   same packages, and an altered digest fails naming the package.

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};
use support::*;

/// Byte offset of the root filesystem in the minimal disk (sector 262144).
const ROOT_OFFSET: u64 = 262_144 * 512;

fn balcao(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_balcao"))
        .args(args)
        .env("SOURCE_DATE_EPOCH", TEST_EPOCH)
        .output()
        .expect("running balcao")
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn a_build_from_scratch_repeats_the_shared_build_byte_for_byte() {
    let shared = minimal();
    let out = test_dir().join("minimal-again");
    let _ = fs::remove_dir_all(&out);
    build(
        &repo().join("recipes/minimal.toml"),
        &out,
        "raw,qcow2",
        &["--no-cache"],
    );
    for name in [
        "minimal-0.1.0.raw",
        "minimal-0.1.0.qcow2",
        "minimal-0.1.0.packages",
        "SHA256SUMS",
    ] {
        let (a, b) = (shared.join(name), out.join(name));
        let first = balcao::build::reproducible::first_difference(&a, &b).unwrap();
        assert_eq!(first, None, "{name} differs between two builds");
    }
    fs::remove_dir_all(&out).unwrap();
}

/// Every file of the root filesystem of a raw image: path -> (content
/// digest or link target, mode, owner, size, mtime).
fn tree(raw: &Path, into: &Path) -> BTreeMap<String, String> {
    fs::create_dir_all(into).unwrap();
    run(Command::new("debugfs")
        .args(["-R", &format!("rdump / {}", into.display())])
        .arg(format!("{}?offset={ROOT_OFFSET}", raw.display())));
    let mut out = BTreeMap::new();
    let mut pending = vec![into.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = fs::symlink_metadata(&path).unwrap();
            let what = if meta.file_type().is_symlink() {
                format!("link {}", fs::read_link(&path).unwrap().display())
            } else if meta.is_dir() {
                pending.push(path.clone());
                "dir".to_owned()
            } else if meta.is_file() {
                hex(&Sha256::digest(fs::read(&path).unwrap()))
            } else {
                format!("special {}", meta.rdev())
            };
            // debugfs cannot set a symbolic link's own times: those show the
            // moment of the dump, so they are left out.
            let mtime = if meta.file_type().is_symlink() {
                String::new()
            } else {
                meta.mtime().to_string()
            };
            let key = path.strip_prefix(into).unwrap().display().to_string();
            out.insert(
                key,
                format!(
                    "{what} {:o} {}:{} {} {mtime}",
                    meta.mode(),
                    meta.uid(),
                    meta.gid(),
                    meta.len(),
                ),
            );
        }
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn changing_one_overlay_file_reuses_the_root_and_changes_only_that_file() {
    let shared = minimal();
    let work = tempfile::tempdir_in(test_dir()).unwrap();
    // A copy of the recipe beside a copy of the overlays it names.
    fs::create_dir_all(work.path().join("recipes")).unwrap();
    fs::copy(
        repo().join("recipes/minimal.toml"),
        work.path().join("recipes/minimal.toml"),
    )
    .unwrap();
    run(Command::new("cp")
        .arg("-a")
        .arg(repo().join("overlays"))
        .arg(work.path()));
    let changed = "etc/issue.d/balcao.issue";
    let file = work.path().join("overlays/base").join(changed);
    let mut content =
        fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    content.push_str("Changed for the cache test.\n");
    fs::write(&file, content).unwrap();

    let out = work.path().join("out");
    let stdout = build(&work.path().join("recipes/minimal.toml"), &out, "raw", &[]);
    assert!(
        !stdout.contains("root filesystem "),
        "the root filesystem was made again instead of coming from the cache:\n{stdout}"
    );

    let before = tree(&shared.join("minimal-0.1.0.raw"), &work.path().join("a"));
    let after = tree(&out.join("minimal-0.1.0.raw"), &work.path().join("b"));
    assert!(
        before.len() > 10_000,
        "only {} files in the image",
        before.len()
    );
    let differing: Vec<&String> = before
        .keys()
        .chain(after.keys())
        .filter(|k| before.get(*k) != after.get(*k))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert!(
        differing.len() == 1 && differing[0] == changed,
        "{} files differ, the first: {:?}",
        differing.len(),
        &differing[..differing.len().min(20)]
    );
}

#[test]
fn check_reproducible_builds_twice_and_finds_them_identical() {
    let _ = minimal(); // the cache is filled
    let out = test_dir().join("minimal-check");
    let _ = fs::remove_dir_all(&out);
    let run = balcao(&[
        "build",
        path_str(&repo().join("recipes/minimal.toml")),
        "--out",
        path_str(&out),
        "--format",
        "raw",
        "--balcaoctl",
        env!("CARGO_BIN_EXE_balcaoctl"),
        "--cache",
        path_str(&test_dir().join("cache")),
        "--check-reproducible",
    ]);
    let said = text(&run);
    assert!(run.status.success(), "{said}");
    assert!(
        said.contains("reproducible: both builds of minimal-0.1.0 are identical"),
        "{said}"
    );
    assert!(out.join("minimal-0.1.0.raw").is_file());
    assert!(
        !out.join(".reproducible").exists(),
        "both builds are kept only when they differ"
    );
    fs::remove_dir_all(&out).unwrap();
}

fn lock_entries(lock: &Path) -> Vec<toml::Value> {
    let value: toml::Value = toml::from_str(&fs::read_to_string(lock).unwrap()).unwrap();
    value["debian"].as_array().unwrap().clone()
}

#[test]
fn lock_records_every_package_and_a_locked_build_holds_to_it() {
    let shared = minimal();
    let work = tempfile::tempdir_in(test_dir()).unwrap();
    let lock: PathBuf = work.path().join("minimal.lock");
    let recipe = repo().join("recipes/minimal.toml");
    let cache = test_dir().join("cache");
    let made = balcao(&[
        "lock",
        path_str(&recipe),
        "--lockfile",
        path_str(&lock),
        "--cache",
        path_str(&cache),
    ]);
    assert!(made.status.success(), "{}", text(&made));

    // Every package of the image's manifest, at its version, with a digest.
    let entries = lock_entries(&lock);
    let manifest = fs::read_to_string(shared.join("minimal-0.1.0.packages")).unwrap();
    assert_eq!(
        entries.len(),
        manifest.lines().count(),
        "one entry per installed package"
    );
    for line in manifest.lines() {
        let mut fields = line.split('\t');
        let (name, version) = (fields.next().unwrap(), fields.next().unwrap());
        let entry = entries
            .iter()
            .find(|e| e["name"].as_str() == Some(name))
            .unwrap_or_else(|| panic!("{name} is not in the lockfile"));
        assert_eq!(entry["version"].as_str(), Some(version), "{name}");
        let sha = entry["sha256"].as_str().unwrap();
        assert!(
            sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit()),
            "{name}: {sha}"
        );
    }

    // A locked build with the same packages goes through.
    let out = work.path().join("out");
    let locked = build(&recipe, &out, "raw", &["--lockfile", path_str(&lock)]);
    assert!(out.join("minimal-0.1.0.raw").is_file(), "{locked}");

    // An altered digest: the build stops, names the package, makes nothing.
    let text_before = fs::read_to_string(&lock).unwrap();
    let kernel = entries
        .iter()
        .find(|e| {
            e["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("linux-image-6"))
        })
        .expect("a kernel package in the lockfile");
    let (name, sha) = (
        kernel["name"].as_str().unwrap(),
        kernel["sha256"].as_str().unwrap(),
    );
    let forged = "0".repeat(64);
    fs::write(&lock, text_before.replace(sha, &forged)).unwrap();
    let out2 = work.path().join("out2");
    let refused = balcao(&[
        "build",
        path_str(&recipe),
        "--out",
        path_str(&out2),
        "--format",
        "raw",
        "--balcaoctl",
        env!("CARGO_BIN_EXE_balcaoctl"),
        "--cache",
        path_str(&cache),
        "--lockfile",
        path_str(&lock),
    ]);
    let said = text(&refused);
    assert!(!refused.status.success(), "{said}");
    assert!(said.contains(&format!("{name}: same version")), "{said}");
    assert!(said.contains("balcao lock"), "{said}");
    let left: Vec<_> = fs::read_dir(&out2)
        .map(|d| d.flatten().collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "a refused build left {left:?}");
}
