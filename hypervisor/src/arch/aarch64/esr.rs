//! Decoding why a domain left EL1: the exception syndrome (`ESR_EL2`, Arm ARM D24.2.40), the
//! faulting IPA (`HPFAR_EL2`, `FAR_EL2`), and what the arch layer writes back when it gives an
//! exception to a domain's own EL1 vector. Pure functions of register values: the trap handler
//! reads the registers and the core sees only the typed exit ([`Exit`](frameshift_core::Exit)).

use frameshift_core::kernel::{FaultKind, FaultReport, InstructionLength};
use frameshift_core::{Exit, Ipa};

/// `ESR_EL2.EC` (bits 31:26): the exception class.
pub const fn exception_class(esr: u64) -> u64 {
    (esr >> 26) & 0x3F
}

/// `ESR_EL2.IL` (bit 25).
const IL: u64 = 1 << 25;
/// `ESR_EL2.ISS.WnR` of a data abort (bit 6): the access was a write.
const WNR: u64 = 1 << 6;

/// EC 0x01: a trapped `WFI` or `WFE`.
pub const EC_WFX: u64 = 0x01;
/// EC 0x07: an FP/SIMD access trapped by `CPTR_EL2.TFP`.
pub const EC_FP: u64 = 0x07;
/// EC 0x16: `HVC` from AArch64.
pub const EC_HVC64: u64 = 0x16;
/// EC 0x17: `SMC` from AArch64, trapped by `HCR_EL2.TSC`.
pub const EC_SMC64: u64 = 0x17;
/// EC 0x20: an instruction abort from a lower EL.
pub const EC_INSTRUCTION_ABORT_LOWER: u64 = 0x20;
/// EC 0x21: an instruction abort taken without a change of EL.
pub const EC_INSTRUCTION_ABORT_SAME: u64 = 0x21;
/// EC 0x24: a data abort from a lower EL.
pub const EC_DATA_ABORT_LOWER: u64 = 0x24;
/// EC 0x25: a data abort taken without a change of EL.
pub const EC_DATA_ABORT_SAME: u64 = 0x25;

/// Exception classes of an instruction that EL2 traps only to refuse it: the domain gets it back
/// as UNDEFINED (docs/ISOLATION.md, I9).
///
/// | EC | trapped by |
/// | --- | --- |
/// | 0x03, 0x04 | AArch32 EL0 `MCR`/`MRC`, `MCRR`/`MRRC` to CP15 (timer, PMU, ID) |
/// | 0x05, 0x06, 0x0C | AArch32 EL0 `MCR`/`MRC`, `LDC`/`STC`, `MRRC` to CP14 (debug) |
/// | 0x09 | `HCR_EL2.API` = 0: pointer authentication instructions |
/// | 0x0A | `HCRX_EL2` = 0: `LD64B`/`ST64B*` |
/// | 0x18 | `MSR`/`MRS`/`SYS`: `HCR_EL2.{TACR, TIDCP, TSW, TLOR, TERR, APK, EnSCXT=0, ATA=0}`, `MDCR_EL2.{TDA, TDOSA, TDRA, TPM, TPMCR}`, `CNTHCTL_EL2.EL1PCEN` = 0, `ICC_SRE_EL2.Enable` = 0, `ICC_SGI*R_EL1` under `HCR_EL2.IMO` |
/// | 0x19 | `CPTR_EL2.TZ`: SVE |
/// | 0x1D | `CPTR_EL2.TSM`: SME |
pub const fn is_refused_access(class: u64) -> bool {
    matches!(
        class,
        0x03 | 0x04 | 0x05 | 0x06 | 0x09 | 0x0A | 0x0C | 0x18 | 0x19 | 0x1D
    )
}

/// The length of the instruction a trap was taken on, from `ESR_EL2.IL` (bit 25): 0 for a 16-bit
/// T32 instruction, 1 for a 32-bit one (every A64 instruction). A trap that resumes past the
/// instruction (a refused `SMC`, a yielding `WFI`) must skip exactly this much: a T32 `WFI` from
/// an AArch32 EL0 is 2 bytes, and skipping 4 would jump over the instruction after it.
pub const fn instruction_length(esr: u64) -> InstructionLength {
    if esr & IL == 0 {
        InstructionLength::Narrow
    } else {
        InstructionLength::Wide
    }
}

/// The class of a stage-2 abort from its fault status code (ESR bits 5:0): translation faults
/// are 0x04-0x07 by level, permission faults 0x0D-0x0F (DESIGN.md 9).
pub const fn classify_abort(esr: u64) -> FaultKind {
    match esr & 0x3F {
        0x04..=0x07 => FaultKind::Translation,
        0x0D..=0x0F => FaultKind::Permission,
        _ => FaultKind::OtherAbort,
    }
}

/// The faulting IPA of a stage-2 abort: the page from `HPFAR_EL2.FIPA` (bits 39:4 hold IPA
/// bits 47:12), the offset from `FAR_EL2` (DESIGN.md 9).
pub const fn abort_ipa(hpfar: u64, far: u64) -> Ipa {
    Ipa(((hpfar & 0xF_FFFF_FFF0) << 8) | (far & 0xFFF))
}

/// `ESR_EL2.ISS.S1PTW` of an abort (bit 7): the stage-2 fault happened on the walk of the
/// domain's own stage-1 tables.
const S1PTW: u64 = 1 << 7;
/// `ESR_EL2.ISS.FnV` of an abort (bit 10): `FAR_EL2` is not valid.
const FNV: u64 = 1 << 10;

/// Whether `HPFAR_EL2` holds the faulting IPA: only for the stage-2 translation, access flag and
/// permission faults (fault status 0x04-0x0F; Arm ARM, `HPFAR_EL2`). For any other abort
/// taken to EL2 (an external abort, a TLB conflict...) its value is UNKNOWN.
pub const fn hpfar_valid(esr: u64) -> bool {
    matches!(esr & 0x3F, 0x04..=0x0F)
}

/// The faulting IPA of an abort from a lower EL, if the registers tell it:
///
/// - `HPFAR_EL2` valid ([`hpfar_valid`]): its page with `FAR_EL2`'s offset ([`abort_ipa`]);
///   when the fault was on a stage-1 table walk (`S1PTW`), `FAR_EL2` is the address being
///   translated, not the descriptor's, so the offset is left 0;
/// - otherwise, when the domain's stage 1 is off (`stage1_off`: a PD, or a guest before it
///   turns its MMU on) and `FAR_EL2` is valid: `FAR_EL2` itself, which is then the IPA;
/// - otherwise `None`: the IPA is unknown (the trap reports IPA 0 and an
///   [`FaultKind::OtherAbort`]).
pub const fn fault_ipa(esr: u64, hpfar: u64, far: u64, stage1_off: bool) -> Option<Ipa> {
    if hpfar_valid(esr) {
        let offset = if esr & S1PTW != 0 { 0 } else { far };
        Some(abort_ipa(hpfar, offset))
    } else if stage1_off && esr & FNV == 0 {
        Some(Ipa(far))
    } else {
        None
    }
}

/// The registers a synchronous exception from EL1 is decoded from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyncSyndrome {
    /// `ESR_EL2`.
    pub esr: u64,
    /// `HPFAR_EL2`.
    pub hpfar: u64,
    /// `FAR_EL2`.
    pub far: u64,
    /// `ELR_EL2`: the faulting instruction (the trap frame's PC).
    pub pc: u64,
}

/// What the trapped context is, as far as decoding its exception goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Trapped {
    /// A vCPU (else a PD).
    pub vcpu: bool,
    /// Its stage 1 is off: always for a PD (`HCR_EL2.DC`), for a vCPU while `SCTLR_EL1.M` is 0.
    pub stage1_off: bool,
    /// It has installed an EL1 exception vector (`VBAR_EL1` is not 0).
    pub has_vectors: bool,
}

/// What the trap handler does with a synchronous exception from EL1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncAction {
    /// An FP/SIMD instruction of a context that does not own the register file: switch it
    /// lazily and retry the instruction.
    SwitchFp,
    /// A PD's access to a feature EL2 refuses: give it back as UNDEFINED at its EL1 vector.
    Undefined,
    /// Tell the core.
    Exit(Exit),
}

/// Decodes a synchronous exception from EL1 (Arm ARM D24.2.40, the `ESR_EL2` exception
/// classes). The same classes mean the same exits for a PD and a vCPU, except:
///
/// - a refused system-register or instruction access (an [`is_refused_access`] class) is
///   given back to a PD as UNDEFINED when it has vectors, but is a fault of unknown kind for a
///   vCPU, which its VMM handles (`FAULT_VM_EXCEPTION`);
/// - an abort is never `injectable` for a vCPU: its VMM decides.
pub const fn decode_sync(syndrome: SyncSyndrome, trapped: Trapped) -> SyncAction {
    let esr = syndrome.esr;
    let class = exception_class(esr);
    let exit = match class {
        EC_FP => return SyncAction::SwitchFp,
        EC_HVC64 => Exit::Hypercall,
        EC_SMC64 => Exit::SecureMonitorCall(instruction_length(esr)),
        EC_WFX => Exit::WaitForInterrupt(instruction_length(esr)),
        EC_DATA_ABORT_LOWER | EC_INSTRUCTION_ABORT_LOWER => {
            let ipa = fault_ipa(esr, syndrome.hpfar, syndrome.far, trapped.stage1_off);
            let (kind, ipa) = match ipa {
                Some(ipa) => (classify_abort(esr), ipa),
                None => (FaultKind::OtherAbort, Ipa(0)),
            };
            Exit::Fault(FaultReport {
                kind,
                ipa,
                esr,
                pc: syndrome.pc,
                injectable: !trapped.vcpu && trapped.has_vectors,
            })
        }
        _ if is_refused_access(class) && !trapped.vcpu && trapped.has_vectors => {
            return SyncAction::Undefined
        }
        _ => Exit::Fault(unknown_fault(esr, syndrome.pc)),
    };
    SyncAction::Exit(exit)
}

/// The report of an exception the hypervisor does not serve itself.
pub const fn unknown_fault(esr: u64, pc: u64) -> FaultReport {
    FaultReport {
        kind: FaultKind::Unknown,
        ipa: Ipa(0),
        esr,
        pc,
        injectable: false,
    }
}

/// `ESR_EL1` of the synchronous external abort given back to the domain: a data abort becomes
/// EC 0x25 (data abort, same EL) and keeps WnR; an instruction abort becomes EC 0x21. IL = 1,
/// FSC = 0x10 (synchronous external abort, not on a table walk).
pub const fn injected_abort_syndrome(report: &FaultReport) -> u64 {
    let (class, wnr) = if exception_class(report.esr) == EC_DATA_ABORT_LOWER {
        (EC_DATA_ABORT_SAME, report.esr & WNR)
    } else {
        (EC_INSTRUCTION_ABORT_SAME, 0)
    };
    (class << 26) | IL | wnr | 0x10
}

/// `ESR_EL1` of an Undefined Instruction exception (EC 0) for a trapped instruction: only IL
/// survives, as the trapped instruction's own.
pub const fn undefined_syndrome(esr: u64) -> u64 {
    esr & IL
}

/// Offset from `VBAR_EL1` of the synchronous exception vector for an exception taken to EL1
/// from the mode in `pstate` (Arm ARM D1.3.1): EL1h 0x200, EL1t 0x000, EL0 (AArch64) 0x400,
/// EL0 in AArch32 (`M[4]` set; EL1 itself is always AArch64, `HCR_EL2.RW`) 0x600.
pub const fn el1_sync_vector_offset(pstate: u64) -> u64 {
    if pstate & 0x10 != 0 {
        return 0x600;
    }
    match pstate & 0xF {
        0b0101 => 0x200,
        0b0100 => 0x000,
        _ => 0x400,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(esr: u64) -> FaultReport {
        FaultReport {
            kind: classify_abort(esr),
            ipa: Ipa(0),
            esr,
            pc: 0,
            injectable: true,
        }
    }

    #[test]
    fn aborts_are_classified_by_their_status_code() {
        assert_eq!(classify_abort(0x9200_0007), FaultKind::Translation);
        assert_eq!(classify_abort(0x9200_0004), FaultKind::Translation);
        assert_eq!(classify_abort(0x9200_004F), FaultKind::Permission);
        assert_eq!(classify_abort(0x9200_000B), FaultKind::OtherAbort);
        assert_eq!(exception_class(0x9200_0007), EC_DATA_ABORT_LOWER);
    }

    #[test]
    fn the_ipa_joins_hpfar_page_and_far_offset() {
        // IPA 0x12_3456_7ABC: HPFAR_EL2.FIPA = IPA >> 12 placed at bit 4.
        let hpfar = (0x12_3456_7ABC_u64 >> 12) << 4;
        assert_eq!(abort_ipa(hpfar, 0xFFFF_0000_0000_0ABC), Ipa(0x12_3456_7ABC));
    }

    #[test]
    fn injected_aborts_keep_the_direction_and_say_external() {
        // A data abort write (WnR = bit 6) from EL1.
        let write = report((0x24 << 26) | (1 << 25) | (1 << 6) | 0x07);
        assert_eq!(
            injected_abort_syndrome(&write),
            (0x25 << 26) | (1 << 25) | (1 << 6) | 0x10
        );
        let fetch = report((0x20 << 26) | (1 << 25) | 0x0F);
        assert_eq!(
            injected_abort_syndrome(&fetch),
            (0x21 << 26) | (1 << 25) | 0x10
        );
    }

    #[test]
    fn the_instruction_length_comes_from_esr_il() {
        // A T32 WFI trapped from EL0: EC 0x01, IL = 0, CV = 1, COND = 0xE.
        let t32_wfi = (0x01 << 26) | (1 << 24) | (0xE << 20);
        assert_eq!(instruction_length(t32_wfi).bytes(), 2);
        assert_eq!(undefined_syndrome(t32_wfi), 0);
        // An A64 WFI and SMC: IL = 1.
        assert_eq!(instruction_length((0x01 << 26) | (1 << 25)).bytes(), 4);
        assert_eq!(instruction_length(0x5E00_0000).bytes(), 4);
        assert_eq!(undefined_syndrome(0x5E00_0000), 1 << 25);
    }

    #[test]
    fn the_vector_depends_on_the_mode_the_abort_came_from() {
        assert_eq!(el1_sync_vector_offset(0x3C5), 0x200);
        assert_eq!(el1_sync_vector_offset(0x3C4), 0x000);
        assert_eq!(el1_sync_vector_offset(0x3C0), 0x400);
        // AArch32 User mode (M = 0b10000), A32 or T32.
        assert_eq!(el1_sync_vector_offset(0x1D0), 0x600);
        assert_eq!(el1_sync_vector_offset(0x1F0), 0x600);
    }

    #[test]
    fn only_the_classes_trapped_to_refuse_them_are_refused() {
        for class in 0..64u64 {
            let refused = [0x03, 0x04, 0x05, 0x06, 0x09, 0x0A, 0x0C, 0x18, 0x19, 0x1D];
            assert_eq!(
                is_refused_access(class),
                refused.contains(&class),
                "{class:#x}"
            );
        }
    }

    const PD: Trapped = Trapped {
        vcpu: false,
        stage1_off: true,
        has_vectors: true,
    };
    const GUEST: Trapped = Trapped {
        vcpu: true,
        stage1_off: false,
        has_vectors: true,
    };

    fn syndrome(esr: u64) -> SyncSyndrome {
        SyncSyndrome {
            esr,
            hpfar: (0x12_3456_7000_u64 >> 12) << 4,
            far: 0xFFFF_0000_1234_5ABC,
            pc: 0x4000_1000,
        }
    }

    #[test]
    fn a_guest_abort_reports_the_full_ipa_and_is_never_injected() {
        // `str w1, [x0]` to an unmapped page, guest MMU on: FAR is a VA, HPFAR the IPA page.
        let esr = (0x24 << 26) | (1 << 25) | (1 << 24) | (2 << 22) | (1 << 16) | (1 << 6) | 0x07;
        let expected = FaultReport {
            kind: FaultKind::Translation,
            ipa: Ipa(0x12_3456_7ABC),
            esr,
            pc: 0x4000_1000,
            injectable: false,
        };
        assert_eq!(
            decode_sync(syndrome(esr), GUEST),
            SyncAction::Exit(Exit::Fault(expected))
        );
        // The same abort from a PD with vectors can be given back to it.
        assert_eq!(
            decode_sync(syndrome(esr), PD),
            SyncAction::Exit(Exit::Fault(FaultReport {
                injectable: true,
                ..expected
            }))
        );
        // An instruction fetch from a page without execute rights: permission, level 3.
        let fetch = (0x20 << 26) | (1 << 25) | 0x0F;
        assert_eq!(
            decode_sync(syndrome(fetch), GUEST),
            SyncAction::Exit(Exit::Fault(FaultReport {
                kind: FaultKind::Permission,
                esr: fetch,
                ..expected
            }))
        );
    }

    #[test]
    fn without_a_valid_hpfar_the_ipa_is_far_only_with_stage_1_off() {
        // Synchronous external abort (FSC 0x10): HPFAR_EL2 is UNKNOWN.
        let external = (0x24 << 26) | (1 << 25) | 0x10;
        assert!(!hpfar_valid(external));
        assert_eq!(
            fault_ipa(external, 0x000D_EAD0, 0x4000_0123, true),
            Some(Ipa(0x4000_0123))
        );
        assert_eq!(fault_ipa(external, 0x000D_EAD0, 0x4000_0123, false), None);
        // FnV: FAR_EL2 is not valid either.
        assert_eq!(fault_ipa(external | (1 << 10), 0, 0x4000_0123, true), None);
        let SyncAction::Exit(Exit::Fault(report)) = decode_sync(syndrome(external), GUEST) else {
            panic!("an abort is a fault");
        };
        assert_eq!((report.kind, report.ipa), (FaultKind::OtherAbort, Ipa(0)));
        // Access flag faults (FSC 0x09-0x0B) do have a valid HPFAR_EL2.
        assert_eq!(
            fault_ipa(0x0B, 0x4_0000 << 4, 0x7FF, false),
            Some(Ipa(0x4000_07FF))
        );
    }

    #[test]
    fn a_fault_on_the_guests_own_table_walk_has_no_offset() {
        // S1PTW: HPFAR is the IPA of the stage-1 descriptor's page; FAR is the VA translated.
        let esr = (0x24 << 26) | (1 << 25) | (1 << 7) | 0x06;
        assert_eq!(
            fault_ipa(esr, 0x4_0010 << 4, 0xFFFF_0000_0000_0ABC, false),
            Some(Ipa(0x4001_0000))
        );
    }

    #[test]
    fn calls_and_waits_decode_alike_for_pds_and_guests() {
        let hvc = (0x16 << 26) | (1 << 25);
        let smc = (0x17 << 26) | (1 << 25);
        let wfi = (0x01 << 26) | (1 << 25);
        for trapped in [PD, GUEST] {
            assert_eq!(
                decode_sync(syndrome(hvc), trapped),
                SyncAction::Exit(Exit::Hypercall)
            );
            let SyncAction::Exit(Exit::SecureMonitorCall(length)) =
                decode_sync(syndrome(smc), trapped)
            else {
                panic!("SMC is a secure monitor call");
            };
            assert_eq!(length.bytes(), 4);
            let SyncAction::Exit(Exit::WaitForInterrupt(length)) =
                decode_sync(syndrome(wfi), trapped)
            else {
                panic!("WFI waits");
            };
            assert_eq!(length.bytes(), 4);
            assert_eq!(
                decode_sync(syndrome(0x07 << 26 | 1 << 25), trapped),
                SyncAction::SwitchFp
            );
        }
    }

    #[test]
    fn a_trapped_system_register_is_undefined_for_a_pd_and_a_fault_for_a_guest() {
        // `mrs x0, actlr_el1` trapped by HCR_EL2.TACR: EC 0x18.
        let msr = (0x18 << 26) | (1 << 25) | 0x32_0C01;
        assert_eq!(decode_sync(syndrome(msr), PD), SyncAction::Undefined);
        let unknown = SyncAction::Exit(Exit::Fault(unknown_fault(msr, 0x4000_1000)));
        assert_eq!(decode_sync(syndrome(msr), GUEST), unknown);
        // A PD without vectors cannot take the UNDEF: it faults too.
        let bare = Trapped {
            has_vectors: false,
            ..PD
        };
        assert_eq!(decode_sync(syndrome(msr), bare), unknown);
        // An illegal execution state (EC 0x0E) is a fault of unknown kind for everyone.
        let illegal = (0x0E << 26) | (1 << 25);
        for trapped in [PD, GUEST] {
            assert_eq!(
                decode_sync(syndrome(illegal), trapped),
                SyncAction::Exit(Exit::Fault(unknown_fault(illegal, 0x4000_1000)))
            );
        }
    }
}
