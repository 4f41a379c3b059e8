//! An idle PD: runs its `init` and then waits for ever. `cargo xtask bench` adds 48 of them
//! (50 to the boot system) to measure what a crowd of idle PDs costs the others.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![deny(unsafe_code)]

use frameshift_pd::Handler;

struct Idle;

impl Handler for Idle {}

fn init() -> Idle {
    Idle
}

frameshift_pd::protection_domain!(init);
