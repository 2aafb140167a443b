//! `jitsi-secure`: the secure domain (staff sign in to open a room, everyone
//! else joins as a guest) and the first staff account. The edits are
//! `jitsi::secure_domain_edits` over the files the packages generated, each
//! installed only when its real parser accepts it; they need this machine's
//! address (from `hostname -I`) and, behind NAT, the public address from
//! setup. Then the staff account from setup is created with prosodyctl, the
//! password on its standard input; an account that already exists gets the
//! password instead. When a file changed, the Jitsi services are put on the
//! restart list for `jitsi-health`. The same step enables balcao's
//! private-room module on the conference component (`jitsi::lobby`).

use std::net::IpAddr;

use super::jitsi_common::{in_scope, out_of_scope_facts, request_restart, SERVICES};
use super::{Context, Facts, Step, StepError};
use crate::appliance::jitsi::accounts::StaffJid;
use crate::appliance::jitsi::{secure_domain_edits, Domain, Edit, JitsiError, Outcome};
use crate::appliance::users::{account_exists, prosodyctl_for};
use crate::appliance::Lang;
use crate::command::{Cmd, CommandError};

pub struct JitsiSecure;

fn jitsi(e: JitsiError) -> StepError {
    StepError::Check(e.to_string())
}

/// The first address `hostname -I` prints, IPv4 first: the address the
/// videobridge's NAT mapping starts from.
pub fn local_address(listed: &str) -> Option<IpAddr> {
    let all: Vec<IpAddr> = listed
        .split_whitespace()
        .filter_map(|a| a.parse().ok())
        .filter(|a: &IpAddr| !a.is_loopback())
        .collect();
    all.iter()
        .find(|a| a.is_ipv4())
        .or_else(|| all.first())
        .copied()
}

impl JitsiSecure {
    fn domain(ctx: &Context) -> Result<Domain, StepError> {
        Domain::parse(&ctx.setup.domain).map_err(jitsi)
    }

    fn edits(ctx: &Context) -> Result<Vec<Edit>, StepError> {
        let out = ctx.system.run(&Cmd::new("hostname").arg("-I"))?;
        let local = local_address(&out.stdout_text()).ok_or_else(|| {
            StepError::Check(
                "esta máquina não tem endereço de rede (`hostname -I` vazio); confira a rede \
                 (DHCP ou /etc/systemd/network/) e rode `balcaoctl firstboot` de novo"
                    .to_owned(),
            )
        })?;
        let public = match &ctx.setup.public_ip {
            Some(text) => Some(text.parse::<IpAddr>().map_err(|_| {
                StepError::Check(format!(
                    "network.public_ip `{text}` não é um endereço IP; corrija /etc/balcao/setup.toml"
                ))
            })?),
            None => None,
        };
        let domain = Self::domain(ctx)?;
        let mut edits = secure_domain_edits(&domain, public, local);
        // Counter rooms stay private: guests wait until staff admit them.
        edits.push(crate::appliance::jitsi::lobby::private_rooms_edit(&domain));
        Ok(edits)
    }

    fn edits_in_place(ctx: &Context) -> Result<bool, StepError> {
        for edit in Self::edits(ctx)? {
            let Some(text) = ctx
                .root
                .read_optional(&format!("/{}", edit.path.display()))?
            else {
                return Ok(false);
            };
            if edit.apply(&text).map_err(jitsi)? != text {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

impl Step for JitsiSecure {
    fn name(&self) -> &'static str {
        "jitsi-secure"
    }

    fn title(&self, lang: Lang) -> &'static str {
        lang.t(
            "Salas abertas só pela equipe; primeira conta",
            "Rooms opened by staff only; first account",
        )
    }

    fn is_done(&self, ctx: &Context) -> Result<bool, StepError> {
        if !in_scope(ctx)? {
            return Ok(true);
        }
        let domain = Self::domain(ctx)?;
        Ok(Self::edits_in_place(ctx)? && account_exists(ctx.root, &domain, &ctx.setup.admin_user))
    }

    fn apply(&self, ctx: &Context) -> Result<Facts, StepError> {
        if !in_scope(ctx)? {
            return Ok(out_of_scope_facts());
        }
        let domain = Self::domain(ctx)?;
        let mut facts = Facts::new();

        // Two edits may touch one file (the prosody host file): count files.
        let mut changed = std::collections::BTreeSet::new();
        for edit in Self::edits(ctx)? {
            match edit.apply_at(ctx.root.dir()).map_err(jitsi)? {
                Outcome::Changed => {
                    tracing::info!("{}: {}", edit.path.display(), edit.summary);
                    changed.insert(edit.path.clone());
                }
                Outcome::Unchanged => {}
            }
        }
        let changed = changed.len();
        if changed > 0 {
            request_restart(ctx.root, SERVICES)?;
        }
        facts.insert("files_changed".into(), changed.to_string());

        // The staff account: created, or given the password from setup.
        let user = &ctx.setup.admin_user;
        let jid = StaffJid::new(user, &domain).map_err(jitsi)?;
        let prosodyctl = prosodyctl_for(ctx.root);
        let exists = account_exists(ctx.root, &domain, user);
        match (&ctx.setup.admin_password, exists) {
            (Some(password), false) => {
                let add = prosodyctl
                    .adduser_cmd(&jid, password.expose())
                    .map_err(jitsi)?;
                match ctx.system.run(&add) {
                    Ok(_) => {}
                    // Made since the check (another run): set its password.
                    Err(CommandError::Failed { ref output, .. })
                        if output.contains("already exists") =>
                    {
                        let passwd = prosodyctl
                            .passwd_cmd(&jid, password.expose())
                            .map_err(jitsi)?;
                        ctx.system.run(&passwd)?;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            (Some(password), true) => {
                let passwd = prosodyctl
                    .passwd_cmd(&jid, password.expose())
                    .map_err(jitsi)?;
                ctx.system.run(&passwd)?;
            }
            (None, true) => {}
            (None, false) => {
                return Err(StepError::Check(format!(
                    "a conta {} não existe e não há senha para criá-la (ela sai de \
                     /etc/balcao/setup.toml depois de usada); rode `balcaoctl firstboot \
                     --reconfigure` e digite uma senha, ou crie a conta com `balcaoctl user add {user}`",
                    jid.as_str()
                )));
            }
        }
        facts.insert("staff".into(), jid.as_str().to_owned());
        Ok(facts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_address_prefers_ipv4_and_skips_loopback() {
        assert_eq!(
            local_address("fe80::1 10.0.0.5 172.17.0.1 \n"),
            Some("10.0.0.5".parse().unwrap())
        );
        assert_eq!(
            local_address("2001:db8::5"),
            Some("2001:db8::5".parse().unwrap())
        );
        assert_eq!(local_address("127.0.0.1 \n"), None);
        assert_eq!(local_address(""), None);
    }
}
