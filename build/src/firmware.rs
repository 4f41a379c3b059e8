//! Building the AArch64 firmware: the EL2 kernel and the PD programs.
//!
//! Everything goes to `<workspace>/target/firmware`, a target directory of its own, so the nested
//! `cargo build` never waits on the lock of the outer `cargo xtask`/`cargo test` build. Each PD
//! bin is copied to `target/firmware/programs/<bin>.elf`, the image builder's search path, so a
//! `system.xml` names programs as `<program_image path="hello.elf" />`.
//!
//! Which crates exist is read from `cargo metadata`, so a workspace without the PD crates yet (or
//! without the kernel binary) still builds what it has.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Deserialize;

/// The kernel crate and its binary (built with feature `el2`).
pub const KERNEL_PACKAGE: &str = "frameshift-hypervisor";
/// The kernel binary's name.
pub const KERNEL_BIN: &str = "frameshift-hypervisor";
/// The kernel's Cargo feature that enables the EL2 binary.
pub const KERNEL_FEATURE: &str = "el2";
/// The kernel's target: softfloat, so the hypervisor never touches FP/SIMD state.
pub const KERNEL_TARGET: &str = "aarch64-unknown-none-softfloat";
/// The PD crates whose bins become program images, in build order.
pub const PD_PACKAGES: [&str; 2] = ["frameshift-pd-programs", "frameshift-vmm-pd"];
/// The directory whose crates are bare-metal guests (firmware only).
pub const GUEST_IMAGES_DIR: &str = "guest_images";
/// The PDs' target (PDs may use FP).
pub const PD_TARGET: &str = "aarch64-unknown-none";

/// Environment variable through which `cargo xtask test` passes the kernel ELF to the tests.
pub const KERNEL_ELF_ENV: &str = "FRAMESHIFT_KERNEL_ELF";
/// Environment variable through which `cargo xtask test` passes the program directory.
pub const PROGRAMS_DIR_ENV: &str = "FRAMESHIFT_PROGRAMS_DIR";

/// The workspace root (the directory of the root `Cargo.toml`), fixed when this crate was built.
pub fn workspace_root() -> PathBuf {
    let build_crate = Path::new(env!("CARGO_MANIFEST_DIR"));
    build_crate.parent().unwrap_or(build_crate).to_owned()
}

/// `<workspace>/target/firmware`.
pub fn firmware_dir(workspace_root: &Path) -> PathBuf {
    workspace_root.join("target").join("firmware")
}

/// `<workspace>/target/firmware/programs`: where PD program images are collected.
pub fn programs_dir(workspace_root: &Path) -> PathBuf {
    firmware_dir(workspace_root).join("programs")
}

/// Where cargo leaves the kernel ELF.
pub fn kernel_elf_path(workspace_root: &Path) -> PathBuf {
    firmware_dir(workspace_root)
        .join(KERNEL_TARGET)
        .join("release")
        .join(KERNEL_BIN)
}

/// The built firmware.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Firmware {
    /// The kernel ELF (with symbols), if the workspace has the kernel binary.
    pub kernel: Option<PathBuf>,
    /// The directory holding every `<bin>.elf` program image.
    pub programs_dir: PathBuf,
    /// The program images built, in build order.
    pub programs: Vec<PathBuf>,
}

impl Firmware {
    /// The kernel ELF, or an error explaining that the workspace has no kernel binary.
    pub fn kernel(&self) -> Result<&Path, FirmwareError> {
        self.kernel.as_deref().ok_or(FirmwareError::NoKernel)
    }

    /// The firmware `cargo xtask test` passed through [`KERNEL_ELF_ENV`] and
    /// [`PROGRAMS_DIR_ENV`], if it did.
    pub fn from_env() -> Option<Firmware> {
        let kernel = std::env::var_os(KERNEL_ELF_ENV).map(PathBuf::from);
        let programs_dir = PathBuf::from(std::env::var_os(PROGRAMS_DIR_ENV)?);
        let mut programs: Vec<PathBuf> = std::fs::read_dir(&programs_dir)
            .ok()?
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            .filter(|path| path.extension().is_some_and(|ext| ext == "elf"))
            .collect();
        programs.sort();
        Some(Firmware {
            kernel,
            programs_dir,
            programs,
        })
    }

    /// The environment variables that pass this firmware to a child process (the tests).
    pub fn env_vars(&self) -> Vec<(&'static str, PathBuf)> {
        let mut vars = vec![(PROGRAMS_DIR_ENV, self.programs_dir.clone())];
        if let Some(kernel) = &self.kernel {
            vars.push((KERNEL_ELF_ENV, kernel.clone()));
        }
        vars
    }
}

/// Why the firmware could not be built.
#[derive(Debug)]
pub enum FirmwareError {
    /// `cargo metadata` or `cargo build` could not be run or failed.
    Cargo {
        /// The command line.
        command: String,
        /// What went wrong.
        detail: String,
    },
    /// `cargo metadata` printed something unexpected.
    Metadata(String),
    /// Copying a program image failed.
    Io(PathBuf, io::Error),
    /// The workspace has no kernel binary (the kernel has not been merged yet).
    NoKernel,
}

impl fmt::Display for FirmwareError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FirmwareError::Cargo { command, detail } => write!(f, "`{command}` failed: {detail}"),
            FirmwareError::Metadata(detail) => write!(f, "reading `cargo metadata`: {detail}"),
            FirmwareError::Io(path, error) => write!(f, "{}: {error}", path.display()),
            FirmwareError::NoKernel => write!(
                f,
                "the workspace has no kernel binary: package {KERNEL_PACKAGE} has no bin target {KERNEL_BIN}"
            ),
        }
    }
}

impl std::error::Error for FirmwareError {}

/// The firmware crates the workspace actually contains.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FirmwarePlan {
    /// The kernel binary exists.
    pub kernel: bool,
    /// Each present PD crate with its bin names.
    pub pd_packages: Vec<(String, Vec<String>)>,
    /// Workspace packages that only build for AArch64 (the PD crates and everything under
    /// `guest_images/`): host `cargo test --workspace` excludes them.
    pub firmware_only: Vec<String>,
}

#[derive(Deserialize)]
struct Metadata {
    packages: Vec<MetadataPackage>,
}

#[derive(Deserialize)]
struct MetadataPackage {
    name: String,
    targets: Vec<MetadataTarget>,
    #[serde(default)]
    manifest_path: PathBuf,
}

#[derive(Deserialize)]
struct MetadataTarget {
    name: String,
    kind: Vec<String>,
}

/// Decides what to build from `cargo metadata --no-deps --format-version 1` output.
pub fn plan_from_metadata(json: &str) -> Result<FirmwarePlan, FirmwareError> {
    let metadata: Metadata =
        serde_json::from_str(json).map_err(|error| FirmwareError::Metadata(error.to_string()))?;
    let bins_of = |package: &str| -> Option<Vec<String>> {
        let package = metadata
            .packages
            .iter()
            .find(|candidate| candidate.name == package)?;
        Some(
            package
                .targets
                .iter()
                .filter(|target| target.kind.iter().any(|kind| kind == "bin"))
                .map(|target| target.name.clone())
                .collect(),
        )
    };
    let kernel =
        bins_of(KERNEL_PACKAGE).is_some_and(|bins| bins.iter().any(|bin| bin == KERNEL_BIN));
    let pd_packages = PD_PACKAGES
        .iter()
        .filter_map(|package| bins_of(package).map(|bins| ((*package).to_owned(), bins)))
        .filter(|(_, bins)| !bins.is_empty())
        .collect();
    let firmware_only = metadata
        .packages
        .iter()
        .filter(|package| {
            PD_PACKAGES.contains(&package.name.as_str())
                || package
                    .manifest_path
                    .components()
                    .any(|part| part.as_os_str() == GUEST_IMAGES_DIR)
        })
        .map(|package| package.name.clone())
        .collect();
    Ok(FirmwarePlan {
        kernel,
        pd_packages,
        firmware_only,
    })
}

/// The cargo that runs us (cargo sets `CARGO` for `cargo run` and tests), else `cargo` on PATH.
fn cargo_program() -> PathBuf {
    std::env::var_os("CARGO").map_or_else(|| PathBuf::from("cargo"), PathBuf::from)
}

/// Reads the workspace's firmware plan with `cargo metadata`.
pub fn plan(workspace_root: &Path) -> Result<FirmwarePlan, FirmwareError> {
    let args = ["metadata", "--no-deps", "--format-version", "1"];
    let output = Command::new(cargo_program())
        .args(args)
        .current_dir(workspace_root)
        .stdin(Stdio::null())
        .output()
        .map_err(|error| cargo_error(&args, error))?;
    if !output.status.success() {
        return Err(cargo_error(
            &args,
            String::from_utf8_lossy(&output.stderr).trim(),
        ));
    }
    plan_from_metadata(&String::from_utf8_lossy(&output.stdout))
}

/// The `cargo build` arguments for the kernel.
pub fn kernel_build_args(workspace_root: &Path) -> Vec<String> {
    let selection = [
        "-p",
        KERNEL_PACKAGE,
        "--bin",
        KERNEL_BIN,
        "--features",
        KERNEL_FEATURE,
    ];
    release_build_args(workspace_root, &selection, KERNEL_TARGET)
}

/// The `cargo build` arguments for one PD crate.
pub fn pd_build_args(workspace_root: &Path, package: &str) -> Vec<String> {
    release_build_args(workspace_root, &["-p", package, "--bins"], PD_TARGET)
}

/// `cargo build <selection> --target <target> --release` into the firmware target directory,
/// which is separate so that a nested cargo never waits on the outer build's lock.
fn release_build_args(workspace_root: &Path, selection: &[&str], target: &str) -> Vec<String> {
    let mut args = vec!["build".to_owned()];
    args.extend(selection.iter().map(|arg| (*arg).to_owned()));
    args.extend(["--target", target, "--release", "--target-dir"].map(str::to_owned));
    args.push(firmware_dir(workspace_root).display().to_string());
    args
}

/// Builds the kernel and every PD program the workspace has, copying each PD bin to
/// [`programs_dir`]. Progress goes to stderr.
pub fn build(workspace_root: &Path) -> Result<Firmware, FirmwareError> {
    build_planned(workspace_root, &plan(workspace_root)?)
}

/// [`build`] for an already read plan.
pub fn build_planned(
    workspace_root: &Path,
    plan: &FirmwarePlan,
) -> Result<Firmware, FirmwareError> {
    let kernel = if plan.kernel {
        eprintln!("xtask: building the kernel ({KERNEL_TARGET}, release)");
        cargo_build(workspace_root, &kernel_build_args(workspace_root))?;
        Some(kernel_elf_path(workspace_root))
    } else {
        eprintln!("xtask: no {KERNEL_BIN} binary in the workspace yet; skipping the kernel");
        None
    };

    let programs_dir = programs_dir(workspace_root);
    std::fs::create_dir_all(&programs_dir)
        .map_err(|error| FirmwareError::Io(programs_dir.clone(), error))?;
    let release_dir = firmware_dir(workspace_root).join(PD_TARGET).join("release");
    let mut programs = Vec::new();
    for (package, bins) in &plan.pd_packages {
        eprintln!(
            "xtask: building PD programs of {package} ({PD_TARGET}, release): {}",
            bins.join(", ")
        );
        cargo_build(workspace_root, &pd_build_args(workspace_root, package))?;
        for bin in bins {
            let from = release_dir.join(bin);
            let to = programs_dir.join(format!("{bin}.elf"));
            install_program(&from, &to)?;
            programs.push(to);
        }
    }
    for skipped in PD_PACKAGES
        .iter()
        .filter(|name| !plan.pd_packages.iter().any(|(present, _)| present == *name))
    {
        eprintln!("xtask: no package {skipped} in the workspace yet; skipping it");
    }
    Ok(Firmware {
        kernel,
        programs_dir,
        programs,
    })
}

/// Copies a built PD bin into the program directory by copy-then-rename, so a test or image build
/// reading `to` at the same time (tests build firmware concurrently) never sees a partial file.
fn install_program(from: &Path, to: &Path) -> Result<(), FirmwareError> {
    let partial = to.with_extension(format!("elf.partial-{}", std::process::id()));
    std::fs::copy(from, &partial).map_err(|error| FirmwareError::Io(from.to_owned(), error))?;
    std::fs::rename(&partial, to).map_err(|error| FirmwareError::Io(to.to_owned(), error))
}

fn cargo_build(workspace_root: &Path, args: &[String]) -> Result<(), FirmwareError> {
    let status = Command::new(cargo_program())
        .args(args)
        .current_dir(workspace_root)
        .stdin(Stdio::null())
        // Cargo's progress is on stderr already; keep our stdout for task output.
        .stdout(Stdio::from(io::stderr()))
        .status()
        .map_err(|error| cargo_error(args, error))?;
    if status.success() {
        Ok(())
    } else {
        Err(cargo_error(args, status))
    }
}

fn cargo_error(args: &[impl AsRef<str>], detail: impl fmt::Display) -> FirmwareError {
    let command = std::iter::once("cargo")
        .chain(args.iter().map(AsRef::as_ref))
        .collect::<Vec<_>>()
        .join(" ");
    FirmwareError::Cargo {
        command,
        detail: detail.to_string(),
    }
}

#[cfg(test)]
// A failed expectation in a test is the test failing, which is what panicking reports.
#[allow(clippy::expect_used, clippy::unwrap_used)]
mod tests {
    use super::*;

    const METADATA: &str = r#"{
        "packages": [
            {"name": "frameshift-hypervisor", "targets": [
                {"name": "frameshift_hypervisor", "kind": ["lib"]},
                {"name": "frameshift-hypervisor", "kind": ["bin"]}
            ]},
            {"name": "frameshift-pd-programs", "targets": [
                {"name": "hello", "kind": ["bin"]},
                {"name": "attacker", "kind": ["bin"]}
            ]},
            {"name": "frameshift-build", "targets": [{"name": "xtask", "kind": ["bin"]}],
             "manifest_path": "/w/build/Cargo.toml"},
            {"name": "demo-guest", "targets": [{"name": "demo", "kind": ["bin"]}],
             "manifest_path": "/w/guest_images/demo/Cargo.toml"}
        ],
        "workspace_root": "/w"
    }"#;

    #[test]
    fn plans_present_crates_and_skips_missing_ones() {
        let plan = plan_from_metadata(METADATA).expect("valid metadata");
        assert!(plan.kernel);
        assert_eq!(
            plan.pd_packages,
            vec![(
                "frameshift-pd-programs".to_owned(),
                vec!["hello".to_owned(), "attacker".to_owned()]
            )]
        );
        assert_eq!(
            plan.firmware_only,
            vec!["frameshift-pd-programs", "demo-guest"]
        );
    }

    #[test]
    fn kernel_needs_its_bin_target() {
        let json = r#"{"packages": [{"name": "frameshift-hypervisor", "targets": [
            {"name": "frameshift_hypervisor", "kind": ["lib"]}]}]}"#;
        let plan = plan_from_metadata(json).expect("valid metadata");
        assert_eq!(plan, FirmwarePlan::default());
        assert!(plan_from_metadata("not json").is_err());
    }

    #[test]
    fn build_commands_match_the_fixed_interface() {
        let root = Path::new("/w");
        assert_eq!(
            kernel_build_args(root).join(" "),
            "build -p frameshift-hypervisor --bin frameshift-hypervisor --features el2 \
             --target aarch64-unknown-none-softfloat --release --target-dir /w/target/firmware"
        );
        assert_eq!(
            pd_build_args(root, "frameshift-vmm-pd").join(" "),
            "build -p frameshift-vmm-pd --bins --target aarch64-unknown-none --release \
             --target-dir /w/target/firmware"
        );
        assert_eq!(
            kernel_elf_path(root),
            Path::new(
                "/w/target/firmware/aarch64-unknown-none-softfloat/release/frameshift-hypervisor"
            )
        );
        assert_eq!(programs_dir(root), Path::new("/w/target/firmware/programs"));
    }

    #[test]
    fn env_vars_round_trip_the_paths() {
        let firmware = Firmware {
            kernel: Some(PathBuf::from("/k")),
            programs_dir: PathBuf::from("/p"),
            programs: Vec::new(),
        };
        let vars = firmware.env_vars();
        assert!(vars.contains(&(KERNEL_ELF_ENV, PathBuf::from("/k"))));
        assert!(vars.contains(&(PROGRAMS_DIR_ENV, PathBuf::from("/p"))));
        let no_kernel = Firmware {
            kernel: None,
            ..firmware
        };
        assert!(matches!(no_kernel.kernel(), Err(FirmwareError::NoKernel)));
    }
}
