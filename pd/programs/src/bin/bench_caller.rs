//! PPC benchmark, the calling side: asks the server whether it is passive, then times protected
//! call round trips with 0 and with 4 message registers (bench/ppc_active.xml,
//! bench/ppc_passive.xml, `cargo xtask bench`).
#![cfg_attr(target_os = "none", no_std, no_main)]
#![deny(unsafe_code)]

use frameshift_pd::{get_mr, set_mr, Handler, MessageInfo};
use frameshift_pd_programs::bench::{
    measure, yield_now, BENCH_PPC_CHANNEL, LABEL_BENCH, LABEL_BENCH_REPLY, LABEL_HELLO, LABEL_YIELD,
};

struct Caller;

impl Handler for Caller {}

/// The server and this PD both start the timed loop with a full budget.
fn refill() {
    let reply = BENCH_PPC_CHANNEL.pp_call(MessageInfo::new(LABEL_YIELD, 0));
    assert!(reply.label() == LABEL_YIELD, "server did not yield");
    yield_now();
}

fn init() -> Caller {
    let hello = BENCH_PPC_CHANNEL.pp_call(MessageInfo::new(LABEL_HELLO, 0));
    assert!(hello.label() == LABEL_HELLO, "server did not answer hello");
    let passive = get_mr(0) == 1;
    let values = [0x1111, 0x2222, 0x3333, 0x4444];
    for count in [0usize, 4] {
        let name = match (passive, count) {
            (true, 0) => "ppc_passive_mr0",
            (true, _) => "ppc_passive_mr4",
            (false, 0) => "ppc_active_mr0",
            (false, _) => "ppc_active_mr4",
        };
        for (index, value) in values.iter().enumerate() {
            set_mr(index, *value);
        }
        let mut wrong = 0u64;
        measure(name, refill, || {
            let reply = BENCH_PPC_CHANNEL.pp_call(MessageInfo::new(LABEL_BENCH, count));
            if reply != MessageInfo::new(LABEL_BENCH_REPLY, count) {
                wrong += 1;
            }
        });
        // The server echoes the message registers: what went there came back.
        let echoed = values
            .iter()
            .take(count)
            .enumerate()
            .all(|(index, value)| get_mr(index) == *value);
        assert!(
            wrong == 0 && echoed,
            "{name}: {wrong} wrong replies, registers echoed: {echoed}"
        );
    }
    Caller
}

frameshift_pd::protection_domain!(init);
