//! The raw format: a sparse copy of the finished disk. Blocks that are all
//! zero are skipped (left as holes), so a mostly empty 20 GiB disk costs only
//! the space of its data.

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

use super::{io_err, is_zero, qemu_img, read_full, ExportError, Format};

/// Granularity of the holes: a zero run shorter than this is written out.
const HOLE_BLOCK: usize = 64 * 1024;

pub(super) fn export(raw: &Path, raw_size: u64, out: &Path) -> Result<(), ExportError> {
    sparse_copy(raw, raw_size, out)?;
    qemu_img::compare(Format::Raw, raw, "raw", out)
}

fn sparse_copy(raw: &Path, raw_size: u64, out: &Path) -> Result<(), ExportError> {
    let mut input = File::open(raw).map_err(io_err("open", raw))?;
    let mut output = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(out)
        .map_err(io_err("open", out))?;

    let mut buf = vec![0u8; super::READ_BLOCK];
    let mut offset = 0u64;
    loop {
        let n = read_full(&mut input, &mut buf).map_err(io_err("read", raw))?;
        if n == 0 {
            break;
        }
        for piece in buf[..n].chunks(HOLE_BLOCK) {
            if !is_zero(piece) {
                output
                    .seek(SeekFrom::Start(offset))
                    .and_then(|_| output.write_all(piece))
                    .map_err(io_err("write", out))?;
            }
            offset += piece.len() as u64;
        }
    }
    if offset != raw_size {
        return Err(ExportError::RawDisk {
            path: raw.to_owned(),
            reason: format!("it changed size while being copied ({raw_size} -> {offset} bytes)"),
        });
    }

    // The length makes the trailing hole part of the file.
    output.set_len(offset).map_err(io_err("resize", out))?;
    output.sync_all().map_err(io_err("flush", out))
}
