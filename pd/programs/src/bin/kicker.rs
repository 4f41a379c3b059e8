//! Kicker: never blocks, and notifies the higher-priority `kicked` PD every 250 us of counter
//! time. Each kick preempts it; it must not gain the CPU from that over its equal-priority
//! `peer`, which has to finish its work while the kicking goes on (starvation.xml).
#![cfg_attr(target_os = "none", no_std, no_main)]
#![deny(unsafe_code)]

use frameshift_pd::time::{counter, counter_frequency};
use frameshift_pd::{debug_println, Handler};
use frameshift_pd_programs::{KICKS_PER_SECOND, KICK_CHANNEL};

struct Kicker;

impl Handler for Kicker {}

fn init() -> Kicker {
    let period = counter_frequency() / KICKS_PER_SECOND;
    debug_println!("kicker start period={period}");
    let mut next = counter() + period;
    loop {
        let now = counter();
        if now >= next {
            KICK_CHANNEL.notify();
            next = now + period;
        }
    }
}

frameshift_pd::protection_domain!(init);
