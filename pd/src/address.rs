//! `Ipa`: an address in this PD's VSpace (stage 1 is off for PDs, so a PD address is an IPA).
//!
//! The type itself is the ABI crate's, shared with the build tool that patches these addresses
//! in and the hypervisor that maps them.

pub use frameshift_abi::addr::Ipa;
