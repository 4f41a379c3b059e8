//! The protection-domain runtime: entry, `Handler`, channels, PPC and debug output.
#![no_std]
