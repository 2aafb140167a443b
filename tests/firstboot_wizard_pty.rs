//! The wizard on real terminals: `balcaoctl firstboot --console /dev/pts/N`
//! driven through pseudo-terminals, as a person at tty1 or the serial console
//! would. Checks the prompts, the re-asks after a bad domain and after two
//! different passwords, that the password is never echoed, and that with two
//! consoles the first Enter wins and the other is told where setup happens.

#[path = "firstboot_support.rs"]
mod support;

use std::ffi::CStr;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::{text, Sandbox};

const TIMEOUT: Duration = Duration::from_secs(60);

/// One pseudo-terminal: we hold the master side, the program opens the slave.
struct Pty {
    master: File,
    /// Kept open so the terminal does not hang up between the program's opens.
    _slave: OwnedFd,
    path: String,
    seen: Arc<Mutex<Vec<u8>>>,
    cursor: usize,
}

impl Pty {
    fn open() -> Pty {
        let (mut master, mut slave) = (0, 0);
        let mut name = [0 as libc::c_char; 128];
        // SAFETY: openpty fills the two descriptors and the name buffer.
        let rc = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                name.as_mut_ptr(),
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        assert_eq!(rc, 0, "openpty failed: {}", std::io::Error::last_os_error());
        // SAFETY: the descriptors were just returned to us and are owned here.
        let (master, slave) = unsafe { (File::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
        let path = unsafe { CStr::from_ptr(name.as_ptr()) }
            .to_string_lossy()
            .into_owned();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut reader = master.try_clone().unwrap();
        let sink = seen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Pty {
            master,
            _slave: slave,
            path,
            seen,
            cursor: 0,
        }
    }

    fn all(&self) -> String {
        text(&self.seen.lock().unwrap())
    }

    /// Waits until `pattern` appears after what was already matched.
    fn expect(&mut self, pattern: &str) {
        let start = Instant::now();
        loop {
            {
                let seen = self.seen.lock().unwrap();
                let rest = text(&seen[self.cursor..]);
                if let Some(i) = rest.find(pattern) {
                    self.cursor += rest[..i + pattern.len()].len();
                    return;
                }
            }
            assert!(
                start.elapsed() < TIMEOUT,
                "`{pattern}` not shown on {} within {TIMEOUT:?}; screen so far:\n{}",
                self.path,
                self.all()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn send(&mut self, line: &str) {
        self.master.write_all(line.as_bytes()).unwrap();
        self.master.write_all(b"\r").unwrap();
    }
}

fn spawn(sb: &Sandbox, consoles: &[&Pty]) -> Child {
    let root = sb.root.display().to_string();
    let mut args = vec!["firstboot".to_owned(), "--root".to_owned(), root];
    for pty in consoles {
        args.push("--console".into());
        args.push(pty.path.clone());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    sb.balcaoctl(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn finish(child: Child) -> std::process::Output {
    let start = Instant::now();
    let mut child = child;
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > TIMEOUT {
            let _ = child.kill();
            panic!("balcaoctl did not end within {TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn wizard_reasks_bad_domain_and_mismatched_passwords() {
    let sb = Sandbox::image();
    let mut tty = Pty::open();
    let child = spawn(&sb, &[&tty]);

    tty.expect("Pressione Enter para configurar por este console");
    tty.send("");
    tty.expect("Domínio do serviço: ");
    tty.send("192.0.2.1");
    tty.expect("Valor inválido: `192.0.2.1` é um endereço IP");
    tty.expect("Domínio do serviço: ");
    tty.send("bal_cao.tjxx.jus.br");
    tty.expect("não é um nome de domínio válido");
    tty.expect("Domínio do serviço: ");
    tty.send("balcao.tjxx.jus.br");
    tty.expect("E-mail para avisos do certificado: ");
    tty.send("ti@tjxx.jus.br");
    tty.expect("Usuário do primeiro servidor (atendente): ");
    tty.send("focus");
    tty.expect("reservado pelo Jitsi");
    tty.expect("Usuário do primeiro servidor (atendente): ");
    tty.send("atendimento");
    tty.expect("Senha do primeiro servidor: ");
    tty.send("curta");
    tty.expect("pelo menos 10 caracteres");
    tty.expect("Senha do primeiro servidor: ");
    tty.send("senha-muito-boa");
    tty.expect("Repita a senha: ");
    tty.send("senha-outra-coisa");
    tty.expect("As senhas não conferem; digite de novo.");
    tty.expect("Senha do primeiro servidor: ");
    tty.send("senha-muito-boa");
    tty.expect("Repita a senha: ");
    tty.send("senha-muito-boa");
    tty.expect("Certificado TLS [letsencrypt]: ");
    tty.send("3");
    tty.expect("IP público (se a VM estiver atrás de NAT): ");
    tty.send("");
    tty.expect("Senha do primeiro servidor: (definida)");
    tty.expect("Confirma e aplica? [s/n]: ");
    tty.send("s");
    tty.expect("[ok] Firewall");
    tty.expect("Balcão Virtual: configuração concluída");
    tty.expect("https://balcao.tjxx.jus.br/");

    let out = finish(child);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let screen = tty.all();
    assert!(
        screen.contains("balcao.tjxx.jus.br\r\n"),
        "answers are echoed: {screen}"
    );
    assert!(
        !screen.contains("senha-muito-boa"),
        "password echoed: {screen}"
    );
    assert!(
        !screen.contains("senha-outra") && !screen.contains("curta"),
        "password echoed"
    );
    assert!(!text(&out.stderr).contains("senha-muito-boa"));
    assert_eq!(sb.read("/etc/hostname"), "balcao\n");
    let setup = sb.read("/etc/balcao/setup.toml");
    assert!(
        setup.contains("mode = \"own\"") && !setup.contains("senha"),
        "{setup}"
    );
}

#[test]
fn first_console_to_answer_wins_and_the_other_is_told() {
    let sb = Sandbox::image();
    sb.write(
        "/etc/balcao/setup.toml",
        "domain = \"balcao.tjxx.jus.br\"\nemail = \"ti@tjxx.jus.br\"\n[admin]\nuser = \"atendimento\"\n",
    );
    let mut screen = Pty::open();
    let mut serial = Pty::open();
    let child = spawn(&sb, &[&screen, &serial]);

    screen.expect("Pressione Enter para configurar por este console");
    serial.expect("Pressione Enter para configurar por este console");
    serial.send("");
    let serial_name = serial.path.trim_start_matches("/dev/").to_owned();
    screen.expect(&format!(
        "A configuração está sendo feita no console {serial_name}"
    ));

    // Only the missing answers are asked.
    serial.expect("Senha do primeiro servidor: ");
    screen.send("");
    screen.expect(&format!("sendo feita no console {serial_name}"));
    serial.send("0123456789");
    serial.expect("Repita a senha: ");
    serial.send("0123456789");
    serial.expect("Certificado TLS [letsencrypt]: ");
    serial.send("");
    serial.expect("IP público");
    serial.send("");
    serial.expect("Confirma e aplica? [s/n]: ");
    serial.send("s");
    serial.expect("configuração concluída");
    screen.expect("[ok] Nome da máquina");
    screen.expect("configuração concluída");

    let out = finish(child);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        !screen.all().contains("Senha do primeiro servidor"),
        "the losing console asked nothing"
    );
    assert!(!screen.all().contains("Confirma e aplica"));
    assert!(
        !serial.all().contains("Nome completo pelo qual"),
        "preseeded answers are not asked"
    );
    assert!(
        serial
            .all()
            .contains("Domínio do serviço: balcao.tjxx.jus.br"),
        "summary shows them"
    );
    assert!(!serial.all().contains("0123456789"));
}
