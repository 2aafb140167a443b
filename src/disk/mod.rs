//! The disk: third stage of the pipeline (recipe -> root filesystem -> disk ->
//! formats). A GPT laid out like Debian's cloud images, with a BIOS boot
//! partition for GRUB's core image, an EFI system partition holding GRUB at the
//! removable path, and the ext4 root found by UUID. Nothing is mounted: each
//! filesystem is made from a folder into a file, and the partition table and
//! boot sectors are written by [`gpt`] and [`bootsector`].

pub mod assemble;
pub mod bootsector;
pub mod gpt;

pub use gpt::{Guid, Layout, Partition};

/// Bytes in a logical sector: every offset in the layout counts these.
pub const SECTOR: u64 = 512;
