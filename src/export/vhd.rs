//! The fixed VHD for Azure: the disk's bytes followed by a 512-byte footer.
//! Azure accepts only a virtual size that is a whole number of MiB, so the
//! image is created at the raw size rounded up to 1 MiB (`force_size` keeps
//! qemu from rounding to a CHS geometry instead), then filled from the raw disk.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use crate::command::Cmd;

use super::{qemu_img, round_up, ExportError, Format};

const MIB: u64 = 1024 * 1024;
const FOOTER_LEN: u64 = 512;
/// Disk type 2 in the footer: fixed hard disk.
const DISK_TYPE_FIXED: u32 = 2;

/// `epoch` and `unique_id` go into the footer in place of qemu-img's current
/// time and random id, so the same disk always gives the same file.
pub(super) fn export(
    raw: &Path,
    raw_size: u64,
    out: &Path,
    epoch: u64,
    unique_id: [u8; 16],
) -> Result<(), ExportError> {
    let size = round_up(raw_size, MIB);
    qemu_img::run(
        Format::Vhd,
        Cmd::new(qemu_img::QEMU_IMG.program)
            .args([
                "create",
                "-q",
                "-f",
                "vpc",
                "-o",
                "subformat=fixed,force_size=on",
            ])
            .arg(out)
            .arg(size.to_string()),
    )?;
    // -n: write into the image just created instead of making a new one.
    qemu_img::run(
        Format::Vhd,
        Cmd::new(qemu_img::QEMU_IMG.program)
            .args(["convert", "-n", "-f", "raw", "-O", "vpc"])
            .arg(raw)
            .arg(out),
    )?;
    super::identity::stamp_vhd(out, epoch, unique_id).map_err(|e| ExportError::Verify {
        format: Format::Vhd,
        path: out.to_owned(),
        detail: format!("fixing its footer: {e}"),
    })?;

    let footer = VhdFooter::read(out).map_err(|detail| ExportError::Verify {
        format: Format::Vhd,
        path: out.to_owned(),
        detail,
    })?;
    footer
        .check_azure(size)
        .map_err(|detail| ExportError::Verify {
            format: Format::Vhd,
            path: out.to_owned(),
            detail,
        })?;
    qemu_img::compare(Format::Vhd, raw, "vpc", out)
}

/// The fields of a VHD footer that Azure cares about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VhdFooter {
    pub cookie: [u8; 8],
    /// 0xFFFF_FFFF_FFFF_FFFF for a fixed disk (no dynamic header).
    pub data_offset: u64,
    pub current_size: u64,
    pub disk_type: u32,
    pub checksum_ok: bool,
    pub file_size: u64,
}

impl VhdFooter {
    /// Reads the footer from the last 512 bytes of `path`.
    pub fn read(path: &Path) -> Result<VhdFooter, String> {
        let mut file = File::open(path).map_err(|e| format!("cannot open it: {e}"))?;
        let file_size = file
            .metadata()
            .map_err(|e| format!("cannot stat it: {e}"))?
            .len();
        if file_size < FOOTER_LEN {
            return Err(format!("it is {file_size} bytes, too short for a footer"));
        }
        let mut b = [0u8; FOOTER_LEN as usize];
        file.seek(SeekFrom::Start(file_size - FOOTER_LEN))
            .and_then(|_| file.read_exact(&mut b))
            .map_err(|e| format!("cannot read its footer: {e}"))?;

        let be64 = |at: usize| u64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"));
        let be32 = |at: usize| u32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"));
        // The checksum is the one's complement of the byte sum, its own field
        // (bytes 64..68) counted as zero.
        let sum: u32 = b
            .iter()
            .enumerate()
            .filter(|(i, _)| !(64..68).contains(i))
            .map(|(_, &x)| u32::from(x))
            .sum();
        Ok(VhdFooter {
            cookie: b[0..8].try_into().expect("8 bytes"),
            data_offset: be64(16),
            current_size: be64(48),
            disk_type: be32(60),
            checksum_ok: !sum == be32(64),
            file_size,
        })
    }

    /// Azure's rules: `conectix` footer, fixed type, valid checksum, virtual
    /// size `size` (a whole number of MiB), file = size + footer.
    pub fn check_azure(&self, size: u64) -> Result<(), String> {
        let problems: Vec<String> = [
            (&self.cookie != b"conectix").then(|| "footer cookie is not `conectix`".into()),
            (self.disk_type != DISK_TYPE_FIXED)
                .then(|| format!("disk type is {}, not 2 (fixed)", self.disk_type)),
            (self.data_offset != u64::MAX)
                .then(|| format!("data offset is {:#x}, not all ones", self.data_offset)),
            (!self.checksum_ok).then(|| "footer checksum is wrong".into()),
            (self.current_size != size)
                .then(|| format!("virtual size is {}, expected {size}", self.current_size)),
            (self.current_size % MIB != 0)
                .then(|| format!("virtual size {} is not whole MiB", self.current_size)),
            (self.file_size != self.current_size + FOOTER_LEN).then(|| {
                format!(
                    "file is {} bytes, expected virtual size + 512 = {}",
                    self.file_size,
                    self.current_size + FOOTER_LEN
                )
            }),
        ]
        .into_iter()
        .flatten()
        .collect();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn footer_rules_catch_a_wrong_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.vhd");
        let mut footer = [0u8; 512];
        footer[..8].copy_from_slice(b"conectix");
        footer[16..24].copy_from_slice(&u64::MAX.to_be_bytes());
        footer[48..56].copy_from_slice(&MIB.to_be_bytes());
        footer[60..64].copy_from_slice(&2u32.to_be_bytes());
        let sum: u32 = footer.iter().map(|&x| u32::from(x)).sum();
        footer[64..68].copy_from_slice(&(!sum).to_be_bytes());
        let mut f = File::create(&path).unwrap();
        f.write_all(&vec![0u8; MIB as usize]).unwrap();
        f.write_all(&footer).unwrap();
        drop(f);

        let read = VhdFooter::read(&path).unwrap();
        assert!(read.checksum_ok);
        read.check_azure(MIB).unwrap();
        let err = read.check_azure(2 * MIB).unwrap_err();
        assert!(err.contains("expected 2097152"), "{err}");
    }
}
