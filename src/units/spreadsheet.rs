//! The units as a spreadsheet: `balcaoctl units import FILE.csv` reads one,
//! `balcaoctl units export` writes one.
//!
//! Courts keep their units in spreadsheets, so the CSV is the way in and out.
//! Columns are named in Portuguese (`nome`, `cidade`, `codigo_cnj`, `sala`,
//! `horario`, `telefone`, `email`, `observacao`; case and accents ignored, in
//! any order); `;` or `,` separates them (Excel in Portuguese writes `;`), and
//! an Excel byte-order mark is skipped. The file must be UTF-8.

use std::collections::HashMap;

use super::file::{check_units, room_memory, RawUnit, Unit};
use super::hours::fold;
use super::Problem;

/// Columns, in export order: the CSV header and the unit field it fills.
pub const COLUMNS: &[(&str, &str)] = &[
    ("nome", "name"),
    ("cidade", "city"),
    ("codigo_cnj", "cnj_code"),
    ("sala", "room"),
    ("horario", "hours"),
    ("telefone", "phone"),
    ("email", "email"),
    ("observacao", "note"),
];

/// Other headers people write for the same columns.
const ALIASES: &[(&str, &str)] = &[
    ("unidade", "name"),
    ("name", "name"),
    ("municipio", "city"),
    ("comarca", "city"),
    ("city", "city"),
    ("codigo cnj", "cnj_code"),
    ("cnj", "cnj_code"),
    ("cnj_code", "cnj_code"),
    ("room", "room"),
    ("horarios", "hours"),
    ("hours", "hours"),
    ("fone", "phone"),
    ("phone", "phone"),
    ("e-mail", "email"),
    ("obs", "note"),
    ("note", "note"),
];

fn column_field(header: &str) -> Option<&'static str> {
    let h = fold(header.trim());
    COLUMNS
        .iter()
        .chain(ALIASES)
        .find(|(name, _)| *name == h)
        .map(|(_, field)| *field)
}

fn column_name(field: &str) -> String {
    COLUMNS
        .iter()
        .find(|(_, f)| *f == field)
        .map(|(c, _)| c.to_string())
        .unwrap_or_else(|| field.to_string())
}

/// Reads units from CSV bytes. `before` are the units the file had, whose
/// rooms are kept for the same unit (same CNJ code, or same name and city)
/// when the CSV leaves `sala` empty. Every bad row is reported.
pub fn read(bytes: &[u8], before: &[Unit]) -> Result<Vec<Unit>, Vec<Problem>> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let line = bytes[..e.valid_up_to()].iter().filter(|b| **b == b'\n').count() + 1;
        vec![Problem {
            line: Some(line),
            field: String::new(),
            message: "o arquivo não está em UTF-8; no Excel, salve como \"CSV UTF-8 (delimitado por vírgulas)\"".into(),
        }]
    })?;
    let header_line = text.lines().next().unwrap_or("");
    let delimiter = if header_line.matches(';').count() >= header_line.matches(',').count()
        && header_line.contains(';')
    {
        b';'
    } else {
        b','
    };

    let mut reader = ::csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .flexible(true)
        .from_reader(text.as_bytes());
    let mut problems = Vec::new();
    let headers = reader
        .headers()
        .map_err(|e| {
            vec![Problem {
                line: Some(1),
                field: String::new(),
                message: format!("cabeçalho ilegível: {e}"),
            }]
        })?
        .clone();

    let mut fields: Vec<Option<&'static str>> = Vec::new();
    for header in headers.iter() {
        let field = column_field(header);
        if field.is_none() && !header.trim().is_empty() {
            problems.push(Problem {
                line: Some(1),
                field: header.to_string(),
                message: format!(
                    "coluna desconhecida; as colunas são {}",
                    COLUMNS
                        .iter()
                        .map(|(c, _)| *c)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
        if field.is_some() && fields.contains(&field) {
            problems.push(Problem {
                line: Some(1),
                field: header.to_string(),
                message: "coluna repetida; deixe uma só".into(),
            });
        }
        fields.push(field);
    }
    for required in ["name", "city", "hours"] {
        if !fields.contains(&Some(required)) {
            problems.push(Problem {
                line: Some(1),
                field: column_name(required),
                message: "falta esta coluna no cabeçalho".into(),
            });
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }

    let mut raw = Vec::new();
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map(|p| p.line() as usize);
                problems.push(Problem {
                    line,
                    field: String::new(),
                    message: format!("linha ilegível: {e}"),
                });
                continue;
            }
        };
        let line = record.position().map(|p| p.line() as usize).unwrap_or(0);
        if record.iter().all(|v| v.trim().is_empty()) {
            continue;
        }
        if record.len() != fields.len() {
            problems.push(Problem {
                line: Some(line),
                field: String::new(),
                message: format!(
                    "a linha tem {} campos e o cabeçalho {}; confira os separadores e as aspas",
                    record.len(),
                    fields.len()
                ),
            });
            continue;
        }
        let mut unit = RawUnit {
            line,
            ..RawUnit::default()
        };
        for (value, field) in record.iter().zip(&fields) {
            let value = Some(value.to_string());
            match field {
                Some("name") => unit.name = value,
                Some("city") => unit.city = value,
                Some("cnj_code") => unit.cnj_code = value,
                Some("room") => unit.room = value,
                Some("hours") => unit.hours = value,
                Some("phone") => unit.phone = value,
                Some("email") => unit.email = value,
                Some("note") => unit.note = value,
                _ => {}
            }
        }
        raw.push(unit);
    }
    if raw.is_empty() && problems.is_empty() {
        problems.push(Problem {
            line: None,
            field: String::new(),
            message: "o arquivo não tem nenhuma unidade abaixo do cabeçalho".into(),
        });
    }

    let memory: HashMap<String, String> = room_memory(before);
    let units = check_units(raw, &memory, &column_name, &mut problems);
    if problems.is_empty() {
        Ok(units)
    } else {
        problems.sort_by_key(|p| p.line);
        Err(problems)
    }
}

/// Writes units as CSV for a spreadsheet: `;`-separated with a UTF-8
/// byte-order mark, as Excel in Portuguese opens it directly.
pub fn write(units: &[Unit]) -> Vec<u8> {
    let mut out = b"\xEF\xBB\xBF".to_vec();
    {
        let mut writer = ::csv::WriterBuilder::new()
            .delimiter(b';')
            .from_writer(&mut out);
        let _ = writer.write_record(COLUMNS.iter().map(|(c, _)| *c));
        for u in units {
            let hours = u.hours.to_string();
            let opt = |v: &Option<String>| v.clone().unwrap_or_default();
            let _ = writer.write_record([
                u.name.as_str(),
                u.city.as_str(),
                &opt(&u.cnj_code),
                u.room.as_str(),
                hours.as_str(),
                &opt(&u.phone),
                &opt(&u.email),
                &opt(&u.note),
            ]);
        }
        let _ = writer.flush();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "\u{feff}Nome;Cidade;Código CNJ;Sala;Horário;Telefone;E-mail;Observação\n\
        1ª Vara Cível;Rio Branco;101;;seg-sex 08:00-14:00;(68) 3211-5000;civel1@tjac.jus.br;\n\
        \"Vara Única; Jordão\";Jordão;;;\"seg-sex 08:00-12:00 13:00-17:00\";;;Leve documento\n\
        2ª Vara Cível;Rio Branco;;vara-2;ter-qui 8h-12h;;;\n";

    #[test]
    fn reads_excel_csv_and_generates_rooms() {
        let units = read(GOOD.as_bytes(), &[]).unwrap();
        assert_eq!(units.len(), 3);
        assert_eq!(units[0].room, "1a-vara-civel");
        assert_eq!(units[0].cnj_code.as_deref(), Some("101"));
        assert_eq!(units[1].name, "Vara Única; Jordão");
        assert_eq!(units[1].room, "vara-unica-jordao");
        assert_eq!(units[1].note.as_deref(), Some("Leve documento"));
        assert_eq!(units[2].room, "vara-2");
        assert_eq!(units[2].hours.to_string(), "ter-qui 08:00-12:00");
    }

    #[test]
    fn export_then_import_is_the_same() {
        let units = read(GOOD.as_bytes(), &[]).unwrap();
        let again = read(&write(&units), &[]).unwrap();
        assert_eq!(again, units);
    }

    #[test]
    fn keeps_earlier_rooms_when_the_sala_column_is_empty() {
        let mut before = read(GOOD.as_bytes(), &[]).unwrap();
        before[0].room = "civel-um".into();
        let units = read(GOOD.as_bytes(), &before).unwrap();
        assert_eq!(units[0].room, "civel-um");
    }

    #[test]
    fn reports_every_bad_row_by_line_and_column() {
        let csv = "nome,cidade,horario,email\n\
                   Vara A,Xapuri,seg-sex 08:00-12:00,\n\
                   ,Xapuri,seg-sex 08:00-12:00,\n\
                   Vara C,Feijó,seg-sex 12:00-08:00,c@x\n\
                   Vara A,Xapuri,seg-sex 08:00-12:00,\n";
        let problems = read(csv.as_bytes(), &[]).unwrap_err();
        let found: Vec<(Option<usize>, &str)> = problems
            .iter()
            .map(|p| (p.line, p.field.as_str()))
            .collect();
        assert_eq!(
            found,
            vec![
                (Some(3), "nome"),
                (Some(4), "horario"),
                (Some(4), "email"),
                (Some(5), "nome"),
            ]
        );
    }

    #[test]
    fn refuses_unknown_or_missing_columns_and_latin1() {
        let problems = read(b"nome;cor;horario\nA;azul;seg 08:00-09:00\n", &[]).unwrap_err();
        assert!(problems.iter().any(|p| p.field == "cor"));
        assert!(problems.iter().any(|p| p.field == "cidade"));
        let latin1 = b"nome;cidade;horario\nVara C\xedvel;Xapuri;seg 08:00-09:00\n";
        let problems = read(latin1, &[]).unwrap_err();
        assert_eq!(problems[0].line, Some(2));
        assert!(problems[0].message.contains("UTF-8"));
    }
}
