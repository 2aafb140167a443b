//! `balcaoctl units` driven as court staff would: import, check, export,
//! render, and a bad spreadsheet that must change nothing.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn balcaoctl(units: &Path, www: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_balcaoctl"))
        .arg("units")
        .arg("--units")
        .arg(units)
        .arg("--www")
        .arg(www)
        .args(args)
        .env_remove("BALCAO_UNITS")
        .env_remove("BALCAO_WWW")
        .output()
        .expect("balcaoctl runs")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

struct Site {
    _dir: tempfile::TempDir,
    units: PathBuf,
    www: PathBuf,
    csv: PathBuf,
}

fn site() -> Site {
    let dir = tempfile::tempdir().unwrap();
    Site {
        units: dir.path().join("etc/units.toml"),
        www: dir.path().join("www"),
        csv: dir.path().join("unidades.csv"),
        _dir: dir,
    }
}

const GOOD: &str = "nome;cidade;codigo_cnj;sala;horario;telefone;email;observacao\n\
    1ª Vara Cível de Rio Branco;Rio Branco;1001;;seg-sex 08:00-14:00;(68) 3211-5000;civel1@tjac.jus.br;\n\
    Vara Única de Jordão;Jordão;;;ter-qui 08:00-12:00;;;Atendimento também por telefone\n";

#[test]
fn import_writes_the_units_file_and_the_page() {
    let s = site();
    std::fs::write(&s.csv, GOOD).unwrap();
    let out = balcaoctl(
        &s.units,
        &s.www,
        &[
            "import",
            s.csv.to_str().unwrap(),
            "--now",
            "2026-03-02T10:00",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("2 unidades importadas"));

    let toml = std::fs::read_to_string(&s.units).unwrap();
    assert!(
        toml.contains("room = \"1a-vara-civel-de-rio-branco\""),
        "{toml}"
    );
    assert!(
        toml.contains("timezone = \"America/Sao_Paulo\""),
        "default zone: {toml}"
    );

    let html = std::fs::read_to_string(s.www.join("index.html")).unwrap();
    assert!(html.contains("href=\"/vara-unica-de-jordao\""));
    assert!(html.contains("Aberto agora · até 14:00"));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(s.www.join("units.json")).unwrap()).unwrap();
    assert_eq!(json["units"].as_array().unwrap().len(), 2);
    assert_eq!(json["generated_at"], "2026-03-02T10:00");

    let out = balcaoctl(&s.units, &s.www, &["check"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("2 unidades"));
}

#[test]
fn a_bad_row_changes_nothing_and_every_problem_is_reported() {
    let s = site();
    std::fs::write(&s.csv, GOOD).unwrap();
    let first = balcaoctl(&s.units, &s.www, &["import", s.csv.to_str().unwrap()]);
    assert!(first.status.success(), "{}", text(&first));
    let toml_before = std::fs::read(&s.units).unwrap();
    let page_before = std::fs::read(s.www.join("index.html")).unwrap();

    let bad = "nome;cidade;horario;email\n\
        Vara A;Xapuri;seg-sex 08:00-12:00;\n\
        Vara B;;seg-sex 08:00-12:00;\n\
        Vara C;Feijó;seg-sex 18:00-08:00;c@nada\n";
    std::fs::write(&s.csv, bad).unwrap();
    for action in ["check", "import"] {
        let out = balcaoctl(&s.units, &s.www, &[action, s.csv.to_str().unwrap()]);
        let said = text(&out);
        assert!(!out.status.success(), "{action} accepted a bad CSV: {said}");
        assert!(said.contains("linha 3, campo cidade"), "{said}");
        assert!(said.contains("linha 4, campo horario"), "{said}");
        assert!(said.contains("linha 4, campo email"), "{said}");
        assert!(said.contains("nada foi alterado"), "{said}");
    }
    assert_eq!(std::fs::read(&s.units).unwrap(), toml_before);
    assert_eq!(
        std::fs::read(s.www.join("index.html")).unwrap(),
        page_before
    );
}

#[test]
fn export_then_import_keeps_every_room() {
    let s = site();
    std::fs::write(&s.csv, GOOD).unwrap();
    assert!(
        balcaoctl(&s.units, &s.www, &["import", s.csv.to_str().unwrap()])
            .status
            .success()
    );
    // Court staff rename a room by hand; export carries it, import keeps it.
    let toml = std::fs::read_to_string(&s.units)
        .unwrap()
        .replace("vara-unica-de-jordao", "jordao");
    std::fs::write(&s.units, toml).unwrap();

    let exported = s.csv.with_file_name("export.csv");
    let out = balcaoctl(
        &s.units,
        &s.www,
        &["export", "-o", exported.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", text(&out));
    let csv = std::fs::read_to_string(&exported).unwrap();
    assert!(csv.starts_with('\u{feff}'), "Excel byte-order mark");
    assert!(csv.contains(";jordao;"), "{csv}");

    let out = balcaoctl(&s.units, &s.www, &["import", exported.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let toml = std::fs::read_to_string(&s.units).unwrap();
    assert!(toml.contains("room = \"jordao\""), "{toml}");
    assert!(
        toml.contains("room = \"1a-vara-civel-de-rio-branco\""),
        "{toml}"
    );
}

#[test]
fn render_follows_the_units_file_and_the_pinned_clock() {
    let s = site();
    std::fs::create_dir_all(s.units.parent().unwrap()).unwrap();
    std::fs::write(
        &s.units,
        "[court]\ntimezone = \"America/Manaus\"\n\n[[unit]]\nname = \"Vara de Manaus\"\n\
         city = \"Manaus\"\nroom = \"vara-manaus\"\nhours = \"seg-sex 08:00-12:00\"\n",
    )
    .unwrap();
    // 12:30 UTC is 08:30 in Manaus: open.
    let out = balcaoctl(
        &s.units,
        &s.www,
        &["render", "--now", "2026-03-02T12:30:00Z"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let html = std::fs::read_to_string(s.www.join("index.html")).unwrap();
    assert!(html.contains("Aberto agora · até 12:00"), "{html}");
    assert!(html.contains("Horários no fuso de Manaus (UTC−4)"));

    // On Carnival Monday it is closed until Wednesday.
    let out = balcaoctl(&s.units, &s.www, &["render", "--now", "2026-02-16T09:00"]);
    assert!(out.status.success(), "{}", text(&out));
    let html = std::fs::read_to_string(s.www.join("index.html")).unwrap();
    assert!(html.contains("Fechado · abre quarta às 08:00"));
    assert!(html.contains("Hoje: fechado (Carnaval)"));

    let out = balcaoctl(&s.units, &s.www, &["render", "--now", "amanhã"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("--now"), "{}", text(&out));
}

#[test]
fn a_broken_units_file_names_line_and_field() {
    let s = site();
    std::fs::create_dir_all(s.units.parent().unwrap()).unwrap();
    std::fs::write(
        &s.units,
        "[court]\ntimezone = \"Europe/Lisbon\"\n\n[[unit]]\nname = \"Vara\"\ncity = \"X\"\nhours = \"dom 25:00-26:00\"\n",
    )
    .unwrap();
    let out = balcaoctl(&s.units, &s.www, &["check"]);
    let said = text(&out);
    assert!(!out.status.success());
    assert!(said.contains("linha 2, campo court.timezone"), "{said}");
    assert!(said.contains("linha 7, campo unit.hours"), "{said}");
    let out = balcaoctl(&s.units, &s.www, &["render"]);
    assert!(!out.status.success());
    assert!(!s.www.join("index.html").exists());
}
