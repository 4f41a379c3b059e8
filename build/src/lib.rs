//! Frameshift's host-side tools: the system.xml parser and validator, the boot image builder,
//! and the task runner behind `cargo xtask`.
#![forbid(unsafe_code)]
pub mod image;
pub mod sdf;

pub mod console;
pub mod firmware;
pub mod install;
pub mod qemu;
pub mod tasks;
