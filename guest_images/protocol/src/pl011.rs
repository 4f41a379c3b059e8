//! The PL011 UART subset a guest's console uses and the VMM emulates (Arm PL011 TRM, DDI 0183):
//! a write of `UARTDR` sends its low byte, a read of `UARTFR` says whether the transmit FIFO is
//! full. Everything else reads as zero and ignores writes. The IPA is QEMU `virt`'s own UART, so
//! the same guest prints on a machine without the hypervisor.

use frameshift_abi::addr::Ipa;

/// The UART page in the guest's IPA space (QEMU `virt`'s PL011).
pub const UART_IPA: Ipa = Ipa(0x0900_0000);
/// Data register: a write transmits its low 8 bits.
pub const UARTDR: u64 = 0x000;
/// Flag register.
pub const UARTFR: u64 = 0x018;
/// `UARTFR.TXFF`: the transmit FIFO is full; the guest waits while it is set.
pub const UARTFR_TXFF: u32 = 1 << 5;
