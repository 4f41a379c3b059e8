//! The Microkit kernel logic on the [`Hypervisor`](crate::Hypervisor): scheduling,
//! notifications, protected procedure calls, fault routing and the console line discipline. No
//! hardware access: the arch layer enters the hypervisor with a decoded exit, and host tests
//! drive it directly.

pub mod channels;
pub mod console;
pub mod fault;
mod microkit;
pub mod ready_queues;
mod schedule;

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

#[cfg(test)]
mod test_system;

pub use fault::{FaultKind, FaultReport, InstructionLength};
