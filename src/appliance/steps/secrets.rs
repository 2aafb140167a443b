//! Fresh per-instance secrets: the machine-id and the SSH host keys must be
//! this machine's own, never the image's. The image ships an empty
//! machine-id (systemd fills it at first boot) and no host keys (the base
//! overlay's unit runs `ssh-keygen -A` before ssh starts). This step makes
//! sure of both: a missing or malformed machine-id is written fresh, missing
//! host keys are generated, and any of them older than the image's own
//! `balcaoctl` binary came from the image and is replaced. Done once per
//! machine: `--reconfigure` keeps them.

use std::time::SystemTime;

use super::{Context, Facts, Step, StepError};
use crate::appliance::root::FileError;
use crate::appliance::Lang;
use crate::command::Cmd;

pub const MACHINE_ID: &str = "/etc/machine-id";
/// Installed by the image builder: a file older than it came with the image.
pub const IMAGE_REFERENCE: &str = "/usr/bin/balcaoctl";
pub const SSH_DIR: &str = "/etc/ssh";
/// The host key types `ssh-keygen -A` makes on Debian 12.
pub const HOST_KEY_TYPES: &[&str] = &["rsa", "ecdsa", "ed25519"];

pub struct Secrets;

fn key_path(kind: &str) -> String {
    format!("{SSH_DIR}/ssh_host_{kind}_key")
}

fn valid_machine_id(text: &str) -> bool {
    let id = text.trim();
    id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn modified(ctx: &Context, path: &str) -> Option<SystemTime> {
    std::fs::metadata(ctx.root.path(path))
        .and_then(|m| m.modified())
        .ok()
}

/// True when the file exists and is not older than the image.
fn fresh(ctx: &Context, path: &str) -> bool {
    let Some(when) = modified(ctx, path) else {
        return false;
    };
    match modified(ctx, IMAGE_REFERENCE) {
        Some(image) => when > image,
        None => true,
    }
}

fn random_id() -> Result<String, FileError> {
    let mut bytes = [0u8; 16];
    let urandom = std::path::PathBuf::from("/dev/urandom");
    let read = std::fs::File::open(&urandom)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes));
    read.map_err(|source| FileError::Read {
        path: urandom,
        source,
    })?;
    Ok(hex::encode(bytes))
}

impl Step for Secrets {
    fn name(&self) -> &'static str {
        "secrets"
    }

    fn title(&self, lang: Lang) -> &'static str {
        lang.t(
            "Segredos desta máquina (machine-id, chaves SSH)",
            "This machine's secrets (machine-id, SSH keys)",
        )
    }

    fn once_per_instance(&self) -> bool {
        true
    }

    fn services(&self) -> &'static [&'static str] {
        &["ssh"]
    }

    fn is_done(&self, ctx: &Context) -> Result<bool, StepError> {
        let id = ctx.root.read_optional(MACHINE_ID)?.unwrap_or_default();
        let keys = HOST_KEY_TYPES.iter().all(|kind| {
            let key = key_path(kind);
            ctx.root.exists(&key) && ctx.root.exists(&format!("{key}.pub"))
        });
        Ok(valid_machine_id(&id) && keys)
    }

    fn apply(&self, ctx: &Context) -> Result<Facts, StepError> {
        let mut facts = Facts::new();

        let id = ctx.root.read_optional(MACHINE_ID)?.unwrap_or_default();
        if valid_machine_id(&id) && fresh(ctx, MACHINE_ID) {
            facts.insert("machine_id".into(), "kept".into());
        } else {
            let new = random_id()?;
            ctx.root
                .write_atomic(MACHINE_ID, format!("{new}\n").as_bytes(), 0o444)?;
            facts.insert("machine_id".into(), "generated".into());
            if ctx.root.is_system() {
                tracing::warn!(
                    "machine-id novo gravado; reinicie a máquina para que todos os serviços o usem"
                );
            }
        }

        let mut regenerate = false;
        for kind in HOST_KEY_TYPES {
            let key = key_path(kind);
            let public = format!("{key}.pub");
            if !(fresh(ctx, &key) && fresh(ctx, &public)) {
                ctx.root.remove(&key)?;
                ctx.root.remove(&public)?;
                regenerate = true;
            }
        }
        if regenerate {
            let mut keygen = Cmd::new("ssh-keygen").arg("-A");
            if !ctx.root.is_system() {
                let dir = ctx.root.path(SSH_DIR);
                std::fs::create_dir_all(&dir).map_err(|source| FileError::Write {
                    path: dir.clone(),
                    source,
                })?;
                keygen = keygen.arg("-f").arg(ctx.root.dir());
            }
            ctx.system.run(&keygen)?;
            if ctx.root.is_system() {
                ctx.system
                    .run(&Cmd::new("systemctl").args(["try-reload-or-restart", "ssh.service"]))?;
            }
        }
        facts.insert(
            "host_keys".into(),
            if regenerate { "generated" } else { "kept" }.into(),
        );

        // Fingerprints, so the person at the console can check the first SSH login.
        for kind in ["ed25519", "rsa"] {
            let public = ctx.root.path(&format!("{}.pub", key_path(kind)));
            let listed = ctx
                .system
                .run(&Cmd::new("ssh-keygen").arg("-l").arg("-f").arg(&public));
            if let Ok(out) = listed {
                if let Some(print) = out.stdout_text().split_whitespace().nth(1) {
                    facts.insert(format!("ssh_{kind}"), print.to_owned());
                }
            }
        }
        Ok(facts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::appliance::setup::{Answers, Setup};
    use crate::appliance::state::State;
    use crate::appliance::system::FakeSystem;
    use crate::appliance::Root;
    use std::time::Duration;

    fn setup() -> Setup {
        let mut a = Answers::default();
        a.offer("domain", "b.tjxx.jus.br").unwrap();
        a.offer("email", "a@tjxx.jus.br").unwrap();
        a.offer("admin.user", "ana").unwrap();
        Setup::from_answers(&a).unwrap()
    }

    fn touch(root: &Root, path: &str, text: &str, age: Duration) {
        root.write_atomic(path, text.as_bytes(), 0o600).unwrap();
        let file = std::fs::File::options()
            .write(true)
            .open(root.path(path))
            .unwrap();
        file.set_modified(SystemTime::now() - age).unwrap();
    }

    #[test]
    fn image_secrets_are_replaced_and_fresh_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path());
        let hour = Duration::from_secs(3600);
        touch(&root, IMAGE_REFERENCE, "bin", 2 * hour);
        // machine-id from the image (older than the binary), keys: rsa from
        // the image, the others made on this machine.
        touch(
            &root,
            MACHINE_ID,
            "0123456789abcdef0123456789abcdef\n",
            3 * hour,
        );
        touch(&root, "/etc/ssh/ssh_host_rsa_key", "old", 3 * hour);
        touch(&root, "/etc/ssh/ssh_host_rsa_key.pub", "old", 3 * hour);
        for kind in ["ecdsa", "ed25519"] {
            touch(&root, &key_path(kind), "new", Duration::ZERO);
            touch(
                &root,
                &format!("{}.pub", key_path(kind)),
                "new",
                Duration::ZERO,
            );
        }
        let fake = FakeSystem::new();
        fake.reply("ssh-keygen -l", "256 SHA256:abc root@b (ED25519)\n", true);
        let (setup, state) = (setup(), State::default());
        let ctx = Context {
            root: &root,
            system: &fake,
            setup: &setup,
            state: &state,
        };

        let facts = Secrets.apply(&ctx).unwrap();
        assert_eq!(facts["machine_id"], "generated");
        assert_eq!(facts["host_keys"], "generated");
        assert_eq!(facts["ssh_ed25519"], "SHA256:abc");
        let id = root.read_optional(MACHINE_ID).unwrap().unwrap();
        assert!(valid_machine_id(&id) && id.trim() != "0123456789abcdef0123456789abcdef");
        let commands = fake.commands();
        assert_eq!(
            commands[0],
            format!("ssh-keygen -A -f {}", dir.path().display())
        );
        // Only the image's key was removed for ssh-keygen -A to remake.
        assert!(!root.exists("/etc/ssh/ssh_host_rsa_key"));
        assert!(root.exists("/etc/ssh/ssh_host_ed25519_key"));
        // ssh-keygen -A is faked here: the keys are not there, so not done.
        assert!(!Secrets.is_done(&ctx).unwrap());
    }

    #[test]
    fn fresh_secrets_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path());
        touch(&root, IMAGE_REFERENCE, "bin", Duration::from_secs(3600));
        touch(
            &root,
            MACHINE_ID,
            "0123456789abcdef0123456789abcdef\n",
            Duration::ZERO,
        );
        for kind in HOST_KEY_TYPES {
            touch(&root, &key_path(kind), "k", Duration::ZERO);
            touch(
                &root,
                &format!("{}.pub", key_path(kind)),
                "k",
                Duration::ZERO,
            );
        }
        let fake = FakeSystem::new();
        let (setup, state) = (setup(), State::default());
        let ctx = Context {
            root: &root,
            system: &fake,
            setup: &setup,
            state: &state,
        };
        assert!(Secrets.is_done(&ctx).unwrap());
        let facts = Secrets.apply(&ctx).unwrap();
        assert_eq!(facts["machine_id"], "kept");
        assert_eq!(facts["host_keys"], "kept");
        assert!(fake
            .commands()
            .iter()
            .all(|c| c.starts_with("ssh-keygen -l")));
        let id = root.read_optional(MACHINE_ID).unwrap().unwrap();
        assert_eq!(id, "0123456789abcdef0123456789abcdef\n");
    }

    #[test]
    fn empty_machine_id_is_filled() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path());
        touch(&root, MACHINE_ID, "", Duration::ZERO);
        let fake = FakeSystem::new();
        let (setup, state) = (setup(), State::default());
        let ctx = Context {
            root: &root,
            system: &fake,
            setup: &setup,
            state: &state,
        };
        Secrets.apply(&ctx).unwrap();
        assert!(valid_machine_id(
            &root.read_optional(MACHINE_ID).unwrap().unwrap()
        ));
    }
}
