//! balcaoctl: runs inside the appliance. First boot, status, staff accounts,
//! certificates and the units page.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "balcaoctl",
    version,
    about = "Configura e administra o appliance Balcão Virtual"
)]
struct Cli {
    /// Mostra mais detalhes (-v: comandos executados)
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Configuração inicial: domínio, e-mail, primeiro servidor, certificado; aplica as etapas
    #[command(after_help = firstboot_help())]
    Firstboot(FirstbootArgs),
    /// Situação de cada etapa e de cada serviço (código de saída 1 se algo estiver errado)
    Status(StatusArgs),
    /// Unidades judiciárias, seus horários e a página do Balcão (import, export, check, render)
    Units(balcao::units::cli::UnitsArgs),
    /// Contas da equipe que abre as salas (add, remove, list, passwd)
    User(balcao::appliance::users::UserArgs),
    /// Certificado TLS: use (certificado do tribunal), status, renew, deploy-hook (certbot)
    Tls(balcao::appliance::tls::cli::TlsArgs),
}

#[derive(clap::Args)]
struct FirstbootArgs {
    /// Raiz do sistema a configurar (outra que / só para testes: não chama hostnamectl nem systemctl)
    #[arg(long, default_value = "/")]
    root: std::path::PathBuf,
    /// Console onde o assistente pergunta (repita para vários: o primeiro onde se tecla Enter responde).
    /// Sem esta opção, usa a entrada e a saída padrão.
    #[arg(long = "console", value_name = "DISPOSITIVO")]
    consoles: Vec<std::path::PathBuf>,
    /// Refaz a configuração com novas respostas (as chaves SSH e o machine-id são mantidos)
    #[arg(long)]
    reconfigure: bool,
    /// Lê o ambiente OVF deste arquivo em vez de `vmtoolsd --cmd "info-get guestinfo.ovfEnv"`
    #[arg(long, value_name = "ARQUIVO")]
    ovf_env: Option<std::path::PathBuf>,
}

#[derive(clap::Args)]
struct StatusArgs {
    /// Raiz do sistema (outra que / só lê o estado, sem consultar serviços)
    #[arg(long, default_value = "/")]
    root: std::path::PathBuf,
}

fn firstboot_help() -> String {
    format!(
        "Respostas, nesta ordem: /etc/balcao/setup.toml, propriedades OVF (vCenter), o assistente.\n\
         Chaves de setup.toml ([admin] user = ... equivale a admin.user):\n{}\n\
         Códigos de saída: 0 pronto, 1 uma etapa falhou, 2 resposta inválida em setup.toml ou OVF,\n\
         3 faltam respostas e não há console. Etapas: {}.",
        balcao::appliance::setup::keys_help(),
        balcao::appliance::steps::all()
            .iter()
            .map(|s| s.name())
            .collect::<Vec<_>>()
            .join(", ")
    )
}

fn firstboot(args: FirstbootArgs) -> ExitCode {
    use balcao::appliance::firstboot::{self, Options};
    let opts = Options {
        root: args.root,
        consoles: args.consoles,
        reconfigure: args.reconfigure,
        ovf_env: args.ovf_env,
    };
    match firstboot::run(&opts, &balcao::appliance::system::RealSystem) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            // stderr is the journal when the unit runs this.
            tracing::error!("primeira inicialização pendente: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn status(args: StatusArgs) -> ExitCode {
    use balcao::appliance::{status, steps, system::RealSystem, Root};
    let root = Root::new(args.root);
    match status::report(&root, &RealSystem, &steps::all()) {
        Ok(report) => {
            print!("{}", report.text);
            if report.healthy {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn user(args: balcao::appliance::users::UserArgs) -> ExitCode {
    use balcao::appliance::{console::StdTerminal, system::RealSystem, users, Lang, Root};
    use std::os::fd::AsRawFd;
    let root = Root::new(&args.root);
    let lang = users::appliance_domain(&root)
        .map(|(_, lang)| lang)
        .unwrap_or(Lang::Pt);
    // SAFETY: isatty only looks at the descriptor.
    let interactive = unsafe { libc::isatty(std::io::stdin().as_raw_fd()) } == 1;
    let mut term = StdTerminal::new();
    match users::run(&root, &args.action, &RealSystem, &mut term, interactive) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}: {}", lang.t("erro", "error"), e.message(lang));
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    balcao::logging::init(cli.verbose);
    match cli.command {
        Command::Firstboot(args) => firstboot(args),
        Command::Status(args) => status(args),
        Command::User(args) => user(args),
        Command::Tls(args) => {
            match balcao::appliance::tls::cli::run(&args, &balcao::appliance::system::RealSystem) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("erro: {error}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Units(args) => match balcao::units::cli::run(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("erro: {error:#}");
                ExitCode::FAILURE
            }
        },
    }
}
