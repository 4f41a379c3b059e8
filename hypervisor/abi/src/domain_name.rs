//! The one rule for domain names, shared by the build tool (which refuses a bad `system.xml`) and
//! the hypervisor (which refuses a bad boot image).
//!
//! Every console line is `FS|<domain>|<text>`, and the prefix is the only thing that attributes a
//! line to its domain. Attribution must not depend on a name that an untrusted system file chose,
//! so the mapping from names to prefixes must be injective and must never yield the hypervisor's
//! own prefix:
//! - the hypervisor's name is reserved (in any letter case, so a human reading the console is not
//!   fooled either);
//! - a name is printed byte for byte, so every byte must survive the console unchanged: printable
//!   ASCII other than space and `|` (the prefix separator). Nothing is ever substituted, so two
//!   different names always print two different prefixes;
//! - a name longer than [`MAX_NAME_BYTES`] would be cut (the boot-info field and the PD's
//!   `microkit_name` symbol both keep a terminating NUL), and two names could then print the same
//!   prefix, so it is refused instead.

use core::fmt;

use crate::boot_info::NAME_LEN;

/// Longest name in bytes: the boot-info field and `microkit_name` are [`NAME_LEN`] bytes with a
/// terminating NUL.
pub const MAX_NAME_BYTES: usize = NAME_LEN - 1;

/// The name the hypervisor prints its own console lines under.
pub const HYPERVISOR_NAME: &str = "hypervisor";

/// Why a domain name was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DomainNameError {
    /// The name is empty.
    Empty,
    /// The name is longer than [`MAX_NAME_BYTES`] bytes.
    TooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// The name is the hypervisor's (compared without regard to ASCII case).
    Reserved,
    /// Byte `position` is not printable ASCII, is a space, or is `|`.
    BadByte {
        /// The offending byte.
        byte: u8,
        /// Its position in the name.
        position: usize,
    },
}

impl fmt::Display for DomainNameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("the name is empty"),
            Self::TooLong { len } => write!(
                f,
                "the name is {len} bytes long; at most {MAX_NAME_BYTES} fit in a console prefix"
            ),
            Self::Reserved => write!(
                f,
                "the name '{HYPERVISOR_NAME}' is reserved for the hypervisor's own console lines"
            ),
            Self::BadByte { byte, position } => {
                let shown = char::from(*byte);
                if byte.is_ascii_graphic() || *byte == b' ' {
                    write!(f, "character '{shown}' at position {position}")?;
                } else {
                    write!(f, "byte {byte:#04x} at position {position}")?;
                }
                f.write_str(
                    " cannot appear in a console prefix (allowed: printable ASCII except space and '|')",
                )
            }
        }
    }
}

/// Whether `byte` may appear in a domain name.
pub const fn is_name_byte(byte: u8) -> bool {
    byte.is_ascii_graphic() && byte != b'|'
}

/// Checks a domain name against the rule in the module documentation.
pub fn check(name: &[u8]) -> Result<(), DomainNameError> {
    if name.is_empty() {
        return Err(DomainNameError::Empty);
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(DomainNameError::TooLong { len: name.len() });
    }
    if let Some(position) = name.iter().position(|&byte| !is_name_byte(byte)) {
        return Err(DomainNameError::BadByte {
            byte: name[position],
            position,
        });
    }
    if name.eq_ignore_ascii_case(HYPERVISOR_NAME.as_bytes()) {
        return Err(DomainNameError::Reserved);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;

    #[test]
    fn ordinary_microkit_names_are_accepted() {
        for name in [
            "vmm",
            "echo",
            "guest-1",
            "a.b_c",
            "x",
            "hypervisor2",
            "my_hypervisor",
        ] {
            assert_eq!(check(name.as_bytes()), Ok(()), "{name}");
        }
        assert_eq!(check(&[b'a'; MAX_NAME_BYTES]), Ok(()));
    }

    #[test]
    fn the_hypervisor_name_is_reserved_in_any_case() {
        for name in ["hypervisor", "Hypervisor", "HYPERVISOR"] {
            assert_eq!(
                check(name.as_bytes()),
                Err(DomainNameError::Reserved),
                "{name}"
            );
        }
    }

    #[test]
    fn bytes_that_would_not_survive_the_prefix_are_refused() {
        assert_eq!(
            check(b"a|b"),
            Err(DomainNameError::BadByte {
                byte: b'|',
                position: 1
            })
        );
        assert_eq!(
            check(b"a b"),
            Err(DomainNameError::BadByte {
                byte: b' ',
                position: 1
            })
        );
        assert_eq!(
            check(b"ab\n"),
            Err(DomainNameError::BadByte {
                byte: b'\n',
                position: 2
            })
        );
        assert_eq!(
            check("é".as_bytes()),
            Err(DomainNameError::BadByte {
                byte: 0xc3,
                position: 0
            })
        );
        // Every byte is either accepted as itself or refused: the prefix is injective.
        for byte in 0..=u8::MAX {
            let accepted = check(&[b'a', byte]).is_ok();
            assert_eq!(accepted, (0x21..=0x7e).contains(&byte) && byte != b'|');
        }
    }

    #[test]
    fn empty_and_overlong_names_are_refused() {
        assert_eq!(check(b""), Err(DomainNameError::Empty));
        assert_eq!(
            check(&[b'a'; MAX_NAME_BYTES + 1]),
            Err(DomainNameError::TooLong {
                len: MAX_NAME_BYTES + 1
            })
        );
    }

    #[test]
    fn messages_name_the_problem() {
        let message = |error: DomainNameError| std::string::ToString::to_string(&error);
        assert!(message(DomainNameError::Reserved).contains("reserved for the hypervisor"));
        assert!(message(DomainNameError::BadByte {
            byte: b'|',
            position: 1
        })
        .contains("character '|' at position 1"));
        assert!(message(DomainNameError::BadByte {
            byte: 0,
            position: 3
        })
        .contains("byte 0x00 at position 3"));
    }
}
