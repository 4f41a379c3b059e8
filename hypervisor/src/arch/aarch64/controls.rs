//! The EL2 trap controls a context runs under, chosen from what it is
//! ([`ContextKind`](frameshift_core::ContextKind)): `HCR_EL2` (Arm ARM D24.2.48) and the
//! identity the context reads back (`VMPIDR_EL2`). Pure values, host-tested; the trap handler
//! writes them when the running context changes.
//!
//! | `HCR_EL2` bit | PD | vCPU | why |
//! | --- | --- | --- | --- |
//! | VM (0) | 1 | 1 | stage 2 on: a domain reaches only what its tables map |
//! | SWIO (1) | 1 | 1 | data cache invalidate by set/way becomes clean+invalidate: a domain never discards another's dirty lines |
//! | FMO, IMO (3, 4) | 1 | 1 | physical FIQs and IRQs go to EL2; EL1's `ICC_*` accesses reach the virtual interface (`ICV_*`) |
//! | AMO (5) | 1 | 1 | SErrors go to EL2; EL1's `DISR_EL1` is `VDISR_EL2` (context.rs) |
//! | DC (12) | 1 | 0 | a PD's stage 1 is off and its memory Normal cacheable (DESIGN.md 9); a guest's MMU and caches are its own |
//! | TWI, TWE (13, 14) | 1 | 1 | `WFI`/`WFE` yield the time slice instead of sleeping the CPU |
//! | TSC (19) | 1 | 1 | `SMC` traps: nobody reaches QEMU's PSCI (DESIGN.md 9); a guest's PSCI is served at EL2 |
//! | TIDCP (20) | 1 | 1 | implementation-defined system registers trap (they may be shared CPU state) |
//! | TACR (21) | 1 | 1 | `ACTLR_EL1` traps (CPU-wide tuning) |
//! | TSW (22) | 1 | 1 | cache maintenance by set/way traps (it reaches lines of every domain) |
//! | RW (31) | 1 | 1 | EL1 is AArch64 |
//! | TLOR (35) | FEAT_LOR | FEAT_LOR | the LORegion registers trap (RES0 without the feature) |
//! | TERR (36) | FEAT_RAS | FEAT_RAS | the RAS error record registers trap (RES0 without the feature) |
//!
//! Left clear on purpose, for both kinds, so that the feature is refused (docs/ISOLATION.md, I9):
//! APK and API (pointer authentication keys and instructions trap), EnSCXT (`SCXTNUM_EL0/EL1`
//! trap), ATA (MTE tags and `GCR/RGSR/TFSR*` trap), FIEN (RAS fault injection traps). Also clear:
//! TVM/TRVM (a guest owns its stage-1 registers, switched per context) and HCD (`HVC` is the
//! guest ABI's conduit).

use frameshift_core::ContextKind;

const VM: u64 = 1 << 0;
const SWIO: u64 = 1 << 1;
const FMO: u64 = 1 << 3;
const IMO: u64 = 1 << 4;
const AMO: u64 = 1 << 5;
const DC: u64 = 1 << 12;
const TWI: u64 = 1 << 13;
const TWE: u64 = 1 << 14;
const TSC: u64 = 1 << 19;
const TIDCP: u64 = 1 << 20;
const TACR: u64 = 1 << 21;
const TSW: u64 = 1 << 22;
const RW: u64 = 1 << 31;
const TLOR: u64 = 1 << 35;
const TERR: u64 = 1 << 36;

/// The bits every context runs with (the table above, DC aside).
const HCR_COMMON: u64 = VM | SWIO | FMO | IMO | AMO | TWI | TWE | TSC | TIDCP | TACR | TSW | RW;

/// `VMPIDR_EL2.RES1` (bit 31): MPIDR_EL1 bit 31 reads as one (Arm ARM D24.2.113).
const MPIDR_RES1: u64 = 1 << 31;
/// The affinity fields a vCPU's MPIDR may carry: Aff3 (39:32) and Aff2..Aff0 (23:0). U (bit 30)
/// stays 0 (a VM may have several vCPUs: it is not a uniprocessor), and MT (bit 24) stays 0
/// (Aff0 numbers vCPUs, not threads of one core).
const MPIDR_AFFINITY: u64 = 0xFF_00FF_FFFF;

/// The optional features that add `HCR_EL2` bits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HcrFeatures {
    /// FEAT_LOR: `HCR_EL2.TLOR` exists.
    pub lor: bool,
    /// FEAT_RAS: `HCR_EL2.TERR` exists.
    pub ras: bool,
}

/// `HCR_EL2` while a context of `kind` runs (module table).
pub const fn hcr_el2(kind: ContextKind, features: HcrFeatures) -> u64 {
    let mut hcr = HCR_COMMON;
    if matches!(kind, ContextKind::Pd) {
        hcr |= DC;
    }
    if features.lor {
        hcr |= TLOR;
    }
    if features.ras {
        hcr |= TERR;
    }
    hcr
}

/// `VMPIDR_EL2` for a vCPU whose MPIDR is `mpidr` (the core's affinity value): the affinity
/// fields as given, RES1 bit 31 set, U and MT clear.
pub const fn vcpu_vmpidr(mpidr: u64) -> u64 {
    (mpidr & MPIDR_AFFINITY) | MPIDR_RES1
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONE: HcrFeatures = HcrFeatures {
        lor: false,
        ras: false,
    };

    #[test]
    fn a_pd_keeps_the_value_entry_was_verified_with() {
        // DESIGN.md 9's VM, RW, IMO, FMO, AMO, TSC, plus SWIO, DC, TWI, TWE, TIDCP, TACR, TSW.
        assert_eq!(hcr_el2(ContextKind::Pd, NONE), 0x8078_703B);
        let all = HcrFeatures {
            lor: true,
            ras: true,
        };
        assert_eq!(hcr_el2(ContextKind::Pd, all), 0x18_8078_703B);
    }

    #[test]
    fn a_vcpu_differs_from_a_pd_only_by_dc() {
        for lor in [false, true] {
            for ras in [false, true] {
                let features = HcrFeatures { lor, ras };
                let pd = hcr_el2(ContextKind::Pd, features);
                let vcpu = hcr_el2(ContextKind::Vcpu { mpidr: 3 }, features);
                assert_eq!(pd ^ vcpu, DC, "lor={lor} ras={ras}");
                assert_eq!(vcpu & DC, 0);
                // Stage 2, the interrupt routing and the SMC trap stay on for a guest.
                assert_eq!(
                    vcpu & (VM | IMO | FMO | AMO | TSC | RW),
                    VM | IMO | FMO | AMO | TSC | RW
                );
                assert_eq!(vcpu & TLOR != 0, lor);
                assert_eq!(vcpu & TERR != 0, ras);
            }
        }
    }

    #[test]
    fn a_vcpu_reads_its_affinity_with_bit_31_set() {
        assert_eq!(vcpu_vmpidr(0), 0x8000_0000);
        assert_eq!(vcpu_vmpidr(2), 0x8000_0002);
        assert_eq!(vcpu_vmpidr(0x12_0034_5678), 0x12_8034_5678);
        // U (30), MT (24) and the RES0 bits above Aff3 cannot be asked for.
        assert_eq!(
            vcpu_vmpidr((1 << 30) | (1 << 24) | (1 << 40) | 1),
            0x8000_0001
        );
    }
}
