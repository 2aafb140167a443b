//! The GUID partition table: the layout of the appliance's disk and the bytes
//! of the protective MBR, both GPT headers and both entry arrays (UEFI spec
//! 2.10, section 5.3), written straight into the disk image file.

use std::fmt;
use std::fs::File;
use std::io::{Seek, SeekFrom, Write};

use sha2::{Digest, Sha256};

use super::SECTOR;

/// Partition type GUIDs (UEFI spec; the BIOS boot one is GRUB's).
pub const TYPE_BIOS_BOOT: &str = "21686148-6449-6E6F-744E-656564454649";
pub const TYPE_EFI_SYSTEM: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";
pub const TYPE_LINUX_FS: &str = "0FC63DAF-8483-4772-8E79-3D69D8477DE4";

/// The GPT's entry array: 128 entries of 128 bytes, 32 sectors.
const ENTRIES: u64 = 128;
const ENTRY_SIZE: u64 = 128;
const ENTRY_SECTORS: u64 = ENTRIES * ENTRY_SIZE / SECTOR;

/// A GUID as written in text; stored on disk in the mixed-endian form.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Guid([u8; 16]);

impl Guid {
    /// Parses `XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX`.
    pub fn parse(text: &str) -> Option<Guid> {
        let hex: String = text.chars().filter(|&c| c != '-').collect();
        if hex.len() != 32 || text.len() != 36 {
            return None;
        }
        let mut bytes = [0u8; 16];
        hex::decode_to_slice(&hex, &mut bytes).ok()?;
        Some(Guid(bytes))
    }

    /// A version-4-shaped GUID derived from `seed`, so that the same recipe
    /// always gives the same disk and filesystem identifiers.
    pub fn derived(seed: &[&str]) -> Guid {
        let mut hasher = Sha256::new();
        for part in seed {
            hasher.update(part.as_bytes());
            hasher.update([0]);
        }
        let digest = hasher.finalize();
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        bytes[6] = (bytes[6] & 0x0f) | 0x40;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        Guid(bytes)
    }

    /// The on-disk form: the first three fields little-endian.
    pub fn to_disk_bytes(self) -> [u8; 16] {
        let b = self.0;
        let mut out = b;
        out[0..4].copy_from_slice(&[b[3], b[2], b[1], b[0]]);
        out[4..6].copy_from_slice(&[b[5], b[4]]);
        out[6..8].copy_from_slice(&[b[7], b[6]]);
        out
    }

    /// The first 32 bits, for FAT volume ids.
    pub fn short_id(self) -> u32 {
        u32::from_be_bytes([self.0[0], self.0[1], self.0[2], self.0[3]])
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let h = hex::encode(self.0);
        write!(
            f,
            "{}-{}-{}-{}-{}",
            &h[0..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        )
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// One partition: its GPT number, type, own GUID and inclusive sector range.
#[derive(Debug, Clone)]
pub struct Partition {
    pub number: u32,
    pub name: &'static str,
    pub type_guid: Guid,
    pub guid: Guid,
    pub first_lba: u64,
    pub last_lba: u64,
}

impl Partition {
    pub fn offset(&self) -> u64 {
        self.first_lba * SECTOR
    }
    pub fn size(&self) -> u64 {
        (self.last_lba - self.first_lba + 1) * SECTOR
    }
}

/// The whole disk: its size, GUID and partitions.
#[derive(Debug, Clone)]
pub struct Layout {
    pub disk_bytes: u64,
    pub disk_guid: Guid,
    pub bios_boot: Partition,
    pub esp: Partition,
    pub root: Partition,
}

#[derive(Debug, thiserror::Error)]
pub enum GptError {
    #[error("a disk of {0} bytes is too small or not a whole number of sectors")]
    BadSize(u64),
    #[error("writing the partition table: {0}")]
    Io(#[from] std::io::Error),
}

impl Layout {
    /// Debian's cloud-image layout: BIOS boot at sectors 2048-8191 (partition
    /// 14), EFI system at 8192-262143 (15, 124 MiB), root from 262144 to the
    /// last usable sector (1). `seed` makes the GUIDs (usually the recipe's
    /// name and version).
    pub fn cloud(disk_bytes: u64, seed: &str) -> Result<Layout, GptError> {
        let sectors = disk_bytes / SECTOR;
        if disk_bytes % SECTOR != 0 || sectors < 262_144 + 2048 + 34 {
            return Err(GptError::BadSize(disk_bytes));
        }
        let last_usable = sectors - 1 - ENTRY_SECTORS - 1;
        let guid = |what: &str| Guid::derived(&["balcao-disk", seed, what]);
        let part = |number, name, type_guid: &str, first_lba, last_lba| Partition {
            number,
            name,
            type_guid: Guid::parse(type_guid).expect("constant GUID"),
            guid: guid(name),
            first_lba,
            last_lba,
        };
        Ok(Layout {
            disk_bytes,
            disk_guid: guid("disk"),
            bios_boot: part(14, "BIOS boot", TYPE_BIOS_BOOT, 2048, 8191),
            esp: part(15, "EFI system", TYPE_EFI_SYSTEM, 8192, 262_143),
            root: part(1, "root", TYPE_LINUX_FS, 262_144, last_usable),
        })
    }

    fn partitions(&self) -> [&Partition; 3] {
        [&self.root, &self.bios_boot, &self.esp]
    }

    fn last_lba(&self) -> u64 {
        self.disk_bytes / SECTOR - 1
    }

    /// The protective MBR: one partition of type 0xEE covering the disk.
    pub fn protective_mbr(&self) -> [u8; 512] {
        let mut mbr = [0u8; 512];
        let entry = &mut mbr[0x1BE..0x1CE];
        entry[0] = 0x00; // not bootable
        entry[1..4].copy_from_slice(&[0x00, 0x02, 0x00]); // CHS of LBA 1
        entry[4] = 0xEE;
        entry[5..8].copy_from_slice(&[0xFF, 0xFF, 0xFF]);
        entry[8..12].copy_from_slice(&1u32.to_le_bytes());
        let size = self.last_lba().min(u32::MAX as u64) as u32;
        entry[12..16].copy_from_slice(&size.to_le_bytes());
        mbr[0x1FE] = 0x55;
        mbr[0x1FF] = 0xAA;
        mbr
    }

    /// The 128-entry partition array, in GPT order of partition numbers.
    pub fn entry_array(&self) -> Vec<u8> {
        let mut array = vec![0u8; (ENTRIES * ENTRY_SIZE) as usize];
        for p in self.partitions() {
            let at = ((p.number - 1) as u64 * ENTRY_SIZE) as usize;
            let e = &mut array[at..at + ENTRY_SIZE as usize];
            e[0..16].copy_from_slice(&p.type_guid.to_disk_bytes());
            e[16..32].copy_from_slice(&p.guid.to_disk_bytes());
            e[32..40].copy_from_slice(&p.first_lba.to_le_bytes());
            e[40..48].copy_from_slice(&p.last_lba.to_le_bytes());
            for (i, unit) in p.name.encode_utf16().take(36).enumerate() {
                e[56 + 2 * i..58 + 2 * i].copy_from_slice(&unit.to_le_bytes());
            }
        }
        array
    }

    /// A GPT header sector; `primary` picks which of the two copies.
    pub fn header(&self, primary: bool, entries_crc: u32) -> [u8; 512] {
        let last = self.last_lba();
        let (my_lba, other_lba, entries_lba) = if primary {
            (1, last, 2)
        } else {
            (last, 1, last - ENTRY_SECTORS)
        };
        let mut h = [0u8; 512];
        h[0..8].copy_from_slice(b"EFI PART");
        h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
        h[12..16].copy_from_slice(&92u32.to_le_bytes());
        h[24..32].copy_from_slice(&my_lba.to_le_bytes());
        h[32..40].copy_from_slice(&other_lba.to_le_bytes());
        h[40..48].copy_from_slice(&(2 + ENTRY_SECTORS).to_le_bytes());
        h[48..56].copy_from_slice(&(last - ENTRY_SECTORS - 1).to_le_bytes());
        h[56..72].copy_from_slice(&self.disk_guid.to_disk_bytes());
        h[72..80].copy_from_slice(&entries_lba.to_le_bytes());
        h[80..84].copy_from_slice(&(ENTRIES as u32).to_le_bytes());
        h[84..88].copy_from_slice(&(ENTRY_SIZE as u32).to_le_bytes());
        h[88..92].copy_from_slice(&entries_crc.to_le_bytes());
        let crc = crc32fast::hash(&h[0..92]);
        h[16..20].copy_from_slice(&crc.to_le_bytes());
        h
    }

    /// Writes the protective MBR and both GPT copies into `disk`, which must
    /// already be `disk_bytes` long.
    pub fn write(&self, disk: &mut File) -> Result<(), GptError> {
        let entries = self.entry_array();
        let crc = crc32fast::hash(&entries);
        let last = self.last_lba();
        let put = |disk: &mut File, lba: u64, bytes: &[u8]| -> std::io::Result<()> {
            disk.seek(SeekFrom::Start(lba * SECTOR))?;
            disk.write_all(bytes)
        };
        put(disk, 0, &self.protective_mbr())?;
        put(disk, 1, &self.header(true, crc))?;
        put(disk, 2, &entries)?;
        put(disk, last - ENTRY_SECTORS, &entries)?;
        put(disk, last, &self.header(false, crc))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guids_round_trip_and_use_mixed_endian_on_disk() {
        let g = Guid::parse(TYPE_BIOS_BOOT).unwrap();
        assert_eq!(g.to_string().to_uppercase(), TYPE_BIOS_BOOT);
        // "Hah!IdontNeedEFI" is how the BIOS boot GUID reads on disk.
        assert_eq!(&g.to_disk_bytes(), b"Hah!IdontNeedEFI");
        assert!(Guid::parse("not-a-guid").is_none());
    }

    #[test]
    fn derived_guids_are_stable_version_4_and_distinct() {
        let a = Guid::derived(&["x", "root"]);
        assert_eq!(a, Guid::derived(&["x", "root"]));
        assert_ne!(a, Guid::derived(&["x", "esp"]));
        let text = a.to_string();
        assert_eq!(&text[14..15], "4");
        assert!("89ab".contains(&text[19..20]));
    }

    #[test]
    fn cloud_layout_matches_debian_cloud_images() {
        let l = Layout::cloud(2 << 30, "t").unwrap();
        assert_eq!((l.bios_boot.first_lba, l.bios_boot.last_lba), (2048, 8191));
        assert_eq!((l.esp.first_lba, l.esp.last_lba), (8192, 262_143));
        assert_eq!(l.esp.size(), 124 << 20);
        assert_eq!(l.root.first_lba, 262_144);
        // 33 sectors at the end hold the backup entries and header.
        assert_eq!(l.root.last_lba, (2u64 << 30) / 512 - 34);
        assert!(Layout::cloud(100 << 20, "t").is_err());
        assert!(Layout::cloud((2 << 30) + 1, "t").is_err());
    }

    #[test]
    fn headers_carry_valid_checksums() {
        let l = Layout::cloud(2 << 30, "t").unwrap();
        let entries = l.entry_array();
        let crc = crc32fast::hash(&entries);
        for primary in [true, false] {
            let h = l.header(primary, crc);
            let stored = u32::from_le_bytes(h[16..20].try_into().unwrap());
            let mut zeroed = h;
            zeroed[16..20].fill(0);
            assert_eq!(stored, crc32fast::hash(&zeroed[0..92]));
            assert_eq!(&h[88..92], &crc.to_le_bytes());
        }
        // Partition 1 is root, 14 BIOS boot, 15 ESP.
        assert_eq!(
            &entries[0..16],
            &Guid::parse(TYPE_LINUX_FS).unwrap().to_disk_bytes()
        );
        assert_eq!(&entries[13 * 128..13 * 128 + 16], b"Hah!IdontNeedEFI");
        let mbr = l.protective_mbr();
        assert_eq!(mbr[0x1C2], 0xEE);
        assert_eq!(&mbr[0x1FE..], &[0x55, 0xAA]);
    }

    #[test]
    fn sgdisk_reads_what_we_write() {
        if crate::command::find_program("sgdisk").is_none() {
            panic!("sgdisk is missing: apt-get install gdisk");
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk.raw");
        let mut f = File::create(&path).unwrap();
        f.set_len(1 << 30).unwrap();
        let l = Layout::cloud(1 << 30, "sg").unwrap();
        l.write(&mut f).unwrap();
        drop(f);
        let out = crate::command::Cmd::new("sgdisk")
            .arg("--verify")
            .arg(&path)
            .run()
            .unwrap()
            .stdout_text();
        assert!(out.contains("No problems found"), "{out}");
        let out = crate::command::Cmd::new("sgdisk")
            .args(["-i", "1"])
            .arg(&path)
            .run()
            .unwrap()
            .stdout_text();
        assert!(
            out.contains(&l.root.guid.to_string().to_uppercase()),
            "{out}"
        );
        assert!(out.contains("First sector: 262144"), "{out}");
    }
}
