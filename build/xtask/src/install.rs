//! Tool installation for a fresh machine: the two AArch64 rustup targets and QEMU >= 7.2, and
//! (for `cargo xtask mutants` only) cargo-mutants.
//!
//! The decisions are pure functions over what was observed (command output, uid, whether apt-get
//! exists) so they can be unit tested; [`ensure_tools`] does the observing and the installing.
//! Progress goes to stderr so stdout stays the console / task output.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::qemu::QEMU_PROGRAM;

/// The targets firmware is built for: the hypervisor (softfloat, so it never touches FP state)
/// and PDs/guests (which may use FP). DESIGN.md section 9.
pub const REQUIRED_TARGETS: [&str; 2] = ["aarch64-unknown-none", "aarch64-unknown-none-softfloat"];

/// The oldest QEMU whose EL2 behaviour DESIGN.md section 9 was checked against.
pub const MIN_QEMU_VERSION: QemuVersion = QemuVersion {
    major: 7,
    minor: 2,
    patch: 0,
};

/// The Debian/Ubuntu package that provides `qemu-system-aarch64`.
pub const QEMU_APT_PACKAGE: &str = "qemu-system-arm";

/// A QEMU release number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct QemuVersion {
    /// Major release.
    pub major: u32,
    /// Minor release.
    pub minor: u32,
    /// Patch level (Debian's stable updates bump this, e.g. 7.2.22).
    pub patch: u32,
}

impl fmt::Display for QemuVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// Parses `qemu-system-aarch64 --version` output, e.g.
/// `QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)`.
pub fn parse_qemu_version(output: &str) -> Option<QemuVersion> {
    let first_line = output.lines().next()?;
    let (_, rest) = first_line.split_once("version ")?;
    let number = rest
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .next()?;
    let mut parts = number.split('.').map(str::parse::<u32>);
    let major = parts.next()?.ok()?;
    let minor = parts.next()?.ok()?;
    let patch = match parts.next() {
        Some(patch) => patch.ok()?,
        None => 0,
    };
    Some(QemuVersion {
        major,
        minor,
        patch,
    })
}

/// The required targets absent from `rustup target list --installed` output.
pub fn missing_targets(installed_list: &str) -> Vec<&'static str> {
    let installed: Vec<&str> = installed_list.lines().map(str::trim).collect();
    REQUIRED_TARGETS
        .into_iter()
        .filter(|target| !installed.contains(target))
        .collect()
}

/// What to do about QEMU.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QemuPlan {
    /// It is on PATH; only the version remains to be checked.
    Present,
    /// Install it: `apt-get update` then `apt-get install -y qemu-system-arm`.
    AptInstall,
    /// This process cannot install it; the user must follow this instruction (it names the exact
    /// command where there is one).
    Manual(String),
}

/// Decides how to get QEMU from what was observed.
pub fn plan_qemu(qemu_found: bool, is_root: bool, has_apt_get: bool) -> QemuPlan {
    match (qemu_found, is_root, has_apt_get) {
        (true, _, _) => QemuPlan::Present,
        (false, true, true) => QemuPlan::AptInstall,
        (false, false, true) => QemuPlan::Manual(format!(
            "run `sudo apt-get update && sudo apt-get install -y {QEMU_APT_PACKAGE}`"
        )),
        (false, _, false) => QemuPlan::Manual(format!(
            "install QEMU >= {MIN_QEMU_VERSION} so that `{QEMU_PROGRAM}` is on PATH \
             (Debian/Ubuntu: apt-get install -y {QEMU_APT_PACKAGE}; Fedora: dnf install qemu-system-aarch64; \
             macOS: brew install qemu)"
        )),
    }
}

/// Parses the effective uid from `/proc/self/status` (`Uid:\treal\teffective\tsaved\tfs`).
pub fn parse_effective_uid(proc_status: &str) -> Option<u32> {
    let line = proc_status.lines().find(|line| line.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// Why the tools could not be made ready.
#[derive(Debug)]
pub enum InstallError {
    /// A command could not be started or failed.
    Command {
        /// The command line, as the user would type it.
        command: String,
        /// What went wrong.
        detail: String,
    },
    /// The user must install QEMU themselves.
    QemuManual(String),
    /// QEMU is present but too old or its version is unreadable.
    QemuVersion(String),
}

impl fmt::Display for InstallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InstallError::Command { command, detail } => write!(f, "`{command}` failed: {detail}"),
            InstallError::QemuManual(command) => {
                write!(
                    f,
                    "{QEMU_PROGRAM} is not installed and this process cannot install it: {command}"
                )
            }
            InstallError::QemuVersion(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for InstallError {}

/// What [`ensure_tools`] found or installed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tools {
    /// The QEMU version in use.
    pub qemu_version: QemuVersion,
}

/// Makes sure the rustup targets and QEMU are present, installing what is missing where this
/// process can (rustup targets always; QEMU via apt-get when running as root).
pub fn ensure_tools() -> Result<Tools, InstallError> {
    ensure_targets()?;
    ensure_qemu()
}

/// Adds any missing [`REQUIRED_TARGETS`] with `rustup target add`.
pub fn ensure_targets() -> Result<(), InstallError> {
    let installed = match capture("rustup", &["target", "list", "--installed"]) {
        Ok(list) => list,
        // No rustup (a distribution toolchain): look in the sysroot instead.
        Err(_) => return check_targets_in_sysroot(),
    };
    let missing = missing_targets(&installed);
    if missing.is_empty() {
        return Ok(());
    }
    let mut args = vec!["target", "add"];
    args.extend(&missing);
    eprintln!("xtask: installing rust targets: rustup {}", args.join(" "));
    run_to_stderr("rustup", &args)
}

fn check_targets_in_sysroot() -> Result<(), InstallError> {
    let sysroot = capture("rustc", &["--print", "sysroot"])?;
    let rustlib = Path::new(sysroot.trim()).join("lib").join("rustlib");
    let missing: Vec<&str> = REQUIRED_TARGETS
        .into_iter()
        .filter(|target| !rustlib.join(target).is_dir())
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(InstallError::Command {
            command: "rustup target list --installed".to_owned(),
            detail: format!(
                "rustup is not available and the toolchain lacks {}; install rustup and run `rustup target add {}`",
                missing.join(", "),
                missing.join(" ")
            ),
        })
    }
}

/// The cargo subcommand `cargo xtask mutants` drives, and the crate that provides it.
pub const CARGO_MUTANTS: &str = "cargo-mutants";

/// Makes sure `cargo mutants` runs, installing it with `cargo install --locked cargo-mutants`
/// if it does not; returns its version line. Only `cargo xtask mutants` calls this: CI does not
/// run mutation checks, so nothing else installs it.
pub fn ensure_cargo_mutants() -> Result<String, InstallError> {
    let version = || capture("cargo", &["mutants", "--version"]);
    let found = match version() {
        Ok(found) => found,
        Err(_) => {
            let args = ["install", "--locked", CARGO_MUTANTS];
            eprintln!(
                "xtask: `cargo mutants` not found; installing it: {}",
                command_line("cargo", &args)
            );
            run_to_stderr("cargo", &args)?;
            version()?
        }
    };
    let found = found.trim().to_owned();
    eprintln!("xtask: using {found}");
    Ok(found)
}

/// Makes sure `qemu-system-aarch64` is on PATH (installing it with apt-get as root) and is at
/// least [`MIN_QEMU_VERSION`]; prints the version.
pub fn ensure_qemu() -> Result<Tools, InstallError> {
    let found = qemu_version_output().is_ok();
    match plan_qemu(found, is_root(), find_on_path("apt-get").is_some()) {
        QemuPlan::Present => {}
        QemuPlan::AptInstall => {
            eprintln!(
                "xtask: {QEMU_PROGRAM} not found; installing {QEMU_APT_PACKAGE} with apt-get"
            );
            run_to_stderr("apt-get", &["update"])?;
            run_to_stderr("apt-get", &["install", "-y", QEMU_APT_PACKAGE])?;
        }
        QemuPlan::Manual(command) => return Err(InstallError::QemuManual(command)),
    }
    let output = qemu_version_output()?;
    let version = parse_qemu_version(&output).ok_or_else(|| {
        InstallError::QemuVersion(format!(
            "cannot read the version from `{QEMU_PROGRAM} --version`: {output}"
        ))
    })?;
    if version < MIN_QEMU_VERSION {
        return Err(InstallError::QemuVersion(format!(
            "{QEMU_PROGRAM} {version} is too old: Frameshift needs QEMU >= {MIN_QEMU_VERSION}"
        )));
    }
    eprintln!("xtask: using {QEMU_PROGRAM} {version}");
    Ok(Tools {
        qemu_version: version,
    })
}

fn qemu_version_output() -> Result<String, InstallError> {
    capture(QEMU_PROGRAM, &["--version"])
}

/// Whether this process runs as root (effective uid 0).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| parse_effective_uid(&status))
        .or_else(|| {
            capture("id", &["-u"])
                .ok()
                .and_then(|uid| uid.trim().parse().ok())
        })
        == Some(0)
}

/// The first `program` file on PATH.
pub fn find_on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

fn command_line(program: &str, args: &[&str]) -> String {
    std::iter::once(program)
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ")
}

fn command_error(program: &str, args: &[&str], detail: impl fmt::Display) -> InstallError {
    InstallError::Command {
        command: command_line(program, args),
        detail: detail.to_string(),
    }
}

/// Runs a command and returns its stdout.
fn capture(program: &str, args: &[&str]) -> Result<String, InstallError> {
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|error| command_error(program, args, error))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(command_error(
            program,
            args,
            format!("{}: {}", output.status, stderr.trim()),
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Runs a command with its stdout redirected to our stderr (progress, not task output).
fn run_to_stderr(program: &str, args: &[&str]) -> Result<(), InstallError> {
    let status = Command::new(program)
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .stdout(Stdio::from(io::stderr()))
        .status()
        .map_err(|error| command_error(program, args, error))?;
    if status.success() {
        Ok(())
    } else {
        Err(command_error(program, args, status))
    }
}

#[cfg(test)]
// A failed expectation in a test is the test failing, which is what panicking reports.
#[allow(clippy::expect_used, clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_debian_and_upstream_versions() {
        assert_eq!(
            parse_qemu_version(
                "QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)\nCopyright (c) 2003-2022"
            ),
            Some(QemuVersion { major: 7, minor: 2, patch: 22 })
        );
        assert_eq!(
            parse_qemu_version("QEMU emulator version 8.2.0\n"),
            Some(QemuVersion {
                major: 8,
                minor: 2,
                patch: 0
            })
        );
        assert_eq!(
            parse_qemu_version("QEMU emulator version 6.2\n"),
            Some(QemuVersion {
                major: 6,
                minor: 2,
                patch: 0
            })
        );
        assert_eq!(
            parse_qemu_version("qemu-system-aarch64: command not found"),
            None
        );
        assert_eq!(parse_qemu_version(""), None);
    }

    #[test]
    fn version_gate_is_7_2() {
        let v = |major, minor, patch| QemuVersion {
            major,
            minor,
            patch,
        };
        assert!(v(7, 2, 0) >= MIN_QEMU_VERSION);
        assert!(v(7, 2, 22) >= MIN_QEMU_VERSION);
        assert!(v(8, 0, 0) >= MIN_QEMU_VERSION);
        assert!(v(7, 1, 99) < MIN_QEMU_VERSION);
        assert!(v(6, 9, 0) < MIN_QEMU_VERSION);
    }

    #[test]
    fn finds_missing_targets() {
        assert_eq!(
            missing_targets("x86_64-unknown-linux-gnu\n"),
            REQUIRED_TARGETS.to_vec()
        );
        assert_eq!(
            missing_targets("aarch64-unknown-none\nx86_64-unknown-linux-gnu\n"),
            vec!["aarch64-unknown-none-softfloat"]
        );
        // A prefix match must not count: "aarch64-unknown-none-softfloat" is not "aarch64-unknown-none".
        assert_eq!(
            missing_targets("aarch64-unknown-none-softfloat\n"),
            vec!["aarch64-unknown-none"]
        );
        assert!(
            missing_targets("aarch64-unknown-none\naarch64-unknown-none-softfloat\n").is_empty()
        );
    }

    #[test]
    fn qemu_plan_covers_every_case() {
        assert_eq!(plan_qemu(true, false, false), QemuPlan::Present);
        assert_eq!(plan_qemu(true, true, true), QemuPlan::Present);
        assert_eq!(plan_qemu(false, true, true), QemuPlan::AptInstall);
        match plan_qemu(false, false, true) {
            QemuPlan::Manual(command) => {
                assert_eq!(
                    command,
                    "run `sudo apt-get update && sudo apt-get install -y qemu-system-arm`"
                )
            }
            other => panic!("expected a manual command, got {other:?}"),
        }
        for is_root in [true, false] {
            match plan_qemu(false, is_root, false) {
                QemuPlan::Manual(command) => {
                    assert!(command.contains("qemu-system-aarch64"), "{command}")
                }
                other => panic!("expected a manual command, got {other:?}"),
            }
        }
    }

    #[test]
    fn reads_effective_uid() {
        let status = "Name:\txtask\nUid:\t1000\t0\t0\t0\nGid:\t0\t0\t0\t0\n";
        assert_eq!(parse_effective_uid(status), Some(0));
        assert_eq!(parse_effective_uid("Name:\tx\n"), None);
    }
}
