//! One scenario run: build the firmware once, build the system's boot image, boot it in QEMU.
//!
//! Runs are serialised within a test binary: the machine is shared, and a timeout should measure
//! a stuck system, not a queue of QEMUs.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use frameshift_build::image::{self, BuiltImage, ImageInputs};
use frameshift_xtask::console::HaltLine;
use frameshift_xtask::firmware::{self, Firmware};
use frameshift_xtask::qemu::{self, QemuOptions, RunOutcome};

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

/// Where images of scenario `name` are written: `target/scenario-images/<name>/`.
pub fn image_dir(name: &str) -> PathBuf {
    firmware::workspace_root()
        .join("target")
        .join("scenario-images")
        .join(name)
}

/// Parse and validate `system`, then build its boot image with the firmware.
pub fn build(system: &Path) -> Result<BuiltImage, String> {
    let firmware = firmware()?;
    let kernel = firmware.kernel().map_err(|error| error.to_string())?;
    let search_paths = vec![firmware.programs_dir.clone()];
    let description = frameshift_build::sdf::parse_file(system, &search_paths)
        .map_err(|error| error.to_string())?;
    let inputs = ImageInputs::new(kernel.to_owned(), search_paths);
    image::build(&description, &inputs).map_err(|error| error.to_string())
}

/// Build the boot image of `system` into `image_dir(name)`; returns the image file.
pub fn build_image(system: &Path, name: &str) -> Result<PathBuf, String> {
    let built = build(system)?;
    let written = built
        .write_to(&image_dir(name))
        .map_err(|error| error.to_string())?;
    Ok(written.image)
}

/// Boot `image` in QEMU with the scenario timeout.
pub fn boot(image: &Path) -> Result<RunOutcome, String> {
    boot_with(image, QemuOptions::default())
}

/// Boot `image` in QEMU with `options` (an `icount` run, another CPU) and the scenario timeout.
pub fn boot_with(image: &Path, options: QemuOptions) -> Result<RunOutcome, String> {
    static QEMU: Mutex<()> = Mutex::new(());
    let _one_at_a_time = QEMU.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let options = QemuOptions {
        timeout: Some(TIMEOUT),
        ..options
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
    run_with(name, QemuOptions::default())
}

/// Build and boot `tests/systems/<name>.xml` with `options` (see [`boot_with`]).
pub fn run_with(name: &str, options: QemuOptions) -> Result<RunOutcome, String> {
    let image = build_image(&system_path(name), name)?;
    boot_with(&image, options)
}

/// The run's console must follow the protocol for `domains`, end with `halt status=<status>`,
/// and QEMU's verdict must agree; returns the halt line.
pub fn finished(run: &RunOutcome, domains: &[&str], status: u32) -> Result<HaltLine, String> {
    let halt = crate::protocol::check(&run.console, domains)
        .map_err(|error| format!("{error}\nconsole:\n{}", run.console))?;
    if halt.status != status || run.exit_code() != status as i32 {
        return Err(format!(
            "expected halt status {status}, got {halt} (exit code {}); console:\n{}",
            run.exit_code(),
            run.console
        ));
    }
    Ok(halt)
}
