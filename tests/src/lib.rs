//! Shared helpers for Frameshift's integration tests: building and booting the scenario systems
//! in `tests/systems/` and checking what they print against the console protocol.
//!
//! - [`scenario`]: firmware, boot image and QEMU run of one system (30 s timeout).
//! - [`protocol`]: the `FS|<domain>|<text>` console checks every scenario applies.
//! - [`boot_info`]: finding and corrupting the boot information inside a built image.
#![forbid(unsafe_code)]

pub mod boot_info;
pub mod protocol;
pub mod scenario;
