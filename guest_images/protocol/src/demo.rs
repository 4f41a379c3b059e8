//! The demo's message (DESIGN.md 8): the VMM writes [`PLAINTEXT`] encrypted with ChaCha20 under
//! [`KEY`] and [`NONCE`] into the page the guest shared; the guest takes the page back, decrypts
//! it in place and shares it again; the VMM then reads [`PLAINTEXT`] at the same physical
//! address. The key is no secret: the demo shows where decryption happens (in a page only the
//! guest can reach), not a key exchange.

use chacha20::cipher::{KeyIvInit, StreamCipher};
use chacha20::ChaCha20;

/// The ChaCha20 key (RFC 8439: 256 bits).
pub const KEY: [u8; 32] = *b"frameshift demo key, not secret!";
/// The ChaCha20 nonce (RFC 8439: 96 bits).
pub const NONCE: [u8; 12] = *b"in-place v1!";
/// The message. It starts at offset 0 of the shared page.
pub const PLAINTEXT: &[u8; PLAINTEXT_LEN] =
    b"Frameshift: this frame was decrypted in place, in private memory, and never copied.";
/// Its length in bytes.
pub const PLAINTEXT_LEN: usize = 83;

/// Encrypts or decrypts `buffer` in place (ChaCha20 is its own inverse), from block 0 of the
/// key stream.
pub fn apply_keystream(buffer: &mut [u8]) {
    let mut cipher = ChaCha20::new(&KEY.into(), &NONCE.into());
    cipher.apply_keystream(buffer);
}

/// The encrypted message the VMM writes.
pub fn ciphertext() -> [u8; PLAINTEXT_LEN] {
    let mut message = *PLAINTEXT;
    apply_keystream(&mut message);
    message
}

/// `bytes` as little-endian `u64` words, the last one zero padded: how the VMM writes a message
/// through its window, one aligned word at a time.
pub fn words(bytes: &[u8]) -> impl Iterator<Item = u64> + '_ {
    bytes.chunks(8).map(|chunk| {
        let mut word = [0u8; 8];
        for (slot, byte) in word.iter_mut().zip(chunk) {
            *slot = *byte;
        }
        u64::from_le_bytes(word)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decrypting_the_ciphertext_gives_the_plaintext() {
        let mut message = ciphertext();
        assert_ne!(&message, PLAINTEXT);
        // Almost every byte changes: a keystream of zeros would pass a weaker check.
        let same = message
            .iter()
            .zip(PLAINTEXT)
            .filter(|(a, b)| a == b)
            .count();
        assert!(same < 5, "{same} bytes unchanged");
        apply_keystream(&mut message);
        assert_eq!(&message, PLAINTEXT);
    }

    #[test]
    fn the_key_stream_is_chacha20_of_rfc_8439() {
        // RFC 8439 section 2.3.2 test vector: key 00..1f, nonce 00 00 00 09 00 00 00 4a 00 00 00
        // 00, block counter 1. Block 1 of the stream starts at byte 64; its first serialised
        // bytes are 10 f1 e7 e4.
        let key: [u8; 32] = core::array::from_fn(|index| index as u8);
        let nonce = [0, 0, 0, 9, 0, 0, 0, 0x4a, 0, 0, 0, 0];
        let mut stream = [0u8; 68];
        ChaCha20::new(&key.into(), &nonce.into()).apply_keystream(&mut stream);
        assert_eq!(stream[64..68], [0x10, 0xf1, 0xe7, 0xe4]);
    }

    #[test]
    fn words_pad_the_last_word() {
        let words: std::vec::Vec<u64> = words(b"ABCDEFGHIJ").collect();
        assert_eq!(
            words,
            [
                u64::from_le_bytes(*b"ABCDEFGH"),
                u64::from_le_bytes(*b"IJ\0\0\0\0\0\0")
            ]
        );
        assert_eq!(PLAINTEXT.len(), PLAINTEXT_LEN);
    }
}
