//! Frameshift's EL2 kernel for QEMU `virt`: the AArch64 arch layer that boots the machine and
//! enters and leaves the portable core (`frameshift-core`) on every exception. The binary is
//! `src/main.rs`; everything that needs assembly or system registers is under
//! [`arch::aarch64`], built for the kernel only (feature `el2`). The pure decoding modules there
//! are compiled and tested on the host too.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod arch;
