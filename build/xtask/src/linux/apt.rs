//! A private apt configuration: apt-get and apt-cache run with options that point every piece of
//! state they keep (sources, package lists, download cache, the dpkg status) into a directory
//! of ours, and with arm64 as the only architecture. Nothing on the system is read beyond its
//! keyrings and configuration, nothing is written outside that directory, and no root is
//! needed (as root, apt would hand downloads to its `_apt` user, which cannot write there, so
//! the sandbox user is root too).
//!
//! The parsers of apt-cache's output are pure functions, tested here.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The architecture of the guest's packages.
pub const ARCHITECTURE: &str = "arm64";

/// A private apt state directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrivateApt {
    /// The directory that holds it all.
    pub dir: PathBuf,
    /// Whether this process runs as root (then apt's download sandbox user is root as well).
    pub as_root: bool,
}

/// A command of the private apt that failed.
#[derive(Debug)]
pub struct AptError {
    /// The command line, as a user would type it (with the private options).
    pub command: String,
    /// What went wrong: the status and the end of stderr, or why it could not start.
    pub detail: String,
}

impl fmt::Display for AptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` failed: {}", self.command, self.detail)
    }
}

impl std::error::Error for AptError {}

impl PrivateApt {
    /// The private apt state under `dir`.
    pub fn new(dir: &Path, as_root: bool) -> Self {
        Self {
            dir: dir.to_owned(),
            as_root,
        }
    }

    /// The directory whose `debian.sources` is the only source list.
    pub fn source_parts(&self) -> PathBuf {
        self.dir.join("sources.list.d")
    }

    /// Creates the directories and writes the one source file (deb822 `text`).
    pub fn write_sources(&self, text: &str) -> io::Result<()> {
        for dir in [
            self.source_parts(),
            self.dir.join("lists").join("partial"),
            self.dir.join("cache").join("archives").join("partial"),
        ] {
            fs::create_dir_all(dir)?;
        }
        // An empty one-line list, so the system's /etc/apt/sources.list is not read.
        fs::write(self.dir.join("sources.list"), "")?;
        fs::write(self.source_parts().join("debian.sources"), text)
    }

    /// The `-o` options that make apt private.
    pub fn options(&self) -> Vec<String> {
        let dir = self.dir.display();
        let mut options = vec![
            format!("APT::Architecture={ARCHITECTURE}"),
            format!("APT::Architectures::={ARCHITECTURE}"),
            format!("Dir::Etc::SourceList={dir}/sources.list"),
            format!("Dir::Etc::SourceParts={dir}/sources.list.d"),
            format!("Dir::State::Lists={dir}/lists"),
            format!("Dir::Cache={dir}/cache"),
            "Dir::State::status=/dev/null".to_owned(),
            // Only package lists: no translations, no AppStream metadata.
            "Acquire::Languages=none".to_owned(),
            "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false".to_owned(),
            "Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false".to_owned(),
            "Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled=false".to_owned(),
            // The private lists need no lock on the system's.
            "Debug::NoLocking=1".to_owned(),
        ];
        if self.as_root {
            options.push("APT::Sandbox::User=root".to_owned());
        }
        options
            .into_iter()
            .flat_map(|option| ["-o".to_owned(), option])
            .collect()
    }

    /// `program <private options> args...`, run in `dir`; returns stdout.
    pub fn run(&self, program: &str, args: &[&str], dir: &Path) -> Result<String, AptError> {
        let options = self.options();
        let mut words: Vec<&str> = options.iter().map(String::as_str).collect();
        words.extend_from_slice(args);
        let command = format!("{program} {}", words.join(" "));
        let output = Command::new(program)
            .args(&words)
            .current_dir(dir)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .output()
            .map_err(|error| AptError {
                command: command.clone(),
                detail: error.to_string(),
            })?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        // `apt-get update` exits 0 even when an index could not be fetched; it says so with
        // `W: Failed to fetch` or `E:` lines.
        let failed_fetch = stderr
            .lines()
            .any(|line| line.starts_with("E:") || line.contains("Failed to fetch"));
        if !output.status.success() || failed_fetch {
            let tail: Vec<&str> = stderr.lines().rev().take(6).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            return Err(AptError {
                command,
                detail: format!("{}: {}", output.status, tail.join(" | ")),
            });
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// `apt-get update`.
    pub fn update(&self) -> Result<(), AptError> {
        self.run("apt-get", &["update"], &self.dir).map(|_| ())
    }

    /// The candidate version of `package` (`apt-cache show --no-all-versions`).
    pub fn candidate(&self, package: &str) -> Result<ControlFields, AptError> {
        let text = self.run(
            "apt-cache",
            &["show", "--no-all-versions", package],
            &self.dir,
        )?;
        Ok(ControlFields::parse(&text))
    }

    /// `apt-get download package=version` into `into`; returns the `.deb` file.
    pub fn download(&self, package: &str, version: &str, into: &Path) -> Result<PathBuf, AptError> {
        fs::create_dir_all(into).map_err(|error| AptError {
            command: format!("mkdir -p {}", into.display()),
            detail: error.to_string(),
        })?;
        let wanted = format!("{package}={version}");
        self.run("apt-get", &["download", &wanted], into)?;
        let file = into.join(deb_file_name(package, version));
        if file.is_file() {
            Ok(file)
        } else {
            Err(AptError {
                command: format!("apt-get download {wanted}"),
                detail: format!("it left no {}", file.display()),
            })
        }
    }
}

/// The file name `apt-get download` gives a package: `name_version_arch.deb`, with the epoch's
/// colon escaped as `%3a`.
pub fn deb_file_name(package: &str, version: &str) -> String {
    format!(
        "{package}_{}_{ARCHITECTURE}.deb",
        version.replace(':', "%3a")
    )
}

/// The fields of one control stanza (`Package:`, `Version:`, `Depends:` ...).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ControlFields(Vec<(String, String)>);

impl ControlFields {
    /// Parses the first stanza of `text` (continuation lines join their field).
    pub fn parse(text: &str) -> Self {
        let mut fields: Vec<(String, String)> = Vec::new();
        for line in text.lines() {
            if line.trim().is_empty() {
                if fields.is_empty() {
                    continue;
                }
                break;
            }
            if line.starts_with([' ', '\t']) {
                if let Some((_, value)) = fields.last_mut() {
                    value.push(' ');
                    value.push_str(line.trim());
                }
            } else if let Some((name, value)) = line.split_once(':') {
                fields.push((name.to_owned(), value.trim().to_owned()));
            }
        }
        Self(fields)
    }

    /// The value of field `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(field, _)| field.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The package name of the first dependency in `Depends:` (the first alternative, without
    /// its version constraint or architecture qualifier): what a meta package stands for.
    pub fn first_dependency(&self) -> Option<&str> {
        let first = self.get("Depends")?.split(',').next()?;
        let alternative = first.split('|').next()?.trim();
        let name = alternative
            .split(|c: char| c.is_whitespace() || c == '(' || c == ':')
            .next()?;
        (!name.is_empty()).then_some(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const META: &str = "\
Package: linux-image-6.12-cloud-arm64
Source: linux-signed-6.12-arm64 (6.12.117+1~deb12u1)
Version: 6.12.117-1~deb12u1
Installed-Size: 13
Depends: linux-image-6.12.117+deb12-cloud-arm64 (= 6.12.117-1~deb12u1)
Description: Linux for arm64 cloud (meta-package)
 This package depends on the latest Linux kernel and modules for use on
 cloud platforms.

Package: second-stanza
Version: 9
";

    #[test]
    fn a_meta_package_resolves_to_its_first_dependency() {
        let fields = ControlFields::parse(META);
        assert_eq!(fields.get("version"), Some("6.12.117-1~deb12u1"));
        assert_eq!(
            fields.first_dependency(),
            Some("linux-image-6.12.117+deb12-cloud-arm64")
        );
        assert!(fields
            .get("Description")
            .is_some_and(|text| text.ends_with("cloud platforms.")));
        assert_eq!(fields.get("Package"), Some("linux-image-6.12-cloud-arm64"));
    }

    #[test]
    fn dependencies_lose_alternatives_constraints_and_qualifiers() {
        let depends = |value: &str| ControlFields::parse(&format!("Depends: {value}\n"));
        assert_eq!(depends("a | b, c").first_dependency(), Some("a"));
        assert_eq!(depends("a:any (>= 2)").first_dependency(), Some("a"));
        assert_eq!(depends("").first_dependency(), None);
        assert_eq!(
            ControlFields::parse("Package: x\n").first_dependency(),
            None
        );
    }

    #[test]
    fn download_names_escape_the_epoch() {
        assert_eq!(
            deb_file_name("busybox-static", "1:1.35.0-4+deb12u1+b1"),
            "busybox-static_1%3a1.35.0-4+deb12u1+b1_arm64.deb"
        );
    }

    #[test]
    fn the_options_keep_every_piece_of_state_private() {
        let apt = PrivateApt::new(Path::new("/c/apt"), false);
        let options = apt.options().join(" ");
        for expected in [
            "-o APT::Architecture=arm64",
            "-o Dir::Etc::SourceList=/c/apt/sources.list",
            "-o Dir::Etc::SourceParts=/c/apt/sources.list.d",
            "-o Dir::State::Lists=/c/apt/lists",
            "-o Dir::Cache=/c/apt/cache",
            "-o Dir::State::status=/dev/null",
        ] {
            assert!(options.contains(expected), "{expected} in {options}");
        }
        assert!(!options.contains("Sandbox"));
        let as_root = PrivateApt::new(Path::new("/c/apt"), true)
            .options()
            .join(" ");
        assert!(as_root.ends_with("-o APT::Sandbox::User=root"));
    }
}
