//! The host VMM protection domain: for now a placeholder.
//!
//! It prints the address of its window onto the protected guest's RAM (the `guest_ram_vaddr`
//! idiom of libvmm, patched by the build tool), notifies its peer PD and reports the answer. It
//! does not touch the window: the guest has shared no page yet, so every access would fault.
//! Starting the guest's vCPU, serving its faults and the donate/share/reclaim flows of DESIGN 4
//! and 8 are a later issue (the kernel does not run VMs yet).
#![cfg_attr(target_os = "none", no_std, no_main)]
#![deny(unsafe_code)]

use frameshift_pd::{debug_println, memory_region_symbol, Channel, ChannelSet, Handler};

/// The channel to the peer PD (system.xml).
const PEER: Channel = Channel::new(1);

struct Vmm;

impl Handler for Vmm {
    fn notified(&mut self, channels: ChannelSet) {
        if !channels.contains(PEER) {
            panic!("notified on channels {:#x}", channels.bits());
        }
        debug_println!("vmm peer answered");
    }
}

fn init() -> Vmm {
    let window = memory_region_symbol!(guest_ram_vaddr);
    debug_println!("vmm window guest_ram_vaddr={window}");
    PEER.notify();
    Vmm
}

frameshift_pd::protection_domain!(init);
