//! What the benchmark PDs share (tests/systems/bench/*.xml, run by `cargo xtask bench`): how an
//! operation is timed, how the budgets are refilled first, and the `bench` console lines.
//!
//! Under QEMU's `-icount shift=0,sleep=off` one instruction is one nanosecond of virtual time,
//! so the generic timer's counter counts instructions: one tick of the 62.5 MHz counter is 16
//! instructions (DESIGN.md 9). An operation is timed by running it `N` times between two
//! counter reads and dividing:
//!
//! ```text
//! instructions per operation = round(ticks × 10^9 / CNTFRQ / N)
//! ```
//!
//! The two reads are up to one tick (16 instructions) off, and the loop, the reads and the
//! entry into the loop add a few more. Every pass of the loop runs exactly the same
//! instructions, so the true cost is an integer; with `N` ≥ [`MIN_ITERATIONS`] those errors
//! move the quotient by well under half an instruction and the rounded figure is exactly that
//! integer. That is why the figures are integers, and why two measurements of one operation
//! must agree.
//!
//! Each figure is measured [`REPETITIONS`] times in one run, after one unreported warm-up loop
//! of the same length, and printed each time as
//!
//! ```text
//! bench <name> instructions=<per operation> iterations=<N> ticks=<counter ticks> rep=<1|2>
//! ```
//!
//! Before every timed loop the PDs involved yield (`WFI`, which the hypervisor traps: the PD
//! goes to the tail of its ready queue, alone there, with a full 5 ms budget), and `N` is chosen
//! so that a loop stays well under one budget: no time-slice interrupt lands inside a timed
//! loop, so both repetitions run the very same instructions.

use frameshift_pd::time::{counter, counter_frequency};
use frameshift_pd::{debug_println, Channel};

/// Times each figure is measured in one run; `cargo xtask bench` checks that they agree.
pub const REPETITIONS: u32 = 2;
/// Operations of the untimed-for-the-record first loop that sizes the real ones.
pub const CALIBRATION_ITERATIONS: u64 = 16;
/// Fewest operations in a timed loop: enough that the ±16-instruction quantum of the counter
/// and the loop's fixed cost move the per-operation figure by less than half an instruction.
pub const MIN_ITERATIONS: u64 = 256;
/// Most operations in a timed loop.
pub const MAX_ITERATIONS: u64 = 4096;
/// Instructions a timed loop aims at: under the 5 ms (5,000,000-instruction) budget of every PD
/// involved, so that no time-slice interrupt lands inside it.
pub const LOOP_INSTRUCTIONS: u64 = 4_000_000;
/// Nanoseconds per second: under `-icount shift=0` also instructions per second.
const NANOSECONDS_PER_SECOND: u128 = 1_000_000_000;

/// Label of a benchmark call: the server echoes the message registers and the count.
pub const LABEL_BENCH: u64 = 0xB0;
/// Label of the reply to [`LABEL_BENCH`].
pub const LABEL_BENCH_REPLY: u64 = 0xB1;
/// Label of a call that asks the server to yield (refill its budget) before it replies.
pub const LABEL_YIELD: u64 = 0xB2;
/// Label of a call that asks the server whether it is passive (reply MR0: 1 passive, 0 active).
pub const LABEL_HELLO: u64 = 0xB3;

/// The channel the caller calls the server on, and the server sees the caller on
/// (bench/ppc_active.xml, bench/ppc_passive.xml).
pub const BENCH_PPC_CHANNEL: Channel = Channel::new(0);
/// The channel ping and pong bounce notifications on (bench/notify.xml).
pub const BENCH_ROUND_CHANNEL: Channel = Channel::new(0);
/// The channel on which ping asks pong to yield, and pong says it has (bench/notify.xml).
pub const BENCH_YIELD_CHANNEL: Channel = Channel::new(1);

/// A PD call id the hypervisor does not define (the PD call range is 0xC600_0100..): it is
/// answered `NOT_SUPPORTED` and changes nothing, which makes it the cheapest call a PD can make,
/// the null call. The null-call benchmark checks every answer, so if this id is ever given a
/// meaning the benchmark fails instead of timing something else.
pub const NULL_CALL: u32 = 0xC600_01FF;

/// Give up the rest of the time slice: the hypervisor traps `WFI`, moves this PD to the tail of
/// its ready queue with a full budget and resumes it after the instruction (docs/ABI.md,
/// "Scheduling"). A benchmark PD alone at its priority gets the CPU straight back.
pub fn yield_now() {
    aarch64_cpu::asm::wfi();
}

/// Instructions per operation from `ticks` of the counter over `iterations` operations, rounded
/// to the nearest integer (`frequency` = `CNTFRQ_EL0`; one instruction per nanosecond).
pub fn per_operation(ticks: u64, iterations: u64, frequency: u64) -> u64 {
    let denominator = u128::from(frequency) * u128::from(iterations.max(1));
    let numerator = u128::from(ticks) * NANOSECONDS_PER_SECOND;
    let rounded = (2 * numerator + denominator) / (2 * denominator.max(1));
    u64::try_from(rounded).unwrap_or(u64::MAX)
}

/// Instructions since reset for a counter value read `ticks` (the counter starts at zero with
/// the machine under icount); a multiple of the tick length, 16 on QEMU 7.2 `virt`.
pub fn instructions_since_reset(ticks: u64, frequency: u64) -> u64 {
    per_operation(ticks, 1, frequency)
}

/// The timed-loop length for an operation that cost `instructions` each in calibration: the
/// largest power of two that keeps the loop under [`LOOP_INSTRUCTIONS`], within
/// [`MIN_ITERATIONS`]..=[`MAX_ITERATIONS`].
pub fn iterations_for(instructions: u64) -> u64 {
    let fits = LOOP_INSTRUCTIONS / instructions.max(1);
    let power = if fits == 0 {
        1
    } else {
        1 << (u64::BITS - 1 - fits.leading_zeros())
    };
    power.clamp(MIN_ITERATIONS, MAX_ITERATIONS)
}

/// Counter ticks taken by `iterations` calls of `operation`.
///
/// Never inlined: every loop of one operation (the calibration and each repetition) must run
/// the very same machine code. Inlined into an unrolled caller, each copy could be compiled a
/// little differently, and two repetitions would differ by an instruction per round.
#[inline(never)]
pub fn time(iterations: u64, operation: &mut impl FnMut()) -> u64 {
    let start = counter();
    for _ in 0..iterations {
        operation();
    }
    counter().wrapping_sub(start)
}

/// Prints one measurement: `bench <name> instructions=<n> iterations=<N> ticks=<t> rep=<r>`.
pub fn report(name: &str, ticks: u64, iterations: u64, repetition: u32) {
    let instructions = per_operation(ticks, iterations, counter_frequency());
    debug_println!(
        "bench {name} instructions={instructions} iterations={iterations} ticks={ticks} rep={repetition}"
    );
}

/// Measures `operation` [`REPETITIONS`] times and prints each measurement. `refill` runs before
/// every loop and must leave every PD the operation involves with a full budget.
pub fn measure(name: &str, mut refill: impl FnMut(), mut operation: impl FnMut()) {
    refill();
    let calibration = time(CALIBRATION_ITERATIONS, &mut operation);
    let iterations = iterations_for(per_operation(
        calibration,
        CALIBRATION_ITERATIONS,
        counter_frequency(),
    ));
    // A full-length warm-up loop, not reported, and the lines printed only after the last
    // loop: every reported loop then follows the same kind of loop, never a console line. (On
    // the tree of 2026-12-01 a passive-server call loop that followed a console line ran 18
    // instructions per call slower than one that followed a loop, run after run.)
    refill();
    time(iterations, &mut operation);
    let mut ticks = [0; REPETITIONS as usize];
    for slot in &mut ticks {
        refill();
        *slot = time(iterations, &mut operation);
    }
    for (repetition, ticks) in (1..).zip(ticks) {
        report(name, ticks, iterations, repetition);
    }
}
