//! Shared by the image tests: building recipes/minimal.toml once per test
//! run, one VM at a time, cloud-init seeds and SSH into a booted guest.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Where test images and their cache live (kept between runs).
pub fn test_dir() -> PathBuf {
    repo().join("target/test-images")
}

/// One VM at a time: two cores cannot boot two guests under TCG in good time,
/// and the boot timings printed are then comparable.
pub fn vm_slot() -> MutexGuard<'static, ()> {
    static SLOT: Mutex<()> = Mutex::new(());
    SLOT.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs a command; panics with its output when it fails.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        text,
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// SOURCE_DATE_EPOCH of every test build, so that builds can be compared.
pub const TEST_EPOCH: &str = "1767225600";

/// Builds a recipe with the real `balcao` binary into `out`; returns stdout.
pub fn build(recipe: &Path, out: &Path, formats: &str, extra: &[&str]) -> String {
    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_balcao"))
        .arg("build")
        .arg(recipe)
        .arg("--out")
        .arg(out)
        .args(["--format", formats])
        .arg("--balcaoctl")
        .arg(env!("CARGO_BIN_EXE_balcaoctl"))
        .arg("--cache")
        .arg(test_dir().join("cache"))
        .args(extra)
        .env("SOURCE_DATE_EPOCH", TEST_EPOCH)
        .output()
        .expect("running balcao build");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "balcao build {} failed:\n{stdout}\n{stderr}",
        recipe.display()
    );
    eprintln!(
        "built {} in {:.0} s:\n{stdout}",
        recipe.display(),
        started.elapsed().as_secs_f64()
    );
    stdout
}

/// The minimal image (raw and qcow2), built once for the whole test binary.
pub fn minimal() -> &'static Path {
    static OUT: OnceLock<PathBuf> = OnceLock::new();
    OUT.get_or_init(|| {
        let out = test_dir().join("minimal");
        let _ = std::fs::remove_dir_all(&out);
        build(&repo().join("recipes/minimal.toml"), &out, "raw,qcow2", &[]);
        out
    })
}

pub fn minimal_qcow2() -> PathBuf {
    minimal().join("minimal-0.1.0.qcow2")
}

pub fn minimal_raw() -> PathBuf {
    minimal().join("minimal-0.1.0.raw")
}

/// A throwaway SSH key pair for logging into test guests.
pub struct SshKey {
    pub dir: tempfile::TempDir,
}

impl SshKey {
    pub fn new() -> SshKey {
        let dir = tempfile::tempdir().unwrap();
        run(Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(dir.path().join("id")));
        SshKey { dir }
    }
    pub fn private(&self) -> PathBuf {
        self.dir.path().join("id")
    }
    pub fn public(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("id.pub"))
            .unwrap()
            .trim()
            .to_owned()
    }
}

/// A NoCloud seed (cloud-localds) that lets root in with `key` and writes
/// `setup_toml` (if any) to /etc/balcao/setup.toml.
pub fn nocloud_seed(dir: &Path, key: &SshKey, setup_toml: Option<&str>, instance: &str) -> PathBuf {
    nocloud_seed_with(dir, key, setup_toml, instance, "")
}

/// [`nocloud_seed`] with more cloud-config (top-level keys other than
/// `users` and `write_files`, e.g. `bootcmd` or `ca_certs`).
pub fn nocloud_seed_with(
    dir: &Path,
    key: &SshKey,
    setup_toml: Option<&str>,
    instance: &str,
    extra_cloud_config: &str,
) -> PathBuf {
    let mut user_data = format!(
        "#cloud-config\ndisable_root: false\nssh_pwauth: false\nusers:\n  - name: root\n    ssh_authorized_keys:\n      - {}\n",
        key.public()
    );
    if let Some(setup) = setup_toml {
        user_data.push_str("write_files:\n  - path: /etc/balcao/setup.toml\n    permissions: '0600'\n    content: |\n");
        for line in setup.lines() {
            user_data.push_str(&format!("      {line}\n"));
        }
    }
    user_data.push_str(extra_cloud_config);
    let ud = dir.join(format!("user-data-{instance}"));
    std::fs::write(&ud, user_data).unwrap();
    let md = dir.join(format!("meta-data-{instance}"));
    std::fs::write(
        &md,
        format!("instance-id: {instance}\nlocal-hostname: unset\n"),
    )
    .unwrap();
    let seed = dir.join(format!("seed-{instance}.img"));
    run(Command::new("cloud-localds").arg(&seed).arg(&ud).arg(&md));
    seed
}

/// `ssh` as root to the guest behind the forwarded `port`, its host key
/// unchecked (each first boot makes new ones); add the rest of the command.
pub fn ssh_command(key: &SshKey, port: u16) -> Command {
    let mut cmd = Command::new("ssh");
    cmd.args([
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
        "-o",
        "ConnectTimeout=10",
        "-o",
        "BatchMode=yes",
        "-i",
    ])
    .arg(key.private())
    .args(["-p", &port.to_string()]);
    cmd
}

/// Runs a command in the guest over SSH; returns (exit code, stdout+stderr).
pub fn ssh(key: &SshKey, port: u16, command: &str) -> (i32, String) {
    let out = ssh_command(key, port)
        .args(["root@127.0.0.1", command])
        .output()
        .expect("running ssh");
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

/// Runs a command that must succeed in the guest; returns its output.
pub fn ssh_ok(key: &SshKey, port: u16, command: &str) -> String {
    let (code, text) = ssh(key, port, command);
    assert_eq!(code, 0, "`{command}` failed in the guest:\n{text}");
    text
}

/// Waits until SSH answers.
pub fn wait_for_ssh(key: &SshKey, port: u16, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let (code, text) = ssh(key, port, "true");
        if code == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no SSH on port {port} after {timeout:?}: {text}"
        );
        std::thread::sleep(Duration::from_secs(3));
    }
}
