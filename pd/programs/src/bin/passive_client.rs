//! Passive client: calls the passive server `PASSIVE_CALLS` times, checks each sum, then
//! notifies it on the same channel (passive.xml).
#![cfg_attr(target_os = "none", no_std, no_main)]
#![deny(unsafe_code)]

use frameshift_pd::{debug_println, get_mr, set_mr, Handler, MessageInfo};
use frameshift_pd_programs::{LABEL_SUM, LABEL_SUM_REPLY, PASSIVE_CALLS, PASSIVE_CHANNEL};

struct PassiveClient;

impl Handler for PassiveClient {}

fn init() -> PassiveClient {
    let mut correct = 0;
    for call in 1..=PASSIVE_CALLS {
        set_mr(0, call);
        set_mr(1, 10 * call);
        let reply = PASSIVE_CHANNEL.pp_call(MessageInfo::new(LABEL_SUM, 2));
        if reply.label() == LABEL_SUM_REPLY && get_mr(0) == 11 * call {
            correct += 1;
        }
    }
    debug_println!("passive_client calls={PASSIVE_CALLS} correct={correct}");
    PASSIVE_CHANNEL.notify();
    debug_println!("passive_client notified");
    PassiveClient
}

frameshift_pd::protection_domain!(init);
