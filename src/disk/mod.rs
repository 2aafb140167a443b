//! The disk: GPT partition table, filesystems made from folders, GRUB for BIOS and UEFI.
