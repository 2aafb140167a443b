//! balcaoctl: runs inside the appliance. First boot, status, staff accounts,
//! certificates and the units page.

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "balcaoctl", version, about = "Configura e administra o appliance Balcão Virtual")]
struct Cli {
    /// Mostra mais detalhes (-v: comandos executados)
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Units(balcao::units::cli::UnitsArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    balcao::logging::init(cli.verbose);
    let result = match cli.command {
        Command::Units(args) => balcao::units::cli::run(&args).map_err(anyhow::Error::from),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("erro: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
