//! Thumb: drops to EL0 in AArch32 T32 state and runs a 16-bit T32 `wfi`, which traps to the
//! hypervisor (`HCR_EL2.TWI`). The hypervisor must resume right after the 2-byte instruction
//! (`ESR_EL2.IL` = 0): skipping 4 bytes would jump over the first `adds` after it, and r0 would
//! come back as 1 instead of 2 (thumb.xml). An A64 `wfi` at EL1 is checked the same way.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![deny(unsafe_code)]

use frameshift_pd::{debug_println, Handler};

struct Thumb;

impl Handler for Thumb {}

/// `ID_AA64PFR0_EL1.EL0` (bits 3:0): 0b0010 means EL0 can run AArch32 as well as AArch64.
const EL0_AARCH32: u64 = 0b0010;

// The vectors and the EL0 entry, with the T32 code: plain assembly, reached only through
// `run_t32_at_el0` below.
#[cfg(target_arch = "aarch64")]
#[allow(unsafe_code)]
mod t32_at_el0 {
    core::arch::global_asm!(
        r#"
    // VBAR_EL1 needs 2 KiB alignment; each of the 16 vectors is 0x80 bytes.
    .section .text.thumb_vectors, "ax"
    .balign 2048
thumb_vectors:
    .rept 12
    .balign 0x80
    b       thumb_unexpected
    .endr
    // 0x600: synchronous exception from a lower EL in AArch32: the T32 code's `svc #0`.
    .balign 0x80
    b       thumb_back
    .rept 3
    .balign 0x80
    b       thumb_unexpected
    .endr

thumb_unexpected:
    mov     x2, #1
    b       1f
thumb_back:
    mov     x2, #0
    // SP_EL1 is as thumb_run left it: EL0 cannot change it. X15-X30 may hold AArch32 banked
    // registers now, so they come back from the stack.
1:  mov     w0, w0
    mrs     x1, esr_el1
    ldr     x9, [sp, #104]
    msr     vbar_el1, x9
    isb
    ldp     x18, x19, [sp, #0]
    ldp     x20, x21, [sp, #16]
    ldp     x22, x23, [sp, #32]
    ldp     x24, x25, [sp, #48]
    ldp     x26, x27, [sp, #64]
    ldp     x28, x29, [sp, #80]
    ldr     x30, [sp, #96]
    add     sp, sp, #112
    ret

    // thumb_run(code: x0) -> x0 = r0, x1 = ESR_EL1, x2 = 0 (came back by SVC) or 1 (another
    // exception). Runs `code` at EL0 in T32 state.
    .section .text.thumb_run, "ax"
    .global thumb_run
thumb_run:
    sub     sp, sp, #112
    stp     x18, x19, [sp, #0]
    stp     x20, x21, [sp, #16]
    stp     x22, x23, [sp, #32]
    stp     x24, x25, [sp, #48]
    stp     x26, x27, [sp, #64]
    stp     x28, x29, [sp, #80]
    str     x30, [sp, #96]
    mrs     x9, vbar_el1
    str     x9, [sp, #104]
    adrp    x9, thumb_vectors
    add     x9, x9, :lo12:thumb_vectors
    msr     vbar_el1, x9
    // SCTLR_EL1.nTWI: an EL0 `wfi` is not trapped to EL1, so the EL2 trap (HCR_EL2.TWI) sees it.
    mrs     x9, sctlr_el1
    orr     x9, x9, #(1 << 16)
    msr     sctlr_el1, x9
    msr     elr_el1, x0
    // SPSR: AArch32 (M[4]) User mode (M[3:0] = 0), T32 (T, bit 5), A, I and F masked.
    mov     x9, #0x1f0
    msr     spsr_el1, x9
    isb
    eret

    .balign 4
    .global thumb_wfi_adds
thumb_wfi_adds:
    .hword  0x2000  // movs r0, #0
    .hword  0xbf30  // wfi (16-bit encoding T1)
    .hword  0x3001  // adds r0, #1
    .hword  0x3001  // adds r0, #1
    .hword  0xdf00  // svc #0
"#
    );
}

/// Runs the T32 sequence at EL0; returns (r0, ESR_EL1 of the way back, 0 if that was the SVC).
#[cfg(target_arch = "aarch64")]
fn run_t32_at_el0() -> (u64, u64, u64) {
    let (r0, esr, unexpected): (u64, u64, u64);
    // SAFETY: `thumb_run` saves x18-x30 and VBAR_EL1 on the stack, ERETs to the T32 sequence at
    // EL0 (which touches only r0 and no memory) and comes back through its own vector by the
    // sequence's SVC, restoring what it saved; it returns in x0-x2 and clobbers only the
    // caller-saved registers declared here (and x9).
    #[allow(unsafe_code)]
    unsafe {
        core::arch::asm!(
            "adrp x0, thumb_wfi_adds",
            "add x0, x0, :lo12:thumb_wfi_adds",
            "bl thumb_run",
            out("x0") r0,
            out("x1") esr,
            out("x2") unexpected,
            clobber_abi("C"),
        );
    }
    (r0, esr, unexpected)
}

/// A64: `wfi` at EL1 (trapped, 4 bytes), then two increments.
#[cfg(target_arch = "aarch64")]
fn run_a64_wfi() -> u64 {
    let count: u64;
    // SAFETY: register-only instructions; `wfi` traps to the hypervisor and resumes here.
    #[allow(unsafe_code)]
    unsafe {
        core::arch::asm!(
            "mov {c}, #0",
            "wfi",
            "add {c}, {c}, #1",
            "add {c}, {c}, #1",
            c = out(reg) count,
            options(nomem, nostack),
        );
    }
    count
}

#[cfg(target_arch = "aarch64")]
fn id_aa64pfr0_el0() -> u64 {
    let value: u64;
    // SAFETY: reads an ID register into a fresh register.
    #[allow(unsafe_code)]
    unsafe {
        core::arch::asm!("mrs {}, id_aa64pfr0_el1", out(reg) value, options(nomem, nostack));
    }
    value & 0xf
}

/// The host build (clippy) has nothing to run.
#[cfg(not(target_arch = "aarch64"))]
fn run_t32_at_el0() -> (u64, u64, u64) {
    (0, 0, 1)
}

#[cfg(not(target_arch = "aarch64"))]
fn run_a64_wfi() -> u64 {
    0
}

#[cfg(not(target_arch = "aarch64"))]
fn id_aa64pfr0_el0() -> u64 {
    0
}

fn init() -> Thumb {
    let el0 = id_aa64pfr0_el0();
    debug_println!("thumb id_aa64pfr0_el1.el0={el0:#x}");
    debug_println!("thumb a64 wfi then 2 adds: x={}", run_a64_wfi());
    if el0 != EL0_AARCH32 {
        debug_println!("thumb AArch32 at EL0 not supported");
        return Thumb;
    }
    let (r0, esr, unexpected) = run_t32_at_el0();
    let how = if unexpected == 0 { "svc" } else { "unexpected" };
    debug_println!(
        "thumb t32 wfi then 2 adds: r0={r0} back by {how} esr_ec={:#x}",
        esr >> 26
    );
    Thumb
}

frameshift_pd::protection_domain!(init);
