//! The private counter: the prosody host file edit that loads balcao's own
//! prosody module, `mod_balcao_private_rooms`, on the conference component.
//!
//! The module (shipped in the image at [`PLUGIN_DIR`], from
//! overlays/appliance/usr/share/balcao/prosody-plugins/) keeps every room
//! members-only, lets only staff open rooms, refuses guests with
//! `registration-required` until a moderator grants them membership one by
//! one, and takes the membership back when they leave. This edit runs in the
//! first-boot pipeline next to the secure-domain edits, on the same file
//! (`/etc/prosody/conf.avail/DOMAIN.cfg.lua`), and changes three things:
//!
//! - the global `plugin_paths` list gains [`PLUGIN_DIR`], after Jitsi's own
//!   folder;
//! - the `Component "conference.DOMAIN" "muc"` section's `modules_enabled`
//!   list gains [`MODULE`];
//! - that section says `balcao_staff_host = "DOMAIN"`, the host whose
//!   accounts are staff.
//!
//! Like the other host file edits it works line by line on the file's
//! sections and leaves every other line as written, is idempotent, and is
//! installed only when prosody's configuration loader accepts the result.

use super::{indent_of, join_lines, paths, Check, Domain, Edit, JitsiError};

/// Where the image installs balcao's prosody modules.
pub const PLUGIN_DIR: &str = "/usr/share/balcao/prosody-plugins";

/// The module's name as prosody's `modules_enabled` spells it (the file is
/// `mod_balcao_private_rooms.lua`).
pub const MODULE: &str = "balcao_private_rooms";

/// The edit for `domain`'s prosody host file.
pub fn private_rooms_edit(domain: &Domain) -> Edit {
    let d = domain.clone();
    Edit::new(
        paths::prosody_host(domain),
        format!("private rooms: {MODULE} on conference.{domain}, guests admitted one by one"),
        Check::ProsodyConfig,
        move |text| enable_private_rooms(text, &d),
    )
}

/// The host file's text with the module enabled; the same text when it
/// already is.
pub fn enable_private_rooms(text: &str, domain: &Domain) -> Result<String, JitsiError> {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let conference = format!("conference.{domain}");

    // The component first: a file without it is not Jitsi's, and nothing
    // should change then.
    let (start, end) = component(&lines, &conference).ok_or_else(|| JitsiError::NotGenerated {
        what: "the prosody host file",
        detail: format!("it has no `Component \"{conference}\" \"muc\"` section"),
    })?;
    let staff_host = format!("\"{domain}\"");
    match (start + 1..end).find(|&i| option_key(&lines[i]) == Some("balcao_staff_host")) {
        Some(i) => {
            let line = format!("{}balcao_staff_host = {staff_host}", indent_of(&lines[i]));
            lines[i] = line;
        }
        None => {
            let indent = section_indent(&lines, start, end);
            lines.insert(
                start + 1,
                format!("{indent}balcao_staff_host = {staff_host}"),
            );
        }
    }

    let (start, end) = component(&lines, &conference).expect("the component is still there");
    match (start + 1..end).find(|&i| option_key(&lines[i]) == Some("modules_enabled")) {
        Some(i) => add_to_list(&mut lines, i, MODULE, "modules_enabled")?,
        None => {
            let indent = section_indent(&lines, start, end);
            lines.insert(
                start + 1,
                format!("{indent}modules_enabled = {{ \"{MODULE}\"; }}"),
            );
        }
    }

    // plugin_paths is a global option: before the first section header.
    let first_section = lines
        .iter()
        .position(|l| header(l).is_some())
        .unwrap_or(lines.len());
    match (0..first_section).find(|&i| option_key(&lines[i]) == Some("plugin_paths")) {
        Some(i) => add_to_list(&mut lines, i, PLUGIN_DIR, "plugin_paths")?,
        None => lines.insert(0, format!("plugin_paths = {{ \"{PLUGIN_DIR}\" }}")),
    }

    Ok(join_lines(&lines, text))
}

/// `VirtualHost "x"` / `Component "x" "muc"` (with parentheses or single
/// quotes too) -> the quoted name.
fn header(line: &str) -> Option<&str> {
    let trimmed = line.trim_start();
    let rest = ["VirtualHost", "Component"]
        .into_iter()
        .find_map(|kind| trimmed.strip_prefix(kind))?;
    let rest = rest.trim_start();
    let rest = rest.strip_prefix('(').unwrap_or(rest).trim_start();
    let quote = rest.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let body = &rest[1..];
    body.find(quote).map(|end| &body[..end])
}

/// The lines [header, next header) of `Component "name" ...`.
fn component(lines: &[String], name: &str) -> Option<(usize, usize)> {
    let start = lines
        .iter()
        .position(|l| l.trim_start().starts_with("Component") && header(l) == Some(name))?;
    let end = (start + 1..lines.len())
        .find(|&i| header(&lines[i]).is_some())
        .unwrap_or(lines.len());
    Some((start, end))
}

/// The indentation of a section's first non-blank line after its header.
fn section_indent(lines: &[String], start: usize, end: usize) -> String {
    (start + 1..end)
        .map(|i| indent_of(&lines[i]))
        .find(|ind| !ind.is_empty())
        .unwrap_or("    ")
        .to_owned()
}

/// The key an option line sets (`  key = value` -> `key`), if any.
fn option_key(line: &str) -> Option<&str> {
    let trimmed = line.trim_start();
    if trimmed.starts_with("--") {
        return None;
    }
    let end = trimmed
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(trimmed.len());
    let (key, rest) = trimmed.split_at(end);
    let rest = rest.trim_start();
    (!key.is_empty() && rest.starts_with('=') && !rest.starts_with("==")).then_some(key)
}

/// The part of a line before any `--` comment outside strings.
fn code_part(line: &str) -> &str {
    let mut quote: Option<char> = None;
    let mut chars = line.char_indices();
    while let Some((i, c)) = chars.next() {
        match quote {
            Some(_) if c == '\\' => {
                chars.next();
            }
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None if line[i..].starts_with("--") => return &line[..i],
            None => {}
        }
    }
    line
}

/// The quoted strings in a piece of Lua code.
fn strings_in(code: &str) -> Vec<&str> {
    let mut found = Vec::new();
    let mut rest = code;
    while let Some(open) = rest.find(['"', '\'']) {
        let quote = &rest[open..open + 1];
        let body = &rest[open + 1..];
        let Some(close) = body.find(quote) else { break };
        found.push(&body[..close]);
        rest = &body[close + 1..];
    }
    found
}

/// Adds `"value"` to the `key = { ... }` table starting on line `at`, on
/// one line or spread over several (one entry a line, as Jitsi writes
/// `modules_enabled`), unless it is there already. A path matches with or
/// without a trailing slash.
fn add_to_list(
    lines: &mut Vec<String>,
    at: usize,
    value: &str,
    key: &'static str,
) -> Result<(), JitsiError> {
    let not_a_list = |detail: String| JitsiError::NotGenerated {
        what: "the prosody host file",
        detail,
    };
    let open_line = code_part(&lines[at]);
    if !open_line.contains('{') {
        return Err(not_a_list(format!(
            "`{key}` on line {} is not a {{ ... }} list; write it as one and run again",
            at + 1
        )));
    }

    // The table runs until its closing brace.
    let close = (at..lines.len())
        .find(|&i| code_part(&lines[i]).contains('}'))
        .ok_or_else(|| {
            not_a_list(format!(
                "the `{key}` list opened on line {} is never closed",
                at + 1
            ))
        })?;
    let wanted = value.trim_end_matches('/');
    let present = (at..=close)
        .flat_map(|i| strings_in(code_part(&lines[i])))
        .any(|s| s.trim_end_matches('/') == wanted);
    if present {
        return Ok(());
    }

    if close == at {
        // `key = { "a", "b" }` -> `key = { "a", "b", "value" }`
        let line = &lines[at];
        let code = code_part(line);
        let brace = code.rfind('}').expect("the closing brace is on this line");
        let before = code[..brace].trim_end();
        let entry = if before.ends_with('{') || before.ends_with(',') || before.ends_with(';') {
            format!(" \"{value}\" ")
        } else {
            format!(", \"{value}\" ")
        };
        let new = format!("{before}{entry}{}", &line[brace..]);
        lines[at] = new;
        return Ok(());
    }

    // One entry a line: copy the entries' indentation and separator.
    let entries: Vec<usize> = (at + 1..close)
        .filter(|&i| !code_part(&lines[i]).trim().is_empty())
        .collect();
    let separator = entries
        .iter()
        .rev()
        .find_map(|&i| match code_part(&lines[i]).trim_end().chars().last() {
            Some(',') => Some(","),
            Some(';') => Some(";"),
            _ => None,
        })
        .unwrap_or(";");
    let indent = match entries.last() {
        Some(&i) => {
            let code = code_part(&lines[i]).trim_end();
            if !code.ends_with([',', ';']) {
                // The new entry follows it: it needs a separator of its own.
                let fixed = format!("{code}{separator}{}", &lines[i][code.len()..]);
                lines[i] = fixed;
            }
            indent_of(&lines[i]).to_owned()
        }
        None => format!("{}    ", indent_of(&lines[at])),
    };
    lines.insert(close, format!("{indent}\"{value}\"{separator}"));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"plugin_paths = { "/usr/share/jitsi-meet/prosody-plugins/" }

VirtualHost "meet.example.org"
    authentication = "internal_hashed" -- do not delete me
    modules_enabled = {
        "bosh";
        "muc_lobby_rooms";
    }

Component "conference.meet.example.org" "muc"
    restrict_room_creation = true
    storage = "memory"
    modules_enabled = {
        "muc_hide_all";
        "muc_meeting_id";
        "muc_password_whitelist";
    }
    admins = { "focus@auth.meet.example.org" }

Component "lobby.meet.example.org" "muc"
    modules_enabled = {
        "muc_hide_all";
    }
"#;

    fn domain() -> Domain {
        Domain::parse("meet.example.org").unwrap()
    }

    #[test]
    fn module_path_and_staff_host_are_added_once() {
        let out = enable_private_rooms(SAMPLE, &domain()).unwrap();
        assert!(out.starts_with(
            "plugin_paths = { \"/usr/share/jitsi-meet/prosody-plugins/\", \"/usr/share/balcao/prosody-plugins\" }\n"
        ), "{out}");
        assert!(out.contains(
            "Component \"conference.meet.example.org\" \"muc\"\n    balcao_staff_host = \"meet.example.org\"\n    restrict_room_creation = true\n"
        ), "{out}");
        assert!(out.contains(
            "        \"muc_password_whitelist\";\n        \"balcao_private_rooms\";\n    }\n    admins"
        ), "{out}");
        assert_eq!(out.matches("balcao_private_rooms").count(), 1, "{out}");
        // The main host and the lobby component are left as they were.
        assert!(out.contains("        \"muc_lobby_rooms\";\n    }\n\nComponent"));
        assert!(out.ends_with(
            "Component \"lobby.meet.example.org\" \"muc\"\n    modules_enabled = {\n        \"muc_hide_all\";\n    }\n"
        ));
        assert_eq!(enable_private_rooms(&out, &domain()).unwrap(), out);
    }

    #[test]
    fn lists_in_other_shapes() {
        let text = "plugin_paths = {}\nComponent 'conference.meet.example.org' 'muc'\n  modules_enabled = { \"a\", \"b\" } -- ours\n  balcao_staff_host = \"other.org\"\n";
        let out = enable_private_rooms(text, &domain()).unwrap();
        assert_eq!(
            out,
            "plugin_paths = { \"/usr/share/balcao/prosody-plugins\" }\nComponent 'conference.meet.example.org' 'muc'\n  modules_enabled = { \"a\", \"b\", \"balcao_private_rooms\" } -- ours\n  balcao_staff_host = \"meet.example.org\"\n"
        );
        assert_eq!(enable_private_rooms(&out, &domain()).unwrap(), out);

        let text = "plugin_paths = { \"/usr/share/balcao/prosody-plugins/\" }\nComponent \"conference.meet.example.org\" \"muc\"\n    modules_enabled = {\n        \"x\", -- note\n        \"y\" -- last\n    }\n";
        let out = enable_private_rooms(text, &domain()).unwrap();
        assert!(out.starts_with("plugin_paths = { \"/usr/share/balcao/prosody-plugins/\" }\n"));
        assert!(
            out.contains("        \"y\", -- last\n        \"balcao_private_rooms\",\n    }\n"),
            "{out}"
        );
        assert_eq!(enable_private_rooms(&out, &domain()).unwrap(), out);
    }

    #[test]
    fn missing_lists_are_written() {
        let text =
            "VirtualHost \"meet.example.org\"\nComponent \"conference.meet.example.org\" \"muc\"\n";
        let out = enable_private_rooms(text, &domain()).unwrap();
        assert_eq!(
            out,
            "plugin_paths = { \"/usr/share/balcao/prosody-plugins\" }\nVirtualHost \"meet.example.org\"\nComponent \"conference.meet.example.org\" \"muc\"\n    modules_enabled = { \"balcao_private_rooms\"; }\n    balcao_staff_host = \"meet.example.org\"\n"
        );
        assert_eq!(enable_private_rooms(&out, &domain()).unwrap(), out);
    }

    #[test]
    fn a_file_without_the_conference_component_is_refused_untouched() {
        let err = enable_private_rooms("VirtualHost \"meet.example.org\"\n", &domain())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("Component \"conference.meet.example.org\""),
            "{err}"
        );
        let err = enable_private_rooms(
            "Component \"conference.meet.example.org\" \"muc\"\n    modules_enabled = get_modules()\n",
            &domain(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("not a { ... } list"), "{err}");
    }

    #[test]
    fn commented_entries_do_not_count() {
        let text = "Component \"conference.meet.example.org\" \"muc\"\n    modules_enabled = {\n        \"a\";\n        -- \"balcao_private_rooms\";\n    }\n";
        let out = enable_private_rooms(text, &domain()).unwrap();
        assert!(
            out.contains(
                "        -- \"balcao_private_rooms\";\n        \"balcao_private_rooms\";\n    }"
            ),
            "{out}"
        );
    }
}
