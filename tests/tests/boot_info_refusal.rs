//! A corrupted boot image must be refused by the hypervisor with the validator's message and a
//! halt with status 2, before any domain runs; it must not crash or hang.

use frameshift_tests::boot_info::{self, expected_refusal, find, flip_byte, retarget_mapping};
use frameshift_tests::protocol::{self, transcript_lines, HYPERVISOR};
use frameshift_tests::scenario;

/// Build hello.xml, corrupt its blob with `corrupt`, boot it and check the refusal.
fn refused(name: &str, corrupt: impl FnOnce(&mut [u8])) -> Result<(), String> {
    let built = scenario::build(&scenario::system_path("hello"))?;
    let range =
        built.boot_info_offset_in_image..built.boot_info_offset_in_image + built.boot_info_len;
    // The builder's word for where the blob is must match what the validator finds.
    assert_eq!(find(&built.image), Some(range.clone()));
    let mut bytes = built.image.clone();
    let blob = &mut bytes[range];
    corrupt(blob);
    let Some(expected) = expected_refusal(blob) else {
        return Err("the corruption left a blob the validator accepts".to_owned());
    };
    let dir = scenario::image_dir(name);
    std::fs::create_dir_all(&dir).map_err(|error| error.to_string())?;
    let corrupted = dir.join("corrupted.img");
    std::fs::write(&corrupted, &bytes).map_err(|error| error.to_string())?;

    let run = scenario::boot(&corrupted)?;
    let console = run.console.as_str();
    let halt = protocol::check(console, &[])?;
    assert_eq!(
        (halt.status, halt.reason.as_str(), run.exit_code()),
        (2, "bad-boot-info", 2),
        "{console}"
    );
    let lines = transcript_lines(console);
    // Only the hypervisor spoke (check() above allowed no other domain), and its last two lines
    // are the refusal and the halt.
    assert!(lines.len() >= 2, "{console}");
    assert_eq!(lines[lines.len() - 2], expected, "{console}");
    assert!(lines
        .iter()
        .all(|line| line.starts_with(&format!("FS|{HYPERVISOR}|"))));
    Ok(())
}

#[test]
fn a_flipped_byte_fails_the_checksum_and_is_refused() -> Result<(), String> {
    refused("corrupt-flipped-byte", |blob| {
        // The first byte of the first domain's name: inside the tables, past the header.
        let at = boot_info::header(blob).map_or(0, |header| header.domains_offset as usize);
        flip_byte(blob, at);
    })
}

#[test]
fn a_resealed_mapping_into_hypervisor_memory_is_refused() -> Result<(), String> {
    refused("corrupt-hypervisor-mapping", |blob| {
        retarget_mapping(blob, 0, 0x4010_0000);
    })
}
