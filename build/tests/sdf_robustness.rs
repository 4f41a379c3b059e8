//! No input makes the parser panic: mutated Microkit and Frameshift fixtures (deleted
//! attributes, swapped, duplicated or deleted lines, huge or malformed numbers, random bytes,
//! truncation) all get either a model whose indices are in range or a non-empty error.

use std::path::PathBuf;
use std::sync::OnceLock;

use frameshift_build::sdf::{parse_bytes, SystemDescription};
use proptest::prelude::*;

/// Every fixture, read once.
fn fixtures() -> &'static Vec<Vec<u8>> {
    static FIXTURES: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    FIXTURES.get_or_init(|| {
        let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let dirs = [
            manifest.join("tests/fixtures"),
            manifest.join("tests/microkit-sdf/sdf"),
        ];
        let mut all = Vec::new();
        for dir in dirs {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            let mut paths: Vec<PathBuf> =
                entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
            paths.sort();
            all.extend(paths.iter().filter_map(|path| std::fs::read(path).ok()));
        }
        assert!(all.len() >= 143 + 14, "fixtures not found");
        all
    })
}

fn search_paths() -> Vec<PathBuf> {
    vec![PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/microkit-sdf/prefills")]
}

/// Values that stress the integer, boolean and name parsers.
const NASTY_VALUES: [&str; 14] = [
    "0xffffffffffffffffffff",
    "18446744073709551616",
    "18446744073709551615",
    "0xffff_ffff_ffff_f000",
    "-1",
    "-99999999999999999999999",
    "",
    "0x",
    "_",
    "1_0x0",
    "true",
    "\u{1F600}",
    "monitor",
    "0x1000000000000000",
];

#[derive(Clone, Debug)]
enum Mutation {
    DeleteAttribute(usize),
    ReplaceValue(usize, usize),
    SwapLines(usize, usize),
    DuplicateLine(usize),
    DeleteLine(usize),
    InsertBytes(usize, Vec<u8>),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<usize>().prop_map(Mutation::DeleteAttribute),
        (any::<usize>(), 0..NASTY_VALUES.len()).prop_map(|(a, v)| Mutation::ReplaceValue(a, v)),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::SwapLines(a, b)),
        any::<usize>().prop_map(Mutation::DuplicateLine),
        any::<usize>().prop_map(Mutation::DeleteLine),
        (
            any::<usize>(),
            proptest::collection::vec(any::<u8>(), 1..12)
        )
            .prop_map(|(at, bytes)| Mutation::InsertBytes(at, bytes)),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

/// Byte ranges `[name_start, value_end)` of every `name="value"` attribute.
fn attributes(text: &[u8]) -> Vec<(usize, usize, usize)> {
    let mut found = Vec::new();
    for (eq, pair) in text.windows(2).enumerate() {
        if pair != b"=\"" {
            continue;
        }
        let name_start = text[..eq]
            .iter()
            .rposition(|b| b.is_ascii_whitespace())
            .map_or(0, |p| p + 1);
        let value_start = eq + 2;
        if let Some(len) = text[value_start..].iter().position(|b| *b == b'"') {
            found.push((name_start, value_start, value_start + len));
        }
    }
    found
}

fn apply(text: &[u8], mutation: &Mutation) -> Vec<u8> {
    let mut lines: Vec<&[u8]> = text.split(|b| *b == b'\n').collect();
    let join = |lines: &[&[u8]]| lines.join(&b'\n');
    match mutation {
        Mutation::DeleteAttribute(k) | Mutation::ReplaceValue(k, _) => {
            let found = attributes(text);
            let Some(&(name_start, value_start, value_end)) = found.get(k % found.len().max(1))
            else {
                return text.to_vec();
            };
            let mut out = text[..name_start].to_vec();
            if let Mutation::ReplaceValue(_, v) = mutation {
                out.extend_from_slice(&text[name_start..value_start]);
                out.extend_from_slice(NASTY_VALUES[*v].as_bytes());
                out.extend_from_slice(&text[value_end..]);
            } else {
                out.extend_from_slice(&text[(value_end + 1).min(text.len())..]);
            }
            out
        }
        Mutation::SwapLines(a, b) => {
            let n = lines.len();
            lines.swap(a % n, b % n);
            join(&lines)
        }
        Mutation::DuplicateLine(a) => {
            let n = lines.len();
            let line = lines[a % n];
            lines.insert(a % n, line);
            join(&lines)
        }
        Mutation::DeleteLine(a) => {
            let n = lines.len();
            lines.remove(a % n);
            join(&lines)
        }
        Mutation::InsertBytes(at, bytes) => {
            let at = at % (text.len() + 1);
            let mut out = text[..at].to_vec();
            out.extend_from_slice(bytes);
            out.extend_from_slice(&text[at..]);
            out
        }
        Mutation::Truncate(at) => text[..at % (text.len() + 1)].to_vec(),
    }
}

/// A parsed model only refers to things that exist.
fn assert_consistent(system: &SystemDescription) {
    let pds = system.protection_domains.len();
    let regions = system.memory_regions.len();
    assert!((1..=63).contains(&pds));
    for (index, pd) in system.protection_domains.iter().enumerate() {
        assert!(pd.parent.is_none_or(|parent| parent < index));
        let vm_maps = pd.virtual_machine.iter().flat_map(|vm| vm.maps.iter());
        for map in pd.maps.iter().chain(vm_maps) {
            assert!(map.memory_region < regions);
        }
        for setvar in &pd.setvars {
            assert!(setvar.region_paddr < regions);
        }
        assert!(pd.irqs.iter().all(|irq| irq.id <= 61));
    }
    for channel in &system.channels {
        assert!(channel.ends.iter().all(|end| end.pd < pds && end.id <= 61));
    }
}

fn check(bytes: &[u8]) {
    match parse_bytes("mutated.system", bytes, &search_paths()) {
        Ok(system) => assert_consistent(&system),
        Err(error) => {
            assert!(!error.first_line().is_empty());
            assert!(!error.to_string().is_empty());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn one_mutation_never_panics(index in any::<usize>(), mutation in mutation()) {
        let all = fixtures();
        let text = &all[index % all.len()];
        check(&apply(text, &mutation));
    }

    #[test]
    fn three_mutations_never_panic(index in any::<usize>(), mutations in proptest::collection::vec(mutation(), 3)) {
        let all = fixtures();
        let mut text = all[index % all.len()].clone();
        for mutation in &mutations {
            text = apply(&text, mutation);
        }
        check(&text);
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        check(&bytes);
    }
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let depth = 10_000;
    let mut xml = String::from("<system>");
    xml.push_str("<protection_domain name=\"root\"><program_image path=\"a.elf\"/>");
    for level in 1..depth {
        xml.push_str(&format!(
            "<protection_domain name=\"pd{level}\" id=\"1\"><program_image path=\"a.elf\"/>"
        ));
    }
    for _ in 0..depth {
        xml.push_str("</protection_domain>");
    }
    xml.push_str("</system>");
    let Err(error) = parse_bytes("deep.system", xml.as_bytes(), &[]) else {
        panic!("accepted");
    };
    assert!(
        error
            .to_string()
            .starts_with("Error: protection domains nested more than 64 deep: deep.system:1:"),
        "{error}"
    );
}

#[test]
fn non_utf8_and_wrong_root_are_clear_errors() {
    let Err(error) = parse_bytes("bad.system", b"<system>\n  <\xff/>\n</system>", &[]) else {
        panic!("accepted");
    };
    assert_eq!(
        error.to_string(),
        "Error: system description is not valid UTF-8: bad.system:2:4"
    );
    let Err(error) = parse_bytes("root.system", b"<sys/>", &[]) else {
        panic!("accepted");
    };
    assert_eq!(
        error.to_string(),
        "Error: the root element must be 'system', not 'sys': root.system:1:1"
    );
    let Err(error) = parse_bytes("xml.system", b"<system>", &[]) else {
        panic!("accepted");
    };
    assert!(
        error
            .to_string()
            .starts_with("Could not parse 'xml.system': "),
        "{error}"
    );
    let Err(error) = parse_bytes(
        "dtd.system",
        b"<!DOCTYPE system [<!ENTITY a \"aaaa\">]><system>&a;</system>",
        &[],
    ) else {
        panic!("accepted");
    };
    assert!(
        error
            .to_string()
            .starts_with("Could not parse 'dtd.system': "),
        "{error}"
    );
}
