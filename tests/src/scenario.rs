//! One scenario run: build the firmware once, build the system's boot image, boot it in QEMU.
//!
//! Runs are serialised within a test binary: the machine is shared, and a timeout should measure
//! a stuck system, not a queue of QEMUs.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use frameshift_build::firmware::{self, Firmware};
use frameshift_build::qemu::{self, QemuOptions, RunOutcome};

/// How long a scenario may run before it counts as hung (and fails).
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// `tests/systems/<name>.xml`.
pub fn system_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("systems")
        .join(format!("{name}.xml"))
}

/// The firmware: what `cargo xtask test` passed in, else built here once per test binary.
pub fn firmware() -> Result<&'static Firmware, String> {
    static FIRMWARE: OnceLock<Result<Firmware, String>> = OnceLock::new();
    FIRMWARE
        .get_or_init(|| match Firmware::from_env() {
            Some(firmware) => Ok(firmware),
            None => firmware::build(&firmware::workspace_root()).map_err(|error| error.to_string()),
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// Where this test binary keeps its images: `target/scenario-images/<name>.img`.
pub fn image_path(name: &str) -> PathBuf {
    firmware::workspace_root()
        .join("target")
        .join("scenario-images")
        .join(format!("{name}.img"))
}

/// Build the boot image of `system` to `image_path(name)`.
pub fn build_image(system: &Path, name: &str) -> Result<PathBuf, String> {
    let firmware = firmware()?;
    let kernel = firmware.kernel().map_err(|error| error.to_string())?;
    let image = image_path(name);
    if let Some(dir) = image.parent() {
        std::fs::create_dir_all(dir).map_err(|error| format!("{}: {error}", dir.display()))?;
    }
    // The image builder (branch `image`) has not landed on this branch yet: until it is merged,
    // every QEMU scenario fails here, loudly.
    Err(format!(
        "cannot build {} for {} with kernel {}: the image builder is not merged into this branch yet",
        image.display(),
        system.display(),
        kernel.display()
    ))
}

/// Boot `image` in QEMU with the scenario timeout.
pub fn boot(image: &Path) -> Result<RunOutcome, String> {
    static QEMU: Mutex<()> = Mutex::new(());
    let _one_at_a_time = QEMU.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let options = QemuOptions {
        timeout: Some(TIMEOUT),
        ..QemuOptions::default()
    };
    let outcome = qemu::run(image, &options).map_err(|error| error.to_string())?;
    if outcome.timed_out {
        return Err(format!(
            "timed out after {TIMEOUT:?}; console so far:\n{}",
            outcome.console
        ));
    }
    Ok(outcome)
}

/// Build and boot `tests/systems/<name>.xml`.
pub fn run(name: &str) -> Result<RunOutcome, String> {
    let image = build_image(&system_path(name), name)?;
    boot(&image)
}
