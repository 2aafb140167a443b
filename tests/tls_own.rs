//! `balcaoctl tls use`, driven like an administrator would: certificates from
//! a throwaway CA made with the openssl CLI (package openssl). A good chain is
//! installed where nginx and coturn read it; a mismatched key, an expired
//! certificate, a wrong name, a missing root or intermediate and a
//! password-protected key are each refused with a message saying what to do,
//! and every file under the appliance root stays byte-identical.

mod tls_support;

use std::fs;
use std::path::Path;

use tls_support::{appliance_root, balcaoctl_tls, snapshot, text, Pki, DOMAIN};

struct Case {
    _dir: tempfile::TempDir,
    root: std::path::PathBuf,
    pki: Pki,
}

fn case() -> Case {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    appliance_root(&root, "letsencrypt");
    let pki = Pki::new(&dir.path().join("pki"));
    // What first boot left: a self-signed certificate at Jitsi's paths.
    let (other, other_key) = pki.leaf("before", &[DOMAIN], None);
    fs::create_dir_all(root.join("etc/jitsi/meet")).unwrap();
    fs::copy(other, root.join(format!("etc/jitsi/meet/{DOMAIN}.crt"))).unwrap();
    fs::copy(other_key, root.join(format!("etc/jitsi/meet/{DOMAIN}.key"))).unwrap();
    Case {
        _dir: dir,
        root,
        pki,
    }
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Runs `tls use ARGS`, expects a refusal whose message contains every one
/// of `wanted`, and that nothing under the root changed.
fn refused(c: &Case, args: &[&str], wanted: &[&str]) {
    let before = snapshot(&c.root);
    let mut full = vec!["use"];
    full.extend_from_slice(args);
    let out = balcaoctl_tls(&c.root, &full);
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "accepted: {}", text(&out.stdout));
    for want in wanted {
        assert!(stderr.contains(want), "missing {want:?} in: {stderr}");
    }
    assert_eq!(snapshot(&c.root), before, "a refusal changed files");
}

#[test]
fn good_chain_is_installed_and_recorded() {
    let c = case();
    let (cert, key) = c.pki.leaf("good", &[DOMAIN, "www.tjxx.jus.br"], None);
    // First boot has finished: the login message gets the new fingerprint.
    fs::create_dir_all(c.root.join("var/lib/balcao")).unwrap();
    fs::write(c.root.join("var/lib/balcao/firstboot.done"), "").unwrap();
    let out = balcaoctl_tls(
        &c.root,
        &[
            "use",
            p(&cert),
            p(&key),
            "--chain",
            p(&c.pki.path("inter.pem")),
            "--ca",
            p(&c.pki.path("root.pem")),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("Certificado instalado para balcao.tjxx.jus.br"),
        "{stdout}"
    );
    assert!(stdout.contains("Intermediaria de Teste"), "{stdout}");

    let installed =
        fs::read_to_string(c.root.join(format!("etc/jitsi/meet/{DOMAIN}.crt"))).unwrap();
    let leaf = fs::read_to_string(&cert).unwrap();
    let inter = fs::read_to_string(c.pki.path("inter.pem")).unwrap();
    assert_eq!(
        installed.matches("BEGIN CERTIFICATE").count(),
        2,
        "leaf and intermediate"
    );
    let first = balcao::appliance::tls::cert::parse_first(installed.as_bytes(), "x").unwrap();
    let want = balcao::appliance::tls::cert::parse_first(leaf.as_bytes(), "x").unwrap();
    assert_eq!(first.fingerprint, want.fingerprint);
    let chain = balcao::appliance::tls::cert::parse_pem(installed.as_bytes(), "x").unwrap();
    let inter = balcao::appliance::tls::cert::parse_first(inter.as_bytes(), "x").unwrap();
    assert_eq!(
        chain[1].fingerprint, inter.fingerprint,
        "leaf, then the intermediate"
    );
    assert_eq!(
        fs::read(c.root.join(format!("etc/jitsi/meet/{DOMAIN}.key"))).unwrap(),
        fs::read(&key).unwrap()
    );

    // From now on certbot's renewals must leave it alone.
    let setup = fs::read_to_string(c.root.join("etc/balcao/setup.toml")).unwrap();
    assert!(setup.contains("mode = \"own\""), "{setup}");
    let state = fs::read_to_string(c.root.join("var/lib/balcao/state.toml")).unwrap();
    assert!(state.contains(&want.fingerprint), "{state}");
    assert!(state.contains("source = \"own\""), "{state}");

    let motd = fs::read_to_string(c.root.join("etc/motd.d/balcao")).unwrap();
    assert!(motd.contains(&want.fingerprint), "{motd}");

    let status = balcaoctl_tls(&c.root, &["status"]);
    assert!(status.status.success(), "{}", text(&status.stderr));
    let shown = text(&status.stdout);
    assert!(shown.contains("modo own"), "{shown}");
    assert!(shown.contains("www.tjxx.jus.br"), "{shown}");
    assert!(shown.contains("manual"), "{shown}");
}

#[test]
fn wildcard_one_level_is_accepted_and_full_chain_in_one_file_works() {
    let c = case();
    let (cert, key) = c.pki.leaf("wild", &["*.tjxx.jus.br"], None);
    // The intermediate appended to the certificate file instead of --chain.
    let both = c.pki.path("wild-full.pem");
    let joined =
        fs::read_to_string(&cert).unwrap() + &fs::read_to_string(c.pki.path("inter.pem")).unwrap();
    fs::write(&both, joined).unwrap();
    let out = balcaoctl_tls(
        &c.root,
        &["use", p(&both), p(&key), "--ca", p(&c.pki.path("root.pem"))],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn mismatched_key_is_refused() {
    let c = case();
    let (cert, _) = c.pki.leaf("a", &[DOMAIN], None);
    let (_, other_key) = c.pki.leaf("b", &[DOMAIN], None);
    refused(
        &c,
        &[
            p(&cert),
            p(&other_key),
            "--chain",
            p(&c.pki.path("inter.pem")),
            "--ca",
            p(&c.pki.path("root.pem")),
        ],
        &[
            "não corresponde ao certificado",
            "chave privada que gerou o pedido",
        ],
    );
}

#[test]
fn expired_certificate_is_refused() {
    let c = case();
    let (cert, key) = c.pki.leaf(
        "old",
        &[DOMAIN],
        Some(("20200101000000Z", "20200301000000Z")),
    );
    refused(
        &c,
        &[
            p(&cert),
            p(&key),
            "--chain",
            p(&c.pki.path("inter.pem")),
            "--ca",
            p(&c.pki.path("root.pem")),
        ],
        &["expirou em 2020-03-01", "renove-o"],
    );
}

#[test]
fn wrong_name_and_deeper_wildcard_are_refused() {
    let c = case();
    let (cert, key) = c.pki.leaf("other", &["outro.tjxx.jus.br"], None);
    refused(
        &c,
        &[
            p(&cert),
            p(&key),
            "--chain",
            p(&c.pki.path("inter.pem")),
            "--ca",
            p(&c.pki.path("root.pem")),
        ],
        &["vale para outro.tjxx.jus.br e não para balcao.tjxx.jus.br"],
    );
    let (cert, key) = c.pki.leaf("deep", &["*.jus.br"], None);
    refused(
        &c,
        &[
            p(&cert),
            p(&key),
            "--chain",
            p(&c.pki.path("inter.pem")),
            "--ca",
            p(&c.pki.path("root.pem")),
        ],
        &["vale para *.jus.br e não para balcao.tjxx.jus.br"],
    );
}

#[test]
fn unknown_root_and_missing_intermediate_are_refused() {
    let c = case();
    let (cert, key) = c.pki.leaf("good", &[DOMAIN], None);
    // The test root is in no system store: the message points to --ca.
    refused(
        &c,
        &[p(&cert), p(&key), "--chain", p(&c.pki.path("inter.pem"))],
        &["não fecha até uma raiz confiável", "ICP-Brasil", "--ca"],
    );
    refused(
        &c,
        &[p(&cert), p(&key), "--ca", p(&c.pki.path("root.pem"))],
        &["não fecha até uma raiz confiável", "--chain"],
    );
}

#[test]
fn protected_key_is_refused() {
    let c = case();
    let (cert, key) = c.pki.leaf("locked", &[DOMAIN], None);
    let locked = c.pki.path("locked-enc.key");
    tls_support::run(std::process::Command::new("openssl").args([
        "pkey",
        "-in",
        p(&key),
        "-aes256",
        "-passout",
        "pass:segredo",
        "-out",
        p(&locked),
    ]));
    refused(
        &c,
        &[
            p(&cert),
            p(&locked),
            "--chain",
            p(&c.pki.path("inter.pem")),
            "--ca",
            p(&c.pki.path("root.pem")),
        ],
        &["protegida por senha", "openssl pkey"],
    );
}
