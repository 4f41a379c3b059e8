//! PPC benchmark, the serving side: echoes a benchmark call's message registers at once, yields
//! when asked (so the caller can refill both budgets), and tells the caller whether it is
//! passive (bench/ppc_active.xml, bench/ppc_passive.xml).
#![cfg_attr(target_os = "none", no_std, no_main)]
#![deny(unsafe_code)]

use frameshift_pd::{pd_is_passive, set_mr, Channel, Handler, MessageInfo};
use frameshift_pd_programs::bench::{
    yield_now, LABEL_BENCH, LABEL_BENCH_REPLY, LABEL_HELLO, LABEL_YIELD,
};

struct Server;

impl Handler for Server {
    fn protected(&mut self, _channel: Channel, message: MessageInfo) -> MessageInfo {
        match message.label() {
            // The message registers still hold the call's: replying with the same count
            // echoes them.
            LABEL_BENCH => MessageInfo::new(LABEL_BENCH_REPLY, message.count()),
            LABEL_YIELD => {
                yield_now();
                MessageInfo::new(LABEL_YIELD, 0)
            }
            LABEL_HELLO => {
                set_mr(0, u64::from(pd_is_passive()));
                MessageInfo::new(LABEL_HELLO, 1)
            }
            label => panic!("unexpected call label={label:#x}"),
        }
    }
}

fn init() -> Server {
    Server
}

frameshift_pd::protection_domain!(init);
