//! Fixed identities for the VHD and VHDX files qemu-img writes. qemu-img
//! puts a fresh random GUID and the current time in them, so two builds of
//! the same disk would differ; here those fields are replaced by values
//! derived from the appliance's name and version (and `SOURCE_DATE_EPOCH`),
//! and the checksums that cover them are made again.

use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

/// Seconds from 1970 to 2000-01-01, where VHD time starts.
const VHD_EPOCH_OFFSET: u64 = 946_684_800;

/// A version-4-shaped GUID (as 16 bytes) derived from the labels.
pub fn derived_guid(labels: &[&str]) -> [u8; 16] {
    let mut h = Sha256::new();
    for label in labels {
        h.update(label.as_bytes());
        h.update([0]);
    }
    let mut g = [0u8; 16];
    g.copy_from_slice(&h.finalize()[..16]);
    g[7] = (g[7] & 0x0f) | 0x40;
    g[8] = (g[8] & 0x3f) | 0x80;
    g
}

fn read_at(file: &mut std::fs::File, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
    file.seek(SeekFrom::Start(offset))?;
    file.read_exact(buf)
}

fn write_at(file: &mut std::fs::File, offset: u64, buf: &[u8]) -> std::io::Result<()> {
    file.seek(SeekFrom::Start(offset))?;
    file.write_all(buf)
}

/// Sets the fixed VHD's footer time (`epoch`) and unique id, and its checksum.
pub fn stamp_vhd(path: &Path, epoch: u64, unique_id: [u8; 16]) -> std::io::Result<()> {
    let mut file = OpenOptions::new().read(true).write(true).open(path)?;
    let len = file.metadata()?.len();
    let at = len
        .checked_sub(512)
        .ok_or_else(|| std::io::Error::other("shorter than a VHD footer"))?;
    let mut footer = [0u8; 512];
    read_at(&mut file, at, &mut footer)?;
    if &footer[..8] != b"conectix" {
        return Err(std::io::Error::other("no VHD footer (cookie `conectix`)"));
    }
    let vhd_time = epoch.saturating_sub(VHD_EPOCH_OFFSET).min(u32::MAX as u64) as u32;
    footer[24..28].copy_from_slice(&vhd_time.to_be_bytes());
    footer[68..84].copy_from_slice(&unique_id);
    footer[64..68].fill(0);
    let sum: u32 = footer.iter().map(|&b| b as u32).sum();
    footer[64..68].copy_from_slice(&(!sum).to_be_bytes());
    write_at(&mut file, at, &footer)?;
    file.sync_all()
}

/// CRC-32C (Castagnoli), the checksum of VHDX headers and region tables.
pub fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= byte as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

const VHDX_HEADERS: [u64; 2] = [64 << 10, 128 << 10];
const VHDX_REGION_TABLE: u64 = 192 << 10;
/// The metadata region's GUID as stored (8B7CA206-4790-4B9A-B8FE-575F050F886E).
const METADATA_REGION: [u8; 16] = [
    0x06, 0xA2, 0x7C, 0x8B, 0x90, 0x47, 0x9A, 0x4B, 0xB8, 0xFE, 0x57, 0x5F, 0x05, 0x0F, 0x88, 0x6E,
];
/// The Page 83 Data item's GUID as stored (BECA12AB-B2E6-4523-93EF-C309E000C746).
const PAGE_83_ITEM: [u8; 16] = [
    0xAB, 0x12, 0xCA, 0xBE, 0xE6, 0xB2, 0x23, 0x45, 0x93, 0xEF, 0xC3, 0x09, 0xE0, 0x00, 0xC7, 0x46,
];

/// Sets the VHDX's file-write and data-write GUIDs in both headers (with
/// their checksums) and the disk's Page 83 identifier.
pub fn stamp_vhdx(path: &Path, labels: &[&str]) -> std::io::Result<()> {
    let mut file = OpenOptions::new().read(true).write(true).open(path)?;
    let guid = |what: &str| {
        let mut all = labels.to_vec();
        all.push(what);
        derived_guid(&all)
    };
    // qemu-img starts the headers' sequence numbers at a random value; the
    // newer header (the higher number) stays the newer one, numbered 2.
    let mut headers = Vec::new();
    for at in VHDX_HEADERS {
        let mut header = vec![0u8; 4096];
        read_at(&mut file, at, &mut header)?;
        if &header[..4] != b"head" {
            return Err(std::io::Error::other(format!("no VHDX header at {at}")));
        }
        headers.push(header);
    }
    let sequence = |h: &[u8]| u64::from_le_bytes(h[8..16].try_into().expect("8 bytes"));
    let first_is_newer = sequence(&headers[0]) > sequence(&headers[1]);
    // With no log to replay (a zero log GUID), the log area only holds
    // qemu-img's finished entries, stamped with random GUIDs: blank it.
    let current = &headers[if first_is_newer { 0 } else { 1 }];
    if current[48..64].iter().all(|&b| b == 0) {
        let length = u32::from_le_bytes(current[68..72].try_into().expect("4 bytes"));
        let offset = u64::from_le_bytes(current[72..80].try_into().expect("8 bytes"));
        if length > 0 && length <= 1 << 30 && offset >= 1 << 20 {
            write_at(&mut file, offset, &vec![0u8; length as usize])?;
        }
    }
    for (i, (at, mut header)) in VHDX_HEADERS.into_iter().zip(headers).enumerate() {
        let newer = (i == 0) == first_is_newer;
        header[8..16].copy_from_slice(&(if newer { 2u64 } else { 1u64 }).to_le_bytes());
        header[16..32].copy_from_slice(&guid("vhdx file write"));
        header[32..48].copy_from_slice(&guid("vhdx data write"));
        header[4..8].fill(0);
        let sum = crc32c(&header);
        header[4..8].copy_from_slice(&sum.to_le_bytes());
        write_at(&mut file, at, &header)?;
    }

    let mut table = vec![0u8; 64 << 10];
    read_at(&mut file, VHDX_REGION_TABLE, &mut table)?;
    if &table[..4] != b"regi" {
        return Err(std::io::Error::other("no VHDX region table"));
    }
    let count = u32::from_le_bytes(table[8..12].try_into().expect("4 bytes")) as usize;
    let metadata = (0..count.min(2047))
        .map(|i| &table[16 + i * 32..16 + (i + 1) * 32])
        .find(|e| e[..16] == METADATA_REGION)
        .map(|e| u64::from_le_bytes(e[16..24].try_into().expect("8 bytes")))
        .ok_or_else(|| std::io::Error::other("no metadata region in the VHDX"))?;
    let mut meta = vec![0u8; 64 << 10];
    read_at(&mut file, metadata, &mut meta)?;
    if &meta[..8] != b"metadata" {
        return Err(std::io::Error::other("no VHDX metadata table"));
    }
    let items = u16::from_le_bytes([meta[10], meta[11]]) as usize;
    let page83 = (0..items.min(2047))
        .map(|i| &meta[32 + i * 32..32 + (i + 1) * 32])
        .find(|e| e[..16] == PAGE_83_ITEM)
        .map(|e| u32::from_le_bytes(e[16..20].try_into().expect("4 bytes")) as u64)
        .ok_or_else(|| std::io::Error::other("no Page 83 item in the VHDX metadata"))?;
    write_at(&mut file, metadata + page83, &guid("vhdx page 83"))?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_the_standard_check_value() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn guids_follow_their_labels() {
        let a = derived_guid(&["balcao", "1.0"]);
        assert_eq!(a, derived_guid(&["balcao", "1.0"]));
        assert_ne!(a, derived_guid(&["balcao", "1.1"]));
        assert_eq!(a[7] >> 4, 4);
    }

    #[test]
    fn the_vhd_footer_gets_time_id_and_a_valid_checksum() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.vhd");
        let mut footer = [0u8; 512];
        footer[..8].copy_from_slice(b"conectix");
        footer[24..28].copy_from_slice(&12345u32.to_be_bytes());
        let mut bytes = vec![0u8; 4096];
        bytes.extend_from_slice(&footer);
        std::fs::write(&path, &bytes).unwrap();
        stamp_vhd(&path, VHD_EPOCH_OFFSET + 100, [9; 16]).unwrap();
        let got = std::fs::read(&path).unwrap();
        let f = &got[4096..];
        assert_eq!(u32::from_be_bytes(f[24..28].try_into().unwrap()), 100);
        assert_eq!(&f[68..84], &[9; 16]);
        let stored = u32::from_be_bytes(f[64..68].try_into().unwrap());
        let mut copy = f.to_vec();
        copy[64..68].fill(0);
        assert_eq!(!copy.iter().map(|&b| b as u32).sum::<u32>(), stored);
    }
}
