//! balcao: builds the Balcão Virtual appliance (a Debian 12 image with Jitsi Meet
//! baked in) and configures it at first boot.
//!
//! Two programs share this crate. `balcao`, on the build host, runs the pipeline
//! recipe -> root filesystem -> disk -> formats (`recipe`, `build`, `disk`,
//! `export`, `qemu`). `balcaoctl`, inside the appliance, runs first-boot input ->
//! steps -> state (`appliance`, `units`). The appliance side never reaches into
//! the builder's modules.

pub mod answers;
pub mod command;
pub mod logging;

// Builder side.
pub mod build;
pub mod disk;
pub mod export;
pub mod qemu;
pub mod recipe;

// Appliance side.
pub mod appliance;
pub mod units;
