//! The OVF 1.x descriptor inside the OVA, rendered from `appliance.ovf.tera`.
//!
//! One descriptor for VMware (ESXi 7/8, Workstation), VirtualBox 7 and
//! Proxmox: Debian 64-bit guest, SATA (AHCI) disk, E1000 NIC, optional
//! hardware marked `ovf:required="false"`, a firmware hint, and the first-boot
//! questions of [`crate::answers::QUESTIONS`] as ProductSection properties
//! delivered through VMware's guestinfo transport. Labels are Portuguese, with
//! English in a `Strings` bundle that vCenter picks by locale.

use tera::{Context, Tera};

use crate::answers::{Kind, QUESTIONS};

use super::{Appliance, ExportError, Firmware};

const TEMPLATE_NAME: &str = "appliance.ovf";
const TEMPLATE: &str = include_str!("appliance.ovf.tera");

/// `vmw:osType`. `debian12_64Guest` exists only from vSphere 8.0 on, and an
/// ESXi 7 host refuses a guest id it does not know; `debian11_64Guest` exists
/// on both 7 and 8 and gives the same virtual hardware defaults.
pub(super) const VMW_OS_TYPE: &str = "debian11_64Guest";

/// `vssd:VirtualSystemType`: hardware version 14 (ESXi 6.7, Workstation 14)
/// has SATA and UEFI and is accepted by every ESXi 7/8 and Workstation 17.
pub(super) const HARDWARE_FAMILY: &str = "vmx-14";

/// What the descriptor says about the disk file.
pub(super) struct DiskRef<'a> {
    /// The disk's member name in the OVA (`ovf:href`).
    pub href: &'a str,
    /// The member's byte size (`ovf:size`): exactly the file's length.
    pub file_size: u64,
    /// Virtual size in bytes.
    pub capacity: u64,
    /// Bytes of data grains.
    pub populated: u64,
}

#[derive(serde::Serialize)]
struct Property {
    key: &'static str,
    default: &'static str,
    password: bool,
    qualifiers: String,
    label_pt: &'static str,
    label_en: &'static str,
    help_pt: &'static str,
    help_en: &'static str,
}

/// The descriptor's text.
pub(super) fn render(appliance: &Appliance, disk: &DiskRef<'_>) -> Result<String, ExportError> {
    let mut tera = Tera::default();
    tera.add_raw_template(TEMPLATE_NAME, TEMPLATE)
        .map_err(|e| ExportError::Template(error_chain(&e)))?;
    tera.autoescape_on(vec![TEMPLATE_NAME]);
    tera.set_escape_fn(escape_xml);

    let (capacity, capacity_units) = capacity_in_units(disk.capacity);
    let mut ctx = Context::new();
    ctx.insert("disk_href", disk.href);
    ctx.insert("disk_file_size", &disk.file_size);
    ctx.insert("capacity", &capacity);
    ctx.insert("capacity_units", capacity_units);
    ctx.insert("populated_size", &disk.populated);
    ctx.insert("system_id", &appliance.name);
    ctx.insert("product", &appliance.name);
    ctx.insert("version", &appliance.version);
    ctx.insert("description", &appliance.description);
    ctx.insert("cpus", &appliance.cpus);
    ctx.insert("memory_mib", &appliance.memory_mib);
    ctx.insert(
        "firmware",
        match appliance.firmware {
            Firmware::Bios => "bios",
            Firmware::Efi => "efi",
        },
    );
    ctx.insert("vmw_os_type", VMW_OS_TYPE);
    ctx.insert("hardware_family", HARDWARE_FAMILY);
    ctx.insert("properties", &properties());

    tera.render(TEMPLATE_NAME, &ctx)
        .map_err(|e| ExportError::Template(error_chain(&e)))
}

fn properties() -> Vec<Property> {
    QUESTIONS
        .iter()
        .map(|q| {
            let (default, qualifiers) = match q.kind {
                Kind::Choice(values) => (
                    values.first().copied().unwrap_or(""),
                    format!(
                        "ValueMap{{{}}}",
                        values
                            .iter()
                            .map(|v| format!("\"{v}\""))
                            .collect::<Vec<_>>()
                            .join(",")
                    ),
                ),
                Kind::Text | Kind::Password => ("", String::new()),
            };
            Property {
                key: q.ovf_key,
                default,
                password: q.kind == Kind::Password,
                qualifiers,
                label_pt: q.label_pt,
                label_en: q.label_en,
                help_pt: q.help_pt,
                help_en: q.help_en,
            }
        })
        .collect()
}

/// The capacity in the largest `byte * 2^N` unit that divides it exactly
/// (Proxmox only reads that form; VirtualBox ignores units).
fn capacity_in_units(bytes: u64) -> (u64, &'static str) {
    for (shift, unit) in [
        (30, "byte * 2^30"),
        (20, "byte * 2^20"),
        (10, "byte * 2^10"),
    ] {
        if bytes % (1u64 << shift) == 0 {
            return (bytes >> shift, unit);
        }
    }
    (bytes, "byte")
}

/// Escapes text for XML element content and attribute values. Characters XML
/// 1.0 forbids (most control characters) are dropped.
pub(super) fn escape_xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
    out
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn appliance(description: &str) -> Appliance {
        Appliance {
            name: "balcao".into(),
            version: "1.0.0".into(),
            description: description.into(),
            cpus: 4,
            memory_mib: 8192,
            firmware: Firmware::Bios,
        }
    }

    fn disk() -> DiskRef<'static> {
        DiskRef {
            href: "balcao-1.0.0-disk1.vmdk",
            file_size: 12345,
            capacity: 20 << 30,
            populated: 1 << 30,
        }
    }

    #[test]
    fn escaping_covers_markup_and_control_characters() {
        assert_eq!(
            escape_xml("a<b>&\"c\" 'd'\u{1}é"),
            "a&lt;b&gt;&amp;&quot;c&quot; &apos;d&apos;é"
        );
    }

    #[test]
    fn hostile_description_stays_text() {
        let text = render(&appliance("</Annotation><Evil/> & \"x\""), &disk()).unwrap();
        let doc = roxmltree::Document::parse(&text).unwrap();
        let annotation = doc
            .descendants()
            .find(|n| n.has_tag_name("Annotation"))
            .unwrap();
        assert_eq!(annotation.text(), Some("</Annotation><Evil/> & \"x\""));
        assert!(!doc.descendants().any(|n| n.has_tag_name("Evil")));
    }

    #[test]
    fn units_are_the_largest_exact_power() {
        assert_eq!(capacity_in_units(20 << 30), (20, "byte * 2^30"));
        assert_eq!(capacity_in_units(64 << 20), (64, "byte * 2^20"));
        assert_eq!(capacity_in_units(3 * 1024 + 1024), (4, "byte * 2^10"));
        assert_eq!(capacity_in_units(1536), (1536, "byte"));
    }

    #[test]
    fn bios_firmware_hint_and_no_secure_boot_key() {
        let text = render(&appliance("x"), &disk()).unwrap();
        assert!(
            text.contains(r#"vmw:key="firmware" vmw:value="bios""#),
            "{text}"
        );
        assert!(!text.contains("efiSecureBootEnabled"), "{text}");
    }

    #[test]
    fn choices_become_a_value_map() {
        let text = render(&appliance("x"), &disk()).unwrap();
        assert!(
            text.contains(
                r#"ovf:qualifiers="ValueMap{&quot;letsencrypt&quot;,&quot;self-signed&quot;,&quot;own&quot;}""#
            ),
            "{text}"
        );
    }
}
