//! `jitsi-install`: installs Jitsi offline from the flat repository the image
//! builder left in `/var/lib/balcao/jitsi-repo/` (the .debs and a `Packages`
//! index, checked against the pinned key and the lockfile at build time, so
//! the source is marked `trusted=yes`). apt sees only that source, both for
//! `update` and for `install`: every Debian dependency is already in the
//! image, and a dependency missing from it ends in a clear error instead of
//! a download attempt on a machine that may have no internet.
//!
//! Once the packages are installed the secrets preseeded by `jitsi-preseed`
//! are emptied in debconf with `SET QUESTION` and no value (what `db_set Q ""`
//! does), through `debconf-communicate` on standard input. They live on in
//! the files the packages wrote (jvb.conf, jicofo.conf, the prosody host
//! file, turnserver.conf), which is where Jitsi reads them. Emptying, not
//! `PURGE`: a purge drops every question of the package, the domain
//! included, and Jitsi's maintainer scripts read `jvb-hostname` back on
//! upgrade to find their files. An empty secret at upgrade time makes those
//! scripts draw a new random one for debconf only; they write secrets into
//! the configuration files only when they create them. debconf's backup
//! copies (`*.dat-old`) that still hold a secret are removed as well.

use std::collections::BTreeSet;

use super::jitsi_common::{
    in_scope, missing_packages, out_of_scope_facts, LOCAL_INDEX, LOCAL_LIST, LOCAL_REPO, REQUESTED,
};
use super::jitsi_preseed::{debconf_get, SECRETS};
use super::{Context, Facts, Step, StepError};
use crate::appliance::Lang;
use crate::command::{Cmd, CommandError};

/// debconf's backups of its databases (Debian's /etc/debconf.conf; the
/// passwords database is configured without one, checked all the same).
pub const DEBCONF_BACKUPS: &[&str] = &[
    "/var/cache/debconf/config.dat-old",
    "/var/cache/debconf/passwords.dat-old",
];

/// The apt source line for the local repository at `repo` (a flat
/// repository: the `./` suite, no component).
pub fn list_line(repo: &str) -> String {
    format!("deb [trusted=yes] file:{repo} ./\n")
}

/// apt options that make `list` the only source, and keep the package lists
/// of the other sources (the image's Debian lists) instead of deleting them.
pub fn apt_source_options(list: &str) -> Vec<String> {
    [
        format!("Dir::Etc::sourcelist={list}"),
        "Dir::Etc::sourceparts=-".to_owned(),
        "APT::Get::List-Cleanup=0".to_owned(),
    ]
    .into_iter()
    .flat_map(|option| ["-o".to_owned(), option])
    .collect()
}

/// `apt-get [source options] ARGS` with no question asked.
fn apt_get(list: &str, args: &[&str]) -> Cmd {
    Cmd::new("apt-get")
        .args(apt_source_options(list))
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .env("APT_LISTCHANGES_FRONTEND", "none")
}

/// The install command: Jitsi and the TURN package, no recommends, keeping
/// any configuration file already on disk.
pub fn install_args(simulate: bool) -> Vec<&'static str> {
    let mut args = vec![
        "-o",
        "Dpkg::Options::=--force-confdef",
        "-o",
        "Dpkg::Options::=--force-confold",
    ];
    if simulate {
        args.push("--simulate");
    }
    args.extend(["install", "-y", "--no-install-recommends"]);
    args.extend(REQUESTED);
    args
}

/// `apt-get --simulate install ...`, with apt's standard error folded into
/// its output: apt prints the unmet dependencies on standard output and only
/// its last complaint on standard error, and the error should name them.
pub fn simulate_cmd(list: &str) -> Cmd {
    Cmd::new("sh")
        .args(["-c", "exec apt-get \"$@\" 2>&1", "apt-get"])
        .args(apt_source_options(list))
        .args(install_args(true))
        .env("DEBIAN_FRONTEND", "noninteractive")
}

/// Package names in a `Packages` index.
pub fn index_packages(index: &str) -> BTreeSet<String> {
    index
        .lines()
        .filter_map(|line| line.strip_prefix("Package:"))
        .map(|name| name.trim().to_owned())
        .collect()
}

/// Packages `apt-get --simulate install` would install (its `Inst` lines).
pub fn simulated_installs(output: &str) -> Vec<String> {
    output
        .lines()
        .filter_map(|line| line.strip_prefix("Inst "))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

pub struct JitsiInstall;

impl JitsiInstall {
    fn list_path(ctx: &Context) -> String {
        ctx.root.path(LOCAL_LIST).display().to_string()
    }

    /// The secret questions debconf still holds a value for, with the values
    /// (kept in memory only, to find them in debconf's backup files).
    fn secrets_left(ctx: &Context) -> Result<Vec<(&'static str, String)>, StepError> {
        let mut left = Vec::new();
        for question in SECRETS {
            let value = debconf_get(ctx.system, question.name)?.unwrap_or_default();
            if !value.is_empty() {
                left.push((question.name, value));
            }
        }
        Ok(left)
    }

    /// debconf keeps the previous version of each database as `*.dat-old`
    /// (config.dat-old is world-readable like config.dat), so right after
    /// the secrets are emptied the backup still holds them. A backup that
    /// holds one is removed; debconf writes a new one on its next change.
    fn remove_backups_with(ctx: &Context, secrets: &[String]) -> Result<(), StepError> {
        for backup in DEBCONF_BACKUPS {
            let Some(text) = ctx.root.read_optional(backup)? else {
                continue;
            };
            if secrets.iter().any(|s| text.contains(s.as_str())) {
                ctx.root.remove(backup)?;
            }
        }
        Ok(())
    }

    /// What the install would bring in, checked against the local index.
    fn simulate(&self, ctx: &Context, local: &BTreeSet<String>) -> Result<usize, StepError> {
        let list = Self::list_path(ctx);
        let out = match ctx.system.run(&simulate_cmd(&list)) {
            Ok(out) => out,
            Err(CommandError::Failed { output, .. }) => {
                return Err(StepError::Check(format!(
                    "o apt não consegue instalar o Jitsi só com o que está na imagem: falta alguma \
                     dependência do Debian, e a instalação na primeira inicialização é offline. \
                     Gere a imagem de novo (o construtor instala as dependências e confere o \
                     repositório local {LOCAL_REPO}). O apt disse:\n{output}"
                )))
            }
            Err(e) => return Err(e.into()),
        };
        let wanted = simulated_installs(&out.stdout_text());
        let foreign: Vec<&String> = wanted.iter().filter(|p| !local.contains(*p)).collect();
        if !foreign.is_empty() {
            return Err(StepError::Check(format!(
                "o apt quer baixar pacotes que não estão no repositório local {LOCAL_REPO}: {}; \
                 a primeira inicialização não usa a internet. Gere a imagem de novo com esses \
                 pacotes instalados",
                foreign
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        Ok(wanted.len())
    }
}

impl Step for JitsiInstall {
    fn name(&self) -> &'static str {
        "jitsi-install"
    }

    fn title(&self, lang: Lang) -> &'static str {
        lang.t(
            "Instalação do Jitsi (offline, do repositório da imagem)",
            "Jitsi install (offline, from the image's repository)",
        )
    }

    fn is_done(&self, ctx: &Context) -> Result<bool, StepError> {
        if !in_scope(ctx)? {
            return Ok(true);
        }
        let list = ctx.root.read_optional(LOCAL_LIST)?;
        Ok(missing_packages(ctx.root)?.is_empty()
            && list.as_deref() == Some(list_line(LOCAL_REPO).as_str())
            && Self::secrets_left(ctx)?.is_empty())
    }

    fn apply(&self, ctx: &Context) -> Result<Facts, StepError> {
        if !in_scope(ctx)? {
            return Ok(out_of_scope_facts());
        }
        let mut facts = Facts::new();

        let line = list_line(LOCAL_REPO);
        if ctx.root.read_optional(LOCAL_LIST)?.as_deref() != Some(line.as_str()) {
            ctx.root.write_atomic(LOCAL_LIST, line.as_bytes(), 0o644)?;
        }

        let missing = missing_packages(ctx.root)?;
        if !missing.is_empty() {
            let Some(index) = ctx.root.read_optional(LOCAL_INDEX)? else {
                return Err(StepError::Check(format!(
                    "a imagem não traz o repositório local do Jitsi ({LOCAL_INDEX} não existe) e \
                     faltam os pacotes {}; a primeira inicialização não baixa nada da internet. \
                     Gere a imagem com uma receita que inclua o Jitsi",
                    missing.join(", ")
                )));
            };
            let local = index_packages(&index);
            let list = Self::list_path(ctx);

            ctx.system.run(&apt_get(&list, &["update"]))?;
            // A power loss in the middle of dpkg leaves packages half
            // configured; apt refuses to go on until this is run.
            ctx.system.run(
                &Cmd::new("dpkg")
                    .args(["--configure", "-a"])
                    .env("DEBIAN_FRONTEND", "noninteractive"),
            )?;
            let count = self.simulate(ctx, &local)?;
            ctx.system.run(&apt_get(&list, &install_args(false)))?;
            let still = missing_packages(ctx.root)?;
            if !still.is_empty() {
                return Err(StepError::Check(format!(
                    "o apt terminou mas o dpkg não registra como instalados: {}; veja \
                     /var/log/apt/term.log e rode `balcaoctl firstboot` de novo",
                    still.join(", ")
                )));
            }
            facts.insert("installed".into(), count.to_string());
        }

        let left = Self::secrets_left(ctx)?;
        if !left.is_empty() {
            let text: String = left
                .iter()
                .map(|(name, _)| format!("SET {name} \n"))
                .collect();
            ctx.system
                .run(&Cmd::new("debconf-communicate").stdin(text))
                .map_err(|e| match e {
                    CommandError::Failed {
                        command, status, ..
                    } => StepError::Check(format!(
                        "`{command}` falhou ({status}) ao apagar os segredos do debconf; rode \
                         `balcaoctl firstboot` de novo quando nenhum apt ou dpkg estiver rodando"
                    )),
                    other => other.into(),
                })?;
            let values: Vec<String> = left.into_iter().map(|(_, value)| value).collect();
            Self::remove_backups_with(ctx, &values)?;
        }
        facts.insert("debconf_secrets".into(), "apagados".into());
        Ok(facts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apt_configuration_text() {
        assert_eq!(
            list_line("/var/lib/balcao/jitsi-repo"),
            "deb [trusted=yes] file:/var/lib/balcao/jitsi-repo ./\n"
        );
        assert_eq!(
            apt_source_options("/etc/apt/sources.list.d/balcao-jitsi-local.list").join(" "),
            "-o Dir::Etc::sourcelist=/etc/apt/sources.list.d/balcao-jitsi-local.list \
             -o Dir::Etc::sourceparts=- -o APT::Get::List-Cleanup=0"
        );
        assert_eq!(
            install_args(false).join(" "),
            "-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
             install -y --no-install-recommends jitsi-meet jitsi-meet-turnserver"
        );
    }

    #[test]
    fn simulation_lines_are_read() {
        let out = "NOTE: This is only a simulation!\nInst jicofo (1.0.0+standin1 local [all])\nInst jitsi-meet (2.0.0+standin1 local [all])\nConf jicofo (1.0.0+standin1 local [all])\n";
        assert_eq!(simulated_installs(out), ["jicofo", "jitsi-meet"]);
        let index = "Package: jicofo\nVersion: 1\n\nPackage: jitsi-meet\n";
        assert!(index_packages(index).contains("jitsi-meet"));
    }
}
