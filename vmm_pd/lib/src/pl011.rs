//! The emulated PL011 UART (Arm PrimeCell UART PL011 TRM, DDI 0183) both VMMs give their
//! guests: enough for a driver that only transmits (the demo guests' console,
//! frameshift_vm_protocol::pl011) and the registers Linux's `amba-pl011` driver reads and writes
//! at probe, at start-up and while it sends.
//!
//! | offset | register | here |
//! | --- | --- | --- |
//! | 0x000 | `UARTDR` | a write sends its low byte (gathered into a console line); reads 0 |
//! | 0x004 | `UARTRSR/ECR` | reads 0 (no errors); writes ignored |
//! | 0x018 | `UARTFR` | `TXFE` and `RXFE`: the transmitter is never behind, nothing is received |
//! | 0x020-0x034 | `ILPR`, `IBRD`, `FBRD`, `LCR_H`, `CR`, `IFLS` | read back what was written |
//! | 0x038 | `UARTIMSC` | the interrupt mask |
//! | 0x03C | `UARTRIS` | `TXRIS` once a byte was sent, until `UARTICR` clears it |
//! | 0x040 | `UARTMIS` | `RIS & IMSC` |
//! | 0x044 | `UARTICR` | clears raw interrupt bits |
//! | 0x048 | `UARTDMACR` | reads back |
//! | 0xFE0-0xFFC | peripheral and PrimeCell ids | the PL011's, which the AMBA bus matches the driver with |
//!
//! The transmitter sends each byte the moment it is written, so the FIFO is always empty: the
//! driver never sees `TXFF` and never needs the transmit interrupt, but gets it right if it
//! asks (the interrupt line is `RIS & IMSC`, as on the real part). Nothing is ever received.
//! The bytes sent gather into a line, which the VMM prints as the VM's console line when it ends
//! (`\n`) or fills up.

/// `UARTDR` and `UARTFR`: the two registers the demo guests' console uses.
pub use frameshift_vm_protocol::pl011::{UARTDR, UARTFR};

/// `UARTRSR`/`UARTECR`.
pub const UARTRSR: u64 = 0x004;
/// `UARTILPR`.
pub const UARTILPR: u64 = 0x020;
/// `UARTIBRD`.
pub const UARTIBRD: u64 = 0x024;
/// `UARTFBRD`.
pub const UARTFBRD: u64 = 0x028;
/// `UARTLCR_H`.
pub const UARTLCR_H: u64 = 0x02C;
/// `UARTCR`.
pub const UARTCR: u64 = 0x030;
/// `UARTIFLS`.
pub const UARTIFLS: u64 = 0x034;
/// `UARTIMSC`.
pub const UARTIMSC: u64 = 0x038;
/// `UARTRIS`.
pub const UARTRIS: u64 = 0x03C;
/// `UARTMIS`.
pub const UARTMIS: u64 = 0x040;
/// `UARTICR`.
pub const UARTICR: u64 = 0x044;
/// `UARTDMACR`.
pub const UARTDMACR: u64 = 0x048;
/// The first identification register (`UARTPeriphID0`).
pub const UARTPERIPHID0: u64 = 0xFE0;

/// `UARTFR.RXFE`: the receive FIFO is empty.
pub const FR_RXFE: u32 = 1 << 4;
/// `UARTFR.TXFF`: the transmit FIFO is full.
pub const FR_TXFF: u32 = frameshift_vm_protocol::pl011::UARTFR_TXFF;
/// `UARTFR.TXFE`: the transmit FIFO is empty.
pub const FR_TXFE: u32 = 1 << 7;
/// `UARTFR.BUSY`.
pub const FR_BUSY: u32 = 1 << 3;
/// The transmit interrupt's bit in `RIS`, `MIS`, `IMSC` and `ICR`.
pub const INT_TX: u32 = 1 << 5;
/// Every interrupt bit the PL011 has.
const INT_ALL: u32 = 0x7FF;

/// `UARTPeriphID0-3` then `UARTPCellID0-3`: part 0x011 (PL011), designer 0x41 (Arm), revision
/// 1 (r1p5 reads as this on Arm's parts), and the PrimeCell id 0xB105F00D.
const IDS: [u32; 8] = [0x11, 0x10, 0x14, 0x00, 0x0D, 0xF0, 0x05, 0xB1];

/// Longest line kept before it is sent anyway (the hypervisor splits longer console lines too).
pub const LINE_MAX: usize = 160;

/// The UART's state.
#[derive(Clone, Debug)]
pub struct Pl011 {
    line: [u8; LINE_MAX],
    length: usize,
    ilpr: u32,
    ibrd: u32,
    fbrd: u32,
    lcr_h: u32,
    cr: u32,
    ifls: u32,
    imsc: u32,
    raw: u32,
    dmacr: u32,
}

impl Default for Pl011 {
    fn default() -> Self {
        Self::new()
    }
}

impl Pl011 {
    /// A UART in its reset state (`UARTCR` = `TXE | RXE`, `UARTIFLS` = half-full triggers).
    pub const fn new() -> Self {
        Self {
            line: [0; LINE_MAX],
            length: 0,
            ilpr: 0,
            ibrd: 0,
            fbrd: 0,
            lcr_h: 0,
            cr: 0x300,
            ifls: 0x12,
            imsc: 0,
            raw: 0,
            dmacr: 0,
        }
    }

    /// The guest read `offset` (any size; the registers are 32 bits wide at most).
    pub fn read(&self, offset: u64) -> u64 {
        let value = match offset {
            UARTFR => FR_TXFE | FR_RXFE,
            UARTILPR => self.ilpr,
            UARTIBRD => self.ibrd,
            UARTFBRD => self.fbrd,
            UARTLCR_H => self.lcr_h,
            UARTCR => self.cr,
            UARTIFLS => self.ifls,
            UARTIMSC => self.imsc,
            UARTRIS => self.raw,
            UARTMIS => self.raw & self.imsc,
            UARTDMACR => self.dmacr,
            id @ UARTPERIPHID0..=0xFFC if id % 4 == 0 => IDS[((id - UARTPERIPHID0) / 4) as usize],
            // UARTDR (nothing received), UARTRSR (no errors), write-only and reserved ones.
            _ => 0,
        };
        u64::from(value)
    }

    /// The guest wrote `value` at `offset`. Returns the bytes to print now (a whole line with
    /// its `\n`, or a full buffer), if any.
    pub fn write(&mut self, offset: u64, value: u64) -> Option<&[u8]> {
        let word = value as u32;
        match offset {
            UARTDR => return self.send(value as u8),
            UARTILPR => self.ilpr = word & 0xFF,
            UARTIBRD => self.ibrd = word & 0xFFFF,
            UARTFBRD => self.fbrd = word & 0x3F,
            UARTLCR_H => self.lcr_h = word & 0xFF,
            UARTCR => self.cr = word & 0xFF87,
            UARTIFLS => self.ifls = word & 0x3F,
            UARTIMSC => self.imsc = word & INT_ALL,
            UARTICR => self.raw &= !word,
            UARTDMACR => self.dmacr = word & 0x7,
            _ => {}
        }
        None
    }

    fn send(&mut self, byte: u8) -> Option<&[u8]> {
        // Sent at once: the transmit interrupt's condition (FIFO at or below its trigger
        // level) holds again, as QEMU's model also raises it after each byte.
        self.raw |= INT_TX;
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

    /// The interrupt line (`UARTINTR`): some unmasked interrupt is raised.
    pub const fn interrupt(&self) -> bool {
        self.raw & self.imsc != 0
    }

    /// Bytes sent and not yet printed (a line without its `\n`).
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

    fn send(uart: &mut Pl011, text: &[u8]) -> Vec<Vec<u8>> {
        text.iter()
            .filter_map(|byte| uart.write(UARTDR, u64::from(*byte)).map(<[u8]>::to_vec))
            .collect()
    }

    #[test]
    fn bytes_become_lines_and_the_flags_say_never_full_never_received() {
        let mut uart = Pl011::new();
        assert_eq!(
            send(&mut uart, b"[    0.0] psci\r\nabc"),
            [b"[    0.0] psci\r\n".to_vec()]
        );
        assert_eq!(uart.pending(), b"abc");
        let flags = uart.read(UARTFR) as u32;
        assert_eq!(flags & (FR_TXFF | FR_BUSY), 0, "never full or busy");
        assert_eq!(flags & (FR_TXFE | FR_RXFE), FR_TXFE | FR_RXFE);
        assert_eq!(uart.read(UARTDR), 0);
        let long = [b'x'; LINE_MAX + 1];
        assert_eq!(send(&mut uart, &long).len(), 1);
    }

    #[test]
    fn a_data_write_sends_only_its_low_byte() {
        let mut uart = Pl011::new();
        for byte in b"hello\nwor" {
            uart.write(UARTDR, u64::from(*byte) | 0xFFFF_FF00);
        }
        assert_eq!(uart.pending(), b"wor");
        assert_eq!(
            uart.write(UARTDR, u64::from(b'\n') | 0xFFFF_FF00),
            Some(&b"wor\n"[..])
        );
        assert!(uart.pending().is_empty());
    }

    #[test]
    fn a_full_line_is_sent_without_waiting_for_its_end_and_clear_drops_the_rest() {
        let mut uart = Pl011::new();
        let long = [b'x'; LINE_MAX + 3];
        let lines = send(&mut uart, &long);
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].len(), LINE_MAX);
        assert_eq!(uart.pending(), b"xxx");
        uart.clear();
        assert!(uart.pending().is_empty());
        assert_eq!(send(&mut uart, b"ok\n"), [b"ok\n".to_vec()]);
    }

    #[test]
    fn only_the_data_register_sends() {
        let mut uart = Pl011::new();
        assert_eq!(uart.write(UARTCR, u64::from(b'\n')), None);
        assert_eq!(uart.write(0x800, u64::from(b'\n')), None);
        assert!(uart.pending().is_empty());
        assert_eq!(uart.read(0x800), 0, "reserved offsets read as zero");
    }

    #[test]
    fn the_amba_bus_finds_a_pl011() {
        let uart = Pl011::new();
        let id = |base: u64| {
            (0..4).fold(0u32, |id, index| {
                id | (uart.read(base + index * 4) as u32) << (8 * index)
            })
        };
        // What Linux's AMBA bus assembles and matches (amba-pl011's id 0x00041011, mask
        // 0x000fffff), and the PrimeCell id it requires.
        assert_eq!(id(0xFE0) & 0x000F_FFFF, 0x0004_1011);
        assert_eq!(id(0xFF0), 0xB105_F00D);
    }

    #[test]
    fn control_registers_read_back_and_reset_as_the_trm_says() {
        let mut uart = Pl011::new();
        assert_eq!(uart.read(UARTCR), 0x300);
        assert_eq!(uart.read(UARTIFLS), 0x12);
        for (offset, value) in [
            (UARTIBRD, 0x27),
            (UARTFBRD, 0x4),
            (UARTLCR_H, 0x70),
            (UARTCR, 0x301),
            (UARTIFLS, 0x3F),
            (UARTDMACR, 0),
            (UARTILPR, 1),
        ] {
            assert_eq!(uart.write(offset, value), None);
            assert_eq!(uart.read(offset), value, "{offset:#x}");
        }
        // Reserved bits do not stick.
        uart.write(UARTFBRD, 0xFFFF_FFFF);
        assert_eq!(uart.read(UARTFBRD), 0x3F);
    }

    #[test]
    fn the_interrupt_line_is_raw_and_mask() {
        let mut uart = Pl011::new();
        assert!(!uart.interrupt());
        send(&mut uart, b"a");
        assert_eq!(uart.read(UARTRIS) as u32, INT_TX);
        assert!(!uart.interrupt(), "masked");
        assert_eq!(uart.read(UARTMIS), 0);
        uart.write(UARTIMSC, u64::from(INT_TX));
        assert!(uart.interrupt());
        assert_eq!(uart.read(UARTMIS) as u32, INT_TX);
        uart.write(UARTICR, u64::from(INT_TX));
        assert!(!uart.interrupt() && uart.read(UARTRIS) == 0);
        send(&mut uart, b"b");
        assert!(uart.interrupt(), "the next byte raises it again");
    }

    proptest::proptest! {
        /// Whatever a guest writes and reads at any offset of the page, the UART does not
        /// panic, registers read back at most 32 bits, every byte sent to the data register
        /// comes out once, in order, in the lines and the pending tail, and no line is longer
        /// than LINE_MAX.
        #[test]
        fn any_access_is_total_and_every_byte_comes_out_once(
            accesses in proptest::collection::vec(
                (
                    proptest::prop_oneof![3 => proptest::strategy::Just(UARTDR), 1 => 0u64..0x1000],
                    proptest::prelude::any::<u64>(),
                    proptest::prelude::any::<bool>(),
                ),
                0..400,
            ),
        ) {
            let mut uart = Pl011::new();
            let mut sent = Vec::new();
            let mut out = Vec::new();
            for (offset, value, write) in accesses {
                if write {
                    if offset == UARTDR {
                        sent.push(value as u8);
                    }
                    if let Some(line) = uart.write(offset, value) {
                        proptest::prop_assert!(line.len() <= LINE_MAX);
                        out.extend_from_slice(line);
                    }
                } else {
                    proptest::prop_assert!(uart.read(offset) >> 32 == 0);
                }
            }
            out.extend_from_slice(uart.pending());
            proptest::prop_assert_eq!(out, sent);
        }
    }
}
