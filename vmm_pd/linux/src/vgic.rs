//! The emulated GICv3 distributor and redistributors (GIC architecture specification, IHI
//! 0069): the register files Linux's `irq-gic-v3` driver programs, and the virtual interrupts
//! that are due for injection into each vCPU's list registers.
//!
//! Why the VMM emulates them (libvmm's choice) and not the hypervisor (pKVM's): the
//! distributor holds configuration only (enables, priorities, routes), nothing secret, and an
//! untrusted VMM can already withhold or invent a guest's device interrupts, which is the
//! denial of service DESIGN.md 3 leaves unprotected. Keeping it out of EL2 keeps the trusted
//! kernel small: EL2 keeps only what touches hardware, the list registers (`PD_VCPU_INJECT_IRQ`)
//! and the virtual timer's physical PPI (`FAULT_VM_VPPI`, `PD_VCPU_ACK_VPPI`). The price is a
//! VMM round trip per distributor access, which Linux makes at boot and when it enables or
//! routes an interrupt, not per interrupt: acknowledge and EOI go to the virtual CPU interface
//! (`ICC_*` system registers, served by the hardware from the list registers).
//!
//! Layout (QEMU `virt`'s, so the same device tree works without the hypervisor):
//!
//! ```text
//! 0x0800_0000  GICD, 64 KiB
//! 0x080A_0000  GICR of vCPU 0: RD_base (64 KiB), SGI_base (64 KiB)
//! 0x080C_0000  GICR of vCPU 1 ...
//! ```
//!
//! One security state (`GICD_CTLR.DS` = 1), affinity routing always on (`ARE` reads as one),
//! 64 INTIDs (SGIs, PPIs and SPIs 32-63), no LPIs and no ITS (a protected VM's ITS tables would
//! sit in its private memory). Registers outside those read as zero and ignore writes.
//!
//! Pending state lives here until the VMM injects the interrupt; from then on the list
//! register holds it. [`Vgic::next_injection`] hands out, per vCPU, the pending interrupts that
//! are enabled, in an enabled group and targeted at that vCPU, highest priority first.

use frameshift_abi::addr::Ipa;

/// The distributor's base.
pub const GICD_BASE: Ipa = Ipa(0x0800_0000);
/// The distributor's size.
pub const GICD_SIZE: u64 = 0x1_0000;
/// The first redistributor's base.
pub const GICR_BASE: Ipa = Ipa(0x080A_0000);
/// One redistributor: its `RD_base` and `SGI_base` frames.
pub const GICR_STRIDE: u64 = 0x2_0000;
/// Most vCPUs (redistributors) a VM may have here.
pub const MAX_VCPUS: usize = 8;
/// INTIDs implemented: SGIs 0-15, PPIs 16-31, SPIs 32-63.
pub const INTIDS: u32 = 64;
/// The virtual timer's PPI.
pub const VTIMER_PPI: u32 = 27;

const SPI_WORDS: usize = (INTIDS / 32) as usize;

/// `GICD_CTLR`/`GICR_CTLR` offset.
const CTLR: u64 = 0x0000;
const GICD_TYPER: u64 = 0x0004;
const GICD_IIDR: u64 = 0x0008;
const IGROUPR: u64 = 0x0080;
const ISENABLER: u64 = 0x0100;
const ICENABLER: u64 = 0x0180;
const ISPENDR: u64 = 0x0200;
const ICPENDR: u64 = 0x0280;
const ISACTIVER: u64 = 0x0300;
const ICACTIVER: u64 = 0x0380;
const IPRIORITYR: u64 = 0x0400;
const ICFGR: u64 = 0x0C00;
const GICD_IROUTER: u64 = 0x6000;
/// `GICD_PIDR2`/`GICR_PIDR2`: the architecture revision in bits 7:4.
const PIDR2: u64 = 0xFFE8;
const GICR_IIDR: u64 = 0x0004;
const GICR_TYPER: u64 = 0x0008;
const GICR_WAKER: u64 = 0x0014;
/// The `SGI_base` frame's offset in a redistributor.
const SGI_FRAME: u64 = 0x1_0000;

/// `GICD_CTLR.EnableGrp0`.
const CTLR_ENABLE_GROUP0: u32 = 1 << 0;
/// `GICD_CTLR.EnableGrp1` (with `DS` = 1).
const CTLR_ENABLE_GROUP1: u32 = 1 << 1;
/// `GICD_CTLR.ARE`: affinity routing, always on.
const CTLR_ARE: u32 = 1 << 4;
/// `GICD_CTLR.DS`: one security state.
const CTLR_DS: u32 = 1 << 6;
/// `GICR_WAKER.ProcessorSleep`.
const WAKER_PROCESSOR_SLEEP: u32 = 1 << 1;
/// `GICR_WAKER.ChildrenAsleep`.
const WAKER_CHILDREN_ASLEEP: u32 = 1 << 2;
/// The interface implementer and product: Arm (0x43B), product 0x46 ("F"rameshift).
const IIDR: u32 = 0x4600_043B;
/// GICv3.
const ARCH_REVISION_3: u32 = 0x3 << 4;
/// `GICD_TYPER`: `ITLinesNumber` = INTIDS / 32 - 1, `IDbits` = 9 (10 bits of INTID), no
/// LPIs, no MBIs, no security extension.
const TYPER: u32 = (INTIDS / 32 - 1) | 9 << 19;
/// SGIs are edge-triggered, and `GICR_ICFGR0` says so and cannot be changed.
const SGI_CONFIG: u32 = 0xAAAA_AAAA;
/// `GICD_IROUTER.Interrupt_Routing_Mode`: any participating PE.
const IROUTER_ANY: u64 = 1 << 31;

/// A virtual interrupt to put in a vCPU's list register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Injection {
    /// The INTID.
    pub intid: u32,
    /// Its priority (the guest's `IPRIORITYR` byte).
    pub priority: u8,
    /// Its group: 1 (`IGROUPR` bit set) or 0.
    pub group: u8,
}

/// The state of one bank of 32 interrupts (the private ones in a redistributor, or 32 SPIs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Bank {
    group: u32,
    enabled: u32,
    pending: u32,
    active: u32,
    priority: [u8; 32],
    /// `ICFGR` for these 32 INTIDs: two bits each (bit 1 of a pair: edge).
    config: [u32; 2],
}

impl Bank {
    fn read_bits(&self, register: u64) -> u32 {
        match register {
            IGROUPR => self.group,
            ISENABLER | ICENABLER => self.enabled,
            ISPENDR | ICPENDR => self.pending,
            ISACTIVER | ICACTIVER => self.active,
            _ => 0,
        }
    }

    fn write_bits(&mut self, register: u64, value: u32) {
        match register {
            IGROUPR => self.group = value,
            ISENABLER => self.enabled |= value,
            ICENABLER => self.enabled &= !value,
            ISPENDR => self.pending |= value,
            ICPENDR => self.pending &= !value,
            ISACTIVER => self.active |= value,
            ICACTIVER => self.active &= !value,
            _ => {}
        }
    }

    /// The highest-priority deliverable interrupt of this bank (`base` + bit), given which
    /// groups the distributor enables and which bits target this vCPU.
    fn best(&self, base: u32, groups: u32, targeted: u32) -> Option<(u8, u32)> {
        let group_on = |bit: u32| {
            let group1 = self.group & 1 << bit != 0;
            (group1 && groups & CTLR_ENABLE_GROUP1 != 0)
                || (!group1 && groups & CTLR_ENABLE_GROUP0 != 0)
        };
        let due = self.pending & self.enabled & targeted;
        (0..32)
            .filter(|bit| due & 1 << bit != 0 && group_on(*bit))
            .map(|bit| (self.priority[bit as usize], base + bit))
            .min()
    }
}

/// One vCPU's redistributor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Redistributor {
    private: Bank,
    waker: u32,
}

impl Default for Redistributor {
    fn default() -> Self {
        Self {
            private: Bank {
                config: [SGI_CONFIG, 0],
                ..Bank::default()
            },
            waker: WAKER_PROCESSOR_SLEEP | WAKER_CHILDREN_ASLEEP,
        }
    }
}

/// The virtual GIC of one VM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vgic {
    vcpus: usize,
    ctlr: u32,
    /// SPI banks; bank 0 (INTIDs 0-31) is unused (those live in the redistributors).
    spis: [Bank; SPI_WORDS],
    router: [u64; INTIDS as usize],
    redistributors: [Redistributor; MAX_VCPUS],
}

/// Where an access landed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Frame {
    Distributor(u64),
    /// A redistributor: its vCPU and the offset in it (`RD_base` or `SGI_base` + offset).
    Redistributor(usize, u64),
}

impl Vgic {
    /// A GIC for a VM with `vcpus` vCPUs (1 to [`MAX_VCPUS`]; more are capped), in its reset
    /// state: everything disabled, group 0, priority 0, SPIs routed to vCPU 0.
    pub fn new(vcpus: usize) -> Self {
        Self {
            vcpus: vcpus.clamp(1, MAX_VCPUS),
            ctlr: 0,
            spis: [Bank::default(); SPI_WORDS],
            router: [0; INTIDS as usize],
            redistributors: [Redistributor::default(); MAX_VCPUS],
        }
    }

    /// The redistributors' region size (one frame pair per vCPU), for the device tree.
    pub fn redistributors_size(&self) -> u64 {
        self.vcpus as u64 * GICR_STRIDE
    }

    /// Whether `ipa` is a register of this GIC.
    pub fn contains(&self, ipa: Ipa) -> bool {
        self.frame(ipa).is_some()
    }

    fn frame(&self, ipa: Ipa) -> Option<Frame> {
        let address = ipa.get();
        if let Some(offset) = address.checked_sub(GICD_BASE.get()) {
            if offset < GICD_SIZE {
                return Some(Frame::Distributor(offset));
            }
        }
        let offset = address.checked_sub(GICR_BASE.get())?;
        let vcpu = usize::try_from(offset / GICR_STRIDE).ok()?;
        (vcpu < self.vcpus).then_some(Frame::Redistributor(vcpu, offset % GICR_STRIDE))
    }

    /// The guest read `bytes` (1, 2, 4 or 8) at `ipa`.
    pub fn read(&self, ipa: Ipa, bytes: u64) -> u64 {
        let Some(frame) = self.frame(ipa) else {
            return 0;
        };
        let (offset, word) = match frame {
            Frame::Distributor(offset) | Frame::Redistributor(_, offset) => (offset, offset & !3),
        };
        let read32 = |at: u64| match frame {
            Frame::Distributor(_) => self.distributor_read(at),
            Frame::Redistributor(vcpu, _) => self.redistributor_read(vcpu, at),
        };
        match bytes {
            8 => u64::from(read32(word)) | u64::from(read32(word + 4)) << 32,
            4 => u64::from(read32(word)),
            1 | 2 => {
                let shift = (offset & 3) * 8;
                let mask = (1u64 << (bytes * 8)) - 1;
                (u64::from(read32(word)) >> shift) & mask
            }
            _ => 0,
        }
    }

    /// The guest wrote `value` (`bytes` wide) at `ipa`. Byte and halfword writes reach only the
    /// byte-accessible registers (`IPRIORITYR`); elsewhere they are ignored.
    pub fn write(&mut self, ipa: Ipa, bytes: u64, value: u64) {
        let Some(frame) = self.frame(ipa) else {
            return;
        };
        let (vcpu, offset) = match frame {
            Frame::Distributor(offset) => (None, offset),
            Frame::Redistributor(vcpu, offset) => (Some(vcpu), offset),
        };
        match bytes {
            8 => {
                self.write32(vcpu, offset & !3, value as u32);
                self.write32(vcpu, (offset & !3) + 4, (value >> 32) as u32);
            }
            4 => self.write32(vcpu, offset & !3, value as u32),
            1 | 2 => {
                for index in 0..bytes {
                    let byte = (value >> (8 * index)) as u8;
                    self.write_priority_byte(vcpu, offset + index, byte);
                }
            }
            _ => {}
        }
    }

    fn write32(&mut self, vcpu: Option<usize>, offset: u64, value: u32) {
        match vcpu {
            None => self.distributor_write(offset, value),
            Some(vcpu) => self.redistributor_write(vcpu, offset, value),
        }
    }

    fn write_priority_byte(&mut self, vcpu: Option<usize>, offset: u64, byte: u8) {
        match vcpu {
            None => {
                if let Some(intid) = offset
                    .checked_sub(IPRIORITYR)
                    .filter(|i| (32..64).contains(i))
                {
                    self.spis[(intid / 32) as usize].priority[(intid % 32) as usize] = byte;
                }
            }
            Some(vcpu) => {
                let Some(intid) = offset
                    .checked_sub(SGI_FRAME + IPRIORITYR)
                    .filter(|i| *i < 32)
                else {
                    return;
                };
                if let Some(redistributor) = self.redistributors.get_mut(vcpu) {
                    redistributor.private.priority[intid as usize] = byte;
                }
            }
        }
    }

    /// The SPI bank and register of a distributor bit-array offset (`IGROUPR` ...
    /// `ICACTIVER`), if it names SPIs this GIC has.
    fn spi_bank(offset: u64) -> Option<(usize, u64)> {
        if !(IGROUPR..IPRIORITYR).contains(&offset) {
            return None;
        }
        let register = offset & !0x7F;
        let index = ((offset & 0x7F) / 4) as usize;
        (1..SPI_WORDS).contains(&index).then_some((index, register))
    }

    fn distributor_read(&self, offset: u64) -> u32 {
        match offset {
            CTLR => self.ctlr | CTLR_ARE | CTLR_DS,
            GICD_TYPER => TYPER,
            GICD_IIDR => IIDR,
            PIDR2 => ARCH_REVISION_3 | 0xB,
            _ if Self::spi_bank(offset).is_some() => Self::spi_bank(offset)
                .map_or(0, |(bank, register)| self.spis[bank].read_bits(register)),
            _ if (IPRIORITYR + 32..IPRIORITYR + u64::from(INTIDS)).contains(&offset) => {
                let first = offset - IPRIORITYR;
                let bank = &self.spis[(first / 32) as usize];
                let base = (first % 32) as usize;
                u32::from_le_bytes([
                    bank.priority[base],
                    bank.priority[base + 1],
                    bank.priority[base + 2],
                    bank.priority[base + 3],
                ])
            }
            _ if (ICFGR + 8..ICFGR + u64::from(INTIDS) / 4).contains(&offset) => {
                let word = ((offset - ICFGR) / 4) as usize;
                self.spis[word / 2].config[word % 2]
            }
            _ if (GICD_IROUTER + 8 * 32..GICD_IROUTER + 8 * u64::from(INTIDS))
                .contains(&offset) =>
            {
                let intid = ((offset - GICD_IROUTER) / 8) as usize;
                let route = self.router[intid];
                if offset.is_multiple_of(8) {
                    route as u32
                } else {
                    (route >> 32) as u32
                }
            }
            _ => 0,
        }
    }

    fn distributor_write(&mut self, offset: u64, value: u32) {
        match offset {
            CTLR => self.ctlr = value & (CTLR_ENABLE_GROUP0 | CTLR_ENABLE_GROUP1),
            _ if Self::spi_bank(offset).is_some() => {
                if let Some((bank, register)) = Self::spi_bank(offset) {
                    self.spis[bank].write_bits(register, value);
                }
            }
            _ if (IPRIORITYR + 32..IPRIORITYR + u64::from(INTIDS)).contains(&offset) => {
                for (index, byte) in value.to_le_bytes().into_iter().enumerate() {
                    self.write_priority_byte(None, offset + index as u64, byte);
                }
            }
            _ if (ICFGR + 8..ICFGR + u64::from(INTIDS) / 4).contains(&offset) => {
                let word = ((offset - ICFGR) / 4) as usize;
                // Only the edge/level bit of each pair is writable.
                self.spis[word / 2].config[word % 2] = value & 0xAAAA_AAAA;
            }
            _ if (GICD_IROUTER + 8 * 32..GICD_IROUTER + 8 * u64::from(INTIDS))
                .contains(&offset) =>
            {
                let intid = ((offset - GICD_IROUTER) / 8) as usize;
                let route = &mut self.router[intid];
                // Aff3.Aff2.Aff1.Aff0 and the routing mode are the writable fields.
                let writable: u64 = 0xFF_0000_0000 | IROUTER_ANY | 0xFF_FFFF;
                let merged = if offset.is_multiple_of(8) {
                    (*route & !0xFFFF_FFFF) | u64::from(value)
                } else {
                    (*route & 0xFFFF_FFFF) | u64::from(value) << 32
                };
                *route = merged & writable;
            }
            _ => {}
        }
    }

    fn redistributor_read(&self, vcpu: usize, offset: u64) -> u32 {
        let Some(redistributor) = self.redistributors.get(vcpu) else {
            return 0;
        };
        let last = vcpu + 1 == self.vcpus;
        match offset {
            GICR_IIDR => IIDR,
            // Processor_Number = the vCPU's index, Last on the last frame; no LPIs.
            GICR_TYPER => (vcpu as u32) << 8 | u32::from(last) << 4,
            // Affinity_Value: Aff0 = the vCPU's index, as its MPIDR (docs/ABI.md).
            o if o == GICR_TYPER + 4 => vcpu as u32,
            GICR_WAKER => redistributor.waker,
            PIDR2 => ARCH_REVISION_3 | 0xB,
            o if (SGI_FRAME + IGROUPR..SGI_FRAME + IPRIORITYR).contains(&o) && o % 0x80 == 0 => {
                redistributor.private.read_bits(o - SGI_FRAME)
            }
            o if (SGI_FRAME + IPRIORITYR..SGI_FRAME + IPRIORITYR + 32).contains(&o) => {
                let base = (o - SGI_FRAME - IPRIORITYR) as usize;
                let priority = &redistributor.private.priority;
                u32::from_le_bytes([
                    priority[base],
                    priority[base + 1],
                    priority[base + 2],
                    priority[base + 3],
                ])
            }
            o if o == SGI_FRAME + ICFGR => redistributor.private.config[0],
            o if o == SGI_FRAME + ICFGR + 4 => redistributor.private.config[1],
            _ => 0,
        }
    }

    fn redistributor_write(&mut self, vcpu: usize, offset: u64, value: u32) {
        match offset {
            GICR_WAKER => {
                if let Some(redistributor) = self.redistributors.get_mut(vcpu) {
                    // The children follow the processor at once: nothing to drain.
                    redistributor.waker = if value & WAKER_PROCESSOR_SLEEP != 0 {
                        WAKER_PROCESSOR_SLEEP | WAKER_CHILDREN_ASLEEP
                    } else {
                        0
                    };
                }
            }
            o if (SGI_FRAME + IGROUPR..SGI_FRAME + IPRIORITYR).contains(&o) && o % 0x80 == 0 => {
                if let Some(redistributor) = self.redistributors.get_mut(vcpu) {
                    redistributor.private.write_bits(o - SGI_FRAME, value);
                }
            }
            o if (SGI_FRAME + IPRIORITYR..SGI_FRAME + IPRIORITYR + 32).contains(&o) => {
                for (index, byte) in value.to_le_bytes().into_iter().enumerate() {
                    self.write_priority_byte(Some(vcpu), o + index as u64, byte);
                }
            }
            o if o == SGI_FRAME + ICFGR + 4 => {
                if let Some(redistributor) = self.redistributors.get_mut(vcpu) {
                    redistributor.private.config[1] = value & 0xAAAA_AAAA;
                }
            }
            _ => {}
        }
    }

    /// The vCPU an SPI is routed to (its `IROUTER`'s Aff0; vCPU 0 for "any PE" or a vCPU
    /// that does not exist).
    fn spi_target(&self, intid: u32) -> usize {
        let route = self.router.get(intid as usize).copied().unwrap_or(0);
        let aff0 = (route & 0xFF) as usize;
        if route & IROUTER_ANY != 0 || route & 0xFF_00FF_FF00 != 0 || aff0 >= self.vcpus {
            0
        } else {
            aff0
        }
    }

    /// An SGI or PPI of `vcpu` becomes pending (a timer tick, an IPI).
    pub fn raise_private(&mut self, vcpu: usize, intid: u32) {
        if let (Some(redistributor), true) = (self.redistributors.get_mut(vcpu), intid < 32) {
            redistributor.private.pending |= 1 << intid;
        }
    }

    /// SPI `intid` becomes pending (a device's interrupt line rose).
    pub fn raise_spi(&mut self, intid: u32) {
        if (32..INTIDS).contains(&intid) {
            self.spis[(intid / 32) as usize].pending |= 1 << (intid % 32);
        }
    }

    /// The next interrupt to inject into `vcpu`, taken off the pending state (the list register
    /// holds it from now on): the highest-priority (lowest value) pending interrupt that is
    /// enabled, in an enabled group and targeted at `vcpu`. Give it back with
    /// [`Vgic::give_back`] if the injection is refused.
    pub fn next_injection(&mut self, vcpu: usize) -> Option<Injection> {
        if vcpu >= self.vcpus {
            return None;
        }
        let groups = self.ctlr;
        let private = self.redistributors[vcpu].private.best(0, groups, u32::MAX);
        let mut best = private;
        for (index, bank) in self.spis.iter().enumerate().skip(1) {
            let base = index as u32 * 32;
            let targeted = (0..32)
                .filter(|bit| self.spi_target(base + bit) == vcpu)
                .fold(0u32, |mask, bit| mask | 1 << bit);
            let candidate = bank.best(base, groups, targeted);
            best = match (best, candidate) {
                (Some(current), Some(other)) => Some(current.min(other)),
                (current, other) => current.or(other),
            };
        }
        let (priority, intid) = best?;
        let bank = if intid < 32 {
            &mut self.redistributors[vcpu].private
        } else {
            &mut self.spis[(intid / 32) as usize]
        };
        let bit = 1 << (intid % 32);
        bank.pending &= !bit;
        Some(Injection {
            intid,
            priority,
            group: u8::from(bank.group & bit != 0),
        })
    }

    /// Makes `injection` pending again on `vcpu` (its injection was refused).
    pub fn give_back(&mut self, vcpu: usize, injection: Injection) {
        if injection.intid < 32 {
            self.raise_private(vcpu, injection.intid);
        } else {
            self.raise_spi(injection.intid);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    fn gicd(offset: u64) -> Ipa {
        GICD_BASE.add(offset)
    }

    fn sgi_frame(vcpu: u64, offset: u64) -> Ipa {
        GICR_BASE.add(vcpu * GICR_STRIDE + SGI_FRAME + offset)
    }

    /// What Linux's driver does at boot on `vcpus` vCPUs (gic_dist_init, gic_cpu_init), as far
    /// as the distributor and redistributors see it.
    fn linux_boot(gic: &mut Vgic, vcpus: u64) {
        gic.write(gicd(CTLR), 4, 0);
        for word in 1..SPI_WORDS as u64 {
            gic.write(gicd(IGROUPR + word * 4), 4, 0xFFFF_FFFF);
            gic.write(gicd(ICACTIVER + word * 4), 4, 0xFFFF_FFFF);
            gic.write(gicd(ICENABLER + word * 4), 4, 0xFFFF_FFFF);
        }
        for intid in (32..u64::from(INTIDS)).step_by(4) {
            gic.write(gicd(IPRIORITYR + intid), 4, 0xA0A0_A0A0);
        }
        gic.write(gicd(CTLR), 4, 0x13);
        for intid in 32..u64::from(INTIDS) {
            gic.write(gicd(GICD_IROUTER + intid * 8), 8, 0);
        }
        for vcpu in 0..vcpus {
            let rd = GICR_BASE.add(vcpu * GICR_STRIDE);
            let waker = gic.read(rd.add(GICR_WAKER), 4);
            gic.write(
                rd.add(GICR_WAKER),
                4,
                waker & !u64::from(WAKER_PROCESSOR_SLEEP),
            );
            assert_eq!(
                gic.read(rd.add(GICR_WAKER), 4) & u64::from(WAKER_CHILDREN_ASLEEP),
                0
            );
            gic.write(sgi_frame(vcpu, IGROUPR), 4, 0xFFFF_FFFF);
            gic.write(sgi_frame(vcpu, ICACTIVER), 4, 0xFFFF_FFFF);
            gic.write(sgi_frame(vcpu, ICENABLER), 4, 0xFFFF_FFFF);
            for intid in (0..32).step_by(4) {
                gic.write(sgi_frame(vcpu, IPRIORITYR + intid), 4, 0xA0A0_A0A0);
            }
            gic.write(sgi_frame(vcpu, ISENABLER), 4, 0xFFFF);
        }
    }

    #[test]
    fn linux_identifies_a_gicv3_with_64_intids_and_no_lpis() {
        let gic = Vgic::new(2);
        assert_eq!(gic.read(gicd(PIDR2), 4) & 0xF0, 0x30, "GICv3");
        let typer = gic.read(gicd(GICD_TYPER), 4);
        assert_eq!(32 * ((typer & 0x1F) + 1), 64, "ITLinesNumber");
        assert_eq!(typer & 1 << 17, 0, "no LPIs");
        assert_eq!((typer >> 19) & 0x1F, 9, "IDbits");
        let ctlr = gic.read(gicd(CTLR), 4);
        assert!(ctlr & u64::from(CTLR_DS) != 0 && ctlr & u64::from(CTLR_ARE) != 0);
        assert_eq!(ctlr & 1 << 31, 0, "RWP never set");
        assert_eq!(gic.read(gicd(GICD_IIDR), 4), u64::from(IIDR));
    }

    #[test]
    fn each_vcpu_finds_its_redistributor_by_affinity_and_the_last_is_marked() {
        let gic = Vgic::new(2);
        for vcpu in 0..2u64 {
            let rd = GICR_BASE.add(vcpu * GICR_STRIDE);
            assert_eq!(gic.read(rd.add(PIDR2), 4) & 0xF0, 0x30);
            let typer = gic.read(rd.add(GICR_TYPER), 8);
            assert_eq!(typer >> 32, vcpu, "Affinity_Value = MPIDR Aff0");
            assert_eq!((typer >> 8) & 0xFFFF, vcpu, "Processor_Number");
            assert_eq!(typer & 1 << 4 != 0, vcpu == 1, "Last");
            assert_eq!(typer & 1, 0, "no physical LPIs");
        }
        assert!(
            !gic.contains(GICR_BASE.add(2 * GICR_STRIDE)),
            "no third frame"
        );
        assert!(gic.contains(GICD_BASE) && !gic.contains(GICD_BASE.add(GICD_SIZE)));
        assert_eq!(gic.redistributors_size(), 0x4_0000);
    }

    #[test]
    fn registers_read_back_what_linux_programmed() {
        let mut gic = Vgic::new(2);
        linux_boot(&mut gic, 2);
        assert_eq!(gic.read(gicd(CTLR), 4) & 0x3, 0x3);
        assert_eq!(gic.read(gicd(IGROUPR + 4), 4), 0xFFFF_FFFF);
        assert_eq!(
            gic.read(gicd(IGROUPR), 4),
            0,
            "SGIs and PPIs are not the distributor's"
        );
        assert_eq!(gic.read(gicd(IPRIORITYR + 33), 1), 0xA0);
        assert_eq!(gic.read(gicd(IPRIORITYR + 4), 4), 0, "RAZ below 32");
        gic.write(gicd(IPRIORITYR + 33), 1, 0x80);
        assert_eq!(gic.read(gicd(IPRIORITYR + 32), 4), 0xA0A0_80A0);
        gic.write(gicd(GICD_IROUTER + 33 * 8), 8, 1);
        assert_eq!(gic.read(gicd(GICD_IROUTER + 33 * 8), 8), 1);
        gic.write(gicd(GICD_IROUTER + 33 * 8 + 4), 4, 0xFFFF_FFFF);
        assert_eq!(
            gic.read(gicd(GICD_IROUTER + 33 * 8), 8),
            0xFF_0000_0001,
            "Aff3 only"
        );
        gic.write(gicd(ICFGR + 8), 4, 0xFFFF_FFFF);
        assert_eq!(gic.read(gicd(ICFGR + 8), 4), 0xAAAA_AAAA);
        assert_eq!(gic.read(sgi_frame(1, ISENABLER), 4), 0xFFFF);
        assert_eq!(gic.read(sgi_frame(1, ICFGR), 4), u64::from(SGI_CONFIG));
        gic.write(sgi_frame(1, ICFGR), 4, 0);
        assert_eq!(
            gic.read(sgi_frame(1, ICFGR), 4),
            u64::from(SGI_CONFIG),
            "read only"
        );
        gic.write(sgi_frame(1, ICFGR + 4), 4, 0x0080_0000);
        assert_eq!(gic.read(sgi_frame(1, ICFGR + 4), 4), 0x0080_0000);
        assert_eq!(gic.read(sgi_frame(0, IPRIORITYR + 27), 1), 0xA0);
        // Unknown and out-of-range registers read as zero and ignore writes.
        gic.write(gicd(0x9000), 4, 0xFFFF_FFFF);
        assert_eq!(gic.read(gicd(0x9000), 4), 0);
        assert_eq!(gic.read(Ipa(0x0900_0000), 4), 0);
    }

    #[test]
    fn the_timer_ppi_is_injected_once_enabled_and_only_into_its_vcpu() {
        let mut gic = Vgic::new(2);
        linux_boot(&mut gic, 2);
        gic.raise_private(1, VTIMER_PPI);
        assert_eq!(gic.next_injection(1), None, "PPIs are still disabled");
        assert_eq!(gic.next_injection(0), None, "never another vCPU's");
        gic.write(sgi_frame(1, ISENABLER), 4, 1 << VTIMER_PPI);
        assert_eq!(
            gic.next_injection(1),
            Some(Injection {
                intid: VTIMER_PPI,
                priority: 0xA0,
                group: 1
            })
        );
        assert_eq!(
            gic.next_injection(1),
            None,
            "the list register holds it now"
        );
        gic.write(sgi_frame(1, ICENABLER), 4, 1 << VTIMER_PPI);
        gic.raise_private(1, VTIMER_PPI);
        assert_eq!(gic.next_injection(1), None, "masked again");
    }

    #[test]
    fn an_spi_goes_to_its_routed_vcpu_when_the_group_is_enabled() {
        let mut gic = Vgic::new(2);
        gic.write(gicd(IGROUPR + 4), 4, 0xFFFF_FFFF);
        gic.write(gicd(ISENABLER + 4), 4, 1 << 1);
        gic.raise_spi(33);
        assert_eq!(gic.next_injection(0), None, "group 1 is not enabled yet");
        gic.write(gicd(CTLR), 4, 0x12);
        gic.write(gicd(GICD_IROUTER + 33 * 8), 8, 1);
        assert_eq!(gic.next_injection(0), None, "routed to vCPU 1");
        let injection = gic.next_injection(1);
        assert_eq!(injection.map(|i| (i.intid, i.group)), Some((33, 1)));
        // Refused by the hypervisor: it is pending again.
        gic.give_back(
            1,
            injection.unwrap_or(Injection {
                intid: 33,
                priority: 0,
                group: 1,
            }),
        );
        assert_eq!(gic.next_injection(1).map(|i| i.intid), Some(33));
        // A route to a vCPU that does not exist, or to any PE, means vCPU 0.
        gic.write(gicd(GICD_IROUTER + 33 * 8), 8, 7);
        gic.raise_spi(33);
        assert_eq!(gic.next_injection(0).map(|i| i.intid), Some(33));
        gic.write(gicd(GICD_IROUTER + 33 * 8), 8, IROUTER_ANY | 1);
        gic.raise_spi(33);
        assert_eq!(gic.next_injection(0).map(|i| i.intid), Some(33));
        gic.raise_spi(1000);
        assert_eq!(gic.next_injection(0), None, "no such SPI");
    }

    #[test]
    fn the_highest_priority_goes_first_and_cleared_pending_goes_nowhere() {
        let mut gic = Vgic::new(1);
        linux_boot(&mut gic, 1);
        gic.write(gicd(ISENABLER + 4), 4, 0xFFFF_FFFF);
        gic.write(gicd(IPRIORITYR + 40), 1, 0x20);
        gic.write(sgi_frame(0, IPRIORITYR + 27), 1, 0x90);
        gic.write(sgi_frame(0, ISENABLER), 4, 1 << 27);
        for intid in [33, 40] {
            gic.raise_spi(intid);
        }
        gic.raise_private(0, 27);
        gic.raise_private(0, 1);
        gic.write(sgi_frame(0, ICPENDR), 4, 1 << 1);
        let order: Vec<u32> = core::iter::from_fn(|| gic.next_injection(0))
            .map(|injection| injection.intid)
            .collect();
        assert_eq!(order, [40, 27, 33]);
        gic.write(gicd(ISPENDR + 4), 4, 1 << 2);
        assert_eq!(
            gic.next_injection(0).map(|i| i.intid),
            Some(34),
            "set pending by the guest"
        );
    }

    #[test]
    fn group_0_interrupts_need_group_0_enabled() {
        let mut gic = Vgic::new(1);
        gic.write(sgi_frame(0, ISENABLER), 4, 1 << 27);
        gic.raise_private(0, 27);
        gic.write(gicd(CTLR), 4, u64::from(CTLR_ENABLE_GROUP1));
        assert_eq!(gic.next_injection(0), None);
        gic.write(gicd(CTLR), 4, u64::from(CTLR_ENABLE_GROUP0));
        assert_eq!(
            gic.next_injection(0),
            Some(Injection {
                intid: 27,
                priority: 0,
                group: 0
            })
        );
    }

    /// A guest access: an IPA near or in the GIC's frames, a size of 1 to 8 bytes, a value.
    fn access() -> impl proptest::strategy::Strategy<Value = (u64, u64, u64, bool)> {
        use proptest::prelude::*;
        let near = prop_oneof![
            (0u64..GICD_SIZE + 0x100).prop_map(|offset| GICD_BASE.get() - 0x80 + offset),
            (0u64..GICR_STRIDE * 3).prop_map(|offset| GICR_BASE.get() + offset),
            any::<u64>(),
        ];
        (near, 0u32..4, any::<u64>(), any::<bool>())
            .prop_map(|(ipa, size, value, write)| (ipa, 1 << size, value, write))
    }

    proptest::proptest! {
        /// Whatever a guest does to the distributor and redistributors, the VMM does not
        /// panic, a read returns no more bits than it asked for, an access outside the frames
        /// changes nothing, and only real interrupts of real vCPUs come out for injection.
        #[test]
        fn any_guest_access_is_total_and_bounded(
            vcpus in 1usize..3,
            accesses in proptest::collection::vec(access(), 1..64),
            raised in proptest::collection::vec((0usize..3, 0u32..80), 0..8),
        ) {
            let mut gic = Vgic::new(vcpus);
            linux_boot(&mut gic, vcpus as u64);
            for (vcpu, intid) in raised {
                gic.raise_private(vcpu, intid);
                gic.raise_spi(intid);
            }
            for (ipa, bytes, value, write) in accesses {
                let ipa = Ipa(ipa);
                let before = gic.clone();
                if write {
                    gic.write(ipa, bytes, value);
                } else {
                    let read = gic.read(ipa, bytes);
                    if bytes < 8 {
                        proptest::prop_assert!(read >> (bytes * 8) == 0, "{read:#x} from {bytes} bytes");
                    }
                }
                if !gic.contains(ipa) || !write {
                    proptest::prop_assert_eq!(&gic, &before);
                }
            }
            for vcpu in 0..MAX_VCPUS + 1 {
                while let Some(injection) = gic.next_injection(vcpu) {
                    proptest::prop_assert!(vcpu < vcpus);
                    proptest::prop_assert!(injection.intid < INTIDS);
                    proptest::prop_assert!(injection.group <= 1);
                }
            }
        }
    }
}
