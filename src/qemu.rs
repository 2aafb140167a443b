//! Booting images in QEMU for tests and `balcao test`.
