//! A failed export publishes nothing: no file under the final name (not even
//! one left from an earlier build), no temporary file left behind, and an
//! error that names the file involved.

#[path = "export_support.rs"]
mod support;

use balcao::export::{self, ExportError, Firmware, Format};
use support::*;

#[test]
fn missing_raw_disk_leaves_nothing() {
    require_qemu_img();
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such.raw");
    let out = tempfile::tempdir().unwrap();
    let app = appliance(Firmware::Efi);
    for format in Format::ALL {
        // A stale file from an earlier build must not survive a failed export.
        let stale = out.path().join(format.file_name(&app));
        std::fs::write(&stale, b"old build").unwrap();

        let err = export::export(&missing, format, out.path(), &app).unwrap_err();
        assert!(
            matches!(err, ExportError::RawDisk { .. }),
            "{format}: {err}"
        );
        assert!(err.to_string().contains("no-such.raw"), "{err}");
        assert!(!stale.exists(), "{format}: stale final file removed");
    }
    assert_eq!(listing(out.path()), Vec::<String>::new());
}

#[test]
fn a_raw_disk_that_is_not_a_file_is_refused() {
    require_qemu_img();
    // A FIFO passes the "exists" test but is no regular file.
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("disk.raw");
    run("mkfifo", &[s(&fifo)]);
    let out = tempfile::tempdir().unwrap();
    let err =
        export::export(&fifo, Format::Qcow2, out.path(), &appliance(Firmware::Efi)).unwrap_err();
    assert!(err.to_string().contains("not a regular file"), "{err}");
    assert_eq!(listing(out.path()), Vec::<String>::new());
}

#[test]
fn unusable_output_folder_is_an_error_naming_it() {
    require_qemu_img();
    let disk = synthetic_disk(48 * MIB);
    let out = tempfile::tempdir().unwrap();
    let app = appliance(Firmware::Efi);

    // The output folder is a regular file: the temporary cannot be created.
    let not_a_dir = out.path().join("file");
    std::fs::write(&not_a_dir, b"").unwrap();
    for format in Format::ALL {
        let err = export::export(&disk.raw, format, &not_a_dir, &app).unwrap_err();
        assert!(matches!(err, ExportError::Io { .. }), "{format}: {err}");
        assert!(err.to_string().contains("file"), "{err}");
    }

    // A missing output folder: same, and nothing appears.
    let missing = out.path().join("missing");
    let err = export::export(&disk.raw, Format::Raw, &missing, &app).unwrap_err();
    assert!(err.to_string().contains("missing"), "{err}");
    assert!(!missing.exists());
    assert_eq!(listing(out.path()), ["file"]);
}

#[test]
fn bad_appliance_name_is_refused_before_any_work() {
    let disk = synthetic_disk(48 * MIB);
    let out = tempfile::tempdir().unwrap();
    let mut app = appliance(Firmware::Efi);
    app.name = "balcão virtual".into();
    let err = export::export(&disk.raw, Format::Ova, out.path(), &app).unwrap_err();
    assert!(matches!(err, ExportError::BadName { .. }), "{err}");
    assert_eq!(listing(out.path()), Vec::<String>::new());
}
