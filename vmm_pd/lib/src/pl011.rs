//! The emulated PL011 (frameshift_vm_protocol::pl011): `UARTDR` writes gather into a line, which
//! the VMM prints as the VM's console line when it ends (`\n`) or fills up; `UARTFR` reads 0
//! (transmit FIFO never full); every other register reads 0 and ignores writes, which is enough
//! for a driver that only transmits.

use frameshift_vm_protocol::pl011::{UARTDR, UARTFR};

/// Longest line kept before it is sent anyway (the hypervisor splits longer console lines too).
pub const LINE_MAX: usize = 160;

/// The UART's transmit side.
#[derive(Clone, Debug)]
pub struct Pl011 {
    line: [u8; LINE_MAX],
    length: usize,
}

impl Default for Pl011 {
    fn default() -> Self {
        Self::new()
    }
}

impl Pl011 {
    /// A UART with nothing pending.
    pub const fn new() -> Self {
        Self {
            line: [0; LINE_MAX],
            length: 0,
        }
    }

    /// The guest wrote `value` at `offset`. Returns the bytes to print now (a whole line with
    /// its `\n`, or a full buffer), if any.
    pub fn write(&mut self, offset: u64, value: u64) -> Option<&[u8]> {
        if offset != UARTDR {
            return None;
        }
        let byte = value as u8;
        if let Some(slot) = self.line.get_mut(self.length) {
            *slot = byte;
            self.length += 1;
        }
        if byte == b'\n' || self.length == LINE_MAX {
            let length = core::mem::take(&mut self.length);
            return self.line.get(..length);
        }
        None
    }

    /// The guest read `offset`: what it gets.
    pub const fn read(&self, offset: u64) -> u64 {
        match offset {
            // TXFF clear (room to send), BUSY clear: a transmitter that is never behind.
            UARTFR => 0,
            _ => 0,
        }
    }

    /// Bytes received and not yet printed (a line without its `\n`).
    pub fn pending(&self) -> &[u8] {
        self.line.get(..self.length).unwrap_or(&[])
    }

    /// Drop what is pending (the guest was torn down mid-line).
    pub fn clear(&mut self) {
        self.length = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    fn feed(uart: &mut Pl011, text: &[u8]) -> Vec<Vec<u8>> {
        text.iter()
            .filter_map(|byte| {
                uart.write(UARTDR, u64::from(*byte) | 0xFFFF_FF00)
                    .map(<[u8]>::to_vec)
            })
            .collect()
    }

    #[test]
    fn bytes_become_a_line_at_the_newline() {
        let mut uart = Pl011::new();
        assert_eq!(feed(&mut uart, b"hello\nwor"), [b"hello\n".to_vec()]);
        assert_eq!(uart.pending(), b"wor");
        assert_eq!(feed(&mut uart, b"ld\n"), [b"world\n".to_vec()]);
        assert!(uart.pending().is_empty());
    }

    #[test]
    fn a_full_line_is_sent_without_waiting_for_its_end() {
        let mut uart = Pl011::new();
        let long = [b'x'; LINE_MAX + 3];
        let lines = feed(&mut uart, &long);
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].len(), LINE_MAX);
        assert_eq!(uart.pending(), b"xxx");
    }

    #[test]
    fn other_registers_are_inert() {
        let mut uart = Pl011::new();
        assert_eq!(uart.write(0x30, u64::from(b'\n')), None); // UARTCR
        assert!(uart.pending().is_empty());
        assert_eq!(uart.read(UARTFR), 0);
        assert_eq!(uart.read(0xFE0), 0);
        uart.write(UARTDR, u64::from(b'a'));
        uart.clear();
        assert!(uart.pending().is_empty());
    }
}
