//! The units file, `/etc/balcao/units.toml`: the court's settings (timezone,
//! closed dates, recess) and one `[[unit]]` table per judicial unit.
//!
//! Reading it checks everything at once and reports every problem with its
//! line and field, so court staff can fix the whole file in one pass.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

use chrono::NaiveDate;
use serde::Deserialize;
use toml::Spanned;

use super::hours::{fold, WeeklyHours};
use super::{room, Problem};

/// Timezones of Brazil (IANA names); a court picks the one of its seat.
pub const BRAZIL_ZONES: &[&str] = &[
    "America/Noronha",
    "America/Belem",
    "America/Fortaleza",
    "America/Recife",
    "America/Araguaina",
    "America/Maceio",
    "America/Bahia",
    "America/Sao_Paulo",
    "America/Campo_Grande",
    "America/Cuiaba",
    "America/Santarem",
    "America/Porto_Velho",
    "America/Boa_Vista",
    "America/Manaus",
    "America/Eirunepe",
    "America/Rio_Branco",
];

pub const DEFAULT_ZONE: &str = "America/Sao_Paulo";

/// Court-wide settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Court {
    /// Shown atop the page, e.g. "Tribunal de Justiça do Estado do Acre".
    pub name: String,
    pub timezone: chrono_tz::Tz,
    /// Whether the counters close from 20 December to 6 January.
    pub recess_closes: bool,
    pub closed: Vec<Closure>,
}

impl Default for Court {
    fn default() -> Self {
        Court {
            name: String::new(),
            timezone: chrono_tz::America::Sao_Paulo,
            recess_closes: true,
            closed: Vec::new(),
        }
    }
}

/// Dates the court itself closes (state or municipal holidays, Holy Week,
/// a move of premises), one day or an inclusive range.
#[derive(Debug, Clone, PartialEq)]
pub struct Closure {
    pub from: NaiveDate,
    pub until: NaiveDate,
    pub reason: String,
}

/// One judicial unit and its counter.
#[derive(Debug, Clone, PartialEq)]
pub struct Unit {
    pub name: String,
    pub city: String,
    pub cnj_code: Option<String>,
    pub room: String,
    pub hours: WeeklyHours,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct UnitsFile {
    pub court: Court,
    pub units: Vec<Unit>,
}

/// A unit's fields as read, before checking. `line` gives the line of a
/// field (or of the unit itself when the field is absent).
#[derive(Debug, Clone, Default)]
pub struct RawUnit {
    pub name: Option<String>,
    pub city: Option<String>,
    pub cnj_code: Option<String>,
    pub room: Option<String>,
    pub hours: Option<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub note: Option<String>,
    pub line: usize,
    pub field_lines: HashMap<&'static str, usize>,
}

impl RawUnit {
    fn line_of(&self, field: &str) -> usize {
        self.field_lines.get(field).copied().unwrap_or(self.line)
    }
}

const MAX_NAME: usize = 200;
const MAX_NOTE: usize = 300;

/// Checks raw units and turns them into [`Unit`]s, generating the missing
/// rooms. `keep_rooms` maps a unit's folded "name|city" or CNJ code to the
/// room it had before, so re-importing keeps addresses stable. `field_names`
/// says how each field is called in the source (TOML key or CSV column).
pub fn check_units(
    raw: Vec<RawUnit>,
    keep_rooms: &HashMap<String, String>,
    field_names: &dyn Fn(&str) -> String,
    problems: &mut Vec<Problem>,
) -> Vec<Unit> {
    let mut taken: HashSet<String> = HashSet::new();
    let mut seen_names: HashMap<String, usize> = HashMap::new();
    let mut seen_codes: HashMap<String, usize> = HashMap::new();
    let mut room_lines: HashMap<String, usize> = HashMap::new();
    let mut problem = |line: usize, field: &str, message: String| {
        problems.push(Problem {
            line: Some(line),
            field: field_names(field),
            message,
        });
    };

    // Rooms the court wrote are reserved first, so a generated one never
    // takes a name the court chose for another unit.
    for unit in &raw {
        if let Some(room) = unit
            .room
            .as_deref()
            .map(str::trim)
            .filter(|r| !r.is_empty())
        {
            let line = unit.line_of("room");
            if let Err(message) = room::check(room) {
                problem(line, "room", message);
            } else if let Some(first) = room_lines.get(room) {
                problem(
                    line,
                    "room",
                    format!(
                        "a sala \"{room}\" já é usada na linha {first}; cada unidade tem a sua"
                    ),
                );
            } else {
                room_lines.insert(room.to_string(), line);
                taken.insert(room.to_string());
            }
        }
    }

    let mut units = Vec::new();
    for unit in raw {
        let text = |value: &Option<String>| {
            value
                .as_deref()
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        };
        let name = text(&unit.name);
        let city = text(&unit.city);
        let cnj_code = text(&unit.cnj_code);
        let phone = text(&unit.phone);
        let email = text(&unit.email);
        let note = text(&unit.note);
        let mut ok = true;

        match &name {
            None => {
                problem(
                    unit.line_of("name"),
                    "name",
                    "falta o nome da unidade".into(),
                );
                ok = false;
            }
            Some(n) if n.chars().count() > MAX_NAME => {
                problem(
                    unit.line_of("name"),
                    "name",
                    format!("o nome tem mais de {MAX_NAME} caracteres; encurte-o"),
                );
                ok = false;
            }
            _ => {}
        }
        if city.is_none() {
            problem(
                unit.line_of("city"),
                "city",
                "falta a cidade da unidade".into(),
            );
            ok = false;
        }
        if let (Some(n), Some(c)) = (&name, &city) {
            let key = format!("{}|{}", fold(n), fold(c));
            if let Some(first) = seen_names.get(&key) {
                problem(
                    unit.line_of("name"),
                    "name",
                    format!("a unidade \"{n}\" de {c} já aparece na linha {first}"),
                );
                ok = false;
            } else {
                seen_names.insert(key, unit.line_of("name"));
            }
        }
        if let Some(code) = &cnj_code {
            if !code.chars().all(|c| c.is_ascii_digit()) || code.len() > 10 {
                problem(
                    unit.line_of("cnj_code"),
                    "cnj_code",
                    format!("o código CNJ \"{code}\" deve ter só algarismos (até 10)"),
                );
                ok = false;
            } else if let Some(first) = seen_codes.get(code) {
                problem(
                    unit.line_of("cnj_code"),
                    "cnj_code",
                    format!("o código CNJ {code} já aparece na linha {first}"),
                );
                ok = false;
            } else {
                seen_codes.insert(code.clone(), unit.line_of("cnj_code"));
            }
        }
        let hours = match text(&unit.hours) {
            None => {
                problem(
                    unit.line_of("hours"),
                    "hours",
                    "falta o horário; escreva por exemplo \"seg-sex 08:00-14:00\"".into(),
                );
                ok = false;
                None
            }
            Some(h) => match WeeklyHours::parse(&h) {
                Ok(hours) => Some(hours),
                Err(e) => {
                    problem(unit.line_of("hours"), "hours", e.0);
                    ok = false;
                    None
                }
            },
        };
        if let Some(p) = &phone {
            let digits = p.chars().filter(char::is_ascii_digit).count();
            let allowed = p
                .chars()
                .all(|c| c.is_ascii_digit() || " ()+-.".contains(c));
            if !allowed || !(8..=15).contains(&digits) {
                problem(
                    unit.line_of("phone"),
                    "phone",
                    format!("telefone \"{p}\" ilegível; use por exemplo (68) 3211-5000"),
                );
                ok = false;
            }
        }
        if let Some(e) = &email {
            let valid = match e.split_once('@') {
                Some((user, domain)) => {
                    !user.is_empty()
                        && domain.contains('.')
                        && !domain.starts_with('.')
                        && !domain.ends_with('.')
                        && !e.contains(char::is_whitespace)
                        && !domain.contains('@')
                }
                None => false,
            };
            if !valid {
                problem(
                    unit.line_of("email"),
                    "email",
                    format!("e-mail \"{e}\" inválido; use por exemplo vara1@tjxx.jus.br"),
                );
                ok = false;
            }
        }
        if let Some(n) = &note {
            if n.chars().count() > MAX_NOTE {
                problem(
                    unit.line_of("note"),
                    "note",
                    format!("a observação tem mais de {MAX_NOTE} caracteres; encurte-a"),
                );
                ok = false;
            }
        }
        if !ok {
            continue;
        }
        let (name, city) = (name.unwrap(), city.unwrap());

        let given = text(&unit.room);
        let room = match given {
            Some(r) => r,
            None => {
                let kept = cnj_code
                    .as_ref()
                    .and_then(|c| keep_rooms.get(&format!("cnj:{c}")))
                    .or_else(|| keep_rooms.get(&format!("{}|{}", fold(&name), fold(&city))))
                    .filter(|r| !taken.contains(*r));
                match kept {
                    Some(r) => {
                        taken.insert(r.clone());
                        r.clone()
                    }
                    None => room::unique(&name, &mut taken),
                }
            }
        };
        units.push(Unit {
            name,
            city,
            cnj_code,
            room,
            hours: hours.unwrap(),
            phone,
            email,
            note,
        });
    }
    units
}

/// The keys under which [`check_units`] looks up a unit's earlier room.
pub fn room_memory(units: &[Unit]) -> HashMap<String, String> {
    let mut map = HashMap::new();
    for unit in units {
        map.insert(
            format!("{}|{}", fold(&unit.name), fold(&unit.city)),
            unit.room.clone(),
        );
        if let Some(code) = &unit.cnj_code {
            map.insert(format!("cnj:{code}"), unit.room.clone());
        }
    }
    map
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlFile {
    court: Option<Spanned<TomlCourt>>,
    #[serde(default)]
    unit: Vec<Spanned<TomlUnit>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlCourt {
    name: Option<String>,
    timezone: Option<Spanned<String>>,
    recess_closes: Option<bool>,
    #[serde(default)]
    closed: Vec<Spanned<TomlClosure>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlClosure {
    date: Spanned<toml::Value>,
    until: Option<Spanned<toml::Value>>,
    reason: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlUnit {
    name: Option<Spanned<String>>,
    city: Option<Spanned<String>>,
    cnj_code: Option<Spanned<String>>,
    room: Option<Spanned<String>>,
    hours: Option<Spanned<String>>,
    phone: Option<Spanned<String>>,
    email: Option<Spanned<String>>,
    note: Option<Spanned<String>>,
}

fn line_at(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

fn toml_date(value: &toml::Value) -> Option<NaiveDate> {
    let text = match value {
        toml::Value::String(s) => s.clone(),
        toml::Value::Datetime(d) if d.time.is_none() && d.offset.is_none() => d.to_string(),
        _ => return None,
    };
    NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d").ok()
}

/// Parses a timezone name, allowing only Brazil's.
pub fn parse_zone(name: &str) -> Result<chrono_tz::Tz, String> {
    if !BRAZIL_ZONES.contains(&name) {
        return Err(format!(
            "fuso \"{name}\" não é um fuso do Brasil; use um destes: {}",
            BRAZIL_ZONES.join(", ")
        ));
    }
    name.parse()
        .map_err(|_| format!("fuso \"{name}\" desconhecido desta versão do banco de fusos"))
}

impl UnitsFile {
    /// Reads and checks the text of a units file; on any problem returns all
    /// of them.
    pub fn parse(text: &str) -> Result<UnitsFile, Vec<Problem>> {
        let parsed: TomlFile = toml::from_str(text).map_err(|e| {
            vec![Problem {
                line: e.span().map(|s| line_at(text, s.start)),
                field: String::new(),
                message: format!("TOML inválido: {}", e.message()),
            }]
        })?;
        let mut problems = Vec::new();

        let mut court = Court::default();
        if let Some(c) = parsed.court {
            let c = c.into_inner();
            court.name = c.name.unwrap_or_default().trim().to_string();
            court.recess_closes = c.recess_closes.unwrap_or(true);
            if let Some(zone) = c.timezone {
                match parse_zone(zone.get_ref().trim()) {
                    Ok(tz) => court.timezone = tz,
                    Err(message) => problems.push(Problem {
                        line: Some(line_at(text, zone.span().start)),
                        field: "court.timezone".into(),
                        message,
                    }),
                }
            }
            for closure in c.closed {
                let line = line_at(text, closure.span().start);
                let closure = closure.into_inner();
                let bad_date = |field: &str, v: &Spanned<toml::Value>| Problem {
                    line: Some(line_at(text, v.span().start)),
                    field: format!("court.closed.{field}"),
                    message: format!(
                        "data {} ilegível; escreva AAAA-MM-DD, por exemplo 2026-04-02",
                        v.get_ref()
                    ),
                };
                let from = toml_date(closure.date.get_ref());
                let until = match &closure.until {
                    Some(u) => toml_date(u.get_ref()),
                    None => from,
                };
                match (from, until) {
                    (None, _) => problems.push(bad_date("date", &closure.date)),
                    (_, None) => problems.push(bad_date("until", closure.until.as_ref().unwrap())),
                    (Some(from), Some(until)) if until < from => problems.push(Problem {
                        line: Some(line),
                        field: "court.closed.until".into(),
                        message: format!(
                            "o fechamento termina ({until}) antes de começar ({from})"
                        ),
                    }),
                    (Some(from), Some(until)) if (until - from).num_days() > 366 => {
                        problems.push(Problem {
                            line: Some(line),
                            field: "court.closed.until".into(),
                            message: "um fechamento de mais de um ano; confira as datas".into(),
                        })
                    }
                    (Some(from), Some(until)) => court.closed.push(Closure {
                        from,
                        until,
                        reason: closure
                            .reason
                            .map(|r| r.trim().to_string())
                            .filter(|r| !r.is_empty())
                            .unwrap_or_else(|| "Fechamento do tribunal".into()),
                    }),
                }
            }
        }

        let raw: Vec<RawUnit> = parsed
            .unit
            .into_iter()
            .map(|spanned| {
                let line = line_at(text, spanned.span().start);
                let u = spanned.into_inner();
                let mut raw = RawUnit {
                    line,
                    ..RawUnit::default()
                };
                let mut take = |key: &'static str, v: Option<Spanned<String>>| {
                    v.map(|v| {
                        raw.field_lines.insert(key, line_at(text, v.span().start));
                        v.into_inner()
                    })
                };
                let name = take("name", u.name);
                let city = take("city", u.city);
                let cnj_code = take("cnj_code", u.cnj_code);
                let room = take("room", u.room);
                let hours = take("hours", u.hours);
                let phone = take("phone", u.phone);
                let email = take("email", u.email);
                let note = take("note", u.note);
                RawUnit {
                    name,
                    city,
                    cnj_code,
                    room,
                    hours,
                    phone,
                    email,
                    note,
                    ..raw
                }
            })
            .collect();
        let units = check_units(
            raw,
            &HashMap::new(),
            &|field| format!("unit.{field}"),
            &mut problems,
        );
        // A unit written by hand without a room gets one from its name; it
        // stays the same only while the name does, which the header says.
        if problems.is_empty() {
            Ok(UnitsFile { court, units })
        } else {
            Err(problems)
        }
    }

    /// The file's text: court settings, then one table per unit, every room
    /// written out so it stays stable.
    pub fn to_toml(&self) -> String {
        let q = |s: &str| toml::Value::String(s.to_string()).to_string();
        let mut out = String::new();
        out.push_str(
            "# Unidades do Balcão Virtual. Gerado por `balcaoctl units import`; pode ser editado\n\
             # à mão e conferido com `balcaoctl units check`.\n\
             # hours: grupos \"dias intervalos\" separados por \";\", ex. \"seg-sex 08:00-12:00 13:00-18:00; sáb 08:00-12:00\"\n\
             # room: endereço da sala (https://DOMÍNIO/room). Sem ele, vem do nome e muda se o nome mudar.\n\n",
        );
        out.push_str("[court]\n");
        let _ = writeln!(out, "name = {}", q(&self.court.name));
        let _ = writeln!(out, "timezone = {}", q(self.court.timezone.name()));
        let _ = writeln!(out, "recess_closes = {}", self.court.recess_closes);
        for c in &self.court.closed {
            out.push_str("\n[[court.closed]]\n");
            let _ = writeln!(out, "date = {}", c.from);
            if c.until != c.from {
                let _ = writeln!(out, "until = {}", c.until);
            }
            let _ = writeln!(out, "reason = {}", q(&c.reason));
        }
        for u in &self.units {
            out.push_str("\n[[unit]]\n");
            let _ = writeln!(out, "name = {}", q(&u.name));
            let _ = writeln!(out, "city = {}", q(&u.city));
            if let Some(code) = &u.cnj_code {
                let _ = writeln!(out, "cnj_code = {}", q(code));
            }
            let _ = writeln!(out, "room = {}", q(&u.room));
            let _ = writeln!(out, "hours = {}", q(&u.hours.to_string()));
            for (key, value) in [("phone", &u.phone), ("email", &u.email), ("note", &u.note)] {
                if let Some(v) = value {
                    let _ = writeln!(out, "{key} = {}", q(v));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[court]
name = "Tribunal de Justiça do Estado do Acre"
timezone = "America/Rio_Branco"
recess_closes = false

[[court.closed]]
date = 2026-04-01
until = "2026-04-02"
reason = "Semana Santa"

[[unit]]
name = "1ª Vara Cível de Rio Branco"
city = "Rio Branco"
cnj_code = "1234"
room = "vara-civel-1"
hours = "seg-sex 08:00-14:00"
phone = "(68) 3211-5000"
email = "vara1@tjac.jus.br"
note = "Atendimento também por WhatsApp"
"#;

    #[test]
    fn reads_a_good_file_and_writes_it_back_the_same() {
        let file = UnitsFile::parse(GOOD).unwrap();
        assert_eq!(file.court.timezone, chrono_tz::America::Rio_Branco);
        assert!(!file.court.recess_closes);
        assert_eq!(
            file.court.closed[0].until,
            NaiveDate::from_ymd_opt(2026, 4, 2).unwrap()
        );
        assert_eq!(file.units[0].room, "vara-civel-1");
        let again = UnitsFile::parse(&file.to_toml()).unwrap();
        assert_eq!(again, file);
    }

    #[test]
    fn defaults_to_sao_paulo_and_recess_closed() {
        let file = UnitsFile::parse("").unwrap();
        assert_eq!(file.court.timezone.name(), DEFAULT_ZONE);
        assert!(file.court.recess_closes);
        for zone in BRAZIL_ZONES {
            assert!(parse_zone(zone).is_ok(), "{zone}");
        }
        assert!(parse_zone("Europe/Lisbon").is_err());
    }

    #[test]
    fn reports_every_bad_field_with_its_line() {
        let text = r#"[court]
timezone = "America/Lima"

[[unit]]
name = "Vara A"
city = "Xapuri"
room = "vara-a"
hours = "seg-sex 14:00-08:00"

[[unit]]
name = "Vara B"
room = "vara-a"
hours = "seg-sex 08:00-12:00"
email = "nada"
"#;
        let problems = UnitsFile::parse(text).unwrap_err();
        let found: Vec<(Option<usize>, &str)> = problems
            .iter()
            .map(|p| (p.line, p.field.as_str()))
            .collect();
        assert!(found.contains(&(Some(2), "court.timezone")), "{found:?}");
        assert!(found.contains(&(Some(8), "unit.hours")), "{found:?}");
        assert!(found.contains(&(Some(12), "unit.room")), "{found:?}");
        assert!(found.contains(&(Some(10), "unit.city")), "{found:?}");
        assert!(found.contains(&(Some(14), "unit.email")), "{found:?}");
        assert_eq!(problems.len(), 5, "{problems:?}");
    }

    #[test]
    fn a_syntax_error_names_its_line() {
        let problems = UnitsFile::parse("[court]\nname = \"x\nfoo").unwrap_err();
        assert_eq!(problems[0].line, Some(2));
    }
}
