//! Supervisor: the parent of the `wild` PD. When its child faults, the hypervisor stops the
//! child and delivers the fault here as a Microkit fault event instead of injecting it; the
//! supervisor reports the fault details and leaves the child stopped (child_fault.xml).
#![cfg_attr(target_os = "none", no_std, no_main)]
#![deny(unsafe_code)]

use frameshift_pd::{debug_println, get_mr, Child, Handler, MessageInfo};

struct Supervisor;

impl Handler for Supervisor {
    fn fault(&mut self, child: Child, message: MessageInfo) -> Option<MessageInfo> {
        // FAULT_STAGE2_ABORT: MR0 = IPA, MR1 = ESR_EL2, MR2 = PC.
        debug_println!(
            "supervisor child={} faulted label={} count={} ipa={:#x} esr={:#x} pc={:#x}",
            child.index(),
            message.label(),
            message.count(),
            get_mr(0),
            get_mr(1),
            get_mr(2)
        );
        None
    }
}

fn init() -> Supervisor {
    debug_println!("supervisor ready");
    Supervisor
}

frameshift_pd::protection_domain!(init);
