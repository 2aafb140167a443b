//! The public page and its data: `index.html` (the Balcão page at the
//! appliance's root address) and `units.json` (the same data for the court's
//! own portal), both written atomically into the folder nginx serves.
//!
//! The page reads without JavaScript: every unit with today's hours and its
//! status as of the render. Its script then recomputes the status every half
//! minute in the court's timezone from the embedded data, filters the list,
//! and asks the citizen's name before opening the Jitsi room.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{Datelike, NaiveDateTime, Offset, TimeZone};
use serde::Serialize;

use super::file::{Unit, UnitsFile};
use super::hours::{fold, Day, Interval};
use super::status::{self, Calendar, Status};
use super::UnitsError;

const TEMPLATE: &str = include_str!("assets/index.html.tera");
const STYLE: &str = include_str!("assets/page.css");
const SCRIPT: &str = include_str!("assets/page.js");

/// Names of the files written into the served folder.
pub const PAGE_FILE: &str = "index.html";
pub const JSON_FILE: &str = "units.json";

/// How many days of upcoming closures the page lists for citizens.
const CLOSURES_SHOWN_DAYS: i64 = 60;

/// `units.json`: the court, the closed dates the page's script needs, and
/// every unit. Also embedded in the page.
#[derive(Debug, Serialize)]
pub struct PageData {
    pub version: u32,
    pub court: CourtData,
    /// Court-local time of the render, `YYYY-MM-DDTHH:MM`.
    pub generated_at: String,
    /// First and last date `closed` covers.
    pub closed_from: String,
    pub closed_until: String,
    pub closed: Vec<ClosedData>,
    pub units: Vec<UnitData>,
}

#[derive(Debug, Serialize)]
pub struct CourtData {
    pub name: String,
    pub timezone: String,
    /// "Rio Branco" for America/Rio_Branco: what the page calls the zone.
    pub timezone_label: String,
    pub recess_closes: bool,
}

#[derive(Debug, Serialize)]
pub struct ClosedData {
    pub date: String,
    pub reason: String,
}

#[derive(Debug, Serialize)]
pub struct UnitData {
    pub name: String,
    pub city: String,
    pub cnj_code: Option<String>,
    pub room: String,
    /// Address of the room on this host: `/ROOM`.
    pub path: String,
    pub hours: BTreeMap<&'static str, Vec<Interval>>,
    pub hours_text: String,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub note: Option<String>,
}

/// What the template needs for one unit.
#[derive(Debug, Serialize)]
struct UnitView<'a> {
    index: usize,
    unit: &'a UnitData,
    search: String,
    open: bool,
    status: String,
    button: String,
    today: String,
    week: Vec<(String, String)>,
    phone_link: Option<String>,
}

#[derive(Debug, Serialize)]
struct CityView<'a> {
    name: String,
    id: String,
    units: Vec<UnitView<'a>>,
}

/// The zone's city as Brazilians write it.
pub fn zone_label(zone: &str) -> String {
    let city = zone.rsplit('/').next().unwrap_or(zone);
    match city {
        "Sao_Paulo" => "São Paulo".into(),
        "Belem" => "Belém".into(),
        "Maceio" => "Maceió".into(),
        "Araguaina" => "Araguaína".into(),
        "Cuiaba" => "Cuiabá".into(),
        "Santarem" => "Santarém".into(),
        "Eirunepe" => "Eirunepé".into(),
        "Noronha" => "Fernando de Noronha".into(),
        "Bahia" => "Salvador".into(),
        other => other.replace('_', " "),
    }
}

/// The page's data at court-local time `now`.
pub fn page_data(file: &UnitsFile, now: NaiveDateTime) -> PageData {
    let calendar = Calendar::around(&file.court, now.date());
    PageData {
        version: 1,
        court: CourtData {
            name: file.court.name.clone(),
            timezone: file.court.timezone.name().to_string(),
            timezone_label: zone_label(file.court.timezone.name()),
            recess_closes: file.court.recess_closes,
        },
        generated_at: now.format("%Y-%m-%dT%H:%M").to_string(),
        closed_from: calendar.first.map(|d| d.to_string()).unwrap_or_default(),
        closed_until: calendar.last.map(|d| d.to_string()).unwrap_or_default(),
        closed: calendar
            .closed_days()
            .map(|(date, reason)| ClosedData {
                date: date.to_string(),
                reason: reason.clone(),
            })
            .collect(),
        units: file.units.iter().map(unit_data).collect(),
    }
}

fn unit_data(unit: &Unit) -> UnitData {
    UnitData {
        name: unit.name.clone(),
        city: unit.city.clone(),
        cnj_code: unit.cnj_code.clone(),
        room: unit.room.clone(),
        path: format!("/{}", unit.room),
        hours: Day::ALL
            .iter()
            .map(|d| (d.key(), unit.hours.on(*d).to_vec()))
            .collect(),
        hours_text: unit.hours.to_string(),
        phone: unit.phone.clone(),
        email: unit.email.clone(),
        note: unit.note.clone(),
    }
}

/// Weekly hours as lines for people: ("Segunda a sexta", "08:00 às 12:00 e 13:00 às 18:00").
fn week_lines(unit: &Unit) -> Vec<(String, String)> {
    let mut lines = Vec::new();
    let mut i = 0;
    while i < 7 {
        let hours = unit.hours.on(Day::ALL[i]);
        if hours.is_empty() {
            i += 1;
            continue;
        }
        let mut j = i;
        while j + 1 < 7 && unit.hours.on(Day::ALL[j + 1]) == hours {
            j += 1;
        }
        let cap = |d: Day| {
            let name = d.name_pt();
            let mut c = name.chars();
            let first = c.next().unwrap().to_uppercase().to_string();
            first + c.as_str()
        };
        let days = match j - i {
            0 => cap(Day::ALL[i]),
            1 => format!("{} e {}", cap(Day::ALL[i]), Day::ALL[j].name_pt()),
            _ => format!("{} a {}", cap(Day::ALL[i]), Day::ALL[j].name_pt()),
        };
        lines.push((days, status::spoken(hours)));
        i = j + 1;
    }
    lines
}

/// "segunda, 02/03/2026, às 10:00".
fn moment_text(now: NaiveDateTime) -> String {
    format!(
        "{}, {}, às {}",
        Day::from_chrono(now.weekday()).name_pt(),
        now.format("%d/%m/%Y"),
        now.format("%H:%M")
    )
}

/// What the page's script needs, kept small for phones: the zone, the closed
/// dates, and per unit its name and minutes of each weekday's intervals
/// (Monday first).
#[derive(Debug, Serialize)]
struct ScriptData<'a> {
    timezone: &'a str,
    closed: BTreeMap<String, &'a str>,
    units: Vec<ScriptUnit<'a>>,
}

#[derive(Debug, Serialize)]
struct ScriptUnit<'a> {
    name: &'a str,
    hours: Vec<Vec<[u16; 2]>>,
}

/// JSON safe to place inside a `<script>` element.
fn script_json(file: &UnitsFile, data: &PageData) -> String {
    let script = ScriptData {
        timezone: &data.court.timezone,
        closed: data
            .closed
            .iter()
            .map(|c| (c.date.clone(), c.reason.as_str()))
            .collect(),
        units: file
            .units
            .iter()
            .map(|u| ScriptUnit {
                name: &u.name,
                hours: Day::ALL
                    .iter()
                    .map(|d| {
                        u.hours
                            .on(*d)
                            .iter()
                            .map(|i| [i.start.0, i.end.0])
                            .collect()
                    })
                    .collect(),
            })
            .collect(),
    };
    serde_json::to_string(&script)
        .expect("page data serializes")
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

/// The page's HTML at court-local time `now`.
pub fn render_html(file: &UnitsFile, now: NaiveDateTime) -> Result<String, UnitsError> {
    let data = page_data(file, now);
    let calendar = Calendar::around(&file.court, now.date());

    let mut order: Vec<usize> = (0..file.units.len()).collect();
    order.sort_by(|&a, &b| {
        let (ua, ub) = (&file.units[a], &file.units[b]);
        (fold(&ua.city), fold(&ua.name)).cmp(&(fold(&ub.city), fold(&ub.name)))
    });
    let mut cities: Vec<CityView> = Vec::new();
    for i in order {
        let unit = &file.units[i];
        let st = status::status(&unit.hours, &calendar, now);
        let (status_text, button) = status::labels(&st, now);
        let view = UnitView {
            index: i,
            unit: &data.units[i],
            search: fold(&format!("{} {}", unit.name, unit.city)),
            open: matches!(st, Status::Open { .. }),
            status: status_text,
            button,
            today: status::today_text(&unit.hours, &calendar, now.date()),
            week: week_lines(unit),
            phone_link: unit.phone.as_ref().map(|p| {
                let digits: String = p.chars().filter(char::is_ascii_digit).collect();
                format!("tel:+55{}", digits.trim_start_matches('0'))
            }),
        };
        match cities.last_mut() {
            Some(city) if fold(&city.name) == fold(&unit.city) => city.units.push(view),
            _ => cities.push(CityView {
                name: unit.city.clone(),
                id: format!("cidade-{}", super::room::slug(&unit.city)),
                units: vec![view],
            }),
        }
    }

    let upcoming: Vec<(String, String)> = calendar
        .closed_days()
        .filter(|(date, _)| {
            **date >= now.date() && (**date - now.date()).num_days() <= CLOSURES_SHOWN_DAYS
        })
        .map(|(date, reason)| {
            (
                format!(
                    "{}, {}",
                    Day::from_chrono(date.weekday()).name_pt(),
                    date.format("%d/%m")
                ),
                reason.clone(),
            )
        })
        .collect();

    let offset = file
        .court
        .timezone
        .offset_from_local_datetime(&now)
        .earliest()
        .map(|o| o.fix().local_minus_utc() / 3600)
        .unwrap_or(0);

    let mut context = tera::Context::new();
    context.insert("court_name", &file.court.name);
    context.insert("zone_label", &data.court.timezone_label);
    context.insert(
        "utc_offset",
        &format!("UTC{}{}", if offset < 0 { "−" } else { "+" }, offset.abs()),
    );
    context.insert("moment", &moment_text(now));
    context.insert(
        "closed_today",
        &calendar.closed_reason(now.date()).unwrap_or_default(),
    );
    context.insert("cities", &cities);
    context.insert("unit_count", &file.units.len());
    context.insert("upcoming", &upcoming);
    context.insert("closures_days", &CLOSURES_SHOWN_DAYS);
    context.insert("recess_closes", &file.court.recess_closes);
    context.insert("data_json", &script_json(file, &data));
    context.insert("style", STYLE);
    context.insert("script", SCRIPT);

    let mut tera = tera::Tera::default();
    tera.add_raw_template("index.html", TEMPLATE)
        .map_err(|e| UnitsError::Template(format!("{e:?}")))?;
    tera.render("index.html", &context)
        .map_err(|e| UnitsError::Template(format!("{e:?}")))
}

/// The `units.json` text.
pub fn render_json(file: &UnitsFile, now: NaiveDateTime) -> String {
    let mut text =
        serde_json::to_string_pretty(&page_data(file, now)).expect("page data serializes");
    text.push('\n');
    text
}

/// Writes `index.html` and `units.json` into `www`, each atomically; returns
/// the paths written.
pub fn write_site(
    file: &UnitsFile,
    now: NaiveDateTime,
    www: &Path,
) -> Result<Vec<PathBuf>, UnitsError> {
    std::fs::create_dir_all(www).map_err(|source| UnitsError::Write {
        path: www.to_path_buf(),
        source,
    })?;
    let html = render_html(file, now)?;
    let json = render_json(file, now);
    // The JSON first: a portal reading it never sees units the page lacks
    // for longer than the page takes to write.
    let json_path = www.join(JSON_FILE);
    let page_path = www.join(PAGE_FILE);
    super::write_atomic(&json_path, json.as_bytes())?;
    super::write_atomic(&page_path, html.as_bytes())?;
    Ok(vec![page_path, json_path])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> UnitsFile {
        UnitsFile::parse(
            r#"
[court]
name = "Tribunal de Justiça do Estado do Acre"
timezone = "America/Rio_Branco"

[[unit]]
name = "1ª Vara Cível <de> Rio Branco"
city = "Rio Branco"
room = "1a-vara-civel"
hours = "seg-sex 08:00-12:00 13:00-18:00; sáb 08:00-12:00"
phone = "(68) 3211-5000"
note = "</script><script>alert(1)</script>"

[[unit]]
name = "Vara Única"
city = "Jordão"
hours = "ter-qui 08:00-12:00"
"#,
        )
        .unwrap()
    }

    fn monday_ten() -> NaiveDateTime {
        chrono::NaiveDate::from_ymd_opt(2026, 3, 2)
            .unwrap()
            .and_hms_opt(10, 0, 0)
            .unwrap()
    }

    #[test]
    fn page_has_units_status_links_and_escapes_text() {
        let html = render_html(&sample(), monday_ten()).unwrap();
        assert!(html.contains("<html lang=\"pt-BR\">"));
        assert!(html.contains("href=\"/1a-vara-civel\""));
        assert!(html.contains("1ª Vara Cível &lt;de&gt; Rio Branco"));
        assert!(html.contains("Aberto agora · até 12:00"));
        assert!(html.contains("Fechado · abre amanhã às 08:00"));
        assert!(html.contains("Abre amanhã às 08:00"));
        assert!(html.contains("Hoje: 08:00 às 12:00 e 13:00 às 18:00"));
        assert!(html.contains("Segunda a sexta"));
        assert!(
            html.contains("id=\"aviso-dia\" hidden"),
            "no notice on a working day"
        );
        let carnival = chrono::NaiveDate::from_ymd_opt(2026, 2, 16)
            .unwrap()
            .and_hms_opt(9, 0, 0)
            .unwrap();
        let html_closed = render_html(&sample(), carnival).unwrap();
        assert!(html_closed.contains("Hoje não há atendimento: Carnaval."));
        assert!(html.contains("tel:+556832115000"));
        // The note appears escaped in the HTML and cannot end the data script.
        assert_eq!(
            html.matches("</script>").count(),
            2,
            "only the two real script ends"
        );
        // Jordão sorts before Rio Branco.
        assert!(html.find("Vara Única").unwrap() < html.find("1ª Vara Cível").unwrap());
    }

    #[test]
    fn json_lists_units_and_closed_dates() {
        let json: serde_json::Value =
            serde_json::from_str(&render_json(&sample(), monday_ten())).unwrap();
        assert_eq!(json["court"]["timezone"], "America/Rio_Branco");
        assert_eq!(json["units"][1]["room"], "vara-unica");
        assert_eq!(json["units"][1]["path"], "/vara-unica");
        assert_eq!(json["units"][0]["hours"]["saturday"][0]["start"], "08:00");
        let closed: Vec<&str> = json["closed"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["date"].as_str().unwrap())
            .collect();
        assert!(closed.contains(&"2026-04-03"));
        assert!(
            closed.contains(&"2027-02-09"),
            "Carnival 2027 inside the window"
        );
        assert!(closed.contains(&"2026-12-24"), "recess");
    }

    #[test]
    fn writes_both_files_readable_by_nginx() {
        let dir = tempfile::tempdir().unwrap();
        let www = dir.path().join("www");
        let written = write_site(&sample(), monday_ten(), &www).unwrap();
        assert_eq!(written.len(), 2);
        for path in written {
            let meta = std::fs::metadata(&path).unwrap();
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(meta.permissions().mode() & 0o777, 0o644, "{path:?}");
        }
        let leftovers: Vec<_> = std::fs::read_dir(&www).unwrap().collect();
        assert_eq!(leftovers.len(), 2, "no temporary file left behind");
    }
}
