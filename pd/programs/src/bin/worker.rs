//! Worker: at the same priority as the spinner, it can only run if the hypervisor preempts the
//! spinner. It waits until it has seen the spinner's counter move `PREEMPTION_ROUNDS` times
//! (each move means the CPU went to the spinner and came back), then ends the run with status 0
//! (preemption.xml). A spinning PD means the system never goes idle, so the worker must end it.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![deny(unsafe_code)]

use frameshift_pd::{debug_println, memory_region_symbol, system_off, Handler, Region};
use frameshift_pd_programs::PREEMPTION_ROUNDS;

struct Worker;

impl Handler for Worker {}

fn init() -> Worker {
    let base = memory_region_symbol!(ticks_vaddr);
    // SAFETY: preemption.xml maps the 4 KiB region `ticks` read-only at `ticks_vaddr`, away from
    // this program's image and stack; the worker only reads it.
    #[allow(unsafe_code)]
    let ticks = unsafe { Region::new(base, 0x1000) };
    debug_println!("worker start");
    let mut last = ticks.read_u64(0);
    let mut moves = 0;
    while moves < PREEMPTION_ROUNDS {
        let now = ticks.read_u64(0);
        if now != last {
            moves += 1;
            last = now;
        }
    }
    debug_println!("worker saw spinner run moves={moves}");
    system_off(0)
}

frameshift_pd::protection_domain!(init);
