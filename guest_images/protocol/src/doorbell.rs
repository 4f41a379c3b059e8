//! The doorbell: a small emulated device through which a guest tells its VMM what it did, and
//! asks it to do something in return. It is one MMIO page the guest registers with
//! `MMIO_GUARD`; every access to it traps to the VMM as a `FAULT_VM_DATA_ABORT`, which the VMM
//! emulates.
//!
//! | offset | access | register |
//! | --- | --- | --- |
//! | 0x00 | write, 64 bit | [`COMMAND`]: a [`Command`] word; the VMM acts before the write completes |
//! | 0x08 | read, 64 bit | [`STATUS`]: the outcome of the last command ([`STATUS_OK`], ...) |
//! | 0x10 | read, 64 bit | [`VALUE`]: a value the last command produced (the word a `Peek` read) |
//!
//! A command word is `payload << 12 | code`: the code in bits 11:0, so a page-aligned IPA is its
//! own payload with the code or'ed in.

use crate::boot::ConversionMode;
use frameshift_abi::addr::{Ipa, PAGE_SIZE};

/// The doorbell page in the guest's IPA space: outside its RAM, where QEMU `virt` has no device a
/// guest could reach anyway.
pub const DOORBELL_IPA: Ipa = Ipa(0x0a00_0000);
/// An MMIO page nobody registers: a protected guest's access to it must reach the VMM as
/// `FAULT_VM_ABORT`, never as an access to emulate (the MMIO guard).
pub const UNREGISTERED_MMIO_IPA: Ipa = Ipa(0x0a00_1000);

/// Write: a command word.
pub const COMMAND: u64 = 0x00;
/// Read: the outcome of the last command.
pub const STATUS: u64 = 0x08;
/// Read: the value the last command produced.
pub const VALUE: u64 = 0x10;

/// `STATUS`: the command was carried out (or a VMM memory call succeeded: its SMCCC status).
pub const STATUS_OK: u64 = 0;
/// `STATUS` after a `Peek`: the VMM's read of the page faulted (it is not the VMM's to read).
pub const STATUS_FAULTED: u64 = 1;
/// `STATUS` after a command word the VMM does not know.
pub const STATUS_UNKNOWN_COMMAND: u64 = u64::MAX;

/// The word a VMM writes at the start of a page before it shares, lends or donates it to the
/// guest, so the guest can check what it got: ASCII "VMMPAGE".
pub const VMM_PAGE_MARK: u64 = u64::from_le_bytes(*b"VMMPAGE\0");

/// Which guest program is talking.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgramKind {
    /// `demo_guest`: the in-place decryption demo (DESIGN.md 8).
    Demo,
    /// `abi_check`: calls every guest function and checks every answer.
    AbiCheck,
    /// `arch_check`: checks what the hypervisor's arch layer gives a vCPU (its own stage 1, the
    /// virtual timer through the VMM, no register shared with another context).
    ArchCheck,
}

impl ProgramKind {
    const fn code(self) -> u64 {
        match self {
            Self::Demo => 1,
            Self::AbiCheck => 2,
            Self::ArchCheck => 3,
        }
    }

    const fn from_code(code: u64) -> Option<Self> {
        match code {
            1 => Some(Self::Demo),
            2 => Some(Self::AbiCheck),
            3 => Some(Self::ArchCheck),
            _ => None,
        }
    }

    /// The program's name.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Demo => "demo_guest",
            Self::AbiCheck => "abi_check",
            Self::ArchCheck => "arch_check",
        }
    }
}

/// A VMM memory call the guest asks for on one of its pages (the host side of DESIGN.md 4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmmMemoryCall {
    /// `PD_MEM_SHARE_WITH_GUEST`, read-write, after writing [`VMM_PAGE_MARK`].
    ShareWithGuest,
    /// `PD_MEM_UNSHARE_FROM_GUEST`.
    UnshareFromGuest,
    /// `PD_MEM_LEND`, read-write, after writing [`VMM_PAGE_MARK`].
    Lend,
    /// `PD_MEM_RECLAIM`.
    Reclaim,
    /// `PD_MEM_DONATE`, after writing [`VMM_PAGE_MARK`].
    Donate,
}

/// One doorbell command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// The guest has booted: which program it is and the mode the hypervisor says it runs in.
    Hello {
        /// The program.
        program: ProgramKind,
        /// Its conversion mode.
        mode: ConversionMode,
    },
    /// Demo step 1: the buffer page is shared, at this IPA (the alias in split mode); the VMM
    /// writes the encrypted message into it.
    BufferShared(Ipa),
    /// Demo step 2: the guest unshared the buffer; the VMM's read of it must fault now.
    BufferUnshared(Ipa),
    /// Demo step 4: the buffer is shared again and holds the plaintext.
    PlaintextReady(Ipa),
    /// The guest's own verdict: how many of its checks failed. Sent once, at the end.
    Result {
        /// Failed checks (0 = all passed).
        failures: u64,
    },
    /// Read the first word of this guest page through the window, under the probe:
    /// `STATUS` = [`STATUS_OK`] and `VALUE` = the word, or [`STATUS_FAULTED`].
    Peek(Ipa),
    /// Make a memory call on this page; `STATUS` = its SMCCC status.
    Memory(VmmMemoryCall, Ipa),
    /// The guest's next access, to this unregistered MMIO page, must arrive as an abort the VMM
    /// may not emulate; it ends the guest's run.
    ExpectGuardAbort(Ipa),
}

const CODE_BITS: u32 = 12;
const CODE_MASK: u64 = (1 << CODE_BITS) - 1;

impl Command {
    /// The command word. IPAs are sent page aligned (their offset is dropped).
    pub const fn encode(self) -> u64 {
        let (code, payload) = match self {
            Self::Hello { program, mode } => (1, program.code() | mode.code() << 4),
            Self::BufferShared(ipa) => (2, ipa.0 / PAGE_SIZE),
            Self::BufferUnshared(ipa) => (3, ipa.0 / PAGE_SIZE),
            Self::PlaintextReady(ipa) => (4, ipa.0 / PAGE_SIZE),
            Self::Result { failures } => (5, failures),
            Self::Peek(ipa) => (6, ipa.0 / PAGE_SIZE),
            Self::Memory(VmmMemoryCall::ShareWithGuest, ipa) => (7, ipa.0 / PAGE_SIZE),
            Self::Memory(VmmMemoryCall::UnshareFromGuest, ipa) => (8, ipa.0 / PAGE_SIZE),
            Self::Memory(VmmMemoryCall::Lend, ipa) => (9, ipa.0 / PAGE_SIZE),
            Self::Memory(VmmMemoryCall::Reclaim, ipa) => (10, ipa.0 / PAGE_SIZE),
            Self::Memory(VmmMemoryCall::Donate, ipa) => (11, ipa.0 / PAGE_SIZE),
            Self::ExpectGuardAbort(ipa) => (12, ipa.0 / PAGE_SIZE),
        };
        payload << CODE_BITS | code
    }

    /// The command a word names, or `None` for a code or payload this protocol does not know
    /// (the word comes from a guest: the VMM answers [`STATUS_UNKNOWN_COMMAND`]).
    pub const fn decode(word: u64) -> Option<Self> {
        let payload = word >> CODE_BITS;
        let ipa = Ipa(payload << CODE_BITS);
        let command = match word & CODE_MASK {
            1 => {
                let (Some(program), Some(mode)) = (
                    ProgramKind::from_code(payload & 0xF),
                    ConversionMode::from_code(payload >> 4),
                ) else {
                    return None;
                };
                Self::Hello { program, mode }
            }
            2 => Self::BufferShared(ipa),
            3 => Self::BufferUnshared(ipa),
            4 => Self::PlaintextReady(ipa),
            5 => Self::Result { failures: payload },
            6 => Self::Peek(ipa),
            7 => Self::Memory(VmmMemoryCall::ShareWithGuest, ipa),
            8 => Self::Memory(VmmMemoryCall::UnshareFromGuest, ipa),
            9 => Self::Memory(VmmMemoryCall::Lend, ipa),
            10 => Self::Memory(VmmMemoryCall::Reclaim, ipa),
            11 => Self::Memory(VmmMemoryCall::Donate, ipa),
            12 => Self::ExpectGuardAbort(ipa),
            _ => return None,
        };
        Some(command)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_command(ipa: Ipa) -> [Command; 17] {
        [
            Command::Hello {
                program: ProgramKind::Demo,
                mode: ConversionMode::History,
            },
            Command::Hello {
                program: ProgramKind::AbiCheck,
                mode: ConversionMode::Split,
            },
            Command::Hello {
                program: ProgramKind::ArchCheck,
                mode: ConversionMode::History,
            },
            Command::BufferShared(ipa),
            Command::BufferUnshared(ipa),
            Command::PlaintextReady(ipa),
            Command::Result { failures: 0 },
            Command::Result { failures: 77 },
            Command::Peek(ipa),
            Command::Memory(VmmMemoryCall::ShareWithGuest, ipa),
            Command::Memory(VmmMemoryCall::UnshareFromGuest, ipa),
            Command::Memory(VmmMemoryCall::Lend, ipa),
            Command::Memory(VmmMemoryCall::Reclaim, ipa),
            Command::Memory(VmmMemoryCall::Donate, ipa),
            Command::ExpectGuardAbort(ipa),
            Command::ExpectGuardAbort(UNREGISTERED_MMIO_IPA),
            Command::BufferShared(ipa.shared_alias()),
        ]
    }

    #[test]
    fn every_command_round_trips_and_codes_are_distinct() {
        let ipa = Ipa(0x4001_3000);
        let commands = every_command(ipa);
        for command in commands {
            assert_eq!(
                Command::decode(command.encode()),
                Some(command),
                "{command:?}"
            );
        }
        let mut codes: std::vec::Vec<u64> = commands
            .iter()
            .map(|command| command.encode() & CODE_MASK)
            .collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), 12);
    }

    #[test]
    fn a_page_aligned_ipa_is_its_own_payload() {
        assert_eq!(
            Command::BufferShared(Ipa(0x4001_3000)).encode(),
            0x4001_3002
        );
        assert_eq!(
            Command::BufferShared(Ipa(0x80_4001_3000)).encode(),
            0x80_4001_3002
        );
        // The offset inside the page is not sent.
        assert_eq!(
            Command::decode(Command::Peek(Ipa(0x4001_3abc)).encode()),
            Some(Command::Peek(Ipa(0x4001_3000)))
        );
    }

    #[test]
    fn unknown_codes_and_payloads_are_refused() {
        for word in [0, 13, 0xFFF, 0x4000_0FFF] {
            assert_eq!(Command::decode(word), None, "{word:#x}");
        }
        // HELLO with an unknown program or mode.
        assert_eq!(Command::decode(4 << 12 | 1), None);
        assert_eq!(Command::decode((1 | 3 << 4) << 12 | 1), None);
        assert_eq!(Command::decode(1 << 12 | 1), None);
    }
}
