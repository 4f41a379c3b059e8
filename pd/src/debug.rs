//! Debug output: formatted text sent to the console through `PD_DEBUG_WRITE`.
//!
//! The hypervisor takes at most 48 bytes per call (`x2`-`x7`, little endian) and writes the
//! `FS|<pd>|` prefix itself whenever a line starts, so a PD can never forge another domain's
//! prefix. [`DebugWriter`] gathers formatted text into 48-byte chunks so that a typical line costs
//! one or two traps rather than one per `write_str` piece.

use crate::call::{self, CallRegisters};
use frameshift_abi::pd_call::PD_DEBUG_WRITE;

/// Bytes one `PD_DEBUG_WRITE` carries.
pub const CHUNK: usize = 48;

/// A buffering console writer. Text reaches the console when 48 bytes have gathered and when
/// the writer is flushed or dropped.
#[derive(Debug)]
pub struct DebugWriter {
    buffer: [u8; CHUNK],
    length: usize,
}

impl DebugWriter {
    /// An empty writer.
    pub const fn new() -> Self {
        Self {
            buffer: [0; CHUNK],
            length: 0,
        }
    }

    /// Queue `bytes`, sending every full chunk.
    pub fn write_bytes(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let room = CHUNK - self.length;
            let (now, later) = bytes.split_at(room.min(bytes.len()));
            if let Some(slot) = self.buffer.get_mut(self.length..self.length + now.len()) {
                slot.copy_from_slice(now);
            }
            self.length += now.len();
            bytes = later;
            if self.length == CHUNK {
                self.flush();
            }
        }
    }

    /// Send whatever is queued.
    pub fn flush(&mut self) {
        if self.length == 0 {
            return;
        }
        let registers = pack_chunk(self.buffer.get(..self.length).unwrap_or(&[]));
        let mut registers = registers;
        call::hvc(&mut registers);
        // A refused debug write has nowhere to be reported; the text is dropped.
        self.length = 0;
    }
}

impl Default for DebugWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl core::fmt::Write for DebugWriter {
    fn write_str(&mut self, text: &str) -> core::fmt::Result {
        self.write_bytes(text.as_bytes());
        Ok(())
    }
}

impl Drop for DebugWriter {
    fn drop(&mut self) {
        self.flush();
    }
}

/// The `PD_DEBUG_WRITE` call for `bytes` (at most [`CHUNK`]; any excess is dropped).
pub fn pack_chunk(bytes: &[u8]) -> CallRegisters {
    let bytes = bytes.get(..CHUNK.min(bytes.len())).unwrap_or(&[]);
    let mut registers = CallRegisters::new(PD_DEBUG_WRITE);
    registers.0[1] = bytes.len() as u64;
    for (index, word) in bytes.chunks(8).enumerate() {
        let mut little_endian = [0u8; 8];
        if let Some(slot) = little_endian.get_mut(..word.len()) {
            slot.copy_from_slice(word);
        }
        if let Some(register) = registers.0.get_mut(2 + index) {
            *register = u64::from_le_bytes(little_endian);
        }
    }
    registers
}

/// Print formatted text to the console (no newline added).
#[macro_export]
macro_rules! debug_print {
    ($($arg:tt)*) => {{
        let mut writer = $crate::debug::DebugWriter::new();
        let _ = ::core::fmt::Write::write_fmt(&mut writer, ::core::format_args!($($arg)*));
    }};
}

/// Print a formatted line to the console; the hypervisor prefixes it with `FS|<pd>|`.
#[macro_export]
macro_rules! debug_println {
    () => {
        $crate::debug_print!("\n")
    };
    ($($arg:tt)*) => {{
        let mut writer = $crate::debug::DebugWriter::new();
        let _ = ::core::fmt::Write::write_fmt(&mut writer, ::core::format_args!($($arg)*));
        writer.write_bytes(b"\n");
    }};
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::rc::Rc;
    use std::vec::Vec;

    /// Install a fake that reassembles every debug write; returns the chunks it saw.
    fn capture() -> Rc<RefCell<Vec<Vec<u8>>>> {
        let chunks = Rc::new(RefCell::new(Vec::new()));
        let log = chunks.clone();
        call::install_fake(move |registers| {
            assert_eq!(registers.0[0], u64::from(PD_DEBUG_WRITE));
            let length = registers.0[1] as usize;
            assert!(length <= CHUNK);
            let bytes: Vec<u8> = registers.0[2..8]
                .iter()
                .flat_map(|word| word.to_le_bytes())
                .take(length)
                .collect();
            log.borrow_mut().push(bytes);
            registers.0[0] = 0;
        });
        chunks
    }

    #[test]
    fn short_line_is_one_call() {
        let chunks = capture();
        crate::debug_println!("hello from {}", "hello");
        assert_eq!(*chunks.borrow(), [b"hello from hello\n".to_vec()]);
    }

    #[test]
    fn long_line_is_split_into_48_byte_chunks_in_order() {
        let chunks = capture();
        let text: std::string::String = (0..100)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        crate::debug_println!("{text}");
        let chunks = chunks.borrow();
        let lengths: Vec<usize> = chunks.iter().map(Vec::len).collect();
        assert_eq!(lengths, [48, 48, 5]);
        let joined: Vec<u8> = chunks.concat();
        assert_eq!(joined, [text.as_bytes(), b"\n"].concat());
    }

    #[test]
    fn nothing_queued_means_no_call() {
        let chunks = capture();
        DebugWriter::new().flush();
        crate::debug_print!("");
        assert!(chunks.borrow().is_empty());
    }

    #[test]
    fn pack_chunk_is_little_endian_and_clamps() {
        let registers = pack_chunk(b"ABCDEFGHI");
        assert_eq!(registers.0[1], 9);
        assert_eq!(registers.0[2], u64::from_le_bytes(*b"ABCDEFGH"));
        assert_eq!(registers.0[3], u64::from(b'I'));
        assert_eq!(pack_chunk(&[b'x'; 60]).0[1], 48);
    }
}
