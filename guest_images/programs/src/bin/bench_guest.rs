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
//! budget), and a loop stays under 4 M instructions, so no time-slice interrupt lands in it. Each
//! loop starts on a counter edge (it spins until the counter moves), so both repetitions of an
//! operation start at the same phase of the tick and count the same ticks. A loop of a costly
//! operation may be as short as one operation; its figure then carries the loop's fixed cost
//! (a few dozen instructions) and the ±16 of the tick, which for the costliest figures (the
//! 2 MiB bounce, about half a million instructions) is well under 0.01%.
//!
//! icount counts a `TLBI` as one instruction, whatever the real machine pays for it: the
//! conversion figures leave out what the TLB maintenance costs on hardware.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![deny(unsafe_code)]

use frameshift_abi::addr::{Ipa, PAGE_SIZE};
use frameshift_guest::conduit::Conduit;
use frameshift_guest::cpu::{counter_frequency, virtual_counter};
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
/// Most operations in a timed loop.
const MAX_ITERATIONS: u64 = 4096;
/// Instructions a timed loop aims at: under the 5 ms budget of the vCPU and of its VMM.
const LOOP_INSTRUCTIONS: u64 = 4_000_000;
const NANOSECONDS_PER_SECOND: u128 = 1_000_000_000;
/// 2 MiB in pages.
const BLOCK_PAGES: u64 = 512;
const BLOCK_BYTES: u64 = BLOCK_PAGES * PAGE_SIZE;

fn per_operation(ticks: u64, iterations: u64) -> u64 {
    let denominator = u128::from(counter_frequency()) * u128::from(iterations.max(1));
    let numerator = u128::from(ticks) * NANOSECONDS_PER_SECOND;
    let rounded = (2 * numerator + denominator) / (2 * denominator.max(1));
    u64::try_from(rounded).unwrap_or(u64::MAX)
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
    #[allow(unsafe_code)]
    // SAFETY: `WFI` only waits (here: the hypervisor traps it and yields); it touches no memory.
    unsafe {
        core::arch::asm!("wfi", options(nomem, nostack, preserves_flags));
    }
}

/// Counter ticks over `iterations` operations, from a counter edge. Never inlined, so every loop
/// of one operation runs the same machine code.
#[inline(never)]
fn time(iterations: u64, operation: &mut impl FnMut()) -> u64 {
    let edge = virtual_counter();
    let mut start = virtual_counter();
    while start == edge {
        start = virtual_counter();
    }
    for _ in 0..iterations {
        operation();
    }
    virtual_counter().wrapping_sub(start)
}

fn measure(name: &str, calibration: u64, mut operation: impl FnMut()) {
    refill();
    let ticks = time(calibration, &mut operation);
    let iterations = iterations_for(per_operation(ticks, calibration));
    refill();
    time(iterations, &mut operation);
    let mut ticks = [0; REPETITIONS as usize];
    for slot in &mut ticks {
        refill();
        *slot = time(iterations, &mut operation);
    }
    for (repetition, ticks) in (1..).zip(ticks) {
        let instructions = per_operation(ticks, iterations);
        println!(
            "bench {name} instructions={instructions} iterations={iterations} ticks={ticks} rep={repetition}"
        );
    }
}

/// Copy `bytes` (a multiple of 64) from `from` to `to`, 64 bytes per pass.
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
struct Name {
    bytes: [u8; 32],
    len: usize,
}

impl Default for Name {
    fn default() -> Self {
        Self {
            bytes: [0; 32],
            len: 0,
        }
    }
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
