//! The attacker next to a VM (issue 10, hostile.xml): a PD with no window onto the guest that,
//! when its VMM notifies it, tries every guest IPA and every physical address of RAM it can
//! name, page by page for the guest's RAM and every 2 MiB for the machine's RAM. Each try is a
//! read under the probe; every one must fault. It runs at the guest's priority, so the timer
//! interleaves it with a guest spinning with its interrupts masked. Its one summary line:
//! `vm-attacker tries=N faults=F leaked=L`; then it notifies the VMM back.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![deny(unsafe_code)]

use frameshift_pd::probe::read_u64;
use frameshift_pd::{debug_println, frame_cap_at, Channel, ChannelSet, Handler, Ipa};

/// The channel to the VMM.
const VMM: Channel = Channel::new(0);
/// The guest's RAM in its own IPA space (frameshift_vm_protocol::boot::GUEST_RAM_IPA, 2 MiB).
const GUEST_RAM: (u64, u64) = (0x4000_0000, 0x20_0000);
/// The split-mode alias bit: the guest's shared view.
const ALIAS: u64 = 1 << 39;
const PAGE_SIZE: u64 = 4096;
/// The machine's RAM (frameshift_abi::layout: RAM_BASE, DEFAULT_RAM_SIZE).
const RAM: (u64, u64) = (0x4000_0000, 512 << 20);
/// The stride over the machine's RAM.
const RAM_STRIDE: u64 = 0x20_0000;

struct Attacker {
    rounds: u64,
}

impl Handler for Attacker {
    fn notified(&mut self, channels: ChannelSet) {
        if !channels.contains(VMM) {
            return;
        }
        self.rounds += 1;
        let mut tries = 0u64;
        let mut leaked = 0u64;
        let mut try_read = |ipa: u64| {
            tries += 1;
            if let Ok(value) = read_u64(Ipa(ipa)) {
                leaked += 1;
                debug_println!("vm-attacker LEAKED ipa={ipa:#x} value={value:#x}");
            }
            // No capability there either (and the call renews the injected-fault budget).
            if frame_cap_at(Ipa(ipa)).is_some() {
                leaked += 1;
                debug_println!("vm-attacker LEAKED a capability at ipa={ipa:#x}");
            }
        };
        let (base, size) = GUEST_RAM;
        for page in (base..base + size).step_by(PAGE_SIZE as usize) {
            try_read(page);
            try_read(page | ALIAS);
        }
        for pa in (RAM.0..RAM.0 + RAM.1).step_by(RAM_STRIDE as usize) {
            try_read(pa + 0x1000);
        }
        debug_println!(
            "vm-attacker tries={tries} faults={} leaked={leaked}",
            tries - leaked
        );
        VMM.notify();
    }
}

fn init() -> Attacker {
    debug_println!("vm-attacker: waiting for the VMM");
    Attacker { rounds: 0 }
}

frameshift_pd::protection_domain!(init);
