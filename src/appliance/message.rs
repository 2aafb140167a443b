//! What the appliance tells people before and after login: `/etc/issue.d/`
//! (shown by agetty on tty1 and the serial console above the login prompt)
//! and `/etc/motd.d/` (shown by pam_motd after login). While first boot is
//! pending it says why and what to do; once done it gives the address, the
//! certificate fingerprint when a certificate exists, and the next steps.

use super::root::{FileError, ISSUE_FILE, MOTD_FILE};
use super::setup::Setup;
use super::state::State;
use super::steps::firewall::{OBSOLETE, RULES};
use super::{Lang, Root};

/// The step and fact where the TLS step records the certificate's SHA-256
/// fingerprint; absent until a TLS step exists and has run.
pub const TLS_STEP: &str = "tls";
pub const FINGERPRINT_FACT: &str = "fingerprint";

/// How to say the machine's own address in the text.
#[derive(Debug, Clone, Copy)]
pub enum Addresses<'a> {
    /// agetty's `\4` escape: the IPv4 address, looked up when shown.
    IssueEscape,
    /// Addresses known now (from `hostname -I`).
    Known(&'a str),
    Unknown,
}

/// The text once first boot has finished.
pub fn done_text(setup: &Setup, state: &State, addresses: Addresses) -> String {
    let lang = setup.language;
    let t = |pt, en| lang.t(pt, en).to_owned();
    let url = format!("https://{}/", setup.domain);
    let mut out = String::new();
    out.push_str(&t(
        "Balcão Virtual: configuração concluída\n\n",
        "Balcão Virtual: setup complete\n\n",
    ));
    out.push_str(&format!("  {} {url}\n", t("Endereço:", "Address:")));
    out.push_str(&format!(
        "  {} {}\n",
        t("Usuário:", "User:"),
        setup.admin_user
    ));
    match state.fact(TLS_STEP, FINGERPRINT_FACT) {
        Some(print) => out.push_str(&format!(
            "  {} {print}\n",
            t("Certificado (SHA-256):", "Certificate (SHA-256):")
        )),
        None => out.push_str(&t(
            "  Certificado: ainda não instalado; esta versão do appliance ainda não configura o TLS.\n",
            "  Certificate: not installed yet; this version of the appliance does not set up TLS yet.\n",
        )),
    }
    let here = match (&setup.public_ip, addresses) {
        (Some(ip), _) => ip.clone(),
        (None, Addresses::IssueEscape) => "\\4".to_owned(),
        (None, Addresses::Known(list)) => list.trim().to_owned(),
        (None, Addresses::Unknown) => t("o IP público desta máquina", "this machine's public IP"),
    };
    let ports = RULES
        .iter()
        .filter(|r| r.port != "22/tcp")
        .map(|r| r.port)
        .collect::<Vec<_>>()
        .join(", ");
    out.push_str(&t("\nPróximos passos:\n", "\nNext steps:\n"));
    out.push_str(&format!(
        "  1. {} {} -> {here}\n",
        t("No DNS, aponte", "In DNS, point"),
        setup.domain
    ));
    out.push_str(&format!(
        "  2. {} {ports} ({} {}).\n",
        t(
            "No firewall do tribunal, libere para a internet:",
            "In the court's firewall, open to the internet:"
        ),
        t("a antiga", "the old"),
        lang.t(
            &format!("{} não é mais usada", OBSOLETE.join(", ")),
            &format!("{} is no longer used", OBSOLETE.join(", ")),
        )
    ));
    out.push_str(&format!(
        "  3. {} {url} {} {}.\n",
        t("Abra", "Open"),
        t(
            "no navegador e entre com o usuário",
            "in a browser and sign in as"
        ),
        setup.admin_user
    ));
    if let Some(print) = state.fact("secrets", "ssh_ed25519") {
        out.push_str(&format!(
            "\n  {} {print}\n",
            t(
                "Chave SSH desta máquina (ED25519):",
                "This machine's SSH key (ED25519):"
            )
        ));
    }
    out.push_str(&t(
        "  Situação: balcaoctl status   Refazer: balcaoctl firstboot --reconfigure\n",
        "  Status: balcaoctl status   Redo: balcaoctl firstboot --reconfigure\n",
    ));
    out
}

/// The text while first boot is not finished: `reasons` say why (bad
/// answers, a failed step, answers still awaited).
pub fn pending_text(lang: Lang, reasons: &[String]) -> String {
    let mut out = lang
        .t(
            "Balcão Virtual: configuração inicial pendente\n\n",
            "Balcão Virtual: first-boot setup pending\n\n",
        )
        .to_owned();
    for reason in reasons {
        out.push_str(&format!("  - {reason}\n"));
    }
    out.push_str(lang.t(
        "\n  Corrija /etc/balcao/setup.toml (ou as propriedades OVF) e rode `balcaoctl firstboot`,\n  ou responda ao assistente no console. Detalhes: journalctl -u balcao-firstboot\n",
        "\n  Fix /etc/balcao/setup.toml (or the OVF properties) and run `balcaoctl firstboot`,\n  or answer the wizard on the console. Details: journalctl -u balcao-firstboot\n",
    ));
    out
}

/// agetty treats `\` as the start of an escape; user text never has one, but
/// keep only the escapes we put there ourselves.
fn issue_safe(text: &str) -> String {
    text.replace('\\', "\\\\").replace("\\\\4", "\\4")
}

/// Writes the issue and motd files.
pub fn write(root: &Root, issue: &str, motd: &str) -> Result<(), FileError> {
    root.write_atomic(
        ISSUE_FILE,
        format!("{}\n", issue_safe(issue)).as_bytes(),
        0o644,
    )?;
    root.write_atomic(MOTD_FILE, motd.as_bytes(), 0o644)?;
    Ok(())
}

/// Writes the pending text to both places.
pub fn write_pending(root: &Root, lang: Lang, reasons: &[String]) -> Result<(), FileError> {
    let text = pending_text(lang, reasons);
    write(root, &text, &text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::appliance::setup::Answers;
    use crate::appliance::state::Status;

    fn setup() -> Setup {
        let mut a = Answers::default();
        a.offer("domain", "balcao.tjxx.jus.br").unwrap();
        a.offer("email", "ti@tjxx.jus.br").unwrap();
        a.offer("admin.user", "atendimento").unwrap();
        Setup::from_answers(&a).unwrap()
    }

    #[test]
    fn done_text_says_plainly_there_is_no_certificate_yet() {
        let text = done_text(&setup(), &State::default(), Addresses::IssueEscape);
        assert!(text.contains("https://balcao.tjxx.jus.br/"));
        assert!(text.contains("ainda não instalado"));
        assert!(!text.contains("SHA-256):"));
        assert!(text.contains("balcao.tjxx.jus.br -> \\4"));
        assert!(text.contains("10000/udp") && text.contains("4443/tcp não é mais usada"));
    }

    #[test]
    fn fingerprint_appears_once_the_tls_step_records_it() {
        let mut state = State::default();
        state.mark(TLS_STEP, Status::Done, None);
        state.set_facts(
            TLS_STEP,
            [(FINGERPRINT_FACT.to_owned(), "AB:CD".to_owned())].into(),
        );
        let mut s = setup();
        s.public_ip = Some("203.0.113.7".into());
        s.language = Lang::En;
        let text = done_text(&s, &state, Addresses::Known("10.0.0.5"));
        assert!(text.contains("Certificate (SHA-256): AB:CD"), "{text}");
        assert!(text.contains("-> 203.0.113.7"));
    }

    #[test]
    fn issue_keeps_only_our_escape() {
        assert_eq!(issue_safe("a \\4 b \\n"), "a \\4 b \\\\n");
    }
}
