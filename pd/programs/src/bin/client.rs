//! Client: makes `PPC_CALLS` protected calls to the higher-priority server, four message
//! registers each, and checks every reply (ppc.xml).
#![cfg_attr(target_os = "none", no_std, no_main)]
#![deny(unsafe_code)]

use frameshift_pd::{debug_println, get_mr, set_mr, Handler, MessageInfo};
use frameshift_pd_programs::{LABEL_SUM, LABEL_SUM_REPLY, PPC_CALLS, PPC_CHANNEL};

struct Client;

impl Handler for Client {}

fn init() -> Client {
    let mut correct = 0;
    for call in 1..=PPC_CALLS {
        let arguments = [call, 2 * call, 3 * call, 4 * call];
        for (index, value) in arguments.iter().enumerate() {
            set_mr(index, *value);
        }
        let reply = PPC_CHANNEL.pp_call(MessageInfo::new(LABEL_SUM, arguments.len()));
        let sum = get_mr(0);
        debug_println!(
            "client call={call} args={arguments:?} reply label={:#x} count={} sum={sum}",
            reply.label(),
            reply.count()
        );
        if reply.label() == LABEL_SUM_REPLY && sum == arguments.iter().sum::<u64>() {
            correct += 1;
        }
    }
    debug_println!("client done calls={PPC_CALLS} correct={correct}");
    Client
}

frameshift_pd::protection_domain!(init);
