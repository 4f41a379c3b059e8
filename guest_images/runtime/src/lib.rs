//! The runtime of Frameshift's bare-metal guests: EL1 images that run under stage 2 in a
//! (protected) virtual machine, or directly on QEMU without a hypervisor.
//!
//! A guest program is a `no_std`, `no_main` binary that names its `main` with [`guest_main!`]:
//!
//! ```text
//! #![no_std]
//! #![no_main]
//! fn run(guest: &frameshift_guest::Guest) {
//!     frameshift_guest::println!("hello from {}", guest.program);
//! }
//! frameshift_guest::guest_main!(run, devices = []);
//! ```
//!
//! - [`boot`]: `_start` to `main`: the launcher, the conversion mode and the RAM, stage 1.
//! - [`calls`] and [`psci`]: every call of ABI family 1, typed; [`conduit`]: `HVC`/`SMC`.
//! - [`console`]: `print!`/`println!` to the PL011 (emulated by the VMM) or `FS_CONSOLE_WRITE`.
//! - [`cpu`]: probing the guest's own stage 1, its virtual GIC CPU interface and virtual timer.
//! - [`memory_map`]: the stage-1 plan and the tables aarch64-paging builds from it.
//! - [`page`]: free pages, and how to touch shared and private ones.
//! - [`mmio`]: device register access the VMM can emulate from the syndrome.
//! - [`secondary`]: PSCI `CPU_ON` of a second vCPU.
//!
//! Guests are linked at `0x4000_0000` (link.ld; `frameshift_vm_protocol::boot`). Only the
//! AArch64 firmware build has `_start`, the vectors and the panic handler; the rest builds on the
//! host, where unit tests drive it through a fake hypervisor.
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

#[cfg(test)]
extern crate std;

mod arch;
pub mod boot;
pub mod calls;
pub mod conduit;
pub mod console;
pub mod cpu;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod entry;
pub mod memory_map;
pub mod mmio;
pub mod page;
pub mod psci;
pub mod secondary;

pub use boot::Guest;
pub use calls::{MemStateAnswer, SmcccError};
pub use frameshift_abi::addr::Ipa;
pub use memory_map::GuestRam;
