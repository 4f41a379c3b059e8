//! Benchmark systems on disk: `tests/systems/bench/<system>.xml`, and the same system joined by
//! idle PDs, written next to the results.
//!
//! An idle PD (`bench_idle.elf`) runs its `init` and then waits for ever. The idle PDs get
//! priorities from [`IDLE_FIRST_PRIORITY`] up, one each: above the PDs that time things
//! (priorities 100 and 101), so every idle PD has run its `init` and is waiting before any timed
//! loop starts, and below the servers (200) and the boot PD (254), whose places they must not
//! take.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::catalogue::BenchSystem;
use crate::firmware;

/// The program every idle PD runs.
pub const IDLE_PROGRAM: &str = "bench_idle.elf";
/// The first idle PD's priority; the others follow one by one.
pub const IDLE_FIRST_PRIORITY: u32 = 150;
/// The highest priority an idle PD may have: below the servers' 200.
pub const IDLE_LAST_PRIORITY: u32 = 199;

/// `tests/systems/bench`.
pub fn systems_dir() -> PathBuf {
    firmware::workspace_root()
        .join("tests")
        .join("systems")
        .join("bench")
}

/// `tests/systems/bench/<system>.xml`.
pub fn base_file(system: &str) -> PathBuf {
    systems_dir().join(format!("{system}.xml"))
}

/// The name of idle PD `index`.
pub fn idle_pd_name(index: u32) -> String {
    format!("bench_idle{index:02}")
}

/// `xml` (a whole system description) with `count` idle PDs added before its closing
/// `</system>` tag.
pub fn with_idle_pds(xml: &str, count: u32) -> Result<String, String> {
    if IDLE_FIRST_PRIORITY + count > IDLE_LAST_PRIORITY + 1 {
        return Err(format!(
            "{count} idle PDs do not fit in priorities {IDLE_FIRST_PRIORITY}..={IDLE_LAST_PRIORITY}"
        ));
    }
    let end = xml
        .rfind("</system>")
        .ok_or("the system description has no </system> tag")?;
    let (head, tail) = xml.split_at(end);
    let mut text = head.to_owned();
    let _ = writeln!(
        text,
        "    <!-- {count} idle PDs added by cargo xtask bench. -->"
    );
    for index in 0..count {
        let _ = write!(
            text,
            "    <protection_domain name=\"{}\" priority=\"{}\">\n        \
             <program_image path=\"{IDLE_PROGRAM}\" />\n    </protection_domain>\n",
            idle_pd_name(index),
            IDLE_FIRST_PRIORITY + index
        );
    }
    text.push_str(tail);
    Ok(text)
}

/// The system file to boot for `system`: the base file itself when no idle PDs are added, else
/// `<out_dir>/systems/<name>.xml`, written now.
pub fn system_file(system: &BenchSystem, out_dir: &Path) -> Result<PathBuf, String> {
    let base = base_file(system.system);
    if system.idle_pds == 0 {
        return Ok(base);
    }
    let xml = std::fs::read_to_string(&base)
        .map_err(|error| format!("cannot read {}: {error}", base.display()))?;
    let xml = with_idle_pds(&xml, system.idle_pds)
        .map_err(|error| format!("{}: {error}", base.display()))?;
    let dir = out_dir.join("systems");
    std::fs::create_dir_all(&dir)
        .map_err(|error| format!("cannot create {}: {error}", dir.display()))?;
    let file = dir.join(format!("{}.xml", system.name()));
    std::fs::write(&file, xml)
        .map_err(|error| format!("cannot write {}: {error}", file.display()))?;
    Ok(file)
}

#[cfg(test)]
// A failed expectation in a test is the test failing, which is what panicking reports.
#[allow(clippy::expect_used, clippy::unwrap_used)]
mod tests {
    use super::*;
    use frameshift_build::sdf;

    fn parse(xml: &str) -> sdf::SystemDescription {
        sdf::parse_str("bench.xml", xml, &[]).expect("a valid system")
    }

    #[test]
    fn idle_pds_join_every_base_system_as_valid_microkit() {
        for system in ["null", "ppc_active", "ppc_passive", "notify", "boot"] {
            let base = std::fs::read_to_string(base_file(system)).unwrap();
            let before = parse(&base).protection_domains.len();
            let description = parse(&with_idle_pds(&base, 48).unwrap());
            let pds = &description.protection_domains;
            assert_eq!(pds.len(), before + 48, "{system}");
            let idle: Vec<_> = pds
                .iter()
                .filter(|pd| pd.name.starts_with("bench_idle"))
                .collect();
            assert_eq!(idle.len(), 48);
            assert_eq!(idle[0].name, "bench_idle00");
            assert_eq!(idle[47].name, "bench_idle47");
            assert_eq!(idle[0].priority, 150);
            assert_eq!(idle[47].priority, 197);
            assert!(idle
                .iter()
                .all(|pd| pd.program_image == Path::new(IDLE_PROGRAM) && !pd.passive));
            // The PDs that time things run after every idle PD's init, and the servers and the
            // boot PD keep the CPU over them.
            for pd in pds.iter().filter(|pd| !pd.name.starts_with("bench_idle")) {
                assert!(
                    pd.priority < 150 || pd.priority > 199,
                    "{system}: {} at {}",
                    pd.name,
                    pd.priority
                );
            }
        }
    }

    #[test]
    fn fifty_idle_pds_fit_and_more_are_refused() {
        let base = std::fs::read_to_string(base_file("boot")).unwrap();
        let description = parse(&with_idle_pds(&base, 50).unwrap());
        assert_eq!(description.protection_domains.len(), 51);
        assert_eq!(description.protection_domains[50].priority, 199);
        assert!(with_idle_pds(&base, 51).is_err());
        assert!(with_idle_pds("<system>", 1).is_err());
    }

    #[test]
    fn a_system_without_idle_pds_is_the_base_file() {
        let system = BenchSystem {
            system: "null",
            idle_pds: 0,
            figures: Vec::new(),
            boots: 1,
        };
        let file = system_file(&system, Path::new("/nonexistent")).unwrap();
        assert_eq!(file, base_file("null"));
    }
}
