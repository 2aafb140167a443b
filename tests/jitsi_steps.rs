//! The Jitsi first-boot steps against a pretend machine (tests/jitsi_steps_support.rs):
//! the commands each step runs, secrets on standard input and never on a
//! command line, a second apply that changes nothing, failures that leave
//! the runner's state pending for the next boot; and `balcaoctl user`'s
//! logic. The secure-domain edits run the real parsers (lua5.4 with
//! prosody, node, hocon), as on the appliance.

#[path = "jitsi_steps_support.rs"]
mod support;

use std::time::Duration;

use balcao::appliance::runner::Runner;
use balcao::appliance::state::{State, Status};
use balcao::appliance::steps::jitsi_common::{
    JITSI_IMAGE_MARKER, JITSI_PACKAGES, LOCAL_LIST, RESTART_FILE,
};
use balcao::appliance::steps::jitsi_health::JitsiHealth;
use balcao::appliance::steps::jitsi_install::JitsiInstall;
use balcao::appliance::steps::jitsi_preseed::JitsiPreseed;
use balcao::appliance::steps::jitsi_secure::JitsiSecure;
use balcao::appliance::steps::jitsi_site::{JitsiSite, UNITS_CONF};
use balcao::appliance::steps::{self, Step};
use balcao::appliance::Root;
use support::*;

const SECRET_QUESTIONS: [&str; 3] = [
    "jitsi-videobridge/jvbsecret",
    "jicofo/jicofo-authpassword",
    "jitsi-meet-prosody/turn-secret",
];

#[test]
fn jitsi_steps_run_after_the_firewall_and_before_tls_and_the_message() {
    let names: Vec<&str> = steps::all().iter().map(|s| s.name()).collect();
    assert_eq!(
        names,
        [
            "secrets",
            "hostname",
            "hosts",
            "firewall",
            "jitsi-preseed",
            "jitsi-install",
            "jitsi-secure",
            "jitsi-site",
            "jitsi-health",
            "tls",
            "message"
        ]
    );
}

#[test]
fn preseed_feeds_answers_and_fresh_secrets_on_stdin() {
    let dir = image_root();
    let root = Root::new(dir.path());
    let machine = Machine::new(dir.path());
    let (setup, state) = (setup_with(Some(PASSWORD), None), State::default());
    let ctx = context(&root, &machine, &setup, &state);

    assert!(!JitsiPreseed.is_done(&ctx).unwrap());
    JitsiPreseed.apply(&ctx).unwrap();
    let fed = machine.stdin_of("debconf-set-selections");
    assert_eq!(fed.len(), 1, "{:?}", machine.commands());
    let fed = &fed[0];
    assert!(fed.contains(&format!(
        "jitsi-videobridge2 jitsi-videobridge/jvb-hostname string {DOMAIN}\n"
    )));
    assert!(fed.contains(
        "jitsi-meet-web-config jitsi-meet/cert-choice select Generate a new self-signed certificate\n"
    ));
    assert!(fed.contains("jitsi-meet-web-config jitsi-meet/jaas-choice boolean false\n"));

    let db = machine.debconf.lock().unwrap().clone();
    let secrets: Vec<&String> = SECRET_QUESTIONS.iter().map(|q| &db[*q]).collect();
    for secret in &secrets {
        assert_eq!(secret.len(), 32, "{secret}");
        assert!(fed.contains(secret.as_str()));
        for line in machine.commands() {
            assert!(
                !line.contains(secret.as_str()),
                "secret on a command line: {line}"
            );
        }
    }
    assert_ne!(secrets[0], secrets[1]);

    // Done, and a second apply only reads.
    assert!(JitsiPreseed.is_done(&ctx).unwrap());
    machine.clear_log();
    JitsiPreseed.apply(&ctx).unwrap();
    assert!(
        machine.changing_commands().is_empty(),
        "{:?}",
        machine.commands()
    );
    assert_eq!(machine.debconf.lock().unwrap().clone(), db, "secrets kept");
}

#[test]
fn preseed_keeps_a_secret_a_half_done_install_already_used() {
    let dir = image_root();
    let root = Root::new(dir.path());
    let machine = Machine::new(dir.path());
    machine
        .debconf
        .lock()
        .unwrap()
        .insert("jitsi-videobridge/jvbsecret".into(), "alreadyUsed".into());
    let (setup, state) = (setup_with(Some(PASSWORD), None), State::default());
    JitsiPreseed
        .apply(&context(&root, &machine, &setup, &state))
        .unwrap();
    let fed = machine.stdin_of("debconf-set-selections").concat();
    assert!(!fed.contains("jitsi-videobridge/jvbsecret"), "{fed}");
    assert!(fed.contains("jicofo/jicofo-authpassword"));
    assert_eq!(
        machine.debconf.lock().unwrap()["jitsi-videobridge/jvbsecret"],
        "alreadyUsed"
    );
}

#[test]
fn install_uses_only_the_local_repository_and_clears_the_secrets() {
    let dir = image_root();
    let root = Root::new(dir.path());
    let machine = Machine::new(dir.path());
    let (setup, state) = (setup_with(Some(PASSWORD), None), State::default());
    let ctx = context(&root, &machine, &setup, &state);
    JitsiPreseed.apply(&ctx).unwrap();
    machine.clear_log();

    assert!(!JitsiInstall.is_done(&ctx).unwrap());
    let facts = JitsiInstall.apply(&ctx).unwrap();
    assert_eq!(facts["installed"], JITSI_PACKAGES.len().to_string());
    assert_eq!(
        read(dir.path(), LOCAL_LIST),
        "deb [trusted=yes] file:/var/lib/balcao/jitsi-repo ./\n"
    );
    let list = root.path(LOCAL_LIST).display().to_string();
    let only_local = format!(
        "apt-get -o Dir::Etc::sourcelist={list} -o Dir::Etc::sourceparts=- -o APT::Get::List-Cleanup=0"
    );
    let changing = machine.changing_commands();
    assert_eq!(
        changing,
        [
            format!("{only_local} update"),
            "dpkg --configure -a".to_owned(),
            format!("sh -c 'exec apt-get \"$@\" 2>&1' {only_local} -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold --simulate install -y --no-install-recommends jitsi-meet jitsi-meet-turnserver"),
            format!("{only_local} -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold install -y --no-install-recommends jitsi-meet jitsi-meet-turnserver"),
            "debconf-communicate".to_owned(),
        ]
    );
    let cleared = machine
        .stdin_of("debconf-communicate")
        .last()
        .unwrap()
        .clone();
    assert_eq!(
        cleared,
        "SET jitsi-videobridge/jvbsecret \nSET jicofo/jicofo-authpassword \nSET jitsi-meet-prosody/turn-secret \n"
    );
    let db = machine.debconf.lock().unwrap().clone();
    for q in SECRET_QUESTIONS {
        assert_eq!(db[q], "", "{q} still set");
    }
    assert_eq!(db["jitsi-videobridge/jvb-hostname"], DOMAIN, "domain kept");

    // Done; again changes nothing, and the preseed has nothing left to do.
    assert!(JitsiInstall.is_done(&ctx).unwrap());
    assert!(JitsiPreseed.is_done(&ctx).unwrap());
    machine.clear_log();
    JitsiInstall.apply(&ctx).unwrap();
    JitsiPreseed.apply(&ctx).unwrap();
    assert!(
        machine.changing_commands().is_empty(),
        "{:?}",
        machine.commands()
    );
}

#[test]
fn install_refuses_to_reach_outside_the_image() {
    let dir = image_root();
    let root = Root::new(dir.path());
    let machine = Machine::new(dir.path());
    let (setup, state) = (setup_with(Some(PASSWORD), None), State::default());
    let ctx = context(&root, &machine, &setup, &state);

    // A package apt would fetch from elsewhere.
    machine
        .extra_installs
        .lock()
        .unwrap()
        .push("lua-cjson".into());
    let err = JitsiInstall.apply(&ctx).unwrap_err().to_string();
    assert!(
        err.contains("lua-cjson") && err.contains("internet"),
        "{err}"
    );
    assert!(!machine
        .commands()
        .iter()
        .any(|c| c.contains(" install -y") && !c.contains("--simulate")));

    // A dependency missing from the image.
    machine.extra_installs.lock().unwrap().clear();
    machine.fail(
        "--simulate",
        "The following packages have unmet dependencies:\n jitsi-meet-prosody : Depends: lua-cjson but it is not installable",
    );
    let err = JitsiInstall.apply(&ctx).unwrap_err().to_string();
    assert!(
        err.contains("offline") || err.contains("dependência"),
        "{err}"
    );
}

#[test]
fn install_without_the_local_repository_says_so() {
    let dir = tempfile::tempdir().unwrap();
    // Half installed by an earlier run, and the repository is gone.
    write(
        dir.path(),
        "/var/lib/dpkg/status",
        "Package: jitsi-videobridge2\nStatus: install ok installed\n\n",
    );
    let root = Root::new(dir.path());
    let machine = Machine::new(dir.path());
    let (setup, state) = (setup_with(Some(PASSWORD), None), State::default());
    let err = JitsiInstall
        .apply(&context(&root, &machine, &setup, &state))
        .unwrap_err()
        .to_string();
    assert!(err.contains("/var/lib/balcao/jitsi-repo/Packages"), "{err}");

    // A Jitsi image (the overlay's marker) whose builder left no repository.
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), JITSI_IMAGE_MARKER, "# Jitsi image\n");
    let root = Root::new(dir.path());
    let machine = Machine::new(dir.path());
    let ctx = context(&root, &machine, &setup, &state);
    assert!(!JitsiInstall.is_done(&ctx).unwrap());
    let err = JitsiInstall.apply(&ctx).unwrap_err().to_string();
    assert!(err.contains("não traz o repositório local"), "{err}");
}

#[test]
fn preseed_refuses_a_new_domain_once_installed() {
    let dir = image_root();
    let root = Root::new(dir.path());
    let machine = Machine::new(dir.path());
    let (setup, state) = (setup_with(Some(PASSWORD), None), State::default());
    let ctx = context(&root, &machine, &setup, &state);
    JitsiPreseed.apply(&ctx).unwrap();
    JitsiInstall.apply(&ctx).unwrap();
    machine.debconf.lock().unwrap().insert(
        "jitsi-videobridge/jvb-hostname".into(),
        "velho.tjxx.jus.br".into(),
    );
    assert!(!JitsiPreseed.is_done(&ctx).unwrap());
    let err = JitsiPreseed.apply(&ctx).unwrap_err().to_string();
    assert!(err.contains("velho.tjxx.jus.br"), "{err}");
}

fn installed_root() -> (tempfile::TempDir, Machine) {
    need_tools(&[
        ("lua5.4", "lua5.4"),
        ("node", "nodejs"),
        ("hocon", "ruby-hocon"),
        ("prosodyctl", "prosody"),
    ]);
    let dir = image_root();
    let machine = Machine::new(dir.path());
    let root = Root::new(dir.path());
    let (setup, state) = (setup_with(Some(PASSWORD), None), State::default());
    let ctx = context(&root, &machine, &setup, &state);
    JitsiPreseed.apply(&ctx).unwrap();
    JitsiInstall.apply(&ctx).unwrap();
    render_jitsi_files(dir.path());
    write(dir.path(), UNITS_CONF, &overlay_units_conf());
    machine.clear_log();
    (dir, machine)
}

#[test]
fn secure_domain_and_first_account_with_the_password_on_stdin() {
    let (dir, machine) = installed_root();
    let root = Root::new(dir.path());
    let (setup, state) = (setup_with(Some(PASSWORD), None), State::default());
    let ctx = context(&root, &machine, &setup, &state);

    assert!(!JitsiSecure.is_done(&ctx).unwrap());
    machine.clear_log();
    let facts = JitsiSecure.apply(&ctx).unwrap();
    assert_eq!(facts["files_changed"], "4");
    assert_eq!(facts["staff"], format!("atendimento@{DOMAIN}"));
    let host = read(
        dir.path(),
        &format!("etc/prosody/conf.avail/{DOMAIN}.cfg.lua"),
    );
    assert!(
        host.contains(&format!("VirtualHost \"guest.{DOMAIN}\"")),
        "{host}"
    );
    // Counter rooms are private: balcao's module on the conference component.
    assert!(host.contains("\"balcao_private_rooms\""), "{host}");
    assert!(host.contains("/usr/share/balcao/prosody-plugins"), "{host}");
    let jvb = read(dir.path(), "etc/jitsi/videobridge/jvb.conf");
    assert!(jvb.contains("require-valid-address"), "{jvb}");

    let config = root
        .path("/etc/prosody/prosody.cfg.lua")
        .display()
        .to_string();
    let add = format!("prosodyctl --config {config} adduser atendimento@{DOMAIN}");
    assert_eq!(machine.commands(), ["hostname -I".to_owned(), add.clone()]);
    assert_eq!(
        machine.stdin_of(&add),
        [format!("{PASSWORD}\n{PASSWORD}\n")]
    );
    assert_eq!(
        read(dir.path(), RESTART_FILE),
        "jicofo\njitsi-videobridge2\nnginx\nprosody\n"
    );
    assert!(JitsiSecure.is_done(&ctx).unwrap());

    // Again with the password still in setup: only the password is set
    // (setup.toml's answer wins); once it is gone from setup, nothing at all.
    machine.clear_log();
    let facts = JitsiSecure.apply(&ctx).unwrap();
    assert_eq!(facts["files_changed"], "0");
    assert_eq!(
        machine.changing_commands(),
        [format!(
            "prosodyctl --config {config} passwd atendimento@{DOMAIN}"
        )]
    );
    let used = setup_with(None, None);
    let ctx = context(&root, &machine, &used, &state);
    machine.clear_log();
    JitsiSecure.apply(&ctx).unwrap();
    assert!(
        machine.changing_commands().is_empty(),
        "{:?}",
        machine.commands()
    );
}

#[test]
fn secure_without_a_password_for_a_missing_account_says_what_to_do() {
    let (dir, machine) = installed_root();
    let root = Root::new(dir.path());
    let (setup, state) = (setup_with(None, Some("203.0.113.7")), State::default());
    let err = JitsiSecure
        .apply(&context(&root, &machine, &setup, &state))
        .unwrap_err()
        .to_string();
    assert!(err.contains("balcaoctl user add atendimento"), "{err}");
    let jvb = read(dir.path(), "etc/jitsi/videobridge/jvb.conf");
    assert!(
        jvb.contains("203.0.113.7") && jvb.contains(LOCAL_IP),
        "{jvb}"
    );
}

#[test]
fn site_gets_the_units_include_checked_by_nginx_and_the_page() {
    let (dir, machine) = installed_root();
    let root = Root::new(dir.path());
    let (setup, state) = (setup_with(None, None), State::default());
    let ctx = context(&root, &machine, &setup, &state);
    let site_path = format!("etc/nginx/sites-available/{DOMAIN}.conf");
    let original = read(dir.path(), &site_path);

    // nginx refuses: the site stays as it was, and the error says why.
    machine.fail("nginx -t", "nginx: [emerg] unknown directive \"locaton\"");
    let err = JitsiSite.apply(&ctx).unwrap_err().to_string();
    assert!(
        err.contains("unknown directive") && err.contains(&site_path),
        "{err}"
    );
    assert_eq!(read(dir.path(), &site_path), original);
    assert!(!JitsiSite.is_done(&ctx).unwrap());

    machine.heal();
    machine.clear_log();
    JitsiSite.apply(&ctx).unwrap();
    let conf = root.path("/etc/nginx/nginx.conf").display().to_string();
    assert_eq!(machine.commands(), [format!("nginx -t -q -c {conf}")]);
    let site = read(dir.path(), &site_path);
    assert_eq!(
        site.matches("include /etc/nginx/balcao/units.conf;")
            .count(),
        1
    );
    let page = read(dir.path(), "/var/lib/balcao/www/index.html");
    assert!(page.contains("<html lang=\"pt-BR\">"), "{page}");
    assert!(root.exists("/var/lib/balcao/www/units.json"));
    assert!(read(dir.path(), RESTART_FILE).contains("nginx"));
    assert!(JitsiSite.is_done(&ctx).unwrap());

    machine.clear_log();
    let page_before = std::fs::metadata(root.path("/var/lib/balcao/www/index.html"))
        .unwrap()
        .modified()
        .unwrap();
    JitsiSite.apply(&ctx).unwrap();
    assert!(machine.commands().is_empty(), "{:?}", machine.commands());
    assert_eq!(read(dir.path(), &site_path), site);
    let page_after = std::fs::metadata(root.path("/var/lib/balcao/www/index.html"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(page_before, page_after, "the page is rendered once");
}

fn quick_health() -> JitsiHealth {
    JitsiHealth {
        patience: Duration::from_millis(300),
        pause: Duration::from_millis(10),
    }
}

#[test]
fn health_restarts_what_changed_and_waits_for_every_service() {
    let dir = image_root();
    let root = Root::new(dir.path());
    let machine = Machine::new(dir.path());
    write(
        dir.path(),
        RESTART_FILE,
        "prosody\njicofo\njitsi-videobridge2\nnginx\n",
    );
    machine
        .unhealthy
        .lock()
        .unwrap()
        .insert("jitsi-videobridge2".into(), 3);
    let (setup, state) = (setup_with(None, None), State::default());
    let ctx = context(&root, &machine, &setup, &state);
    let health = quick_health();

    assert!(!health.is_done(&ctx).unwrap());
    machine.clear_log();
    let facts = health.apply(&ctx).unwrap();
    let restarts: Vec<String> = machine
        .commands()
        .into_iter()
        .filter(|c| c.starts_with("systemctl"))
        .collect();
    assert_eq!(
        restarts,
        [
            "systemctl restart prosody.service",
            "systemctl restart jicofo.service",
            "systemctl restart jitsi-videobridge2.service",
            "systemctl restart nginx.service"
        ]
    );
    for key in [
        "health_jvb",
        "health_jicofo",
        "health_prosody",
        "health_https",
    ] {
        assert_eq!(facts[key], "ok", "{key}");
    }
    assert!(!root.exists(RESTART_FILE));
    let https: Vec<String> = machine
        .commands()
        .into_iter()
        .filter(|c| c.contains("https://"))
        .collect();
    assert!(
        https[0].contains(&format!(
            "-k --resolve {DOMAIN}:443:127.0.0.1 https://{DOMAIN}/"
        )),
        "{https:?}"
    );
    assert!(health.is_done(&ctx).unwrap());

    machine.clear_log();
    health.apply(&ctx).unwrap();
    assert!(
        machine.changing_commands().is_empty(),
        "{:?}",
        machine.commands()
    );
    assert!(health.services().contains(&"jitsi-videobridge2"));
}

#[test]
fn health_failure_names_the_service() {
    let dir = image_root();
    let root = Root::new(dir.path());
    let machine = Machine::new(dir.path());
    machine
        .unhealthy
        .lock()
        .unwrap()
        .insert("jicofo".into(), usize::MAX);
    let (setup, state) = (setup_with(None, None), State::default());
    let ctx = context(&root, &machine, &setup, &state);
    let err = quick_health().apply(&ctx).unwrap_err().to_string();
    assert!(err.contains("jicofo") && err.contains("8888"), "{err}");
    assert!(!err.contains("jitsi-videobridge2 ("), "{err}");
    // Nothing was listed to restart: only the failing service is restarted.
    assert!(machine
        .commands()
        .contains(&"systemctl restart jicofo.service".to_owned()));
    assert!(!machine
        .commands()
        .contains(&"systemctl restart prosody.service".to_owned()));
}

#[test]
fn a_failed_jitsi_step_stays_pending_and_the_next_boot_resumes() {
    let (dir, machine) = {
        need_tools(&[
            ("lua5.4", "lua5.4"),
            ("node", "nodejs"),
            ("hocon", "ruby-hocon"),
        ]);
        let dir = image_root();
        let machine = Machine::new(dir.path());
        (dir, machine)
    };
    let root = Root::new(dir.path());
    let setup = setup_with(Some(PASSWORD), None);
    let jitsi_steps: Vec<Box<dyn Step>> = vec![
        Box::new(JitsiPreseed),
        Box::new(JitsiInstall),
        Box::new(JitsiSecure),
        Box::new(JitsiSite),
        Box::new(quick_health()),
    ];
    let runner = Runner {
        root: &root,
        system: &machine,
        setup: &setup,
        steps: &jitsi_steps,
    };

    // First boot: apt fails (a broken image); later steps stay pending.
    machine.fail(
        " install -y",
        "E: Sub-process /usr/bin/dpkg returned an error code (1)",
    );
    let mut state = State::load(&root).unwrap();
    let err = runner.run(&mut state, &mut |_| {}).unwrap_err().to_string();
    assert!(err.contains("jitsi-install"), "{err}");
    let on_disk = State::load(&root).unwrap();
    assert_eq!(on_disk.status("jitsi-preseed"), Status::Done);
    assert_eq!(on_disk.status("jitsi-install"), Status::Failed);
    assert_eq!(on_disk.status("jitsi-secure"), Status::Pending);
    assert!(!runner.all_done(&on_disk));

    // Next boot: the packages install (and generate their files).
    machine.heal();
    let state_before = on_disk.clone();
    let mut state = state_before;
    // The files the packages' postinst scripts would write.
    render_jitsi_files(dir.path());
    write(dir.path(), UNITS_CONF, &overlay_units_conf());
    runner.run(&mut state, &mut |_| {}).unwrap();
    let on_disk = State::load(&root).unwrap();
    assert!(runner.all_done(&on_disk));
    assert_eq!(on_disk.fact("jitsi-health", "health_jvb"), Some("ok"));
    assert_eq!(
        on_disk.fact("jitsi-secure", "staff"),
        Some(format!("atendimento@{DOMAIN}").as_str())
    );
    let state_text = read(dir.path(), "/var/lib/balcao/state.toml");
    let db = machine.debconf.lock().unwrap().clone();
    assert!(!state_text.contains(PASSWORD));
    for q in SECRET_QUESTIONS {
        assert_eq!(db[q], "");
    }
}

#[test]
fn a_root_without_jitsi_has_nothing_for_the_jitsi_steps() {
    let dir = tempfile::tempdir().unwrap();
    let root = Root::new(dir.path());
    let machine = Machine::new(dir.path());
    let (setup, state) = (setup_with(Some(PASSWORD), None), State::default());
    let ctx = context(&root, &machine, &setup, &state);
    let jitsi_steps: Vec<Box<dyn Step>> = vec![
        Box::new(JitsiPreseed),
        Box::new(JitsiInstall),
        Box::new(JitsiSecure),
        Box::new(JitsiSite),
        Box::new(quick_health()),
    ];
    for step in &jitsi_steps {
        assert!(step.is_done(&ctx).unwrap(), "{}", step.name());
        step.apply(&ctx).unwrap();
    }
    assert!(machine.commands().is_empty(), "{:?}", machine.commands());
}
