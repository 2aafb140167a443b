//! The appliance side: first-boot answers, steps and their state.
pub mod jitsi;
