//! The consoles the wizard runs on. On the appliance the unit passes tty1 (the
//! screen a person at the hypervisor sees) and ttyS0 (the serial port); both
//! show the wizard's first screen, and the first one where someone presses
//! Enter gets the wizard while the other says where setup is happening. Both
//! then see each step's result and the final message. Without `--console`,
//! the wizard talks on standard input and output (an SSH session, or a pipe
//! in tests).
//!
//! Terminal settings go through termios: canonical input with echo for
//! answers, echo off (newline still echoed) while a password is typed, and
//! 115200 baud 8N1 on serial ports, as the kernel command line sets them.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};

use super::wizard::Terminal;
use super::Lang;

/// One console device opened for the wizard.
pub struct Console {
    name: String,
    reader: BufReader<File>,
    writer: File,
    tty: bool,
}

impl Console {
    /// Opens the device without making it our controlling terminal, and puts
    /// it in a sane line mode.
    pub fn open(path: &Path) -> io::Result<Console> {
        let file = File::options()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY)
            .open(path)?;
        // "tty1", "ttyS0", "pts/3": what people call the console.
        let shown = path.display().to_string();
        let name = shown.strip_prefix("/dev/").unwrap_or(&shown).to_owned();
        let tty = is_tty(file.as_raw_fd());
        if tty {
            line_mode(file.as_raw_fd(), name.starts_with("ttyS"))?;
        }
        let writer = file.try_clone()?;
        Ok(Console {
            name,
            reader: BufReader::new(file),
            writer,
            tty,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// A handle for writing to this console from elsewhere.
    pub fn output(&self) -> io::Result<Output> {
        Ok(Output {
            name: self.name.clone(),
            file: self.writer.try_clone()?,
        })
    }
}

impl Terminal for Console {
    fn say(&mut self, text: &str) -> io::Result<()> {
        self.writer.write_all(text.as_bytes())?;
        self.writer.flush()
    }

    fn read_line(&mut self) -> io::Result<Option<String>> {
        read_line(&mut self.reader)
    }

    fn read_secret(&mut self, prompt: &str) -> io::Result<Option<String>> {
        let _quiet = if self.tty {
            Some(EchoOff::new(self.writer.as_raw_fd())?)
        } else {
            None
        };
        self.say(prompt)?;
        read_line(&mut self.reader)
    }
}

/// Standard input and output, for `balcaoctl firstboot` typed by an
/// administrator (or fed by a test).
pub struct StdTerminal {
    reader: BufReader<io::Stdin>,
}

impl StdTerminal {
    pub fn new() -> StdTerminal {
        StdTerminal {
            reader: BufReader::new(io::stdin()),
        }
    }
}

impl Default for StdTerminal {
    fn default() -> Self {
        Self::new()
    }
}

impl Terminal for StdTerminal {
    fn say(&mut self, text: &str) -> io::Result<()> {
        let mut out = io::stdout();
        out.write_all(text.as_bytes())?;
        out.flush()
    }

    fn read_line(&mut self) -> io::Result<Option<String>> {
        read_line(&mut self.reader)
    }

    fn read_secret(&mut self, prompt: &str) -> io::Result<Option<String>> {
        let fd = io::stdin().as_raw_fd();
        let _quiet = if is_tty(fd) {
            Some(EchoOff::new(fd)?)
        } else {
            None
        };
        self.say(prompt)?;
        read_line(&mut self.reader)
    }
}

fn read_line(reader: &mut dyn BufRead) -> io::Result<Option<String>> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    while line.ends_with(['\n', '\r']) {
        line.pop();
    }
    Ok(Some(line))
}

/// A console to write to (progress, final message).
pub struct Output {
    pub name: String,
    file: File,
}

impl Output {
    pub fn say(&mut self, text: &str) {
        // A console that went away must not stop first boot.
        let _ = self.file.write_all(text.as_bytes());
        let _ = self.file.flush();
    }
}

/// Every console at once.
#[derive(Default)]
pub struct Broadcast {
    pub outputs: Vec<Output>,
}

impl Broadcast {
    pub fn say(&mut self, text: &str) {
        for out in &mut self.outputs {
            out.say(text);
        }
    }
}

/// Opens each console that can be opened; the others are logged and left out.
pub fn open_all(paths: &[std::path::PathBuf]) -> Vec<Console> {
    paths
        .iter()
        .filter_map(|path| match Console::open(path) {
            Ok(console) => Some(console),
            Err(e) => {
                tracing::info!("console {} indisponível: {e}", path.display());
                None
            }
        })
        .collect()
}

const NOBODY: usize = usize::MAX;

/// Shows `intro` and an invitation on every console and returns the one where
/// Enter was pressed first; the others are told where setup is happening
/// (also later, whenever Enter is pressed there). `None` when every console
/// reached end of input first.
pub fn claim(consoles: Vec<Console>, lang: Lang, intro: &str) -> Option<Console> {
    let winner = Arc::new(AtomicUsize::new(NOBODY));
    let names: Arc<Vec<String>> = Arc::new(consoles.iter().map(|c| c.name.clone()).collect());
    let (sender, receiver) = mpsc::channel();
    for (index, mut console) in consoles.into_iter().enumerate() {
        let (winner, names, sender) = (winner.clone(), names.clone(), sender.clone());
        let invite = format!(
            "{intro}{} ({}).\n",
            lang.t(
                "Pressione Enter para configurar por este console",
                "Press Enter to set up from this console"
            ),
            console.name
        );
        std::thread::spawn(move || {
            if console.say(&invite).is_err() {
                return;
            }
            while let Ok(Some(_)) = console.read_line() {
                match winner.compare_exchange(NOBODY, index, Ordering::SeqCst, Ordering::SeqCst) {
                    Ok(_) => {
                        let _ = sender.send(console);
                        return;
                    }
                    Err(other) => {
                        let _ = console.say(&elsewhere(lang, &names[other]));
                    }
                }
            }
        });
    }
    drop(sender);
    let chosen = receiver.recv().ok()?;
    Some(chosen)
}

/// What a console that lost the race shows.
pub fn elsewhere(lang: Lang, winner: &str) -> String {
    match lang {
        Lang::Pt => format!("\nA configuração está sendo feita no console {winner}. Aguarde: o resultado aparece aqui ao final.\n"),
        Lang::En => format!("\nSetup is being done on console {winner}. Please wait: the result appears here when it ends.\n"),
    }
}

fn is_tty(fd: RawFd) -> bool {
    // SAFETY: isatty only inspects the descriptor.
    unsafe { libc::isatty(fd) == 1 }
}

fn get_termios(fd: RawFd) -> io::Result<libc::termios> {
    // SAFETY: termios is plain data; tcgetattr fills it or fails.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    if unsafe { libc::tcgetattr(fd, &mut t) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(t)
}

fn set_termios(fd: RawFd, t: &libc::termios) -> io::Result<()> {
    // SAFETY: t is a valid termios read from tcgetattr.
    if unsafe { libc::tcsetattr(fd, libc::TCSANOW, t) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Canonical input with echo, CR read as newline, newline written as CR LF.
fn line_mode(fd: RawFd, serial: bool) -> io::Result<()> {
    let mut t = get_termios(fd)?;
    t.c_iflag |= libc::ICRNL;
    t.c_iflag &= !(libc::INLCR | libc::IGNCR);
    t.c_oflag |= libc::OPOST | libc::ONLCR;
    t.c_lflag |= libc::ICANON | libc::ECHO | libc::ECHOE | libc::ECHOK;
    t.c_lflag &= !libc::ECHONL;
    if serial {
        t.c_cflag &= !(libc::CSIZE | libc::PARENB | libc::CSTOPB);
        t.c_cflag |= libc::CS8 | libc::CREAD | libc::CLOCAL;
        // SAFETY: t is a valid termios; the speed constant is a libc one.
        unsafe {
            libc::cfsetispeed(&mut t, libc::B115200);
            libc::cfsetospeed(&mut t, libc::B115200);
        }
    }
    set_termios(fd, &t)
}

/// Echo off until dropped; the Enter that ends the line still moves to the
/// next line.
struct EchoOff {
    fd: RawFd,
    saved: libc::termios,
}

impl EchoOff {
    fn new(fd: RawFd) -> io::Result<EchoOff> {
        let saved = get_termios(fd)?;
        let mut quiet = saved;
        quiet.c_lflag &= !libc::ECHO;
        quiet.c_lflag |= libc::ECHONL;
        set_termios(fd, &quiet)?;
        Ok(EchoOff { fd, saved })
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        let _ = set_termios(self.fd, &self.saved);
    }
}
