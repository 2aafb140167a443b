//! Exporting the finished raw disk for each hypervisor and cloud: the last stage
//! of the builder's pipeline (recipe -> root filesystem -> disk -> formats).
//!
//! [`export`] writes one format at a time into the output folder. Every file is
//! first written under a hidden temporary name, compared back to the raw disk
//! (`qemu-img compare`, or a byte-for-byte stream for the GCE tarball), and only
//! then renamed to its final name, so a failed or interrupted export never
//! leaves a file that looks published. The VMDK (alone and inside the OVA) is
//! written by our own stream-optimized writer ([`vmdk`]); qcow2, VHDX and VHD
//! come from `qemu-img convert`; raw is a sparse copy; GCE is a gzip tar.

mod gce;
pub mod identity;
mod ova;
mod ovf;
mod qemu_img;
mod raw;
mod vhd;
pub mod vmdk;

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Instant;

use sha2::{Digest, Sha256};

use crate::command::{CommandError, MissingTools};

pub use ova::{extract_member, extract_ova_disk, ova_members, OvaMember};
pub use vhd::VhdFooter;

/// One output format of `balcao build --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    Raw,
    Qcow2,
    Vmdk,
    Vhdx,
    Vhd,
    Gce,
    Ova,
}

impl Format {
    /// Every format, in the order `--format all` writes them.
    pub const ALL: [Format; 7] = [
        Format::Ova,
        Format::Vmdk,
        Format::Qcow2,
        Format::Vhdx,
        Format::Vhd,
        Format::Gce,
        Format::Raw,
    ];

    /// The name used on the command line and in logs.
    pub fn name(self) -> &'static str {
        match self {
            Format::Raw => "raw",
            Format::Qcow2 => "qcow2",
            Format::Vmdk => "vmdk",
            Format::Vhdx => "vhdx",
            Format::Vhd => "vhd",
            Format::Gce => "gce",
            Format::Ova => "ova",
        }
    }

    /// The published file name: `{name}-{version}.{ext}`, or
    /// `{name}-{version}-gce.tar.gz` for Google Compute Engine.
    pub fn file_name(self, appliance: &Appliance) -> String {
        let stem = appliance.stem();
        match self {
            Format::Gce => format!("{stem}-gce.tar.gz"),
            other => format!("{stem}.{}", other.name()),
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Format {
    type Err = ExportError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_ascii_lowercase();
        Format::ALL
            .into_iter()
            .find(|f| f.name() == wanted)
            .ok_or_else(|| ExportError::UnknownFormat {
                given: s.trim().to_owned(),
                allowed: allowed_formats(),
            })
    }
}

fn allowed_formats() -> String {
    Format::ALL.map(Format::name).join(", ")
}

/// Parses `--format`: a comma-separated list (`ova,qcow2`) or `all`. Repeated
/// names are kept once, in the order first given.
pub fn parse_formats(list: &str) -> Result<Vec<Format>, ExportError> {
    if list.trim().eq_ignore_ascii_case("all") {
        return Ok(Format::ALL.to_vec());
    }
    let mut formats = Vec::new();
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let format: Format = part.parse()?;
        if !formats.contains(&format) {
            formats.push(format);
        }
    }
    if formats.is_empty() {
        return Err(ExportError::NoFormat {
            allowed: allowed_formats(),
        });
    }
    Ok(formats)
}

/// Which firmware the imported VM should start with. The disk boots either way
/// (hybrid BIOS + UEFI); this is only the hint written into the OVF.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Firmware {
    Bios,
    Efi,
}

/// What the exported files say about the appliance.
#[derive(Debug, Clone)]
pub struct Appliance {
    /// Short name, used in file names (letters, digits, `.`, `_`, `-`).
    pub name: String,
    /// Version, used in file names (same characters as `name`).
    pub version: String,
    /// Free text shown by the hypervisor's import dialog.
    pub description: String,
    pub cpus: u32,
    pub memory_mib: u32,
    pub firmware: Firmware,
}

/// Longest `{name}-{version}`: keeps every OVA member name (`{stem}-disk1.vmdk`)
/// far below the 100 bytes a tar header holds without a long-name entry.
const MAX_STEM_LEN: usize = 64;

impl Appliance {
    fn stem(&self) -> String {
        format!("{}-{}", self.name, self.version)
    }

    /// Refuses names that would need escaping in a file name, a tar header, a
    /// VMDK descriptor or Proxmox's `ovf:href` check.
    fn validate(&self) -> Result<(), ExportError> {
        let safe = |s: &str| {
            !s.is_empty()
                && !s.starts_with('.')
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        };
        for (field, value) in [("name", &self.name), ("version", &self.version)] {
            if !safe(value) {
                return Err(ExportError::BadName {
                    field,
                    value: value.clone(),
                });
            }
        }
        if self.stem().len() > MAX_STEM_LEN {
            return Err(ExportError::NameTooLong {
                stem: self.stem(),
                max: MAX_STEM_LEN,
            });
        }
        if self.cpus == 0 || self.memory_mib == 0 {
            return Err(ExportError::BadHardware {
                cpus: self.cpus,
                memory_mib: self.memory_mib,
            });
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("unknown disk format `{given}`: use a comma-separated list of {allowed}, or `all`")]
    UnknownFormat { given: String, allowed: String },

    #[error("no disk format given: use a comma-separated list of {allowed}, or `all`")]
    NoFormat { allowed: String },

    #[error(
        "the appliance {field} `{value}` cannot be used in file names: use only letters, \
         digits, `.`, `_` and `-`, not starting with `.`"
    )]
    BadName { field: &'static str, value: String },

    #[error("the appliance file names would start with `{stem}`, longer than {max} characters: shorten the name or version")]
    NameTooLong { stem: String, max: usize },

    #[error("the appliance needs at least one CPU and some memory (got {cpus} CPUs, {memory_mib} MiB): fix the recipe")]
    BadHardware { cpus: u32, memory_mib: u32 },

    #[error("the raw disk {path} cannot be exported: {reason}")]
    RawDisk { path: PathBuf, reason: String },

    #[error("cannot use the OVA {path}: {reason}")]
    Archive { path: PathBuf, reason: String },

    #[error("could not {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },

    #[error(transparent)]
    MissingTools(#[from] MissingTools),

    #[error("exporting {format} failed: {source}")]
    Command {
        format: Format,
        source: CommandError,
    },

    #[error(
        "the {format} file {path} failed its check against the raw disk: {detail}\n\
         it was removed and nothing was published; check that nothing wrote to the raw disk \
         during the export and run it again, and report a bug if it fails the same way"
    )]
    Verify {
        format: Format,
        path: PathBuf,
        detail: String,
    },

    #[error("could not render the OVF descriptor from its template: {0}")]
    Template(String),
}

/// Shorthand for an I/O error that names the file and what we were doing.
fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> ExportError {
    let path = path.to_owned();
    move |source| ExportError::Io {
        action,
        path,
        source,
    }
}

/// Writes `raw` as `format` into `out_dir` and returns the published path.
///
/// The file is written under a hidden temporary name, compared back to `raw`,
/// and only then renamed to [`Format::file_name`]. On any failure the temporary
/// file is removed, and so is any older file with the final name (so a stale
/// artifact from an earlier build can never be mistaken for this one).
pub fn export(
    raw: &Path,
    format: Format,
    out_dir: &Path,
    appliance: &Appliance,
) -> Result<PathBuf, ExportError> {
    let started = Instant::now();
    appliance.validate()?;
    let final_path = out_dir.join(format.file_name(appliance));
    remove_stale(&final_path)?;
    crate::command::require_tools(&[qemu_img::QEMU_IMG])?;
    let raw_size = raw_disk_size(raw)?;

    let staged = Staged::new(out_dir, &final_path)?;
    match format {
        Format::Raw => raw::export(raw, raw_size, staged.path())?,
        Format::Qcow2 => qemu_img::export_qcow2(raw, staged.path())?,
        Format::Vhdx => {
            qemu_img::export_vhdx(raw, staged.path(), &[&appliance.name, &appliance.version])?
        }
        Format::Vhd => vhd::export(
            raw,
            raw_size,
            staged.path(),
            archive_mtime(),
            identity::derived_guid(&[&appliance.name, &appliance.version, "vhd unique id"]),
        )?,
        Format::Vmdk => {
            let name = format.file_name(appliance);
            vmdk::export(raw, staged.path(), &name)?;
        }
        Format::Gce => gce::export(raw, raw_size, staged.path())?,
        Format::Ova => ova::export(raw, raw_size, out_dir, staged.path(), appliance)?,
    }
    staged.publish(&final_path)?;

    let size = std::fs::metadata(&final_path)
        .map(|m| m.len())
        .unwrap_or_default();
    tracing::info!(
        "{format}: wrote {} ({}) in {:.1}s",
        final_path.display(),
        human_size(size),
        started.elapsed().as_secs_f64()
    );
    Ok(final_path)
}

/// The raw disk's size, after checking it is a non-empty regular file.
fn raw_disk_size(raw: &Path) -> Result<u64, ExportError> {
    let meta = std::fs::metadata(raw).map_err(|e| ExportError::RawDisk {
        path: raw.to_owned(),
        reason: format!("{e}; build the disk first"),
    })?;
    if !meta.is_file() {
        return Err(ExportError::RawDisk {
            path: raw.to_owned(),
            reason: "it is not a regular file".into(),
        });
    }
    if meta.len() == 0 {
        return Err(ExportError::RawDisk {
            path: raw.to_owned(),
            reason: "it is empty".into(),
        });
    }
    Ok(meta.len())
}

/// The raw format without a copy: moves `disk` itself to the raw file name
/// in `out_dir`. For a disk that nothing reads or writes afterwards (the
/// builder's own, once the other formats are made from it); [`export`]
/// makes a sparse copy of any other.
pub fn adopt_raw(
    disk: &Path,
    out_dir: &Path,
    appliance: &Appliance,
) -> Result<PathBuf, ExportError> {
    use std::os::unix::fs::PermissionsExt;
    appliance.validate()?;
    let final_path = out_dir.join(Format::Raw.file_name(appliance));
    remove_stale(&final_path)?;
    std::fs::set_permissions(disk, std::fs::Permissions::from_mode(0o644))
        .map_err(io_err("set permissions on", disk))?;
    std::fs::rename(disk, &final_path)
        .map_err(io_err("rename the finished file to", &final_path))?;
    tracing::info!("raw: the assembled disk, moved to {}", final_path.display());
    Ok(final_path)
}

fn remove_stale(path: &Path) -> Result<(), ExportError> {
    match std::fs::remove_file(path) {
        Ok(()) => {
            tracing::debug!("removed the previous {}", path.display());
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("remove the previous export", path)(e)),
    }
}

/// A file being written under a hidden name next to its final place; removed
/// when dropped unless [`Staged::publish`] renamed it.
pub(crate) struct Staged {
    path: tempfile::TempPath,
}

impl Staged {
    /// A new empty temporary file in `dir`, named after `final_path`.
    pub(crate) fn new(dir: &Path, final_path: &Path) -> Result<Staged, ExportError> {
        let base = final_path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let file = tempfile::Builder::new()
            .prefix(&format!(".{base}."))
            .suffix(".partial")
            .tempfile_in(dir)
            .map_err(io_err("create a temporary file in", dir))?;
        Ok(Staged {
            path: file.into_temp_path(),
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Makes the file world-readable (temporary files start private) and
    /// renames it to `final_path`.
    fn publish(self, final_path: &Path) -> Result<(), ExportError> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&self.path, std::fs::Permissions::from_mode(0o644))
            .map_err(io_err("set permissions on", &self.path))?;
        self.path
            .persist(final_path)
            .map_err(|e| io_err("rename the finished file to", final_path)(e.error))
    }
}

/// The hex SHA-256 of a file, for `SHA256SUMS` and the OVA manifest.
pub fn sha256_file(path: &Path) -> Result<String, ExportError> {
    let file = File::open(path).map_err(io_err("open", path))?;
    sha256_sparse(file).map_err(io_err("read", path))
}

/// SHA-256 of a file whose holes (a disk image is mostly holes) are hashed
/// as the zeros they read as, without reading them.
fn sha256_sparse(mut file: File) -> io::Result<String> {
    let len = file.metadata()?.len();
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; READ_BLOCK];
    let mut pos = 0u64;
    while pos < len {
        let (data, hole) = next_data(&file, pos, len)?;
        let mut zeros = data - pos;
        while zeros > 0 {
            let n = zeros.min(READ_BLOCK as u64) as usize;
            hasher.update(&ZERO_BLOCK[..n]);
            zeros -= n as u64;
        }
        if data >= len {
            break;
        }
        file.seek(SeekFrom::Start(data))?;
        let mut left = hole - data;
        while left > 0 {
            let want = left.min(READ_BLOCK as u64) as usize;
            let n = read_full(&mut file, &mut buf[..want])?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the file shrank while it was read",
                ));
            }
            hasher.update(&buf[..n]);
            left -= n as u64;
        }
        pos = hole;
    }
    Ok(hex::encode(hasher.finalize()))
}

fn sha256_reader(mut reader: impl Read) -> io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

static ZERO_BLOCK: [u8; READ_BLOCK] = [0; READ_BLOCK];

/// The next run of data at or after `pos`, as (start, end); `(len, len)`
/// when only a hole is left. Filesystems that do not report holes give the
/// whole rest of the file as data.
fn next_data(file: &File, pos: u64, len: u64) -> io::Result<(u64, u64)> {
    use std::os::unix::io::AsRawFd;
    let seek = |from: u64, whence: libc::c_int| -> io::Result<Option<u64>> {
        // SAFETY: lseek on a descriptor this function borrows; no memory is passed.
        let at = unsafe { libc::lseek(file.as_raw_fd(), from as libc::off_t, whence) };
        if at >= 0 {
            return Ok(Some(at as u64));
        }
        let error = io::Error::last_os_error();
        match error.raw_os_error() {
            Some(libc::ENXIO) => Ok(None),
            _ => Err(error),
        }
    };
    let data = match seek(pos, libc::SEEK_DATA) {
        Ok(Some(at)) => at.min(len),
        Ok(None) => return Ok((len, len)),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => return Ok((pos, len)),
        Err(e) => return Err(e),
    };
    let hole = match seek(data, libc::SEEK_HOLE) {
        Ok(Some(at)) => at.min(len),
        Ok(None) => len,
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => len,
        Err(e) => return Err(e),
    };
    Ok((data, hole.max(data)))
}

/// The modification time written into tar headers: `SOURCE_DATE_EPOCH` when
/// set (reproducible builds convention), else 0.
fn archive_mtime() -> u64 {
    parse_epoch(std::env::var("SOURCE_DATE_EPOCH").ok().as_deref())
}

fn parse_epoch(value: Option<&str>) -> u64 {
    value.and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}

/// Rounds `n` up to a multiple of `unit`.
fn round_up(n: u64, unit: u64) -> u64 {
    n.div_ceil(unit) * unit
}

/// Block size for reading the raw disk.
const READ_BLOCK: usize = 1 << 20;

fn is_zero(block: &[u8]) -> bool {
    let words = block.chunks_exact(16);
    let tail = words.remainder();
    words
        .map(|w| u128::from_ne_bytes(w.try_into().expect("16-byte chunk")))
        .all(|w| w == 0)
        && tail.iter().all(|&b| b == 0)
}

/// Reads until `buf` is full or the file ends; returns how many bytes came.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

fn human_size(bytes: u64) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    if bytes as f64 >= 1024.0 * MIB {
        format!("{:.2} GiB", bytes as f64 / (1024.0 * MIB))
    } else {
        format!("{:.1} MiB", bytes as f64 / MIB)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse_by_name_and_all() {
        assert_eq!(
            parse_formats("ova, qcow2,ova").unwrap(),
            [Format::Ova, Format::Qcow2]
        );
        assert_eq!(parse_formats("ALL").unwrap(), Format::ALL.to_vec());
        for f in Format::ALL {
            assert_eq!(f.name().parse::<Format>().unwrap(), f);
        }
    }

    #[test]
    fn unknown_format_names_the_allowed_ones() {
        let text = parse_formats("ova,vdi").unwrap_err().to_string();
        assert!(text.contains("`vdi`"), "{text}");
        for f in Format::ALL {
            assert!(text.contains(f.name()), "{text}");
        }
        assert!(text.contains("all"), "{text}");
        assert!(matches!(
            parse_formats(" , "),
            Err(ExportError::NoFormat { .. })
        ));
    }

    #[test]
    fn file_names_follow_the_brief() {
        let a = appliance();
        assert_eq!(Format::Ova.file_name(&a), "balcao-1.2.0.ova");
        assert_eq!(Format::Gce.file_name(&a), "balcao-1.2.0-gce.tar.gz");
        assert_eq!(Format::Raw.file_name(&a), "balcao-1.2.0.raw");
    }

    #[test]
    fn unsafe_names_are_refused() {
        for bad in ["", "a b", "../x", ".hidden", "a/b", "ação", "x\"y"] {
            let mut a = appliance();
            a.name = bad.into();
            assert!(
                matches!(a.validate(), Err(ExportError::BadName { .. })),
                "{bad:?}"
            );
        }
        let mut a = appliance();
        a.version = "9".repeat(80);
        assert!(matches!(a.validate(), Err(ExportError::NameTooLong { .. })));
        assert!(appliance().validate().is_ok());
    }

    #[test]
    fn epoch_parsing() {
        assert_eq!(parse_epoch(None), 0);
        assert_eq!(parse_epoch(Some("1700000000")), 1_700_000_000);
        assert_eq!(parse_epoch(Some("garbage")), 0);
    }

    #[test]
    fn zero_detection() {
        let mut block = vec![0u8; 4099];
        assert!(is_zero(&block));
        block[4098] = 1;
        assert!(!is_zero(&block));
        block[4098] = 0;
        block[7] = 1;
        assert!(!is_zero(&block));
    }

    #[test]
    fn the_adopted_disk_is_moved_under_the_raw_name_and_readable() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let disk = dir.path().join("disk.raw");
        std::fs::write(&disk, b"disk").unwrap();
        std::fs::set_permissions(&disk, std::fs::Permissions::from_mode(0o600)).unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap();
        std::fs::write(out.join("balcao-1.2.0.raw"), b"older build").unwrap();
        let made = adopt_raw(&disk, &out, &appliance()).unwrap();
        assert_eq!(made, out.join("balcao-1.2.0.raw"));
        assert!(!disk.exists());
        assert_eq!(std::fs::read(&made).unwrap(), b"disk");
        let mode = std::fs::metadata(&made).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
    }

    #[test]
    fn a_sparse_file_hashes_as_the_bytes_it_reads_as() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sparse");
        let mut file = File::create(&path).unwrap();
        // Data, a hole of several read blocks, data, a trailing hole.
        file.write_all(b"start").unwrap();
        file.seek(SeekFrom::Start(3 * READ_BLOCK as u64 + 17))
            .unwrap();
        file.write_all(&[7u8; 9000]).unwrap();
        file.set_len(5 * READ_BLOCK as u64 + 3).unwrap();
        drop(file);
        let plain = sha256_reader(File::open(&path).unwrap()).unwrap();
        assert_eq!(sha256_file(&path).unwrap(), plain);
        // A file that is all hole, and an empty one.
        let hole = dir.path().join("hole");
        File::create(&hole).unwrap().set_len(1 << 21).unwrap();
        assert_eq!(
            sha256_file(&hole).unwrap(),
            sha256_reader(File::open(&hole).unwrap()).unwrap()
        );
        let empty = dir.path().join("empty");
        File::create(&empty).unwrap();
        assert_eq!(
            sha256_file(&empty).unwrap(),
            sha256_reader(&b""[..]).unwrap()
        );
    }

    #[test]
    fn sha256_of_a_known_string() {
        assert_eq!(
            sha256_reader(&b"abc"[..]).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    fn appliance() -> Appliance {
        Appliance {
            name: "balcao".into(),
            version: "1.2.0".into(),
            description: "x".into(),
            cpus: 2,
            memory_mib: 4096,
            firmware: Firmware::Efi,
        }
    }
}
