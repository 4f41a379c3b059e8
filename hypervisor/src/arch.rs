//! Architecture layer (placeholder until the core's arch traits are merged).

#[cfg(all(target_arch = "aarch64", feature = "el2"))]
pub mod aarch64;
