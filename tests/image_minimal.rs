//! Builds recipes/minimal.toml with the real `balcao` binary and checks the
//! result as court IT would meet it: the files, the disk's contents without
//! mounting it, and boots under QEMU (TCG) with SeaBIOS and with OVMF from
//! blank variables, first boot answered by a NoCloud seed or through the
//! wizard on the serial console.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use balcao::qemu::{BootSpec, Firmware, Vm};
use support::*;

const BOOT_TIMEOUT: Duration = Duration::from_secs(600);

/// The ext4 root starts at sector 262144 (Debian cloud-image layout).
fn debugfs(raw: &std::path::Path, request: &str) -> String {
    let target = format!("{}?offset={}", raw.display(), 262_144 * 512);
    let out = Command::new("debugfs")
        .args(["-R", request, &target])
        .output()
        .expect("debugfs (e2fsprogs) is needed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_image_is_complete_and_carries_nothing_of_the_build() {
    let out = minimal();
    let raw = minimal_raw();

    // Checksums cover every artifact; the manifest lists the packages.
    run(Command::new("sha256sum")
        .arg("-c")
        .arg("SHA256SUMS")
        .current_dir(out));
    let sums = std::fs::read_to_string(out.join("SHA256SUMS")).unwrap();
    for name in [
        "minimal-0.1.0.raw",
        "minimal-0.1.0.qcow2",
        "minimal-0.1.0.packages",
    ] {
        assert!(
            sums.contains(name),
            "{name} missing from SHA256SUMS:\n{sums}"
        );
    }
    let manifest = std::fs::read_to_string(out.join("minimal-0.1.0.packages")).unwrap();
    for package in [
        "linux-image-amd64\t",
        "openssh-server\t",
        "cloud-init\t",
        "ufw\t",
    ] {
        assert!(
            manifest.contains(package),
            "{package} missing from the manifest"
        );
    }
    assert!(!manifest.contains("linux-image-cloud"));
    assert!(manifest.lines().all(|l| l.split('\t').count() == 3));
    // Nothing half-written is left beside the results.
    let leftovers: Vec<_> = std::fs::read_dir(out)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.') || n.ends_with(".partial"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "left in the output folder: {leftovers:?}"
    );

    // qcow2 and raw hold the same disk.
    run(Command::new("qemu-img")
        .args(["compare", "-f", "raw", "-F", "qcow2"])
        .arg(&raw)
        .arg(minimal_qcow2()));

    // The partition table is valid and laid out like Debian's cloud images.
    let verify = run(Command::new("sgdisk").arg("--verify").arg(&raw));
    assert!(verify.contains("No problems found"), "{verify}");
    let table = run(Command::new("sgdisk").arg("--print").arg(&raw));
    let rows: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    let row = |number: &str| {
        rows.iter()
            .find(|r| r.first() == Some(&number))
            .unwrap_or_else(|| panic!("no partition {number}:\n{table}"))
            .clone()
    };
    assert_eq!(&row("14")[1..3], ["2048", "8191"], "{table}");
    assert_eq!(&row("15")[1..3], ["8192", "262143"], "{table}");
    assert_eq!(row("1")[1], "262144", "{table}");

    // BIOS: GRUB's boot.img in the MBR pointing at sector 2048.
    let mbr = std::fs::read(&raw).map(|b| b[..512].to_vec()).unwrap();
    assert_eq!(&mbr[0x5C..0x64], &2048u64.to_le_bytes());
    assert_eq!(&mbr[0x1FE..], &[0x55, 0xAA]);

    // UEFI: the loader at the removable path on the ESP.
    let esp = format!("{}@@{}", raw.display(), 8192 * 512);
    let listing = run(Command::new("mdir")
        .args(["-i", &esp, "::/EFI/BOOT"])
        .env("MTOOLS_SKIP_CHECK", "1"));
    assert!(listing.contains("BOOTX64  EFI"), "{listing}");

    // Hygiene, read straight from the ext4 inside the raw disk.
    assert_eq!(
        debugfs(&raw, "cat /etc/machine-id"),
        "",
        "machine-id must be empty"
    );
    let ssh = debugfs(&raw, "ls /etc/ssh");
    assert!(ssh.contains("sshd_config"), "{ssh}");
    assert!(
        !ssh.contains("ssh_host_"),
        "host keys shipped in the image: {ssh}"
    );
    let lists = debugfs(&raw, "ls /var/lib/apt/lists");
    assert!(!lists.contains("_Packages"), "apt lists shipped: {lists}");
    assert!(!debugfs(&raw, "ls /root").contains(".bash_history"));
    let cloud = debugfs(&raw, "ls /var/lib/cloud");
    assert!(
        !cloud.contains("instance"),
        "cloud-init state shipped: {cloud}"
    );
    assert!(debugfs(&raw, "stat /usr/bin/balcaoctl").contains("Mode:  0755"));
    let fstab = debugfs(&raw, "cat /etc/fstab");
    assert!(
        fstab.contains("UUID=") && fstab.contains(" / ext4 "),
        "{fstab}"
    );
    let grub = debugfs(&raw, "cat /boot/grub/grub.cfg");
    assert!(grub.contains("console=tty0 console=ttyS0,115200"), "{grub}");
    assert!(debugfs(&raw, "ls /boot/grub/x86_64-efi").contains("normal.mod"));
}

const SETUP: &str = r#"domain = "balcao.tjteste.jus.br"
email = "ti@tjteste.jus.br"
[admin]
user = "atendimento"
password = "senha-de-teste-123"
[tls]
mode = "self-signed"
"#;

/// What one fresh boot looked like from outside.
struct Instance {
    machine_id: String,
    host_key: String,
}

fn boot_with_seed(firmware: Firmware, instance: &str) -> Instance {
    let dir = tempfile::tempdir().unwrap();
    let key = SshKey::new();
    let seed = nocloud_seed(dir.path(), &key, Some(SETUP), instance);

    // A 4 GiB disk on top of the 2 GiB image: the root must grow into it.
    let disk = dir.path().join("disk.qcow2");
    run(Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"])
        .arg(minimal_qcow2())
        .arg(&disk)
        .arg("4G"));

    let port = balcao::qemu::free_port().unwrap();
    let mut spec = BootSpec::new(&disk, firmware);
    spec.ssh_port = Some(port);
    spec.extra_drives = vec![seed];
    spec.snapshot = false;

    let _slot = vm_slot();
    let mut vm = Vm::start(&spec).unwrap();
    vm.wait_for(" login:", BOOT_TIMEOUT)
        .unwrap_or_else(|e| panic!("{firmware:?} boot: {e}"));
    eprintln!(
        "{firmware:?}: first boot from NoCloud to login prompt in {:.1} s",
        vm.elapsed().as_secs_f64()
    );
    let console = vm.console_text();
    assert!(
        console.contains("[ok]"),
        "first-boot steps not shown on the serial console:\n{console}"
    );
    wait_for_ssh(&key, port, Duration::from_secs(120));

    assert_eq!(ssh_ok(&key, port, "hostname").trim(), "balcao");
    let hosts = ssh_ok(&key, port, "cat /etc/hosts");
    assert!(hosts.contains("balcao.tjteste.jus.br"), "{hosts}");
    let ufw = ssh_ok(&key, port, "ufw status verbose");
    assert!(ufw.contains("Status: active"), "{ufw}");
    assert!(ufw.contains("deny (incoming)"), "{ufw}");
    for rule in [
        "22/tcp",
        "80/tcp",
        "443/tcp",
        "10000/udp",
        "3478/udp",
        "5349/tcp",
    ] {
        assert!(ufw.contains(rule), "ufw lacks {rule}:\n{ufw}");
    }
    assert!(!ufw.contains("4443"), "{ufw}");
    let status = ssh_ok(&key, port, "balcaoctl status");
    assert!(!status.contains("falhou"), "{status}");
    // The password is gone from the preseed once used.
    let setup = ssh_ok(&key, port, "cat /etc/balcao/setup.toml");
    assert!(
        !setup.contains("senha-de-teste-123"),
        "password left in setup.toml"
    );
    let journal = ssh_ok(&key, port, "journalctl -b --no-pager -u balcao-firstboot");
    assert!(
        !journal.contains("senha-de-teste-123"),
        "password in the journal"
    );

    // The root grew to fill the 4 GiB disk.
    let size: u64 = ssh_ok(&key, port, "df --output=size -B1M / | tail -n 1")
        .trim()
        .parse()
        .unwrap();
    assert!(
        size > 3500,
        "root filesystem is {size} MiB; it did not grow"
    );

    // The same answers again change nothing.
    ssh_ok(&key, port, "balcaoctl firstboot");

    Instance {
        machine_id: ssh_ok(&key, port, "cat /etc/machine-id").trim().to_owned(),
        host_key: ssh_ok(&key, port, "cat /etc/ssh/ssh_host_ed25519_key.pub"),
    }
}

#[test]
fn boots_bios_and_uefi_each_as_a_new_machine() {
    let bios = boot_with_seed(Firmware::Bios, "bios-1");
    let uefi = boot_with_seed(Firmware::Uefi, "uefi-1");
    assert_eq!(bios.machine_id.len(), 32);
    assert_ne!(
        bios.machine_id, uefi.machine_id,
        "machine-id repeated across instances"
    );
    assert_ne!(
        bios.host_key, uefi.host_key,
        "SSH host key repeated across instances"
    );
}

/// Waits for `prompt` after `from`, types `answer` and Enter. On failure the
/// whole console is kept under target/test-artifacts/.
fn answer(vm: &mut Vm, from: &mut usize, prompt: &str, text: &str) {
    *from = vm
        .wait_for_from(prompt, *from, Duration::from_secs(180))
        .unwrap_or_else(|e| {
            let dir = repo().join("target/test-artifacts");
            let _ = std::fs::create_dir_all(&dir);
            let log = dir.join("wizard-console.log");
            let _ = std::fs::write(&log, vm.console_text());
            panic!("waiting for `{prompt}` (console in {}): {e}", log.display())
        });
    vm.type_text(&format!("{text}\r")).unwrap();
}

#[test]
fn the_wizard_on_the_serial_console_asks_again_after_bad_answers() {
    // No seed at all: no cloud data source, as on a bare hypervisor.
    let mut spec = BootSpec::new(&minimal_qcow2(), Firmware::Uefi);
    spec.memory_mib = 1024;
    let _slot = vm_slot();
    let mut vm = Vm::start(&spec).unwrap();
    let mut at = vm
        .wait_for("Pressione Enter para configurar", BOOT_TIMEOUT)
        .unwrap();
    let to_wizard = vm.elapsed();
    vm.type_text("\r").unwrap();

    answer(&mut vm, &mut at, "Domínio do serviço: ", "192.0.2.1");
    at = vm
        .wait_for_from("Valor inválido", at, Duration::from_secs(30))
        .unwrap();
    answer(
        &mut vm,
        &mut at,
        "Domínio do serviço: ",
        "balcao.tjteste.jus.br",
    );
    answer(
        &mut vm,
        &mut at,
        "E-mail para avisos do certificado: ",
        "ti@tjteste.jus.br",
    );
    answer(
        &mut vm,
        &mut at,
        "Usuário do primeiro servidor (atendente): ",
        "atendimento",
    );
    answer(
        &mut vm,
        &mut at,
        "Senha do primeiro servidor: ",
        "senha-de-teste-123",
    );
    answer(&mut vm, &mut at, "Repita a senha: ", "outra-senha-qualquer");
    at = vm
        .wait_for_from("não conferem", at, Duration::from_secs(30))
        .unwrap();
    answer(
        &mut vm,
        &mut at,
        "Senha do primeiro servidor: ",
        "senha-de-teste-123",
    );
    answer(&mut vm, &mut at, "Repita a senha: ", "senha-de-teste-123");
    answer(&mut vm, &mut at, "Certificado TLS [letsencrypt]: ", "2");
    answer(
        &mut vm,
        &mut at,
        "IP público (se a VM estiver atrás de NAT): ",
        "",
    );
    answer(&mut vm, &mut at, "Confirma e aplica? [s/n]: ", "s");
    let answered = Instant::now();
    at = vm
        .wait_for_from("configuração concluída", at, Duration::from_secs(300))
        .unwrap();
    let done = answered.elapsed();
    vm.wait_for_from(" login:", at, Duration::from_secs(120))
        .unwrap();
    eprintln!(
        "wizard: power-on to wizard {:.1} s, answers to done {:.1} s",
        to_wizard.as_secs_f64(),
        done.as_secs_f64()
    );
    let console = vm.console_text();
    assert!(
        !console.contains("senha-de-teste-123"),
        "the password was echoed on the console"
    );
    assert!(
        console.contains("https://balcao.tjteste.jus.br/"),
        "no address shown:\n{console}"
    );
}

#[test]
fn a_bad_recipe_is_explained_and_builds_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = dir.path().join("bad.toml");
    std::fs::write(
        &recipe,
        "name = \"x\"\nversion = \"1\"\n[debian]\nsuite = \"buster\"\npackages = [\"linux-image-amd64\"]\n[disk]\nsize = \"2GiB\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_balcao"))
        .arg("build")
        .arg(&recipe)
        .arg("--out")
        .arg(dir.path().join("dist"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr.contains("bad.toml")
            && stderr.contains("debian.suite")
            && stderr.contains("bookworm"),
        "{stderr}"
    );
    assert!(!dir.path().join("dist").exists());
}

#[test]
fn missing_host_tools_are_listed_with_the_install_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_balcao"))
        .arg("build")
        .arg(repo().join("recipes/minimal.toml"))
        .arg("--out")
        .arg(dir.path().join("dist"))
        .env("PATH", dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("missing tools") && stderr.contains("mmdebstrap"),
        "{stderr}"
    );
    assert!(stderr.contains("apt-get install mmdebstrap"), "{stderr}");
}

#[test]
fn an_interrupted_build_leaves_no_mounts_processes_or_files() {
    let dir = tempfile::tempdir_in(test_dir().parent().unwrap()).unwrap();
    let out = dir.path().join("dist");
    let mut child = Command::new(env!("CARGO_BIN_EXE_balcao"))
        .arg("build")
        .arg(repo().join("recipes/minimal.toml"))
        .arg("--out")
        .arg(&out)
        .arg("--no-cache")
        .arg("--balcaoctl")
        .arg(env!("CARGO_BIN_EXE_balcaoctl"))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // Wait until mmdebstrap is well into its work (mounts made, dpkg running).
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let mut lines = stderr.lines();
    let started = Instant::now();
    for line in lines.by_ref() {
        if line.unwrap().contains("mmdebstrap") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "mmdebstrap never started"
        );
    }
    let work_dir = || {
        std::fs::read_dir(&out)
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok())
            .find(|e| e.file_name().to_string_lossy().starts_with(".balcao-work-"))
            .map(|e| e.path())
    };
    let deadline = Instant::now() + Duration::from_secs(300);
    let work = loop {
        // mmdebstrap mounts /proc and /sys inside its folder under our work dir.
        let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
        if let Some(work) = work_dir() {
            if mounts.contains(&*work.to_string_lossy()) {
                break work;
            }
        }
        assert!(
            Instant::now() < deadline,
            "mmdebstrap never mounted anything"
        );
        std::thread::sleep(Duration::from_millis(250));
    };

    // As when an SSH session drops: nobody reads the builder's messages any
    // more, and it must still clean up.
    drop(lines);
    let pid = child.id();
    run(Command::new("kill").args(["-TERM", &pid.to_string()]));
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "the builder's exit after SIGTERM");

    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    assert!(
        !mounts.contains(&*work.to_string_lossy()),
        "mounts left:\n{mounts}"
    );
    assert!(!work.exists(), "work folder left at {}", work.display());
    let procs = run(Command::new("ps").args(["-eo", "pid,args"]));
    let leftover: Vec<&str> = procs
        .lines()
        .filter(|l| l.contains(&*work.to_string_lossy()) || l.contains(&*out.to_string_lossy()))
        .collect();
    assert!(leftover.is_empty(), "processes left: {leftover:?}");
    let finals: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .collect();
    assert!(
        finals.is_empty(),
        "files left in the output folder: {finals:?}"
    );
}

/// Exports the minimal image's raw disk with the library, as the builder does.
fn export_minimal(format: balcao::export::Format, dir: &std::path::Path) -> std::path::PathBuf {
    let appliance = balcao::export::Appliance {
        name: "minimal".into(),
        version: "0.1.0".into(),
        description: "Balcão Virtual (minimal test image)".into(),
        cpus: 2,
        memory_mib: 2048,
        firmware: balcao::export::Firmware::Efi,
    };
    balcao::export::export(&minimal_raw(), format, dir, &appliance).unwrap()
}

/// Boots an exported disk until systemd says the network is online: the
/// root filesystem was found on that disk controller and the network card
/// got an address over DHCP.
fn boots(
    image: &std::path::Path,
    format: &str,
    firmware: Firmware,
    hardware: balcao::qemu::Hardware,
) {
    let mut spec = BootSpec::new(image, firmware);
    spec.format = format.into();
    spec.hardware = hardware;
    let _slot = vm_slot();
    let mut vm = Vm::start(&spec).unwrap();
    vm.wait_for("Network is Online", BOOT_TIMEOUT)
        .unwrap_or_else(|e| panic!("{} ({firmware:?}, {hardware:?}): {e}", image.display()));
    eprintln!(
        "{} on {hardware:?} with {firmware:?}: root mounted and network online after {:.1} s",
        image.file_name().unwrap().to_string_lossy(),
        vm.elapsed().as_secs_f64()
    );
}

#[test]
fn the_disk_inside_the_ova_boots_on_virtualbox_and_vmware_hardware() {
    use balcao::qemu::Hardware;
    let dir = tempfile::tempdir().unwrap();
    let ova = export_minimal(balcao::export::Format::Ova, dir.path());
    let vmdk = dir.path().join("from-ova.vmdk");
    balcao::export::extract_ova_disk(&ova, &vmdk).unwrap();
    boots(&vmdk, "vmdk", Firmware::Bios, Hardware::VirtualBox);
    boots(&vmdk, "vmdk", Firmware::Bios, Hardware::VmwarePvscsi);
    // Debian's OVMF has no PVSCSI driver: UEFI is tried with the descriptor's
    // SATA controller.
    boots(&vmdk, "vmdk", Firmware::Uefi, Hardware::VmwareSata);
}

#[test]
fn the_hyper_v_and_google_disks_boot() {
    use balcao::qemu::Hardware;
    let dir = tempfile::tempdir().unwrap();
    let vhdx = export_minimal(balcao::export::Format::Vhdx, dir.path());
    boots(&vhdx, "vhdx", Firmware::Uefi, Hardware::Virtio);
    let gce = export_minimal(balcao::export::Format::Gce, dir.path());
    run(Command::new("tar")
        .arg("-xzf")
        .arg(&gce)
        .arg("-C")
        .arg(dir.path()));
    boots(
        &dir.path().join("disk.raw"),
        "raw",
        Firmware::Bios,
        Hardware::Virtio,
    );
}
