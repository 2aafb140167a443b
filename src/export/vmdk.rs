//! The stream-optimized VMDK, written by our own code in the layout of the
//! VMDK 5.0 technical note (the one ESXi's OVF import streams):
//!
//! ```text
//! sector 0      sparse header, magic KDMV, version 3, gdOffset = GD_AT_END
//! sector 1..21  embedded descriptor (createType="streamOptimized")
//! ..128         zero padding: the first grain starts at OVERHEAD_SECTORS
//! grains        per non-zero 64 KiB grain: 12-byte marker (LBA, length) and
//!               its zlib stream, padded to a sector; all-zero grains omitted
//! GT marker     after each 512 grains that hold data: marker + grain table
//! GD marker     + grain directory (0 for a table with no grains)
//! footer marker + a copy of the header with the real gdOffset
//! EOS marker    one all-zero sector, the last of the file
//! ```
//!
//! Grains are always written whole (64 KiB): qemu refuses a shorter one.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::path::Path;

use flate2::write::ZlibEncoder;
use flate2::Compression;

use super::{io_err, is_zero, qemu_img, read_full, ExportError, Format};

pub const SECTOR: u64 = 512;
/// Sectors per grain (64 KiB), as VMware writes them.
pub const GRAIN_SECTORS: u64 = 128;
const GRAIN_BYTES: usize = (GRAIN_SECTORS * SECTOR) as usize;
/// Grain table entries per table; 512 is the only count VMware's disk library reads.
pub const GTES_PER_GT: u64 = 512;
pub const DESCRIPTOR_OFFSET: u64 = 1;
pub const DESCRIPTOR_SECTORS: u64 = 20;
/// Sectors before the first grain: header, descriptor, padding to one grain.
pub const OVERHEAD_SECTORS: u64 = 128;
pub const MAGIC: &[u8; 4] = b"KDMV";
/// Version 3: the header may carry compressed grains and markers.
pub const VERSION: u32 = 3;
/// Flags: bit 0 valid newline test, bit 16 compressed grains, bit 17 markers.
pub const FLAGS: u32 = 1 | 1 << 16 | 1 << 17;
/// `gdOffset` in the leading header: "read the footer to find the directory".
pub const GD_AT_END: u64 = u64::MAX;
/// `compressAlgorithm` 1: DEFLATE in zlib framing.
pub const COMPRESS_DEFLATE: u16 = 1;

pub const MARKER_EOS: u32 = 0;
pub const MARKER_GT: u32 = 1;
pub const MARKER_GD: u32 = 2;
pub const MARKER_FOOTER: u32 = 3;

/// `ddb.toolsVersion` for Debian 12's open-vm-tools 2:12.2.0. VMware packs
/// tools version x.y.z as x*1024 + y*32 + z, so 12.2.0 is 12352.
pub const TOOLS_VERSION: u32 = 12 * 1024 + 2 * 32;
/// `ddb.toolsInstallType` 4: tools come from the guest's own packages
/// (open-vm-tools), so vSphere does not offer to upgrade them.
pub const TOOLS_INSTALL_TYPE: u32 = 4;
/// `ddb.adapterType`: the OVF attaches the disk to a SATA (AHCI) controller;
/// VMDK descriptors have no SATA value and VMware writes ATA disks as `ide`.
pub const ADAPTER_TYPE: &str = "ide";

/// What the writer produced, for the OVF's `DiskSection`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VmdkInfo {
    /// Virtual size in bytes (the raw size rounded up to a sector).
    pub capacity: u64,
    /// Bytes of the grains that hold data (uncompressed).
    pub populated: u64,
    /// Grains written.
    pub grains: u64,
}

/// Writes `raw` as a stream-optimized VMDK at `out`, checks it with
/// `qemu-img check` and compares it back to `raw`.
pub(super) fn export(raw: &Path, out: &Path, extent_name: &str) -> Result<VmdkInfo, ExportError> {
    let info = write_stream_optimized(raw, out, extent_name)?;
    qemu_img::check(Format::Vmdk, "vmdk", out)?;
    qemu_img::compare(Format::Vmdk, raw, "vmdk", out)?;
    Ok(info)
}

/// Writes `raw` as a stream-optimized VMDK at `out` (created or truncated).
/// `extent_name` is the file name the descriptor's extent line carries: the
/// name the file is published or packed under.
pub fn write_stream_optimized(
    raw: &Path,
    out: &Path,
    extent_name: &str,
) -> Result<VmdkInfo, ExportError> {
    let input = File::open(raw).map_err(io_err("open", raw))?;
    let raw_size = input.metadata().map_err(io_err("stat", raw))?.len();
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(out)
        .map_err(io_err("create", out))?;
    let mut writer = StreamWriter::new(BufWriter::with_capacity(1 << 20, file), raw_size);
    writer.write_all_grains(input, raw, out)?;
    writer.finish(extent_name).map_err(io_err("write", out))
}

struct StreamWriter<W: Write + Seek> {
    out: W,
    capacity_sectors: u64,
    /// Next free sector.
    next: u64,
    grain_dir: Vec<u32>,
    grain_table: Vec<u32>,
    grains: u64,
    /// CRC-32 of every written grain's LBA and data: the descriptor's CID,
    /// so the same disk always gives the same file.
    content: crc32fast::Hasher,
}

impl<W: Write + Seek> StreamWriter<W> {
    fn new(out: W, raw_size: u64) -> Self {
        let capacity_sectors = raw_size.div_ceil(SECTOR);
        let grain_count = capacity_sectors.div_ceil(GRAIN_SECTORS);
        let table_count = grain_count.div_ceil(GTES_PER_GT);
        StreamWriter {
            out,
            capacity_sectors,
            next: 0,
            grain_dir: vec![0; table_count as usize],
            grain_table: vec![0; GTES_PER_GT as usize],
            grains: 0,
            content: crc32fast::Hasher::new(),
        }
    }

    fn grain_count(&self) -> u64 {
        self.capacity_sectors.div_ceil(GRAIN_SECTORS)
    }

    fn write_all_grains(
        &mut self,
        mut input: File,
        raw: &Path,
        out: &Path,
    ) -> Result<(), ExportError> {
        let wrap = |e| ExportError::Io {
            action: "write",
            path: out.to_owned(),
            source: e,
        };

        // The header now says "directory at the end"; the descriptor sectors
        // stay zero until `finish` knows the content id.
        let header = header(self.capacity_sectors, GD_AT_END);
        self.out.write_all(&header).map_err(wrap)?;
        self.out
            .write_all(&vec![0u8; ((OVERHEAD_SECTORS - 1) * SECTOR) as usize])
            .map_err(wrap)?;
        self.next = OVERHEAD_SECTORS;

        // Grains are read in batches and compressed on every core; they are
        // written in order, so the file does not depend on the thread count.
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
        let grain_count = self.grain_count();
        let mut batch = vec![0u8; BATCH_GRAINS * GRAIN_BYTES];
        let mut first = 0u64;
        while first < grain_count {
            let count = (grain_count - first).min(BATCH_GRAINS as u64) as usize;
            let data = &mut batch[..count * GRAIN_BYTES];
            let n = read_full(&mut input, data).map_err(io_err("read", raw))?;
            // The last grain of a disk that is not a multiple of 64 KiB is
            // padded with zeros: readers expect whole grains.
            data[n..].fill(0);
            let compressed = compress_batch(data, threads).map_err(wrap)?;

            for (offset, zlib) in compressed.into_iter().enumerate() {
                let index = first + offset as u64;
                if let Some(zlib) = zlib {
                    let plain = &data[offset * GRAIN_BYTES..(offset + 1) * GRAIN_BYTES];
                    self.write_grain(index, plain, &zlib).map_err(wrap)?;
                }
                let last_in_table = index % GTES_PER_GT == GTES_PER_GT - 1;
                if last_in_table || index == grain_count - 1 {
                    self.write_grain_table(index / GTES_PER_GT).map_err(wrap)?;
                }
            }
            first += count as u64;
        }
        Ok(())
    }

    /// Writes one grain marker and its compressed data, padded to a sector.
    fn write_grain(&mut self, index: u64, plain: &[u8], zlib: &[u8]) -> io::Result<()> {
        let lba = index * GRAIN_SECTORS;
        let mut marker = [0u8; 12];
        marker[..8].copy_from_slice(&lba.to_le_bytes());
        marker[8..].copy_from_slice(&(zlib.len() as u32).to_le_bytes());
        self.out.write_all(&marker)?;
        self.out.write_all(zlib)?;
        let used = 12 + zlib.len() as u64;
        let padded = used.div_ceil(SECTOR) * SECTOR;
        self.out.write_all(&vec![0u8; (padded - used) as usize])?;

        self.grain_table[(index % GTES_PER_GT) as usize] = sector_u32(self.next)?;
        self.next += padded / SECTOR;
        self.grains += 1;
        self.content.update(&lba.to_le_bytes());
        self.content.update(plain);
        Ok(())
    }

    /// Writes the grain table for `table` if any of its grains hold data.
    fn write_grain_table(&mut self, table: u64) -> io::Result<()> {
        if self.grain_table.iter().all(|&e| e == 0) {
            return Ok(());
        }
        let bytes: Vec<u8> = self
            .grain_table
            .iter()
            .flat_map(|e| e.to_le_bytes())
            .collect();
        let offset = self.write_metadata(MARKER_GT, &bytes)?;
        self.grain_dir[table as usize] = sector_u32(offset)?;
        self.grain_table.fill(0);
        Ok(())
    }

    /// Writes a metadata marker and its sector-padded payload; returns the
    /// payload's first sector.
    fn write_metadata(&mut self, kind: u32, payload: &[u8]) -> io::Result<u64> {
        let sectors = (payload.len() as u64).div_ceil(SECTOR);
        self.out.write_all(&marker(sectors, kind))?;
        self.out.write_all(payload)?;
        let pad = sectors * SECTOR - payload.len() as u64;
        self.out.write_all(&vec![0u8; pad as usize])?;
        let offset = self.next + 1;
        self.next += 1 + sectors;
        Ok(offset)
    }

    fn finish(&mut self, extent_name: &str) -> io::Result<VmdkInfo> {
        let dir: Vec<u8> = self
            .grain_dir
            .iter()
            .flat_map(|e| e.to_le_bytes())
            .collect();
        let gd_offset = self.write_metadata(MARKER_GD, &dir)?;
        self.write_metadata(MARKER_FOOTER, &header(self.capacity_sectors, gd_offset))?;
        self.out.write_all(&marker(0, MARKER_EOS))?;

        let descriptor = descriptor(
            self.capacity_sectors,
            content_id(self.content.clone().finalize()),
            extent_name,
        );
        if descriptor.len() as u64 > DESCRIPTOR_SECTORS * SECTOR {
            return Err(io::Error::other(format!(
                "the VMDK descriptor is {} bytes, more than its {} sectors",
                descriptor.len(),
                DESCRIPTOR_SECTORS
            )));
        }
        self.out.seek(SeekFrom::Start(DESCRIPTOR_OFFSET * SECTOR))?;
        self.out.write_all(descriptor.as_bytes())?;
        self.out.flush()?;
        Ok(VmdkInfo {
            capacity: self.capacity_sectors * SECTOR,
            populated: self.grains * GRAIN_BYTES as u64,
            grains: self.grains,
        })
    }
}

/// Grains read and compressed at a time (8 MiB).
const BATCH_GRAINS: usize = 128;

/// Compresses each 64 KiB grain of `data` (zlib, default level) on up to
/// `threads` threads; `None` for an all-zero grain, which is not written.
fn compress_batch(data: &[u8], threads: usize) -> io::Result<Vec<Option<Vec<u8>>>> {
    let grains: Vec<&[u8]> = data.chunks(GRAIN_BYTES).collect();
    let per_thread = grains.len().div_ceil(threads.max(1)).max(1);
    std::thread::scope(|scope| {
        let workers: Vec<_> = grains
            .chunks(per_thread)
            .map(|part| {
                scope.spawn(move || part.iter().map(|g| compress_grain(g)).collect::<Vec<_>>())
            })
            .collect();
        let mut all = Vec::with_capacity(grains.len());
        for worker in workers {
            let part = worker
                .join()
                .map_err(|_| io::Error::other("a VMDK compression thread panicked"))?;
            for grain in part {
                all.push(grain?);
            }
        }
        Ok(all)
    })
}

fn compress_grain(grain: &[u8]) -> io::Result<Option<Vec<u8>>> {
    if is_zero(grain) {
        return Ok(None);
    }
    let mut encoder = ZlibEncoder::new(Vec::with_capacity(grain.len() / 2), Compression::default());
    encoder.write_all(grain)?;
    encoder.finish().map(Some)
}

fn sector_u32(sector: u64) -> io::Result<u32> {
    u32::try_from(sector).map_err(|_| {
        io::Error::other("the VMDK grows past 2 TiB of sectors, the limit of its 32-bit tables")
    })
}

/// The content id must not be 0xFFFFFFFF or 0xFFFFFFFE, which tools read as
/// "no parent" or "disk of zeros".
fn content_id(crc: u32) -> u32 {
    if crc >= 0xFFFF_FFFE {
        crc ^ 0x8000_0000
    } else {
        crc
    }
}

/// A 512-byte sparse extent header (all fields little-endian, packed).
pub fn header(capacity_sectors: u64, gd_offset: u64) -> [u8; 512] {
    let mut h = [0u8; 512];
    h[0..4].copy_from_slice(MAGIC);
    h[4..8].copy_from_slice(&VERSION.to_le_bytes());
    h[8..12].copy_from_slice(&FLAGS.to_le_bytes());
    h[12..20].copy_from_slice(&capacity_sectors.to_le_bytes());
    h[20..28].copy_from_slice(&GRAIN_SECTORS.to_le_bytes());
    h[28..36].copy_from_slice(&DESCRIPTOR_OFFSET.to_le_bytes());
    h[36..44].copy_from_slice(&DESCRIPTOR_SECTORS.to_le_bytes());
    h[44..48].copy_from_slice(&(GTES_PER_GT as u32).to_le_bytes());
    // 48..56 rgdOffset: no redundant directory in a stream.
    h[56..64].copy_from_slice(&gd_offset.to_le_bytes());
    h[64..72].copy_from_slice(&OVERHEAD_SECTORS.to_le_bytes());
    // 72 uncleanShutdown = 0, then the newline-mangling detector.
    h[73] = b'\n';
    h[74] = b' ';
    h[75] = b'\r';
    h[76] = b'\n';
    h[77..79].copy_from_slice(&COMPRESS_DEFLATE.to_le_bytes());
    h
}

/// A metadata marker sector: `sectors` of payload follow, `kind` says what.
fn marker(sectors: u64, kind: u32) -> [u8; 512] {
    let mut m = [0u8; 512];
    m[0..8].copy_from_slice(&sectors.to_le_bytes());
    // 8..12: size 0 tells a metadata marker from a grain marker.
    m[12..16].copy_from_slice(&kind.to_le_bytes());
    m
}

fn descriptor(capacity_sectors: u64, cid: u32, extent_name: &str) -> String {
    // Geometry as VMware gives ATA disks: 16 heads, 63 sectors, at most
    // 16383 cylinders.
    let cylinders = (capacity_sectors / (16 * 63)).clamp(1, 16383);
    format!(
        "# Disk DescriptorFile\n\
         version=1\n\
         encoding=\"UTF-8\"\n\
         CID={cid:08x}\n\
         parentCID=ffffffff\n\
         createType=\"streamOptimized\"\n\
         \n\
         # Extent description\n\
         RW {capacity_sectors} SPARSE \"{extent_name}\"\n\
         \n\
         # The Disk Data Base\n\
         #DDB\n\
         \n\
         ddb.adapterType = \"{ADAPTER_TYPE}\"\n\
         ddb.geometry.cylinders = \"{cylinders}\"\n\
         ddb.geometry.heads = \"16\"\n\
         ddb.geometry.sectors = \"63\"\n\
         ddb.toolsInstallType = \"{TOOLS_INSTALL_TYPE}\"\n\
         ddb.toolsVersion = \"{TOOLS_VERSION}\"\n\
         ddb.virtualHWVersion = \"4\"\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Cursor, Read};

    #[test]
    fn tools_version_is_open_vm_tools_12_2_0() {
        assert_eq!(TOOLS_VERSION, 12352);
    }

    #[test]
    fn header_fields_sit_at_their_offsets() {
        let h = header(131072, 777);
        assert_eq!(&h[0..4], b"KDMV");
        assert_eq!(u32::from_le_bytes(h[4..8].try_into().unwrap()), 3);
        assert_eq!(
            u32::from_le_bytes(h[8..12].try_into().unwrap()),
            0x0003_0001
        );
        assert_eq!(u64::from_le_bytes(h[12..20].try_into().unwrap()), 131072);
        assert_eq!(u64::from_le_bytes(h[20..28].try_into().unwrap()), 128);
        assert_eq!(u32::from_le_bytes(h[44..48].try_into().unwrap()), 512);
        assert_eq!(u64::from_le_bytes(h[56..64].try_into().unwrap()), 777);
        assert_eq!(&h[73..77], b"\n \r\n");
        assert_eq!(u16::from_le_bytes(h[77..79].try_into().unwrap()), 1);
        assert!(h[79..].iter().all(|&b| b == 0));
    }

    #[test]
    fn thread_count_does_not_change_the_output() {
        let mut data = vec![0u8; 5 * GRAIN_BYTES];
        for (i, b) in data.iter_mut().enumerate().skip(GRAIN_BYTES) {
            *b = (i % 251) as u8;
        }
        data[3 * GRAIN_BYTES..4 * GRAIN_BYTES].fill(0);
        let one = compress_batch(&data, 1).unwrap();
        let three = compress_batch(&data, 3).unwrap();
        assert_eq!(one, three);
        let present: Vec<bool> = one.iter().map(Option::is_some).collect();
        assert_eq!(present, [false, true, true, false, true]);
    }

    /// Writes a small disk into memory and walks the stream: grain markers
    /// decompress to the data, tables point at them, the file ends with
    /// footer marker, footer, EOS.
    #[test]
    fn stream_layout_in_memory() {
        // 3 grains of data in a 40-grain disk whose last grain is partial.
        let size = 39 * GRAIN_BYTES as u64 + 1536;
        let mut disk = vec![0u8; size as usize];
        disk[5] = 1;
        disk[GRAIN_BYTES * 7 + 100] = 7;
        *disk.last_mut().unwrap() = 9;
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("d.raw");
        std::fs::write(&raw, &disk).unwrap();

        let mut w = StreamWriter::new(Cursor::new(Vec::new()), size);
        w.write_all_grains(File::open(&raw).unwrap(), &raw, Path::new("mem"))
            .unwrap();
        let info = w.finish("d.vmdk").unwrap();
        assert_eq!(info.grains, 3);
        assert_eq!(info.capacity, size);
        let bytes = w.out.into_inner();
        assert_eq!(bytes.len() % 512, 0);

        let sector = |n: usize| &bytes[n * 512..(n + 1) * 512];
        let n = bytes.len() / 512;
        assert!(sector(n - 1).iter().all(|&b| b == 0), "EOS last");
        assert_eq!(
            u32::from_le_bytes(sector(n - 3)[12..16].try_into().unwrap()),
            3
        );
        let footer = sector(n - 2);
        assert_eq!(&footer[0..4], b"KDMV");
        let gd = u64::from_le_bytes(footer[56..64].try_into().unwrap()) as usize;
        assert_eq!(
            u32::from_le_bytes(sector(gd - 1)[12..16].try_into().unwrap()),
            2
        );
        let gt = u32::from_le_bytes(sector(gd)[0..4].try_into().unwrap()) as usize;
        assert_eq!(
            u32::from_le_bytes(sector(gt - 1)[12..16].try_into().unwrap()),
            1
        );

        for (index, expect_byte) in [(0usize, (5usize, 1u8)), (7, (100, 7)), (39, (1535, 9))] {
            let at = gt * 512 + index * 4;
            let grain_sector = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
            let m = sector(grain_sector);
            assert_eq!(
                u64::from_le_bytes(m[0..8].try_into().unwrap()),
                index as u64 * GRAIN_SECTORS
            );
            let len = u32::from_le_bytes(m[8..12].try_into().unwrap()) as usize;
            let start = grain_sector * 512 + 12;
            let mut plain = Vec::new();
            flate2::read::ZlibDecoder::new(&bytes[start..start + len])
                .read_to_end(&mut plain)
                .unwrap();
            assert_eq!(plain.len(), GRAIN_BYTES);
            assert_eq!(plain[expect_byte.0], expect_byte.1);
        }
        let text = String::from_utf8_lossy(&bytes[512..512 * 21]);
        assert!(text.contains("createType=\"streamOptimized\""), "{text}");
        assert!(text.contains("RW 4995 SPARSE \"d.vmdk\""), "{text}");
        assert!(text.contains("ddb.toolsVersion = \"12352\""), "{text}");
    }
}
