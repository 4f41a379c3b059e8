//! Spinner: never yields; it bumps a counter in a region the worker can read, forever. Only the
//! hypervisor's timer can take the CPU from it (preemption.xml).
#![cfg_attr(target_os = "none", no_std, no_main)]
#![deny(unsafe_code)]

use frameshift_pd::{debug_println, memory_region_symbol, Handler, Region};

struct Spinner;

impl Handler for Spinner {}

fn init() -> Spinner {
    let base = memory_region_symbol!(ticks_vaddr);
    // SAFETY: preemption.xml maps the 4 KiB region `ticks` read-write at `ticks_vaddr`, away
    // from this program's image and stack.
    #[allow(unsafe_code)]
    let ticks = unsafe { Region::new(base, 0x1000) };
    debug_println!("spinner start");
    let mut count: u64 = 0;
    loop {
        count = count.wrapping_add(1);
        ticks.write_u64(0, count);
    }
}

frameshift_pd::protection_domain!(init);
