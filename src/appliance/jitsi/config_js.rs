//! The web client's configuration edit (`/etc/jitsi/meet/DOMAIN-config.js`):
//! `hosts.anonymousdomain` names the guests' host, so the client joins as a
//! guest and asks for a staff login only to open a room.
//!
//! The file is Jitsi's `config.js` with the domain filled in. The edit finds
//! the `hosts: {` block and sets one line in it, next to the commented-out
//! example the template carries; every other line stays as written.

use super::{indent_of, join_lines, Domain, JitsiError};

/// Whether an uncommented line sets `name:` (plain or quoted key).
fn sets_key(line: &str, name: &str) -> bool {
    let trimmed = line.trim_start();
    [name.to_owned(), format!("'{name}'"), format!("\"{name}\"")]
        .iter()
        .any(|key| {
            trimmed
                .strip_prefix(key.as_str())
                .is_some_and(|rest| rest.trim_start().starts_with(':'))
        })
}

/// Sets `hosts.anonymousdomain` to guest.DOMAIN.
pub(super) fn set_anonymous_domain(text: &str, domain: &Domain) -> Result<String, JitsiError> {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let not_generated = |detail: &str| JitsiError::NotGenerated {
        what: "config.js",
        detail: detail.to_owned(),
    };

    let start = lines
        .iter()
        .position(|l| sets_key(l, "hosts") && l.trim_end().ends_with('{'))
        .ok_or_else(|| not_generated("it has no `hosts: {` block"))?;
    let outer = indent_of(&lines[start]).len();
    let end = (start + 1..lines.len())
        .find(|&i| lines[i].trim_start().starts_with('}') && indent_of(&lines[i]).len() <= outer)
        .ok_or_else(|| not_generated("its `hosts: {` block is never closed"))?;
    let domain_line = (start + 1..end)
        .find(|&i| sets_key(&lines[i], "domain"))
        .ok_or_else(|| not_generated("its hosts block has no `domain:` line"))?;

    let indent = indent_of(&lines[domain_line]).to_owned();
    let wanted = format!("{indent}anonymousdomain: '{}',", domain.guest());
    match (start + 1..end).find(|&i| sets_key(&lines[i], "anonymousdomain")) {
        Some(i) => lines[i] = wanted,
        None => {
            // Right under the template's commented-out example, if it is there.
            let after = (start + 1..end)
                .find(|&i| {
                    lines[i]
                        .trim_start()
                        .strip_prefix("//")
                        .is_some_and(|rest| sets_key(rest, "anonymousdomain"))
                })
                .unwrap_or(domain_line);
            lines.insert(after + 1, wanted);
        }
    }

    Ok(join_lines(&lines, text))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "var config = {\n    hosts: {\n        domain: 'meet.example.org',\n\n        // anonymousdomain: 'guest.example.com',\n\n        muc: 'conference.' + subdomain + 'meet.example.org',\n    },\n    bosh: '/http-bind',\n};\n";

    fn domain() -> Domain {
        Domain::parse("meet.example.org").unwrap()
    }

    #[test]
    fn goes_under_the_commented_example_once() {
        let out = set_anonymous_domain(SAMPLE, &domain()).unwrap();
        assert!(out.contains(
            "        // anonymousdomain: 'guest.example.com',\n        anonymousdomain: 'guest.meet.example.org',\n"
        ));
        assert_eq!(set_anonymous_domain(&out, &domain()).unwrap(), out);
    }

    #[test]
    fn replaces_a_different_value() {
        let text = SAMPLE.replace(
            "// anonymousdomain: 'guest.example.com'",
            "anonymousdomain: 'visitors.example.com'",
        );
        let out = set_anonymous_domain(&text, &domain()).unwrap();
        assert!(!out.contains("visitors"));
        assert_eq!(out.matches("anonymousdomain").count(), 1);
    }

    #[test]
    fn without_hosts_block_it_says_so() {
        let err = set_anonymous_domain("var config = {};\n", &domain()).unwrap_err();
        assert!(err.to_string().contains("hosts: {"), "{err}");
    }
}
