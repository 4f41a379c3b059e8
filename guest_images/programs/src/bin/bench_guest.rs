//! The bench guest (tests/systems/bench/guest.xml, `cargo xtask bench`): times, from inside a
//! protected VM in history mode, what a guest pays for its hypervisor and its VMM.
//!
//! - `guest_null_hvc`: an `HVC` the hypervisor does not serve ([`BENCH_NULL_HVC`]), which goes
//!   to the VMM's `fault()` and back (the guest checks the VMM's mark in `x1`);
//! - `guest_stage2_fault`: a read of the registered doorbell page, a stage-2 fault the VMM
//!   emulates (the guest checks the value);
//! - `guest_share_pages<n>`: `MEM_SHARE` + `MEM_UNSHARE` of `n` pages in place, one range call
//!   each, for `n` = 1, 2, 4 ... 512; 512 is the whole second 2 MiB block of the guest's RAM;
//! - `guest_bounce_pages<n>`: the swiotlb alternative for the same sizes: `n` pages copied from
//!   a shared buffer into private memory and back out, with the fastest copy the guest has
//!   (64 bytes per 8 instructions: `LDP`/`STP` of two 128-bit registers, twice).
//!
//! The RAM is three 2 MiB blocks (guest.xml): the image in the first, the pages converted and
//! the bounce buffer in the second, the bounce's private side in the third. With less RAM
//! (guest_round_trips.xml, which `cargo xtask bench` also boots with 48 idle PDs) it times the
//! two round trips only.
//!
//! Timing follows `frameshift_pd_programs::bench` (under `-icount shift=0,sleep=off` one tick of
//! the 62.5 MHz virtual counter is 16 instructions): a calibration loop, an unreported warm-up
//! loop, two equal timed loops, and the lines printed after the last loop, as
//! `bench <name> instructions=<n> iterations=<N> ticks=<t> rep=<r>`. Before each loop the guest
//! asks the VMM to yield (a fresh budget for it) and yields itself (`WFI`, trapped: a fresh
//! budget), and a loop stays under 4 M instructions, so no time-slice interrupt lands in it. A
//! loop is timed to the instruction, not to the 16-instruction tick: before and after it the
//! guest finds the last instruction of a tick ([`counter_edge`]), and a costly operation
//! is timed over several such loops (each after its refill), so that every figure averages at
//! least 64 operations. The loops' fixed cost (a few dozen instructions per loop) is in the
//! figure: for the costliest (the 2 MiB bounce, about half a million instructions) well under
//! 0.01%.
//!
//! icount counts a `TLBI` as one instruction, whatever the real machine pays for it: the
//! conversion figures leave out what the TLB maintenance costs on hardware.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![deny(unsafe_code)]

use frameshift_abi::addr::{Ipa, PAGE_SIZE};
use frameshift_guest::conduit::Conduit;
use frameshift_guest::cpu::counter_frequency;
use frameshift_guest::{calls, mmio, println, Guest};
use frameshift_guest_programs::DOORBELL_PAGE;
use frameshift_vm_protocol::answers::VMM_HVC_MARK;
use frameshift_vm_protocol::bench::{
    BENCH_MMIO_VALUE, BENCH_NULL_HVC, BENCH_VMM_YIELD_HVC, SWEEP_PAGES,
};

/// Times each figure is measured in one run.
const REPETITIONS: u32 = 2;
/// Operations in the calibration loop (fewer for an operation that costs more).
const CALIBRATION_ITERATIONS: u64 = 16;
/// Fewest operations one figure averages.
const MIN_OPERATIONS: u64 = 64;
/// Most operations in a timed loop.
const MAX_ITERATIONS: u64 = 4096;
/// Instructions a timed loop aims at: under the 5 ms budget of the vCPU and of its VMM.
const LOOP_INSTRUCTIONS: u64 = 4_000_000;
const NANOSECONDS_PER_SECOND: u128 = 1_000_000_000;
/// 2 MiB in pages.
const BLOCK_PAGES: u64 = 512;
const BLOCK_BYTES: u64 = BLOCK_PAGES * PAGE_SIZE;

/// Instructions per counter tick: 16 for the 62.5 MHz counter, under icount's one instruction
/// per nanosecond.
fn instructions_per_tick() -> u64 {
    u64::try_from(NANOSECONDS_PER_SECOND / u128::from(counter_frequency().max(1))).unwrap_or(16)
}

/// `instructions` over `iterations` operations, rounded to the nearest integer.
fn per_operation(instructions: u64, iterations: u64) -> u64 {
    let iterations = iterations.max(1);
    (2 * instructions + iterations) / (2 * iterations)
}

/// The largest power of two of operations that keeps a loop under [`LOOP_INSTRUCTIONS`].
fn iterations_for(instructions: u64) -> u64 {
    let fits = LOOP_INSTRUCTIONS / instructions.max(1);
    let power = if fits == 0 {
        1
    } else {
        1 << (u64::BITS - 1 - fits.leading_zeros())
    };
    power.clamp(1, MAX_ITERATIONS)
}

/// A fresh budget for the VMM (it yields while it serves [`BENCH_VMM_YIELD_HVC`]) and for this
/// vCPU (a trapped `WFI` yields).
fn refill() {
    calls::raw(Conduit::Hvc, BENCH_VMM_YIELD_HVC, [0; 7]);
    #[cfg(target_arch = "aarch64")]
    #[allow(unsafe_code)]
    // SAFETY: `WFI` only waits (here: the hypervisor traps it and yields); it touches no memory.
    unsafe {
        core::arch::asm!("wfi", options(nomem, nostack, preserves_flags));
    }
}

/// Reads the counter every 15 instructions until two successive reads agree, and returns the
/// last value and the reads made (at least 2). A read 15 instructions after another sees the next tick unless the
/// first was made on the tick's first instruction: so the last read is made exactly on the
/// last instruction of its tick, with no jitter. Instructions from the call to that read are
/// 15 × reads plus a constant.
#[cfg(target_arch = "aarch64")]
#[inline(never)]
fn counter_edge() -> (u64, u64) {
    let tick: u64;
    let reads: u64;
    #[allow(unsafe_code)]
    // SAFETY: reads the virtual counter and uses only the named registers.
    unsafe {
        core::arch::asm!(
            // No counter value is all ones: the first pass never ends the loop, so every two
            // reads compared are 15 instructions apart.
            "mov {previous}, #-1",
            "mov {reads}, #0",
            // 15 instructions a pass: isb, mrs, add, cmp, mov, nine nops, b.ne.
            "2:",
            "isb",
            "mrs {current}, cntvct_el0",
            "add {reads}, {reads}, #1",
            "cmp {current}, {previous}",
            "mov {previous}, {current}",
            "nop", "nop", "nop", "nop", "nop", "nop", "nop", "nop", "nop",
            "b.ne 2b",
            previous = out(reg) _,
            current = out(reg) tick,
            reads = out(reg) reads,
            options(nomem, nostack),
        );
    }
    (tick, reads)
}

/// The host build only type-checks the guest, which runs on AArch64 alone.
#[cfg(not(target_arch = "aarch64"))]
fn counter_edge() -> (u64, u64) {
    (frameshift_guest::cpu::virtual_counter(), 2)
}

/// Instructions taken by `iterations` operations (plus the loop's fixed cost, a few dozen),
/// and the counter ticks over them. Never inlined, so every loop of one operation runs the
/// same machine code.
#[inline(never)]
fn time(iterations: u64, operation: &mut impl FnMut()) -> (u64, u64) {
    let (start, _) = counter_edge();
    for _ in 0..iterations {
        operation();
    }
    let (end, reads) = counter_edge();
    let ticks = end.wrapping_sub(start);
    let instructions = (ticks * instructions_per_tick()).saturating_sub(15 * reads);
    (instructions, ticks)
}

/// One measurement: `loops` loops of `iterations` operations, each after a [`refill`]; returns
/// the instructions and the ticks over all of them.
fn measure_loops(loops: u64, iterations: u64, operation: &mut impl FnMut()) -> (u64, u64) {
    let mut total = (0, 0);
    for _ in 0..loops {
        refill();
        let (instructions, ticks) = time(iterations, operation);
        total = (total.0 + instructions, total.1 + ticks);
    }
    total
}

fn measure(name: &str, calibration: u64, mut operation: impl FnMut()) {
    refill();
    let (instructions, _) = time(calibration, &mut operation);
    let iterations = iterations_for(per_operation(instructions, calibration));
    // A costly operation is timed in several loops, each under one budget, so that a figure
    // always averages at least MIN_OPERATIONS operations.
    let loops = MIN_OPERATIONS.div_ceil(iterations);
    measure_loops(loops, iterations, &mut operation);
    let mut results = [(0, 0); REPETITIONS as usize];
    for slot in &mut results {
        *slot = measure_loops(loops, iterations, &mut operation);
    }
    let operations = loops * iterations;
    for (repetition, (instructions, ticks)) in (1..).zip(results) {
        let instructions = per_operation(instructions, operations);
        println!(
            "bench {name} instructions={instructions} iterations={operations} ticks={ticks} rep={repetition}"
        );
    }
}

/// Copy `bytes` (a multiple of 64) from `from` to `to`, 64 bytes per pass.
#[cfg(target_arch = "aarch64")]
#[inline(never)]
fn copy(to: u64, from: u64, bytes: u64) {
    #[allow(unsafe_code)]
    // SAFETY: both ranges lie in this guest's RAM, mapped read-write (the caller passes a
    // shared buffer and a private one, both whole pages, not overlapping); the copy goes
    // through raw addresses and creates no Rust reference.
    unsafe {
        core::arch::asm!(
            "2:",
            "ldp q0, q1, [{from}]",
            "ldp q2, q3, [{from}, #32]",
            "stp q0, q1, [{to}]",
            "stp q2, q3, [{to}, #32]",
            "add {from}, {from}, #64",
            "add {to}, {to}, #64",
            "subs {left}, {left}, #64",
            "b.ne 2b",
            from = inout(reg) from => _,
            to = inout(reg) to => _,
            left = inout(reg) bytes => _,
            out("v0") _, out("v1") _, out("v2") _, out("v3") _,
            options(nostack),
        );
    }
}

/// The host build only type-checks the guest, which runs on AArch64 alone.
#[cfg(not(target_arch = "aarch64"))]
fn copy(_to: u64, _from: u64, _bytes: u64) {}

fn run(guest: &Guest) {
    if !guest.under_hypervisor() {
        println!("guest: no hypervisor, nothing to measure");
        return;
    }
    let mut failures = 0u64;
    if let Err(error) = calls::mmio_guard(DOORBELL_PAGE) {
        println!("FAIL MMIO_GUARD of the doorbell page: {error}");
        failures += 1;
    }
    // A guest with one block of RAM (bench/guest_round_trips.xml) times the round trips only.
    let conversions = guest.ram.pages >= 3 * BLOCK_PAGES;
    let converted = Ipa(guest.ram.base.get() + BLOCK_BYTES);
    let private = Ipa(guest.ram.base.get() + 2 * BLOCK_BYTES);

    let mut wrong = 0u64;
    measure("guest_null_hvc", CALIBRATION_ITERATIONS, || {
        let answer = calls::raw(Conduit::Hvc, BENCH_NULL_HVC, [0; 7]);
        if answer[1] != VMM_HVC_MARK {
            wrong += 1;
        }
    });
    measure("guest_stage2_fault", CALIBRATION_ITERATIONS, || {
        #[allow(unsafe_code)]
        // SAFETY: the doorbell page is mapped as Device memory and registered with MMIO_GUARD;
        // the bench VMM answers every read of it with a constant and nothing else happens.
        let value = unsafe { mmio::read64(DOORBELL_PAGE.add(0x18)) };
        if value != BENCH_MMIO_VALUE {
            wrong += 1;
        }
    });
    if wrong != 0 {
        println!("FAIL {wrong} VMM round trips were not answered by the VMM");
        failures += 1;
    }

    let mut refused = 0u64;
    let sweep: &[u64] = if conversions { &SWEEP_PAGES } else { &[] };
    for &pages in sweep {
        let calibration = if pages >= 64 {
            2
        } else {
            CALIBRATION_ITERATIONS
        };
        let mut name = heapless_name("guest_share_pages", pages);
        measure(name.as_str(), calibration, || {
            if calls::mem_share(converted, pages) != Ok(pages) {
                refused += 1;
            }
            if calls::mem_unshare(converted, pages) != Ok(pages) {
                refused += 1;
            }
        });
        name = heapless_name("guest_bounce_pages", pages);
        // The bounce buffer is shared once, for good, as swiotlb's is.
        if calls::mem_share(converted, pages) != Ok(pages) {
            refused += 1;
        }
        let shared = guest.shared_view(converted).get();
        let bytes = pages * PAGE_SIZE;
        measure(name.as_str(), calibration, || {
            copy(private.get(), shared, bytes);
            copy(shared, private.get(), bytes);
        });
        if calls::mem_unshare(converted, pages) != Ok(pages) {
            refused += 1;
        }
    }
    if refused != 0 {
        println!("FAIL {refused} share or unshare calls were refused");
        failures += 1;
    }
    if failures == 0 {
        println!("guest: done");
    } else {
        println!("guest FAILED: {failures} problems");
    }
    frameshift_guest::psci::system_off();
}

/// `prefix` followed by `pages` in decimal.
fn heapless_name(prefix: &str, pages: u64) -> Name {
    let mut name = Name::default();
    name.push(prefix.as_bytes());
    let mut digits = [0u8; 20];
    let mut left = pages;
    let mut count = 0;
    loop {
        digits[count] = b'0' + (left % 10) as u8;
        count += 1;
        left /= 10;
        if left == 0 {
            break;
        }
    }
    digits[..count].reverse();
    name.push(&digits[..count]);
    name
}

/// A short ASCII name.
#[derive(Default)]
struct Name {
    bytes: [u8; 32],
    len: usize,
}

impl Name {
    fn push(&mut self, more: &[u8]) {
        let end = (self.len + more.len()).min(self.bytes.len());
        self.bytes[self.len..end].copy_from_slice(&more[..end - self.len]);
        self.len = end;
    }

    fn as_str(&self) -> &str {
        core::str::from_utf8(&self.bytes[..self.len]).unwrap_or("?")
    }
}

frameshift_guest::guest_main!(run, devices = [DOORBELL_PAGE]);
