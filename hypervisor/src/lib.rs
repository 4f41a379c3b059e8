//! Frameshift's hypervisor: the portable ownership core (frame table, stage-2 tables, conversion
//! engine, audit) and, under `arch/aarch64`, the EL2 kernel.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod arch;
pub mod kernel;
