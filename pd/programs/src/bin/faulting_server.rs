//! Faulting server: a child PD whose `protected` handler loads from an address it has nothing
//! mapped at. Its fault goes to its parent, the very PD blocked in the call it was serving, so
//! neither can ever run again (deadlock.xml): the run must end as a deadlock, not a success.
#![cfg_attr(target_os = "none", no_std, no_main)]

use frameshift_pd::{debug_println, Channel, Handler, MessageInfo};
use frameshift_pd_programs::SECRET_IPA;

struct FaultingServer;

impl Handler for FaultingServer {
    fn protected(&mut self, channel: Channel, _message: MessageInfo) -> MessageInfo {
        debug_println!(
            "faulting_server call on channel {} loads from {SECRET_IPA}",
            channel.index()
        );
        let value: u64;
        // SAFETY: a single load into a fresh register; it aliases no Rust object. Nothing is
        // mapped at the address: the fault goes to this PD's parent and the load never returns.
        unsafe {
            core::arch::asm!("ldr {value}, [{address}]", value = out(reg) value,
                address = in(reg) SECRET_IPA.get(), options(nostack, readonly));
        }
        debug_println!("faulting_server UNREACHABLE: the load returned {value:#x}");
        MessageInfo::new(0, 0)
    }
}

fn init() -> FaultingServer {
    debug_println!("faulting_server ready");
    FaultingServer
}

frameshift_pd::protection_domain!(init);
