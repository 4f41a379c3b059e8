//! Fetching and caching the guest's Debian packages.
//!
//! The cache lives outside the git tree, in `$FRAMESHIFT_LINUX_CACHE`, else
//! `$XDG_CACHE_HOME/frameshift/linux`, else `~/.cache/frameshift/linux`: a `cargo clean` or a
//! fresh worktree of the same machine does not fetch 30 MB again, and a package version never
//! changes once published, so what is cached under its version stays right. Layout:
//!
//! ```text
//! <cache>/apt/                     the private apt state (sources, lists, download cache)
//! <cache>/debs/<name>_<version>_arm64.deb
//! <cache>/unpacked/<name>_<version>/   `dpkg-deb -x` of that package, with a `.complete` mark
//! <cache>/pins                     the versions resolved last: `<role> <package> <version>`
//! ```
//!
//! Without `--refresh`, pinned versions whose unpacked trees are complete are used with no
//! network at all; otherwise the archive is asked (`apt-get update`), the meta package is
//! resolved to its exact package, and whatever is missing is downloaded and unpacked.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::apt::{AptError, PrivateApt};
use super::sources;
use crate::install;

/// The Debian release whose packages the guest uses.
pub const RELEASE: &str = "bookworm";
/// The meta package that names the current 6.12 cloud kernel for arm64.
pub const KERNEL_META_PACKAGE: &str = "linux-image-6.12-cloud-arm64";
/// busybox, statically linked, so the initramfs needs no C library.
pub const BUSYBOX_PACKAGE: &str = "busybox-static";
/// The environment variable that moves the cache.
pub const CACHE_ENV: &str = "FRAMESHIFT_LINUX_CACHE";

/// The programs the fetch needs.
const TOOLS: [&str; 3] = ["apt-get", "apt-cache", "dpkg-deb"];

/// A package at an exact version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Package {
    /// Its name.
    pub name: String,
    /// Its version.
    pub version: String,
}

impl Package {
    /// The directory its files are unpacked into, under `cache`.
    pub fn unpacked_dir(&self, cache: &Path) -> PathBuf {
        cache.join("unpacked").join(format!(
            "{}_{}",
            self.name,
            self.version.replace(':', "%3a")
        ))
    }
}

/// What the fetch produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fetched {
    /// The exact kernel package (`linux-image-<release>`).
    pub kernel: Package,
    /// The busybox package.
    pub busybox: Package,
    /// The kernel's release string (`uname -r`), from its file name.
    pub kernel_release: String,
    /// The kernel Image (`/boot/vmlinuz-<release>`): an uncompressed arm64 Image.
    pub vmlinuz: PathBuf,
    /// `/bin/busybox`.
    pub busybox_binary: PathBuf,
}

/// Why the packages could not be had.
#[derive(Debug)]
pub enum FetchError {
    /// apt-get, apt-cache or dpkg-deb is missing.
    MissingTool(&'static str),
    /// The system's apt has no enabled Debian source of [`RELEASE`] with `main`.
    NoSource(PathBuf),
    /// The archive could not be reached or refused (`apt-get update` or a download failed).
    Archive(AptError),
    /// The archive has no such package for arm64.
    NoPackage(String, AptError),
    /// The package did not hold the file expected.
    Contents(String),
    /// A file of the cache could not be written or read.
    Io(PathBuf, io::Error),
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingTool(tool) => write!(
                f,
                "`{tool}` is not on PATH: fetching the Linux guest needs Debian's apt-get, \
                 apt-cache and dpkg-deb (on Debian or Ubuntu: `apt-get install -y apt dpkg`)"
            ),
            Self::NoSource(dir) => write!(
                f,
                "no enabled Debian {RELEASE} source with `main` in {}/sources.list or \
                 sources.list.d: add one (the Debian archive or a mirror of it), then run \
                 `cargo xtask linux`",
                dir.display()
            ),
            Self::Archive(error) => write!(
                f,
                "the Debian archive could not be reached: {error}. Check that the system's \
                 Debian source (/etc/apt/sources.list.d) is reachable, e.g. with \
                 `apt-get update`, then run `cargo xtask linux` again; once fetched, the \
                 packages are cached and no network is needed"
            ),
            Self::NoPackage(package, error) => write!(
                f,
                "the Debian {RELEASE} archive has no {package} for arm64 ({error}); run \
                 `cargo xtask linux --refresh` to resolve it again"
            ),
            Self::Contents(message) => f.write_str(message),
            Self::Io(path, error) => write!(f, "{}: {error}", path.display()),
        }
    }
}

impl std::error::Error for FetchError {}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> FetchError + '_ {
    move |error| FetchError::Io(path.to_owned(), error)
}

/// The cache directory: [`CACHE_ENV`], `$XDG_CACHE_HOME/frameshift/linux`,
/// `$HOME/.cache/frameshift/linux`, or (with no home at all) `fallback`.
pub fn cache_dir(fallback: &Path) -> PathBuf {
    cache_dir_from(|name| std::env::var_os(name), fallback)
}

/// [`cache_dir`] with the environment read through `variable`.
pub fn cache_dir_from(
    variable: impl Fn(&str) -> Option<std::ffi::OsString>,
    fallback: &Path,
) -> PathBuf {
    let set = |name: &str| variable(name).filter(|value| !value.is_empty());
    if let Some(dir) = set(CACHE_ENV) {
        return PathBuf::from(dir);
    }
    let base = set("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| set("HOME").map(|home| PathBuf::from(home).join(".cache")));
    match base {
        Some(base) => base.join("frameshift").join("linux"),
        None => fallback.to_owned(),
    }
}

/// The `pins` file's text for `kernel` and `busybox`.
pub fn pins_text(kernel: &Package, busybox: &Package) -> String {
    format!(
        "kernel {} {}\nbusybox {} {}\n",
        kernel.name, kernel.version, busybox.name, busybox.version
    )
}

/// Parses a `pins` file: the kernel and busybox packages.
pub fn parse_pins(text: &str) -> Option<(Package, Package)> {
    let mut kernel = None;
    let mut busybox = None;
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let (Some(role), Some(name), Some(version), None) =
            (words.next(), words.next(), words.next(), words.next())
        else {
            continue;
        };
        let package = Package {
            name: name.to_owned(),
            version: version.to_owned(),
        };
        match role {
            "kernel" => kernel = Some(package),
            "busybox" => busybox = Some(package),
            _ => {}
        }
    }
    Some((kernel?, busybox?))
}

const COMPLETE_MARK: &str = ".complete";

fn is_unpacked(package: &Package, cache: &Path) -> bool {
    package.unpacked_dir(cache).join(COMPLETE_MARK).is_file()
}

/// The kernel's Image in an unpacked kernel package: its only `boot/vmlinuz-*`.
pub fn find_vmlinuz(unpacked: &Path) -> Result<(PathBuf, String), FetchError> {
    let boot = unpacked.join("boot");
    let mut found: Vec<(PathBuf, String)> = fs::read_dir(&boot)
        .map_err(io_error(&boot))?
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            let release = path
                .file_name()?
                .to_str()?
                .strip_prefix("vmlinuz-")?
                .to_owned();
            Some((path, release))
        })
        .collect();
    match found.len() {
        1 => Ok(found.remove(0)),
        count => Err(FetchError::Contents(format!(
            "{} holds {count} vmlinuz-* files, expected one",
            boot.display()
        ))),
    }
}

/// The packages at their pinned versions, if they are all unpacked already.
fn cached(cache: &Path) -> Option<(Package, Package)> {
    let (kernel, busybox) = parse_pins(&fs::read_to_string(cache.join("pins")).ok()?)?;
    (is_unpacked(&kernel, cache) && is_unpacked(&busybox, cache)).then_some((kernel, busybox))
}

/// Resolves the packages with the archive and fetches and unpacks what the cache lacks.
fn resolve_and_fetch(cache: &Path) -> Result<(Package, Package), FetchError> {
    for tool in TOOLS {
        if install::find_on_path(tool).is_none() {
            return Err(FetchError::MissingTool(tool));
        }
    }
    let etc_apt = Path::new("/etc/apt");
    let wanted = sources::release_sources(&sources::system_sources(etc_apt), RELEASE);
    if wanted.is_empty() {
        return Err(FetchError::NoSource(etc_apt.to_owned()));
    }
    let apt = PrivateApt::new(&cache.join("apt"), install::is_root());
    let apt_dir = apt.dir.clone();
    apt.write_sources(&sources::render(&wanted))
        .map_err(io_error(&apt_dir))?;
    eprintln!("xtask: linux: updating the private package lists (arm64, {RELEASE})");
    apt.update().map_err(FetchError::Archive)?;

    let meta = apt
        .candidate(KERNEL_META_PACKAGE)
        .map_err(|error| FetchError::NoPackage(KERNEL_META_PACKAGE.to_owned(), error))?;
    let kernel_name = meta.first_dependency().ok_or_else(|| {
        FetchError::Contents(format!(
            "{KERNEL_META_PACKAGE} depends on no kernel package"
        ))
    })?;
    let package = |name: &str| -> Result<Package, FetchError> {
        let fields = apt
            .candidate(name)
            .map_err(|error| FetchError::NoPackage(name.to_owned(), error))?;
        let version = fields
            .get("Version")
            .ok_or_else(|| FetchError::Contents(format!("apt-cache shows no version of {name}")))?;
        Ok(Package {
            name: name.to_owned(),
            version: version.to_owned(),
        })
    };
    let kernel = package(kernel_name)?;
    let busybox = package(BUSYBOX_PACKAGE)?;

    for package in [&kernel, &busybox] {
        if is_unpacked(package, cache) {
            continue;
        }
        eprintln!(
            "xtask: linux: fetching {} {} (arm64)",
            package.name, package.version
        );
        let deb = apt
            .download(&package.name, &package.version, &cache.join("debs"))
            .map_err(FetchError::Archive)?;
        unpack(&deb, &package.unpacked_dir(cache))?;
    }
    let pins = cache.join("pins");
    fs::write(&pins, pins_text(&kernel, &busybox)).map_err(io_error(&pins))?;
    Ok((kernel, busybox))
}

/// `dpkg-deb -x deb into`, through a temporary directory so that a half-unpacked tree is never
/// taken for a complete one.
fn unpack(deb: &Path, into: &Path) -> Result<(), FetchError> {
    let partial = into.with_extension("partial");
    if partial.exists() {
        fs::remove_dir_all(&partial).map_err(io_error(&partial))?;
    }
    fs::create_dir_all(&partial).map_err(io_error(&partial))?;
    let status = std::process::Command::new("dpkg-deb")
        .arg("-x")
        .arg(deb)
        .arg(&partial)
        .stdin(std::process::Stdio::null())
        .status()
        .map_err(io_error(deb))?;
    if !status.success() {
        return Err(FetchError::Contents(format!(
            "`dpkg-deb -x {} {}` failed: {status}",
            deb.display(),
            partial.display()
        )));
    }
    fs::write(partial.join(COMPLETE_MARK), "").map_err(io_error(&partial))?;
    if into.exists() {
        fs::remove_dir_all(into).map_err(io_error(into))?;
    }
    fs::rename(&partial, into).map_err(io_error(into))
}

/// Makes the kernel and busybox available in `cache` (see the module doc) and says where.
pub fn fetch(cache: &Path, refresh: bool) -> Result<Fetched, FetchError> {
    fs::create_dir_all(cache).map_err(io_error(cache))?;
    let pinned = if refresh { None } else { cached(cache) };
    let (kernel, busybox) = match pinned {
        Some(pinned) => pinned,
        None => resolve_and_fetch(cache)?,
    };
    let (vmlinuz, kernel_release) = find_vmlinuz(&kernel.unpacked_dir(cache))?;
    let busybox_binary = busybox.unpacked_dir(cache).join("bin").join("busybox");
    if !busybox_binary.is_file() {
        return Err(FetchError::Contents(format!(
            "{} has no bin/busybox",
            busybox.unpacked_dir(cache).display()
        )));
    }
    Ok(Fetched {
        kernel,
        busybox,
        kernel_release,
        vmlinuz,
        busybox_binary,
    })
}

#[cfg(test)]
// A failed expectation in a test is the test failing, which is what panicking reports.
#[allow(clippy::expect_used, clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn pins_round_trip_and_malformed_ones_are_ignored() {
        let kernel = Package {
            name: "linux-image-6.12.117+deb12-cloud-arm64".to_owned(),
            version: "6.12.117-1~deb12u1".to_owned(),
        };
        let busybox = Package {
            name: "busybox-static".to_owned(),
            version: "1:1.35.0-4+deb12u1+b1".to_owned(),
        };
        let text = pins_text(&kernel, &busybox);
        assert_eq!(parse_pins(&text), Some((kernel.clone(), busybox.clone())));
        assert_eq!(parse_pins("kernel a 1\n"), None, "no busybox");
        assert_eq!(
            parse_pins("kernel a\nbusybox b 2\n"),
            None,
            "no kernel version"
        );
        assert_eq!(
            busybox.unpacked_dir(Path::new("/c")),
            PathBuf::from("/c/unpacked/busybox-static_1%3a1.35.0-4+deb12u1+b1")
        );
    }

    #[test]
    fn the_cache_follows_the_environment_in_order() {
        let fallback = Path::new("/w/target/linux/cache");
        let with = |pairs: &[(&str, &str)]| {
            let pairs: Vec<(String, String)> = pairs
                .iter()
                .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
                .collect();
            cache_dir_from(
                move |name| {
                    pairs
                        .iter()
                        .find(|(key, _)| key == name)
                        .map(|(_, value)| value.into())
                },
                fallback,
            )
        };
        let all = [
            (CACHE_ENV, "/explicit"),
            ("XDG_CACHE_HOME", "/xdg"),
            ("HOME", "/home/u"),
        ];
        assert_eq!(with(&all), PathBuf::from("/explicit"));
        assert_eq!(with(&all[1..]), PathBuf::from("/xdg/frameshift/linux"));
        assert_eq!(
            with(&[("XDG_CACHE_HOME", ""), ("HOME", "/home/u")]),
            PathBuf::from("/home/u/.cache/frameshift/linux")
        );
        assert_eq!(with(&[]), fallback);
    }

    #[test]
    fn the_kernel_image_is_the_only_vmlinuz() {
        let dir = std::env::temp_dir().join(format!("frameshift-vmlinuz-{}", std::process::id()));
        let boot = dir.join("boot");
        fs::create_dir_all(&boot).unwrap();
        fs::write(boot.join("config-6.12.1-cloud-arm64"), "").unwrap();
        assert!(find_vmlinuz(&dir).is_err(), "none");
        fs::write(boot.join("vmlinuz-6.12.1-cloud-arm64"), "").unwrap();
        let (path, release) = find_vmlinuz(&dir).unwrap();
        assert_eq!(release, "6.12.1-cloud-arm64");
        assert_eq!(path, boot.join("vmlinuz-6.12.1-cloud-arm64"));
        fs::write(boot.join("vmlinuz-6.12.2-cloud-arm64"), "").unwrap();
        assert!(find_vmlinuz(&dir).is_err(), "two");
        fs::remove_dir_all(&dir).unwrap();
    }
}
