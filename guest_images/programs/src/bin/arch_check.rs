//! The arch checker (tests/systems/vcpu_arch.xml): what the hypervisor's AArch64 layer gives a
//! vCPU, checked from inside the guest, which prints `FAIL <check>: ...` for each failure, then
//! `arch-check passed=<n> failed=<m>`, and tells its VMM the count.
//!
//! | part | what it shows |
//! | --- | --- |
//! | stage 1 | the guest's own stage 1 translates (`HCR_EL2.DC` is off for a vCPU): `AT S1E1R` of an address its tables do not map fails, and a read of it is a stage-1 translation fault taken at the guest's own EL1, with `FAR_EL1` the VA; its RAM translates to itself (identity tables) |
//! | identity | `MPIDR_EL1` is the vCPU's (Aff0 = its index, bit 31 set) |
//! | timer | each tick of the virtual timer reaches the guest only through the VMM: the PPI exits to EL2 (`FAULT_VM_VPPI`), the VMM injects INTID 27 into a list register and acknowledges it, and the guest acknowledges 27 at its virtual CPU interface, never before the deadline |
//! | registers | the boot vCPU and a second vCPU (PSCI `CPU_ON`) fill the EL1 registers a guest owns with complementary patterns and re-check them while they, the VMM and the PDs of the system take turns on the CPU; the boot vCPU keeps a virtual interrupt pending in its list registers all along, which the second vCPU must never see, and which is still there at the end |
//!
//! The VMM is `protected_vmm`; the guest polls its interrupts with PSTATE.I masked.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![deny(unsafe_code)]

use core::sync::atomic::{AtomicU64, Ordering};
use frameshift_guest::boot::Guest;
use frameshift_guest::cpu::{self, Abort, SPURIOUS_INTID, VIRTUAL_TIMER_INTID};
use frameshift_guest::{calls, println, secondary};
use frameshift_guest_programs::{Checks, Doorbell, DOORBELL_PAGE};
use frameshift_vm_protocol::doorbell::{Command, ProgramKind};

/// A VA the guest's tables never map, below the top of its 40-bit VA space and outside its RAM
/// and devices; its IPA is not mapped at stage 2 either, so with `HCR_EL2.DC` set (stage 1
/// off) the read would be a stage-2 fault that stops the guest instead.
const UNMAPPED_VA: u64 = 0x70_0000_0000;
/// Virtual timer ticks the guest waits for.
const TICKS: u64 = 3;
/// How long the guest polls for one tick before it gives up, in seconds of the virtual counter
/// (a loop bound only: nothing is asserted about time).
const TICK_PATIENCE_SECONDS: u64 = 2;
/// Times each vCPU of the register part must see the other one run between two of its checks.
const INTERLEAVINGS: u64 = 3;
/// Rounds of the register part before giving up on seeing the other vCPU.
const REGISTER_ROUNDS: u64 = 20_000;
/// The boot vCPU's pattern; the second vCPU's is its complement.
const PATTERN: u64 = 0xA5A5_A5A5_A5A5_A5A5;
/// Priority the VMM injects the timer with (protected_vmm: 0xA0); both vCPUs' masks let it in.
const PRIORITY_MASKS: [u8; 2] = [0xE8, 0xF0];

/// One EL1 register a guest owns and the hypervisor must switch per vCPU.
#[cfg_attr(
    not(all(target_arch = "aarch64", target_os = "none")),
    allow(dead_code, reason = "the host build has no registers to list")
)]
struct Register {
    name: &'static str,
    read: fn() -> u64,
    write: fn(u64),
    /// The bits written (the rest keep what the vCPU had).
    mask: u64,
}

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
macro_rules! sysreg {
    ($name:literal, $encoding:literal, $mask:expr) => {
        Register {
            name: $name,
            read: || {
                let value: u64;
                #[allow(unsafe_code)]
                // SAFETY: reads one of this vCPU's own EL1 registers; no memory is touched.
                unsafe {
                    core::arch::asm!(concat!("mrs {}, ", $encoding), out(reg) value,
                        options(nomem, nostack, preserves_flags));
                }
                value
            },
            write: |value| {
                #[allow(unsafe_code)]
                // SAFETY: the registers listed are scratch or unused state for this program
                // (thread IDs, fault and exception records with no exception pending, TTBR1
                // with TTBR1 walks disabled, the timer masked, the interrupt masks keeping the
                // timer's priority in); no memory is touched.
                unsafe {
                    core::arch::asm!(concat!("msr ", $encoding, ", {}"), "isb", in(reg) value,
                        options(nomem, nostack, preserves_flags));
                }
            },
            mask: $mask,
        }
    };
}

/// The registers each vCPU fills: every register of the register-channel list
/// (tests/tests/register_channel.rs) that a running guest can use as a data store without
/// breaking itself (its MMU, vectors and stack registers stay its runtime's).
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
fn registers() -> [Register; 17] {
    [
        sysreg!("TPIDR_EL1", "tpidr_el1", u64::MAX),
        sysreg!("TPIDR_EL0", "tpidr_el0", u64::MAX),
        sysreg!("TPIDRRO_EL0", "tpidrro_el0", u64::MAX),
        sysreg!("CONTEXTIDR_EL1", "contextidr_el1", 0xFFFF_FFFF),
        sysreg!("SP_EL0", "sp_el0", u64::MAX),
        // 4 KiB aligned, below the 48-bit output range; TCR_EL1.EPD1 keeps it unwalked.
        sysreg!("TTBR1_EL1", "ttbr1_el1", 0x0000_FFFF_FFFF_F000),
        sysreg!("PAR_EL1", "par_el1", 0x0000_FFFF_FFFF_F000),
        sysreg!("CNTKCTL_EL1", "cntkctl_el1", 0x3FF),
        sysreg!("CSSELR_EL1", "csselr_el1", 0x1),
        sysreg!("CNTV_CVAL_EL0", "cntv_cval_el0", u64::MAX),
        // ENABLE | IMASK for the boot vCPU, 0 for the second: the timer never fires meanwhile.
        sysreg!("CNTV_CTL_EL0", "cntv_ctl_el0", 0b011),
        sysreg!("ESR_EL1", "esr_el1", 0xFFFF_FFFF),
        sysreg!("FAR_EL1", "far_el1", u64::MAX),
        sysreg!("ELR_EL1", "elr_el1", u64::MAX),
        sysreg!("SPSR_EL1", "spsr_el1", 0xF000_03C0),
        // The binary point: 3 is group 1's minimum with 5 priority bits.
        sysreg!("ICC_BPR1_EL1", "icc_bpr1_el1", 0x4),
        // Rounding mode and default NaN; the program does no floating point.
        sysreg!("FPCR", "fpcr", 0x0240_0000),
    ]
}

#[cfg(not(all(target_arch = "aarch64", target_os = "none")))]
fn registers() -> [Register; 0] {
    []
}

/// The value vCPU `me` writes into `register`: its pattern (complemented for the second vCPU)
/// within the register's mask, and for the boot vCPU a minimum of 1 in fields that must not be
/// 0 (the binary point).
fn pattern(register: &Register, me: usize) -> u64 {
    let pattern = if me == 0 { PATTERN } else { !PATTERN };
    let value = pattern & register.mask;
    match register.name {
        // 3 | 4 = 7 for one vCPU, 3 for the other: both legal binary points.
        "ICC_BPR1_EL1" => value | 0x3,
        "CNTV_CTL_EL0" if me == 0 => 0b011,
        "CNTV_CTL_EL0" => 0,
        _ => value,
    }
}

const MAX_REGISTERS: usize = 17;

/// What each vCPU's register part found, shared between the two.
struct Shared {
    /// Each vCPU's round counter.
    rounds: [AtomicU64; 2],
    /// Each vCPU's values read back right after it wrote them.
    own: [[AtomicU64; MAX_REGISTERS]; 2],
    /// The second vCPU: leaks, interleavings, virtual interrupts it was offered, done flag.
    leaks: AtomicU64,
    interleavings: AtomicU64,
    offered: AtomicU64,
    vmm_runs: AtomicU64,
    done: AtomicU64,
    mpidr: AtomicU64,
}

static SHARED: Shared = Shared {
    rounds: [const { AtomicU64::new(0) }; 2],
    own: [const { [const { AtomicU64::new(0) }; MAX_REGISTERS] }; 2],
    leaks: AtomicU64::new(0),
    interleavings: AtomicU64::new(0),
    offered: AtomicU64::new(0),
    vmm_runs: AtomicU64::new(0),
    done: AtomicU64::new(0),
    mpidr: AtomicU64::new(0),
};

/// One vCPU's register part: write the pattern, then re-check it round after round until the
/// other vCPU has run `INTERLEAVINGS` times in between. Returns (leaks, interleavings,
/// interrupts offered): on the second vCPU every `ICC_IAR1_EL1` poll must be spurious.
fn register_rounds(me: usize) -> (u64, u64, u64, u64) {
    let registers = registers();
    for (index, register) in registers.iter().enumerate() {
        (register.write)(pattern(register, me));
        SHARED.own[me][index].store((register.read)(), Ordering::Release);
    }
    let other = 1 - me;
    let mut last_seen = SHARED.rounds[other].load(Ordering::Acquire);
    let (mut leaks, mut interleavings, mut offered, mut vmm_runs) = (0, 0, 0, 0);
    let mut round = 0;
    // The boot vCPU goes on until the second one is done, so that the second always sees it
    // move (and its registers are checked for as long as the second one runs).
    let second_running = || me == 0 && SHARED.done.load(Ordering::Acquire) == 0;
    while (interleavings < INTERLEAVINGS || second_running()) && round < REGISTER_ROUNDS {
        round += 1;
        // Yield the CPU (WFE traps to EL2): the other vCPU or a PD runs meanwhile.
        secondary::wait_for_event();
        // And make the VMM, a PD, run: a read of the doorbell's status is a stage-2 fault it
        // emulates (the value does not matter).
        let _ = Doorbell.status();
        vmm_runs += 1;
        for (index, register) in registers.iter().enumerate() {
            let own = SHARED.own[me][index].load(Ordering::Acquire);
            let found = (register.read)();
            if found & register.mask != own & register.mask {
                leaks += 1;
                if leaks <= 8 {
                    println!(
                        "leak {} on vCPU {me}: found {found:#x}, own {own:#x}",
                        register.name
                    );
                }
                (register.write)(own);
            }
        }
        if me == 1 {
            // The boot vCPU holds a pending virtual interrupt in its list registers: none of
            // it may show here.
            let intid = cpu::acknowledge();
            if intid != SPURIOUS_INTID {
                offered += 1;
                cpu::end_of_interrupt(intid);
            }
        }
        SHARED.rounds[me].store(round, Ordering::Release);
        let seen = SHARED.rounds[other].load(Ordering::Acquire);
        if seen != last_seen {
            interleavings += 1;
            last_seen = seen;
        }
    }
    (leaks, interleavings, offered, vmm_runs)
}

fn secondary_main(_context: u64) {
    SHARED
        .mpidr
        .store(secondary::current_mpidr(), Ordering::Release);
    cpu::enable_group1(PRIORITY_MASKS[1]);
    let (leaks, interleavings, offered, vmm_runs) = register_rounds(1);
    SHARED.vmm_runs.store(vmm_runs, Ordering::Release);
    SHARED.leaks.store(leaks, Ordering::Release);
    SHARED.interleavings.store(interleavings, Ordering::Release);
    SHARED.offered.store(offered, Ordering::Release);
    SHARED.done.store(1, Ordering::Release);
}

/// What each run leaves in `d31` when it ends: the next run, on the same vCPU after a teardown
/// and a restart, must not find it (a fresh vCPU's FP/SIMD registers are zero; with the lazy
/// FP switch, the register file may still be the old run's when the new one starts).
const FP_SECRET: u64 = 0x5EC2_E7F0_0D00_F00D;

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
fn read_d31() -> u64 {
    let value: u64;
    #[allow(unsafe_code)]
    // SAFETY: reads a SIMD register this program does not otherwise use.
    unsafe {
        core::arch::asm!("fmov {}, d31", out(reg) value, options(nomem, nostack, preserves_flags));
    }
    value
}

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
fn write_d31(value: u64) {
    #[allow(unsafe_code)]
    // SAFETY: writes a SIMD register this program does not otherwise use (d31 is caller-saved,
    // and nothing after this call depends on it).
    unsafe {
        core::arch::asm!("fmov d31, {}", in(reg) value, options(nomem, nostack, preserves_flags));
    }
}

#[cfg(not(all(target_arch = "aarch64", target_os = "none")))]
fn read_d31() -> u64 {
    0
}

#[cfg(not(all(target_arch = "aarch64", target_os = "none")))]
fn write_d31(_value: u64) {}

/// A static the stage-1 check reads through the guest's tables.
static KNOWN: AtomicU64 = AtomicU64::new(0x5EED_0F57_A9E1_0001);

fn stage1(checks: &mut Checks) {
    let known = core::ptr::addr_of!(KNOWN) as u64;
    checks.equal(
        "AT S1E1R of the guest's RAM",
        cpu::translate(known),
        Ok(known),
    );
    let unmapped = cpu::translate(UNMAPPED_VA);
    checks.check(
        "AT S1E1R of an unmapped VA faults in stage 1",
        unmapped.is_err_and(|par| par & 1 == 1 && par & (1 << 9) == 0),
        format_args!("PAR_EL1 {unmapped:#x?} (F set and S clear expected: a stage-1 fault)"),
    );
    checks.equal(
        "read through the guest's own tables",
        cpu::probe_read(known),
        Ok(KNOWN.load(Ordering::Relaxed)),
    );
    let fault = cpu::probe_read(UNMAPPED_VA);
    checks.check(
        "read of an unmapped VA is the guest's own translation fault",
        matches!(fault, Err(abort) if abort.class() == 0x25
            && (0x04..=0x07).contains(&abort.status())
            && abort.far == UNMAPPED_VA),
        format_args!("{fault:#x?} (EC 0x25, DFSC 0x04-0x07, FAR {UNMAPPED_VA:#x} expected)"),
    );
    if let Err(Abort { esr, far }) = fault {
        println!(
            "stage 1: VA {UNMAPPED_VA:#x} is not in my tables: EL1 data abort esr={esr:#x} far={far:#x}"
        );
    }
}

/// The virtual counter value after which a wait for the timer gives up.
fn give_up_at() -> u64 {
    cpu::virtual_counter() + TICK_PATIENCE_SECONDS * cpu::counter_frequency()
}

/// Waits for one tick of the virtual timer due `delay` counter ticks from now; returns
/// (deadline, the counter when the guest acknowledged it), or `None` after
/// [`TICK_PATIENCE_SECONDS`].
fn one_tick(checks: &mut Checks, delay: u64) -> Option<(u64, u64)> {
    let deadline = cpu::virtual_counter() + delay;
    cpu::set_virtual_timer(Some(deadline));
    let give_up = give_up_at();
    while cpu::virtual_counter() < give_up {
        let intid = cpu::acknowledge();
        if intid == VIRTUAL_TIMER_INTID {
            let at = cpu::virtual_counter();
            // Disable it before the end of interrupt, so the level is low when the hypervisor
            // lets the PPI through again.
            cpu::set_virtual_timer(None);
            cpu::end_of_interrupt(intid);
            return Some((deadline, at));
        }
        if intid != SPURIOUS_INTID {
            checks.equal(
                "interrupt while waiting for the tick",
                intid,
                SPURIOUS_INTID,
            );
            cpu::end_of_interrupt(intid);
        }
        secondary::wait_for_event();
    }
    cpu::set_virtual_timer(None);
    None
}

fn timer(checks: &mut Checks) {
    let intid = cpu::acknowledge();
    checks.equal("nothing pending before the timer", intid, SPURIOUS_INTID);
    if intid != SPURIOUS_INTID {
        cpu::end_of_interrupt(intid);
    }
    // 1 ms.
    let delay = cpu::counter_frequency() / 1000;
    let mut ticks = 0;
    for _ in 0..TICKS {
        match one_tick(checks, delay) {
            Some((deadline, at)) => {
                ticks += 1;
                checks.check(
                    "the tick is not early",
                    at >= deadline,
                    format_args!("acknowledged at {at}, due at {deadline}"),
                );
            }
            None => {
                checks.check(
                    "tick",
                    false,
                    format_args!("no tick within {TICK_PATIENCE_SECONDS} s"),
                );
            }
        }
    }
    println!("timer: {ticks} ticks of the virtual timer, each through the VMM (FAULT_VM_VPPI, inject, ack)");
    checks.equal("virtual timer ticks", ticks, TICKS);
    taken_as_an_exception(checks, delay);
}

/// Virtual timer interrupts the IRQ handler acknowledged, the counter when it did, and any
/// other interrupt it was given.
static TAKEN: AtomicU64 = AtomicU64::new(0);
static TAKEN_AT: AtomicU64 = AtomicU64::new(0);
static OTHER: AtomicU64 = AtomicU64::new(0);

/// The IRQ handler: acknowledge, stop the timer, end the interrupt.
fn timer_irq() {
    let intid = cpu::acknowledge();
    if intid == VIRTUAL_TIMER_INTID {
        TAKEN_AT.store(cpu::virtual_counter(), Ordering::Release);
        cpu::set_virtual_timer(None);
        TAKEN.fetch_add(1, Ordering::AcqRel);
    } else {
        OTHER.fetch_add(1, Ordering::AcqRel);
    }
    if intid != SPURIOUS_INTID {
        cpu::end_of_interrupt(intid);
    }
}

/// One more tick, taken the way an OS takes it: IRQs unmasked, the virtual interrupt the VMM
/// listed is signalled by the virtual CPU interface and taken at the guest's IRQ vector.
fn taken_as_an_exception(checks: &mut Checks, delay: u64) {
    cpu::set_irq_handler(timer_irq);
    let deadline = cpu::virtual_counter() + delay;
    cpu::set_virtual_timer(Some(deadline));
    cpu::enable_irqs();
    let give_up = give_up_at();
    while TAKEN.load(Ordering::Acquire) == 0 && cpu::virtual_counter() < give_up {
        secondary::wait_for_event();
    }
    cpu::disable_irqs();
    cpu::set_virtual_timer(None);
    let taken = TAKEN.load(Ordering::Acquire);
    let at = TAKEN_AT.load(Ordering::Acquire);
    checks.equal("ticks taken at the IRQ vector", taken, 1);
    checks.check(
        "the IRQ is not early",
        taken == 0 || at >= deadline,
        format_args!("taken at {at}, due at {deadline}"),
    );
    checks.equal(
        "other interrupts at the IRQ vector",
        OTHER.load(Ordering::Acquire),
        0,
    );
    if taken == 1 {
        println!("timer: a tick taken as an IRQ at the guest's own vector");
    }
}

/// Arms the timer to fire at once and waits until the VMM has listed its interrupt (it is then
/// the highest pending one), without acknowledging it.
fn hold_a_pending_interrupt(checks: &mut Checks) -> bool {
    cpu::set_virtual_timer(Some(cpu::virtual_counter()));
    let give_up = give_up_at();
    while cpu::virtual_counter() < give_up {
        if cpu::highest_pending() == VIRTUAL_TIMER_INTID {
            cpu::set_virtual_timer(None);
            return true;
        }
        secondary::wait_for_event();
    }
    cpu::set_virtual_timer(None);
    checks.check(
        "pending interrupt",
        false,
        format_args!("the timer never became pending"),
    );
    false
}

fn register_part(checks: &mut Checks) {
    cpu::enable_group1(PRIORITY_MASKS[0]);
    checks.equal(
        "nothing pending at first",
        cpu::highest_pending(),
        SPURIOUS_INTID,
    );
    let holding = hold_a_pending_interrupt(checks);
    if let Err(error) = secondary::start(1, secondary_main, 0) {
        checks.check("CPU_ON vCPU 1", false, format_args!("{error:?}"));
        return;
    }
    let (leaks, interleavings, _, vmm_runs) = register_rounds(0);
    for _ in 0..REGISTER_ROUNDS {
        if SHARED.done.load(Ordering::Acquire) != 0 {
            break;
        }
        secondary::wait_for_event();
    }
    let second_vmm_runs = SHARED.vmm_runs.load(Ordering::Acquire);
    let registers = registers();
    let distinct = (0..registers.len())
        .filter(|&index| {
            let mask = registers[index].mask;
            SHARED.own[0][index].load(Ordering::Acquire) & mask
                != SHARED.own[1][index].load(Ordering::Acquire) & mask
        })
        .count();
    let second_leaks = SHARED.leaks.load(Ordering::Acquire);
    let second_interleavings = SHARED.interleavings.load(Ordering::Acquire);
    let offered = SHARED.offered.load(Ordering::Acquire);
    println!(
        "registers checked={} distinct={distinct} leaks={} interleavings={interleavings},{second_interleavings} vmm-runs={vmm_runs},{second_vmm_runs} lr-leaks={offered}",
        registers.len(),
        leaks + second_leaks
    );
    checks.equal(
        "vCPU 1 MPIDR_EL1",
        SHARED.mpidr.load(Ordering::Acquire),
        0x8000_0001,
    );
    checks.equal("vCPU 1 finished", SHARED.done.load(Ordering::Acquire), 1);
    checks.equal("distinct register values", distinct, registers.len());
    checks.equal("register leaks", leaks + second_leaks, 0);
    checks.check(
        "the vCPUs took turns",
        interleavings >= 1 && second_interleavings >= INTERLEAVINGS,
        format_args!("{interleavings} and {second_interleavings} interleavings"),
    );
    checks.check(
        "the VMM ran between the vCPUs' checks",
        vmm_runs >= 1 && second_vmm_runs >= 1,
        format_args!("{vmm_runs} and {second_vmm_runs} doorbell reads"),
    );
    checks.equal(
        "interrupts vCPU 1 saw from vCPU 0's list registers",
        offered,
        0,
    );
    if holding {
        // Listed before the second vCPU started, kept through every switch since.
        let intid = cpu::acknowledge();
        checks.equal(
            "vCPU 0's pending interrupt survived",
            intid,
            VIRTUAL_TIMER_INTID,
        );
        if intid != SPURIOUS_INTID {
            cpu::end_of_interrupt(intid);
        }
    }
}

fn run(guest: &Guest) {
    let Some(mode) = guest.mode else {
        println!("arch-check needs the Frameshift hypervisor: nothing to check here");
        return;
    };
    let inherited = read_d31();
    let mut checks = Checks::default();
    checks.check(
        "FP/SIMD registers of a previous run",
        inherited != FP_SECRET,
        format_args!("d31 = {inherited:#x}: the previous run's value"),
    );
    checks.equal(
        "MMIO_GUARD doorbell",
        calls::mmio_guard(DOORBELL_PAGE),
        Ok(()),
    );
    Doorbell.ring(Command::Hello {
        program: ProgramKind::ArchCheck,
        mode,
    });
    checks.equal("vCPU 0 MPIDR_EL1", secondary::current_mpidr(), 0x8000_0000);
    register_part(&mut checks);
    stage1(&mut checks);
    timer(&mut checks);
    let Checks { passed, failed } = checks;
    Doorbell.ring(Command::Result { failures: failed });
    println!("arch-check passed={passed} failed={failed}");
    // Last, right before the runtime's PSCI SYSTEM_OFF.
    write_d31(FP_SECRET);
}

frameshift_guest::guest_main!(run, devices = [DOORBELL_PAGE]);
