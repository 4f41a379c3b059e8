//! The PL011 UART at 0x0900_0000 (QEMU `virt`), transmit only.
//!
//! Hand-written rather than a driver crate: the hypervisor needs two registers (DR and FR.TXFF),
//! and QEMU's PL011 transmits without any set-up.

use core::fmt;

const PL011_BASE: usize = 0x0900_0000;
const DR: usize = 0x00;
const FR: usize = 0x18;
const FR_TXFF: u32 = 1 << 5;

/// The console. Output of every domain goes through the line discipline in
/// `kernel::console` before it reaches this writer.
#[derive(Debug, Default)]
pub struct Pl011;

impl Pl011 {
    fn put(&mut self, byte: u8) {
        let base = PL011_BASE as *mut u32;
        // SAFETY: 0x0900_0000 is the PL011 on QEMU virt, mapped Device-nGnRE by `mmu`; FR and DR
        // are 32-bit registers within its 4 KiB frame and only this single-CPU writer uses them.
        unsafe {
            while base.byte_add(FR).read_volatile() & FR_TXFF != 0 {}
            base.byte_add(DR).write_volatile(u32::from(byte));
        }
    }
}

impl fmt::Write for Pl011 {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        for byte in text.bytes() {
            self.put(byte);
        }
        Ok(())
    }
}

/// Writes one hypervisor line: `FS|hypervisor|<text>`.
#[macro_export]
macro_rules! hv_line {
    ($($arg:tt)*) => {{
        use core::fmt::Write as _;
        let mut console = $crate::arch::aarch64::console::Pl011;
        let _ = console.write_str("FS|hypervisor|");
        let _ = console.write_fmt(format_args!($($arg)*));
        let _ = console.write_str("\n");
    }};
}
