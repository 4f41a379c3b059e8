//! Panicker: notifies a channel the system does not give it. The hypervisor refuses, the runtime
//! turns the refusal into a panic, and the panic handler prints it and stops this PD; the other
//! PDs run on, and the run ends with status 1 (panic.xml).
#![cfg_attr(target_os = "none", no_std, no_main)]
#![deny(unsafe_code)]

use frameshift_pd::{debug_println, Channel, Handler};

struct Panicker;

impl Handler for Panicker {}

fn init() -> Panicker {
    debug_println!("panicker notifies channel 5, which it does not have");
    Channel::new(5).notify();
    debug_println!("panicker UNREACHABLE: the refused notify returned");
    Panicker
}

frameshift_pd::protection_domain!(init);
