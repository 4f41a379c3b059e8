//! Ping: starts the ping-pong, counts pong's answers and stops after `PING_PONG_ROUNDS`
//! (pingpong.xml).
#![cfg_attr(target_os = "none", no_std, no_main)]
#![deny(unsafe_code)]

use frameshift_pd::{debug_println, ChannelSet, Handler};
use frameshift_pd_programs::{PING_PONG_CHANNEL, PING_PONG_ROUNDS};

struct Ping {
    sent: u64,
    received: u64,
}

impl Handler for Ping {
    fn notified(&mut self, channels: ChannelSet) {
        if !channels.contains(PING_PONG_CHANNEL) {
            panic!("notified on channels {:#x}", channels.bits());
        }
        self.received += 1;
        if self.sent < PING_PONG_ROUNDS {
            self.sent += 1;
            PING_PONG_CHANNEL.notify();
        } else {
            debug_println!("ping done sent={} received={}", self.sent, self.received);
        }
    }
}

fn init() -> Ping {
    debug_println!("ping start rounds={PING_PONG_ROUNDS}");
    PING_PONG_CHANNEL.notify();
    Ping {
        sent: 1,
        received: 0,
    }
}

frameshift_pd::protection_domain!(init);
