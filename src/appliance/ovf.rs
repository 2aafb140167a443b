//! VMware OVF properties: when the OVA is deployed through vCenter, the values
//! typed in the deploy wizard reach the guest as the OVF environment, an XML
//! document read with `vmtoolsd --cmd "info-get guestinfo.ovfEnv"`
//! (open-vm-tools). Each `<Property oe:key=... oe:value=...>` whose key is one
//! of `answers::QUESTIONS`' `ovf_key`s becomes an answer. Elsewhere (no
//! VMware, no vCenter) the command fails or prints nothing and there are no
//! OVF answers.

use std::collections::BTreeMap;

use super::setup::{Answers, Problem, Source};
use super::System;
use crate::answers::QUESTIONS;
use crate::command::Cmd;

/// The open-vm-tools program that reads guestinfo.
pub const VMTOOLSD: &str = "vmtoolsd";

/// Reads the OVF environment from guestinfo; `None` when there is none.
/// Never fails: a missing VMware environment is the common case.
pub fn fetch(system: &dyn System) -> Option<String> {
    if !system.has_program(VMTOOLSD) {
        return None;
    }
    let cmd = Cmd::new(VMTOOLSD).args(["--cmd", "info-get guestinfo.ovfEnv"]);
    match system.run(&cmd) {
        Ok(out) => {
            let text = out.stdout_text();
            (!text.trim().is_empty()).then_some(text)
        }
        Err(e) => {
            tracing::debug!("sem ambiente OVF: {e}");
            None
        }
    }
}

/// Every `key -> value` pair of the environment's `<Property>` elements.
pub fn properties(xml: &str) -> BTreeMap<String, String> {
    let mut found = BTreeMap::new();
    let mut rest = xml;
    while let Some(start) = find_element(rest, "Property") {
        let after = &rest[start..];
        let end = after.find('>').unwrap_or(after.len());
        let attrs = attributes(&after[..end]);
        if let (Some(key), Some(value)) = (attrs.get("key"), attrs.get("value")) {
            found.insert(key.clone(), value.clone());
        }
        rest = &after[end..];
    }
    found
}

/// The first-boot answers the environment gives, and the values it gives wrongly.
pub fn answers(xml: &str) -> (Answers, Vec<Problem>) {
    let props = properties(xml);
    let mut answers = Answers::default();
    let mut problems = Vec::new();
    for q in QUESTIONS {
        let Some(value) = props.get(q.ovf_key) else {
            continue;
        };
        if let Err(invalid) = answers.offer(q.key, value) {
            problems.push(Problem {
                source: Source::Ovf,
                key: q.ovf_key.to_owned(),
                invalid,
            });
        }
    }
    (answers, problems)
}

/// Offset of the next `<Property` or `<prefix:Property` start tag.
fn find_element(text: &str, name: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = text[from..].find('<') {
        let at = from + i;
        let tag = &text[at + 1..];
        let tag_name: &str = tag
            .split(|c: char| c.is_whitespace() || c == '>' || c == '/')
            .next()
            .unwrap_or("");
        let local = tag_name.rsplit(':').next().unwrap_or("");
        if local == name {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// The attributes of one start tag, by local name (namespace prefix dropped).
fn attributes(tag: &str) -> BTreeMap<String, String> {
    let mut attrs = BTreeMap::new();
    let mut rest = tag;
    while let Some(eq) = rest.find('=') {
        let name = rest[..eq].split_whitespace().last().unwrap_or("");
        let local = name.rsplit(':').next().unwrap_or("").to_owned();
        let after = rest[eq + 1..].trim_start();
        let Some(quote) = after.chars().next().filter(|c| *c == '"' || *c == '\'') else {
            break;
        };
        let body = &after[1..];
        let Some(close) = body.find(quote) else {
            break;
        };
        attrs.insert(local, unescape(&body[..close]));
        rest = &body[close + 1..];
    }
    attrs
}

fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        let Some(semi) = after.find(';') else {
            out.push_str(&rest[amp..]);
            return out;
        };
        let entity = &after[..semi];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix("#x")
                .map(|hex| u32::from_str_radix(hex, 16))
                .or_else(|| entity.strip_prefix('#').map(str::parse))
                .and_then(Result::ok)
                .and_then(char::from_u32),
        };
        match decoded {
            Some(c) => out.push(c),
            None => out.push_str(&rest[amp..amp + semi + 2]),
        }
        rest = &after[semi + 1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::appliance::system::FakeSystem;

    const ENV: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<Environment
     xmlns="http://schemas.dmtf.org/ovf/environment/1"
     xmlns:oe="http://schemas.dmtf.org/ovf/environment/1"
     xmlns:ve="http://www.vmware.com/schema/ovfenv"
     oe:id="" ve:vCenterId="vm-42">
   <PlatformSection>
      <Kind>VMware ESXi</Kind>
   </PlatformSection>
   <PropertySection>
         <Property oe:key="balcao.admin_password" oe:value="s&amp;nha &quot;longa&quot;"/>
         <Property oe:key="balcao.admin_user" oe:value="atendimento"/>
         <Property oe:key="balcao.domain" oe:value="balc&#xE3;o.tjxx.jus.br"/>
         <Property oe:key="balcao.email" oe:value=""/>
         <Property oe:key="balcao.public_ip" oe:value="10.0.0.5"/>
         <Property oe:key='balcao.tls_mode' oe:value='self-signed'/>
         <Property oe:key="other.key" oe:value="x"/>
   </PropertySection>
</Environment>
"#;

    #[test]
    fn properties_are_read_and_unescaped() {
        let props = properties(ENV);
        assert_eq!(props["balcao.admin_password"], "s&nha \"longa\"");
        assert_eq!(props["balcao.domain"], "balcão.tjxx.jus.br");
        assert_eq!(props["balcao.tls_mode"], "self-signed");
        assert_eq!(props.len(), 7);
    }

    #[test]
    fn answers_skip_empty_and_report_bad_values() {
        let (answers, problems) = answers(ENV);
        assert_eq!(answers.get("domain"), Some("xn--balco-dra.tjxx.jus.br"));
        assert_eq!(answers.get("tls.mode"), Some("self-signed"));
        assert_eq!(answers.password().unwrap().expose(), "s&nha \"longa\"");
        assert!(!answers.has("email"));
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].key, "balcao.public_ip");
    }

    #[test]
    fn no_vmware_means_no_answers() {
        let fake = FakeSystem::new();
        fake.reply("vmtoolsd", "No value found", false);
        assert!(fetch(&fake).is_none());
        let fake = FakeSystem::without(&[VMTOOLSD]);
        assert!(fetch(&fake).is_none());
        assert!(fake.commands().is_empty());
        let fake = FakeSystem::new();
        fake.reply("vmtoolsd --cmd", ENV, true);
        assert_eq!(fetch(&fake).as_deref(), Some(ENV));
        assert_eq!(
            fake.commands(),
            ["vmtoolsd --cmd 'info-get guestinfo.ovfEnv'"]
        );
    }
}
