//! `balcaoctl units`: import, export, check and render the units, as court
//! staff run them inside the appliance.

use std::io::Write;
use std::path::PathBuf;

use chrono::{DateTime, NaiveDateTime};

use super::{load, page, read_csv, spreadsheet, write_atomic, UnitsError, UnitsFile};

#[derive(Debug, clap::Args)]
#[command(
    about = "Unidades judiciais do Balcão: importar, exportar, conferir e gerar a página",
    long_about = "Unidades judiciais do Balcão Virtual.\n\n\
        As unidades ficam em /etc/balcao/units.toml; a página pública (index.html) e \
        units.json são gerados na pasta que o nginx do appliance serve. Importar um CSV \
        troca a lista de unidades (as configurações do tribunal, em [court], ficam) e \
        gera a página de novo.\n\n\
        Colunas do CSV: nome, cidade, codigo_cnj, sala, horario, telefone, email, \
        observacao (separadas por ; ou ,; em UTF-8). Horário: \"seg-sex 08:00-12:00 \
        13:00-18:00; sáb 08:00-12:00\". Sala vazia: gerada do nome (ou mantida, se a \
        unidade já existia)."
)]
pub struct UnitsArgs {
    /// Arquivo das unidades
    #[arg(long = "units", global = true, value_name = "ARQUIVO", env = "BALCAO_UNITS", default_value = super::UNITS_FILE)]
    pub units_file: PathBuf,

    /// Pasta servida pelo nginx, onde ficam index.html e units.json
    #[arg(long, global = true, value_name = "PASTA", env = "BALCAO_WWW", default_value = super::WWW_DIR)]
    pub www: PathBuf,

    #[command(subcommand)]
    pub action: UnitsAction,
}

#[derive(Debug, clap::Subcommand)]
pub enum UnitsAction {
    /// Importa as unidades de uma planilha CSV e gera a página; nada muda se houver erro
    Import {
        /// Planilha CSV (UTF-8)
        csv: PathBuf,
        #[command(flatten)]
        clock: Clock,
    },
    /// Escreve as unidades em CSV (separado por ;, para o Excel)
    Export {
        /// Arquivo de saída; sem ele, a saída padrão
        #[arg(short, long, value_name = "ARQUIVO")]
        output: Option<PathBuf>,
    },
    /// Confere o arquivo das unidades, ou uma planilha CSV antes de importá-la
    Check {
        /// Planilha CSV a conferir em vez do arquivo das unidades
        csv: Option<PathBuf>,
    },
    /// Gera de novo a página e units.json a partir do arquivo das unidades
    Render {
        #[command(flatten)]
        clock: Clock,
    },
}

#[derive(Debug, Clone, clap::Args)]
pub struct Clock {
    /// Momento da situação "aberto/fechado" na página: 2026-03-02T10:00 (hora do
    /// tribunal) ou com fuso, 2026-03-02T13:00Z; sem ele, agora
    #[arg(long, value_name = "MOMENTO")]
    pub now: Option<String>,
}

/// The court-local time a `--now` value names (local if it has no offset).
pub fn parse_now(text: Option<&str>, file: &UnitsFile) -> Result<NaiveDateTime, UnitsError> {
    let zone = file.court.timezone;
    let Some(text) = text else {
        return Ok(super::status::local_now(&zone, chrono::Utc::now()));
    };
    // An instant: RFC 3339, seconds optional, "Z" or an offset.
    let with_offset = match text.strip_suffix(['Z', 'z']) {
        Some(rest) => format!("{rest}+00:00"),
        None => text.to_string(),
    };
    for format in ["%Y-%m-%dT%H:%M:%S%:z", "%Y-%m-%dT%H:%M%:z"] {
        if let Ok(instant) = DateTime::parse_from_str(&with_offset, format) {
            return Ok(super::status::local_now(&zone, instant.to_utc()));
        }
    }
    for format in ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"] {
        if let Ok(local) = NaiveDateTime::parse_from_str(text, format) {
            return Ok(local);
        }
    }
    Err(UnitsError::Invalid {
        path: PathBuf::from("--now"),
        problems: vec![super::Problem {
            line: None,
            field: "--now".into(),
            message: format!(
                "\"{text}\" não é um momento; use 2026-03-02T10:00 ou 2026-03-02T13:00Z"
            ),
        }],
    })
}

fn render(file: &UnitsFile, clock: &Clock, args: &UnitsArgs) -> Result<(), UnitsError> {
    let now = parse_now(clock.now.as_deref(), file)?;
    let written = page::write_site(file, now, &args.www)?;
    for path in written {
        tracing::info!("gerado {}", path.display());
    }
    Ok(())
}

/// Runs one `balcaoctl units` action.
pub fn run(args: &UnitsArgs) -> Result<(), UnitsError> {
    match &args.action {
        UnitsAction::Check { csv: None } => {
            let file = load(&args.units_file)?;
            println!(
                "{}: {} unidades, fuso {}, sem problemas.",
                args.units_file.display(),
                file.units.len(),
                file.court.timezone.name()
            );
        }
        UnitsAction::Check { csv: Some(csv) } => {
            let current = load(&args.units_file)?;
            let units = read_csv(csv, &current.units)?;
            println!(
                "{}: {} unidades, sem problemas; importe com `balcaoctl units import {}`.",
                csv.display(),
                units.len(),
                csv.display()
            );
        }
        UnitsAction::Import { csv, clock } => {
            let mut file = load(&args.units_file)?;
            let units = read_csv(csv, &file.units)?;
            let count = units.len();
            file.units = units;
            // The page first: a bad --now or an unwritable folder leaves the
            // units file as it was.
            parse_now(clock.now.as_deref(), &file)?;
            if let Some(dir) = args
                .units_file
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
            {
                std::fs::create_dir_all(dir).map_err(|source| UnitsError::Write {
                    path: dir.to_path_buf(),
                    source,
                })?;
            }
            write_atomic(&args.units_file, file.to_toml().as_bytes())?;
            render(&file, clock, args)?;
            println!(
                "{count} unidades importadas para {}; página gerada em {}.",
                args.units_file.display(),
                args.www.display()
            );
        }
        UnitsAction::Export { output } => {
            let file = load(&args.units_file)?;
            let bytes = spreadsheet::write(&file.units);
            match output {
                Some(path) => write_atomic(path, &bytes)?,
                None => {
                    std::io::stdout()
                        .write_all(&bytes)
                        .map_err(|source| UnitsError::Write {
                            path: PathBuf::from("(saída padrão)"),
                            source,
                        })?
                }
            }
        }
        UnitsAction::Render { clock } => {
            let file = load(&args.units_file)?;
            render(&file, clock, args)?;
            println!(
                "Página de {} unidades gerada em {}.",
                file.units.len(),
                args.www.display()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_is_court_local_unless_it_carries_an_offset() {
        let mut file = UnitsFile::default();
        file.court.timezone = chrono_tz::America::Rio_Branco;
        let ten = chrono::NaiveDate::from_ymd_opt(2026, 3, 2)
            .unwrap()
            .and_hms_opt(10, 0, 0)
            .unwrap();
        for text in [
            "2026-03-02T10:00",
            "2026-03-02T10:00:00",
            "2026-03-02T15:00Z",
            "2026-03-02T15:00:00Z",
            "2026-03-02T12:00-03:00",
            "2026-03-02T12:00:00-03:00",
        ] {
            assert_eq!(parse_now(Some(text), &file).unwrap(), ten, "{text}");
        }
        assert!(parse_now(Some("segunda"), &file).is_err());
    }
}
