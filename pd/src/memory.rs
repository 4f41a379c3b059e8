//! A VMM's side of memory conversion with its guest (DESIGN.md 4, the host operations; docs/ABI.md
//! "VMM calls"): donate, share with the guest, unshare from it, lend, reclaim, teardown; and the
//! views a VMM has of its own memory: its frame capabilities and the audit.
//!
//! A VM is named by any of its vCPUs (a [`Child`]); IPAs are the guest's, and the frames are the
//! ones at the same position of the VMM's window. Every range is 1 to 512 pages and all or
//! nothing: a refusal changed nothing.

use crate::call::{self, CallError, CallRegisters};
use crate::channel::Child;
use crate::Ipa;
use frameshift_abi::addr::PhysAddr;
use frameshift_abi::boot_info::{RIGHT_EXECUTE, RIGHT_READ, RIGHT_WRITE};
use frameshift_abi::pd_call::{
    CAP_DERIVED, CAP_LENT_AWAY, CAP_ORIGINAL, PD_AUDIT, PD_FRAME_CAPS, PD_MEM_DONATE, PD_MEM_LEND,
    PD_MEM_RECLAIM, PD_MEM_SHARE_WITH_GUEST, PD_MEM_UNSHARE_FROM_GUEST, PD_VM_CONSOLE_WRITE,
    PD_VM_TEARDOWN,
};
use frameshift_abi::smccc;

/// Access rights on a page (the boot information's `RIGHT_*` bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rights(u8);

impl Rights {
    /// Read only.
    pub const READ: Self = Self(RIGHT_READ);
    /// Read and write.
    pub const READ_WRITE: Self = Self(RIGHT_READ | RIGHT_WRITE);
    /// Read, write and execute.
    pub const ALL: Self = Self(RIGHT_READ | RIGHT_WRITE | RIGHT_EXECUTE);

    /// The raw bits.
    pub const fn bits(self) -> u8 {
        self.0
    }
}

/// Most bytes one `PD_VM_CONSOLE_WRITE` carries.
pub const VM_CONSOLE_CHUNK: usize = 40;

fn vm_call(function: u32, vm: Child, arguments: &[u64]) -> Result<CallRegisters, CallError> {
    let mut registers = CallRegisters::new(function);
    registers.0[1] = vm.index() as u64;
    for (slot, argument) in registers.0[2..].iter_mut().zip(arguments) {
        *slot = *argument;
    }
    call::hvc(&mut registers);
    registers.result().map(|()| registers)
}

impl Child {
    /// Give the guest `pages` pages from `ipa`, contents kept; they leave the VMM's window.
    pub fn donate(self, ipa: Ipa, pages: u64) -> Result<(), CallError> {
        vm_call(PD_MEM_DONATE, self, &[ipa.get(), pages]).map(|_| ())
    }

    /// Let the guest borrow the VMM's pages at `ipa` with at most `rights`.
    pub fn share_with_guest(self, ipa: Ipa, pages: u64, rights: Rights) -> Result<(), CallError> {
        let arguments = [ipa.get(), pages, u64::from(rights.bits())];
        vm_call(PD_MEM_SHARE_WITH_GUEST, self, &arguments).map(|_| ())
    }

    /// Take pages shared with the guest back; its mapping is gone when this returns.
    pub fn unshare_from_guest(self, ipa: Ipa, pages: u64) -> Result<(), CallError> {
        vm_call(PD_MEM_UNSHARE_FROM_GUEST, self, &[ipa.get(), pages]).map(|_| ())
    }

    /// Lend pages to the guest for its exclusive use.
    pub fn lend(self, ipa: Ipa, pages: u64, rights: Rights) -> Result<(), CallError> {
        let arguments = [ipa.get(), pages, u64::from(rights.bits())];
        vm_call(PD_MEM_LEND, self, &arguments).map(|_| ())
    }

    /// Take lent pages back once the guest relinquished them (or is dead).
    pub fn reclaim(self, ipa: Ipa, pages: u64) -> Result<(), CallError> {
        vm_call(PD_MEM_RECLAIM, self, &[ipa.get(), pages]).map(|_| ())
    }

    /// Tear the VM down: every vCPU stops and becomes fresh; the guest's own pages come back to
    /// the VMM's window zeroed; pages the VMM shared stay as they are.
    pub fn teardown(self) -> Result<(), CallError> {
        vm_call(PD_VM_TEARDOWN, self, &[]).map(|_| ())
    }

    /// Print `bytes` on the VM's console (what an emulated UART sends), 40 bytes per call.
    /// Stops at the first refusal.
    pub fn vm_console_write(self, bytes: &[u8]) -> Result<(), CallError> {
        for chunk in bytes.chunks(VM_CONSOLE_CHUNK) {
            let mut arguments = [0u64; 6];
            arguments[0] = chunk.len() as u64;
            for (slot, word) in arguments[1..].iter_mut().zip(chunk.chunks(8)) {
                let mut little_endian = [0u8; 8];
                for (byte_slot, byte) in little_endian.iter_mut().zip(word) {
                    *byte_slot = *byte;
                }
                *slot = u64::from_le_bytes(little_endian);
            }
            vm_call(PD_VM_CONSOLE_WRITE, self, &arguments)?;
        }
        Ok(())
    }
}

/// How the VMM holds a frame capability run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CapHeld {
    /// The original capability: the VMM owns the frames.
    Original,
    /// A derived capability: the VMM borrows them (a page its guest shared).
    Derived,
    /// The original, lent away: no access now.
    LentAway,
    /// A value this runtime does not know.
    Other(u64),
}

impl CapHeld {
    const fn from_raw(raw: u64) -> Self {
        match raw {
            CAP_ORIGINAL => Self::Original,
            CAP_DERIVED => Self::Derived,
            CAP_LENT_AWAY => Self::LentAway,
            other => Self::Other(other),
        }
    }
}

/// One run of the caller's frame capabilities (`PD_FRAME_CAPS`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameCapRun {
    /// The first IPA, in the caller's address space.
    pub ipa: Ipa,
    /// Its physical address.
    pub pa: PhysAddr,
    /// Pages in the run.
    pub pages: u64,
    /// How they are held.
    pub held: CapHeld,
    /// The caller's rights (`RIGHT_*` bits).
    pub rights: u64,
    /// The peer domain's index, if another domain holds the frames too.
    pub peer: Option<u64>,
}

impl FrameCapRun {
    /// One past the run's last IPA, if it does not overflow.
    pub fn end(&self) -> Option<Ipa> {
        self.ipa.checked_add_pages(self.pages)
    }

    /// The physical address of `ipa`, if the run covers it.
    pub fn pa_of(&self, ipa: Ipa) -> Option<PhysAddr> {
        let inside = ipa >= self.ipa && self.end().is_some_and(|end| ipa < end);
        inside.then(|| self.pa.add(ipa.get() - self.ipa.get()))
    }
}

/// The caller's frame capability runs at or above a start IPA, in IPA order.
#[derive(Clone, Copy, Debug)]
pub struct FrameCaps {
    next: Option<Ipa>,
    error: Option<CallError>,
}

impl FrameCaps {
    /// The refusal that ended the walk early, if any (running out of runs is no error).
    pub fn error(&self) -> Option<CallError> {
        self.error
    }
}

impl Iterator for FrameCaps {
    type Item = FrameCapRun;

    fn next(&mut self) -> Option<FrameCapRun> {
        let from = self.next.take()?;
        let mut registers = CallRegisters::new(PD_FRAME_CAPS);
        registers.0[1] = from.get();
        call::hvc(&mut registers);
        match registers.status() {
            smccc::SUCCESS => {}
            smccc::NOT_REQUIRED => return None,
            status => {
                self.error = Some(CallError::Refused(status));
                return None;
            }
        }
        let [_, ipa, pa, pages, held, rights, peer, ..] = registers.0;
        let run = FrameCapRun {
            ipa: Ipa(ipa),
            pa: PhysAddr(pa),
            pages,
            held: CapHeld::from_raw(held),
            rights,
            peer: (peer != u64::from(u32::MAX)).then_some(peer),
        };
        // Go on after this run only if that is progress; a run that does not end above `from`
        // would make the walk loop forever.
        self.next = run.end().filter(|end| *end > from && pages > 0);
        Some(run)
    }
}

/// The caller's frame capability runs from IPA 0 on.
pub fn frame_caps() -> FrameCaps {
    frame_caps_from(Ipa(0))
}

/// The caller's frame capability runs at or above `ipa`.
pub fn frame_caps_from(ipa: Ipa) -> FrameCaps {
    FrameCaps {
        next: Some(ipa),
        error: None,
    }
}

/// The caller's run covering `ipa` and the physical address of `ipa`, if it holds that page.
pub fn frame_cap_at(ipa: Ipa) -> Option<(FrameCapRun, PhysAddr)> {
    frame_caps()
        .take_while(|run| run.ipa <= ipa)
        .find_map(|run| run.pa_of(ipa).map(|pa| (run, pa)))
}

/// What the audit found (`PD_AUDIT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuditReport {
    /// I1-I4 violations (0 in a sound system).
    pub violations: u64,
    /// Mapped pages it checked.
    pub mapped_pages: u64,
    /// Audits run since boot.
    pub audits_run: u64,
}

/// Run the hypervisor's I1-I4 audit now.
pub fn audit() -> Result<AuditReport, CallError> {
    audit_with(0)
}

/// Run the audit and have the hypervisor write the auditor's dump to the console (and again at
/// the halt): what `cargo xtask audit` reads.
pub fn audit_and_dump() -> Result<AuditReport, CallError> {
    audit_with(frameshift_abi::pd_call::AUDIT_DUMP)
}

fn audit_with(flags: u64) -> Result<AuditReport, CallError> {
    let mut registers = CallRegisters::new(PD_AUDIT);
    registers.0[1] = flags;
    call::hvc(&mut registers);
    registers.result()?;
    Ok(AuditReport {
        violations: registers.0[1],
        mapped_pages: registers.0[2],
        audits_run: registers.0[3],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::rc::Rc;
    use std::vec::Vec;

    fn fake(status: i64) -> Rc<RefCell<Vec<[u64; 8]>>> {
        let log = Rc::new(RefCell::new(Vec::new()));
        let calls = log.clone();
        call::install_fake(move |registers| {
            let mut seen = [0u64; 8];
            seen.copy_from_slice(&registers.0[..8]);
            calls.borrow_mut().push(seen);
            registers.0 = [0; 12];
            registers.0[0] = status as u64;
        });
        log
    }

    #[test]
    fn memory_calls_name_the_vm_range_and_rights() {
        let log = fake(0);
        let vm = Child::new(2);
        let page = Ipa(0x4001_0000);
        assert_eq!(vm.donate(page, 4), Ok(()));
        assert_eq!(vm.share_with_guest(page, 1, Rights::READ_WRITE), Ok(()));
        assert_eq!(vm.unshare_from_guest(page, 1), Ok(()));
        assert_eq!(vm.lend(page, 2, Rights::READ), Ok(()));
        assert_eq!(vm.reclaim(page, 2), Ok(()));
        assert_eq!(vm.teardown(), Ok(()));
        let heads: Vec<[u64; 5]> = log
            .borrow()
            .iter()
            .map(|r| [r[0], r[1], r[2], r[3], r[4]])
            .collect();
        assert_eq!(
            heads,
            [
                [0xC600_0110, 2, 0x4001_0000, 4, 0],
                [0xC600_0111, 2, 0x4001_0000, 1, 3],
                [0xC600_0112, 2, 0x4001_0000, 1, 0],
                [0xC600_0113, 2, 0x4001_0000, 2, 1],
                [0xC600_0114, 2, 0x4001_0000, 2, 0],
                [0xC600_0115, 2, 0, 0, 0],
            ]
        );
    }

    #[test]
    fn a_refused_memory_call_is_an_error() {
        let _log = fake(smccc::INVALID_PARAMETER);
        assert_eq!(
            Child::new(0).donate(Ipa(0x4000_0000), 513),
            Err(CallError::Refused(smccc::INVALID_PARAMETER))
        );
    }

    #[test]
    fn console_bytes_go_40_at_a_time_little_endian() {
        let log = fake(0);
        let text: Vec<u8> = (0..41u8).collect();
        assert_eq!(Child::new(1).vm_console_write(&text), Ok(()));
        let log = log.borrow();
        assert_eq!(log.len(), 2);
        assert_eq!(log[0][..3], [0xC600_0118, 1, 40]);
        assert_eq!(log[0][3], u64::from_le_bytes([0, 1, 2, 3, 4, 5, 6, 7]));
        assert_eq!(
            log[0][7],
            u64::from_le_bytes([32, 33, 34, 35, 36, 37, 38, 39])
        );
        assert_eq!(log[1][..4], [0xC600_0118, 1, 1, 40]);
    }

    /// A fake hypervisor holding `runs` (ipa, pa, pages): answers each PD_FRAME_CAPS with the
    /// first run at or above x1.
    fn holding(runs: Vec<(u64, u64, u64)>) -> Rc<RefCell<Vec<u64>>> {
        let log = Rc::new(RefCell::new(Vec::new()));
        let asked = log.clone();
        call::install_fake(move |registers| {
            assert_eq!(registers.0[0], u64::from(PD_FRAME_CAPS));
            let from = registers.0[1];
            asked.borrow_mut().push(from);
            registers.0 = [0; 12];
            match runs.iter().find(|(ipa, _, _)| *ipa >= from) {
                Some(&(ipa, pa, pages)) => {
                    registers.0[1..7].copy_from_slice(&[ipa, pa, pages, 1, 3, 5]);
                }
                None => registers.0[0] = smccc::NOT_REQUIRED as u64,
            }
        });
        log
    }

    #[test]
    fn frame_caps_walks_every_run_in_order() {
        let asked = holding(std::vec![
            (0x2000_0000, 0x4300_0000, 2),
            (0x2001_0000, 0x4400_0000, 1)
        ]);
        let runs: Vec<(Ipa, PhysAddr, u64)> = frame_caps()
            .map(|run| (run.ipa, run.pa, run.pages))
            .collect();
        assert_eq!(
            runs,
            [
                (Ipa(0x2000_0000), PhysAddr(0x4300_0000), 2),
                (Ipa(0x2001_0000), PhysAddr(0x4400_0000), 1),
            ]
        );
        assert_eq!(*asked.borrow(), [0, 0x2000_2000, 0x2001_1000]);
        let run = frame_caps().next();
        assert_eq!(
            run.map(|run| (run.held, run.rights, run.peer)),
            Some((CapHeld::Derived, 3, Some(5)))
        );
    }

    #[test]
    fn frame_cap_at_finds_the_page_inside_a_run() {
        let _asked = holding(std::vec![(0x2000_0000, 0x4300_0000, 4)]);
        let found = frame_cap_at(Ipa(0x2000_2000)).map(|(_, pa)| pa);
        assert_eq!(found, Some(PhysAddr(0x4300_2000)));
        assert_eq!(frame_cap_at(Ipa(0x2000_4000)), None);
        assert_eq!(frame_cap_at(Ipa(0x1000_0000)), None);
    }

    #[test]
    fn a_run_that_does_not_advance_ends_the_walk() {
        call::install_fake(|registers| {
            registers.0 = [0; 12];
            registers.0[1] = 0x1000;
            registers.0[3] = 0; // zero pages: no progress
        });
        assert_eq!(frame_caps_from(Ipa(0x1000)).count(), 1);
    }

    #[test]
    fn audit_reads_its_three_counts() {
        call::install_fake(|registers| {
            assert_eq!(registers.0[0], u64::from(PD_AUDIT));
            registers.0[..4].copy_from_slice(&[0, 0, 1234, 7]);
        });
        assert_eq!(
            audit(),
            Ok(AuditReport {
                violations: 0,
                mapped_pages: 1234,
                audits_run: 7
            })
        );
    }
}
