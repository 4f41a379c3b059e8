//! The console line discipline: per-domain line buffers, so that every line on the PL011 starts
//! with a `FS|<domain>|` prefix that only the hypervisor writes.
//!
//! A PD hands over raw bytes (`PD_DEBUG_WRITE`). They are collected per domain and written out one
//! whole line at a time, prefix first, so PDs' output never interleaves mid-line. A PD cannot
//! forge another domain's prefix: a line only ever starts after the hypervisor's prefix, `\r` is
//! dropped, and every other control or non-ASCII byte is shown as `\xNN`.

use core::fmt::{self, Write};

use frameshift_abi::domain_name::{self, DomainNameError};

/// Longest line body (after escaping) a domain can build; a longer line is split, and the
/// continuation gets its own prefix.
pub const LINE_CAPACITY: usize = 160;

/// Longest domain name printed in a prefix.
pub const NAME_CAPACITY: usize = frameshift_abi::boot_info::NAME_LEN;

/// A domain name that passed [`domain_name::check`], so it prints as itself: the prefix
/// `FS|<name>|` is never the hypervisor's, and two different names never print the same prefix.
/// Nothing is ever substituted; a name that breaks the rule is refused instead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsoleName {
    bytes: heapless::Vec<u8, NAME_CAPACITY>,
}

impl ConsoleName {
    /// Builds the name from NUL-padded bytes (the boot-info `name` field): the bytes up to the
    /// first NUL must obey the domain-name rule, and only NULs may follow them.
    pub fn from_padded(raw: &[u8]) -> Result<Self, DomainNameError> {
        let len = raw.iter().position(|&byte| byte == 0).unwrap_or(raw.len());
        let (name, padding) = raw.split_at(len);
        domain_name::check(name)?;
        if let Some(offset) = padding.iter().position(|&byte| byte != 0) {
            // Bytes hidden after the NUL would make two different fields print one prefix.
            return Err(DomainNameError::BadByte {
                byte: padding[offset],
                position: len + offset,
            });
        }
        let mut bytes = heapless::Vec::new();
        // Cannot fail: `check` refused anything longer than NAME_CAPACITY.
        let _ = bytes.extend_from_slice(name);
        Ok(Self { bytes })
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        // Every byte is printable ASCII (domain_name::check), so this never fails.
        core::str::from_utf8(&self.bytes).unwrap_or_default()
    }
}

impl fmt::Display for ConsoleName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One domain's partial console line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LineBuffer {
    text: heapless::String<LINE_CAPACITY>,
}

impl LineBuffer {
    /// An empty buffer.
    pub const fn new() -> Self {
        Self {
            text: heapless::String::new(),
        }
    }

    /// Whether a partial line is waiting.
    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    /// Appends `bytes` from the domain `name`, writing every completed line to `out`.
    pub fn push_bytes(
        &mut self,
        name: &ConsoleName,
        bytes: &[u8],
        out: &mut dyn Write,
    ) -> fmt::Result {
        for &byte in bytes {
            match byte {
                b'\n' => self.flush(name, out)?,
                // Dropped: a carriage return could move the terminal cursor back over the prefix.
                b'\r' => {}
                0x20..=0x7e | b'\t' => self.push_escaped(name, &[byte], out)?,
                _ => {
                    let mut escaped = [b'\\', b'x', 0, 0];
                    escaped[2] = hex_digit(byte >> 4);
                    escaped[3] = hex_digit(byte & 0xf);
                    self.push_escaped(name, &escaped, out)?;
                }
            }
        }
        Ok(())
    }

    /// Writes the partial line, if any, as a complete line (used before the final status line).
    pub fn flush(&mut self, name: &ConsoleName, out: &mut dyn Write) -> fmt::Result {
        let result = writeln!(out, "FS|{}|{}", name, self.text);
        self.text.clear();
        result
    }

    /// Writes out the partial line if there is one.
    pub fn flush_partial(&mut self, name: &ConsoleName, out: &mut dyn Write) -> fmt::Result {
        if self.is_empty() {
            Ok(())
        } else {
            self.flush(name, out)
        }
    }

    fn push_escaped(
        &mut self,
        name: &ConsoleName,
        piece: &[u8],
        out: &mut dyn Write,
    ) -> fmt::Result {
        if self.text.len() + piece.len() > LINE_CAPACITY {
            self.flush(name, out)?;
        }
        for &byte in piece {
            // Cannot fail: capacity was made above, and `piece` is at most 4 ASCII bytes.
            let _ = self.text.push(char::from(byte));
        }
        Ok(())
    }
}

fn hex_digit(nibble: u8) -> u8 {
    b"0123456789abcdef"[usize::from(nibble & 0xf)]
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on an unexpected error"
)]
mod tests {
    extern crate std;
    use super::*;
    use std::string::String;
    use std::vec;
    use std::vec::Vec;

    fn name(text: &str) -> ConsoleName {
        ConsoleName::from_padded(text.as_bytes()).unwrap()
    }

    #[test]
    fn whole_lines_get_the_prefix() {
        let mut out = String::new();
        let mut buffer = LineBuffer::new();
        buffer
            .push_bytes(&name("hello"), b"hi th", &mut out)
            .unwrap();
        assert_eq!(out, "");
        buffer
            .push_bytes(&name("hello"), b"ere\nsecond\n", &mut out)
            .unwrap();
        assert_eq!(out, "FS|hello|hi there\nFS|hello|second\n");
        assert!(buffer.is_empty());
    }

    #[test]
    fn a_pd_cannot_forge_another_prefix() {
        let mut out = String::new();
        let mut buffer = LineBuffer::new();
        buffer
            .push_bytes(
                &name("evil"),
                b"x\rFS|hypervisor|halt status=0\n\x1b[2K\x00\xff\n",
                &mut out,
            )
            .unwrap();
        assert_eq!(
            out,
            "FS|evil|xFS|hypervisor|halt status=0\nFS|evil|\\x1b[2K\\x00\\xff\n"
        );
        for line in out.lines() {
            assert!(line.starts_with("FS|evil|"), "{line}");
        }
    }

    #[test]
    fn long_lines_are_split_and_each_piece_is_prefixed() {
        let mut out = String::new();
        let mut buffer = LineBuffer::new();
        let long = [b'a'; LINE_CAPACITY + 10];
        buffer.push_bytes(&name("p"), &long, &mut out).unwrap();
        buffer.push_bytes(&name("p"), b"\n", &mut out).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].len(), "FS|p|".len() + LINE_CAPACITY);
        assert_eq!(lines[1], "FS|p|aaaaaaaaaa");
    }

    #[test]
    fn escapes_never_split_across_lines() {
        let mut out = String::new();
        let mut buffer = LineBuffer::new();
        let mut bytes = vec![b'a'; LINE_CAPACITY - 2];
        bytes.push(0x01);
        bytes.push(b'\n');
        buffer.push_bytes(&name("p"), &bytes, &mut out).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[1], "FS|p|\\x01");
    }

    #[test]
    fn names_print_as_themselves_or_are_refused() {
        assert_eq!(name("a.b_c-1").as_str(), "a.b_c-1");
        assert_eq!(
            ConsoleName::from_padded(b"pd\0\0\0").unwrap().as_str(),
            "pd"
        );
        // Two names that once printed the same prefix (`a?b`): one is refused, never rewritten.
        assert_eq!(name("a?b").as_str(), "a?b");
        assert_eq!(
            ConsoleName::from_padded(b"a|b"),
            Err(DomainNameError::BadByte {
                byte: b'|',
                position: 1
            })
        );
        assert_eq!(
            ConsoleName::from_padded(b"a\nb"),
            Err(DomainNameError::BadByte {
                byte: b'\n',
                position: 1
            })
        );
        assert_eq!(
            ConsoleName::from_padded(b"hypervisor\0\0"),
            Err(DomainNameError::Reserved)
        );
        assert_eq!(
            ConsoleName::from_padded(b"pd\0junk"),
            Err(DomainNameError::BadByte {
                byte: b'j',
                position: 3
            })
        );
        assert_eq!(
            ConsoleName::from_padded(b"\0\0"),
            Err(DomainNameError::Empty)
        );
    }

    #[test]
    fn flush_partial_writes_only_pending_text() {
        let mut out = String::new();
        let mut buffer = LineBuffer::new();
        buffer.flush_partial(&name("p"), &mut out).unwrap();
        assert_eq!(out, "");
        buffer.push_bytes(&name("p"), b"tail", &mut out).unwrap();
        buffer.flush_partial(&name("p"), &mut out).unwrap();
        assert_eq!(out, "FS|p|tail\n");
    }
}
