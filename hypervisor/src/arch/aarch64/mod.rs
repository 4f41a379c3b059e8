//! The real AArch64 EL2 layer: boot, exception vectors, EL2 stage-1 MMU, PL011 console, GICv3 and
//! the EL2 physical timer, the CPU-feature probe, per-context EL1, GIC and FP/SIMD state, and
//! PSCI power-off. It owns the machine: the core sees decoded exits and gives back decisions.
//!
//! Everything here runs on one CPU with interrupts masked at EL2 (IRQs are only taken from EL1,
//! `HCR_EL2.IMO`), so the hypervisor is never re-entered: see [`global`] for the one witness of
//! exclusive access to the hypervisor's state.
//!
//! | module | what | built |
//! | --- | --- | --- |
//! | [`esr`] | exception classes, `ESR_EL2`/`HPFAR_EL2` decoding, injected syndromes | always (host-tested) |
//! | [`frame`] | the trap frame's layout | always (host-tested) |
//! | [`spsr`] | the `SPSR_EL2` values written | always (host-tested) |
//! | `boot`, `entry`, `trap` | boot, vectors and the trap handlers | kernel only (`el2`) |
//! | `machine`, `context`, `features` | the [`Arch`](frameshift_core::Arch), per-context state, CPU probe | kernel only |
//! | `mmu`, `gic`, `console`, `psci`, `global` | EL2 stage 1, GICv3 and timer, PL011, power-off, global state | kernel only |

pub mod esr;
pub mod frame;
pub mod spsr;

#[cfg(all(target_arch = "aarch64", feature = "el2"))]
pub mod boot;
#[cfg(all(target_arch = "aarch64", feature = "el2"))]
pub mod console;
#[cfg(all(target_arch = "aarch64", feature = "el2"))]
pub mod context;
#[cfg(all(target_arch = "aarch64", feature = "el2"))]
pub mod entry;
#[cfg(all(target_arch = "aarch64", feature = "el2"))]
pub mod features;
#[cfg(all(target_arch = "aarch64", feature = "el2"))]
pub mod gic;
#[cfg(all(target_arch = "aarch64", feature = "el2"))]
pub mod global;
#[cfg(all(target_arch = "aarch64", feature = "el2"))]
pub mod machine;
#[cfg(all(target_arch = "aarch64", feature = "el2"))]
pub mod mmu;
#[cfg(all(target_arch = "aarch64", feature = "el2"))]
pub mod psci;
#[cfg(all(target_arch = "aarch64", feature = "el2"))]
pub mod trap;
