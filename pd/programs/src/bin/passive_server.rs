//! Passive server: a Microkit `passive="true"` PD. After `init` it runs only when an event
//! comes: its client's protected calls (answered with the sum of the message registers) and
//! its client's notification (passive.xml).
#![cfg_attr(target_os = "none", no_std, no_main)]
#![deny(unsafe_code)]

use frameshift_pd::{debug_println, pd_is_passive, Channel, ChannelSet, Handler, MessageInfo};
use frameshift_pd_programs::{serve_sum, PASSIVE_CHANNEL};

struct PassiveServer {
    calls: u64,
}

impl Handler for PassiveServer {
    fn protected(&mut self, channel: Channel, message: MessageInfo) -> MessageInfo {
        let (sum, reply) = serve_sum(PASSIVE_CHANNEL, channel, message);
        self.calls += 1;
        debug_println!("passive_server call={} sum={sum}", self.calls);
        reply
    }

    fn notified(&mut self, channels: ChannelSet) {
        debug_println!(
            "passive_server notified channels={:#x} after calls={}",
            channels.bits(),
            self.calls
        );
    }
}

fn init() -> PassiveServer {
    debug_println!("passive_server ready passive={}", pd_is_passive());
    PassiveServer { calls: 0 }
}

frameshift_pd::protection_domain!(init);
