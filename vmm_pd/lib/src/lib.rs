//! The VMM's portable logic, host-tested: everything the protected-VM VMM
//! (`vmm_pd/src/bin/protected_vmm.rs`) decides without making a call, and the PL011 both VMMs
//! emulate. The PD does the calls; this crate says what they should be and what
//! their answers mean.
//!
//! - [`config`]: the VMM's configuration, from the symbols the build tool patches.
//! - [`window`]: where a guest page lies in the VMM's window.
//! - [`pl011`]: the emulated UART, both VMMs': bytes in, whole console lines out.
//! - [`run`]: one guest run's checks: the demo's steps, the guest's verdict, the MMIO guard.
#![no_std]
#![forbid(unsafe_code)]

#[cfg(test)]
extern crate std;

pub mod config;
pub mod pl011;
pub mod run;
pub mod window;
