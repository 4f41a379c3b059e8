//! Server: answers protected calls with the sum of the caller's message registers (ppc.xml).
#![cfg_attr(target_os = "none", no_std, no_main)]
#![deny(unsafe_code)]

use frameshift_pd::{debug_println, Channel, Handler, MessageInfo};
use frameshift_pd_programs::{serve_sum, PPC_CHANNEL};

struct Server {
    calls: u64,
}

impl Handler for Server {
    fn protected(&mut self, channel: Channel, message: MessageInfo) -> MessageInfo {
        let (sum, reply) = serve_sum(PPC_CHANNEL, channel, message);
        self.calls += 1;
        debug_println!(
            "server call={} count={} sum={sum}",
            self.calls,
            message.count()
        );
        reply
    }
}

fn init() -> Server {
    debug_println!("server ready");
    Server { calls: 0 }
}

frameshift_pd::protection_domain!(init);
