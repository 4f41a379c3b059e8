//! Survivor: keeps a secret in its own memory region, lets the attacker try to read it, and
//! checks afterwards that it still runs and that the secret is intact (isolation.xml).
#![cfg_attr(target_os = "none", no_std, no_main)]
#![deny(unsafe_code)]

use frameshift_pd::{debug_println, memory_region_symbol, ChannelSet, Handler, Region};
use frameshift_pd_programs::{ISOLATION_CHANNEL, SECRET_VALUE};

struct Survivor {
    secret: Region,
}

impl Handler for Survivor {
    fn notified(&mut self, channels: ChannelSet) {
        if !channels.contains(ISOLATION_CHANNEL) {
            panic!("notified on channels {:#x}", channels.bits());
        }
        let value = self.secret.read_u64(0);
        debug_println!(
            "survivor alive after attack secret={value:#x} intact={}",
            value == SECRET_VALUE
        );
    }
}

fn init() -> Survivor {
    let base = memory_region_symbol!(secret_vaddr);
    // SAFETY: isolation.xml maps the 4 KiB region `secret` read-write at `secret_vaddr`, away
    // from this program's image and stack.
    #[allow(unsafe_code)]
    let secret = unsafe { Region::new(base, 0x1000) };
    secret.write_u64(0, SECRET_VALUE);
    debug_println!("survivor secret written at {base}");
    ISOLATION_CHANNEL.notify();
    Survivor { secret }
}

frameshift_pd::protection_domain!(init);
