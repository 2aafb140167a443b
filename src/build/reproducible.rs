//! Reproducible builds: with the same recipe, lockfile, mirror state and
//! `SOURCE_DATE_EPOCH`, two builds give the same bytes. mmdebstrap clamps
//! the root tarball's times; here the customized root folder is clamped too,
//! the filesystem makers get the epoch and a fixed feature set, and
//! `--check-reproducible` compares two builds and says where they part.

use std::ffi::CString;
use std::fs::{self, File};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::command::{find_program, Cmd};
use crate::disk::Layout;

/// The ext4 features of the root filesystem, whatever the build host's
/// `/etc/mke2fs.conf` says: e2fsprogs 1.47.1 and later enable
/// `metadata_csum_seed` and `orphan_file` by default, which Debian 12's
/// GRUB cannot read.
pub const MKE2FS_CONFIG: &str = "[defaults]\n\
\tbase_features = sparse_super,large_file,filetype,resize_inode,dir_index,ext_attr\n\
\tdefault_mntopts = acl,user_xattr\n\
\tenable_periodic_fsck = 0\n\
\tblocksize = 4096\n\
\tinode_size = 256\n\
\tinode_ratio = 16384\n\
\n\
[fs_types]\n\
\text4 = {\n\
\t\tfeatures = has_journal,extent,huge_file,flex_bg,metadata_csum,64bit,dir_nlink,extra_isize\n\
\t}\n";

#[derive(Debug, thiserror::Error)]
pub enum ReproducibleError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot set the times of {path}: {source}")]
    Times {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ReproducibleError + '_ {
    move |source| ReproducibleError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Sets the access and modification times of everything under `root` that
/// is newer than `epoch` to `epoch` (symbolic links themselves, not their
/// targets). Returns how many entries were changed.
pub fn clamp_times(root: &Path, epoch: u64) -> Result<usize, ReproducibleError> {
    let mut changed = 0;
    let mut pending = vec![root.to_owned()];
    // Directories last: setting a child's times does not touch its parent,
    // but creating nothing here keeps the order simple anyway.
    while let Some(path) = pending.pop() {
        let meta = fs::symlink_metadata(&path).map_err(io(&path))?;
        if meta.is_dir() {
            for entry in fs::read_dir(&path).map_err(io(&path))? {
                pending.push(entry.map_err(io(&path))?.path());
            }
        }
        let newer = |secs: i64| secs < 0 || secs as u64 > epoch;
        if newer(meta.mtime()) || newer(meta.atime()) {
            set_times(&path, epoch)?;
            changed += 1;
        }
    }
    Ok(changed)
}

fn set_times(path: &Path, epoch: u64) -> Result<(), ReproducibleError> {
    let c_path =
        CString::new(path.as_os_str().as_bytes()).map_err(|_| ReproducibleError::Times {
            path: path.to_owned(),
            source: std::io::Error::other("NUL byte in the path"),
        })?;
    let time = libc::timespec {
        tv_sec: epoch as libc::time_t,
        tv_nsec: 0,
    };
    let times = [time, time];
    // SAFETY: the path is a valid C string and `times` holds two timespecs,
    // as utimensat requires.
    let rc = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c_path.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(ReproducibleError::Times {
            path: path.to_owned(),
            source: std::io::Error::last_os_error(),
        })
    }
}

/// Whether this host's mke2fs writes `SOURCE_DATE_EPOCH` into every inode
/// (e2fsprogs 1.47.1 and later); older ones copy the host's change times.
pub fn mke2fs_honours_epoch() -> Option<bool> {
    let out = Cmd::new("mke2fs").arg("-V").run().ok()?;
    let text = format!(
        "{}{}",
        out.stdout_text(),
        String::from_utf8_lossy(&out.stderr)
    );
    let version = text.split_whitespace().nth(1)?;
    let parts: Vec<u32> = version
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|p| p.parse().ok())
        .collect();
    Some(parts.as_slice() >= [1, 47, 1].as_slice())
}

/// The first byte offset at which two files differ, counting a length
/// difference as a difference at the shorter one's end.
pub fn first_difference(a: &Path, b: &Path) -> Result<Option<u64>, ReproducibleError> {
    let mut fa = File::open(a).map_err(io(a))?;
    let mut fb = File::open(b).map_err(io(b))?;
    let mut ba = vec![0u8; 1 << 20];
    let mut bb = vec![0u8; 1 << 20];
    let mut at = 0u64;
    loop {
        let na = read_full(&mut fa, &mut ba).map_err(io(a))?;
        let nb = read_full(&mut fb, &mut bb).map_err(io(b))?;
        let n = na.min(nb);
        if let Some(i) = (0..n).find(|&i| ba[i] != bb[i]) {
            return Ok(Some(at + i as u64));
        }
        if na != nb {
            return Ok(Some(at + n as u64));
        }
        if na == 0 {
            return Ok(None);
        }
        at += na as u64;
    }
}

fn read_full(file: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// Where a byte of the raw disk lies, in words: the partition, and for the
/// root filesystem the file that owns the block when debugfs can tell.
pub fn describe_raw_offset(raw: &Path, layout: &Layout, offset: u64) -> String {
    let parts = [
        ("BIOS boot partition (GRUB core.img)", &layout.bios_boot),
        ("EFI system partition", &layout.esp),
        ("root filesystem", &layout.root),
    ];
    for (name, part) in parts {
        let start = part.offset();
        if offset >= start && offset < start + part.size() {
            let inside = offset - start;
            let mut text = format!("{name}, byte {inside} of the partition");
            if std::ptr::eq(part, &layout.root) {
                if let Some(file) = ext4_owner(raw, start, inside / 4096) {
                    text.push_str(&format!(" ({file})"));
                }
            }
            return text;
        }
    }
    if offset < layout.bios_boot.offset() {
        "partition table or boot sector".to_owned()
    } else {
        "outside every partition (backup partition table)".to_owned()
    }
}

/// The path of the file owning `block` of the ext4 filesystem at `start`,
/// or what kind of metadata it is.
fn ext4_owner(raw: &Path, start: u64, block: u64) -> Option<String> {
    find_program("debugfs")?;
    let device = format!("{}?offset={start}", raw.display());
    let icheck = Cmd::new("debugfs")
        .args(["-R", &format!("icheck {block}")])
        .arg(&device)
        .run()
        .ok()?
        .stdout_text();
    let inode = icheck.lines().nth(1)?.split_whitespace().nth(1)?.to_owned();
    if inode.starts_with('<') {
        return Some(format!("block {block}: filesystem metadata, no file"));
    }
    let ncheck = Cmd::new("debugfs")
        .args(["-R", &format!("ncheck {inode}")])
        .arg(&device)
        .run()
        .ok()?
        .stdout_text();
    let path = ncheck.lines().nth(1)?.split_whitespace().nth(1)?.to_owned();
    Some(format!("block {block}, inode {inode}: {path}"))
}

/// The report of two builds' artifacts compared name by name: empty when
/// every file is identical.
pub fn compare_outputs(
    first: &Path,
    second: &Path,
    layout: &Layout,
) -> Result<Vec<String>, ReproducibleError> {
    let mut names: Vec<String> = fs::read_dir(first)
        .map_err(io(first))?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut report = Vec::new();
    for name in names {
        let (a, b) = (first.join(&name), second.join(&name));
        if !b.is_file() {
            report.push(format!("{name}: only the first build made it"));
            continue;
        }
        if let Some(offset) = first_difference(&a, &b)? {
            let mut line = format!("{name}: first difference at byte {offset}");
            if name.ends_with(".raw") {
                line.push_str(&format!(" ({})", describe_raw_offset(&a, layout, offset)));
            }
            report.push(line);
        }
    }
    Ok(report)
}

/// Runs diffoscope (when installed) on the first differing file that is
/// small enough for it to finish in reasonable time, writing its report
/// beside the two builds; returns a line saying where it is.
pub fn diffoscope(first: &Path, second: &Path, report: &[String], into: &Path) -> Option<String> {
    find_program("diffoscope")?;
    let name = report
        .iter()
        .filter_map(|line| line.split(": ").next())
        .find(|name| fs::metadata(first.join(name)).is_ok_and(|m| m.len() <= 256 << 20))?;
    let out = into.join("diffoscope.txt");
    // diffoscope exits 1 when it finds differences, which is expected here.
    let _ = Cmd::new("diffoscope")
        .arg("--text")
        .arg(&out)
        .arg(first.join(name))
        .arg(second.join(name))
        .run();
    out.is_file()
        .then(|| format!("diffoscope's report on {name}: {}", out.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn clamping_sets_newer_times_and_leaves_links_dangling() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir(root.join("etc")).unwrap();
        fs::write(root.join("etc/new"), "x").unwrap();
        symlink("/nowhere", root.join("etc/link")).unwrap();
        let old = root.join("old");
        fs::write(&old, "y").unwrap();
        set_times(&old, 1_000).unwrap();
        let changed = clamp_times(root, 1_700_000_000).unwrap();
        // root, etc, etc/new, etc/link; not `old`, already older.
        assert_eq!(changed, 4);
        for p in ["", "etc", "etc/new", "etc/link"] {
            let meta = fs::symlink_metadata(root.join(p)).unwrap();
            assert_eq!(meta.mtime(), 1_700_000_000, "{p}");
        }
        assert_eq!(fs::symlink_metadata(&old).unwrap().mtime(), 1_000);
        assert_eq!(clamp_times(root, 1_700_000_000).unwrap(), 0);
    }

    #[test]
    fn the_first_difference_is_found_at_its_byte() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        let mut bytes = vec![7u8; 3 << 20];
        fs::write(&a, &bytes).unwrap();
        fs::write(&b, &bytes).unwrap();
        assert_eq!(first_difference(&a, &b).unwrap(), None);
        bytes[(2 << 20) + 5] = 8;
        fs::write(&b, &bytes).unwrap();
        assert_eq!(first_difference(&a, &b).unwrap(), Some((2 << 20) + 5));
        fs::write(&b, &bytes[..100]).unwrap();
        assert_eq!(first_difference(&a, &b).unwrap(), Some(100));
    }

    #[test]
    fn offsets_are_named_by_partition() {
        let layout = Layout::cloud(2 << 30, "t").unwrap();
        let none = Path::new("/nonexistent.raw");
        assert_eq!(
            describe_raw_offset(none, &layout, 0),
            "partition table or boot sector"
        );
        assert!(describe_raw_offset(none, &layout, layout.esp.offset() + 10)
            .starts_with("EFI system partition, byte 10"));
        assert!(describe_raw_offset(none, &layout, layout.root.offset())
            .starts_with("root filesystem, byte 0"));
    }

    #[test]
    fn outputs_are_compared_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        fs::create_dir_all(&a).unwrap();
        fs::create_dir_all(&b).unwrap();
        for d in [&a, &b] {
            fs::write(d.join("SHA256SUMS"), "same").unwrap();
        }
        fs::write(a.join("x.qcow2"), "abc").unwrap();
        fs::write(b.join("x.qcow2"), "abd").unwrap();
        fs::write(a.join("x.vhd"), "only").unwrap();
        let layout = Layout::cloud(2 << 30, "t").unwrap();
        let report = compare_outputs(&a, &b, &layout).unwrap();
        assert_eq!(
            report,
            [
                "x.qcow2: first difference at byte 2",
                "x.vhd: only the first build made it"
            ]
        );
    }
}
