//! Shared helpers for the export tests (included with `#[path]` by each
//! `tests/export_*.rs`): a synthetic raw disk, host tool checks, and running
//! qemu-img independently of the code under test.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use balcao::export::{Appliance, Firmware};

pub const MIB: u64 = 1 << 20;

/// Fails the test with the package to install when a host tool is missing.
pub fn require(program: &str, package: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "this test needs `{program}`: install it with `apt-get install {package}`"
    );
}

pub fn require_qemu_img() {
    require("qemu-img", "qemu-utils");
}

/// Runs a command and returns its stdout; panics with its output on failure.
pub fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
    assert!(
        out.status.success(),
        "`{program} {}` failed ({}):\n{}{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `qemu-img compare -f raw -F driver raw image`, run by the test itself.
pub fn qemu_compare(raw: &Path, driver: &str, image: &Path) {
    let out = run(
        "qemu-img",
        &["compare", "-f", "raw", "-F", driver, s(raw), s(image)],
    );
    assert!(out.contains("Images are identical"), "{out}");
}

pub fn qemu_info(driver: &str, image: &Path) -> serde_json::Value {
    let out = run(
        "qemu-img",
        &["info", "--output=json", "-f", driver, s(image)],
    );
    serde_json::from_str(&out).expect("qemu-img info prints JSON")
}

pub fn s(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}

/// A sparse raw disk of `size` bytes: zeros, with pseudo-random data at a few
/// offsets (one at the start, one straddling grain and MiB boundaries, one in
/// the middle, one ending exactly at the end of the disk).
pub struct SyntheticDisk {
    pub dir: tempfile::TempDir,
    pub raw: PathBuf,
    pub size: u64,
    /// Where data was written: (offset, length).
    pub extents: Vec<(u64, u64)>,
}

pub fn synthetic_disk(size: u64) -> SyntheticDisk {
    use std::io::{Seek, SeekFrom, Write};
    assert!(size >= 48 * MIB);
    let dir = tempfile::tempdir().expect("temp dir");
    let raw = dir.path().join("disk.raw");
    let mut file = std::fs::File::create(&raw).unwrap();
    file.set_len(size).unwrap();
    let extents = vec![
        (0, MIB),
        (10 * MIB - 12_345, 2 * MIB + 777),
        (40 * MIB + 65_536 * 3 + 17, 700 * 1024),
        (size - 100_000, 100_000),
    ];
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    for &(offset, len) in &extents {
        let mut data = vec![0u8; len as usize];
        for chunk in data.chunks_mut(8) {
            // xorshift64: cheap, deterministic, not compressible to nothing.
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let bytes = rng.to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
        file.seek(SeekFrom::Start(offset)).unwrap();
        file.write_all(&data).unwrap();
    }
    file.sync_all().unwrap();
    SyntheticDisk {
        dir,
        raw,
        size,
        extents,
    }
}

pub fn appliance(firmware: Firmware) -> Appliance {
    Appliance {
        name: "balcao".into(),
        version: "0.1.0".into(),
        description: "Balcão Virtual <teste> & \"aspas\"".into(),
        cpus: 2,
        memory_mib: 4096,
        firmware,
    }
}

/// The names in a folder, sorted (hidden files included).
pub fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}
