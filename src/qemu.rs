//! Booting images in QEMU, for `balcao test` and the boot tests: the image is
//! opened read-only (`snapshot=on`), the serial console is a Unix socket the
//! caller reads and types into, and UEFI starts from blank firmware variables
//! as a freshly imported VM does.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Debian's OVMF build (package ovmf), 4 MiB variant.
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Firmware {
    Bios,
    Uefi,
}

impl std::str::FromStr for Firmware {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "bios" => Ok(Firmware::Bios),
            "uefi" => Ok(Firmware::Uefi),
            _ => Err(format!("unknown firmware `{s}`; allowed: bios, uefi")),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// Software emulation: slow, works everywhere.
    Tcg,
    Kvm,
}

impl std::str::FromStr for Accel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "tcg" => Ok(Accel::Tcg),
            "kvm" => Ok(Accel::Kvm),
            _ => Err(format!("unknown accelerator `{s}`; allowed: tcg, kvm")),
        }
    }
}

/// The virtual hardware a hypervisor presents, as far as QEMU can imitate it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hardware {
    /// KVM, Proxmox, OpenStack: virtio disk and network.
    Virtio,
    /// VirtualBox's defaults: AHCI (SATA) disk, Intel E1000 network.
    VirtualBox,
    /// VMware's paravirtual devices: PVSCSI disk, VMXNET3 network.
    VmwarePvscsi,
    /// The OVA descriptor's devices on VMware: SATA (AHCI) disk, VMXNET3.
    VmwareSata,
}

impl std::str::FromStr for Hardware {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "virtio" => Ok(Hardware::Virtio),
            "virtualbox" => Ok(Hardware::VirtualBox),
            "vmware-pvscsi" => Ok(Hardware::VmwarePvscsi),
            "vmware-sata" => Ok(Hardware::VmwareSata),
            _ => Err(format!(
                "unknown hardware `{s}`; allowed: virtio, virtualbox, vmware-pvscsi, vmware-sata"
            )),
        }
    }
}

/// How to boot one image.
#[derive(Debug, Clone)]
pub struct BootSpec {
    pub image: PathBuf,
    /// qemu's format name: raw, qcow2, vmdk, vhdx, vpc.
    pub format: String,
    pub firmware: Firmware,
    pub accel: Accel,
    pub hardware: Hardware,
    pub memory_mib: u32,
    pub cpus: u32,
    /// Forward this host port on 127.0.0.1 to the guest's SSH port.
    pub ssh_port: Option<u16>,
    /// More TCP forwards, host port on 127.0.0.1 to guest port.
    pub forwards: Vec<(u16, u16)>,
    /// Extra read-only drives (e.g. a NoCloud seed), attached as virtio.
    pub extra_drives: Vec<PathBuf>,
    /// Keep guest writes in a temporary overlay (the image is untouched).
    pub snapshot: bool,
}

impl BootSpec {
    pub fn new(image: &Path, firmware: Firmware) -> BootSpec {
        BootSpec {
            format: format_of(image),
            image: image.to_owned(),
            firmware,
            accel: Accel::Tcg,
            hardware: Hardware::Virtio,
            memory_mib: 1024,
            cpus: 2,
            ssh_port: None,
            forwards: Vec::new(),
            extra_drives: Vec::new(),
            snapshot: true,
        }
    }
}

/// QEMU's format name for an image, from its file name.
pub fn format_of(image: &Path) -> String {
    let name = image.to_string_lossy();
    let ext = name.rsplit('.').next().unwrap_or("");
    match ext {
        "qcow2" => "qcow2",
        "vmdk" => "vmdk",
        "vhdx" => "vhdx",
        "vhd" => "vpc",
        _ => "raw",
    }
    .to_owned()
}

#[derive(Debug, thiserror::Error)]
pub enum QemuError {
    #[error("qemu-system-x86_64 is missing: apt-get install qemu-system-x86")]
    NoQemu,
    #[error("UEFI firmware {0} is missing: apt-get install ovmf")]
    NoOvmf(String),
    #[error("image {0} does not exist")]
    NoImage(PathBuf),
    #[error("starting QEMU: {0}")]
    Start(std::io::Error),
    #[error("QEMU exited early ({status}):\n{stderr}")]
    Exited { status: String, stderr: String },
    #[error("no `{pattern}` on the serial console after {seconds} s; last lines:\n{tail}")]
    Timeout {
        pattern: String,
        seconds: u64,
        tail: String,
    },
    #[error("serial console: {0}")]
    Serial(std::io::Error),
}

/// A running virtual machine. Dropping it stops QEMU.
pub struct Vm {
    child: Child,
    console: UnixStream,
    output: Arc<Mutex<Vec<u8>>>,
    started: Instant,
    _dir: tempfile::TempDir,
}

impl Vm {
    /// Starts QEMU; the guest begins running once the console is connected.
    pub fn start(spec: &BootSpec) -> Result<Vm, QemuError> {
        if crate::command::find_program("qemu-system-x86_64").is_none() {
            return Err(QemuError::NoQemu);
        }
        if !spec.image.exists() {
            return Err(QemuError::NoImage(spec.image.clone()));
        }
        let dir = tempfile::tempdir().map_err(QemuError::Start)?;
        let socket = dir.path().join("serial.sock");

        let mut args: Vec<String> = vec![
            "-nodefaults".into(),
            "-no-user-config".into(),
            "-machine".into(),
            "q35".into(),
            "-accel".into(),
            match spec.accel {
                Accel::Tcg => "tcg".into(),
                Accel::Kvm => "kvm".into(),
            },
            "-m".into(),
            spec.memory_mib.to_string(),
            "-smp".into(),
            spec.cpus.to_string(),
            "-display".into(),
            "none".into(),
            "-vga".into(),
            "std".into(),
            "-chardev".into(),
            format!(
                "socket,id=console,path={},server=on,wait=on",
                socket.display()
            ),
            "-serial".into(),
            "chardev:console".into(),
        ];
        if spec.firmware == Firmware::Uefi {
            for f in [OVMF_CODE, OVMF_VARS] {
                if !Path::new(f).is_file() {
                    return Err(QemuError::NoOvmf(f.into()));
                }
            }
            let vars = dir.path().join("vars.fd");
            std::fs::copy(OVMF_VARS, &vars).map_err(QemuError::Start)?;
            args.extend([
                "-drive".into(),
                format!("if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}"),
                "-drive".into(),
                format!("if=pflash,format=raw,unit=1,file={}", vars.display()),
            ]);
        }

        let snapshot = if spec.snapshot { ",snapshot=on" } else { "" };
        args.extend([
            "-drive".into(),
            format!(
                "file={},format={},if=none,id=disk0{snapshot}",
                spec.image.display(),
                spec.format
            ),
        ]);
        let (disk_devices, nic): (&[&str], &str) = match spec.hardware {
            Hardware::Virtio => (
                &["virtio-blk-pci,drive=disk0,bootindex=0"],
                "virtio-net-pci",
            ),
            Hardware::VirtualBox => (&["ide-hd,drive=disk0,bus=ide.0,bootindex=0"], "e1000"),
            Hardware::VmwarePvscsi => (
                &[
                    "pvscsi,id=scsi0",
                    "scsi-hd,drive=disk0,bus=scsi0.0,bootindex=0",
                ],
                "vmxnet3",
            ),
            Hardware::VmwareSata => (&["ide-hd,drive=disk0,bus=ide.0,bootindex=0"], "vmxnet3"),
        };
        for device in disk_devices {
            args.extend(["-device".into(), device.to_string()]);
        }
        for (i, drive) in spec.extra_drives.iter().enumerate() {
            args.extend([
                "-drive".into(),
                format!(
                    "file={},format=raw,if=virtio,readonly=on,index={}",
                    drive.display(),
                    i + 1
                ),
            ]);
        }
        let mut netdev = "user,id=net0".to_string();
        if let Some(port) = spec.ssh_port {
            netdev.push_str(&format!(",hostfwd=tcp:127.0.0.1:{port}-:22"));
        }
        for (host, guest) in &spec.forwards {
            netdev.push_str(&format!(",hostfwd=tcp:127.0.0.1:{host}-:{guest}"));
        }
        args.extend([
            "-netdev".into(),
            netdev,
            "-device".into(),
            format!("{nic},netdev=net0"),
        ]);

        tracing::debug!("$ qemu-system-x86_64 {}", args.join(" "));
        let mut child = Command::new("qemu-system-x86_64")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(QemuError::Start)?;

        // QEMU waits for us on the socket before running the guest.
        let deadline = Instant::now() + Duration::from_secs(30);
        let console = loop {
            match UnixStream::connect(&socket) {
                Ok(stream) => break stream,
                Err(e) => {
                    if let Ok(Some(status)) = child.try_wait() {
                        let mut stderr = String::new();
                        if let Some(mut s) = child.stderr.take() {
                            let _ = s.read_to_string(&mut stderr);
                        }
                        return Err(QemuError::Exited {
                            status: status.to_string(),
                            stderr,
                        });
                    }
                    if Instant::now() > deadline {
                        let _ = child.kill();
                        return Err(QemuError::Serial(e));
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        };
        let started = Instant::now();
        let output = Arc::new(Mutex::new(Vec::new()));
        let mut reader = console.try_clone().map_err(QemuError::Serial)?;
        let sink = Arc::clone(&output);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                if let Ok(mut out) = sink.lock() {
                    out.extend_from_slice(&buf[..n]);
                }
            }
        });
        Ok(Vm {
            child,
            console,
            output,
            started,
            _dir: dir,
        })
    }

    /// Everything the serial console has printed so far, as text.
    pub fn console_text(&self) -> String {
        let bytes = self.output.lock().map(|o| o.clone()).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// How long since the guest was started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Waits until the console output after byte `from` contains `pattern`;
    /// returns the byte offset just past it.
    pub fn wait_for_from(
        &mut self,
        pattern: &str,
        from: usize,
        timeout: Duration,
    ) -> Result<usize, QemuError> {
        let deadline = Instant::now() + timeout;
        loop {
            {
                // Offsets are in bytes of the raw output: firmware may print
                // bytes that are not UTF-8, so never search a lossy copy.
                let out = self.output.lock().map(|o| o.clone()).unwrap_or_default();
                let needle = pattern.as_bytes();
                let found = out[from.min(out.len())..]
                    .windows(needle.len())
                    .position(|w| w == needle);
                if let Some(at) = found {
                    return Ok(from + at + needle.len());
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                let mut stderr = String::new();
                if let Some(mut s) = self.child.stderr.take() {
                    let _ = s.read_to_string(&mut stderr);
                }
                return Err(QemuError::Exited {
                    status: status.to_string(),
                    stderr: format!("{stderr}\nconsole:\n{}", tail(&self.console_text(), 30)),
                });
            }
            if Instant::now() > deadline {
                return Err(QemuError::Timeout {
                    pattern: pattern.to_owned(),
                    seconds: timeout.as_secs(),
                    tail: tail(&self.console_text(), 30),
                });
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits until any of `patterns` appears; returns the one that did.
    pub fn wait_for_any(
        &mut self,
        patterns: &[&'static str],
        timeout: Duration,
    ) -> Result<&'static str, QemuError> {
        let deadline = Instant::now() + timeout;
        loop {
            let text = self.console_text();
            if let Some(found) = patterns.iter().find(|p| text.contains(*p)) {
                return Ok(found);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(QemuError::Timeout {
                    pattern: patterns.join("` or `"),
                    seconds: timeout.as_secs(),
                    tail: tail(&text, 30),
                });
            }
            // Short waits on the first pattern notice an exited QEMU.
            match self.wait_for(patterns[0], left.min(Duration::from_secs(2))) {
                Ok(_) => return Ok(patterns[0]),
                Err(QemuError::Timeout { .. }) => {}
                Err(other) => return Err(other),
            }
        }
    }

    /// Waits for `pattern` anywhere in the console output.
    pub fn wait_for(&mut self, pattern: &str, timeout: Duration) -> Result<usize, QemuError> {
        self.wait_for_from(pattern, 0, timeout)
    }

    /// Types text on the serial console.
    pub fn type_text(&mut self, text: &str) -> Result<(), QemuError> {
        self.console
            .write_all(text.as_bytes())
            .map_err(QemuError::Serial)
    }

    /// Byte length of the console output so far.
    pub fn console_len(&self) -> usize {
        self.output.lock().map(|o| o.len()).unwrap_or(0)
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// What the serial console shows when the appliance is up: a login prompt,
/// or the first-boot wizard waiting for answers.
pub const UP_MARKERS: &[&str] = &[" login:", "Pressione Enter para configurar"];

/// Boots `spec` and waits until it is up (see [`UP_MARKERS`]); returns the
/// time it took and which marker appeared.
pub fn boot_until_up(
    spec: &BootSpec,
    timeout: Duration,
) -> Result<(Duration, &'static str), QemuError> {
    let mut vm = Vm::start(spec)?;
    let marker = vm.wait_for_any(UP_MARKERS, timeout)?;
    Ok((vm.elapsed(), marker))
}

/// A free TCP port on 127.0.0.1 (for SSH forwarding).
pub fn free_port() -> std::io::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_follow_file_names() {
        assert_eq!(format_of(Path::new("a.qcow2")), "qcow2");
        assert_eq!(format_of(Path::new("a.vhd")), "vpc");
        assert_eq!(format_of(Path::new("a.raw")), "raw");
        assert_eq!(format_of(Path::new("a.img")), "raw");
    }

    #[test]
    fn options_parse() {
        assert_eq!("uefi".parse::<Firmware>().unwrap(), Firmware::Uefi);
        assert!("efi"
            .parse::<Firmware>()
            .unwrap_err()
            .contains("bios, uefi"));
        assert_eq!("kvm".parse::<Accel>().unwrap(), Accel::Kvm);
        assert_eq!(
            "virtualbox".parse::<Hardware>().unwrap(),
            Hardware::VirtualBox
        );
    }
}
