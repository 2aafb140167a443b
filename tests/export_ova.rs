//! The OVA, checked the way its consumers read it: tar member order and raw
//! header fields (VMware wants the `.ovf` first, no PAX or long-name entries),
//! manifest digests recomputed, `ovf:size` against the member, `xmllint`, and
//! the descriptor rules VirtualBox's `ovfreader.cpp` and Proxmox's
//! `PVE::GuestImport::OVF` apply. Needs qemu-utils and libxml2-utils.

#[path = "export_support.rs"]
mod support;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use balcao::answers::{Kind, QUESTIONS};
use balcao::export::{self, Firmware, Format};
use sha2::{Digest, Sha256};
use support::*;

const OVF_NS: &str = "http://schemas.dmtf.org/ovf/envelope/1";
const RASD_NS: &str =
    "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData";
const VMW_NS: &str = "http://www.vmware.com/schema/ovf";
const XML_NS: &str = "http://www.w3.org/XML/1998/namespace";

/// One tar header block, parsed here from its bytes.
#[derive(Debug)]
struct RawEntry {
    name: String,
    typeflag: u8,
    mode: String,
    uid: u64,
    gid: u64,
    mtime: u64,
    magic: Vec<u8>,
    data: Vec<u8>,
}

fn octal(field: &[u8]) -> u64 {
    let text = std::str::from_utf8(field).unwrap();
    u64::from_str_radix(text.trim_matches(|c| c == '\0' || c == ' '), 8).unwrap()
}

fn raw_entries(bytes: &[u8]) -> Vec<RawEntry> {
    let mut entries = Vec::new();
    let mut at = 0;
    loop {
        let h = &bytes[at..at + 512];
        if h.iter().all(|&b| b == 0) {
            // The archive ends with two zero blocks and nothing else after
            // them but zero padding.
            assert!(bytes[at..].iter().all(|&b| b == 0));
            assert!(bytes.len() - at >= 1024);
            break;
        }
        let sum: u64 = h
            .iter()
            .enumerate()
            .map(|(i, &b)| {
                if (148..156).contains(&i) {
                    32
                } else {
                    u64::from(b)
                }
            })
            .sum();
        assert_eq!(sum, octal(&h[148..156]), "header checksum");
        let name_len = h[..100].iter().position(|&b| b == 0).unwrap_or(100);
        let size = octal(&h[124..136]) as usize;
        entries.push(RawEntry {
            name: String::from_utf8(h[..name_len].to_vec()).unwrap(),
            typeflag: h[156],
            mode: String::from_utf8_lossy(&h[100..108]).into_owned(),
            uid: octal(&h[108..116]),
            gid: octal(&h[116..124]),
            mtime: octal(&h[136..148]),
            magic: h[257..265].to_vec(),
            data: bytes[at + 512..at + 512 + size].to_vec(),
        });
        at += 512 + size.div_ceil(512) * 512;
    }
    entries
}

struct Exported {
    _disk: SyntheticDisk,
    _out: tempfile::TempDir,
    ova: PathBuf,
    entries: Vec<RawEntry>,
}

/// One EFI export shared by the tests of this file.
fn exported() -> &'static Exported {
    static ONCE: OnceLock<Exported> = OnceLock::new();
    ONCE.get_or_init(|| {
        require_qemu_img();
        let disk = synthetic_disk(64 * MIB);
        let out = tempfile::tempdir().unwrap();
        let ova = export::export(
            &disk.raw,
            Format::Ova,
            out.path(),
            &appliance(Firmware::Efi),
        )
        .unwrap();
        let entries = raw_entries(&std::fs::read(&ova).unwrap());
        Exported {
            _disk: disk,
            _out: out,
            ova,
            entries,
        }
    })
}

fn descriptor() -> &'static str {
    std::str::from_utf8(&exported().entries[0].data).unwrap()
}

#[test]
fn members_are_ovf_then_manifest_then_disk_with_plain_headers() {
    let e = &exported().entries;
    let names: Vec<&str> = e.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "balcao-0.1.0.ovf",
            "balcao-0.1.0.mf",
            "balcao-0.1.0-disk1.vmdk"
        ]
    );
    let expected_mtime = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    for m in e {
        assert_eq!(m.typeflag, b'0', "{} is a regular file", m.name);
        assert_eq!(m.magic, b"ustar  \0", "{} has a GNU header", m.name);
        assert_eq!(m.mode, "0000644\0", "{}", m.name);
        assert_eq!((m.uid, m.gid), (0, 0), "{}", m.name);
        assert_eq!(m.mtime, expected_mtime, "{}", m.name);
        assert!(m.name.len() < 100 && m.name.is_ascii() && !m.name.contains('/'));
        assert!(!m.name.starts_with("././@") && !m.name.contains("PaxHeader"));
    }

    // The crate's own reader sees the same thing.
    let listed = export::ova_members(&exported().ova).unwrap();
    assert_eq!(
        listed.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(),
        names
    );
}

#[test]
fn manifest_digests_match_the_members() {
    let e = &exported().entries;
    let manifest = std::str::from_utf8(&e[1].data).unwrap();
    assert!(manifest.ends_with('\n'));
    let mut listed = HashMap::new();
    for line in manifest.lines() {
        // SHA256(name)= <64 lowercase hex>
        let rest = line
            .strip_prefix("SHA256(")
            .unwrap_or_else(|| panic!("{line:?}"));
        let (name, digest) = rest.split_once(")= ").unwrap_or_else(|| panic!("{line:?}"));
        assert_eq!(digest.len(), 64, "{line:?}");
        assert!(digest
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        listed.insert(name.to_owned(), digest.to_owned());
    }
    assert_eq!(listed.len(), 2, "the .ovf and the disk, not the .mf itself");
    for m in [&e[0], &e[2]] {
        let digest = hex::encode(Sha256::digest(&m.data));
        assert_eq!(listed.get(&m.name), Some(&digest), "{}", m.name);
    }
}

#[test]
fn descriptor_is_well_formed_for_xmllint() {
    require("xmllint", "libxml2-utils");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.ovf");
    std::fs::write(&path, descriptor()).unwrap();
    run("xmllint", &["--noout", s(&path)]);
}

#[test]
fn references_and_disk_section() {
    let doc = roxmltree::Document::parse(descriptor()).unwrap();
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "Envelope");
    assert_eq!(
        root.tag_name().namespace(),
        Some(OVF_NS),
        "OVF 1.x namespace"
    );

    let disk_member = &exported().entries[2];
    let files: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name((OVF_NS, "File")))
        .collect();
    assert_eq!(files.len(), 1);
    let file = files[0];
    let href = file.attribute((OVF_NS, "href")).unwrap();
    assert_eq!(
        href, disk_member.name,
        "href names the disk member exactly once"
    );
    // Proxmox's safe-character rule for hrefs.
    assert!(href
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._~-".contains(&b)));
    assert_eq!(
        file.attribute((OVF_NS, "size")).unwrap(),
        disk_member.data.len().to_string(),
        "ovf:size is the member's byte size"
    );

    let disk = doc
        .descendants()
        .find(|n| n.has_tag_name((OVF_NS, "Disk")))
        .unwrap();
    let disk_id = disk.attribute((OVF_NS, "diskId")).unwrap();
    assert_eq!(
        disk.attribute((OVF_NS, "fileRef")),
        file.attribute((OVF_NS, "id"))
    );
    assert!(disk
        .attribute((OVF_NS, "format"))
        .unwrap()
        .ends_with("vmdk.html#streamOptimized"));
    // Proxmox reads only `byte * N^M`; capacity * unit = the VMDK's size.
    let units = disk.attribute((OVF_NS, "capacityAllocationUnits")).unwrap();
    let (base, exp) = units
        .strip_prefix("byte * ")
        .and_then(|u| u.split_once('^'))
        .unwrap_or_else(|| panic!("units {units:?}"));
    let unit = base.parse::<u64>().unwrap().pow(exp.parse().unwrap());
    let capacity: u64 = disk
        .attribute((OVF_NS, "capacity"))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(capacity * unit, 64 * MIB);

    // HostResource as both parsers accept it.
    let host = doc
        .descendants()
        .find(|n| n.has_tag_name((RASD_NS, "HostResource")))
        .unwrap()
        .text()
        .unwrap();
    assert_eq!(host, format!("ovf:/disk/{disk_id}"));
}

/// The rasd children of every Item, by local name.
fn items<'a, 'i>(
    doc: &'a roxmltree::Document<'i>,
) -> Vec<(roxmltree::Node<'a, 'i>, HashMap<String, String>)> {
    doc.descendants()
        .filter(|n| n.has_tag_name((OVF_NS, "Item")))
        .map(|item| {
            let fields = item
                .children()
                .filter(|c| c.is_element() && c.tag_name().namespace() == Some(RASD_NS))
                .map(|c| {
                    (
                        c.tag_name().name().to_owned(),
                        c.text().unwrap_or("").to_owned(),
                    )
                })
                .collect();
            (item, fields)
        })
        .collect()
}

#[test]
fn hardware_follows_virtualbox_rules() {
    let doc = roxmltree::Document::parse(descriptor()).unwrap();
    // Resource types VirtualBox's reader handles; any other Item must be
    // optional or the import stops with "Unknown resource type".
    let known: HashSet<&str> = [
        "3", "4", "5", "6", "10", "14", "15", "16", "17", "20", "23", "35",
    ]
    .into();
    let mut ids = HashSet::new();
    let all = items(&doc);
    for (item, f) in &all {
        let id = f.get("InstanceID").expect("every Item has rasd:InstanceID");
        assert!(ids.insert(id.clone()), "InstanceID {id} unique");
        let kind = f["ResourceType"].as_str();
        if !known.contains(kind) {
            assert_eq!(
                item.attribute((OVF_NS, "required")),
                Some("false"),
                "Item of type {kind} must be ovf:required=\"false\""
            );
        }
        // rasd children in alphabetical order, as the CIM schema's sequence wants.
        let order: Vec<&str> = item
            .children()
            .filter(|c| c.is_element() && c.tag_name().namespace() == Some(RASD_NS))
            .map(|c| c.tag_name().name())
            .collect();
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(order, sorted, "rasd fields of Item {id} sorted");
    }

    let by_type = |t: &str| {
        all.iter()
            .filter(move |(_, f)| f["ResourceType"] == t)
            .map(|(_, f)| f.clone())
            .collect::<Vec<_>>()
    };
    let cpu = &by_type("3")[0];
    assert_eq!(cpu["VirtualQuantity"], "2");
    let mem = &by_type("4")[0];
    assert_eq!(mem["VirtualQuantity"], "4096");
    assert!(["MegaBytes", "MB", "byte * 2^20"].contains(&mem["AllocationUnits"].as_str()));

    let sata = &by_type("20")[0];
    assert!(["AHCI", "vmware.sata.ahci"].contains(&sata["ResourceSubType"].as_str()));
    let disk = &by_type("17")[0];
    assert_eq!(
        disk["Parent"], sata["InstanceID"],
        "disk hangs off the SATA controller"
    );
    let nic = &by_type("10")[0];
    assert_eq!(nic["ResourceSubType"], "E1000");
    assert_eq!(by_type("24").len(), 1, "video card present (optional)");

    let os = doc
        .descendants()
        .find(|n| n.has_tag_name((OVF_NS, "OperatingSystemSection")))
        .unwrap();
    assert_eq!(
        os.attribute((OVF_NS, "id")),
        Some("96"),
        "CIM 96 = Debian 64-bit"
    );
    assert_eq!(os.attribute((VMW_NS, "osType")), Some("debian11_64Guest"));
}

#[test]
fn vmware_and_proxmox_fields() {
    let doc = roxmltree::Document::parse(descriptor()).unwrap();
    let vs = doc
        .descendants()
        .find(|n| n.has_tag_name((OVF_NS, "VirtualSystem")))
        .unwrap();
    let name = vs
        .children()
        .find(|n| n.has_tag_name((OVF_NS, "Name")))
        .unwrap();
    assert_eq!(
        name.text(),
        Some("balcao"),
        "Proxmox names the VM from Name"
    );

    let hw = doc
        .descendants()
        .find(|n| n.has_tag_name((OVF_NS, "VirtualHardwareSection")))
        .unwrap();
    assert_eq!(
        hw.attribute((OVF_NS, "transport")),
        Some("com.vmware.guestInfo")
    );
    let family = hw
        .descendants()
        .find(|n| n.tag_name().name() == "VirtualSystemType")
        .unwrap()
        .text()
        .unwrap();
    assert!(
        family.starts_with("vmx-"),
        "VMware refuses other families: {family}"
    );

    // Firmware hint: a direct child of the hardware section, optional.
    let configs: HashMap<&str, (&str, Option<&str>)> = hw
        .children()
        .filter(|n| n.has_tag_name((VMW_NS, "Config")))
        .map(|n| {
            (
                n.attribute((VMW_NS, "key")).unwrap(),
                (
                    n.attribute((VMW_NS, "value")).unwrap(),
                    n.attribute((OVF_NS, "required")),
                ),
            )
        })
        .collect();
    assert_eq!(configs["firmware"], ("efi", Some("false")));
    for (key, (_, required)) in &configs {
        assert_eq!(*required, Some("false"), "vmw:Config {key} optional");
    }
}

#[test]
fn product_properties_are_the_first_boot_questions() {
    let doc = roxmltree::Document::parse(descriptor()).unwrap();
    let product = doc
        .descendants()
        .find(|n| n.has_tag_name((OVF_NS, "ProductSection")))
        .unwrap();
    let props: Vec<_> = product
        .children()
        .filter(|n| n.has_tag_name((OVF_NS, "Property")))
        .collect();
    assert_eq!(props.len(), QUESTIONS.len());

    let strings: HashMap<&str, &str> = doc
        .descendants()
        .filter(|n| n.has_tag_name((OVF_NS, "Strings")))
        .inspect(|n| assert_eq!(n.attribute((XML_NS, "lang")), Some("en-US")))
        .flat_map(|n| n.children().filter(|c| c.has_tag_name((OVF_NS, "Msg"))))
        .map(|m| {
            (
                m.attribute((OVF_NS, "msgid")).unwrap(),
                m.text().unwrap_or(""),
            )
        })
        .collect();

    for (p, q) in props.iter().zip(QUESTIONS) {
        let attr = |name: &str| p.attribute((OVF_NS, name));
        assert_eq!(attr("key"), Some(q.ovf_key));
        assert_eq!(attr("type"), Some("string"));
        assert_eq!(attr("userConfigurable"), Some("true"), "{}", q.key);
        assert_eq!(
            attr("password") == Some("true"),
            q.kind == Kind::Password,
            "{}",
            q.key
        );
        match q.kind {
            Kind::Choice(values) => {
                let map = format!(
                    "ValueMap{{{}}}",
                    values
                        .iter()
                        .map(|v| format!("\"{v}\""))
                        .collect::<Vec<_>>()
                        .join(",")
                );
                assert_eq!(attr("qualifiers"), Some(map.as_str()));
                assert_eq!(attr("value"), Some(values[0]));
            }
            _ => {
                assert_eq!(attr("qualifiers"), None);
                assert_eq!(attr("value"), Some(""), "no default for {}", q.key);
            }
        }
        let child = |name: &str| {
            p.children()
                .find(|c| c.has_tag_name((OVF_NS, name)))
                .unwrap_or_else(|| panic!("{} has no {name}", q.key))
        };
        let label = child("Label");
        let help = child("Description");
        assert_eq!(label.text(), Some(q.label_pt));
        assert_eq!(help.text(), Some(q.help_pt));
        assert_eq!(
            strings[label.attribute((OVF_NS, "msgid")).unwrap()],
            q.label_en
        );
        assert_eq!(
            strings[help.attribute((OVF_NS, "msgid")).unwrap()],
            q.help_en
        );
    }
}

#[test]
fn description_is_escaped_text() {
    let doc = roxmltree::Document::parse(descriptor()).unwrap();
    let annotation = doc
        .descendants()
        .find(|n| n.has_tag_name((OVF_NS, "Annotation")))
        .unwrap();
    assert_eq!(
        annotation.text(),
        Some("Balcão Virtual <teste> & \"aspas\"")
    );
}

#[test]
fn the_disk_inside_matches_the_raw_disk() {
    let dir = tempfile::tempdir().unwrap();
    let vmdk = dir.path().join("d.vmdk");
    export::extract_member(&exported().ova, "balcao-0.1.0-disk1.vmdk", &vmdk).unwrap();
    assert_eq!(std::fs::read(&vmdk).unwrap(), exported().entries[2].data);
    run("qemu-img", &["check", "-f", "vmdk", s(&vmdk)]);
    qemu_compare(&exported()._disk.raw, "vmdk", &vmdk);
}

#[test]
fn bios_export_is_reproducible_and_says_bios() {
    require_qemu_img();
    let disk = synthetic_disk(48 * MIB);
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let app = appliance(Firmware::Bios);
    let pa = export::export(&disk.raw, Format::Ova, a.path(), &app).unwrap();
    let pb = export::export(&disk.raw, Format::Ova, b.path(), &app).unwrap();
    assert_eq!(
        export::sha256_file(&pa).unwrap(),
        export::sha256_file(&pb).unwrap(),
        "two exports of the same disk are byte-identical"
    );
    let entries = raw_entries(&std::fs::read(&pa).unwrap());
    let text = std::str::from_utf8(&entries[0].data).unwrap();
    assert!(text.contains(r#"vmw:key="firmware" vmw:value="bios""#));
    assert!(!Path::new(&a.path().join("balcao-0.1.0-disk1.vmdk")).exists());
}

/// Prints the descriptor, for a person to read:
/// `cargo test --test export_ova show_descriptor -- --ignored --nocapture`.
#[test]
#[ignore]
fn show_descriptor() {
    println!("{}", descriptor());
}
