//! The machine layers of the EL2 kernel: one per architecture (only AArch64 today; the host fake
//! the core's tests run against is `frameshift_core::arch::fake`).

pub mod aarch64;
