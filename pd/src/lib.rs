//! The protection-domain runtime (the libmicrokit analogue), shaped like rust-sel4's
//! `sel4-microkit`.
//!
//! A PD program defines an `init` function returning a [`Handler`] and names it with
//! [`protection_domain!`]. The runtime's `_start` sets up EL1, runs `init`, then serves events
//! (notifications, protected procedure calls, child faults) with the handler until the system
//! ends. Peers are reached through [`Channel`]s; console output goes through [`debug_println!`];
//! addresses the build tool patches are read with [`memory_region_symbol!`]; [`time`] reads the
//! generic timer's counter.
//!
//! A VMM (the parent of a `<virtual_machine>`) also drives its guest: [`vcpu`] (`vcpu_restart`,
//! `vcpu_read_reg`, ... on [`Child`]), [`memory`] (donate, share, lend, reclaim, teardown, the
//! frame capabilities and the audit) and [`vm_fault`] (the guest's faults, decoded, and the
//! replies that resume it).
//!
//! ```text
//! #![no_std]
//! #![no_main]
//! use frameshift_pd::{debug_println, Handler};
//!
//! struct Hello;
//! impl Handler for Hello {}
//!
//! fn init() -> Hello {
//!     debug_println!("hello from {}", frameshift_pd::pd_name());
//!     Hello
//! }
//! frameshift_pd::protection_domain!(init);
//! ```
//!
//! Only the AArch64 firmware build has `_start`, the vectors, the panic handler and a real
//! [`probe`];
//! everything else also builds on the host, where the unit tests drive it through a fake
//! hypervisor.
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

#[cfg(test)]
extern crate std;

mod address;
pub mod call;
pub mod channel;
pub mod debug;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod entry;
pub mod handler;
pub mod memory;
pub mod message;
mod power;
pub mod probe;
pub mod region;
pub mod symbols;
pub mod time;
pub mod vcpu;
pub mod vm_fault;

pub use address::Ipa;
pub use call::CallError;
pub use channel::{Channel, ChannelSet, Child};
pub use handler::{Event, Handler};
pub use memory::{audit, audit_and_dump, frame_cap_at, frame_caps, Rights};
pub use message::{get_mr, set_mr, MessageInfo, MESSAGE_REGISTERS};
pub use power::{stop_self, system_off, StopReason};
pub use region::Region;
pub use symbols::{pd_is_passive, pd_name};
pub use vcpu::VcpuRegister;
pub use vm_fault::{VmFault, VmReply};
