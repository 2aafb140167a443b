//! Checks on each first-boot answer, shared by the preseed file, the OVF
//! properties and the wizard. Each check returns the value normalised (domain
//! in lowercase punycode, user name in lowercase) or a short message saying
//! what is wrong and what is expected, in Portuguese or English.

use std::net::IpAddr;

use super::Lang;
use crate::answers::{LANGUAGES, TLS_MODES};

/// Shortest staff password accepted.
pub const MIN_PASSWORD_CHARS: usize = 10;
/// Longest staff password accepted (Prosody reads it from one line).
pub const MAX_PASSWORD_CHARS: usize = 128;
/// Account names Jitsi Meet uses for its own components on the XMPP server.
pub const RESERVED_USERS: &[&str] = &["focus", "jvb", "jibri", "jigasi", "recorder", "transcriber"];

/// Why an answer was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{pt}")]
pub struct Invalid {
    pub pt: String,
    pub en: String,
}

impl Invalid {
    fn new(pt: impl Into<String>, en: impl Into<String>) -> Invalid {
        Invalid {
            pt: pt.into(),
            en: en.into(),
        }
    }

    pub fn message(&self, lang: Lang) -> &str {
        lang.t(&self.pt, &self.en)
    }
}

/// Checks the answer for the `setup.toml` key `key`.
pub fn check(key: &str, value: &str) -> Result<String, Invalid> {
    match key {
        "domain" => domain(value),
        "email" => email(value),
        "admin.user" => user(value),
        "admin.password" => password(value).map(|()| value.to_owned()),
        "tls.mode" => choice(value, TLS_MODES),
        "tls.acme_directory" => acme_directory(value),
        "tls.cert" | "tls.key" | "tls.chain" | "tls.ca" => absolute_path(value),
        "network.public_ip" => public_ip(value),
        "language" => choice(value, LANGUAGES),
        _ => Err(Invalid::new(
            format!("chave desconhecida `{key}`"),
            format!("unknown key `{key}`"),
        )),
    }
}

/// A fully qualified domain name, returned in lowercase ASCII (punycode for
/// internationalised names).
pub fn domain(value: &str) -> Result<String, Invalid> {
    let value = value.trim();
    let value = value.strip_suffix('.').unwrap_or(value);
    if value.is_empty() {
        return Err(Invalid::new(
            "informe o domínio, por exemplo balcao.tjxx.jus.br",
            "enter the domain, for example balcao.tjxx.jus.br",
        ));
    }
    if value.parse::<IpAddr>().is_ok() || value.trim_matches(['[', ']']).parse::<IpAddr>().is_ok() {
        return Err(Invalid::new(
            format!("`{value}` é um endereço IP; informe um nome, por exemplo balcao.tjxx.jus.br"),
            format!("`{value}` is an IP address; enter a name, for example balcao.tjxx.jus.br"),
        ));
    }
    let ascii = idna::domain_to_ascii_strict(value).map_err(|_| {
        Invalid::new(
            format!(
                "`{value}` não é um nome de domínio válido (use letras, números, hífens e pontos)"
            ),
            format!("`{value}` is not a valid domain name (use letters, digits, hyphens and dots)"),
        )
    })?;
    if ascii.len() > 253 {
        return Err(Invalid::new(
            "o domínio passa de 253 caracteres",
            "the domain is longer than 253 characters",
        ));
    }
    let labels: Vec<&str> = ascii.split('.').collect();
    if labels.len() < 2 {
        return Err(Invalid::new(
            format!("`{value}` não é um nome completo; inclua o domínio, por exemplo balcao.tjxx.jus.br"),
            format!("`{value}` is not a full name; include the domain, for example balcao.tjxx.jus.br"),
        ));
    }
    for label in &labels {
        let good_chars = label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if label.is_empty() || label.len() > 63 || !good_chars {
            return Err(Invalid::new(
                format!(
                    "a parte `{label}` do domínio é inválida (1 a 63 letras, números ou hífens)"
                ),
                format!(
                    "the domain part `{label}` is invalid (1 to 63 letters, digits or hyphens)"
                ),
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(Invalid::new(
                format!("a parte `{label}` do domínio não pode começar nem terminar com hífen"),
                format!("the domain part `{label}` cannot start or end with a hyphen"),
            ));
        }
    }
    let top = labels[labels.len() - 1];
    if top.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Invalid::new(
            format!("`{value}` termina em número; informe um nome, por exemplo balcao.tjxx.jus.br"),
            format!("`{value}` ends in a number; enter a name, for example balcao.tjxx.jus.br"),
        ));
    }
    if top == "localhost" || top == "local" {
        return Err(Invalid::new(
            format!("`{value}` é um nome só da rede local; o público precisa de um nome no DNS"),
            format!("`{value}` is a local-only name; the public needs a name in DNS"),
        ));
    }
    Ok(ascii)
}

/// An e-mail address; its domain is normalised like [`domain`].
pub fn email(value: &str) -> Result<String, Invalid> {
    let value = value.trim();
    let bad = || {
        Invalid::new(
            format!("`{value}` não é um e-mail válido (exemplo: ti@tjxx.jus.br)"),
            format!("`{value}` is not a valid e-mail address (example: ti@tjxx.jus.br)"),
        )
    };
    let (local, host) = value.rsplit_once('@').ok_or_else(bad)?;
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~.".contains(&b));
    if !local_ok {
        return Err(bad());
    }
    let host = domain(host).map_err(|_| bad())?;
    let address = format!("{local}@{host}");
    if address.len() > 254 {
        return Err(bad());
    }
    Ok(address)
}

/// The staff account's user name (an XMPP local part), in lowercase.
pub fn user(value: &str) -> Result<String, Invalid> {
    let name = value.trim().to_lowercase();
    if RESERVED_USERS.contains(&name.as_str()) {
        return Err(Invalid::new(
            format!("`{name}` é reservado pelo Jitsi; escolha outro nome"),
            format!("`{name}` is reserved by Jitsi; choose another name"),
        ));
    }
    let first_ok = name.bytes().next().is_some_and(|b| b.is_ascii_lowercase());
    let rest_ok = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if !(2..=32).contains(&name.len()) || !first_ok || !rest_ok {
        return Err(Invalid::new(
            format!("`{}` não serve como usuário: use de 2 a 32 letras sem acento, números, `.`, `_` ou `-`, começando por letra", value.trim()),
            format!("`{}` is not a valid user name: use 2 to 32 plain letters, digits, `.`, `_` or `-`, starting with a letter", value.trim()),
        ));
    }
    Ok(name)
}

/// The staff password: length and no control characters. The message never
/// repeats the password.
pub fn password(value: &str) -> Result<(), Invalid> {
    let chars = value.chars().count();
    if chars < MIN_PASSWORD_CHARS {
        return Err(Invalid::new(
            format!("a senha precisa ter pelo menos {MIN_PASSWORD_CHARS} caracteres"),
            format!("the password needs at least {MIN_PASSWORD_CHARS} characters"),
        ));
    }
    if chars > MAX_PASSWORD_CHARS {
        return Err(Invalid::new(
            format!("a senha pode ter no máximo {MAX_PASSWORD_CHARS} caracteres"),
            format!("the password may have at most {MAX_PASSWORD_CHARS} characters"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(Invalid::new(
            "a senha não pode conter caracteres de controle (Tab, Enter)",
            "the password cannot contain control characters (Tab, Enter)",
        ));
    }
    Ok(())
}

/// The public address of the VM behind NAT: an IP that is not private,
/// loopback or otherwise unroutable.
pub fn public_ip(value: &str) -> Result<String, Invalid> {
    let value = value.trim();
    let ip: IpAddr = value.parse().map_err(|_| {
        Invalid::new(
            format!("`{value}` não é um endereço IP (exemplo: 203.0.113.7)"),
            format!("`{value}` is not an IP address (example: 203.0.113.7)"),
        )
    })?;
    let unroutable = match ip {
        IpAddr::V4(v4) => {
            v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || (v4.octets()[0] == 100 && v4.octets()[1] & 0xc0 == 64)
        }
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || v6.segments()[0] & 0xfe00 == 0xfc00
                || v6.segments()[0] & 0xffc0 == 0xfe80
        }
    };
    if unroutable {
        return Err(Invalid::new(
            format!("`{value}` não é um endereço público; informe o IP pelo qual a internet chega à VM, ou deixe em branco"),
            format!("`{value}` is not a public address; enter the IP the internet reaches the VM by, or leave it empty"),
        ));
    }
    Ok(ip.to_string())
}

/// An ACME directory URL (for a test CA or another ACME provider).
pub fn acme_directory(value: &str) -> Result<String, Invalid> {
    let value = value.trim();
    let rest = value
        .strip_prefix("https://")
        .or(value.strip_prefix("http://"));
    match rest {
        Some(rest) if !rest.is_empty() && !rest.contains(char::is_whitespace) => {
            Ok(value.to_owned())
        }
        _ => Err(Invalid::new(
            format!("`{value}` não é um endereço https:// de diretório ACME"),
            format!("`{value}` is not an https:// ACME directory URL"),
        )),
    }
}

/// An absolute path on the appliance (the court's certificate files).
pub fn absolute_path(value: &str) -> Result<String, Invalid> {
    let value = value.trim();
    if value.starts_with('/') && !value.contains('\n') {
        Ok(value.to_owned())
    } else {
        Err(Invalid::new(
            format!("`{value}` não é um caminho absoluto (comece com /)"),
            format!("`{value}` is not an absolute path (start with /)"),
        ))
    }
}

fn choice(value: &str, allowed: &[&str]) -> Result<String, Invalid> {
    let value = value.trim();
    if allowed.contains(&value) {
        Ok(value.to_owned())
    } else {
        let list = allowed.join(", ");
        Err(Invalid::new(
            format!("`{value}` não é uma opção; escolha uma destas: {list}"),
            format!("`{value}` is not an option; choose one of: {list}"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains() {
        assert_eq!(domain("balcao.tjxx.jus.br").unwrap(), "balcao.tjxx.jus.br");
        assert_eq!(
            domain(" Balcao.TJXX.jus.br. ").unwrap(),
            "balcao.tjxx.jus.br"
        );
        assert_eq!(
            domain("balcão.tjxx.jus.br").unwrap(),
            "xn--balco-dra.tjxx.jus.br"
        );
        assert_eq!(domain("a-1.b2.com").unwrap(), "a-1.b2.com");
        for bad in [
            "",
            "balcao",
            "localhost",
            "balcao.local",
            "192.0.2.1",
            "2001:db8::1",
            "[2001:db8::1]",
            "1.2.3.4.5",
            "-balcao.tjxx.jus.br",
            "balcao-.tjxx.jus.br",
            "bal_cao.tjxx.jus.br",
            "bal cao.tjxx.jus.br",
            "balcao..jus.br",
            ".jus.br",
            "https://balcao.tjxx.jus.br",
            "balcao.tjxx.jus.br/x",
        ] {
            assert!(domain(bad).is_err(), "accepted {bad:?}");
        }
        let long_label = format!("{}.jus.br", "a".repeat(64));
        assert!(domain(&long_label).is_err());
        let long_name = format!("{}jus.br", "abcdefghi.".repeat(26));
        assert!(long_name.len() > 253);
        assert!(domain(&long_name).is_err());
        let max_label = format!("{}.jus.br", "a".repeat(63));
        assert!(domain(&max_label).is_ok());
    }

    #[test]
    fn emails() {
        assert_eq!(email("ti@tjxx.jus.br").unwrap(), "ti@tjxx.jus.br");
        assert_eq!(
            email("TI.Suporte+jitsi@TJXX.jus.br").unwrap(),
            "TI.Suporte+jitsi@tjxx.jus.br"
        );
        assert_eq!(
            email("ti@tribunal.ção.br").unwrap(),
            "ti@tribunal.xn--o-xfal.br"
        );
        for bad in [
            "",
            "ti",
            "@tjxx.jus.br",
            "ti@",
            "ti@tjxx",
            "t i@tjxx.jus.br",
            ".ti@tjxx.jus.br",
            "ti..x@tjxx.jus.br",
            "ti@192.0.2.1",
            "ti@@tjxx.jus.br",
        ] {
            assert!(email(bad).is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn users() {
        assert_eq!(user("atendimento").unwrap(), "atendimento");
        assert_eq!(user(" Maria.Silva ").unwrap(), "maria.silva");
        assert_eq!(user("vara-1_civel").unwrap(), "vara-1_civel");
        for bad in [
            "",
            "a",
            "focus",
            "FOCUS",
            "jvb",
            "1vara",
            "joão",
            "maria silva",
            "a@b",
            &"a".repeat(33),
        ] {
            assert!(user(bad).is_err(), "accepted {bad:?}");
        }
        assert!(user("focus").unwrap_err().pt.contains("reservado"));
    }

    #[test]
    fn passwords() {
        assert!(password("0123456789").is_ok());
        assert!(
            password("çãõéíúâêôà").is_ok(),
            "ten accented characters are ten characters"
        );
        for bad in ["", "curta", "123456789", "tem\ttab12345", "linha\nnova1234"] {
            let err = password(bad).unwrap_err();
            if !bad.is_empty() {
                assert!(
                    !err.pt.contains(bad) && !err.en.contains(bad),
                    "message repeats the password"
                );
            }
        }
        assert!(password(&"x".repeat(129)).is_err());
    }

    #[test]
    fn public_ips() {
        assert_eq!(public_ip("203.0.113.7").unwrap(), "203.0.113.7");
        assert_eq!(public_ip(" 2001:db8::7 ").unwrap(), "2001:db8::7");
        for bad in [
            "",
            "x",
            "10.0.0.5",
            "192.168.1.1",
            "172.16.0.1",
            "127.0.0.1",
            "0.0.0.0",
            "100.64.0.1",
            "169.254.1.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "203.0.113.7/24",
        ] {
            assert!(public_ip(bad).is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn choices_and_urls() {
        assert_eq!(check("tls.mode", "self-signed").unwrap(), "self-signed");
        assert!(check("tls.mode", "selfsigned").is_err());
        assert_eq!(check("language", "en").unwrap(), "en");
        assert!(check("language", "pt").is_err());
        assert!(acme_directory("https://acme-staging-v02.api.letsencrypt.org/directory").is_ok());
        assert!(acme_directory("ftp://x").is_err());
        assert!(acme_directory("https://").is_err());
        assert!(check("dominio", "x")
            .unwrap_err()
            .pt
            .contains("desconhecida"));
    }
}
