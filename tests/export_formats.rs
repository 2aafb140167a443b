//! Every format exported from a synthetic disk, then checked by the test
//! itself (independently of the export's own checks): `qemu-img compare`
//! against the raw disk, `qemu-img check`, and each format's size rules.
//! Needs qemu-utils and tar.

#[path = "export_support.rs"]
mod support;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use balcao::export::{self, Firmware, Format, VhdFooter};
use support::*;

const GIB: u64 = 1 << 30;

/// Exports `disk` to every format into a fresh folder; returns the folder and
/// the paths by format.
fn export_all(disk: &SyntheticDisk) -> (tempfile::TempDir, Vec<(Format, PathBuf)>) {
    require_qemu_img();
    let out = tempfile::tempdir().unwrap();
    let appliance = appliance(Firmware::Efi);
    let mut paths = Vec::new();
    for format in Format::ALL {
        let started = Instant::now();
        let path = export::export(&disk.raw, format, out.path(), &appliance)
            .unwrap_or_else(|e| panic!("exporting {format} failed: {e}"));
        eprintln!(
            "timing: {format} of a {} byte disk in {:.2}s -> {} bytes",
            disk.size,
            started.elapsed().as_secs_f64(),
            std::fs::metadata(&path).unwrap().len()
        );
        assert_eq!(
            path.file_name().unwrap().to_str().unwrap(),
            format.file_name(&appliance)
        );
        paths.push((format, path));
    }
    (out, paths)
}

fn path_of(paths: &[(Format, PathBuf)], format: Format) -> &Path {
    &paths.iter().find(|(f, _)| *f == format).unwrap().1
}

fn check_all(disk: &SyntheticDisk) {
    let (out, paths) = export_all(disk);

    // Only the published files remain: no temporary leftovers.
    let mut expected: Vec<String> = Format::ALL
        .iter()
        .map(|f| f.file_name(&appliance(Firmware::Efi)))
        .collect();
    expected.sort();
    assert_eq!(listing(out.path()), expected);

    // Published files are readable by everyone.
    for (_, path) in &paths {
        let mode = std::fs::metadata(path).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o644, "{}", path.display());
    }

    raw_is_a_sparse_copy(disk, path_of(&paths, Format::Raw));
    qcow2_is_compressed_and_clean(disk, path_of(&paths, Format::Qcow2));
    vhdx_is_dynamic_and_clean(disk, path_of(&paths, Format::Vhdx));
    vhd_is_fixed_and_whole_mib(disk, path_of(&paths, Format::Vhd));
    vmdk_is_stream_optimized(disk, path_of(&paths, Format::Vmdk));
    gce_holds_only_disk_raw_of_whole_gib(disk, path_of(&paths, Format::Gce), out.path());
    ova_disk_matches(disk, path_of(&paths, Format::Ova), out.path());
}

fn raw_is_a_sparse_copy(disk: &SyntheticDisk, path: &Path) {
    qemu_compare(&disk.raw, "raw", path);
    let meta = std::fs::metadata(path).unwrap();
    assert_eq!(meta.len(), disk.size);
    assert_eq!(
        std::fs::read(path).unwrap(),
        std::fs::read(&disk.raw).unwrap()
    );
    let data: u64 = disk.extents.iter().map(|e| e.1).sum();
    let allocated = meta.blocks() * 512;
    // Holes where the disk is zero: allocation is the data plus at most one
    // 64 KiB block of slack around each data extent.
    assert!(
        allocated <= data + disk.extents.len() as u64 * 2 * 65536,
        "raw copy allocates {allocated} bytes for {data} bytes of data"
    );
}

fn qcow2_is_compressed_and_clean(disk: &SyntheticDisk, path: &Path) {
    run("qemu-img", &["check", "-f", "qcow2", s(path)]);
    qemu_compare(&disk.raw, "qcow2", path);
    let info = qemu_info("qcow2", path);
    assert_eq!(info["virtual-size"].as_u64(), Some(disk.size));
    // Random data does not compress, but the file must not be much bigger
    // than the data: zeros are not stored.
    let data: u64 = disk.extents.iter().map(|e| e.1).sum();
    let len = std::fs::metadata(path).unwrap().len();
    assert!(
        len < data + 2 * MIB,
        "qcow2 is {len} bytes for {data} of data"
    );
}

fn vhdx_is_dynamic_and_clean(disk: &SyntheticDisk, path: &Path) {
    run("qemu-img", &["check", "-f", "vhdx", s(path)]);
    qemu_compare(&disk.raw, "vhdx", path);
    let info = qemu_info("vhdx", path);
    assert_eq!(info["virtual-size"].as_u64(), Some(disk.size));
    let head = std::fs::read(path).unwrap();
    assert_eq!(&head[..8], b"vhdxfile");
    assert!(
        (head.len() as u64) < disk.size,
        "a dynamic VHDX is smaller than the disk"
    );
}

fn vhd_is_fixed_and_whole_mib(disk: &SyntheticDisk, path: &Path) {
    let size = disk.size.div_ceil(MIB) * MIB;
    let footer = VhdFooter::read(path).unwrap();
    footer.check_azure(size).unwrap();
    assert_eq!(&footer.cookie, b"conectix");
    assert_eq!(footer.disk_type, 2);
    assert_eq!(footer.current_size % MIB, 0);
    assert_eq!(std::fs::metadata(path).unwrap().len(), size + 512);
    assert_eq!(qemu_info("vpc", path)["virtual-size"].as_u64(), Some(size));
    qemu_compare(&disk.raw, "vpc", path);
}

fn vmdk_is_stream_optimized(disk: &SyntheticDisk, path: &Path) {
    run("qemu-img", &["check", "-f", "vmdk", s(path)]);
    qemu_compare(&disk.raw, "vmdk", path);
    let info = qemu_info("vmdk", path);
    assert_eq!(
        info["format-specific"]["data"]["create-type"].as_str(),
        Some("streamOptimized"),
        "{info}"
    );
    assert_eq!(
        info["format-specific"]["data"]["extents"][0]["compressed"].as_bool(),
        Some(true),
        "{info}"
    );
    assert_eq!(
        info["virtual-size"].as_u64(),
        Some(disk.size.div_ceil(512) * 512)
    );
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..4], b"KDMV");
    assert_eq!(bytes.len() % 512, 0);
}

fn gce_holds_only_disk_raw_of_whole_gib(disk: &SyntheticDisk, path: &Path, scratch: &Path) {
    require("tar", "tar");
    // GNU tar's own listing: one member, disk.raw, regular, whole GiB.
    let listing = run("tar", &["--list", "--verbose", "--gzip", "--file", s(path)]);
    let lines: Vec<&str> = listing.lines().collect();
    assert_eq!(lines.len(), 1, "{listing}");
    assert!(lines[0].starts_with("-rw-r--r--"), "{listing}");
    assert!(lines[0].ends_with(" disk.raw"), "{listing}");
    let size = disk.size.div_ceil(GIB) * GIB;
    assert!(lines[0].contains(&format!(" {size} ")), "{listing}");

    // Unpacked by GNU tar, the member is the raw disk plus zeros.
    let dir = scratch.join("gce-unpacked");
    std::fs::create_dir(&dir).unwrap();
    run(
        "tar",
        &[
            "--extract",
            "--gzip",
            "--file",
            s(path),
            "--directory",
            s(&dir),
        ],
    );
    let member = dir.join("disk.raw");
    assert_eq!(std::fs::metadata(&member).unwrap().len(), size);
    assert_eq!(size % GIB, 0);
    qemu_compare(&disk.raw, "raw", &member);
    std::fs::remove_dir_all(&dir).unwrap();
}

fn ova_disk_matches(disk: &SyntheticDisk, path: &Path, scratch: &Path) {
    let vmdk = scratch.join("from-ova.vmdk");
    let name = export::extract_ova_disk(path, &vmdk).unwrap();
    assert_eq!(name, "balcao-0.1.0-disk1.vmdk");
    run("qemu-img", &["check", "-f", "vmdk", s(&vmdk)]);
    qemu_compare(&disk.raw, "vmdk", &vmdk);
    std::fs::remove_file(&vmdk).unwrap();
}

#[test]
fn every_format_of_a_64_mib_disk_matches_the_raw_disk() {
    let disk = synthetic_disk(64 * MIB);
    check_all(&disk);
}

#[test]
fn every_format_of_a_disk_that_is_not_whole_mib() {
    // 64 MiB + 7 sectors: VHD rounds up to 65 MiB, the VMDK keeps the exact
    // sector count with a padded last grain, GCE rounds up to 1 GiB.
    let disk = synthetic_disk(64 * MIB + 7 * 512);
    check_all(&disk);
}

/// Timings on a larger disk (2 GiB, 320 MiB of half-compressible data), for
/// a person to read: `cargo test --release --test export_formats
/// timings_of_a_2_gib_disk -- --ignored --nocapture`.
#[test]
#[ignore]
fn timings_of_a_2_gib_disk() {
    use std::io::{Seek, SeekFrom, Write};
    require_qemu_img();
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("disk.raw");
    let mut file = std::fs::File::create(&raw).unwrap();
    file.set_len(2 * GIB).unwrap();
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    for start in [0, 300 * MIB, 1024 * MIB, 2 * GIB - 64 * MIB] {
        let mut data = vec![0u8; 80 * MIB as usize];
        for chunk in data.chunks_mut(8) {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            // Half the bits random, half fixed: compresses to about half.
            let v = rng & 0x0f0f_0f0f_0f0f_0f0f | 0x4040_4040_4040_4040;
            chunk.copy_from_slice(&v.to_le_bytes()[..chunk.len()]);
        }
        file.seek(SeekFrom::Start(start.min(2 * GIB - 80 * MIB)))
            .unwrap();
        file.write_all(&data).unwrap();
    }
    drop(file);
    let out = tempfile::tempdir().unwrap();
    for format in Format::ALL {
        let started = Instant::now();
        let path = export::export(&raw, format, out.path(), &appliance(Firmware::Efi)).unwrap();
        eprintln!(
            "timing: {format} of a 2 GiB disk (320 MiB data) in {:.1}s -> {} bytes",
            started.elapsed().as_secs_f64(),
            std::fs::metadata(&path).unwrap().len()
        );
    }
}

/// Reproducible exports: the same disk exported twice, a second apart, gives
/// the same bytes in every format (qemu-img's random VHD/VHDX identities and
/// times are replaced by derived ones).
#[test]
fn the_same_disk_exports_to_the_same_bytes_in_every_format() {
    let disk = synthetic_disk(64 * MIB);
    let (first, a) = export_all(&disk);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let (second, b) = export_all(&disk);
    for ((format, pa), (_, pb)) in a.iter().zip(&b) {
        assert_eq!(
            balcao::build::reproducible::first_difference(pa, pb).unwrap(),
            None,
            "{format} differs between two exports of the same disk"
        );
    }
    drop((first, second));
}
