//! BIOS boot: GRUB's `boot.img` in the MBR and its `core.img` in the BIOS boot
//! partition, patched the way `grub-bios-setup` patches them. That tool insists
//! on resolving a real block device, which a plain image file on a build host
//! without loop partitions does not have, so the builder writes the few bytes
//! itself.

use super::SECTOR;

/// Offsets inside `boot.img` (GRUB's `include/grub/i386/pc/boot.h`).
const BPB_START: usize = 0x03;
const BPB_END: usize = 0x5A;
const KERNEL_SECTOR: usize = 0x5C;
const DRIVE_CHECK: usize = 0x66;
/// From here to the end, the MBR keeps the disk's own bytes: the disk
/// signature, the partition table and the 0x55AA mark.
const WINDOWS_NT_MAGIC: usize = 0x1B8;

/// The block list at the end of `core.img`'s first sector (`diskboot.img`):
/// a 64-bit start sector and a 16-bit sector count.
const BLOCKLIST_START: usize = 0x1F4;
const BLOCKLIST_LEN: usize = 0x1FC;

#[derive(Debug, thiserror::Error)]
pub enum BootSectorError {
    #[error("GRUB's boot.img is {0} bytes, expected 512")]
    BootImgSize(usize),
    #[error("GRUB's core.img ({0} bytes) does not fit the BIOS boot partition ({1} bytes)")]
    CoreTooLarge(usize, u64),
    #[error("GRUB's core.img is empty")]
    CoreEmpty,
    #[error("GRUB's boot.img does not look like GRUB 2's (no short jump at the drive check)")]
    UnknownBootImg,
}

/// The MBR: `boot.img`'s code, pointing at `core_lba`, over the disk's own
/// BPB area, signature and partition table (taken from `existing`).
pub fn mbr(
    boot_img: &[u8],
    existing: &[u8; 512],
    core_lba: u64,
) -> Result<[u8; 512], BootSectorError> {
    if boot_img.len() != 512 {
        return Err(BootSectorError::BootImgSize(boot_img.len()));
    }
    // GRUB 2's boot.img has `jmp 3f` (0xEB, short) at the drive check.
    if boot_img[DRIVE_CHECK] != 0xEB {
        return Err(BootSectorError::UnknownBootImg);
    }
    let mut out = [0u8; 512];
    out.copy_from_slice(boot_img);
    out[BPB_START..BPB_END].copy_from_slice(&existing[BPB_START..BPB_END]);
    out[KERNEL_SECTOR..KERNEL_SECTOR + 8].copy_from_slice(&core_lba.to_le_bytes());
    // On a hard disk, let boot.img fix the drive number that some BIOSes pass
    // wrongly (grub-bios-setup does this unless told the disk is a floppy).
    out[DRIVE_CHECK] = 0x90;
    out[DRIVE_CHECK + 1] = 0x90;
    out[WINDOWS_NT_MAGIC..].copy_from_slice(&existing[WINDOWS_NT_MAGIC..]);
    Ok(out)
}

/// `core.img`, padded to whole sectors, with its first sector's block list
/// pointing at the rest of it once written at `core_lba`.
pub fn core(core_img: &[u8], core_lba: u64, room: u64) -> Result<Vec<u8>, BootSectorError> {
    if core_img.is_empty() {
        return Err(BootSectorError::CoreEmpty);
    }
    let sectors = (core_img.len() as u64).div_ceil(SECTOR);
    if sectors * SECTOR > room || sectors - 1 > u16::MAX as u64 {
        return Err(BootSectorError::CoreTooLarge(core_img.len(), room));
    }
    let mut out = core_img.to_vec();
    out.resize((sectors * SECTOR) as usize, 0);
    out[BLOCKLIST_START..BLOCKLIST_START + 8].copy_from_slice(&(core_lba + 1).to_le_bytes());
    out[BLOCKLIST_LEN..BLOCKLIST_LEN + 2].copy_from_slice(&((sectors - 1) as u16).to_le_bytes());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_boot_img() -> Vec<u8> {
        let mut b = vec![0xCCu8; 512];
        b[DRIVE_CHECK] = 0xEB;
        b[DRIVE_CHECK + 1] = 0x05;
        b
    }

    #[test]
    fn mbr_points_at_core_and_keeps_the_partition_table() {
        let mut existing = [0u8; 512];
        existing[0x1BE + 4] = 0xEE;
        existing[0x1FE] = 0x55;
        existing[0x1FF] = 0xAA;
        let m = mbr(&fake_boot_img(), &existing, 2048).unwrap();
        assert_eq!(&m[0x5C..0x64], &2048u64.to_le_bytes());
        assert_eq!(&m[0x66..0x68], &[0x90, 0x90]);
        assert_eq!(m[0x1C2], 0xEE);
        assert_eq!(&m[0x1FE..], &[0x55, 0xAA]);
        assert!(m[BPB_START..BPB_END].iter().all(|&b| b == 0));
        assert_eq!(m[0], 0xCC);
        assert_eq!(m[0x1B7], 0xCC);
    }

    #[test]
    fn mbr_refuses_what_is_not_grub() {
        assert!(mbr(&[0u8; 100], &[0; 512], 2048).is_err());
        assert!(mbr(&[0u8; 512], &[0; 512], 2048).is_err());
    }

    #[test]
    fn core_block_list_covers_the_rest_of_core() {
        let img = vec![1u8; 280 * 512 + 17];
        let c = core(&img, 2048, 6144 * 512).unwrap();
        assert_eq!(c.len(), 281 * 512);
        assert_eq!(&c[0x1F4..0x1FC], &2049u64.to_le_bytes());
        assert_eq!(&c[0x1FC..0x1FE], &280u16.to_le_bytes());
        assert!(core(&img, 2048, 100 * 512).is_err());
        assert!(core(&[], 2048, 6144 * 512).is_err());
    }

    #[test]
    fn the_real_boot_img_is_accepted_when_present() {
        // Debian's grub-pc-bin; the build host checks for it as a tool.
        let path = "/usr/lib/grub/i386-pc/boot.img";
        let Ok(boot) = std::fs::read(path) else {
            panic!("{path} is missing: apt-get install grub-pc-bin");
        };
        let m = mbr(&boot, &[0u8; 512], 2048).unwrap();
        assert_eq!(&m[0x5C..0x64], &2048u64.to_le_bytes());
    }
}
