//! Frameshift's developer tooling behind `cargo xtask`: installing what is missing, building the
//! AArch64 firmware, launching QEMU, reading the console protocol, preparing the Linux guest's
//! files, and the tasks themselves.
//! The system description and the boot image come from `frameshift-build` (Microkit's tool).
#![forbid(unsafe_code)]
pub mod bench;
pub mod console;
pub mod firmware;
pub mod install;
pub mod linux;
pub mod qemu;
pub mod tasks;
