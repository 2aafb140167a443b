//! When the comparison against the raw disk fails, nothing is published and
//! the temporary file is gone. A stand-in `qemu-img` (first on PATH, in this
//! test binary only) forwards everything to the real one except `compare`,
//! which reports a mismatch the way qemu-img does.

#[path = "export_support.rs"]
mod support;

use std::os::unix::fs::PermissionsExt;

use balcao::export::{self, ExportError, Firmware, Format};
use support::*;

#[test]
fn a_mismatch_publishes_nothing() {
    require_qemu_img();
    let real = run("sh", &["-c", "command -v qemu-img"]).trim().to_owned();
    let bin = tempfile::tempdir().unwrap();
    let fake = bin.path().join("qemu-img");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\nif [ \"$1\" = compare ]; then echo 'Content mismatch at offset 0!'; exit 1; fi\nexec {real} \"$@\"\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = std::env::var("PATH").unwrap_or_default();
    // Only test in this binary, so changing the environment races nothing.
    std::env::set_var("PATH", format!("{}:{path}", bin.path().display()));

    let disk = synthetic_disk(48 * MIB);
    let out = tempfile::tempdir().unwrap();
    let app = appliance(Firmware::Efi);
    for format in [
        Format::Raw,
        Format::Qcow2,
        Format::Vhdx,
        Format::Vhd,
        Format::Vmdk,
        Format::Ova,
    ] {
        let err = export::export(&disk.raw, format, out.path(), &app).unwrap_err();
        match &err {
            ExportError::Verify { detail, .. } => {
                assert!(detail.contains("Content mismatch"), "{format}: {err}")
            }
            other => panic!("{format}: expected a verification error, got {other}"),
        }
        assert_eq!(listing(out.path()), Vec::<String>::new(), "{format}");
    }
}
