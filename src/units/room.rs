//! Jitsi room names for units: lowercase ASCII letters, digits and hyphens,
//! made from the unit's name when the court gives none, and unique.
//!
//! The room name is the last part of the address the citizen opens
//! (`https://DOMAIN/ROOM`), so it must not collide with a path that Jitsi's or
//! the appliance's nginx already serves.

use std::collections::HashSet;

use super::hours::fold;

/// Longest room name we generate or accept; long enough for every unit name
/// we have seen, short enough to read out over the phone.
pub const MAX_LEN: usize = 60;

/// Paths served beside the rooms (Jitsi's nginx site and this page); a room
/// with one of these names would be unreachable.
pub const RESERVED: &[&str] = &[
    "about",
    "colibri-ws",
    "conference-request",
    "config",
    "css",
    "external_api",
    "fonts",
    "http-bind",
    "images",
    "index",
    "lang",
    "libs",
    "load-test",
    "sounds",
    "static",
    "units",
    "xmpp-websocket",
];

/// Why a room name given by the court is refused.
pub fn check(room: &str) -> Result<(), String> {
    if room.is_empty() {
        return Err("a sala está vazia".into());
    }
    if room.len() > MAX_LEN {
        return Err(format!(
            "a sala \"{room}\" tem mais de {MAX_LEN} caracteres; encurte-a"
        ));
    }
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
    if !room.chars().all(allowed) || room.starts_with('-') || room.ends_with('-') {
        return Err(format!(
            "a sala \"{room}\" só pode ter letras minúsculas sem acento, algarismos e hífens \
             (sem hífen no começo ou no fim); por exemplo {}",
            slug(room)
        ));
    }
    if RESERVED.contains(&room) {
        return Err(format!(
            "a sala \"{room}\" coincide com um endereço do próprio Jitsi; escolha outro nome"
        ));
    }
    Ok(())
}

/// The room name a unit's name gives: accents removed, lowercase, every run of
/// other characters one hyphen, cut at a word boundary to [`MAX_LEN`].
pub fn slug(name: &str) -> String {
    let mut out = String::new();
    for c in fold(name).chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    while out.ends_with('-') {
        out.pop();
    }
    if out.len() > MAX_LEN {
        let cut = out[..=MAX_LEN].rfind('-').unwrap_or(MAX_LEN);
        out.truncate(cut);
    }
    if out.is_empty() || RESERVED.contains(&out.as_str()) {
        out = format!("balcao-{out}").trim_end_matches('-').to_string();
    }
    out
}

/// A slug of `name` not yet in `taken` (adding `-2`, `-3`, ... when needed),
/// recorded in `taken`.
pub fn unique(name: &str, taken: &mut HashSet<String>) -> String {
    let base = slug(name);
    let mut candidate = base.clone();
    let mut n = 2;
    while taken.contains(&candidate) {
        let suffix = format!("-{n}");
        let mut stem = base.clone();
        stem.truncate(MAX_LEN - suffix.len());
        candidate = format!("{}{suffix}", stem.trim_end_matches('-'));
        n += 1;
    }
    taken.insert(candidate.clone());
    candidate
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accented_names_become_ascii() {
        assert_eq!(
            slug("1ª Vara Cível de Rio Branco"),
            "1a-vara-civel-de-rio-branco"
        );
        assert_eq!(
            slug("Juizado Especial da Fazenda Pública — Mâncio Lima"),
            "juizado-especial-da-fazenda-publica-mancio-lima"
        );
        assert_eq!(
            slug("2º Juízo de Órfãos e Sucessões"),
            "2o-juizo-de-orfaos-e-sucessoes"
        );
        assert_eq!(
            slug("Vara da Infância, Juventude & Idoso"),
            "vara-da-infancia-juventude-idoso"
        );
        assert_eq!(slug("  ÇAÇÃO   "), "cacao");
        assert_eq!(slug("Libs"), "balcao-libs");
        assert_eq!(slug("—"), "balcao");
        for name in [
            "1ª Vara Cível de Rio Branco",
            "Ação",
            "x".repeat(200).as_str(),
        ] {
            assert!(check(&slug(name)).is_ok(), "{name}");
        }
    }

    #[test]
    fn long_names_are_cut_at_a_word() {
        let name = "Vara Especializada de Execução Fiscal e Cartas Precatórias Cíveis da Comarca";
        let s = slug(name);
        assert!(s.len() <= MAX_LEN, "{s}");
        assert!(!s.ends_with('-'));
        assert!(name_start_matches(&s));
    }

    fn name_start_matches(s: &str) -> bool {
        "vara-especializada-de-execucao-fiscal-e-cartas-precatorias-civeis".starts_with(s)
    }

    #[test]
    fn names_that_fold_alike_get_distinct_rooms() {
        let mut taken = HashSet::new();
        let a = unique("Vara Única de Jordão", &mut taken);
        let b = unique("Vara Unica de Jordao", &mut taken);
        let c = unique("VARA ÚNICA DE JORDÃO", &mut taken);
        assert_eq!(a, "vara-unica-de-jordao");
        assert_eq!(b, "vara-unica-de-jordao-2");
        assert_eq!(c, "vara-unica-de-jordao-3");

        let long = "Vara ".repeat(30);
        let x = unique(&long, &mut taken);
        let y = unique(&long, &mut taken);
        assert_ne!(x, y);
        assert!(y.len() <= MAX_LEN && y.ends_with("-2"), "{y}");
    }

    #[test]
    fn refuses_bad_given_rooms() {
        assert!(check("vara-civel").is_ok());
        for bad in [
            "",
            "Vara",
            "vara civel",
            "-vara",
            "vara-",
            "çala",
            "http-bind",
            "a/b",
        ] {
            assert!(check(bad).is_err(), "{bad}");
        }
    }
}
