//! Byte-level checks of the stream-optimized VMDK, with a reader written here
//! from the VMDK 5.0 layout (not the writer's code): header, embedded
//! descriptor, grain markers in order, grain tables and directory behind their
//! markers, footer, end-of-stream marker. The stream is read front to back the
//! way ESXi's import does, and the disk rebuilt from it must equal the raw one.

#[path = "export_support.rs"]
mod support;

use std::io::Read;

use balcao::export::{self, Firmware, Format};
use support::*;

const SECTOR: usize = 512;
const GRAIN: usize = 64 * 1024;

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}
fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

struct Header {
    capacity: u64,
    gd_offset: u64,
    overhead: u64,
    raw: Vec<u8>,
}

fn header(b: &[u8]) -> Header {
    assert_eq!(&b[0..4], b"KDMV", "magic");
    assert_eq!(le32(b, 4), 3, "version 3 (stream)");
    let flags = le32(b, 8);
    assert_eq!(flags & 1, 1, "newline detector flag");
    assert_ne!(flags & (1 << 16), 0, "compressed flag");
    assert_ne!(flags & (1 << 17), 0, "markers flag");
    assert_eq!(le64(b, 20), 128, "grain size");
    assert_eq!(le64(b, 28), 1, "descriptor offset");
    assert!(le64(b, 36) >= 1, "descriptor size");
    assert_eq!(le32(b, 44), 512, "GTEs per GT");
    assert_eq!(le64(b, 48), 0, "no redundant directory");
    assert_eq!(b[72], 0, "clean shutdown");
    assert_eq!(&b[73..77], b"\n \r\n", "newline detector");
    assert_eq!(u16::from_le_bytes([b[77], b[78]]), 1, "deflate");
    Header {
        capacity: le64(b, 12),
        gd_offset: le64(b, 56),
        overhead: le64(b, 64),
        raw: b[..SECTOR].to_vec(),
    }
}

#[test]
fn stream_layout_rebuilds_the_raw_disk() {
    require_qemu_img();
    // Not a whole number of grains: the last grain is padded.
    let disk = synthetic_disk(48 * MIB + 3 * 512);
    let out = tempfile::tempdir().unwrap();
    let path = export::export(
        &disk.raw,
        Format::Vmdk,
        out.path(),
        &appliance(Firmware::Efi),
    )
    .unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let raw = std::fs::read(&disk.raw).unwrap();
    assert_eq!(bytes.len() % SECTOR, 0);

    // Leading header: directory "at the end".
    let head = header(&bytes[..SECTOR]);
    assert_eq!(head.gd_offset, u64::MAX, "GD_AT_END in the leading header");
    assert_eq!(head.capacity, disk.size.div_ceil(512));

    // Embedded descriptor.
    let desc_len = le64(&bytes, 36) as usize * SECTOR;
    let desc = String::from_utf8_lossy(&bytes[SECTOR..SECTOR + desc_len]);
    let desc = desc.trim_end_matches('\0');
    for line in [
        "# Disk DescriptorFile",
        "version=1",
        "parentCID=ffffffff",
        "createType=\"streamOptimized\"",
        &format!("RW {} SPARSE \"balcao-0.1.0.vmdk\"", head.capacity),
        "ddb.adapterType = \"ide\"",
        "ddb.toolsVersion = \"12352\"",
        "ddb.toolsInstallType = \"4\"",
    ] {
        assert!(
            desc.lines().any(|l| l == line),
            "descriptor lacks {line:?}:\n{desc}"
        );
    }
    let cid = desc.lines().find_map(|l| l.strip_prefix("CID=")).unwrap();
    assert_eq!(cid.len(), 8);
    assert!(cid != "ffffffff" && cid != "fffffffe");

    // Walk the stream from the first grain to the end-of-stream marker.
    let mut rebuilt = vec![0u8; (head.capacity as usize) * SECTOR];
    let mut grain_at = std::collections::BTreeMap::new(); // lba -> sector
    let mut tables = Vec::new(); // sector of each grain table payload
    let mut directory = None;
    let mut footer = None;
    let mut at = head.overhead as usize;
    let mut last_lba = None;
    let end = loop {
        let m = &bytes[at * SECTOR..];
        let val = le64(m, 0);
        let size = le32(m, 8) as usize;
        if size > 0 {
            // Grain marker: LBA, compressed length, zlib data.
            assert_eq!(val % 128, 0, "grain LBA on a grain boundary");
            assert!(last_lba.is_none_or(|l| val > l), "grains in LBA order");
            last_lba = Some(val);
            let mut plain = Vec::new();
            flate2::read::ZlibDecoder::new(&m[12..12 + size])
                .read_to_end(&mut plain)
                .unwrap();
            assert_eq!(plain.len(), GRAIN, "whole grains");
            assert!(
                plain.iter().any(|&b| b != 0),
                "an all-zero grain was written"
            );
            let start = val as usize * SECTOR;
            let len = GRAIN.min(rebuilt.len() - start);
            rebuilt[start..start + len].copy_from_slice(&plain[..len]);
            assert!(
                plain[len..].iter().all(|&b| b == 0),
                "padding past the disk end"
            );
            grain_at.insert(val, at as u32);
            at += (12 + size).div_ceil(SECTOR);
            continue;
        }
        let kind = le32(m, 12);
        assert!(
            m[16..SECTOR].iter().all(|&b| b == 0),
            "marker sector padding"
        );
        match kind {
            0 => {
                assert_eq!(val, 0);
                break at;
            }
            1 => {
                assert_eq!(val, 4, "a grain table is 4 sectors");
                tables.push(at + 1);
            }
            2 => directory = Some((at + 1, val as usize)),
            3 => {
                assert_eq!(val, 1);
                footer = Some(header(&bytes[(at + 1) * SECTOR..(at + 2) * SECTOR]));
            }
            other => panic!("unknown marker type {other} at sector {at}"),
        }
        at += 1 + val as usize;
    };
    assert_eq!(end * SECTOR + SECTOR, bytes.len(), "EOS is the last sector");
    assert_eq!(
        rebuilt[..raw.len()],
        raw[..],
        "stream content equals the raw disk"
    );

    // Footer: the header again, with the real directory offset; it sits right
    // before EOS, its marker right before it.
    let footer = footer.expect("footer present");
    assert_eq!(footer.gd_offset as usize, directory.unwrap().0);
    let mut same = footer.raw.clone();
    same[56..64].copy_from_slice(&u64::MAX.to_le_bytes());
    assert_eq!(same, head.raw, "footer = header except gdOffset");
    assert_eq!(
        le32(&bytes, (end - 2) * SECTOR + 12),
        3,
        "footer marker before footer"
    );

    // Directory -> tables -> grains agree with the markers.
    let (gd_at, gd_sectors) = directory.unwrap();
    let grains = (head.capacity as usize).div_ceil(128);
    let gts = grains.div_ceil(512);
    assert_eq!(gd_sectors, (gts * 4).div_ceil(SECTOR));
    let mut referenced = 0;
    for t in 0..gts {
        let gt = le32(&bytes, gd_at * SECTOR + t * 4) as usize;
        if gt == 0 {
            continue;
        }
        assert!(
            tables.contains(&gt),
            "GD entry {t} points at a GT marker's payload"
        );
        for e in 0..512 {
            let sector = le32(&bytes, gt * SECTOR + e * 4);
            if sector == 0 {
                continue;
            }
            let lba = ((t * 512 + e) * 128) as u64;
            assert_eq!(grain_at.get(&lba), Some(&sector), "GT entry for LBA {lba}");
            referenced += 1;
        }
    }
    assert_eq!(referenced, grain_at.len(), "every grain is in a table");

    // Exactly the non-zero grains were written.
    let nonzero = raw
        .chunks(GRAIN)
        .filter(|g| g.iter().any(|&b| b != 0))
        .count();
    assert_eq!(grain_at.len(), nonzero);

    // And qemu agrees.
    run("qemu-img", &["check", "-f", "vmdk", s(&path)]);
    qemu_compare(&disk.raw, "vmdk", &path);
}

#[test]
fn same_disk_same_vmdk() {
    require_qemu_img();
    let disk = synthetic_disk(48 * MIB);
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let app = appliance(Firmware::Bios);
    let pa = export::export(&disk.raw, Format::Vmdk, a.path(), &app).unwrap();
    let pb = export::export(&disk.raw, Format::Vmdk, b.path(), &app).unwrap();
    assert_eq!(
        export::sha256_file(&pa).unwrap(),
        export::sha256_file(&pb).unwrap()
    );
}
