//! Server: answers protected calls with the sum of the caller's message registers (ppc.xml).
#![cfg_attr(target_os = "none", no_std, no_main)]
#![deny(unsafe_code)]

use frameshift_pd::{debug_println, get_mr, set_mr, Channel, Handler, MessageInfo};
use frameshift_pd_programs::{LABEL_SUM, LABEL_SUM_REPLY, PPC_CHANNEL};

struct Server {
    calls: u64,
}

impl Handler for Server {
    fn protected(&mut self, channel: Channel, message: MessageInfo) -> MessageInfo {
        if channel != PPC_CHANNEL || message.label() != LABEL_SUM {
            panic!(
                "unexpected call on channel {} label={:#x}",
                channel.index(),
                message.label()
            );
        }
        self.calls += 1;
        let sum: u64 = (0..message.count()).map(get_mr).sum();
        debug_println!(
            "server call={} count={} sum={sum}",
            self.calls,
            message.count()
        );
        set_mr(0, sum);
        MessageInfo::new(LABEL_SUM_REPLY, 1)
    }
}

fn init() -> Server {
    debug_println!("server ready");
    Server { calls: 0 }
}

frameshift_pd::protection_domain!(init);
