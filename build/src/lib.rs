//! Frameshift's system-description tool, the counterpart of Microkit's `microkit` tool: the
//! `system.xml` parser and validator ([`sdf`]) and the boot-image builder with its report
//! ([`image`]). It depends on no hypervisor crate; the developer tooling behind `cargo xtask`
//! (install, firmware, QEMU, tasks) is the `frameshift-xtask` crate in `build/xtask`.
#![forbid(unsafe_code)]
pub mod image;
pub mod sdf;
