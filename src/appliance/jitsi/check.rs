//! Installing an edited configuration file only when the program that reads
//! it would accept it: prosody's own configuration loader for the host file,
//! `node --check` for config.js, the `hocon` CLI for jicofo.conf and jvb.conf.
//!
//! The new text is written beside the file, checked there, and renamed over
//! the old file only if the check passes, with the old file's mode and owner
//! (jicofo.conf holds a password and is not world-readable). If the check
//! fails, the old file is untouched and the error carries the parser's words.

use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::JitsiError;
use crate::command::{Cmd, CommandError};

/// Where Debian's prosody keeps its Lua modules, and the Lua it runs on
/// (prosody 0.12 in Debian 12 depends on lua5.4).
const PROSODY_LIB: &str = "/usr/lib/prosody";
const PROSODY_LUA: &str = "lua5.4";

/// Loads a configuration file with prosody's own loader (the code prosody
/// and prosodyctl run at start), which catches Lua syntax errors and
/// malformed VirtualHost/Component sections. Reads the path from arg[1].
const PROSODY_LOADER: &str = r#"
local lib = os.getenv("BALCAO_PROSODY_LIB")
package.path = lib .. "/?.lua;" .. package.path
package.cpath = lib .. "/?.so;" .. package.cpath
local configmanager = require "core.configmanager"
local ok, stage, err = configmanager.load(arg[1])
if not ok then
    io.stderr:write("prosody's configuration loader (", tostring(stage), "): ", tostring(err), "\n")
    os.exit(1)
end
"#;

/// The parser an edited file must pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Prosody's configuration loader (needs prosody and lua5.4 installed).
    ProsodyConfig,
    /// `node --check` (Debian package nodejs).
    JavaScript,
    /// The `hocon` CLI (Debian package ruby-hocon) parses the file and finds
    /// `key` in it (the key the edit set: a whole section may hold `${...}`
    /// references the CLI cannot resolve on their own).
    Hocon { key: &'static str },
}

impl Check {
    fn tool(&self) -> (&'static str, &'static str) {
        match self {
            Check::ProsodyConfig => ("prosody's configuration loader", "prosody"),
            Check::JavaScript => ("node --check", "nodejs"),
            Check::Hocon { .. } => ("hocon", "ruby-hocon"),
        }
    }

    fn command(&self, file: &Path) -> Cmd {
        match self {
            Check::ProsodyConfig => Cmd::new(PROSODY_LUA)
                .arg("-")
                .arg(file)
                .env("BALCAO_PROSODY_LIB", PROSODY_LIB)
                .stdin(PROSODY_LOADER),
            Check::JavaScript => Cmd::new("node").arg("--check").arg(file),
            Check::Hocon { key } => Cmd::new("hocon").arg("-i").arg(file).args(["get", key]),
        }
    }

    /// Runs the check on `file`; errors name `shown` (the file it would
    /// replace) rather than the temporary copy.
    pub fn run(&self, file: &Path, shown: &Path) -> Result<(), JitsiError> {
        let (tool, package) = self.tool();
        if *self == Check::ProsodyConfig && !Path::new(PROSODY_LIB).is_dir() {
            return Err(JitsiError::Checker {
                path: shown.to_owned(),
                tool,
                package,
                source: CommandError::Spawn {
                    command: format!("{PROSODY_LUA} (with {PROSODY_LIB})"),
                    source: std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        format!("{PROSODY_LIB} is missing"),
                    ),
                },
            });
        }
        match self.command(file).run() {
            Ok(_) => Ok(()),
            Err(CommandError::Failed { output, .. }) => Err(JitsiError::CheckFailed {
                path: shown.to_owned(),
                tool,
                output,
            }),
            Err(source) => Err(JitsiError::Checker {
                path: shown.to_owned(),
                tool,
                package,
                source,
            }),
        }
    }

    /// Checks `text` as if it were the file at `shown`, in a temporary file.
    pub fn run_on_text(&self, text: &str, shown: &Path) -> Result<(), JitsiError> {
        let name = shown
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "checked".to_owned());
        let dir = tempfile::tempdir().map_err(|source| JitsiError::Io {
            action: "make a temporary folder to check",
            path: shown.to_owned(),
            source,
        })?;
        let file = dir.path().join(name);
        std::fs::write(&file, text).map_err(|source| JitsiError::Io {
            action: "write",
            path: file.clone(),
            source,
        })?;
        self.run(&file, shown)
    }
}

/// What [`install_checked`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Installed {
    Created,
    Replaced,
}

/// Installs `text` at `path` if it passes `check`; otherwise leaves the
/// previous file (if any) in place and returns why.
pub fn install_checked(path: &Path, text: &str, check: &Check) -> Result<Installed, JitsiError> {
    let io = |action, path: &Path| {
        let path = path.to_owned();
        move |source| JitsiError::Io {
            action,
            path,
            source,
        }
    };
    let temp = staging_path(path);
    let previous = std::fs::metadata(path).ok();

    // Write the candidate beside the file, with the old file's mode and owner.
    let mut file = std::fs::File::create(&temp).map_err(io("create", &temp))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io("write", &temp))?;
    drop(file);
    let mode = previous.as_ref().map_or(0o644, |m| m.mode() & 0o7777);
    let prepared = std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(mode))
        .map_err(io("set the mode of", &temp))
        .and_then(|()| match &previous {
            Some(m) => std::os::unix::fs::chown(&temp, Some(m.uid()), Some(m.gid()))
                .map_err(io("set the owner of", &temp)),
            None => Ok(()),
        });
    if let Err(e) = prepared {
        let _ = std::fs::remove_file(&temp);
        return Err(e);
    }

    if let Err(e) = check.run(&temp, path) {
        let _ = std::fs::remove_file(&temp);
        return Err(e);
    }

    std::fs::rename(&temp, path).map_err(io("replace", path))?;
    Ok(if previous.is_some() {
        Installed::Replaced
    } else {
        Installed::Created
    })
}

/// `dir/.balcao-new.NAME`: same folder (so the rename is atomic), same
/// extension (so checkers that look at it agree), hidden, and outside the
/// `*.cfg.lua` pattern prosody includes from conf.d.
fn staging_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".balcao-new.{name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staging_file_sits_beside_the_target() {
        assert_eq!(
            staging_path(Path::new("/etc/jitsi/meet/a.org-config.js")),
            Path::new("/etc/jitsi/meet/.balcao-new.a.org-config.js")
        );
    }
}
