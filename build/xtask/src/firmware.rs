//! Building the AArch64 firmware: the EL2 kernel, the PD programs and the guest images.
//!
//! Everything goes to `<workspace>/target/firmware`, a target directory of its own, so the nested
//! `cargo build` never waits on the lock of the outer `cargo xtask`/`cargo test` build. Each PD
//! bin is copied to `target/firmware/programs/<bin>.elf`, the image builder's search path, so a
//! `system.xml` names programs as `<program_image path="hello.elf" />`.
//!
//! Each guest bin (a crate under `guest_images/` with bin targets) is copied there too, as
//! `<bin>.elf`, next to `<bin>.bin`: its flat image, the bytes of its `PT_LOAD` segments laid out
//! from the lowest load address (the guest's link base, 0x4000_0000), which a memory region names
//! with `prefill_path="<bin>.bin"` to place the guest in its RAM ([`flat_image`]).
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
/// The kernel's Cargo features: `el2` enables the EL2 binary; `audit-every-conversion` runs the
/// I1-I4 audit after every conversion, so every QEMU run (tests, `run`, `soak`, `audit`) halts
/// with `reason=audit-violation` on the first violation.
pub const KERNEL_FEATURE: &str = "el2,audit-every-conversion";
/// The features of the kernel `cargo xtask bench` measures: the shipped kernel, without the
/// audit after every conversion (a walk of every frame, about 16 M instructions per conversion
/// on the bench guest's machine, which no real system pays).
pub const BENCH_KERNEL_FEATURE: &str = "el2";
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

/// The workspace root (the directory of the root `Cargo.toml`), fixed when this crate was built:
/// this crate is `build/xtask`, two levels below it.
pub fn workspace_root() -> PathBuf {
    let xtask_crate = Path::new(env!("CARGO_MANIFEST_DIR"));
    xtask_crate
        .ancestors()
        .nth(2)
        .unwrap_or(xtask_crate)
        .to_owned()
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
    /// A guest ELF has no flat image (see [`flat_image`]).
    FlatImage(PathBuf, String),
}

impl fmt::Display for FirmwareError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FirmwareError::Cargo { command, detail } => write!(f, "`{command}` failed: {detail}"),
            FirmwareError::Metadata(detail) => write!(f, "reading `cargo metadata`: {detail}"),
            FirmwareError::Io(path, error) => write!(f, "{}: {error}", path.display()),
            FirmwareError::FlatImage(path, reason) => {
                write!(f, "{}: no flat image: {reason}", path.display())
            }
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
    /// Each crate under `guest_images/` that has bins (guest images), with its bin names.
    pub guest_packages: Vec<(String, Vec<String>)>,
    /// Workspace packages that only build for AArch64 (the PD crates and the crates under
    /// `guest_images/` with bins): host `cargo test --workspace` excludes them. The libraries
    /// under `guest_images/` (the guest runtime, the VMM/guest protocol) are host-tested.
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
    let is_guest_image = |package: &MetadataPackage| {
        package
            .manifest_path
            .components()
            .any(|part| part.as_os_str() == GUEST_IMAGES_DIR)
            && package
                .targets
                .iter()
                .any(|target| target.kind.iter().any(|kind| kind == "bin"))
    };
    let guest_packages: Vec<(String, Vec<String>)> = metadata
        .packages
        .iter()
        .filter(|package| is_guest_image(package))
        .filter_map(|package| bins_of(&package.name).map(|bins| (package.name.clone(), bins)))
        .collect();
    let firmware_only = metadata
        .packages
        .iter()
        .filter(|package| PD_PACKAGES.contains(&package.name.as_str()) || is_guest_image(package))
        .map(|package| package.name.clone())
        .collect();
    Ok(FirmwarePlan {
        kernel,
        pd_packages,
        guest_packages,
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

/// `<workspace>/target/firmware-bench`: the target directory of the bench kernel, apart from the
/// test kernel's so that neither build undoes the other.
pub fn bench_kernel_dir(workspace_root: &Path) -> PathBuf {
    workspace_root.join("target").join("firmware-bench")
}

/// Builds the kernel `cargo xtask bench` measures ([`BENCH_KERNEL_FEATURE`]) and returns its ELF.
pub fn build_bench_kernel(workspace_root: &Path) -> Result<PathBuf, FirmwareError> {
    let dir = bench_kernel_dir(workspace_root);
    eprintln!("xtask: building the bench kernel ({KERNEL_TARGET}, release, features {BENCH_KERNEL_FEATURE})");
    let mut args = vec!["build".to_owned()];
    args.extend(
        [
            "-p",
            KERNEL_PACKAGE,
            "--bin",
            KERNEL_BIN,
            "--features",
            BENCH_KERNEL_FEATURE,
            "--target",
            KERNEL_TARGET,
            "--release",
            "--target-dir",
        ]
        .map(str::to_owned),
    );
    args.push(dir.display().to_string());
    cargo_build(workspace_root, &args)?;
    Ok(dir.join(KERNEL_TARGET).join("release").join(KERNEL_BIN))
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
    // PD programs, then guest images, which also get a flat `<bin>.bin` next to their ELF.
    let groups = [
        (&plan.pd_packages, "PD programs", false),
        (&plan.guest_packages, "guest images", true),
    ];
    for (packages, what, flat) in groups {
        for (package, bins) in packages {
            eprintln!(
                "xtask: building {what} of {package} ({PD_TARGET}, release): {}",
                bins.join(", ")
            );
            cargo_build(workspace_root, &pd_build_args(workspace_root, package))?;
            for bin in bins {
                let from = release_dir.join(bin);
                let to = programs_dir.join(format!("{bin}.elf"));
                install_program(&from, &to)?;
                if flat {
                    install_flat_image(&to, &programs_dir.join(format!("{bin}.bin")))?;
                }
                programs.push(to);
            }
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

/// The most bytes a flat image may span (the guests' RAM regions are a few MiB): a bigger span
/// means a segment far from the others, which a prefill could not hold anyway.
pub const FLAT_IMAGE_MAX: u64 = 64 << 20;

/// A guest's flat image: the bytes to place at `base`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlatImage {
    /// The physical (load) address of the first byte: the lowest `p_paddr` of a segment with
    /// file bytes.
    pub base: u64,
    /// The segments' file bytes at `p_paddr - base`; gaps between segments are zero. Memory
    /// past a segment's file size (`.bss`) is not included: the guest zeroes it itself.
    pub bytes: Vec<u8>,
}

/// The flat image of the ELF file `elf` (from `path`, for messages): every `PT_LOAD` segment's
/// file bytes, laid out by `p_paddr`. Refused: not a little-endian ELF64, no segment with file
/// bytes, segments that overlap, or a span over [`FLAT_IMAGE_MAX`].
pub fn flat_image(path: &Path, elf: &[u8]) -> Result<FlatImage, FirmwareError> {
    use object::elf::PT_LOAD;
    use object::read::elf::{ElfFile64, ProgramHeader};
    use object::{Endianness, Object};

    let bad = |reason: &str| FirmwareError::FlatImage(path.to_owned(), reason.to_owned());
    let file = ElfFile64::<Endianness>::parse(elf).map_err(|error| bad(&error.to_string()))?;
    if !file.is_little_endian() {
        return Err(bad("big-endian ELF"));
    }
    let endian = file.endian();
    let mut segments = Vec::new();
    for header in file.elf_program_headers() {
        if header.p_type(endian) != PT_LOAD || header.p_filesz(endian) == 0 {
            continue;
        }
        let data = header
            .data(endian, elf)
            .map_err(|()| bad("segment data outside the file"))?;
        segments.push((header.p_paddr(endian), data));
    }
    segments.sort_by_key(|(address, _)| *address);
    let Some(&(base, _)) = segments.first() else {
        return Err(bad("no PT_LOAD segment with file bytes"));
    };
    let mut bytes: Vec<u8> = Vec::new();
    for (address, data) in segments {
        let offset = address - base;
        let end = offset
            .checked_add(data.len() as u64)
            .filter(|end| *end <= FLAT_IMAGE_MAX)
            .ok_or_else(|| bad("segments span more than 64 MiB"))?;
        if offset < bytes.len() as u64 {
            return Err(bad("PT_LOAD segments overlap"));
        }
        bytes.resize(offset as usize, 0);
        bytes.extend_from_slice(data);
        debug_assert_eq!(bytes.len() as u64, end);
    }
    Ok(FlatImage { base, bytes })
}

/// Writes the flat image of the guest ELF at `elf` to `to`, by write-then-rename as
/// [`install_program`] does.
fn install_flat_image(elf: &Path, to: &Path) -> Result<(), FirmwareError> {
    let bytes = std::fs::read(elf).map_err(|error| FirmwareError::Io(elf.to_owned(), error))?;
    let image = flat_image(elf, &bytes)?;
    let partial = to.with_extension(format!("bin.partial-{}", std::process::id()));
    std::fs::write(&partial, &image.bytes)
        .map_err(|error| FirmwareError::Io(partial.clone(), error))?;
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
             "manifest_path": "/w/guest_images/demo/Cargo.toml"},
            {"name": "guest-runtime", "targets": [{"name": "guest_runtime", "kind": ["lib"]}],
             "manifest_path": "/w/guest_images/runtime/Cargo.toml"}
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
        // Guest crates with bins are images; a library under guest_images/ is host-tested.
        assert_eq!(
            plan.guest_packages,
            vec![("demo-guest".to_owned(), vec!["demo".to_owned()])]
        );
        assert_eq!(
            plan.firmware_only,
            vec!["frameshift-pd-programs", "demo-guest"]
        );
    }

    /// A little-endian AArch64 ELF64 executable with one program header per `(type, paddr,
    /// file bytes, memory size)`, the data after the headers.
    fn elf(segments: &[(u32, u64, &[u8], u64)]) -> Vec<u8> {
        let mut out = vec![0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        out.extend(2u16.to_le_bytes()); // e_type: EXEC
        out.extend(183u16.to_le_bytes()); // e_machine: AArch64
        out.extend(1u32.to_le_bytes());
        out.extend(0x4000_0000u64.to_le_bytes()); // e_entry
        out.extend(64u64.to_le_bytes()); // e_phoff
        out.extend(0u64.to_le_bytes()); // e_shoff
        out.extend(0u32.to_le_bytes());
        for half in [64u16, 56, segments.len() as u16, 64, 0, 0] {
            out.extend(half.to_le_bytes());
        }
        let mut offset = 64 + 56 * segments.len() as u64;
        for (kind, paddr, data, memsz) in segments {
            out.extend(kind.to_le_bytes());
            out.extend(4u32.to_le_bytes()); // p_flags: R
            out.extend(offset.to_le_bytes());
            out.extend(paddr.to_le_bytes()); // p_vaddr
            out.extend(paddr.to_le_bytes()); // p_paddr
            out.extend((data.len() as u64).to_le_bytes());
            out.extend(memsz.to_le_bytes());
            out.extend(0x1000u64.to_le_bytes());
            offset += data.len() as u64;
        }
        for (_, _, data, _) in segments {
            out.extend_from_slice(data);
        }
        out
    }

    #[test]
    fn flat_image_lays_segments_out_from_the_lowest_address() {
        let path = Path::new("guest.elf");
        let bytes = elf(&[
            (1, 0x4000_2000, b"DATA", 0x10),
            (1, 0x4000_0000, b"CODE", 4),
            (1, 0x4000_3000, b"", 0x5000), // .bss: no file bytes, not in the image
            (6, 0x3000_0000, b"PHDR", 4),  // not PT_LOAD
        ]);
        let image = flat_image(path, &bytes).expect("a valid ELF");
        assert_eq!(image.base, 0x4000_0000);
        assert_eq!(image.bytes.len(), 0x2004);
        assert_eq!(&image.bytes[..4], b"CODE");
        assert!(image.bytes[4..0x2000].iter().all(|byte| *byte == 0));
        assert_eq!(&image.bytes[0x2000..], b"DATA");
    }

    #[test]
    fn flat_image_refuses_overlaps_empty_and_garbage() {
        let path = Path::new("guest.elf");
        let overlapping = elf(&[(1, 0x4000_0000, b"ABCDEFGH", 8), (1, 0x4000_0004, b"X", 1)]);
        let refusal = flat_image(path, &overlapping).expect_err("overlap");
        assert_eq!(
            refusal.to_string(),
            "guest.elf: no flat image: PT_LOAD segments overlap"
        );
        let empty = elf(&[(1, 0x4000_0000, b"", 0x1000)]);
        assert!(flat_image(path, &empty).is_err());
        let far = elf(&[(1, 0x4000_0000, b"A", 1), (1, 0x8000_0000, b"B", 1)]);
        assert!(flat_image(path, &far).is_err());
        assert!(flat_image(path, b"not an elf").is_err());
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
            "build -p frameshift-hypervisor --bin frameshift-hypervisor --features el2,audit-every-conversion \
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
