//! The first-boot questions, in one list shared by the OVA descriptor (which
//! offers them as OVF properties on vCenter) and the appliance (which reads
//! them from `/etc/balcao/setup.toml`, from those OVF properties, or asks them
//! in the console wizard).

/// What kind of value a question takes; decides how the OVF property and the
/// wizard present it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    /// Never echoed, printed or logged.
    Password,
    /// One of a fixed list of values.
    Choice(&'static [&'static str]),
}

/// One first-boot question.
#[derive(Debug, Clone, Copy)]
pub struct Question {
    /// Dotted key in `setup.toml` (`admin.user` is `user` in `[admin]`).
    pub key: &'static str,
    /// OVF property key (`ovf:key`), read back through guestinfo.
    pub ovf_key: &'static str,
    pub kind: Kind,
    pub required: bool,
    pub label_pt: &'static str,
    pub label_en: &'static str,
    pub help_pt: &'static str,
    pub help_en: &'static str,
}

/// TLS modes, as written in `tls.mode`.
pub const TLS_MODES: &[&str] = &["letsencrypt", "self-signed", "own"];

/// Languages of the appliance's messages, as written in `language`.
pub const LANGUAGES: &[&str] = &["pt-BR", "en"];

pub const QUESTIONS: &[Question] = &[
    Question {
        key: "domain",
        ovf_key: "balcao.domain",
        kind: Kind::Text,
        required: true,
        label_pt: "Domínio do serviço",
        label_en: "Service domain",
        help_pt: "Nome completo pelo qual o público acessa, por exemplo balcao.tjxx.jus.br",
        help_en: "Full name the public uses, for example balcao.tjxx.jus.br",
    },
    Question {
        key: "email",
        ovf_key: "balcao.email",
        kind: Kind::Text,
        required: true,
        label_pt: "E-mail para avisos do certificado",
        label_en: "E-mail for certificate notices",
        help_pt: "Recebe os avisos de expiração do Let's Encrypt",
        help_en: "Receives Let's Encrypt expiry notices",
    },
    Question {
        key: "admin.user",
        ovf_key: "balcao.admin_user",
        kind: Kind::Text,
        required: true,
        label_pt: "Usuário do primeiro servidor (atendente)",
        label_en: "First staff user name",
        help_pt: "Conta que abre as salas; os cidadãos entram como convidados",
        help_en: "Account that opens rooms; citizens join as guests",
    },
    Question {
        key: "admin.password",
        ovf_key: "balcao.admin_password",
        kind: Kind::Password,
        required: true,
        label_pt: "Senha do primeiro servidor",
        label_en: "First staff password",
        help_pt: "No mínimo 10 caracteres; removida do arquivo depois de usada",
        help_en: "At least 10 characters; removed from the file once used",
    },
    Question {
        key: "tls.mode",
        ovf_key: "balcao.tls_mode",
        kind: Kind::Choice(TLS_MODES),
        required: false,
        label_pt: "Certificado TLS",
        label_en: "TLS certificate",
        help_pt: "letsencrypt (recomendado), own (certificado do tribunal) ou self-signed",
        help_en: "letsencrypt (recommended), own (the court's certificate) or self-signed",
    },
    Question {
        key: "network.public_ip",
        ovf_key: "balcao.public_ip",
        kind: Kind::Text,
        required: false,
        label_pt: "IP público (se a VM estiver atrás de NAT)",
        label_en: "Public IP (when the VM is behind NAT)",
        help_pt: "Deixe em branco se o endereço da VM já é público",
        help_en: "Leave empty when the VM's own address is public",
    },
    Question {
        key: "language",
        ovf_key: "balcao.language",
        kind: Kind::Choice(LANGUAGES),
        required: false,
        label_pt: "Idioma das mensagens",
        label_en: "Language of messages",
        help_pt: "pt-BR ou en",
        help_en: "pt-BR or en",
    },
];

/// The question with this `setup.toml` key.
pub fn question(key: &str) -> Option<&'static Question> {
    QUESTIONS.iter().find(|q| q.key == key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_unique_and_ovf_keys_are_safe() {
        for (i, a) in QUESTIONS.iter().enumerate() {
            for b in &QUESTIONS[i + 1..] {
                assert_ne!(a.key, b.key);
                assert_ne!(a.ovf_key, b.ovf_key);
            }
            assert!(a
                .ovf_key
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'.' || c == b'_'));
        }
        assert_eq!(question("admin.password").unwrap().kind, Kind::Password);
    }
}
