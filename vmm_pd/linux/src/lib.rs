//! The Linux VMM's portable logic, host-tested: everything `linux_vmm`
//! (`vmm_pd/src/bin/linux_vmm.rs`) decides without making a call. The program makes the
//! calls; this crate says what they should be.
//!
//! - [`config`]: the VMM's configuration, from the symbols the build tool patches.
//! - [`layout`]: the guest's physical map, the arm64 Image header, and where the kernel, the
//!   initrd and the device tree go in guest RAM.
//! - [`device_tree`]: the guest's device tree.
//! - [`vgic`]: the emulated GICv3 distributor and redistributors, and which virtual
//!   interrupts are due for injection.
//! - [`calls`]: answers to the SMCCC calls the hypervisor forwards, and what to do with a
//!   trapped system-register access.
#![no_std]
#![forbid(unsafe_code)]

#[cfg(test)]
extern crate std;

pub mod calls;
pub mod config;
pub mod device_tree;
pub mod layout;
pub mod vgic;
