//! `_start`, the secondary vCPU entry, the EL1 vector table and the panic handler (firmware
//! target only).
//!
//! The VMM starts the boot vCPU at the image's first byte, EL1h, DAIF masked, MMU off, with the
//! boot register in `x0` (frameshift_vm_protocol::boot). `_start` then:
//! 1. keeps `x0` in a callee-saved register and sets `SP` to the top of the boot stack;
//! 2. turns FP/SIMD on (`CPACR_EL1.FPEN` = 0b11): Rust for `aarch64-unknown-none` emits SIMD in
//!    ordinary code, and with FPEN clear the first such instruction traps;
//! 3. points `VBAR_EL1` at the vectors, so any exception is reported rather than lost;
//! 4. zeroes `.bss` (stacks and table pool included: the flat image has no bytes for it);
//! 5. calls `frameshift_guest_main(x0)`, which [`crate::guest_main!`] defines.
//!
//! A guest expects no exception at all but one: a synchronous abort of the load in
//! `frameshift_guest_probe_read` ([`crate::cpu::probe_read`]) returns to its caller with the
//! syndrome. Every other vector prints what happened and powers the VM off, which its VMM sees
//! as a power-off without a verdict.

core::arch::global_asm!(
    r#"
    .section .text._start, "ax"
    .global _start
_start:
    mov     x19, x0
    adrp    x1, __stack_top
    add     x1, x1, :lo12:__stack_top
    mov     sp, x1
    mov     x1, #(3 << 20)
    msr     cpacr_el1, x1
    adrp    x1, frameshift_guest_vectors
    add     x1, x1, :lo12:frameshift_guest_vectors
    msr     vbar_el1, x1
    isb
    adrp    x1, __bss_start
    add     x1, x1, :lo12:__bss_start
    adrp    x2, __bss_end
    add     x2, x2, :lo12:__bss_end
1:  cmp     x1, x2
    b.hs    2f
    str     xzr, [x1], #8
    b       1b
2:  mov     x29, xzr
    mov     x30, xzr
    mov     x0, x19
    bl      frameshift_guest_main
3:  wfe
    b       3b

    // PSCI CPU_ON lands here (MMU off, x0 = context id). The boot vCPU left its stage-1
    // registers in FRAMESHIFT_GUEST_MMU_CONFIG, cleaned to the point of coherency, because
    // these loads bypass the caches.
    .section .text.frameshift_guest_secondary, "ax"
    .global frameshift_guest_secondary_entry
frameshift_guest_secondary_entry:
    mov     x19, x0
    adrp    x1, __secondary_stack_top
    add     x1, x1, :lo12:__secondary_stack_top
    mov     sp, x1
    mov     x1, #(3 << 20)
    msr     cpacr_el1, x1
    adrp    x1, frameshift_guest_vectors
    add     x1, x1, :lo12:frameshift_guest_vectors
    msr     vbar_el1, x1
    adrp    x1, FRAMESHIFT_GUEST_MMU_CONFIG
    add     x1, x1, :lo12:FRAMESHIFT_GUEST_MMU_CONFIG
    ldp     x2, x3, [x1]
    ldp     x4, x5, [x1, #16]
    msr     mair_el1, x2
    msr     tcr_el1, x3
    msr     ttbr0_el1, x4
    isb
    tlbi    vmalle1
    dsb     nsh
    isb
    msr     sctlr_el1, x5
    isb
    mov     x29, xzr
    mov     x30, xzr
    mov     x0, x19
    bl      frameshift_guest_secondary_main
4:  wfe
    b       4b

    // VBAR_EL1 needs 2 KiB alignment; each of the 16 vectors is 0x80 bytes.
    .section .text.frameshift_guest_vectors, "ax"
    .balign 2048
frameshift_guest_vectors:
    .irp kind, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15
    .balign 0x80
    .if \kind == 5
    // An IRQ at EL1h: crate::cpu's handler, if the program set one, and back.
    b       frameshift_guest_irq_entry
    .else
    mov     x0, #\kind
    b       frameshift_guest_vector
    .endif
    .endr

    // Saves what the interrupted code may hold in caller-saved state (x0-x18, x29, x30,
    // ELR_EL1, SPSR_EL1, all of q0-q31 since their upper halves are never callee-saved, FPCR,
    // FPSR), calls frameshift_guest_irq (IRQs stay masked), restores and returns.
frameshift_guest_irq_entry:
    sub     sp, sp, #736
    stp     x0, x1, [sp, #0]
    stp     x2, x3, [sp, #16]
    stp     x4, x5, [sp, #32]
    stp     x6, x7, [sp, #48]
    stp     x8, x9, [sp, #64]
    stp     x10, x11, [sp, #80]
    stp     x12, x13, [sp, #96]
    stp     x14, x15, [sp, #112]
    stp     x16, x17, [sp, #128]
    stp     x18, x29, [sp, #144]
    mrs     x0, elr_el1
    mrs     x1, spsr_el1
    stp     x30, x0, [sp, #160]
    mrs     x0, fpcr
    mrs     x2, fpsr
    stp     x1, x0, [sp, #176]
    str     x2, [sp, #192]
    add     x0, sp, #208
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
    bl      frameshift_guest_irq
    add     x0, sp, #208
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
    ldr     x2, [sp, #192]
    ldp     x1, x0, [sp, #176]
    msr     fpsr, x2
    msr     fpcr, x0
    msr     spsr_el1, x1
    ldp     x30, x0, [sp, #160]
    msr     elr_el1, x0
    ldp     x18, x29, [sp, #144]
    ldp     x16, x17, [sp, #128]
    ldp     x14, x15, [sp, #112]
    ldp     x12, x13, [sp, #96]
    ldp     x10, x11, [sp, #80]
    ldp     x8, x9, [sp, #64]
    ldp     x6, x7, [sp, #48]
    ldp     x4, x5, [sp, #32]
    ldp     x2, x3, [sp, #16]
    ldp     x0, x1, [sp, #0]
    add     sp, sp, #736
    eret
frameshift_guest_vector:
    // A synchronous exception from EL1h (vector 4) taken by the probed load of
    // frameshift_guest_probe_read is expected: return past the load with x0 = FAR_EL1 and
    // x1 = ESR_EL1 (never 0 for a data abort), as cpu::probe_read reads them.
    cmp     x0, #4
    b.ne    6f
    mrs     x1, elr_el1
    adrp    x2, frameshift_guest_probe_load
    add     x2, x2, :lo12:frameshift_guest_probe_load
    cmp     x1, x2
    b.ne    6f
    mrs     x0, far_el1
    mrs     x1, esr_el1
    add     x2, x2, #4
    msr     elr_el1, x2
    eret
6:  mrs     x1, esr_el1
    mrs     x2, elr_el1
    mrs     x3, far_el1
    bl      frameshift_guest_exception
5:  wfe
    b       5b

    // cpu::probe_read: x0 = the address; returns x0 = the word and x1 = 0, or (through the
    // vector above) x0 = FAR_EL1 and x1 = ESR_EL1.
    .section .text.frameshift_guest_probe, "ax"
    .global frameshift_guest_probe_read
frameshift_guest_probe_read:
    mov     x1, xzr
    .global frameshift_guest_probe_load
frameshift_guest_probe_load:
    ldr     x0, [x0]
    ret
"#
);

use core::sync::atomic::{AtomicBool, Ordering};

/// Set once the first exception is being reported: a second one (the report itself faulting)
/// powers off without printing.
static REPORTING: AtomicBool = AtomicBool::new(false);

/// The vector's name: its type (Arm ARM D1.10.2, the order of the table) and where it came from.
fn vector_name(kind: u64) -> (&'static str, &'static str) {
    let class = ["sync", "irq", "fiq", "serror"];
    let origin = ["el1 with sp_el0", "el1", "el0 aarch64", "el0 aarch32"];
    (
        class.get((kind % 4) as usize).copied().unwrap_or("?"),
        origin.get((kind / 4) as usize).copied().unwrap_or("?"),
    )
}

/// An exception the guest did not expect: report it and power off.
#[no_mangle]
extern "C" fn frameshift_guest_exception(kind: u64, esr: u64, elr: u64, far: u64) -> ! {
    if REPORTING.swap(true, Ordering::Relaxed) {
        crate::psci::system_off();
    }
    let (class, origin) = vector_name(kind);
    crate::println!(
        "exception {class} from {origin}: esr={esr:#x} (ec={:#x}) elr={elr:#x} far={far:#x}",
        esr >> 26 & 0x3f
    );
    crate::psci::system_off()
}

/// An IRQ with no handler set (crate::cpu::set_irq_handler): as unexpected as any exception.
pub(crate) fn unexpected_irq() -> ! {
    let esr: u64;
    let elr: u64;
    // SAFETY: reads the exception registers; no memory is touched.
    unsafe {
        core::arch::asm!("mrs {}, esr_el1", "mrs {}, elr_el1", out(reg) esr, out(reg) elr,
            options(nomem, nostack, preserves_flags));
    }
    frameshift_guest_exception(5, esr, elr, 0)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    if REPORTING.swap(true, Ordering::Relaxed) {
        crate::psci::system_off();
    }
    match info.location() {
        Some(location) => crate::println!(
            "panic at {}:{}: {}",
            location.file(),
            location.line(),
            info.message()
        ),
        None => crate::println!("panic: {}", info.message()),
    }
    crate::psci::system_off()
}
