//! Frameshift's shared ABI: the layouts and numbers that the build tool, the hypervisor, PDs and
//! guests agree on. `no_std`, `zerocopy` layouts only; docs/ABI.md describes each one.
//!
//! - [`addr`]: the `PhysAddr` and `Ipa` address newtypes every side uses.
//! - [`boot_info`]: build tool to hypervisor (family 3).
//! - [`domain_name`]: the rule every domain name obeys, so console prefixes are unforgeable.
//! - [`layout`]: QEMU `virt`'s memory layout and the stage-2 geometry, defined once.
//! - [`pd_call`]: PD to hypervisor (family 2).
//! - [`platform`]: QEMU `virt`'s devices, and which a domain may map (DMA, I10).
//! - [`guest_call`]: guest to hypervisor calls, pKVM compatible (family 1).
//! - [`vcpu`]: vCPU register numbers and VM fault encodings shared by the VMM and the hypervisor.
//! - [`smccc`]: SMCCC return codes.
#![no_std]
#![forbid(unsafe_code)]

pub mod addr;
pub mod boot_info;
pub mod crc32;
pub mod domain_name;
pub mod guest_call;
pub mod layout;
pub mod pd_call;
pub mod platform;
pub mod smccc;
pub mod vcpu;
