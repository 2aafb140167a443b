//! The OVA: a plain (uncompressed) tar holding the OVF descriptor first, then
//! the SHA-256 manifest, then the stream-optimized VMDK. VMware rejects an OVA
//! whose first member is not the `.ovf`, so every member is a regular file
//! with a short flat ASCII name and a GNU header: no PAX records, no
//! `././@LongLink` entries that would come first. Headers are reproducible:
//! mode 0644, owner 0:0, mtime `SOURCE_DATE_EPOCH` (or 0).
//!
//! This file also reads OVAs back ([`ova_members`], [`extract_member`]): the
//! export checks its own output with it, and boot tests use it to take the
//! VMDK out.

use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;

use super::ovf::{self, DiskRef};
use super::{
    archive_mtime, io_err, qemu_img, sha256_file, sha256_reader, vmdk, Appliance, ExportError,
    Format, Staged,
};

const BLOCK: u64 = 512;

/// The three member names, in archive order.
struct Names {
    ovf: String,
    manifest: String,
    disk: String,
}

impl Names {
    fn new(appliance: &Appliance) -> Names {
        let stem = appliance.stem();
        Names {
            ovf: format!("{stem}.ovf"),
            manifest: format!("{stem}.mf"),
            disk: format!("{stem}-disk1.vmdk"),
        }
    }
}

pub(super) fn export(
    raw: &Path,
    raw_size: u64,
    out_dir: &Path,
    out: &Path,
    appliance: &Appliance,
) -> Result<(), ExportError> {
    let names = Names::new(appliance);

    // The disk is written and its metadata checked on its own first (it is
    // removed when `disk` goes out of scope); its content is compared with
    // the raw disk once, inside the finished OVA.
    let disk = Staged::new(out_dir, &out_dir.join(&names.disk))?;
    let info = vmdk::write_stream_optimized(raw, disk.path(), &names.disk)?;
    qemu_img::check(Format::Ova, "vmdk", disk.path())?;
    debug_assert_eq!(info.capacity, raw_size.div_ceil(512) * 512);
    let disk_size = std::fs::metadata(disk.path())
        .map_err(io_err("stat", disk.path()))?
        .len();

    let descriptor = ovf::render(
        appliance,
        &DiskRef {
            href: &names.disk,
            file_size: disk_size,
            capacity: info.capacity,
            populated: info.populated,
        },
    )?;
    let manifest = manifest(&[
        (
            &names.ovf,
            sha256_reader(descriptor.as_bytes()).map_err(io_err("hash", out))?,
        ),
        (&names.disk, sha256_file(disk.path())?),
    ]);

    write_tar(
        out,
        &names,
        descriptor.as_bytes(),
        manifest.as_bytes(),
        disk.path(),
        disk_size,
    )?;
    verify(raw, out, &names, disk_size).map_err(|detail| match detail {
        Checked::Failed(detail) => ExportError::Verify {
            format: Format::Ova,
            path: out.to_owned(),
            detail,
        },
        Checked::Error(e) => e,
    })
}

/// Manifest lines as VMware writes them: `SHA256(name)= hex`, no space
/// before the parenthesis.
fn manifest(entries: &[(&String, String)]) -> String {
    entries
        .iter()
        .map(|(name, digest)| format!("SHA256({name})= {digest}\n"))
        .collect()
}

fn write_tar(
    out: &Path,
    names: &Names,
    descriptor: &[u8],
    manifest: &[u8],
    disk: &Path,
    disk_size: u64,
) -> Result<(), ExportError> {
    let file = File::options()
        .write(true)
        .truncate(true)
        .open(out)
        .map_err(io_err("open", out))?;
    let mtime = archive_mtime();
    let mut tar = tar::Builder::new(BufWriter::with_capacity(1 << 20, file));
    let written = (|| -> io::Result<()> {
        let header = regular_header(&names.ovf, descriptor.len() as u64, mtime)?;
        tar.append(&header, descriptor)?;
        let header = regular_header(&names.manifest, manifest.len() as u64, mtime)?;
        tar.append(&header, manifest)?;
        let header = regular_header(&names.disk, disk_size, mtime)?;
        tar.append(&header, File::open(disk)?.take(disk_size))?;
        let mut inner = tar.into_inner()?;
        inner.flush()?;
        inner.get_ref().sync_all()
    })();
    written.map_err(io_err("write", out))
}

/// A GNU tar header for a regular file: mode 0644, owner 0:0, no user names.
pub(super) fn regular_header(name: &str, size: u64, mtime: u64) -> io::Result<tar::Header> {
    let mut header = tar::Header::new_gnu();
    header.set_path(name)?;
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(size);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(mtime);
    header.set_cksum();
    Ok(header)
}

enum Checked {
    Failed(String),
    Error(ExportError),
}

impl From<ExportError> for Checked {
    fn from(e: ExportError) -> Self {
        match e {
            ExportError::Verify { detail, .. } => Checked::Failed(detail),
            other => Checked::Error(other),
        }
    }
}

/// Reads the OVA back: member order and types, manifest digests recomputed
/// from the archive, `ovf:size`, and the disk inside compared to `raw`.
fn verify(raw: &Path, ova: &Path, names: &Names, disk_size: u64) -> Result<(), Checked> {
    let members = ova_members(ova)?;
    let got: Vec<&str> = members.iter().map(|m| m.name.as_str()).collect();
    let want = [
        names.ovf.as_str(),
        names.manifest.as_str(),
        names.disk.as_str(),
    ];
    if got != want {
        return Err(Checked::Failed(format!(
            "members are {got:?}, expected {want:?}"
        )));
    }
    if let Some(m) = members.iter().find(|m| m.typeflag != b'0') {
        return Err(Checked::Failed(format!(
            "member {} has type {:?}, not a regular file",
            m.name, m.typeflag as char
        )));
    }
    let disk = &members[2];
    if disk.size != disk_size {
        return Err(Checked::Failed(format!(
            "disk member is {} bytes, the VMDK was {disk_size}",
            disk.size
        )));
    }

    let mut file = File::open(ova).map_err(io_err("open", ova))?;
    let manifest =
        String::from_utf8(read_member(&mut file, &members[1]).map_err(io_err("read", ova))?)
            .map_err(|_| Checked::Failed("the manifest is not UTF-8".into()))?;
    for member in [&members[0], &members[2]] {
        file.seek(SeekFrom::Start(member.offset))
            .map_err(io_err("read", ova))?;
        let digest = sha256_reader((&mut file).take(member.size)).map_err(io_err("read", ova))?;
        let line = format!("SHA256({})= {digest}", member.name);
        if !manifest.lines().any(|l| l == line) {
            return Err(Checked::Failed(format!(
                "manifest has no line `{line}`:\n{manifest}"
            )));
        }
    }
    let descriptor =
        String::from_utf8(read_member(&mut file, &members[0]).map_err(io_err("read", ova))?)
            .map_err(|_| Checked::Failed("the descriptor is not UTF-8".into()))?;
    let size_attr = format!("ovf:size=\"{}\"", disk.size);
    if !descriptor.contains(&size_attr) {
        return Err(Checked::Failed(format!(
            "the descriptor does not say {size_attr}"
        )));
    }

    qemu_img::compare_vmdk_inside(Format::Ova, raw, ova, disk.offset, disk.size)?;
    Ok(())
}

fn read_member(file: &mut File, member: &OvaMember) -> io::Result<Vec<u8>> {
    let mut bytes = vec![0u8; member.size as usize];
    file.seek(SeekFrom::Start(member.offset))?;
    file.read_exact(&mut bytes)?;
    Ok(bytes)
}

/// One entry of a tar archive, as its header says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OvaMember {
    pub name: String,
    /// Where the member's data starts in the archive.
    pub offset: u64,
    pub size: u64,
    /// The header's type byte: `b'0'` for a regular file.
    pub typeflag: u8,
    /// The header's magic and version (bytes 257..265): `ustar  \0` for GNU.
    pub magic: [u8; 8],
}

/// Lists the entries of a tar archive (an OVA) in order, reading raw headers:
/// PAX and long-name entries show up as entries of their own.
pub fn ova_members(ova: &Path) -> Result<Vec<OvaMember>, ExportError> {
    let mut file = File::open(ova).map_err(io_err("open", ova))?;
    let len = file.metadata().map_err(io_err("stat", ova))?.len();
    let bad = |reason: String| ExportError::Archive {
        path: ova.to_owned(),
        reason: format!("it is not a readable tar archive ({reason})"),
    };

    let mut members = Vec::new();
    let mut at = 0u64;
    let mut header = [0u8; BLOCK as usize];
    while at + BLOCK <= len {
        file.seek(SeekFrom::Start(at))
            .and_then(|_| file.read_exact(&mut header))
            .map_err(io_err("read", ova))?;
        if header.iter().all(|&b| b == 0) {
            break;
        }
        let stored = octal(&header[148..156])
            .ok_or_else(|| bad(format!("bad checksum field at byte {at}")))?;
        let sum: u64 = header
            .iter()
            .enumerate()
            .map(|(i, &b)| {
                if (148..156).contains(&i) {
                    32
                } else {
                    u64::from(b)
                }
            })
            .sum();
        if sum != stored {
            return Err(bad(format!("header checksum mismatch at byte {at}")));
        }
        let size =
            size_field(&header[124..136]).ok_or_else(|| bad(format!("bad size at byte {at}")))?;
        let name_end = header[..100].iter().position(|&b| b == 0).unwrap_or(100);
        let mut name = String::from_utf8_lossy(&header[..name_end]).into_owned();
        let magic: [u8; 8] = header[257..265].try_into().expect("8 bytes");
        // POSIX ustar keeps the start of long names in a prefix field.
        if &magic[..6] == b"ustar\0" && header[345] != 0 {
            let end = header[345..500].iter().position(|&b| b == 0).unwrap_or(155);
            name = format!(
                "{}/{name}",
                String::from_utf8_lossy(&header[345..345 + end])
            );
        }
        let offset = at + BLOCK;
        if offset + size > len {
            return Err(bad(format!("member {name} runs past the end of the file")));
        }
        members.push(OvaMember {
            name,
            offset,
            size,
            typeflag: header[156],
            magic,
        });
        at = offset + size.div_ceil(BLOCK) * BLOCK;
    }
    Ok(members)
}

fn octal(field: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(field).ok()?;
    let digits = text.trim_matches(|c| c == '\0' || c == ' ');
    if digits.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(digits, 8).ok()
}

/// A size field: octal, or GNU base-256 (high bit set) for 8 GiB and more.
fn size_field(field: &[u8]) -> Option<u64> {
    if field[0] & 0x80 != 0 {
        let mut value = u64::from(field[0] & 0x7f);
        for &b in &field[1..] {
            value = value.checked_mul(256)?.checked_add(u64::from(b))?;
        }
        Some(value)
    } else {
        octal(field)
    }
}

/// Copies the member `name` of the OVA at `ova` to `dest`.
pub fn extract_member(ova: &Path, name: &str, dest: &Path) -> Result<(), ExportError> {
    let member = ova_members(ova)?
        .into_iter()
        .find(|m| m.name == name)
        .ok_or_else(|| ExportError::Archive {
            path: ova.to_owned(),
            reason: format!("it has no member named {name}"),
        })?;
    let mut file = File::open(ova).map_err(io_err("open", ova))?;
    file.seek(SeekFrom::Start(member.offset))
        .map_err(io_err("read", ova))?;
    let mut out = File::create(dest).map_err(io_err("create", dest))?;
    let copied = io::copy(&mut file.take(member.size), &mut out).map_err(io_err("write", dest))?;
    if copied != member.size {
        return Err(ExportError::Archive {
            path: ova.to_owned(),
            reason: format!(
                "member {name} is truncated ({copied} of {} bytes)",
                member.size
            ),
        });
    }
    out.sync_all().map_err(io_err("flush", dest))
}

/// Copies the first `.vmdk` member of the OVA to `dest`; returns its name.
pub fn extract_ova_disk(ova: &Path, dest: &Path) -> Result<String, ExportError> {
    let name = ova_members(ova)?
        .into_iter()
        .map(|m| m.name)
        .find(|n| n.ends_with(".vmdk"))
        .ok_or_else(|| ExportError::Archive {
            path: ova.to_owned(),
            reason: "it holds no .vmdk disk".into(),
        })?;
    extract_member(ova, &name, dest)?;
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_lines_have_no_space_before_the_parenthesis() {
        let text = manifest(&[(&"a.ovf".to_string(), "00ff".into())]);
        assert_eq!(text, "SHA256(a.ovf)= 00ff\n");
    }

    #[test]
    fn size_fields_octal_and_base_256() {
        assert_eq!(size_field(b"00000001000\0"), Some(512));
        let mut big = [0u8; 12];
        big[0] = 0x80;
        big[4..].copy_from_slice(&(9u64 << 30).to_be_bytes());
        assert_eq!(size_field(&big), Some(9 << 30));
    }

    #[test]
    fn headers_round_trip_through_the_reader() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.tar");
        let mut tar = tar::Builder::new(File::create(&path).unwrap());
        tar.append(&regular_header("a.ovf", 3, 7).unwrap(), &b"abc"[..])
            .unwrap();
        tar.append(&regular_header("b.mf", 0, 7).unwrap(), &b""[..])
            .unwrap();
        tar.into_inner().unwrap();

        let members = ova_members(&path).unwrap();
        assert_eq!(members.len(), 2);
        assert_eq!(members[0].name, "a.ovf");
        assert_eq!((members[0].offset, members[0].size), (512, 3));
        assert_eq!(members[1].offset, 1536);
        assert_eq!(&members[0].magic, b"ustar  \0");
        assert_eq!(members[0].typeflag, b'0');

        let out = dir.path().join("a");
        extract_member(&path, "a.ovf", &out).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), b"abc");
        assert!(extract_member(&path, "nope", &out).is_err());
    }
}
