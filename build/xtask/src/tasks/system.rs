//! Shared by `run` and `build`: find the system description, parse it, build the image into out/.

use std::path::{Path, PathBuf};

use super::TaskError;
use crate::firmware::{self, Firmware};
use frameshift_build::image::{self, ImageInputs};
use frameshift_build::sdf::{self, SystemDescription};

/// The directory (under the workspace root) that receives the image and the report.
pub const OUT_DIR_NAME: &str = "out";

/// `system.xml` at the workspace root: the default demo system.
pub fn default_system_path() -> PathBuf {
    firmware::workspace_root().join("system.xml")
}

/// Where files named by a system description are looked up, in order: the directory of the
/// system file itself, then the firmware's program directory (where `<bin>.elf` files are),
/// then the Linux guest's directory (`target/linux/guest`, where `cargo xtask linux` leaves
/// `vmlinuz` and `initramfs.cpio.gz`, so a system prefills them without committing them).
pub fn search_paths(system: &Path, programs_dir: &Path) -> Vec<PathBuf> {
    let system_dir = system.parent().filter(|dir| !dir.as_os_str().is_empty());
    let system_dir = system_dir.map_or_else(|| PathBuf::from("."), Path::to_owned);
    vec![
        system_dir,
        programs_dir.to_owned(),
        crate::linux::guest_dir(&firmware::workspace_root()),
    ]
}

/// Parses and validates a system description; warnings go to stderr.
pub fn parse_system(system: &Path, programs_dir: &Path) -> Result<SystemDescription, TaskError> {
    sdf::parse_file(system, &search_paths(system, programs_dir)).map_err(|error| {
        for warning in error.warnings() {
            eprintln!("{warning}");
        }
        TaskError::new(with_linux_hint(error.message().to_owned()))
    })
}

/// `message`, and what to run when it is a missing Linux guest file (which `cargo xtask linux`
/// fetches or builds into `target/linux/guest`, never committed).
pub fn with_linux_hint(message: String) -> String {
    let missing_guest_file = [crate::linux::VMLINUZ, crate::linux::INITRAMFS]
        .iter()
        .any(|file| message.contains(&format!("unable to find prefill file: '{file}'")));
    if missing_guest_file {
        format!(
            "{message}\n(the Linux guest's files: run `cargo xtask linux` first, which puts them in {})",
            crate::linux::GUEST_FILES
        )
    } else {
        message
    }
}

/// The files written for one system.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuiltSystem {
    /// `out/frameshift.img`: the ELF for `qemu -kernel`.
    pub image: PathBuf,
    /// `out/report.txt`: the human-readable layout report.
    pub report: PathBuf,
    /// The program ELF of each PD, in document order, as found on the search path (the files
    /// whose symbols a debugger needs).
    pub programs: Vec<PathBuf>,
}

/// The first existing `search_paths[i]/file`, or `file` itself when it is absolute.
pub fn resolve(file: &Path, search_paths: &[PathBuf]) -> Option<PathBuf> {
    if file.is_absolute() {
        return file.is_file().then(|| file.to_owned());
    }
    search_paths
        .iter()
        .map(|dir| dir.join(file))
        .find(|candidate| candidate.is_file())
}

/// `<workspace>/out`: the default output directory.
pub fn default_out_dir() -> PathBuf {
    firmware::workspace_root().join(OUT_DIR_NAME)
}

/// Parses `system`, builds its boot image (RAM size = QEMU's `-m 512M`) and writes
/// `<out_dir>/frameshift.img` and `<out_dir>/report.txt`.
pub fn build_system(
    system: &Path,
    firmware: &Firmware,
    out_dir: &Path,
) -> Result<BuiltSystem, TaskError> {
    let description = parse_system(system, &firmware.programs_dir)?;
    for warning in &description.warnings {
        eprintln!("{warning}");
    }
    let inputs = ImageInputs::new(
        firmware.kernel()?.to_owned(),
        search_paths(system, &firmware.programs_dir),
    );
    let built = image::build(&description, &inputs)?;
    let written = built.write_to(out_dir)?;
    let programs = description
        .protection_domains
        .iter()
        .filter_map(|pd| {
            let symbols = pd
                .program_image_for_symbols
                .as_ref()
                .unwrap_or(&pd.program_image);
            resolve(symbols, &inputs.search_paths)
        })
        .collect();
    Ok(BuiltSystem {
        image: written.image,
        report: written.report,
        programs,
    })
}

#[cfg(test)]
// A failed expectation in a test is the test failing, which is what panicking reports.
#[allow(clippy::expect_used, clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::qemu::QemuOptions;

    #[test]
    fn image_ram_size_matches_qemu_memory() {
        assert_eq!(image::DEFAULT_RAM_SIZE, 512 << 20);
        assert_eq!(QemuOptions::default().memory, "512M");
    }

    #[test]
    fn search_paths_start_beside_the_system_file() {
        let programs = Path::new("/w/target/firmware/programs");
        let linux = firmware::workspace_root().join("target/linux/guest");
        assert_eq!(
            search_paths(Path::new("/w/tests/systems/a.xml"), programs),
            vec![
                PathBuf::from("/w/tests/systems"),
                programs.to_owned(),
                linux.clone()
            ]
        );
        assert_eq!(
            search_paths(Path::new("system.xml"), programs),
            vec![PathBuf::from("."), programs.to_owned(), linux]
        );
    }

    #[test]
    fn resolve_takes_the_first_existing_file() {
        let base = std::env::temp_dir().join(format!("frameshift-resolve-{}", std::process::id()));
        let (first, second) = (base.join("first"), base.join("second"));
        std::fs::create_dir_all(&first).unwrap();
        std::fs::create_dir_all(&second).unwrap();
        std::fs::write(second.join("hello.elf"), b"x").unwrap();
        let paths = [first.clone(), second.clone()];
        assert_eq!(
            resolve(Path::new("hello.elf"), &paths),
            Some(second.join("hello.elf"))
        );
        std::fs::write(first.join("hello.elf"), b"x").unwrap();
        assert_eq!(
            resolve(Path::new("hello.elf"), &paths),
            Some(first.join("hello.elf"))
        );
        assert_eq!(resolve(Path::new("absent.elf"), &paths), None);
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn a_missing_linux_guest_file_says_what_to_run() {
        let missing =
            "Error: unable to find prefill file: 'vmlinuz' on element 'memory_region': a.xml:3:5";
        let hinted = with_linux_hint(missing.to_owned());
        assert!(hinted.starts_with(missing));
        assert!(hinted.contains("run `cargo xtask linux` first"), "{hinted}");
        let other = "Error: unable to find prefill file: 'arch_check.bin' on element 'memory_region': a.xml:3:5";
        assert_eq!(with_linux_hint(other.to_owned()), other);
    }
}
