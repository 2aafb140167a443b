//! The formats `qemu-img` writes (qcow2, VHDX, and with [`super::vhd`] the
//! fixed VHD), and the `qemu-img compare` / `check` runs that every exported
//! disk passes before it is published. The format is always named with `-f` /
//! `-F`: left to guess, qemu-img takes a fixed VHD for a raw disk.

use std::path::Path;

use crate::command::{Cmd, CommandError, HostTool};

use super::{ExportError, Format};

pub(super) const QEMU_IMG: HostTool = HostTool {
    program: "qemu-img",
    package: "qemu-utils",
};

/// Compressed qcow2 (zlib clusters), for Proxmox, OpenStack and plain KVM.
pub(super) fn export_qcow2(raw: &Path, out: &Path) -> Result<(), ExportError> {
    run(
        Format::Qcow2,
        Cmd::new(QEMU_IMG.program)
            .args(["convert", "-f", "raw", "-O", "qcow2", "-c"])
            .arg(raw)
            .arg(out),
    )?;
    check(Format::Qcow2, "qcow2", out)?;
    compare(Format::Qcow2, raw, "qcow2", out)
}

/// Dynamic VHDX, for Hyper-V generation 2.
/// `labels` name the appliance: its GUIDs are derived from them, so the
/// same disk always gives the same file.
pub(super) fn export_vhdx(raw: &Path, out: &Path, labels: &[&str]) -> Result<(), ExportError> {
    run(
        Format::Vhdx,
        Cmd::new(QEMU_IMG.program)
            .args([
                "convert",
                "-f",
                "raw",
                "-O",
                "vhdx",
                "-o",
                "subformat=dynamic",
            ])
            .arg(raw)
            .arg(out),
    )?;
    super::identity::stamp_vhdx(out, labels).map_err(|e| ExportError::Verify {
        format: Format::Vhdx,
        path: out.to_owned(),
        detail: format!("fixing its GUIDs: {e}"),
    })?;
    check(Format::Vhdx, "vhdx", out)?;
    compare(Format::Vhdx, raw, "vhdx", out)
}

pub(super) fn run(format: Format, cmd: Cmd) -> Result<(), ExportError> {
    cmd.run()
        .map(drop)
        .map_err(|source| ExportError::Command { format, source })
}

/// `qemu-img check`: the image's own metadata is consistent.
pub(super) fn check(format: Format, driver: &str, image: &Path) -> Result<(), ExportError> {
    let cmd = Cmd::new(QEMU_IMG.program)
        .args(["check", "-f", driver])
        .arg(image);
    cmd.run()
        .map(drop)
        .map_err(|e| verify_error(format, image, e))
}

/// `qemu-img compare`: the image holds exactly the raw disk's bytes (a larger
/// image must be zero beyond the raw disk's end).
pub(super) fn compare(
    format: Format,
    raw: &Path,
    driver: &str,
    image: &Path,
) -> Result<(), ExportError> {
    let cmd = Cmd::new(QEMU_IMG.program)
        .args(["compare", "-f", "raw", "-F", driver])
        .arg(raw)
        .arg(image);
    cmd.run()
        .map(drop)
        .map_err(|e| verify_error(format, image, e))
}

/// `qemu-img compare` of the raw disk against a VMDK stored inside another
/// file (the OVA tar) at `offset`, `size` bytes long, read in place through
/// qemu's raw driver window.
pub(super) fn compare_vmdk_inside(
    format: Format,
    raw: &Path,
    container: &Path,
    offset: u64,
    size: u64,
) -> Result<(), ExportError> {
    let raw_opts = format!("driver=raw,file.filename={}", opt_escape(raw));
    let member_opts = format!(
        "driver=vmdk,file.driver=raw,file.offset={offset},file.size={size},\
         file.file.driver=file,file.file.filename={}",
        opt_escape(container)
    );
    let cmd = Cmd::new(QEMU_IMG.program)
        .args(["compare", "--image-opts"])
        .arg(raw_opts)
        .arg(member_opts);
    cmd.run()
        .map(drop)
        .map_err(|e| verify_error(format, container, e))
}

/// Commas separate qemu options; a comma inside a value is written twice.
fn opt_escape(path: &Path) -> String {
    path.to_string_lossy().replace(',', ",,")
}

fn verify_error(format: Format, image: &Path, e: CommandError) -> ExportError {
    ExportError::Verify {
        format,
        path: image.to_owned(),
        detail: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commas_in_paths_are_doubled() {
        assert_eq!(opt_escape(Path::new("/a,b/c")), "/a,,b/c");
    }
}
