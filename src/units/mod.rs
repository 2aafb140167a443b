//! The Balcão page: judicial units, their rooms and hours, open or closed now.
//!
//! Court staff keep the units in `/etc/balcao/units.toml` (or import them from
//! a spreadsheet); `balcaoctl units` checks them and renders the public page
//! and `units.json` into the folder the appliance's nginx serves at the root
//! address, beside the Jitsi rooms. Pieces: [`hours`] (weekly intervals),
//! [`holidays`] (national holidays, recess), [`room`] (room names), [`file`]
//! (the units file), [`spreadsheet`] (CSV in and out), [`status`] (open or
//! closed at a moment), [`page`] (HTML and JSON).

pub mod cli;
pub mod file;
pub mod holidays;
pub mod hours;
pub mod page;
pub mod room;
pub mod spreadsheet;
pub mod status;

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

pub use file::{Court, Unit, UnitsFile};

/// Where the appliance keeps the units (read by `balcaoctl units`).
pub const UNITS_FILE: &str = "/etc/balcao/units.toml";

/// The folder the appliance's nginx serves at `https://DOMAIN/` (the page and
/// `units.json`); the nginx site wiring points its root address here.
pub const WWW_DIR: &str = "/var/lib/balcao/www";

/// One thing wrong in a units file or CSV: where, which field, what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub line: Option<usize>,
    pub field: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.field.is_empty()) {
            (Some(line), false) => {
                write!(f, "linha {line}, campo {}: {}", self.field, self.message)
            }
            (Some(line), true) => write!(f, "linha {line}: {}", self.message),
            (None, false) => write!(f, "campo {}: {}", self.field, self.message),
            (None, true) => write!(f, "{}", self.message),
        }
    }
}

fn list(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("  {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[derive(Debug, thiserror::Error)]
pub enum UnitsError {
    #[error("não foi possível ler {path}: {source}\nConfira o caminho (ou passe outro com --units) e as permissões.")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("não foi possível gravar {path}: {source}\nConfira se a pasta existe e se este usuário pode escrever nela (rode como root no appliance).")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} tem {} problema(s); nada foi alterado. Corrija e rode de novo:\n{}", .problems.len(), list(.problems))]
    Invalid {
        path: PathBuf,
        problems: Vec<Problem>,
    },
    #[error("falha ao montar a página das unidades (erro no modelo embutido, informe aos mantenedores): {0}")]
    Template(String),
}

/// Reads and checks the units file. A missing file is an empty court with
/// default settings, so a fresh appliance can import its first CSV.
pub fn load(path: &Path) -> Result<UnitsFile, UnitsError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(UnitsFile::default()),
        Err(source) => {
            return Err(UnitsError::Read {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    UnitsFile::parse(&text).map_err(|problems| UnitsError::Invalid {
        path: path.to_path_buf(),
        problems,
    })
}

/// Reads a CSV and checks it against the current units (whose rooms it keeps).
pub fn read_csv(path: &Path, before: &[Unit]) -> Result<Vec<Unit>, UnitsError> {
    let bytes = std::fs::read(path).map_err(|source| UnitsError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    spreadsheet::read(&bytes, before).map_err(|problems| UnitsError::Invalid {
        path: path.to_path_buf(),
        problems,
    })
}

/// Writes `bytes` to `path` so that a reader sees the old file or the new
/// one, never a part: a temporary file in the same folder, flushed to disk,
/// then renamed over. The result is world-readable (nginx reads it).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), UnitsError> {
    let err = |source| UnitsError::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut temp = tempfile::Builder::new()
        .prefix(".balcao-")
        .tempfile_in(&dir)
        .map_err(err)?;
    temp.write_all(bytes).map_err(err)?;
    temp.as_file().sync_all().map_err(err)?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(temp.path(), std::fs::Permissions::from_mode(0o644))
            .map_err(err)?;
    }
    temp.persist(path).map_err(|e| err(e.error))?;
    // Make the rename itself durable.
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}
