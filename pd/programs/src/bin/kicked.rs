//! Kicked: the high-priority PD the kicker notifies. It counts the kicks in the `kicks` region,
//! where the peer reads them (starvation.xml).
#![cfg_attr(target_os = "none", no_std, no_main)]
#![deny(unsafe_code)]

use frameshift_pd::{debug_println, memory_region_symbol, ChannelSet, Handler, Region};

struct Kicked {
    kicks: Region,
}

impl Handler for Kicked {
    fn notified(&mut self, _channels: ChannelSet) {
        self.kicks.write_u64(0, self.kicks.read_u64(0) + 1);
    }
}

fn init() -> Kicked {
    let base = memory_region_symbol!(kicks_vaddr);
    // SAFETY: starvation.xml maps the 4 KiB region `kicks` read-write at `kicks_vaddr`, away
    // from this program's image and stack.
    #[allow(unsafe_code)]
    let kicks = unsafe { Region::new(base, 0x1000) };
    debug_println!("kicked ready");
    Kicked { kicks }
}

frameshift_pd::protection_domain!(init);
