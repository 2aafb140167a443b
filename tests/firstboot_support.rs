//! Shared by the firstboot_* tests: a temporary appliance root, a stand-in
//! `ufw` on PATH that records its calls and keeps its rules in a file, and a
//! way to run `balcaoctl` against them. `ssh-keygen` is the real one (Debian
//! package openssh-client), run with `-A -f ROOT` so it writes under the root.
#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, SystemTime};

pub const BALCAOCTL: &str = env!("CARGO_BIN_EXE_balcaoctl");

const UFW_STUB: &str = r#"#!/bin/sh
# Stand-in for ufw: records each call, keeps the rules in $UFW_STATE.
echo "ufw $*" >> "$STUB_LOG"
S="$UFW_STATE"; touch "$S"
if [ -n "$UFW_FAIL" ] && [ "$1" = "allow" ]; then echo "ERROR: problem running iptables" >&2; exit 1; fi
case "$*" in
  "status verbose")
    if grep -q '^active$' "$S"; then
      echo "Status: active"
      grep -q '^deny-in$' "$S" && echo "Default: deny (incoming), allow (outgoing), deny (routed)"
      echo; echo "To                         Action      From"; echo "--                         ------      ----"
      grep '^rule ' "$S" | while read -r _ p; do printf '%-26s ALLOW IN    Anywhere\n' "$p"; done
    else echo "Status: inactive"; fi ;;
  "default deny incoming") grep -q '^deny-in$' "$S" || echo deny-in >> "$S" ;;
  "default allow outgoing") ;;
  "--force enable") echo active >> "$S" ;;
  allow\ *) echo "rule $2" >> "$S" ;;
  "delete allow "*) grep -v "^rule $3\$" "$S" > "$S.n"; mv "$S.n" "$S" ;;
  *) echo "ufw stub: unexpected: $*" >&2; exit 1 ;;
esac
"#;

pub const DEBIAN_HOSTS: &str =
    "127.0.0.1\tlocalhost\n127.0.1.1\tdebian\n\n::1     localhost ip6-localhost ip6-loopback\n";

pub const FULL_SETUP: &str = r#"# cloud-init write_files
domain = "balcao.tjxx.jus.br"
email = "ti@tjxx.jus.br"
[admin]
user = "atendimento"
password = "senha-muito-boa"
[tls]
mode = "self-signed"
"#;

pub fn require_tool(program: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "this test needs `{program}`: apt-get install {package}"
    );
}

pub struct Sandbox {
    _dir: tempfile::TempDir,
    pub root: PathBuf,
    pub stubs: PathBuf,
    pub log: PathBuf,
    pub ufw_state: PathBuf,
}

impl Sandbox {
    /// A root like a fresh image: Debian's /etc/hosts, an empty machine-id,
    /// no host keys, and the image's balcaoctl an hour old.
    pub fn image() -> Sandbox {
        require_tool("ssh-keygen", "openssh-client");
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let stubs = dir.path().join("stubs");
        fs::create_dir_all(root.join("etc/ssh")).unwrap();
        fs::create_dir_all(root.join("usr/bin")).unwrap();
        fs::create_dir_all(&stubs).unwrap();
        fs::write(root.join("etc/hosts"), DEBIAN_HOSTS).unwrap();
        fs::write(root.join("etc/hostname"), "debian\n").unwrap();
        fs::write(root.join("etc/machine-id"), "").unwrap();
        let image = root.join("usr/bin/balcaoctl");
        fs::write(&image, "image").unwrap();
        fs::File::options()
            .write(true)
            .open(&image)
            .unwrap()
            .set_modified(SystemTime::now() - Duration::from_secs(3600))
            .unwrap();
        let ufw = stubs.join("ufw");
        fs::write(&ufw, UFW_STUB).unwrap();
        fs::set_permissions(&ufw, fs::Permissions::from_mode(0o755)).unwrap();
        Sandbox {
            log: dir.path().join("commands.log"),
            ufw_state: dir.path().join("ufw.state"),
            _dir: dir,
            root,
            stubs,
        }
    }

    pub fn path(&self, appliance_path: &str) -> PathBuf {
        self.root.join(appliance_path.trim_start_matches('/'))
    }

    pub fn read(&self, appliance_path: &str) -> String {
        fs::read_to_string(self.path(appliance_path)).unwrap_or_default()
    }

    pub fn write(&self, appliance_path: &str, text: &str) {
        let path = self.path(appliance_path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

    /// `balcaoctl ARGS` with the stand-ins first on PATH.
    pub fn balcaoctl(&self, args: &[&str]) -> Command {
        let path = format!(
            "{}:{}",
            self.stubs.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut cmd = Command::new(BALCAOCTL);
        cmd.args(args)
            .env("PATH", path)
            .env("STUB_LOG", &self.log)
            .env("UFW_STATE", &self.ufw_state)
            .env("NO_COLOR", "1")
            .env_remove("UFW_FAIL")
            .env_remove("BALCAO_LOG");
        cmd
    }

    /// `balcaoctl firstboot --root ROOT EXTRA...` with empty standard input.
    pub fn firstboot(&self, extra: &[&str]) -> Output {
        let root = self.root.display().to_string();
        let mut args = vec!["firstboot", "--root", root.as_str()];
        args.extend_from_slice(extra);
        self.balcaoctl(&args).stdin(Stdio::null()).output().unwrap()
    }

    pub fn status(&self) -> Output {
        let root = self.root.display().to_string();
        self.balcaoctl(&["status", "--root", &root])
            .output()
            .unwrap()
    }

    pub fn calls(&self) -> Vec<String> {
        fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Every file under the root with its content, for before/after comparisons.
    pub fn snapshot(&self) -> Vec<(PathBuf, Vec<u8>, SystemTime)> {
        let mut files = Vec::new();
        walk(&self.root, &mut files);
        files.sort();
        files
            .into_iter()
            .filter(|p| !p.ends_with("firstboot.lock"))
            .map(|p| {
                let meta = fs::metadata(&p).unwrap();
                (p.clone(), fs::read(&p).unwrap(), meta.modified().unwrap())
            })
            .collect()
    }
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            walk(&path, out);
        } else {
            out.push(path);
        }
    }
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
