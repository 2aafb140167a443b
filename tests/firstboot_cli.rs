//! `balcaoctl firstboot` and `status` run like the unit runs them, against a
//! temporary root: preseed only, preseed plus OVF, a bad preseed, a failing
//! step and the resume after it, and `--reconfigure`.

#[path = "firstboot_support.rs"]
mod support;

use support::{text, Sandbox, FULL_SETUP};

const FIREWALL_CALLS: &[&str] = &[
    "ufw status verbose",
    "ufw default deny incoming",
    "ufw default allow outgoing",
    "ufw allow 22/tcp",
    "ufw allow 80/tcp",
    "ufw allow 443/tcp",
    "ufw allow 10000/udp",
    "ufw allow 3478/udp",
    "ufw allow 5349/tcp",
    "ufw --force enable",
    "ufw status verbose",
];

#[test]
fn preseed_configures_everything_and_a_second_run_changes_nothing() {
    let sb = Sandbox::image();
    sb.write("/etc/balcao/setup.toml", FULL_SETUP);

    let out = sb.firstboot(&[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("https://balcao.tjxx.jus.br/"), "{stdout}");

    assert_eq!(sb.read("/etc/hostname"), "balcao\n");
    assert!(sb
        .read("/etc/hosts")
        .contains("127.0.1.1\tbalcao.tjxx.jus.br balcao"));
    assert!(!sb.read("/etc/hosts").contains("debian"));
    let machine_id = sb.read("/etc/machine-id");
    assert_eq!(machine_id.trim().len(), 32, "{machine_id:?}");
    for kind in ["rsa", "ecdsa", "ed25519"] {
        assert!(sb.path(&format!("/etc/ssh/ssh_host_{kind}_key")).exists());
    }
    assert_eq!(sb.calls(), FIREWALL_CALLS);
    let issue = sb.read("/etc/issue.d/balcao.issue");
    assert!(
        issue.contains("https://balcao.tjxx.jus.br/") && issue.contains("\\4"),
        "{issue}"
    );
    // The tls step's self-signed certificate, by its real fingerprint.
    let crt = sb.read("/etc/jitsi/meet/balcao.tjxx.jus.br.crt");
    let print = balcao::appliance::tls::cert::parse_first(crt.as_bytes(), "crt")
        .unwrap()
        .fingerprint;
    assert!(
        issue.contains(&format!("Certificado (SHA-256): {print}")),
        "{issue}"
    );
    assert!(sb.read("/etc/motd.d/balcao").contains("atendimento"));
    let setup = sb.read("/etc/balcao/setup.toml");
    assert!(
        !setup.contains("senha-muito-boa") && !setup.contains("password"),
        "{setup}"
    );
    assert!(setup.contains("# cloud-init write_files") && setup.contains("mode = \"self-signed\""));
    assert!(sb.path("/var/lib/balcao/firstboot.done").exists());
    let all_output = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(!all_output.contains("senha-muito-boa"));

    let status = sb.status();
    assert!(status.status.success(), "{}", text(&status.stdout));
    // One [ok] per step (the Jitsi steps have nothing to do under a root
    // without the image's Jitsi repository).
    assert_eq!(
        text(&status.stdout).matches("[ok]").count(),
        balcao::appliance::steps::all().len()
    );

    // Second run: nothing to do, nothing touched.
    let before = sb.snapshot();
    let calls = sb.calls().len();
    let again = sb.firstboot(&[]);
    assert!(again.status.success());
    assert!(
        text(&again.stderr).contains("nada a fazer"),
        "{}",
        text(&again.stderr)
    );
    assert_eq!(sb.snapshot(), before);
    assert_eq!(sb.calls().len(), calls);
}

#[test]
fn bad_preseed_is_reported_and_changes_nothing() {
    let sb = Sandbox::image();
    sb.write(
        "/etc/balcao/setup.toml",
        "domain = \"10.0.0.1\"\nemail = \"ti@tjxx.jus.br\"\n[admin]\nuser = \"focus\"\npassword = \"curta\"\n",
    );
    // A plain file stands in for the console device.
    let console = sb.path("/../console.txt");
    std::fs::write(&console, "").unwrap();
    let before: Vec<_> = sb
        .snapshot()
        .into_iter()
        .filter(|(p, ..)| {
            !p.to_string_lossy().contains("issue.d") && !p.to_string_lossy().contains("motd.d")
        })
        .collect();

    let out = sb.firstboot(&["--console", console.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("é um endereço IP") && stderr.contains("reservado pelo Jitsi"),
        "{stderr}"
    );
    assert!(stderr.contains("pelo menos 10 caracteres"));
    assert!(
        !stderr.contains("curta"),
        "password in the journal: {stderr}"
    );
    let shown = std::fs::read_to_string(&console).unwrap();
    assert!(
        shown.contains("configuração inicial pendente") && shown.contains("`domain`"),
        "{shown}"
    );
    let issue = sb.read("/etc/issue.d/balcao.issue");
    assert!(
        issue.contains("`admin.user`") && issue.contains("pendente"),
        "{issue}"
    );
    assert!(sb.read("/etc/motd.d/balcao").contains("é um endereço IP"));

    // Everything else exactly as before, and nothing run.
    let after: Vec<_> = sb
        .snapshot()
        .into_iter()
        .filter(|(p, ..)| {
            !p.to_string_lossy().contains("issue.d") && !p.to_string_lossy().contains("motd.d")
        })
        .collect();
    assert_eq!(after, before);
    assert!(sb.calls().is_empty());
    assert!(!sb.status().status.success());
}

#[test]
fn ovf_properties_fill_what_the_preseed_leaves_out() {
    let sb = Sandbox::image();
    sb.write("/etc/balcao/setup.toml", "domain = \"video.tjyy.jus.br\"\n");
    let env = sb.path("/../ovf-env.xml");
    std::fs::write(
        &env,
        r#"<?xml version="1.0" encoding="UTF-8"?>
<Environment xmlns="http://schemas.dmtf.org/ovf/environment/1" xmlns:oe="http://schemas.dmtf.org/ovf/environment/1">
  <PropertySection>
    <Property oe:key="balcao.domain" oe:value="ignored.tjyy.jus.br"/>
    <Property oe:key="balcao.email" oe:value="ti@tjyy.jus.br"/>
    <Property oe:key="balcao.admin_user" oe:value="Balcao1"/>
    <Property oe:key="balcao.admin_password" oe:value="uma senha &amp; longa"/>
    <Property oe:key="balcao.public_ip" oe:value=""/>
    <Property oe:key="balcao.language" oe:value="en"/>
  </PropertySection>
</Environment>"#,
    )
    .unwrap();
    let out = sb.firstboot(&["--ovf-env", env.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("setup complete"),
        "English from OVF: {}",
        text(&out.stdout)
    );
    assert_eq!(sb.read("/etc/hostname"), "video\n");
    let setup = sb.read("/etc/balcao/setup.toml");
    assert!(
        setup.contains("user = \"balcao1\"") && setup.contains("email = \"ti@tjyy.jus.br\""),
        "{setup}"
    );
    assert!(!setup.contains("longa"));
}

#[test]
fn failed_step_stays_pending_and_the_next_run_resumes() {
    let sb = Sandbox::image();
    sb.write("/etc/balcao/setup.toml", FULL_SETUP);
    let root = sb.root.display().to_string();
    let out = sb
        .balcaoctl(&["firstboot", "--root", &root])
        .env("UFW_FAIL", "1")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("firewall"),
        "{}",
        text(&out.stderr)
    );
    let state = sb.read("/var/lib/balcao/state.toml");
    assert!(
        state.contains("[steps.firewall]\nstatus = \"failed\""),
        "{state}"
    );
    assert!(
        state.contains("[steps.hosts]\nstatus = \"done\""),
        "{state}"
    );
    assert!(sb.read("/etc/issue.d/balcao.issue").contains("pendente"));
    assert!(
        sb.read("/etc/balcao/setup.toml")
            .contains("senha-muito-boa"),
        "kept for the resume"
    );
    let status = sb.status();
    assert!(!status.status.success());
    assert!(text(&status.stdout).contains("[FALHOU]"));
    let keys_before = sb.read("/etc/ssh/ssh_host_ed25519_key.pub");

    let out = sb.firstboot(&[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("já feito"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(sb.read("/etc/ssh/ssh_host_ed25519_key.pub"), keys_before);
    assert!(!sb
        .read("/etc/balcao/setup.toml")
        .contains("senha-muito-boa"));
    assert!(sb.status().status.success());
}

#[test]
fn reconfigure_asks_again_and_keeps_the_secrets() {
    let sb = Sandbox::image();
    sb.write("/etc/balcao/setup.toml", FULL_SETUP);
    assert!(sb.firstboot(&[]).status.success());
    let machine_id = sb.read("/etc/machine-id");
    let key = sb.read("/etc/ssh/ssh_host_ed25519_key.pub");
    let root = sb.root.display().to_string();

    // Standard input is not a terminal: the wizard reads plain lines.
    let mut child = sb
        .balcaoctl(&["firstboot", "--root", &root, "--reconfigure"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    // domain, e-mail, user, password (Enter keeps), TLS, public IP, confirm.
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"nova.tjxx.jus.br\n\n\n\n\n203.0.113.7\ns\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let shown = text(&out.stdout);
    assert!(
        shown.contains("Domínio do serviço [balcao.tjxx.jus.br]: "),
        "{shown}"
    );
    assert!(shown.contains("(mantida)"));
    assert_eq!(sb.read("/etc/hostname"), "nova\n");
    assert!(sb.read("/etc/hosts").contains("nova.tjxx.jus.br nova"));
    assert!(!sb.read("/etc/hosts").contains("balcao.tjxx"));
    assert!(sb
        .read("/etc/issue.d/balcao.issue")
        .contains("-> 203.0.113.7"));
    assert_eq!(sb.read("/etc/machine-id"), machine_id);
    assert_eq!(sb.read("/etc/ssh/ssh_host_ed25519_key.pub"), key);
    assert!(sb
        .read("/var/lib/balcao/state.toml")
        .contains("completed_runs = 2"));
}

#[test]
fn missing_answers_without_input_fail_cleanly() {
    let sb = Sandbox::image();
    let out = sb.firstboot(&[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("nada foi alterado"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(sb.read("/etc/hostname"), "debian\n");
    assert!(sb.calls().is_empty());
}
