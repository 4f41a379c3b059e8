//! The portable EL2 kernel logic: Microkit scheduling, notifications, protected procedure calls,
//! fault routing and the console line discipline. No hardware access: the arch layer
//! (`arch::aarch64`) drives it, and host tests drive it directly.

pub mod boot;
pub mod channels;
pub mod console;
pub mod domain;
pub mod fault;
pub mod ready_queues;
pub mod registers;
pub mod system;
pub mod vspace;

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on an unexpected error"
)]
mod system_properties;
#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on an unexpected error"
)]
mod system_tests;

pub use domain::{DomainIndex, RunState};
pub use fault::{FaultKind, FaultReport, InstructionLength};
pub use registers::Registers;
pub use system::{Decision, Exit, Halt, HaltReason, Kernel, StopReason};
