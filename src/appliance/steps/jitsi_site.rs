//! `jitsi-site`: the Balcão units page at `https://DOMAIN/`, beside Jitsi's
//! rooms. jitsi-meet-web-config generates the nginx site per domain at
//! install time, so the image cannot ship it; this step adds one
//! `include /etc/nginx/balcao/units.conf;` line to the site's HTTPS server
//! block (the included file comes with the appliance overlay) and keeps the
//! edit only when `nginx -t` accepts the whole configuration. It also renders
//! the page once (`balcaoctl units render`), so the address shows the page,
//! an empty list at first, rather than an error.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::jitsi_common::{in_scope, out_of_scope_facts, request_restart};
use super::{Context, Facts, Step, StepError};
use crate::appliance::Lang;
use crate::command::{Cmd, CommandError};
use crate::units;

/// Shipped by overlays/appliance: the `location`s of the units page.
pub const UNITS_CONF: &str = "/etc/nginx/balcao/units.conf";
/// nginx's main configuration.
pub const NGINX_CONF: &str = "/etc/nginx/nginx.conf";

/// The site jitsi-meet-web-config writes for `domain`.
pub fn site_path(domain: &str) -> String {
    format!("/etc/nginx/sites-available/{domain}.conf")
}

/// The site text with `include INCLUDE;` as the first line of the server
/// block that listens on 443 (after its `server_name`, where a reader looks).
/// Already there: the text unchanged. No such block: `None`.
pub fn add_include(text: &str, include: &str) -> Option<String> {
    let line = format!("include {include};");
    let lines: Vec<&str> = text.lines().collect();

    // Each top-level `server {` block: its first and last line.
    let mut blocks = Vec::new();
    let mut depth = 0usize;
    let mut start = None;
    for (i, raw) in lines.iter().enumerate() {
        let code = raw.split('#').next().unwrap_or("");
        if depth == 0 && code.trim_start().starts_with("server") && code.contains('{') {
            start = Some(i);
        }
        depth += code.matches('{').count();
        depth = depth.saturating_sub(code.matches('}').count());
        if depth == 0 {
            if let Some(s) = start.take() {
                blocks.push((s, i));
            }
        }
    }

    let (first, last) = blocks.into_iter().find(|(s, e)| {
        lines[*s..=*e].iter().any(|l| {
            let code = l.split('#').next().unwrap_or("").trim();
            code.starts_with("listen") && code.split_whitespace().any(|w| w.ends_with("443"))
        })
    })?;
    if lines[first..=last].iter().any(|l| l.trim() == line) {
        return Some(text.to_owned());
    }
    let at = (first..=last)
        .find(|&i| lines[i].trim_start().starts_with("server_name"))
        .unwrap_or(first);
    let indent = "    ";
    let mut out: Vec<String> = lines.iter().map(|l| (*l).to_owned()).collect();
    out.insert(
        at + 1,
        format!("{indent}# Balcão Virtual: the units page at / and /units.json"),
    );
    out.insert(at + 2, format!("{indent}{line}"));
    let mut joined = out.join("\n");
    if text.ends_with('\n') {
        joined.push('\n');
    }
    Some(joined)
}

/// `nginx -t` on the configuration under `conf` (the real path on `/`).
pub fn nginx_test(conf: &Path) -> Cmd {
    Cmd::new("nginx").arg("-t").arg("-q").arg("-c").arg(conf)
}

pub struct JitsiSite;

impl JitsiSite {
    fn page_path() -> String {
        format!("{}/{}", units::WWW_DIR, units::page::PAGE_FILE)
    }
}

impl Step for JitsiSite {
    fn name(&self) -> &'static str {
        "jitsi-site"
    }

    fn title(&self, lang: Lang) -> &'static str {
        lang.t(
            "Página das unidades no endereço principal",
            "Units page at the main address",
        )
    }

    fn is_done(&self, ctx: &Context) -> Result<bool, StepError> {
        if !in_scope(ctx)? {
            return Ok(true);
        }
        let site = ctx
            .root
            .read_optional(&site_path(&ctx.setup.domain))?
            .unwrap_or_default();
        let included = add_include(&site, UNITS_CONF).is_some_and(|new| new == site);
        Ok(included && ctx.root.exists(UNITS_CONF) && ctx.root.exists(&Self::page_path()))
    }

    fn apply(&self, ctx: &Context) -> Result<Facts, StepError> {
        if !in_scope(ctx)? {
            return Ok(out_of_scope_facts());
        }
        let path = site_path(&ctx.setup.domain);
        if !ctx.root.exists(UNITS_CONF) {
            return Err(StepError::Check(format!(
                "{UNITS_CONF} não está na imagem (vem de overlays/appliance); gere a imagem de novo"
            )));
        }
        let Some(site) = ctx.root.read_optional(&path)? else {
            return Err(StepError::Check(format!(
                "{path} não existe: o jitsi-meet-web-config não gerou o site do nginx para {}; \
                 veja /var/log/apt/term.log",
                ctx.setup.domain
            )));
        };
        let Some(new) = add_include(&site, UNITS_CONF) else {
            return Err(StepError::Check(format!(
                "{path} não tem um bloco `server` que escute na porta 443; o site do Jitsi \
                 mudou de forma, e a página das unidades não foi ligada"
            )));
        };

        // nginx checks the configuration as installed, so the new site goes
        // in place first and the old one comes back if nginx refuses it.
        if new != site {
            ctx.root.write_atomic(&path, new.as_bytes(), 0o644)?;
            match ctx.system.run(&nginx_test(&ctx.root.path(NGINX_CONF))) {
                Ok(_) => request_restart(ctx.root, &["nginx"])?,
                Err(e) => {
                    ctx.root.write_atomic(&path, site.as_bytes(), 0o644)?;
                    let said = match e {
                        CommandError::Failed { output, .. } => output,
                        other => other.to_string(),
                    };
                    return Err(StepError::Check(format!(
                        "o nginx recusou {path} com a linha `include {UNITS_CONF};`, então o \
                         arquivo anterior foi mantido. O nginx disse:\n{said}"
                    )));
                }
            }
        }

        // The page, once: later renders are `balcaoctl units` commands.
        if !ctx.root.exists(&Self::page_path()) {
            let file = units::load(&ctx.root.path(units::UNITS_FILE))
                .map_err(|e| StepError::Check(e.to_string()))?;
            let now =
                units::cli::parse_now(None, &file).map_err(|e| StepError::Check(e.to_string()))?;
            let www = ctx.root.path(units::WWW_DIR);
            units::page::write_site(&file, now, &www)
                .map_err(|e| StepError::Check(e.to_string()))?;
            // nginx runs as www-data: the folder must be open to it whatever
            // the umask was.
            std::fs::set_permissions(&www, std::fs::Permissions::from_mode(0o755)).map_err(
                |source| crate::appliance::root::FileError::Write {
                    path: www.clone(),
                    source,
                },
            )?;
        }
        Ok([("page".to_owned(), format!("https://{}/", ctx.setup.domain))].into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SITE: &str = "server_names_hash_bucket_size 64;\nserver {\n    listen 80;\n    server_name a.org;\n    location / {\n        return 301 https://$host$request_uri;\n    }\n}\nserver {\n    listen 443 ssl http2;\n    listen [::]:443 ssl http2;\n    server_name a.org;\n    location = /config.js {\n        alias /etc/jitsi/meet/a.org-config.js;\n    }\n}\n";

    #[test]
    fn include_goes_into_the_https_block_once() {
        let new = add_include(SITE, UNITS_CONF).unwrap();
        let at = new.find("include /etc/nginx/balcao/units.conf;").unwrap();
        assert!(at > new.find("listen 443").unwrap(), "{new}");
        assert!(at < new.find("location = /config.js").unwrap(), "{new}");
        assert_eq!(new.matches("include /etc/nginx/balcao").count(), 1);
        assert_eq!(add_include(&new, UNITS_CONF).unwrap(), new);
        assert!(add_include("server {\n listen 80;\n}\n", UNITS_CONF).is_none());
    }
}
