//! Putting the disk together from a finished root folder, without mounting
//! anything: GRUB's images made with the image's own `grub-mkimage` (run in a
//! chroot, so the host needs no GRUB), the EFI system partition made with
//! `mkfs.vfat` and filled with mtools, the ext4 root made from the folder by
//! `mkfs.ext4 -d` straight into the disk file at its partition's offset, then
//! the partition table and boot sectors.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::command::{Cmd, CommandError};

use super::{bootsector, Layout};

/// GRUB modules both early images need: find the root by UUID on a GPT disk,
/// read ext4, and hand over to the real grub.cfg with a serial console.
const GRUB_COMMON_MODULES: &[&str] = &[
    "part_gpt",
    "part_msdos",
    "ext2",
    "fat",
    "search",
    "search_fs_uuid",
    "configfile",
    "normal",
    "linux",
    "serial",
    "terminal",
    "echo",
    "test",
    "all_video",
    "gzio",
];

/// What the kernel is told on every boot: the root by UUID, messages on both
/// the VGA console and the first serial port (the last one named becomes
/// /dev/console, which is where systemd's own messages go).
pub fn kernel_cmdline(root_uuid: &str) -> String {
    format!("root=UUID={root_uuid} ro console=tty0 console=ttyS0,115200")
}

#[derive(Debug, thiserror::Error)]
pub enum AssembleError {
    #[error("no kernel in {0}/boot (is linux-image-amd64 in the recipe's packages?)")]
    NoKernel(PathBuf),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error(transparent)]
    Gpt(#[from] super::gpt::GptError),
    #[error(transparent)]
    BootSector(#[from] bootsector::BootSectorError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> AssembleError + '_ {
    move |source| AssembleError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Identifiers of the filesystems, fixed by the layout's seed.
#[derive(Debug, Clone)]
pub struct FilesystemIds {
    pub root_uuid: String,
    pub root_hash_seed: String,
    /// FAT volume id as 8 hex digits; fstab writes it `XXXX-XXXX`.
    pub esp_volume_id: String,
}

impl FilesystemIds {
    pub fn for_layout(layout: &Layout) -> FilesystemIds {
        let seed = layout.disk_guid.to_string();
        FilesystemIds {
            root_uuid: super::Guid::derived(&["root-fs", &seed]).to_string(),
            root_hash_seed: super::Guid::derived(&["root-hash", &seed]).to_string(),
            esp_volume_id: format!("{:08X}", layout.esp.guid.short_id()),
        }
    }

    pub fn esp_fstab_id(&self) -> String {
        format!("{}-{}", &self.esp_volume_id[..4], &self.esp_volume_id[4..])
    }
}

/// The newest kernel in `root/boot`, as its version string.
pub fn kernel_version(root: &Path) -> Result<String, AssembleError> {
    let boot = root.join("boot");
    let mut versions: Vec<String> = fs::read_dir(&boot)
        .map_err(io(&boot))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_prefix("vmlinuz-"))
                .map(str::to_owned)
        })
        .filter(|v| boot.join(format!("initrd.img-{v}")).is_file())
        .collect();
    versions.sort_by(|a, b| compare_versions(a, b));
    versions
        .pop()
        .ok_or_else(|| AssembleError::NoKernel(root.to_owned()))
}

/// Orders kernel versions by their numeric parts (6.1.0-10 after 6.1.0-9).
fn compare_versions(a: &str, b: &str) -> std::cmp::Ordering {
    let parts = |s: &str| -> Vec<u64> {
        s.split(|c: char| !c.is_ascii_digit())
            .filter(|p| !p.is_empty())
            .filter_map(|p| p.parse().ok())
            .collect()
    };
    parts(a).cmp(&parts(b)).then_with(|| a.cmp(b))
}

/// The real GRUB configuration in `/boot/grub/grub.cfg`. A kernel update
/// inside the appliance regenerates it with update-grub from
/// `/etc/default/grub`, which the base overlay sets to the same consoles.
pub fn grub_cfg(kernel: &str, ids: &FilesystemIds, title: &str) -> String {
    format!(
        "# Written by balcao at build time; update-grub replaces it after a kernel update.\n\
         serial --unit=0 --speed=115200\n\
         terminal_input console serial\n\
         terminal_output console serial\n\
         set timeout=2\n\
         set default=0\n\
         menuentry '{title}' {{\n\
         \tsearch --no-floppy --fs-uuid --set=root {uuid}\n\
         \tlinux /boot/vmlinuz-{kernel} {cmdline}\n\
         \tinitrd /boot/initrd.img-{kernel}\n\
         }}\n",
        uuid = ids.root_uuid,
        cmdline = kernel_cmdline(&ids.root_uuid),
    )
}

/// The small configuration built into both GRUB images: find the root
/// filesystem by UUID and read the real grub.cfg from it.
pub fn early_cfg(ids: &FilesystemIds) -> String {
    format!(
        "search --no-floppy --fs-uuid --set=root {uuid}\n\
         set prefix=($root)/boot/grub\n\
         configfile ($root)/boot/grub/grub.cfg\n",
        uuid = ids.root_uuid
    )
}

/// Lays GRUB into the root folder: module folders under /boot/grub, grub.cfg,
/// and the two boot images (returned as bytes: BIOS core.img, EFI loader).
pub fn install_grub(
    root: &Path,
    ids: &FilesystemIds,
    title: &str,
) -> Result<(Vec<u8>, Vec<u8>), AssembleError> {
    let kernel = kernel_version(root)?;
    let grub_dir = root.join("boot/grub");
    fs::create_dir_all(&grub_dir).map_err(io(&grub_dir))?;
    for platform in ["i386-pc", "x86_64-efi"] {
        let from = root.join("usr/lib/grub").join(platform);
        let to = grub_dir.join(platform);
        if to.exists() {
            fs::remove_dir_all(&to).map_err(io(&to))?;
        }
        fs::create_dir_all(&to).map_err(io(&to))?;
        for entry in fs::read_dir(&from).map_err(io(&from))? {
            let entry = entry.map_err(io(&from))?;
            let name = entry.file_name();
            let keep = name
                .to_str()
                .is_some_and(|n| n.ends_with(".mod") || n.ends_with(".lst") || n.ends_with(".img"));
            if keep {
                fs::copy(entry.path(), to.join(&name)).map_err(io(&entry.path()))?;
            }
        }
    }
    let cfg = grub_dir.join("grub.cfg");
    fs::write(&cfg, grub_cfg(&kernel, ids, title)).map_err(io(&cfg))?;

    // grub-mkimage runs inside the image so its modules and tool agree.
    let scratch = root.join("var/tmp/balcao-grub");
    fs::create_dir_all(&scratch).map_err(io(&scratch))?;
    let early = scratch.join("early.cfg");
    fs::write(&early, early_cfg(ids)).map_err(io(&early))?;
    let mkimage = |format: &str, output: &str, extra: &[&str]| -> Result<Vec<u8>, AssembleError> {
        Cmd::new("chroot")
            .arg(root)
            .args([
                "grub-mkimage",
                "-O",
                format,
                "-o",
                &format!("/var/tmp/balcao-grub/{output}"),
                "-c",
                "/var/tmp/balcao-grub/early.cfg",
                "-p",
                "/boot/grub",
            ])
            .args(extra)
            .args(GRUB_COMMON_MODULES)
            .run()?;
        let path = scratch.join(output);
        fs::read(&path).map_err(io(&path))
    };
    let core = mkimage("i386-pc", "core.img", &["biosdisk"])?;
    let efi = mkimage("x86_64-efi", "grubx64.efi", &["efi_gop", "efi_uga"])?;
    fs::remove_dir_all(&scratch).map_err(io(&scratch))?;
    Ok((core, efi))
}

/// Makes the EFI system partition image with the loader at the removable
/// path, which firmware with no boot entries (a freshly imported VM) tries.
pub fn make_esp(
    path: &Path,
    size: u64,
    ids: &FilesystemIds,
    efi_loader: &[u8],
    scratch: &Path,
    epoch: Option<u64>,
) -> Result<(), AssembleError> {
    let _ = fs::remove_file(path);
    // With an epoch, every time mkfs.vfat and mtools write is that epoch
    // (`--invariant` fixes the rest of what mkfs.vfat would vary).
    let with_epoch = |cmd: Cmd| match epoch {
        Some(e) => cmd.env("SOURCE_DATE_EPOCH", e.to_string()),
        None => cmd,
    };
    let mut mkfs = Cmd::new("mkfs.vfat");
    if epoch.is_some() {
        mkfs = mkfs.arg("--invariant");
    }
    with_epoch(
        mkfs.args(["-C", "-F", "32", "-n", "EFI", "-i", &ids.esp_volume_id])
            .arg(path)
            .arg((size / 1024).to_string()),
    )
    .run()?;
    let loader = scratch.join("BOOTX64.EFI");
    fs::write(&loader, efi_loader).map_err(io(&loader))?;
    if let Some(e) = epoch {
        File::options()
            .write(true)
            .open(&loader)
            .and_then(|f| f.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(e)))
            .map_err(io(&loader))?;
    }
    let image = format!("{}", path.display());
    with_epoch(
        Cmd::new("mmd")
            .args(["-i", &image, "::/EFI", "::/EFI/BOOT"])
            .env("MTOOLS_SKIP_CHECK", "1"),
    )
    .run()?;
    with_epoch(
        Cmd::new("mcopy")
            .args(["-m", "-i", &image])
            .arg(&loader)
            .arg("::/EFI/BOOT/BOOTX64.EFI")
            .env("MTOOLS_SKIP_CHECK", "1"),
    )
    .run()?;
    fs::remove_file(&loader).map_err(io(&loader))?;
    Ok(())
}

/// What goes into the disk: the prepared root folder, GRUB's BIOS core
/// image and the EFI system partition's image.
pub struct Contents<'a> {
    pub root: &'a Path,
    pub core_img: &'a [u8],
    pub esp_img: &'a Path,
}

/// Writes the whole disk image at `disk_path`.
pub fn assemble(
    disk_path: &Path,
    layout: &Layout,
    ids: &FilesystemIds,
    contents: &Contents,
    scratch: &Path,
    epoch: Option<u64>,
) -> Result<(), AssembleError> {
    let Contents {
        root,
        core_img,
        esp_img,
    } = *contents;
    let mut disk = File::create(disk_path).map_err(io(disk_path))?;
    disk.set_len(layout.disk_bytes).map_err(io(disk_path))?;
    layout.write(&mut disk)?;
    drop(disk);

    // ext4 straight into the disk file at the root partition's offset, with
    // the builder's own feature set. With an epoch, e2fsprogs 1.47.1 and
    // later write it as every inode's and the superblock's times.
    let blocks = layout.root.size() / 4096;
    let config = scratch.join("mke2fs.conf");
    fs::write(&config, crate::build::reproducible::MKE2FS_CONFIG).map_err(io(&config))?;
    let mut mkfs = Cmd::new("mkfs.ext4").env("MKE2FS_CONFIG", &config);
    if let Some(e) = epoch {
        mkfs = mkfs
            .env("SOURCE_DATE_EPOCH", e.to_string())
            .env("E2FSPROGS_FAKE_TIME", e.to_string());
    }
    mkfs.args(["-q", "-F", "-b", "4096", "-L", "root", "-U", &ids.root_uuid])
        .args([
            "-E",
            &format!(
                "offset={},hash_seed={},nodiscard",
                layout.root.offset(),
                ids.root_hash_seed
            ),
        ])
        .arg("-d")
        .arg(root)
        .arg(disk_path)
        .arg(blocks.to_string())
        .run()?;

    let mut disk = OpenOptions::new()
        .read(true)
        .write(true)
        .open(disk_path)
        .map_err(io(disk_path))?;
    copy_sparse(esp_img, &mut disk, layout.esp.offset(), layout.esp.size())?;

    let core = bootsector::core(
        core_img,
        layout.bios_boot.first_lba,
        layout.bios_boot.size(),
    )?;
    disk.seek(SeekFrom::Start(layout.bios_boot.offset()))
        .map_err(io(disk_path))?;
    disk.write_all(&core).map_err(io(disk_path))?;

    let boot_img_path = root.join("usr/lib/grub/i386-pc/boot.img");
    let boot_img = fs::read(&boot_img_path).map_err(io(&boot_img_path))?;
    let mut existing = [0u8; 512];
    disk.seek(SeekFrom::Start(0)).map_err(io(disk_path))?;
    disk.read_exact(&mut existing).map_err(io(disk_path))?;
    let mbr = bootsector::mbr(&boot_img, &existing, layout.bios_boot.first_lba)?;
    disk.seek(SeekFrom::Start(0)).map_err(io(disk_path))?;
    disk.write_all(&mbr).map_err(io(disk_path))?;
    disk.sync_all().map_err(io(disk_path))?;
    Ok(())
}

/// Copies `from` into `to` at `offset`, skipping all-zero blocks so the disk
/// file stays sparse.
fn copy_sparse(from: &Path, to: &mut File, offset: u64, room: u64) -> Result<(), AssembleError> {
    let mut src = File::open(from).map_err(io(from))?;
    let len = src.metadata().map_err(io(from))?.len();
    if len > room {
        return Err(AssembleError::Io {
            path: from.to_owned(),
            source: std::io::Error::other(format!("{len} bytes do not fit in {room}")),
        });
    }
    let mut buf = vec![0u8; 1 << 20];
    let mut at = 0u64;
    loop {
        let n = src.read(&mut buf).map_err(io(from))?;
        if n == 0 {
            break;
        }
        if buf[..n].iter().any(|&b| b != 0) {
            to.seek(SeekFrom::Start(offset + at)).map_err(io(from))?;
            to.write_all(&buf[..n]).map_err(io(from))?;
        }
        at += n as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_versions_sort_numerically() {
        let dir = tempfile::tempdir().unwrap();
        let boot = dir.path().join("boot");
        fs::create_dir(&boot).unwrap();
        for v in ["6.1.0-9-amd64", "6.1.0-10-amd64", "6.1.0-11-amd64"] {
            fs::write(boot.join(format!("vmlinuz-{v}")), "").unwrap();
            if v != "6.1.0-11-amd64" {
                fs::write(boot.join(format!("initrd.img-{v}")), "").unwrap();
            }
        }
        // -11 has no initrd, so it is not bootable yet.
        assert_eq!(kernel_version(dir.path()).unwrap(), "6.1.0-10-amd64");
        let empty = tempfile::tempdir().unwrap();
        fs::create_dir(empty.path().join("boot")).unwrap();
        assert!(kernel_version(empty.path())
            .unwrap_err()
            .to_string()
            .contains("linux-image-amd64"));
    }

    #[test]
    fn grub_config_finds_root_by_uuid_with_both_consoles() {
        let layout = Layout::cloud(2 << 30, "t").unwrap();
        let ids = FilesystemIds::for_layout(&layout);
        let cfg = grub_cfg("6.1.0-10-amd64", &ids, "Balcão");
        assert!(cfg.contains(&format!("--set=root {}", ids.root_uuid)));
        assert!(cfg.contains("console=tty0 console=ttyS0,115200"));
        assert!(cfg.contains("/boot/vmlinuz-6.1.0-10-amd64 root=UUID="));
        assert!(early_cfg(&ids).contains("configfile ($root)/boot/grub/grub.cfg"));
        assert_eq!(ids.esp_fstab_id().len(), 9);
        assert_eq!(ids.root_uuid, FilesystemIds::for_layout(&layout).root_uuid);
    }
}
