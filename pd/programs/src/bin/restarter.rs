//! Restarter: the parent of `wild`. It answers the first `RESTARTS` faults of its child with a
//! reply, which restarts the child at the faulting load (Microkit `fault` returning `true`); the
//! child, unchanged, faults again at the same PC. The next fault gets no reply, so the child
//! stays stopped (restart.xml).
#![cfg_attr(target_os = "none", no_std, no_main)]
#![deny(unsafe_code)]

use frameshift_pd::{debug_println, get_mr, Child, Handler, MessageInfo};
use frameshift_pd_programs::RESTARTS;

struct Restarter {
    faults: u64,
}

impl Handler for Restarter {
    fn fault(&mut self, child: Child, message: MessageInfo) -> Option<MessageInfo> {
        self.faults += 1;
        let restart = self.faults <= RESTARTS;
        // FAULT_STAGE2_ABORT: MR0 = IPA, MR1 = ESR_EL2, MR2 = PC.
        debug_println!(
            "restarter child={} fault={} label={} ipa={:#x} pc={:#x} {}",
            child.index(),
            self.faults,
            message.label(),
            get_mr(0),
            get_mr(2),
            if restart { "restart" } else { "leave-stopped" }
        );
        restart.then_some(MessageInfo::new(0, 0))
    }
}

fn init() -> Restarter {
    debug_println!("restarter ready restarts={RESTARTS}");
    Restarter { faults: 0 }
}

frameshift_pd::protection_domain!(init);
