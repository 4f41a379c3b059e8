//! The Linux guest's inputs and its reference boot (issue 12): Debian's own arm64 kernel and a
//! busybox initramfs built here, and a boot of them under plain QEMU.
//!
//! - [`sources`], [`apt`], [`fetch`]: a private apt configuration fetches and caches
//!   `linux-image-6.12-cloud-arm64` (resolved to its exact package) and `busybox-static` for
//!   arm64, and `dpkg-deb -x` unpacks them.
//! - [`cpio`], [`initramfs`]: the gzip `newc` initramfs whose `/init` prints marker lines and
//!   powers off.
//! - [`console`]: the facts a test reads from Linux's console.
//! - [`plain`]: the plain-QEMU boot.
//!
//! [`prepare`] does the first two and leaves the guest's files where an image build finds them:
//! `target/linux/guest/` ([`GUEST_FILES`]), which is also where a system's `prefill_path`
//! names them (the xtask's default search paths include it).

pub mod apt;
pub mod console;
pub mod cpio;
pub mod fetch;
pub mod initramfs;
pub mod plain;
pub mod sources;

use std::fs;
use std::path::{Path, PathBuf};

pub use fetch::{FetchError, Fetched};

/// The kernel Image's file name in the guest directory.
pub const VMLINUZ: &str = "vmlinuz";
/// The initramfs's file name in the guest directory.
pub const INITRAMFS: &str = "initramfs.cpio.gz";
/// The file that says what the guest directory holds (`key value` lines).
pub const MANIFEST: &str = "manifest.txt";
/// The guest directory under the workspace root.
pub const GUEST_FILES: &str = "target/linux/guest";
/// The environment variable through which `cargo xtask test` passes the guest directory.
pub const GUEST_DIR_ENV: &str = "FRAMESHIFT_LINUX_DIR";

/// `<workspace>/target/linux/guest`.
pub fn guest_dir(workspace_root: &Path) -> PathBuf {
    workspace_root.join(GUEST_FILES)
}

/// The guest's files, ready to boot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestFiles {
    /// The directory that holds them.
    pub dir: PathBuf,
    /// The kernel Image.
    pub vmlinuz: PathBuf,
    /// The gzip `newc` initramfs.
    pub initramfs: PathBuf,
    /// The kernel's release (`uname -r`).
    pub kernel_release: String,
    /// The kernel package and its version.
    pub kernel_package: String,
    /// busybox's package version.
    pub busybox_version: String,
}

impl GuestFiles {
    /// The files in `dir`, as its manifest describes them.
    pub fn read(dir: &Path) -> Option<Self> {
        let manifest = fs::read_to_string(dir.join(MANIFEST)).ok()?;
        let value = |key: &str| {
            manifest.lines().find_map(|line| {
                let (name, value) = line.split_once(' ')?;
                (name == key).then(|| value.to_owned())
            })
        };
        let files = Self {
            dir: dir.to_owned(),
            vmlinuz: dir.join(VMLINUZ),
            initramfs: dir.join(INITRAMFS),
            kernel_release: value("kernel-release")?,
            kernel_package: value("kernel-package")?,
            busybox_version: value("busybox-version")?,
        };
        (files.vmlinuz.is_file() && files.initramfs.is_file()).then_some(files)
    }

    /// The files `cargo xtask test` passed in [`GUEST_DIR_ENV`], if it did.
    pub fn from_env() -> Option<Self> {
        Self::read(Path::new(&std::env::var_os(GUEST_DIR_ENV)?))
    }
}

/// The manifest's text.
pub fn manifest(fetched: &Fetched) -> String {
    format!(
        "kernel-release {}\nkernel-package {} {}\nbusybox-version {}\n",
        fetched.kernel_release,
        fetched.kernel.name,
        fetched.kernel.version,
        fetched.busybox.version
    )
}

/// Fetches (or finds cached) the packages, builds the initramfs, and puts both files in
/// [`guest_dir`]; `refresh` asks the archive again even when versions are pinned.
pub fn prepare(workspace_root: &Path, refresh: bool) -> Result<GuestFiles, FetchError> {
    let cache = fetch::cache_dir(&workspace_root.join("target").join("linux").join("cache"));
    let fetched = fetch::fetch(&cache, refresh)?;
    let dir = guest_dir(workspace_root);
    let io = |path: &Path| {
        let path = path.to_owned();
        move |error| FetchError::Io(path, error)
    };
    fs::create_dir_all(&dir).map_err(io(&dir))?;
    let busybox = fs::read(&fetched.busybox_binary).map_err(io(&fetched.busybox_binary))?;
    let initramfs = initramfs::build(&busybox).map_err(io(&dir))?;
    let initramfs_path = dir.join(INITRAMFS);
    fs::write(&initramfs_path, initramfs).map_err(io(&initramfs_path))?;
    // A hard link costs no space when the cache is on the same file system; a copy otherwise.
    let vmlinuz = dir.join(VMLINUZ);
    if vmlinuz.exists() {
        fs::remove_file(&vmlinuz).map_err(io(&vmlinuz))?;
    }
    if fs::hard_link(&fetched.vmlinuz, &vmlinuz).is_err() {
        fs::copy(&fetched.vmlinuz, &vmlinuz).map_err(io(&vmlinuz))?;
    }
    let manifest_path = dir.join(MANIFEST);
    fs::write(&manifest_path, manifest(&fetched)).map_err(io(&manifest_path))?;
    GuestFiles::read(&dir).ok_or_else(|| {
        FetchError::Contents(format!("{} is incomplete after writing it", dir.display()))
    })
}
