//! Boot benchmark: the first thing its `init` does is read the counter, which under icount has
//! counted instructions since reset, and print it (bench/boot.xml; it has the highest priority,
//! so its `init` is the first a PD runs). `cargo xtask bench` boots the system twice and checks
//! that both boots print the same count.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![deny(unsafe_code)]

use frameshift_pd::time::{counter, counter_frequency};
use frameshift_pd::{debug_println, Handler};
use frameshift_pd_programs::bench::instructions_since_reset;

struct Boot;

impl Handler for Boot {}

fn init() -> Boot {
    let ticks = counter();
    let instructions = instructions_since_reset(ticks, counter_frequency());
    debug_println!("bench boot instructions={instructions} ticks={ticks}");
    Boot
}

frameshift_pd::protection_domain!(init);
