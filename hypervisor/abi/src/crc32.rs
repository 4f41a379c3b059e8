//! CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB8_8320), the checksum of the boot information.
//!
//! Hand-written on purpose: none of the approved crates computes a CRC-32 in `no_std` without
//! pulling in extra dependencies, and a 256-entry table built at compile time is a few lines.
//! The result equals zlib's `crc32`, so host tools can cross-check a blob with standard tools.

/// The reflected IEEE 802.3 polynomial.
const POLYNOMIAL: u32 = 0xEDB8_8320;

/// One entry per byte value: the CRC of that byte alone, without pre- or post-inversion.
const TABLE: [u32; 256] = build_table();

const fn build_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut byte = 0;
    while byte < 256 {
        let mut crc = byte as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ POLYNOMIAL
            } else {
                crc >> 1
            };
            bit += 1;
        }
        table[byte] = crc;
        byte += 1;
    }
    table
}

/// An incremental CRC-32: feed it pieces with [`Crc32::update`], read the result with
/// [`Crc32::finish`]. Feeding the pieces of a buffer gives the CRC of the whole buffer.
#[derive(Clone, Copy, Debug)]
pub struct Crc32 {
    state: u32,
}

impl Default for Crc32 {
    fn default() -> Self {
        Self::new()
    }
}

impl Crc32 {
    /// A CRC over no bytes yet.
    pub const fn new() -> Self {
        Self { state: !0 }
    }

    /// Adds `bytes` to the checksum.
    pub fn update(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            let index = usize::from((self.state as u8) ^ byte);
            self.state = (self.state >> 8) ^ TABLE[index];
        }
    }

    /// The CRC-32 of every byte fed so far.
    pub const fn finish(&self) -> u32 {
        !self.state
    }
}

/// The CRC-32 of `bytes`.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = Crc32::new();
    crc.update(bytes);
    crc.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_standard_check_value() {
        // The "check" value every CRC-32/ISO-HDLC implementation publishes.
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn pieces_give_the_same_result_as_the_whole() {
        let data = b"The quick brown fox jumps over the lazy dog";
        assert_eq!(crc32(data), 0x414F_A339);
        let mut crc = Crc32::new();
        crc.update(&data[..10]);
        crc.update(&data[10..]);
        assert_eq!(crc.finish(), crc32(data));
    }
}
