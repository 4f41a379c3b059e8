//! Attacker: once the survivor has written its secret, tries to read it at the address where the
//! survivor maps it (nothing is mapped there for the attacker) and to read hypervisor memory.
//! Both reads must fault; the hypervisor reports each fault, and the runtime's probe turns the
//! injected abort into an error printed here (isolation.xml). It also maps the secret region
//! read-only: reading the secret there works, overwriting it must fault (I2).
#![cfg_attr(target_os = "none", no_std, no_main)]
#![deny(unsafe_code)]

use frameshift_pd::probe::{read_u64, write_u64};
use frameshift_pd::{debug_println, ChannelSet, Handler, Ipa};
use frameshift_pd_programs::{HYPERVISOR_IPA, ISOLATION_CHANNEL, SECRET_IPA, SECRET_READ_ONLY_IPA};

struct Attacker;

/// Try one read and say what happened.
fn attack(target: &str, ipa: Ipa) {
    match read_u64(ipa) {
        Ok(value) => debug_println!("attacker read {target} ipa={ipa} LEAKED value={value:#x}"),
        Err(fault) => debug_println!(
            "attacker read {target} ipa={ipa} faulted ec={:#x} far={:#x}",
            fault.exception_class(),
            fault.far
        ),
    }
}

impl Handler for Attacker {
    fn notified(&mut self, channels: ChannelSet) {
        if !channels.contains(ISOLATION_CHANNEL) {
            panic!("notified on channels {:#x}", channels.bits());
        }
        attack("survivor-secret", SECRET_IPA);
        attack("hypervisor", HYPERVISOR_IPA);
        // The read-only mapping: the read is its right, the write is not.
        let ipa = SECRET_READ_ONLY_IPA;
        match read_u64(ipa) {
            Ok(value) => {
                debug_println!("attacker read read-only-secret ipa={ipa} value={value:#x}")
            }
            Err(fault) => debug_println!(
                "attacker read read-only-secret ipa={ipa} REFUSED ec={:#x}",
                fault.exception_class()
            ),
        }
        match write_u64(ipa, 0xBAD) {
            Ok(()) => debug_println!("attacker write read-only-secret ipa={ipa} WROTE"),
            Err(fault) => debug_println!(
                "attacker write read-only-secret ipa={ipa} faulted ec={:#x} far={:#x}",
                fault.exception_class(),
                fault.far
            ),
        }
        ISOLATION_CHANNEL.notify();
    }
}

fn init() -> Attacker {
    Attacker
}

frameshift_pd::protection_domain!(init);
