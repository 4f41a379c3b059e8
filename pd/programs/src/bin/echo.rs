//! Echo: answers each notification on the VMM channel with one back (the top-level system.xml).
#![cfg_attr(target_os = "none", no_std, no_main)]
#![deny(unsafe_code)]

use frameshift_pd::{debug_println, ChannelSet, Handler};
use frameshift_pd_programs::VMM_PEER_CHANNEL;

struct Echo {
    received: u64,
}

impl Handler for Echo {
    fn notified(&mut self, channels: ChannelSet) {
        if !channels.contains(VMM_PEER_CHANNEL) {
            panic!("notified on channels {:#x}", channels.bits());
        }
        self.received += 1;
        debug_println!("echo notified by vmm count={}", self.received);
        VMM_PEER_CHANNEL.notify();
    }
}

fn init() -> Echo {
    debug_println!("echo ready");
    Echo { received: 0 }
}

frameshift_pd::protection_domain!(init);
