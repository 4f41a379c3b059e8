//! What a valid file means: the model the parser builds (flattening, defaults, page sizes,
//! prefill, warnings), beyond the accept/refuse answers the fixtures check.

use std::path::PathBuf;

use frameshift_build::sdf::{parse_str, SdfError, SystemDescription};

fn parse(xml: &str) -> Result<SystemDescription, SdfError> {
    let prefills = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/microkit-sdf/prefills");
    parse_str("t.system", xml, &[prefills])
}

fn parse_ok(xml: &str) -> SystemDescription {
    parse(xml).unwrap_or_else(|error| panic!("refused: {error}"))
}

#[test]
fn nested_pds_flatten_parent_first_with_parent_indices() {
    let system = parse_ok(
        r#"<system>
  <protection_domain name="a" priority="10">
    <program_image path="a.elf" />
    <protection_domain name="b" id="1"><program_image path="b.elf" />
      <protection_domain name="d" id="0"><program_image path="d.elf" /></protection_domain>
    </protection_domain>
    <protection_domain name="c" id="2"><program_image path="c.elf" /></protection_domain>
  </protection_domain>
</system>"#,
    );
    let order: Vec<(&str, Option<usize>, Option<u64>)> = system
        .protection_domains
        .iter()
        .map(|pd| (pd.name.as_str(), pd.parent, pd.child_id))
        .collect();
    assert_eq!(
        order,
        [
            ("a", None, None),
            ("b", Some(0), Some(1)),
            ("d", Some(1), Some(0)),
            ("c", Some(0), Some(2))
        ]
    );
}

#[test]
fn defaults_are_microkit_defaults() {
    let system = parse_ok(
        r#"<system>
  <memory_region name="m" size="0x1000" />
  <protection_domain name="p"><program_image path="p.elf" /><map mr="m" vaddr="0x10_0000" /></protection_domain>
</system>"#,
    );
    let pd = &system.protection_domains[0];
    assert_eq!(
        (pd.priority, pd.budget, pd.period, pd.passive),
        (0, 1000, 1000, false)
    );
    assert_eq!((pd.stack_size, pd.fpu), (0x2000, true));
    let map = &pd.maps[0];
    assert!(map.perms.read && map.perms.write && !map.perms.execute && map.cached);
    assert_eq!(system.memory_regions[0].page_size, 0x1000);
}

#[test]
fn page_size_is_raised_only_when_every_address_is_aligned() {
    let xml = |vaddr: &str| {
        format!(
            r#"<system>
  <memory_region name="big" size="0x40_0000" />
  <protection_domain name="p"><program_image path="p.elf" /><map mr="big" vaddr="{vaddr}" /></protection_domain>
</system>"#
        )
    };
    assert_eq!(
        parse_ok(&xml("0x4000_0000")).memory_regions[0].page_size,
        0x20_0000
    );
    assert_eq!(
        parse_ok(&xml("0x4000_1000")).memory_regions[0].page_size,
        0x1000
    );
}

#[test]
fn prefill_file_is_found_on_the_search_path_and_sizes_the_region() {
    let system = parse_ok(
        r#"<system>
  <memory_region name="pre" prefill_path="small.bin" />
  <protection_domain name="p"><program_image path="p.elf" />
    <map mr="pre" vaddr="0x20000000" setvar_prefill_size="pre_len" /></protection_domain>
</system>"#,
    );
    let region = &system.memory_regions[0];
    assert_eq!((region.size, region.prefill_len), (0x1000, Some(4)));
    assert!(region
        .prefill_path
        .as_ref()
        .is_some_and(|path| path.ends_with("small.bin") && path.is_file()));
    assert_eq!(
        system.protection_domains[0].maps[0]
            .setvar_prefill_size
            .as_deref(),
        Some("pre_len")
    );
}

#[test]
fn warnings_are_kept_when_a_later_check_fails() {
    let Err(error) = parse(
        r#"<system>
  <memory_region name="unused" size="0x1000" />
  <memory_region name="plain" size="0x1000" />
  <protection_domain name="p"><program_image path="p.elf" />
    <map mr="plain" vaddr="0x20000000" setvar_prefill_size="n" /></protection_domain>
</system>"#,
    ) else {
        panic!("accepted");
    };
    assert_eq!(error.warnings(), ["WARNING: unused memory region 'unused'"]);
    assert_eq!(
        error.to_string(),
        "Error: 'setvar_prefill_size' used for MR without a `prefill_path` @ 'plain' t.system:3:3"
    );
}

#[test]
fn stray_text_is_refused_where_microkit_refuses_it() {
    let Err(error) = parse(
        "<system>\n  <protection_domain name=\"p\"><program_image path=\"p.elf\" /></protection_domain>\n  stray\n</system>",
    ) else {
        panic!("accepted");
    };
    assert_eq!(
        error.to_string(),
        "Error: unexpected text found in element '' @ t.system:2:81"
    );
}

#[test]
fn ids_share_one_space_per_pd_and_setvar_ids_are_recorded() {
    let system = parse_ok(
        r#"<system>
  <protection_domain name="a" priority="1"><program_image path="a.elf" />
    <irq irq="40" id="3" setvar_id="irq_ch" trigger="edge" />
  </protection_domain>
  <protection_domain name="b" priority="2"><program_image path="b.elf" /></protection_domain>
  <channel><end pd="a" id="4" pp="true" setvar_id="to_b" /><end pd="b" id="3" notify="false" /></channel>
</system>"#,
    );
    let a = &system.protection_domains[0];
    let symbols: Vec<(&str, u64)> = a
        .id_setvars
        .iter()
        .map(|s| (s.symbol.as_str(), s.id))
        .collect();
    assert_eq!(symbols, [("irq_ch", 3), ("to_b", 4)]);
    let [end_a, end_b] = &system.channels[0].ends;
    assert!(end_a.pp && end_a.notify && !end_b.pp && !end_b.notify);

    let Err(error) = parse(
        r#"<system>
  <protection_domain name="a"><program_image path="a.elf" /><irq irq="40" id="3" /></protection_domain>
  <protection_domain name="b"><program_image path="b.elf" /></protection_domain>
  <channel><end pd="a" id="3" /><end pd="b" id="3" /></channel>
</system>"#,
    ) else {
        panic!("accepted");
    };
    assert_eq!(
        error.to_string(),
        "Error: duplicate channel id: 3 in protection domain: 'a' @ t.system:2:3"
    );
}
