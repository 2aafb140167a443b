//! Browser test of the Balcão page: renders the 300-unit sample with the real
//! `balcaoctl`, then runs tests/browser/units.test.mjs, which drives Debian's
//! chromium through playwright-core, checks filtering, the status at a pinned
//! clock, the room link, axe-core, and keeps screenshots (1280 and 360 pixels
//! wide) in target/test-artifacts/units/.
//!
//! Needs the Debian packages `chromium`, `nodejs` and `npm`; `npm ci` runs in
//! tests/browser when its node_modules is missing. A missing tool fails the
//! test, it never skips.

use std::path::{Path, PathBuf};

use balcao::command::Cmd;

/// The court-local moment the sample is rendered at and the page pinned to:
/// Monday 2 March 2026, 10:00 in Rio Branco.
const NOW: &str = "2026-03-02T10:00";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn require_tool(program: &str, package: &str) {
    if let Err(e) = Cmd::new(program).arg("--version").run() {
        panic!(
            "`{program}` is needed by the units browser test and could not run ({e}); \
             install the Debian package(s) {package} (apt-get install {package})"
        );
    }
}

fn run_or_panic(cmd: Cmd, what: &str) -> String {
    match cmd.run() {
        Ok(out) => out.stdout_text() + &String::from_utf8_lossy(&out.stderr),
        Err(e) => panic!("{what} failed:\n{e}"),
    }
}

#[test]
fn units_page_in_headless_chromium() {
    let chromium = std::env::var("BALCAO_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !Path::new(&chromium).exists() {
        panic!(
            "{chromium} not found: the units browser test needs Debian's chromium \
             (apt-get install chromium), or BALCAO_CHROMIUM set to a Chromium binary"
        );
    }
    require_tool("node", "nodejs npm");
    require_tool("npm", "npm");

    // A fresh folder per run under target/, kept for people to look at.
    let artifacts = root().join("target/test-artifacts/units");
    let _ = std::fs::remove_dir_all(&artifacts);
    std::fs::create_dir_all(&artifacts).unwrap();
    let units_file = artifacts.join("units.toml");
    let www = artifacts.join("www");
    std::fs::copy(root().join("tests/data/units-court.toml"), &units_file).unwrap();

    let out = run_or_panic(
        Cmd::new(env!("CARGO_BIN_EXE_balcaoctl"))
            .arg("units")
            .arg("--units")
            .arg(&units_file)
            .arg("--www")
            .arg(&www)
            .arg("import")
            .arg(root().join("tests/data/units-300.csv"))
            .arg("--now")
            .arg(NOW),
        "balcaoctl units import of the 300-unit sample",
    );
    assert!(out.contains("300 unidades importadas"), "{out}");
    assert!(www.join("index.html").is_file() && www.join("units.json").is_file());

    let browser_dir = root().join("tests/browser");
    if !browser_dir.join("node_modules/playwright-core").is_dir()
        || !browser_dir.join("node_modules/axe-core").is_dir()
    {
        run_or_panic(
            Cmd::new("npm")
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(&browser_dir),
            "npm ci in tests/browser (needs the npm registry)",
        );
    }

    let report = artifacts.join("browser-report.txt");
    let result = Cmd::new("node")
        .arg("--test")
        .arg("--test-reporter=spec")
        .arg("--test-reporter-destination=stdout")
        .arg("--test-reporter=spec")
        .arg(format!("--test-reporter-destination={}", report.display()))
        .arg("units.test.mjs")
        .current_dir(&browser_dir)
        .env("BALCAO_WWW", &www)
        .env("BALCAO_ARTIFACTS", &artifacts)
        .env("BALCAO_NOW", NOW)
        .env("BALCAO_CHROMIUM", &chromium)
        .run();
    match result {
        Ok(out) => println!("{}", out.stdout_text()),
        Err(e) => {
            let full = std::fs::read_to_string(&report).unwrap_or_default();
            panic!(
                "the browser test failed; full report in {}:\n{full}\n{e}",
                report.display()
            );
        }
    }

    for shot in ["units-1280.png", "units-360.png"] {
        let path = artifacts.join(shot);
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        assert!(
            size > 10_000,
            "screenshot {} missing or empty",
            path.display()
        );
    }
}
