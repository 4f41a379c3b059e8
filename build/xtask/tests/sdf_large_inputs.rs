//! Large and hostile system files get an answer (issue 7, break 5): `cargo xtask check` on 10 MB
//! of memory regions was quadratic (hours). Every check is now linear or `n log n`, and what
//! roxmltree itself does quadratically is bounded by the stated input limits (docs/SDF.md, "Input
//! limits"). No timing is asserted: these files take hours on a quadratic tool, so the test
//! harness's own timeout is the guard.
// A failed expectation in a test is the test failing, which is what panicking reports.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod support;

use std::fmt::Write as _;

use frameshift_build::sdf::limits::{MAX_ATTRIBUTES, MAX_ELEMENTS, MAX_FILE_BYTES};
use support::{check, stdout, write_system};

#[test]
fn ten_megabytes_of_memory_regions_get_an_answer() {
    let mut xml = String::from(
        "<system>\n<protection_domain name=\"p\"><program_image path=\"p.elf\"/></protection_domain>\n",
    );
    let mut regions = 0;
    while xml.len() < 10_000_000 - 64 {
        writeln!(xml, "<memory_region name=\"m{regions}\" size=\"0x1000\"/>").unwrap();
        regions += 1;
    }
    xml.push_str("</system>\n");
    assert!(regions > 200_000, "{regions} regions");
    let output = check(&write_system("ten_megabytes.system", &xml));
    assert_eq!(stdout(&output), "OK", "{:?}", output.status);
    assert_eq!(output.status.code(), Some(0));
    // Every region is unused, and each gets Microkit's warning, once.
    let warnings = String::from_utf8_lossy(&output.stderr)
        .lines()
        .filter(|line| line.starts_with("WARNING: unused memory region 'm"))
        .count();
    assert_eq!(warnings, regions);
}

#[test]
fn fifty_thousand_mapped_regions_and_the_overlap_at_the_end() {
    // Every region has a phys_addr and one map: the name lookups, the map and physical overlap
    // checks and the page-size pass all see 50,000 entries. The last map overlaps the first,
    // which must be the map the message names (Microkit reports the earliest one).
    let count = 50_000u64;
    let mut xml = String::from("<system>\n");
    for index in 0..count {
        let paddr = 0x1_0000_0000 + index * 0x1000;
        writeln!(
            xml,
            "<memory_region name=\"m{index}\" size=\"0x1000\" phys_addr=\"{paddr:#x}\"/>"
        )
        .unwrap();
    }
    xml.push_str("<protection_domain name=\"p\"><program_image path=\"p.elf\"/>\n");
    for index in 0..count {
        let vaddr = 0x1000_0000 + index * 0x1000;
        writeln!(xml, "<map mr=\"m{index}\" vaddr=\"{vaddr:#x}\"/>").unwrap();
    }
    let valid = format!("{xml}</protection_domain>\n</system>\n");
    let output = check(&write_system("mapped.system", &valid));
    assert_eq!(stdout(&output), "OK", "{output:?}");

    let overlapping =
        format!("{xml}<map mr=\"m7\" vaddr=\"0x1000_0000\"/>\n</protection_domain>\n</system>\n");
    let output = check(&write_system("mapped_overlap.system", &overlapping));
    let line = 2 * count + 3;
    assert_eq!(
        stdout(&output),
        format!(
            "Error: map for 'm7' has virtual address range [0x10000000..0x10001000) which overlaps with map for 'm0' [0x10000000..0x10001000) in protection domain 'p' @ {}:{line}:1",
            output_path("mapped_overlap.system")
        )
    );
}

fn output_path(name: &str) -> String {
    support::scratch_dir().join(name).display().to_string()
}

#[test]
fn an_element_with_a_hundred_thousand_attributes_is_refused_by_the_limit() {
    let attributes: String = (0..100_000)
        .map(|index| format!(" a{index}=\"\""))
        .collect();
    let xml = format!("<system>\n  <memory_region{attributes} />\n</system>\n");
    let output = check(&write_system("attributes.system", &xml));
    assert_eq!(
        stdout(&output),
        format!(
            "Error: element 'memory_region' has more than {MAX_ATTRIBUTES} attributes, the limit for one element: {}:2:3",
            output_path("attributes.system")
        )
    );
    assert_eq!(output.status.code(), Some(1));
}

#[test]
fn too_many_elements_and_too_many_bytes_are_refused_by_the_limits() {
    let elements = "<channel/>\n".repeat(MAX_ELEMENTS);
    let xml = format!("<system>\n{elements}</system>\n");
    let output = check(&write_system("elements.system", &xml));
    assert_eq!(
        stdout(&output),
        format!(
            "Error: more than {MAX_ELEMENTS} elements, the limit for a system description: {}:{}:1",
            output_path("elements.system"),
            MAX_ELEMENTS + 1
        )
    );

    let padding = " ".repeat(MAX_FILE_BYTES);
    let xml = format!("<system>{padding}</system>");
    let path = write_system("bytes.system", &xml);
    let output = check(&path);
    assert_eq!(
        stdout(&output),
        format!(
            "Error: system description '{}' is {} bytes, more than the limit of {MAX_FILE_BYTES} bytes (16 MiB)",
            path.display(),
            xml.len()
        )
    );
}
