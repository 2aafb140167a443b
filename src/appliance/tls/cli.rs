//! `balcaoctl tls`: `use` (the court's own certificate), `status`, `renew`
//! (also what the retry timer runs, with `--retry`) and `deploy-hook` (what
//! certbot runs after each issuance or renewal, through the shell wrapper
//! /usr/lib/balcao/tls-deploy-hook). Each reads the domain and mode from
//! /etc/balcao/setup.toml, so they work only after `balcaoctl firstboot`
//! has the answers.

use std::path::PathBuf;
use std::time::Duration;

use super::acme::{self, Certbot, Request};
use super::own::{self, OwnFiles};
use super::preflight::{self, Network};
use super::retry::{self, Attempt, Outcome};
use super::selfsigned;
use super::{TlsError, FACT_ATTEMPTS, FACT_NEXT_RETRY, FACT_SOURCE, FACT_WARNING, STEP};
use crate::appliance::setup::{self, Answers, Setup};
use crate::appliance::state::{now, State};
use crate::appliance::status::format_time;
use crate::appliance::{Lang, Root, System};
use crate::command::Cmd;

#[derive(clap::Args, Debug)]
pub struct TlsArgs {
    /// Raiz do sistema (outra que / só para testes: não chama systemctl nem consulta o DNS)
    #[arg(long, default_value = "/", global = true)]
    pub root: PathBuf,
    #[command(subcommand)]
    pub command: TlsCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum TlsCommand {
    /// Instala o certificado do tribunal (confere chave, cadeia, nomes e validade antes; se recusar, nada muda)
    Use {
        /// Certificado PEM (pode conter também as intermediárias)
        cert: PathBuf,
        /// Chave privada PEM, sem senha
        key: PathBuf,
        /// Certificados intermediários PEM
        #[arg(long, value_name = "ARQUIVO")]
        chain: Option<PathBuf>,
        /// Raiz confiável PEM (ICP-Brasil e ACs internas não estão no repositório do Debian)
        #[arg(long, value_name = "ARQUIVO")]
        ca: Option<PathBuf>,
    },
    /// Emissor, nomes, validade, próxima renovação e tentativas pendentes
    Status,
    /// Pede ou renova o certificado Let's Encrypt agora (só no modo letsencrypt)
    Renew {
        /// Só se a nova tentativa agendada já venceu (usado por balcao-tls-retry.timer)
        #[arg(long)]
        retry: bool,
        /// Renova mesmo faltando mais de 30 dias (gasta o limite semanal da autoridade)
        #[arg(long, conflicts_with = "dry_run")]
        force: bool,
        /// Ensaia a renovação com a autoridade (desafio incluído) sem trocar o certificado
        #[arg(long, conflicts_with = "retry")]
        dry_run: bool,
    },
    /// Instala o certificado que o certbot acabou de emitir (lê RENEWED_LINEAGE do ambiente)
    DeployHook,
}

/// What the subcommands read from setup.toml.
struct Settings {
    answers: Answers,
    domain: String,
    lang: Lang,
}

fn settings(root: &Root) -> Result<Settings, TlsError> {
    let (answers, _) = setup::read_preseed(root)?;
    let Some(domain) = answers.get("domain").map(str::to_owned) else {
        return Err(TlsError::Other(format!(
            "o domínio ainda não foi definido em {}; rode `balcaoctl firstboot` primeiro",
            root.path(crate::appliance::root::SETUP_FILE).display()
        )));
    };
    let lang = answers.lang();
    Ok(Settings {
        answers,
        domain,
        lang,
    })
}

impl Settings {
    fn mode(&self) -> &str {
        self.answers
            .get("tls.mode")
            .unwrap_or(setup::DEFAULT_TLS_MODE)
    }
}

/// Runs `balcaoctl tls ...`.
pub fn run(args: &TlsArgs, system: &dyn System) -> Result<(), TlsError> {
    let root = Root::new(&args.root);
    match &args.command {
        TlsCommand::Use {
            cert,
            key,
            chain,
            ca,
        } => use_own(
            &root,
            system,
            &OwnFiles {
                cert: cert.clone(),
                key: key.clone(),
                chain: chain.clone(),
                ca: ca.clone(),
            },
        ),
        TlsCommand::Status => {
            print!("{}", status_text(&root)?);
            Ok(())
        }
        TlsCommand::Renew { dry_run: true, .. } => renew_dry_run(&root, system),
        TlsCommand::Renew { retry, force, .. } => renew(&root, system, *retry, *force),
        TlsCommand::DeployHook => {
            let lineage = std::env::var_os("RENEWED_LINEAGE").ok_or_else(|| {
                TlsError::Other(
                    "RENEWED_LINEAGE não definido: este comando é chamado pelo certbot (--deploy-hook), não à mão; use `balcaoctl tls renew`".into(),
                )
            })?;
            let domains = std::env::var("RENEWED_DOMAINS").unwrap_or_default();
            deploy_hook(&root, system, &PathBuf::from(lineage), &domains)
        }
    }
}

fn use_own(root: &Root, system: &dyn System, files: &OwnFiles) -> Result<(), TlsError> {
    let s = settings(root)?;
    let (checked, _) = own::use_own(root, system, &s.domain, files, now() as i64)?;
    for warning in &checked.warnings {
        eprintln!("{warning}");
    }

    // From now on certbot's renewals must not replace it.
    if let Some(mut setup) = Setup::from_answers(&s.answers) {
        setup.tls_mode = "own".into();
        setup::write_setup(root, &setup, s.answers.password())?;
    }
    let recorded = retry::update_facts(root, |facts| {
        retry::describe(facts, &checked.leaf, "own");
        retry::clear_pending(facts);
        facts.remove(FACT_WARNING);
        Ok(())
    })?;
    match recorded {
        Some(()) => refresh_login_message(root, system)?,
        None => eprintln!("a primeira inicialização está em andamento; `balcaoctl status` mostrará o certificado quando ela terminar"),
    }
    retry::set_timer(root, system, false)?;
    println!(
        "{} {}\n  {} {}\n  {} {}\n  SHA-256: {}",
        s.lang
            .t("Certificado instalado para", "Certificate installed for"),
        s.domain,
        s.lang.t("Emissor:", "Issuer:"),
        checked.leaf.issuer,
        s.lang.t("Válido até:", "Valid until:"),
        checked.leaf.expires_text(),
        checked.leaf.fingerprint
    );
    Ok(())
}

/// Resolver used under a `--root` other than `/`: tests must not reach DNS
/// (nor, through it, a real CA).
fn offline(_: &str) -> std::io::Result<Vec<std::net::IpAddr>> {
    Err(std::io::Error::other(
        "consulta ao DNS desligada com --root diferente de /",
    ))
}

/// The network as the appliance sees it; none at all under a test root.
pub fn system_network(
    root: &Root,
    system: &dyn System,
    public_ip: Option<&str>,
) -> Network<'static> {
    let resolve: &'static dyn Fn(&str) -> std::io::Result<Vec<std::net::IpAddr>> =
        if root.is_system() {
            &preflight::system_resolve
        } else {
            &offline
        };
    let local = if root.is_system() {
        system
            .run(&Cmd::new("hostname").arg("-I"))
            .map(|o| preflight::parse_addresses(&o.stdout_text()))
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    Network {
        http_port: 80,
        resolve,
        local,
        public_ip: public_ip.and_then(|ip| ip.parse().ok()),
        timeout: Duration::from_secs(10),
    }
}

fn renew(root: &Root, system: &dyn System, retry_only: bool, force: bool) -> Result<(), TlsError> {
    let s = settings(root)?;
    if s.mode() != "letsencrypt" {
        retry::set_timer(root, system, false)?;
        let text = format!(
            "tls.mode é `{}`: nada a renovar pelo certbot; o certificado do tribunal é trocado com `balcaoctl tls use`",
            s.mode()
        );
        if retry_only {
            println!("{text}");
            return Ok(());
        }
        return Err(TlsError::Other(text));
    }
    let state = State::load(root)?;
    let facts = state
        .record(STEP)
        .map(|r| r.facts.clone())
        .unwrap_or_default();
    if retry_only {
        if !facts.contains_key(FACT_WARNING) {
            retry::set_timer(root, system, false)?;
            println!("nenhuma tentativa pendente");
            return Ok(());
        }
        let next: u64 = facts
            .get(FACT_NEXT_RETRY)
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        if next > now() {
            println!("próxima tentativa em {}", format_time(next));
            return Ok(());
        }
    }

    let email = s.answers.get("email").unwrap_or_default().to_owned();
    let certbot = Certbot::default();
    let net = system_network(root, system, s.answers.get("network.public_ip"));
    let request = Request {
        domain: &s.domain,
        email: &email,
        directory: s.answers.get("tls.acme_directory"),
    };
    let outcome = retry::update_facts(root, |facts| {
        renew_now(root, system, &certbot, request.clone(), &net, force, facts)
    })?;
    match outcome {
        None => {
            println!("a primeira inicialização está em andamento; a próxima tentativa fica para depois dela");
            Ok(())
        }
        Some(Outcome::Issued(print)) => {
            refresh_login_message(root, system)?;
            println!("certificado em uso para {} (SHA-256 {print})", s.domain);
            Ok(())
        }
        Some(Outcome::Pending { reason, next }) if retry_only => {
            println!("{reason}\nnova tentativa em {}", format_time(next));
            Ok(())
        }
        Some(Outcome::Pending { reason, next }) => Err(TlsError::Other(format!(
            "{reason}\nnova tentativa automática em {}",
            format_time(next)
        ))),
    }
}

/// `balcaoctl tls renew --dry-run`: certbot asks the CA for a test
/// certificate through the same challenge, and keeps nothing.
fn renew_dry_run(root: &Root, system: &dyn System) -> Result<(), TlsError> {
    let s = settings(root)?;
    if s.mode() != "letsencrypt" {
        return Err(TlsError::Other(format!(
            "tls.mode é `{}`: não há renovação pelo certbot para ensaiar",
            s.mode()
        )));
    }
    let certbot = Certbot::default();
    if !certbot.has_lineage(&s.domain) {
        return Err(TlsError::Other(format!(
            "o certbot ainda não tem certificado para {}; veja `balcaoctl tls status` e rode `balcaoctl tls renew`",
            s.domain
        )));
    }
    let request = Request {
        domain: &s.domain,
        email: "",
        directory: s.answers.get("tls.acme_directory"),
    };
    let directory = request.directory();
    if let Err(e) = system.run(&certbot.renew(&s.domain, directory, false, true)) {
        return Err(TlsError::Other(
            acme::classify(&e, directory).message(s.lang),
        ));
    }
    println!(
        "{} {} ({directory})",
        s.lang.t(
            "ensaio de renovação aprovado; nada foi trocado:",
            "renewal dry run passed; nothing was changed:"
        ),
        s.domain
    );
    Ok(())
}

/// A renewal of certbot's certificate when there is one, else a first attempt.
pub fn renew_now(
    root: &Root,
    system: &dyn System,
    certbot: &Certbot,
    request: Request,
    net: &Network,
    force: bool,
    facts: &mut crate::appliance::steps::Facts,
) -> Result<Outcome, TlsError> {
    let installed = selfsigned::installed(root, request.domain)?;
    let from_ca = installed.as_ref().is_some_and(|i| !i.self_issued());
    if from_ca && certbot.has_lineage(request.domain) {
        if let Err(e) =
            system.run(&certbot.renew(request.domain, request.directory(), force, false))
        {
            let failure = acme::classify(&e, request.directory());
            return Err(TlsError::Other(failure.message(Lang::Pt)));
        }
        let (info, _) = certbot.install_live(root, system, request.domain)?;
        retry::describe(facts, &info, "letsencrypt");
        retry::clear_pending(facts);
        return Ok(Outcome::Issued(info.fingerprint));
    }
    retry::attempt(
        &Attempt {
            root,
            system,
            certbot,
            request,
            network: net,
        },
        facts,
    )
}

/// certbot's deploy hook: installs the lineage's files for the appliance's
/// domain (unless the court's own certificate is in use) and records it.
pub fn deploy_hook(
    root: &Root,
    system: &dyn System,
    lineage: &std::path::Path,
    renewed_domains: &str,
) -> Result<(), TlsError> {
    let (answers, _) = setup::read_preseed(root)?;
    let Some(domain) = answers
        .get("domain")
        .map(str::to_owned)
        .or_else(|| renewed_domains.split_whitespace().next().map(str::to_owned))
    else {
        return Err(TlsError::Other(
            "nem setup.toml nem RENEWED_DOMAINS dizem o domínio; nada foi instalado".into(),
        ));
    };
    if answers.get("tls.mode") == Some("own") {
        println!(
            "tls.mode é `own`: o certificado do tribunal continua em uso; o do certbot em {} não foi instalado",
            lineage.display()
        );
        return Ok(());
    }
    let (info, done) = acme::install_lineage(root, system, &domain, lineage)?;
    // During first boot or `tls renew` the caller holds the lock and records.
    let recorded = retry::update_facts(root, |facts| {
        retry::describe(facts, &info, "letsencrypt");
        retry::clear_pending(facts);
        Ok(())
    })?;
    if recorded.is_some() {
        refresh_login_message(root, system)?;
    }
    println!(
        "certificado instalado para {domain} ({} arquivos; recarregados: {}), válido até {}",
        done.written.len(),
        if done.reloaded.is_empty() {
            "nenhum".to_owned()
        } else {
            done.reloaded.join(", ")
        },
        info.expires_text()
    );
    Ok(())
}

/// Rewrites the login message with the new fingerprint once first boot is
/// done (its `message` step ran with the certificate of that moment).
fn refresh_login_message(root: &Root, system: &dyn System) -> Result<(), TlsError> {
    use crate::appliance::message::{self, Addresses};
    if !root.exists(crate::appliance::root::DONE_FILE) {
        return Ok(());
    }
    let (answers, _) = setup::read_preseed(root)?;
    let Some(setup) = Setup::from_answers(&answers) else {
        return Ok(());
    };
    let state = State::load(root)?;
    let known = crate::appliance::steps::message::machine_addresses(root, system);
    let motd_addresses = match known.as_deref() {
        Some(list) => Addresses::Known(list),
        None => Addresses::Unknown,
    };
    let issue = message::done_text(&setup, &state, Addresses::IssueEscape);
    let motd = message::done_text(&setup, &state, motd_addresses);
    message::write(root, &issue, &motd)?;
    Ok(())
}

/// `balcaoctl tls status`.
pub fn status_text(root: &Root) -> Result<String, TlsError> {
    let s = settings(root)?;
    let lang = s.lang;
    let state = State::load(root)?;
    let facts = state
        .record(STEP)
        .map(|r| r.facts.clone())
        .unwrap_or_default();
    let mut out = String::new();
    out.push_str(&format!(
        "{} {}  ({} {})\n",
        lang.t("Certificado de", "Certificate for"),
        s.domain,
        lang.t("modo", "mode"),
        s.mode()
    ));
    match selfsigned::installed(root, &s.domain)? {
        None => out.push_str(lang.t(
            "  nenhum certificado instalado em /etc/jitsi/meet; rode `balcaoctl firstboot`\n",
            "  no certificate installed in /etc/jitsi/meet; run `balcaoctl firstboot`\n",
        )),
        Some(info) => {
            let t = now() as i64;
            let kind = if info.self_issued() {
                lang.t(
                    " (autoassinado: navegadores recusam)",
                    " (self-signed: browsers refuse it)",
                )
            } else {
                ""
            };
            out.push_str(&format!(
                "  {} {}{kind}\n",
                lang.t("Emissor:", "Issuer:"),
                info.issuer
            ));
            out.push_str(&format!(
                "  {} {}\n",
                lang.t("Nomes:", "Names:"),
                info.names.join(", ")
            ));
            out.push_str(&format!(
                "  {} {} ({} {})\n",
                lang.t("Válido até:", "Valid until:"),
                info.expires_text(),
                info.days_left(t),
                lang.t("dias", "days")
            ));
            out.push_str(&format!("  SHA-256: {}\n", info.fingerprint));
            let renewal = match facts.get(FACT_SOURCE).map(String::as_str) {
                Some("letsencrypt") if !info.self_issued() => format!(
                    "{} {}",
                    lang.t(
                        "automática (certbot.timer), a partir de",
                        "automatic (certbot.timer), from"
                    ),
                    format_time((info.not_after - retry::RENEW_DAYS * 86_400).max(0) as u64)
                ),
                _ if s.mode() == "own" => format!(
                    "{} {}",
                    lang.t(
                        "manual: antes de expirar, rode `balcaoctl tls use` com o novo certificado; expira em",
                        "manual: before it expires, run `balcaoctl tls use` with the new certificate; expires",
                    ),
                    info.expires_text()
                ),
                _ => lang
                    .t("nenhuma agendada", "none scheduled")
                    .to_owned(),
            };
            out.push_str(&format!(
                "  {} {renewal}\n",
                lang.t("Próxima renovação:", "Next renewal:")
            ));
        }
    }
    if let Some(warning) = facts.get(FACT_WARNING) {
        out.push_str(&format!(
            "  {} {warning}\n",
            lang.t("Pendente:", "Pending:")
        ));
        if let Some(n) = facts.get(FACT_ATTEMPTS) {
            out.push_str(&format!("  {} {n}\n", lang.t("Tentativas:", "Attempts:")));
        }
    }
    Ok(out)
}
