//! The appliance side: first-boot input -> steps -> state.
//!
//! Answers come from the preseed file (`setup`), then from VMware OVF properties
//! (`ovf`), then from the console wizard (`wizard`, `console`), each checked by
//! `validate`. The `runner` applies the `steps` in order and records each one in
//! the `state` file, so a power loss resumes where it stopped and a second run
//! changes nothing. `status` reads that state back. Every path goes through a
//! [`Root`] and every external program through a [`System`], so all of it runs
//! in tests on a temporary folder without root.

pub mod console;
pub mod firstboot;
pub mod jitsi;
pub mod message;
pub mod ovf;
pub mod root;
pub mod runner;
pub mod setup;
pub mod state;
pub mod status;
pub mod steps;
pub mod system;
pub mod tls;
pub mod users;
pub mod validate;
pub mod wizard;

pub use root::Root;
pub use system::System;

/// Language of the appliance's messages (`language` in setup.toml).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    #[default]
    Pt,
    En,
}

impl Lang {
    /// Reads the `language` value; anything but `en` is Portuguese.
    pub fn from_code(code: Option<&str>) -> Lang {
        match code {
            Some("en") => Lang::En,
            _ => Lang::Pt,
        }
    }

    /// Picks the text in this language.
    pub fn t<'a>(self, pt: &'a str, en: &'a str) -> &'a str {
        match self {
            Lang::Pt => pt,
            Lang::En => en,
        }
    }
}
