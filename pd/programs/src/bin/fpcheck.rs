//! FP/SIMD isolation check: fills all 32 FP/SIMD registers with a pattern derived from its own
//! name and spins, re-reading them, long enough to be preempted many times by equal-priority
//! copies of itself (fp.xml). Any value another domain left behind is a mismatch; the
//! hypervisor switches FP/SIMD state lazily on a change of domain (DESIGN.md 9).
#![cfg_attr(target_os = "none", no_std, no_main)]
#![deny(unsafe_code)]

use frameshift_pd::{debug_println, pd_name, Handler};

struct FpCheck;

impl Handler for FpCheck {}

/// Fills v0-v31 with `pattern` and counts, over `ITERATIONS` rounds, how often any of d0, d9,
/// d17 or d31 no longer holds it.
#[cfg(target_arch = "aarch64")]
fn count_mismatches(pattern: u64) -> u64 {
    /// Loop iterations: tens of millions of instructions, many 5 ms time slices under TCG.
    const ITERATIONS: u64 = 3_000_000;
    let mut mismatches = 0u64;
    // SAFETY: the asm only touches the registers it declares (every v register is declared
    // clobbered) and no memory; it ends after ITERATIONS rounds.
    #[allow(unsafe_code)]
    unsafe {
        core::arch::asm!(
            "fmov d0, {s}", "fmov d1, {s}", "fmov d2, {s}", "fmov d3, {s}",
            "fmov d4, {s}", "fmov d5, {s}", "fmov d6, {s}", "fmov d7, {s}",
            "fmov d8, {s}", "fmov d9, {s}", "fmov d10, {s}", "fmov d11, {s}",
            "fmov d12, {s}", "fmov d13, {s}", "fmov d14, {s}", "fmov d15, {s}",
            "fmov d16, {s}", "fmov d17, {s}", "fmov d18, {s}", "fmov d19, {s}",
            "fmov d20, {s}", "fmov d21, {s}", "fmov d22, {s}", "fmov d23, {s}",
            "fmov d24, {s}", "fmov d25, {s}", "fmov d26, {s}", "fmov d27, {s}",
            "fmov d28, {s}", "fmov d29, {s}", "fmov d30, {s}", "fmov d31, {s}",
            "2:",
            "fmov {t}, d0", "cmp {t}, {s}", "cinc {m}, {m}, ne",
            "fmov {t}, d9", "cmp {t}, {s}", "cinc {m}, {m}, ne",
            "fmov {t}, d17", "cmp {t}, {s}", "cinc {m}, {m}, ne",
            "fmov {t}, d31", "cmp {t}, {s}", "cinc {m}, {m}, ne",
            "subs {n}, {n}, #1",
            "b.ne 2b",
            s = in(reg) pattern,
            t = out(reg) _,
            m = inout(reg) mismatches,
            n = inout(reg) ITERATIONS => _,
            out("v0") _, out("v1") _, out("v2") _, out("v3") _,
            out("v4") _, out("v5") _, out("v6") _, out("v7") _,
            out("v8") _, out("v9") _, out("v10") _, out("v11") _,
            out("v12") _, out("v13") _, out("v14") _, out("v15") _,
            out("v16") _, out("v17") _, out("v18") _, out("v19") _,
            out("v20") _, out("v21") _, out("v22") _, out("v23") _,
            out("v24") _, out("v25") _, out("v26") _, out("v27") _,
            out("v28") _, out("v29") _, out("v30") _, out("v31") _,
            options(nomem, nostack),
        );
    }
    mismatches
}

/// The host build (clippy) has no registers to check.
#[cfg(not(target_arch = "aarch64"))]
fn count_mismatches(_pattern: u64) -> u64 {
    0
}

fn init() -> FpCheck {
    let pattern = pd_name()
        .as_str()
        .bytes()
        .fold(0x1234_5678_9abc_def0_u64, |acc, byte| {
            acc.rotate_left(7) ^ u64::from(byte)
        });
    let mismatches = count_mismatches(pattern);
    debug_println!("fpcheck done pattern={pattern:#x} mismatches={mismatches}");
    FpCheck
}

frameshift_pd::protection_domain!(init);
