//! The guest's console: [`print!`](crate::print) and [`println!`](crate::println).
//!
//! Two backends, chosen at boot:
//! - **PL011** (the default): bytes go to the UART at `UART_IPA`, one `UARTDR` write per byte
//!   after `UARTFR.TXFF` reads clear. Without a hypervisor that is QEMU's real PL011; under
//!   Frameshift every access traps to the VMM, which emulates the UART (libvmm's model) and
//!   prints whole lines. A protected guest must have registered the page with `MMIO_GUARD`.
//! - **Hypercall**: `FS_CONSOLE_WRITE`, straight to the hypervisor (used when the UART page
//!   could not be registered).
//!
//! Either way a line reaches the console as `FS|<vm>|<text>` under Frameshift; the guest never
//! writes a prefix itself.

use core::sync::atomic::{AtomicU8, Ordering};
use frameshift_abi::guest_call::CONSOLE_WRITE_MAX;
use frameshift_vm_protocol::pl011::{UARTDR, UARTFR, UARTFR_TXFF, UART_IPA};

/// Where console bytes go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConsoleBackend {
    /// The PL011 at `UART_IPA`.
    Pl011,
    /// `FS_CONSOLE_WRITE`.
    Hypercall,
}

static BACKEND: AtomicU8 = AtomicU8::new(0);

/// Choose the backend (boot does, before the first line).
pub fn set_backend(backend: ConsoleBackend) {
    BACKEND.store(backend as u8, Ordering::Relaxed);
}

/// The backend in use.
pub fn backend() -> ConsoleBackend {
    match BACKEND.load(Ordering::Relaxed) {
        0 => ConsoleBackend::Pl011,
        _ => ConsoleBackend::Hypercall,
    }
}

const CHUNK: usize = CONSOLE_WRITE_MAX as usize;

/// A console writer: PL011 bytes go out at once; hypercall bytes are gathered into 40-byte
/// chunks, sent when full and when the writer is dropped.
#[derive(Debug)]
pub struct ConsoleWriter {
    backend: ConsoleBackend,
    buffer: [u8; CHUNK],
    length: usize,
}

impl ConsoleWriter {
    /// A writer on the current backend.
    pub fn new() -> Self {
        Self {
            backend: backend(),
            buffer: [0; CHUNK],
            length: 0,
        }
    }

    /// Send `bytes`.
    pub fn write_bytes(&mut self, bytes: &[u8]) {
        match self.backend {
            ConsoleBackend::Pl011 => bytes.iter().for_each(|byte| pl011_put(*byte)),
            ConsoleBackend::Hypercall => {
                for byte in bytes {
                    if let Some(slot) = self.buffer.get_mut(self.length) {
                        *slot = *byte;
                        self.length += 1;
                    }
                    if self.length == CHUNK {
                        self.flush();
                    }
                }
            }
        }
    }

    /// Send what is gathered.
    pub fn flush(&mut self) {
        if self.length > 0 {
            // A refused console write has nowhere to be reported; the text is dropped.
            let _ = crate::calls::console_write(self.buffer.get(..self.length).unwrap_or(&[]));
            self.length = 0;
        }
    }
}

impl Default for ConsoleWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for ConsoleWriter {
    fn drop(&mut self) {
        self.flush();
    }
}

impl core::fmt::Write for ConsoleWriter {
    fn write_str(&mut self, text: &str) -> core::fmt::Result {
        self.write_bytes(text.as_bytes());
        Ok(())
    }
}

fn pl011_put(byte: u8) {
    // SAFETY: UARTFR and UARTDR are 32-bit registers of the UART page, which boot mapped as
    // Device memory (and, under Frameshift, registered with MMIO_GUARD before choosing this
    // backend); reading UARTFR has no side effect and writing UARTDR sends one byte.
    unsafe {
        while crate::mmio::read32(UART_IPA.add(UARTFR)) & UARTFR_TXFF != 0 {
            core::hint::spin_loop();
        }
        crate::mmio::write32(UART_IPA.add(UARTDR), u32::from(byte));
    }
}

/// Print formatted text on the guest's console (no newline added).
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => {{
        let mut writer = $crate::console::ConsoleWriter::new();
        let _ = ::core::fmt::Write::write_fmt(&mut writer, ::core::format_args!($($arg)*));
    }};
}

/// Print a formatted line on the guest's console.
#[macro_export]
macro_rules! println {
    () => {
        $crate::print!("\n")
    };
    ($($arg:tt)*) => {{
        let mut writer = $crate::console::ConsoleWriter::new();
        let _ = ::core::fmt::Write::write_fmt(&mut writer, ::core::format_args!($($arg)*));
        writer.write_bytes(b"\n");
    }};
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conduit::install_fake;
    use crate::mmio::install_fake_device;
    use frameshift_abi::addr::Ipa;
    use std::cell::RefCell;
    use std::rc::Rc;
    use std::vec::Vec;

    #[test]
    fn pl011_waits_for_room_then_writes_each_byte() {
        let log = Rc::new(RefCell::new(Vec::new()));
        let seen = log.clone();
        let mut full_reads = 2;
        install_fake_device(move |address: Ipa, bytes, written| {
            seen.borrow_mut().push((address.get(), bytes, written));
            if address == UART_IPA.add(UARTFR) && full_reads > 0 {
                full_reads -= 1;
                return u64::from(UARTFR_TXFF);
            }
            0
        });
        let mut writer = ConsoleWriter {
            backend: ConsoleBackend::Pl011,
            buffer: [0; CHUNK],
            length: 0,
        };
        writer.write_bytes(b"hi");
        let flag = (0x0900_0018, 4, None);
        assert_eq!(
            *log.borrow(),
            [
                flag,
                flag,
                flag,
                (0x0900_0000, 4, Some(u64::from(b'h'))),
                flag,
                (0x0900_0000, 4, Some(u64::from(b'i'))),
            ]
        );
    }

    #[test]
    fn hypercall_backend_sends_40_byte_chunks_and_the_rest_on_drop() {
        let log = Rc::new(RefCell::new(Vec::new()));
        let seen = log.clone();
        install_fake(move |_, registers| {
            assert_eq!(registers[0], 0xC600_0079);
            seen.borrow_mut().push(registers[1]);
            registers[0] = 0;
        });
        let mut writer = ConsoleWriter {
            backend: ConsoleBackend::Hypercall,
            buffer: [0; CHUNK],
            length: 0,
        };
        writer.write_bytes(&[b'x'; 45]);
        assert_eq!(*log.borrow(), [40]);
        drop(writer);
        assert_eq!(*log.borrow(), [40, 5]);
    }
}
