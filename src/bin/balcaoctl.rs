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
enum Command {}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    balcao::logging::init(cli.verbose);
    match cli.command {}
}
