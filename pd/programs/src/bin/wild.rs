//! Wild: loads from an address it has nothing mapped at, without the runtime's probe. The
//! hypervisor reports the fault and injects an abort; the runtime's vector finds no probe to
//! resume, prints the exception and stops this PD; the others run on and the run ends with
//! status 1 (wild.xml). As a child (child_fault.xml, restart.xml) its fault goes to its parent
//! instead.
#![cfg_attr(target_os = "none", no_std, no_main)]

use frameshift_pd::{debug_println, Handler};
use frameshift_pd_programs::SECRET_IPA;

struct Wild;

impl Handler for Wild {}

fn init() -> Wild {
    debug_println!("wild loads from {SECRET_IPA}");
    let value: u64;
    // SAFETY: a single load into a fresh register; it aliases no Rust object. Nothing is mapped
    // at the address, so it never completes: the abort ends the run in the runtime's vector.
    unsafe {
        core::arch::asm!("ldr {value}, [{address}]", value = out(reg) value,
            address = in(reg) SECRET_IPA.get(), options(nostack, readonly));
    }
    debug_println!("wild UNREACHABLE: the load returned {value:#x}");
    Wild
}

frameshift_pd::protection_domain!(init);
