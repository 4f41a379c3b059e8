//! Assembly: the boot entry `_start`, the EL2 exception vector table, the trap frame save and
//! restore around every exception from EL1, and the FP/SIMD register file copy.
//!
//! Trap frame: on an exception from EL1 the vector reserves a [`Registers`] on the EL2 stack
//! (`x0`-`x30`, `SP_EL1`, `ELR_EL2`, `SPSR_EL2`) and passes it to [`super::trap`]. The handler may
//! replace it with another domain's registers; the common exit path then restores whatever the
//! frame holds and `ERET`s. The stack is empty again after every `ERET`.
//!
//! [`Registers`]: frameshift_core::Registers

use core::arch::global_asm;

use super::frame::FRAME_SIZE;

/// Vector kinds passed to the Rust handlers in `x1` (lower EL) or `x0` (current EL).
pub const KIND_SYNC: u64 = 0;
/// An IRQ.
pub const KIND_IRQ: u64 = 1;
/// An FIQ.
pub const KIND_FIQ: u64 = 2;
/// An SError.
pub const KIND_SERROR: u64 = 3;
/// Anything from AArch32 (never legitimate: `HCR_EL2.RW` makes EL1 AArch64).
pub const KIND_AARCH32: u64 = 4;

extern "C" {
    /// Enters the first domain: resets the EL2 stack, lets `fs_fill_first_frame` write the frame
    /// and `ERET`s into it.
    pub fn fs_run_first() -> !;
    /// Saves `q0`-`q31`, FPSR and FPCR into `state` (528 bytes, 16-byte aligned).
    pub fn fs_fp_save(state: *mut u8);
    /// Loads `q0`-`q31`, FPSR and FPCR from `state`.
    pub fn fs_fp_restore(state: *const u8);
}

global_asm!(
    r#"
.section .text.boot, "ax"
.global _start
_start:
    msr     daifset, #0xf
    mrs     x0, CurrentEL
    cmp     x0, #(2 << 2)
    b.ne    9f
    adrp    x0, __stack_top
    add     x0, x0, :lo12:__stack_top
    mov     sp, x0
    adrp    x0, __bss_start
    add     x0, x0, :lo12:__bss_start
    adrp    x1, __bss_end
    add     x1, x1, :lo12:__bss_end
1:  cmp     x0, x1
    b.hs    2f
    str     xzr, [x0], #8
    b       1b
2:  adrp    x0, fs_vectors
    add     x0, x0, :lo12:fs_vectors
    msr     vbar_el2, x0
    isb
    bl      fs_el2_main
9:  wfe
    b       9b

.section .text.vectors, "ax"
.macro FS_LOWER kind
    .balign 0x80
    sub     sp, sp, #{frame}
    stp     x0, x1, [sp, #0]
    mov     x1, #\kind
    b       fs_lower_common
.endm
.macro FS_CURRENT kind
    .balign 0x80
    mov     x0, #\kind
    b       fs_current_common
.endm

.balign 0x800
.global fs_vectors
fs_vectors:
    // Current EL with SP_EL0 (never used by Frameshift).
    FS_CURRENT {sync}
    FS_CURRENT {irq}
    FS_CURRENT {fiq}
    FS_CURRENT {serror}
    // Current EL with SP_EL2: a hypervisor bug.
    FS_CURRENT {sync}
    FS_CURRENT {irq}
    FS_CURRENT {fiq}
    FS_CURRENT {serror}
    // Lower EL, AArch64: the domains.
    FS_LOWER {sync}
    FS_LOWER {irq}
    FS_LOWER {fiq}
    FS_LOWER {serror}
    // Lower EL, AArch32.
    FS_LOWER {aarch32}
    FS_LOWER {aarch32}
    FS_LOWER {aarch32}
    FS_LOWER {aarch32}

fs_lower_common:
    stp     x2, x3, [sp, #16]
    stp     x4, x5, [sp, #32]
    stp     x6, x7, [sp, #48]
    stp     x8, x9, [sp, #64]
    stp     x10, x11, [sp, #80]
    stp     x12, x13, [sp, #96]
    stp     x14, x15, [sp, #112]
    stp     x16, x17, [sp, #128]
    stp     x18, x19, [sp, #144]
    stp     x20, x21, [sp, #160]
    stp     x22, x23, [sp, #176]
    stp     x24, x25, [sp, #192]
    stp     x26, x27, [sp, #208]
    stp     x28, x29, [sp, #224]
    mrs     x2, sp_el1
    stp     x30, x2, [sp, #240]
    mrs     x2, elr_el2
    mrs     x3, spsr_el2
    stp     x2, x3, [sp, #256]
    mov     x0, sp
    bl      fs_trap_lower
    b       fs_restore

fs_current_common:
    // The hypervisor is dying; start from a fresh stack in case this was a stack overflow
    // into the guard page.
    adrp    x1, __stack_top
    add     x1, x1, :lo12:__stack_top
    mov     sp, x1
    mrs     x1, esr_el2
    mrs     x2, elr_el2
    mrs     x3, far_el2
    bl      fs_trap_current
8:  wfe
    b       8b

.global fs_run_first
fs_run_first:
    adrp    x0, __stack_top
    add     x0, x0, :lo12:__stack_top
    mov     sp, x0
    sub     sp, sp, #{frame}
    mov     x0, sp
    bl      fs_fill_first_frame

fs_restore:
    ldp     x2, x3, [sp, #256]
    msr     elr_el2, x2
    msr     spsr_el2, x3
    ldp     x30, x2, [sp, #240]
    msr     sp_el1, x2
    ldp     x28, x29, [sp, #224]
    ldp     x26, x27, [sp, #208]
    ldp     x24, x25, [sp, #192]
    ldp     x22, x23, [sp, #176]
    ldp     x20, x21, [sp, #160]
    ldp     x18, x19, [sp, #144]
    ldp     x16, x17, [sp, #128]
    ldp     x14, x15, [sp, #112]
    ldp     x12, x13, [sp, #96]
    ldp     x10, x11, [sp, #80]
    ldp     x8, x9, [sp, #64]
    ldp     x6, x7, [sp, #48]
    ldp     x4, x5, [sp, #32]
    ldp     x2, x3, [sp, #16]
    ldp     x0, x1, [sp, #0]
    add     sp, sp, #{frame}
    eret
"#,
    frame = const FRAME_SIZE,
    sync = const KIND_SYNC,
    irq = const KIND_IRQ,
    fiq = const KIND_FIQ,
    serror = const KIND_SERROR,
    aarch32 = const KIND_AARCH32,
);

// The domains' FP/SIMD registers. The hypervisor itself is built soft-float and never uses them;
// these two routines are the only code that does, with CPTR_EL2.TFP clear.
global_asm!(
    r#"
.section .text.fp, "ax"
.arch_extension fp
.arch_extension simd
.global fs_fp_save
fs_fp_save:
    stp     q0, q1, [x0, #0]
    stp     q2, q3, [x0, #32]
    stp     q4, q5, [x0, #64]
    stp     q6, q7, [x0, #96]
    stp     q8, q9, [x0, #128]
    stp     q10, q11, [x0, #160]
    stp     q12, q13, [x0, #192]
    stp     q14, q15, [x0, #224]
    stp     q16, q17, [x0, #256]
    stp     q18, q19, [x0, #288]
    stp     q20, q21, [x0, #320]
    stp     q22, q23, [x0, #352]
    stp     q24, q25, [x0, #384]
    stp     q26, q27, [x0, #416]
    stp     q28, q29, [x0, #448]
    stp     q30, q31, [x0, #480]
    mrs     x1, fpsr
    mrs     x2, fpcr
    str     x1, [x0, #512]
    str     x2, [x0, #520]
    ret

.global fs_fp_restore
fs_fp_restore:
    ldp     q0, q1, [x0, #0]
    ldp     q2, q3, [x0, #32]
    ldp     q4, q5, [x0, #64]
    ldp     q6, q7, [x0, #96]
    ldp     q8, q9, [x0, #128]
    ldp     q10, q11, [x0, #160]
    ldp     q12, q13, [x0, #192]
    ldp     q14, q15, [x0, #224]
    ldp     q16, q17, [x0, #256]
    ldp     q18, q19, [x0, #288]
    ldp     q20, q21, [x0, #320]
    ldp     q22, q23, [x0, #352]
    ldp     q24, q25, [x0, #384]
    ldp     q26, q27, [x0, #416]
    ldp     q28, q29, [x0, #448]
    ldp     q30, q31, [x0, #480]
    ldr     x1, [x0, #512]
    ldr     x2, [x0, #520]
    msr     fpsr, x1
    msr     fpcr, x2
    ret
"#
);
