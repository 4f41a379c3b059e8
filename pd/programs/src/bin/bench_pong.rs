//! Notification benchmark, the answering side: notifies ping back at once; on the yield channel
//! it yields first, so the next timed loop starts with a full budget (bench/notify.xml).
#![cfg_attr(target_os = "none", no_std, no_main)]
#![deny(unsafe_code)]

use frameshift_pd::{ChannelSet, Handler};
use frameshift_pd_programs::bench::{yield_now, BENCH_ROUND_CHANNEL, BENCH_YIELD_CHANNEL};

struct Pong;

impl Handler for Pong {
    fn notified(&mut self, channels: ChannelSet) {
        if channels.contains(BENCH_ROUND_CHANNEL) {
            BENCH_ROUND_CHANNEL.notify();
        }
        if channels.contains(BENCH_YIELD_CHANNEL) {
            yield_now();
            BENCH_YIELD_CHANNEL.notify();
        }
    }
}

fn init() -> Pong {
    Pong
}

frameshift_pd::protection_domain!(init);
