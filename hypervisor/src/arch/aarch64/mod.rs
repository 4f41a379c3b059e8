//! The real AArch64 EL2 layer: boot, exception vectors, EL2 stage-1 MMU, PL011 console, GICv3 and
//! the EL2 physical timer, the CPU-feature probe, per-domain EL1, GIC and FP/SIMD context, and
//! PSCI power-off.
//!
//! Everything here runs on one CPU with interrupts masked at EL2 (IRQs are only taken from EL1,
//! `HCR_EL2.IMO`), so the hypervisor is never re-entered: see [`global::GlobalCell`].

pub mod boot;
pub mod console;
pub mod context;
pub mod entry;
pub mod features;
pub mod gic;
pub mod global;
pub mod mmu;
pub mod psci;
pub mod stage2;
pub mod trap;
