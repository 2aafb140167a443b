//! The prosody host file edit (`/etc/prosody/conf.avail/DOMAIN.cfg.lua`):
//! the main host logs staff in with `internal_hashed`, and a
//! `VirtualHost "guest.DOMAIN"` lets guests in with `jitsi-anonymous`.
//!
//! The file is Lua, read by prosody as a list of sections: the global part,
//! then one section per `VirtualHost "name"` or `Component "name" "module"`
//! line, each running until the next such line. The edit works on those
//! sections line by line and leaves every other line as written. Lines inside
//! `--[[ ... ]]` block comments are not recognised as such; Jitsi's template
//! has none.

use super::{indent_of, join_lines, Domain, JitsiError};

/// The comment jitsi-meet-tokens looks for on the main host's
/// `authentication` line (jitsi-meet-prosody's template carries it).
const KEEP_MARK: &str = "-- do not delete me";

/// One section of the host file: its header line (None for the global part)
/// and the range of lines it covers, header included.
struct Section {
    kind: Option<&'static str>,
    name: String,
    start: usize,
    end: usize,
}

/// `VirtualHost "x"` / `Component "x" "muc"` (or with parentheses or single
/// quotes) -> ("VirtualHost", "x").
fn header(line: &str) -> Option<(&'static str, String)> {
    let trimmed = line.trim_start();
    let (kind, rest) = ["VirtualHost", "Component"]
        .into_iter()
        .find_map(|kind| trimmed.strip_prefix(kind).map(|rest| (kind, rest)))?;
    let rest = rest.trim_start();
    let rest = rest.strip_prefix('(').unwrap_or(rest).trim_start();
    let quote = rest.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let body = &rest[1..];
    let end = body.find(quote)?;
    Some((kind, body[..end].to_owned()))
}

fn sections(lines: &[String]) -> Vec<Section> {
    let mut found = vec![Section {
        kind: None,
        name: String::new(),
        start: 0,
        end: lines.len(),
    }];
    for (i, line) in lines.iter().enumerate() {
        if let Some((kind, name)) = header(line) {
            if let Some(last) = found.last_mut() {
                last.end = i;
            }
            found.push(Section {
                kind: Some(kind),
                name,
                start: i,
                end: lines.len(),
            });
        }
    }
    found
}

fn find_host(lines: &[String], host: &str) -> Option<Section> {
    sections(lines)
        .into_iter()
        .find(|s| s.kind == Some("VirtualHost") && s.name == host)
}

/// The key an option line sets (`  key = value -- note` -> `key`), if any.
fn option_key(line: &str) -> Option<&str> {
    let trimmed = line.trim_start();
    if trimmed.starts_with("--") {
        return None;
    }
    let key_end = trimmed
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(trimmed.len());
    let (key, rest) = trimmed.split_at(key_end);
    (!key.is_empty() && rest.trim_start().starts_with('=') && !rest.trim_start().starts_with("=="))
        .then_some(key)
}

/// The trailing `-- comment` of an option line, if any (not inside a string).
fn trailing_comment(line: &str) -> Option<&str> {
    let mut quote: Option<char> = None;
    let mut chars = line.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match quote {
            Some(_) if c == '\\' => {
                chars.next();
            }
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c == '-' && line[i..].starts_with("--") => return Some(&line[i..]),
            None => {}
        }
    }
    None
}

/// Sets `key = value` inside the section: rewrites the first line setting the
/// key (keeping its indentation and trailing comment, or `comment` when it
/// has none), or adds the line right after the section's header.
fn set_option(
    lines: &mut Vec<String>,
    section: &Section,
    key: &str,
    value: &str,
    comment: Option<&str>,
) {
    let existing = (section.start + 1..section.end).find(|&i| option_key(&lines[i]) == Some(key));
    match existing {
        Some(i) => {
            let line = &lines[i];
            let note = trailing_comment(line).or(comment);
            let mut new = format!("{}{key} = {value}", indent_of(line));
            if let Some(note) = note {
                new.push(' ');
                new.push_str(note);
            }
            lines[i] = new;
        }
        None => {
            let indent = (section.start + 1..section.end)
                .map(|i| &lines[i])
                .find(|l| !l.trim().is_empty())
                .map(|l| indent_of(l))
                .filter(|ind| !ind.is_empty())
                .unwrap_or("    ")
                .to_owned();
            let mut new = format!("{indent}{key} = {value}");
            if let Some(note) = comment {
                new.push(' ');
                new.push_str(note);
            }
            lines.insert(section.start + 1, new);
        }
    }
}

/// Staff-only room creation on the main host and anonymous guests on
/// guest.DOMAIN.
pub(super) fn secure_domain(text: &str, domain: &Domain) -> Result<String, JitsiError> {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();

    let main = find_host(&lines, domain.as_str()).ok_or_else(|| JitsiError::NotGenerated {
        what: "the prosody host file",
        detail: format!("it has no `VirtualHost \"{domain}\"` section"),
    })?;
    set_option(
        &mut lines,
        &main,
        "authentication",
        "\"internal_hashed\"",
        Some(KEEP_MARK),
    );

    // Re-read the sections: the edit above may have added a line.
    let guest_name = domain.guest();
    match find_host(&lines, &guest_name) {
        Some(guest) => {
            set_option(&mut lines, &guest, "c2s_require_encryption", "false", None);
            set_option(
                &mut lines,
                &guest,
                "authentication",
                "\"jitsi-anonymous\"",
                None,
            );
        }
        None => {
            while lines.last().is_some_and(|l| l.trim().is_empty()) {
                lines.pop();
            }
            lines.extend([
                String::new(),
                "-- Guests (citizens, lawyers) join without an account once staff have opened the room."
                    .to_owned(),
                format!("VirtualHost \"{guest_name}\""),
                "    authentication = \"jitsi-anonymous\"".to_owned(),
                "    c2s_require_encryption = false".to_owned(),
            ]);
        }
    }

    Ok(join_lines(&lines, text))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"plugin_paths = { "/usr/share/jitsi-meet/prosody-plugins/" }

VirtualHost "meet.example.org"
    authentication = "jitsi-anonymous" -- do not delete me
    -- and authentication above is switched to "token"
    c2s_require_encryption = false

Component "conference.meet.example.org" "muc"
    restrict_room_creation = true

VirtualHost "auth.meet.example.org"
    authentication = "internal_hashed"
"#;

    fn domain() -> Domain {
        Domain::parse("meet.example.org").unwrap()
    }

    #[test]
    fn main_host_keeps_its_comment_and_others_are_untouched() {
        let out = secure_domain(SAMPLE, &domain()).unwrap();
        assert!(out.contains(
            "VirtualHost \"meet.example.org\"\n    authentication = \"internal_hashed\" -- do not delete me\n"
        ));
        assert!(out.contains("    -- and authentication above is switched to \"token\"\n"));
        assert!(out.contains(
            "VirtualHost \"auth.meet.example.org\"\n    authentication = \"internal_hashed\"\n"
        ));
        assert!(out.ends_with(
            "VirtualHost \"guest.meet.example.org\"\n    authentication = \"jitsi-anonymous\"\n    c2s_require_encryption = false\n"
        ));
        assert_eq!(secure_domain(&out, &domain()).unwrap(), out);
    }

    #[test]
    fn existing_guest_host_is_corrected_not_duplicated() {
        let text = format!(
            "{SAMPLE}\nVirtualHost 'guest.meet.example.org'\n  authentication = \"anonymous\"\n  c2s_require_encryption = true\n"
        );
        let out = secure_domain(&text, &domain()).unwrap();
        assert_eq!(out.matches("guest.meet.example.org").count(), 1, "{out}");
        assert!(out.contains(
            "  authentication = \"jitsi-anonymous\"\n  c2s_require_encryption = false\n"
        ));
        assert_eq!(secure_domain(&out, &domain()).unwrap(), out);
    }

    #[test]
    fn missing_authentication_line_is_added_with_the_mark() {
        let text = "VirtualHost \"meet.example.org\"\n    modules_enabled = { \"bosh\" }\n";
        let out = secure_domain(text, &domain()).unwrap();
        assert!(out.starts_with(
            "VirtualHost \"meet.example.org\"\n    authentication = \"internal_hashed\" -- do not delete me\n"
        ));
    }

    #[test]
    fn file_for_another_domain_is_refused() {
        let err = secure_domain(SAMPLE, &Domain::parse("other.org").unwrap()).unwrap_err();
        assert!(
            err.to_string().contains("VirtualHost \"other.org\""),
            "{err}"
        );
    }

    #[test]
    fn comments_and_strings_are_told_apart() {
        assert_eq!(trailing_comment(r#"a = "x -- y" -- z"#), Some("-- z"));
        assert_eq!(trailing_comment(r#"a = "x -- y""#), None);
        assert_eq!(option_key("  -- authentication = 1"), None);
        assert_eq!(option_key("  authentication= 1"), Some("authentication"));
        assert_eq!(option_key("  authentication == 1"), None);
        assert_eq!(header(" Component \"a.b\" \"muc\"").unwrap().1, "a.b");
        assert!(header("-- VirtualHost \"a\"").is_none());
    }
}
