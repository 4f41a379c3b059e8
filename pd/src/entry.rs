//! Start-up and EL1 exceptions: `_start`, the EL1 vector table and the panic handler.
//!
//! The hypervisor enters a PD at its ELF entry at EL1h with `SP` = the top of its stack mapping
//! and stage 1 off (VA = IPA). `_start` then:
//! 1. turns FP/SIMD on (`CPACR_EL1.FPEN` = 0b11), since Rust for `aarch64-unknown-none` emits SIMD
//!    in ordinary code and an access with FPEN clear traps;
//! 2. points `VBAR_EL1` at this module's vectors, so that the synchronous external abort the
//!    hypervisor injects when the PD touches memory it has no right to (DESIGN 2) lands here;
//! 3. zeroes `.bss` (the builder need not zero memory past a segment's file size);
//! 4. calls `frameshift_pd_main`, which [`crate::protection_domain!`] defines.
//!
//! An exception is expected only at a probe's load or store (see [`crate::probe`]): the handler then
//! resumes at the probe's fixup with the syndrome. Any other exception is a bug or an attack by
//! this PD: it is printed and this PD stops (`PD_STOP`), while the other PDs run on. A panic
//! ends the same way.

core::arch::global_asm!(
    r#"
    .section .text._start, "ax"
    .global _start
_start:
    mov     x0, #(3 << 20)
    msr     cpacr_el1, x0
    adrp    x0, frameshift_pd_vectors
    add     x0, x0, :lo12:frameshift_pd_vectors
    msr     vbar_el1, x0
    isb
    adrp    x0, __bss_start
    add     x0, x0, :lo12:__bss_start
    adrp    x1, __bss_end
    add     x1, x1, :lo12:__bss_end
1:  cmp     x0, x1
    b.hs    2f
    str     xzr, [x0], #8
    b       1b
2:  mov     x29, xzr
    mov     x30, xzr
    bl      frameshift_pd_main
3:  wfe
    b       3b

    // VBAR_EL1 needs 2 KiB alignment; each of the 16 vectors is 0x80 bytes.
    .section .text.frameshift_pd_vectors, "ax"
    .balign 2048
frameshift_pd_vectors:
    .irp kind, 0, 1, 2, 3
    .balign 0x80
    mov     x0, #\kind
    b       frameshift_pd_vector_unexpected
    .endr
    // 0x200: synchronous, current EL with SP_ELx: where the injected abort arrives.
    .balign 0x80
    b       frameshift_pd_sync_current
    .irp kind, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15
    .balign 0x80
    mov     x0, #\kind
    b       frameshift_pd_vector_unexpected
    .endr

frameshift_pd_sync_current:
    // Only the probes' load and store may fault and resume. x0-x3 are the probes' result
    // registers, so this path may use them freely; everything else must be left as it was.
    mrs     x0, elr_el1
    adrp    x1, frameshift_pd_probe_load
    add     x1, x1, :lo12:frameshift_pd_probe_load
    cmp     x0, x1
    b.eq    3f
    adrp    x1, frameshift_pd_probe_store
    add     x1, x1, :lo12:frameshift_pd_probe_store
    cmp     x0, x1
    b.ne    4f
3:  adrp    x1, frameshift_pd_probe_fixup
    add     x1, x1, :lo12:frameshift_pd_probe_fixup
    msr     elr_el1, x1
    mrs     x2, esr_el1
    mrs     x3, far_el1
    mov     x1, #1
    eret
4:  mov     x0, #4
frameshift_pd_vector_unexpected:
    mrs     x1, esr_el1
    mrs     x2, elr_el1
    mrs     x3, far_el1
    bl      frameshift_pd_exception
5:  wfe
    b       5b

    // frameshift_pd_probe_read(address: x0) -> x0 = value, x1 = 0 (read) or 1 (faulted),
    // x2 = ESR_EL1, x3 = FAR_EL1 (both only when faulted).
    .section .text.frameshift_pd_probe, "ax"
    .global frameshift_pd_probe_read
frameshift_pd_probe_read:
    mov     x1, #0
frameshift_pd_probe_load:
    ldr     x0, [x0]
frameshift_pd_probe_fixup:
    ret

    // frameshift_pd_probe_write(address: x0, value: x4) -> x1 = 0 (written) or 1 (faulted),
    // x2 = ESR_EL1, x3 = FAR_EL1 (both only when faulted); x0 is clobbered.
    .global frameshift_pd_probe_write
frameshift_pd_probe_write:
    mov     x1, #0
frameshift_pd_probe_store:
    str     x4, [x0]
    b       frameshift_pd_probe_fixup
"#
);

/// An exception the PD did not expect: print it and stop this PD (the halt line then counts it
/// and the run fails, but the other PDs finish their work first).
#[no_mangle]
extern "C" fn frameshift_pd_exception(kind: u64, esr: u64, elr: u64, far: u64) -> ! {
    crate::debug_println!(
        "unexpected exception vector={kind} esr={esr:#x} elr={elr:#x} far={far:#x}"
    );
    crate::stop_self(crate::StopReason::Exception)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    match info.location() {
        Some(location) => crate::debug_println!(
            "panic at {}:{}: {}",
            location.file(),
            location.line(),
            info.message()
        ),
        None => crate::debug_println!("panic: {}", info.message()),
    }
    crate::stop_self(crate::StopReason::Panic)
}
