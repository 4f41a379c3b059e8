//! What the guest programs share: the doorbell device (frameshift_vm_protocol::doorbell) and a
//! tally of checks that prints each failure.
#![no_std]
#![deny(unsafe_code)]

use core::fmt::{Arguments, Debug};
use frameshift_guest::{mmio, println, Ipa};
use frameshift_vm_protocol::doorbell::{Command, COMMAND, DOORBELL_IPA, STATUS, VALUE};

/// The VMM's doorbell. The program maps its page (`guest_main!`'s `devices`) and registers it
/// with `MMIO_GUARD` before ringing.
#[derive(Clone, Copy, Debug)]
pub struct Doorbell;

impl Doorbell {
    /// Send `command`; returns the VMM's `STATUS` for it.
    pub fn ring(self, command: Command) -> u64 {
        #[allow(unsafe_code)]
        // SAFETY: COMMAND and STATUS are 64-bit registers of the doorbell page, which the
        // program maps as Device memory and has registered; the VMM emulates both accesses.
        unsafe {
            mmio::write64(DOORBELL_IPA.add(COMMAND), command.encode());
            mmio::read64(DOORBELL_IPA.add(STATUS))
        }
    }

    /// The `STATUS` of the last command, read again: an access the VMM emulates, so it runs.
    pub fn status(self) -> u64 {
        #[allow(unsafe_code)]
        // SAFETY: as in `ring`: the doorbell page is mapped as Device memory and registered.
        unsafe {
            mmio::read64(DOORBELL_IPA.add(STATUS))
        }
    }

    /// The `VALUE` the last command produced.
    pub fn value(self) -> u64 {
        #[allow(unsafe_code)]
        // SAFETY: as in `ring`, for the VALUE register.
        unsafe {
            mmio::read64(DOORBELL_IPA.add(VALUE))
        }
    }
}

/// The doorbell page, for `guest_main!`'s device list.
pub const DOORBELL_PAGE: Ipa = DOORBELL_IPA;

/// A tally of checks. Each failure prints one line: `FAIL <name>: <detail>`.
#[derive(Debug, Default)]
pub struct Checks {
    /// Checks that held.
    pub passed: u64,
    /// Checks that did not.
    pub failed: u64,
}

impl Checks {
    /// Count one check; print `detail` if it failed. Returns `ok`.
    pub fn check(&mut self, name: &str, ok: bool, detail: Arguments<'_>) -> bool {
        if ok {
            self.passed += 1;
        } else {
            self.failed += 1;
            println!("FAIL {name}: {detail}");
        }
        ok
    }

    /// Check that `got` equals `expected`.
    pub fn equal<T: PartialEq + Debug>(&mut self, name: &str, got: T, expected: T) -> bool {
        let ok = got == expected;
        self.check(
            name,
            ok,
            format_args!("got {got:x?}, expected {expected:x?}"),
        )
    }
}
