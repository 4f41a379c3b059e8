//! The Frameshift EL2 kernel binary for QEMU `virt`: everything lives in the library
//! (`arch::aarch64` boots and drives `kernel`); this file only names the panic handler.
#![no_std]
#![no_main]

use frameshift_hypervisor as _;

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    frameshift_hypervisor::arch::aarch64::boot::panic(info)
}
