//! Pong: answers every notification from ping and reports its count after the last round
//! (pingpong.xml).
#![cfg_attr(target_os = "none", no_std, no_main)]
#![deny(unsafe_code)]

use frameshift_pd::{debug_println, ChannelSet, Handler};
use frameshift_pd_programs::{PING_PONG_CHANNEL, PING_PONG_ROUNDS};

struct Pong {
    received: u64,
}

impl Handler for Pong {
    fn notified(&mut self, channels: ChannelSet) {
        if !channels.contains(PING_PONG_CHANNEL) {
            panic!("notified on channels {:#x}", channels.bits());
        }
        self.received += 1;
        PING_PONG_CHANNEL.notify();
        if self.received == PING_PONG_ROUNDS {
            debug_println!(
                "pong done received={} sent={}",
                self.received,
                self.received
            );
        }
    }
}

fn init() -> Pong {
    Pong { received: 0 }
}

frameshift_pd::protection_domain!(init);
