//! Frameshift's shared ABI: the layouts and numbers that the build tool, the hypervisor, PDs and
//! guests agree on. `no_std`, `zerocopy` layouts only; docs/ABI.md describes each one.
//!
//! - [`addr`]: the `PhysAddr` and `Ipa` address newtypes every side uses.
//! - [`boot_info`]: build tool to hypervisor (family 3).
//! - [`domain_name`]: the rule every domain name obeys, so console prefixes are unforgeable.
//! - [`pd_call`]: PD to hypervisor (family 2).
//! - [`smccc`]: SMCCC function identifiers and return codes (families 1 and 2).
#![no_std]
#![forbid(unsafe_code)]

pub mod addr;
pub mod boot_info;
pub mod crc32;
pub mod domain_name;
pub mod pd_call;
pub mod smccc;
