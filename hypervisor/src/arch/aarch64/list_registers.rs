//! The GICv3 list registers (`ICH_LR<n>_EL2`, GICv3 architecture specification 12.4.6): the
//! virtual interrupts a vCPU sees. Pure functions over a vCPU's saved list-register images,
//! host-tested; gic.rs saves and restores the images with the rest of the virtual interface.
//!
//! | bits | field | what Frameshift writes |
//! | --- | --- | --- |
//! | 31:0 | vINTID | the injected INTID |
//! | 41 | EOI (with HW = 0) | 0: no maintenance interrupt |
//! | 55:48 | Priority | the VMM's priority, only the bits the CPU implements (the rest are RES0) |
//! | 60 | Group | 0 or 1 as the VMM asked |
//! | 61 | HW | 0: a purely virtual interrupt, nothing physical to deactivate |
//! | 63:62 | State | 0b01 pending |
//!
//! An entry is free when its state is invalid (0b00): the guest's end of interrupt (or its
//! deactivation, with `EOImode` set) takes it there, so a completed interrupt frees its list
//! register without the hypervisor doing anything.

use frameshift_core::{ListRegistersFull, VirtualIrq};

const STATE_SHIFT: u32 = 62;
const STATE_MASK: u64 = 0b11 << STATE_SHIFT;
const STATE_PENDING: u64 = 0b01 << STATE_SHIFT;
const STATE_ACTIVE: u64 = 0b10 << STATE_SHIFT;
const GROUP1: u64 = 1 << 60;
const PRIORITY_SHIFT: u32 = 48;
const VINTID_MASK: u64 = 0xFFFF_FFFF;

/// The first INTID a list register cannot carry: 1020-1023 are the GIC's special INTIDs, and
/// Frameshift injects no LPIs.
pub const FIRST_SPECIAL_INTID: u32 = 1020;

/// The mask of the priority bits a CPU with `priority_bits` virtual priority bits implements
/// (`ICH_VTR_EL2.PRIbits` + 1, 5 to 8): the top bits of the 8-bit field.
pub const fn priority_mask(priority_bits: u32) -> u8 {
    let bits = if priority_bits < 5 {
        5
    } else if priority_bits > 8 {
        8
    } else {
        priority_bits
    };
    (0xFF_u16 << (8 - bits)) as u8
}

/// The list-register image of `irq`, pending, HW = 0.
pub const fn pending_image(irq: VirtualIrq, priority_mask: u8) -> u64 {
    let group = if irq.group != 0 { GROUP1 } else { 0 };
    STATE_PENDING
        | group
        | ((irq.priority & priority_mask) as u64) << PRIORITY_SHIFT
        | irq.intid as u64
}

/// The virtual INTID an image holds, if the entry is in use (pending, active, or both).
pub const fn listed_intid(image: u64) -> Option<u32> {
    if image & STATE_MASK == 0 {
        None
    } else {
        Some((image & VINTID_MASK) as u32)
    }
}

/// Lists `irq` in `images` (one vCPU's list registers), pending.
///
/// - Already listed and pending: nothing to do (a pending interrupt is pending once).
/// - Listed and active only (the guest is handling an earlier one): that entry becomes pending
///   and active, so the guest sees it again after its end of interrupt. Listing the same
///   vINTID twice would be UNPREDICTABLE (GICv3 architecture specification 4.9.5).
/// - Otherwise the first free entry takes it. Refused, with nothing changed, when none is free
///   or the INTID is one a list register cannot carry.
pub fn inject(
    images: &mut [u64],
    irq: VirtualIrq,
    priority_mask: u8,
) -> Result<(), ListRegistersFull> {
    if irq.intid >= FIRST_SPECIAL_INTID {
        return Err(ListRegistersFull);
    }
    if let Some(listed) = images
        .iter_mut()
        .find(|image| listed_intid(**image) == Some(irq.intid))
    {
        *listed |= STATE_PENDING;
        return Ok(());
    }
    match images
        .iter_mut()
        .find(|image| listed_intid(**image).is_none())
    {
        Some(free) => {
            *free = pending_image(irq, priority_mask);
            Ok(())
        }
        None => Err(ListRegistersFull),
    }
}

/// Whether `intid` is listed (pending or active) in `images`.
pub fn holds(images: &[u64], intid: u32) -> bool {
    images
        .iter()
        .any(|image| listed_intid(*image) == Some(intid))
}

/// Whether the virtual timer's PPI (`intid`) may interrupt a context now on the CPU: only a
/// vCPU's (`vcpu`), not masked since it last fired (`masked`, until its VMM acknowledges it),
/// and not while the guest still has the PPI's virtual interrupt listed in `live_images`,
/// pending or being handled. The timer's level stays high until the guest handles its tick
/// (the list register has HW = 0: nothing physical is deactivated), so enabling the PPI before
/// that would exit again before the guest ran one instruction. The PPI comes back at the first
/// exit after the guest's end of interrupt freed the entry.
pub fn virtual_timer_wanted(vcpu: bool, masked: bool, intid: u32, live_images: &[u64]) -> bool {
    vcpu && !masked && !holds(live_images, intid)
}

/// Whether the entry is active (the guest acknowledged it and has not ended it yet).
pub const fn is_active(image: u64) -> bool {
    image & STATE_ACTIVE != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn irq(intid: u32, priority: u8, group: u8) -> VirtualIrq {
        VirtualIrq {
            intid,
            priority,
            group,
        }
    }

    #[test]
    fn the_image_has_every_field_where_the_gic_reads_it() {
        // State 01, Group 1, priority 0xA0, vINTID 27, HW 0, EOI 0.
        assert_eq!(pending_image(irq(27, 0xA0, 1), 0xF8), 0x50A0_0000_0000_001B);
        // Group 0 and an unimplemented priority bit dropped (5 bits: 0xF8).
        assert_eq!(pending_image(irq(40, 0xA7, 0), 0xF8), 0x40A0_0000_0000_0028);
    }

    #[test]
    fn the_priority_mask_follows_the_implemented_bits() {
        assert_eq!(priority_mask(5), 0xF8);
        assert_eq!(priority_mask(6), 0xFC);
        assert_eq!(priority_mask(7), 0xFE);
        assert_eq!(priority_mask(8), 0xFF);
        // Out-of-range reports are clamped to what the architecture allows.
        assert_eq!(priority_mask(1), 0xF8);
        assert_eq!(priority_mask(9), 0xFF);
    }

    #[test]
    fn injection_fills_free_entries_then_refuses_without_change() {
        let mut images = [0u64; 4];
        for intid in [32, 33, 34, 35] {
            assert_eq!(inject(&mut images, irq(intid, 0x80, 1), 0xF8), Ok(()));
        }
        assert!(images.iter().all(|image| listed_intid(*image).is_some()));
        let before = images;
        assert_eq!(
            inject(&mut images, irq(36, 0x80, 1), 0xF8),
            Err(ListRegistersFull)
        );
        assert_eq!(images, before);
        assert!(!holds(&images, 36));
        assert!(holds(&images, 34));
    }

    #[test]
    fn a_completed_interrupt_frees_its_entry() {
        let mut images = [0u64; 2];
        assert_eq!(inject(&mut images, irq(32, 0x80, 1), 0xF8), Ok(()));
        assert_eq!(inject(&mut images, irq(33, 0x80, 1), 0xF8), Ok(()));
        // The guest's end of interrupt leaves the entry invalid (state 00), as the GIC does.
        images[0] &= !STATE_MASK;
        assert_eq!(inject(&mut images, irq(34, 0x80, 1), 0xF8), Ok(()));
        assert_eq!(listed_intid(images[0]), Some(34));
        assert_eq!(listed_intid(images[1]), Some(33));
    }

    #[test]
    fn an_interrupt_is_never_listed_twice() {
        let mut images = [0u64; 4];
        assert_eq!(inject(&mut images, irq(27, 0x80, 1), 0xF8), Ok(()));
        let once = images;
        // Pending already: unchanged.
        assert_eq!(inject(&mut images, irq(27, 0x80, 1), 0xF8), Ok(()));
        assert_eq!(images, once);
        // Active (the guest acknowledged it): becomes pending and active in the same entry.
        images[0] = (images[0] & !STATE_MASK) | STATE_ACTIVE;
        assert_eq!(inject(&mut images, irq(27, 0x80, 1), 0xF8), Ok(()));
        assert_eq!(images[0] & STATE_MASK, STATE_MASK);
        assert!(is_active(images[0]));
        assert_eq!(images[1..], [0, 0, 0]);
    }

    #[test]
    fn the_timer_ppi_is_wanted_only_for_an_unmasked_vcpu_without_its_interrupt_listed() {
        let mut images = [0u64; 4];
        assert!(virtual_timer_wanted(true, false, 27, &images));
        // A PD, or a vCPU whose tick its VMM has not acknowledged yet.
        assert!(!virtual_timer_wanted(false, false, 27, &images));
        assert!(!virtual_timer_wanted(true, true, 27, &images));
        // Injected and acknowledged, but the guest has not taken it yet, or is handling it.
        assert_eq!(inject(&mut images, irq(27, 0xA0, 1), 0xF8), Ok(()));
        assert!(!virtual_timer_wanted(true, false, 27, &images));
        images[0] = (images[0] & !STATE_MASK) | STATE_ACTIVE;
        assert!(!virtual_timer_wanted(true, false, 27, &images));
        // Another interrupt listed does not hold the timer back; its end of interrupt does not
        // either.
        assert_eq!(inject(&mut images, irq(40, 0xA0, 1), 0xF8), Ok(()));
        images[0] &= !STATE_MASK;
        assert!(virtual_timer_wanted(true, false, 27, &images));
    }

    #[test]
    fn special_intids_are_refused() {
        let mut images = [0u64; 4];
        for intid in [1020, 1023, 8192, u32::MAX] {
            assert_eq!(
                inject(&mut images, irq(intid, 0x80, 1), 0xF8),
                Err(ListRegistersFull)
            );
        }
        assert_eq!(images, [0; 4]);
        assert_eq!(inject(&mut images, irq(1019, 0x80, 1), 0xF8), Ok(()));
    }
}
