//! The hostile system (tests/systems/hostile.xml) for `cargo xtask soak`, `cargo xtask audit`
//! and tests/tests/hostile.rs: its parameter block, its image, one boot, and the figures its
//! console lines carry.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use frameshift_vm_protocol::hostile::Params;

use super::{build_system, BuiltSystem, TaskError};
use crate::console::{self, HaltLine};
use crate::firmware::{self, Firmware};
use crate::qemu::{self, QemuOptions, RunOutcome};

/// The parameter block's file name, as hostile.xml's `prefill_path` names it.
pub const PARAMS_FILE: &str = "hostile_params.bin";

/// `tests/systems/hostile.xml`.
pub fn system_path() -> PathBuf {
    firmware::workspace_root()
        .join("tests")
        .join("systems")
        .join("hostile.xml")
}

/// Writes `system` and `params` into `dir` (the system's own directory is first on the search
/// path, so the block is found there) and builds its image into `dir`.
pub fn build(
    system: &Path,
    params: &Params,
    firmware: &Firmware,
    dir: &Path,
) -> Result<BuiltSystem, TaskError> {
    fs::create_dir_all(dir)?;
    let name = system
        .file_name()
        .ok_or_else(|| TaskError::new(format!("{}: not a file", system.display())))?;
    let copy = dir.join(name);
    fs::copy(system, &copy)
        .map_err(|error| TaskError::new(format!("{}: {error}", system.display())))?;
    fs::write(dir.join(PARAMS_FILE), params.encode())?;
    build_system(&copy, firmware, dir)
}

/// Boots `image` with `timeout`.
pub fn boot(image: &Path, timeout: Duration, stream: bool) -> Result<RunOutcome, TaskError> {
    let options = QemuOptions {
        timeout: Some(timeout),
        stream,
        ..QemuOptions::default()
    };
    Ok(qemu::run(image, &options)?)
}

/// The numeric `key=value` fields of a text (`0x..` values in hex).
pub fn number(text: &str, key: &str) -> Option<u64> {
    text.split(' ').find_map(|part| {
        let (name, value) = part.split_once('=')?;
        if name != key {
            return None;
        }
        match value.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16).ok(),
            None => value.parse().ok(),
        }
    })
}

/// The first console text of `domain` that starts with `prefix`.
pub fn line<'a>(console: &'a str, domain: &'a str, prefix: &str) -> Option<&'a str> {
    console::lines_of(console, domain).find(|text| text.starts_with(prefix))
}

/// What `cargo xtask soak` prints and decides on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SoakFigures {
    /// Hypercalls the guest made.
    pub calls: u64,
    /// Audits the hypervisor ran (boot, after every conversion, on request).
    pub audits: u64,
    /// Violations: the guest's count from `PD_AUDIT` plus one per `audit violation` line.
    pub violations: u64,
    /// Secret words the guest found changed.
    pub mismatches: u64,
    /// Hypervisor failures (a halt with status 3, or no halt line) and crashed domains
    /// (`stopped` lines).
    pub panics: u64,
    /// The seed.
    pub seed: u64,
}

impl SoakFigures {
    /// Reads the figures from a run's console; `None` if the guest's summary is missing.
    pub fn from_console(console: &str, halt: Option<&HaltLine>) -> Option<Self> {
        let summary = line(console, "guest", "hostile soak calls=")?;
        let violation_lines = console::lines_of(console, "hypervisor")
            .filter(|text| text.starts_with("audit violation"))
            .count() as u64;
        let stopped = console::lines_of(console, "hypervisor")
            .filter(|text| text.starts_with("stopped "))
            .count() as u64;
        // No halt line at all counts as a panic too: the hypervisor never got to say why.
        let panicked = halt.is_none_or(|halt| halt.status == 3);
        Some(Self {
            calls: number(summary, "calls")?,
            audits: number(summary, "audits")?,
            violations: number(summary, "violations")? + violation_lines,
            mismatches: number(summary, "mismatches")?,
            panics: u64::from(panicked) + stopped,
            seed: number(summary, "seed")?,
        })
    }

    /// `soak: calls=N audits=A violations=V mismatches=M panics=P seed=S`.
    pub fn line(&self) -> String {
        format!(
            "soak: calls={} audits={} violations={} mismatches={} panics={} seed={:#x}",
            self.calls, self.audits, self.violations, self.mismatches, self.panics, self.seed
        )
    }

    /// Whether the run is clean: no violation, no mismatch, no panic.
    pub fn clean(&self) -> bool {
        self.violations == 0 && self.mismatches == 0 && self.panics == 0
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const CONSOLE: &str = "FS|guest|hostile soak calls=1000 ok=1 not-supported=2 not-required=3 invalid=4 other=5 smc=6 random-ids=7 audits=321 violations=0 mismatches=0 seed=0x5eed\n\
        FS|hypervisor|halt status=0 reason=system-off by=vmm faults=1 notifications=0 calls=0 preemptions=0 stopped=0\n";

    #[test]
    fn a_clean_console_gives_its_figures() {
        let halt = console::find_halt(CONSOLE);
        let figures = SoakFigures::from_console(CONSOLE, halt.as_ref()).unwrap();
        assert_eq!(
            figures.line(),
            "soak: calls=1000 audits=321 violations=0 mismatches=0 panics=0 seed=0x5eed"
        );
        assert!(figures.clean());
    }

    #[test]
    fn violations_mismatches_and_panics_each_make_it_unclean() {
        let violation = format!("FS|hypervisor|audit violation I1 domain1 pa 0x1000: x\n{CONSOLE}");
        let halt = console::find_halt(&violation);
        let figures = SoakFigures::from_console(&violation, halt.as_ref()).unwrap();
        assert_eq!(figures.violations, 1);
        assert!(!figures.clean());

        let mismatch = CONSOLE.replace("mismatches=0", "mismatches=3");
        let figures = SoakFigures::from_console(&mismatch, None).unwrap();
        assert_eq!((figures.mismatches, figures.panics), (3, 1));
        assert!(!figures.clean());

        let panic = CONSOLE.replace("status=0 reason=system-off", "status=3 reason=panic");
        let halt = console::find_halt(&panic);
        let figures = SoakFigures::from_console(&panic, halt.as_ref()).unwrap();
        assert_eq!(figures.panics, 1);
        assert!(!figures.clean());
        assert_eq!(SoakFigures::from_console("FS|guest|nothing\n", None), None);
    }
}
