//! What a Frameshift VMM (`vmm_pd/`) and the bare-metal guests of `guest_images/` agree on.
//! `no_std`, no `unsafe`, and host-tested, because both sides link it: a number that changed on
//! one side only would be a silent protocol break.
//!
//! - [`boot`]: where a guest is linked and entered, and what `x0` holds at entry.
//! - [`pl011`]: the subset of the PL011 UART the VMM emulates for the guest's console.
//! - [`doorbell`]: the demo's emulated doorbell device: command words and registers.
//! - [`demo`]: the demo's message, key and nonce (DESIGN.md 8).
//! - [`answers`]: how the VMM answers calls the hypervisor forwards to it.
//! - [`hostile`]: the hostile guest and VMM of issue 10: tasks, commands, soak parameters.
#![no_std]
#![forbid(unsafe_code)]

#[cfg(test)]
extern crate std;

pub mod answers;
pub mod bench;
pub mod boot;
pub mod demo;
pub mod doorbell;
pub mod hostile;
pub mod pl011;
