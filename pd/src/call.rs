//! The one way a PD reaches the hypervisor: `HVC #0` with registers `x0`-`x11` (ABI family 2).
//!
//! Everything above this module is portable. On the AArch64 firmware target the call is a real
//! `HVC`; in host unit tests it goes to a fake hypervisor the test installs, so the runtime's
//! encoding and dispatch are tested on x86-64 (STYLE rule 2).

use frameshift_abi::smccc;

/// Registers `x0`-`x11` of a PD call, both ways: function id and arguments in, status and results
/// out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct CallRegisters(pub [u64; 12]);

impl CallRegisters {
    /// A call to `function` with every argument register zero.
    pub const fn new(function: u32) -> Self {
        let mut registers = [0; 12];
        registers[0] = function as u64;
        Self(registers)
    }

    /// The SMCCC status the hypervisor returned in `x0`.
    pub const fn status(&self) -> i64 {
        self.0[0] as i64
    }

    /// `Ok(())` if the call succeeded, else the refusal.
    pub const fn result(&self) -> Result<(), CallError> {
        match self.status() {
            smccc::SUCCESS => Ok(()),
            status => Err(CallError::Refused(status)),
        }
    }
}

/// Why a PD call did not do what was asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallError {
    /// The hypervisor refused the call with this SMCCC status (negative).
    Refused(i64),
    /// The hypervisor returned an event kind this runtime does not know.
    UnknownEvent(u64),
}

impl core::fmt::Display for CallError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Refused(status) => write!(f, "refused with status {status}"),
            Self::UnknownEvent(kind) => write!(f, "unknown event kind {kind}"),
        }
    }
}

/// Issue one PD call: `registers` holds the call on entry and the hypervisor's answer on return.
pub fn hvc(registers: &mut CallRegisters) {
    backend::hvc(registers);
}

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod backend {
    use super::CallRegisters;

    pub(super) fn hvc(registers: &mut CallRegisters) {
        let r = &mut registers.0;
        // SAFETY: HVC #0 enters the hypervisor, which reads and writes only x0-x17 (SMCCC 1.2) and
        // never touches this PD's memory on our behalf for these calls; all of x0-x17 are
        // declared as clobbered or in/out, so the compiler keeps nothing live in them.
        unsafe {
            core::arch::asm!(
                "hvc #0",
                inout("x0") r[0], inout("x1") r[1], inout("x2") r[2], inout("x3") r[3],
                inout("x4") r[4], inout("x5") r[5], inout("x6") r[6], inout("x7") r[7],
                inout("x8") r[8], inout("x9") r[9], inout("x10") r[10], inout("x11") r[11],
                out("x12") _, out("x13") _, out("x14") _, out("x15") _, out("x16") _,
                out("x17") _,
                options(nostack),
            );
        }
    }
}

#[cfg(all(not(all(target_arch = "aarch64", target_os = "none")), not(test)))]
mod backend {
    use super::CallRegisters;

    /// A host build (e.g. `cargo clippy` on x86-64) has no hypervisor: every call is refused.
    pub(super) fn hvc(registers: &mut CallRegisters) {
        registers.0 = [0; 12];
        registers.0[0] = frameshift_abi::smccc::NOT_SUPPORTED as u64;
    }
}

#[cfg(all(not(all(target_arch = "aarch64", target_os = "none")), test))]
pub(crate) mod backend {
    //! The host fake: each test thread installs its own hypervisor closure.
    use super::CallRegisters;
    use std::boxed::Box;
    use std::cell::RefCell;

    type Fake = Box<dyn FnMut(&mut CallRegisters)>;

    std::thread_local! {
        static FAKE: RefCell<Option<Fake>> = RefCell::new(None);
    }

    /// Route this thread's PD calls to `fake`.
    pub(crate) fn install(fake: impl FnMut(&mut CallRegisters) + 'static) {
        FAKE.with(|cell| *cell.borrow_mut() = Some(Box::new(fake)));
    }

    pub(super) fn hvc(registers: &mut CallRegisters) {
        FAKE.with(|cell| match cell.borrow_mut().as_mut() {
            Some(fake) => fake(registers),
            None => panic!("test did not install a fake hypervisor"),
        });
    }
}

#[cfg(test)]
pub(crate) use backend::install as install_fake;
