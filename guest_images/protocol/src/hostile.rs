//! What the hostile guest and the hostile VMM agree on (issue 10): the runs the VMM plays, the
//! doorbell commands of the hostile guest, and the parameter block `cargo xtask soak` writes.
//!
//! The VMM runs the guest once per task, with a teardown and a restart from the clean image in
//! between. At the start of each run the guest asks which task it has ([`Ask::Task`]); the VMM
//! answers from its plan:
//!
//! | task | the guest | the VMM |
//! | --- | --- | --- |
//! | `Soak` | N seeded random hypercalls, its secret checked between calls | answers forwarded calls |
//! | `VmmAttacks` | keeps a secret page private | reads and writes it, misuses its calls on it |
//! | `Toctou` | vCPU 1 starts the VMM's writer, vCPU 0 unshares the buffer under it | writes the buffer in a loop |
//! | `Cycle` | fills its pages with a fresh secret, shares one page | tears down, checks zeroes and counts |
//! | `Hlt` | semihosting `HLT #0xF000` (SYS_EXIT) | sees the guest's own exception, not an exit |
//! | `Mmio` | reads MMIO it never registered | gets an abort it may not emulate |
//! | `Spin` | spins with interrupts masked | still runs (the timer preempts the guest) |
//!
//! The doorbell is the demo's page ([`crate::doorbell::DOORBELL_IPA`], same registers), with the
//! command words below.

use frameshift_abi::addr::{Ipa, PAGE_SIZE};

/// `hostile_params.bin`: little-endian words `[PARAMS_MAGIC, calls, seed, cycles, plan]`.
pub const PARAMS_MAGIC: u64 = u64::from_le_bytes(*b"HOSTILE1");
/// Bytes of the parameter block.
pub const PARAMS_BYTES: usize = 5 * 8;

/// What the hostile VMM runs, as `cargo xtask soak` or the test asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Params {
    /// Hypercalls of the soak run.
    pub calls: u64,
    /// The PRNG seed of the soak run.
    pub seed: u64,
    /// Teardown/restart cycles.
    pub cycles: u64,
    /// Which parts run ([`PLAN_SOAK`] ...).
    pub plan: u64,
}

/// Plan bit: the soak run.
pub const PLAN_SOAK: u64 = 1 << 0;
/// Plan bit: the hostile VMM's attacks, the ToCToU run and the terminal runs (HLT, MMIO, spin).
pub const PLAN_ATTACKS: u64 = 1 << 1;
/// Plan bit: the teardown/restart cycles.
pub const PLAN_CYCLES: u64 = 1 << 2;
/// Every part.
pub const PLAN_ALL: u64 = PLAN_SOAK | PLAN_ATTACKS | PLAN_CYCLES;

impl Params {
    /// The block's bytes.
    pub fn encode(&self) -> [u8; PARAMS_BYTES] {
        let mut bytes = [0u8; PARAMS_BYTES];
        let words = [PARAMS_MAGIC, self.calls, self.seed, self.cycles, self.plan];
        for (chunk, word) in bytes.chunks_exact_mut(8).zip(words) {
            chunk.copy_from_slice(&word.to_le_bytes());
        }
        bytes
    }

    /// Decodes the block's words; `None` without the magic.
    pub fn decode(words: [u64; 5]) -> Option<Self> {
        (words[0] == PARAMS_MAGIC).then_some(Self {
            calls: words[1],
            seed: words[2],
            cycles: words[3],
            plan: words[4],
        })
    }
}

/// A run's task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Task {
    /// Random hypercalls.
    Soak,
    /// The VMM attacks the guest's private page.
    VmmAttacks,
    /// The VMM writes a buffer while the guest unshares it.
    Toctou,
    /// One teardown/restart cycle.
    Cycle,
    /// Semihosting SYS_EXIT from EL1.
    Hlt,
    /// An access to unregistered MMIO.
    Mmio,
    /// A spin with interrupts masked.
    Spin,
}

impl Task {
    /// Every task, in code order.
    pub const ALL: [Self; 7] = [
        Self::Soak,
        Self::VmmAttacks,
        Self::Toctou,
        Self::Cycle,
        Self::Hlt,
        Self::Mmio,
        Self::Spin,
    ];

    /// Its code on the doorbell.
    pub const fn code(self) -> u64 {
        match self {
            Self::Soak => 1,
            Self::VmmAttacks => 2,
            Self::Toctou => 3,
            Self::Cycle => 4,
            Self::Hlt => 5,
            Self::Mmio => 6,
            Self::Spin => 7,
        }
    }

    /// The task of a code.
    pub fn from_code(code: u64) -> Option<Self> {
        Self::ALL.into_iter().find(|task| task.code() == code)
    }

    /// Its name in console lines.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Soak => "soak",
            Self::VmmAttacks => "vmm-attacks",
            Self::Toctou => "toctou",
            Self::Cycle => "cycle",
            Self::Hlt => "hlt",
            Self::Mmio => "mmio",
            Self::Spin => "spin",
        }
    }
}

/// What [`HostileCommand::Ask`] asks for; the answer is in `VALUE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ask {
    /// The run's [`Task`] code.
    Task = 0,
    /// The soak's call count.
    Calls = 1,
    /// The soak's seed.
    Seed = 2,
    /// The run's number (from 1).
    Run = 3,
    /// The VMM runs `PD_AUDIT`: `VALUE` = audits run since boot, `STATUS` = violations.
    Audit = 4,
}

/// A doorbell command of the hostile guest: `payload << 12 | code`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostileCommand {
    /// Asks the VMM a question.
    Ask(Ask),
    /// The guest's page `ipa` now holds its secret and is private: attack it. `VALUE` = faults
    /// the VMM took, `STATUS` = refusals that did not come with the expected code (0 = all as
    /// expected).
    AttackPrivate(Ipa),
    /// The guest shared page `ipa` (its shared view): the VMM writes [`SHARED_MARK`] into it.
    Shared(Ipa),
    /// From vCPU 1: the VMM writes page `ipa` in a loop until its writes have faulted
    /// [`TOCTOU_FAULTS`] times. `VALUE` = writes that landed, `STATUS` = writes that landed
    /// after the first fault (must be 0).
    ToctouWrite(Ipa),
    /// The guest's figures for the run are on the console; the VMM checks its own.
    Done,
    /// The guest is about to spin with interrupts masked: the VMM sets the attacker PD going.
    Spinning,
}

/// What the VMM writes into a page the guest shares with it.
pub const SHARED_MARK: u64 = u64::from_le_bytes(*b"VMMWROTE");
/// The faulting writes the ToCToU writer makes after the guest's unshare.
pub const TOCTOU_FAULTS: u64 = 64;
/// The IPA of an MMIO page the hostile guest never registers.
pub const UNREGISTERED_MMIO: Ipa = Ipa(0x0a00_3000);

const CODE_BITS: u32 = 12;
const CODE_MASK: u64 = (1 << CODE_BITS) - 1;

impl HostileCommand {
    /// The command word.
    pub const fn encode(self) -> u64 {
        let (code, payload) = match self {
            Self::Ask(what) => (0x101, what as u64),
            Self::AttackPrivate(ipa) => (0x102, ipa.0 / PAGE_SIZE),
            Self::Shared(ipa) => (0x103, ipa.0 / PAGE_SIZE),
            Self::ToctouWrite(ipa) => (0x104, ipa.0 / PAGE_SIZE),
            Self::Done => (0x105, 0),
            Self::Spinning => (0x106, 0),
        };
        payload << CODE_BITS | code
    }

    /// The command of a word (`None`: not one of these).
    pub const fn decode(word: u64) -> Option<Self> {
        let payload = word >> CODE_BITS;
        let ipa = Ipa(payload << CODE_BITS);
        Some(match word & CODE_MASK {
            0x101 => Self::Ask(match payload {
                0 => Ask::Task,
                1 => Ask::Calls,
                2 => Ask::Seed,
                3 => Ask::Run,
                4 => Ask::Audit,
                _ => return None,
            }),
            0x102 => Self::AttackPrivate(ipa),
            0x103 => Self::Shared(ipa),
            0x104 => Self::ToctouWrite(ipa),
            0x105 => Self::Done,
            0x106 => Self::Spinning,
            _ => return None,
        })
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on an unexpected error"
)]
mod tests {
    use super::*;

    #[test]
    fn commands_round_trip_and_miss_the_demo_codes() {
        let ipa = Ipa(0x80_4001_3000);
        let commands = [
            HostileCommand::Ask(Ask::Task),
            HostileCommand::Ask(Ask::Calls),
            HostileCommand::Ask(Ask::Seed),
            HostileCommand::Ask(Ask::Run),
            HostileCommand::Ask(Ask::Audit),
            HostileCommand::AttackPrivate(ipa),
            HostileCommand::Shared(ipa),
            HostileCommand::ToctouWrite(ipa),
            HostileCommand::Done,
            HostileCommand::Spinning,
        ];
        for command in commands {
            assert_eq!(HostileCommand::decode(command.encode()), Some(command));
            assert_eq!(crate::doorbell::Command::decode(command.encode()), None);
        }
        assert_eq!(HostileCommand::decode(0x101 | 9 << 12), None);
        assert_eq!(HostileCommand::decode(0x107), None);
    }

    #[test]
    fn params_round_trip_and_need_the_magic() {
        let params = Params {
            calls: 1_000_000,
            seed: 0xdead_beef,
            cycles: 100,
            plan: PLAN_ALL,
        };
        let bytes = params.encode();
        let words: [u64; 5] = core::array::from_fn(|i| {
            u64::from_le_bytes(bytes[i * 8..i * 8 + 8].try_into().unwrap())
        });
        assert_eq!(Params::decode(words), Some(params));
        assert_eq!(Params::decode([0, 1, 2, 3, 4]), None);
    }

    #[test]
    fn task_codes_round_trip() {
        for task in Task::ALL {
            assert_eq!(Task::from_code(task.code()), Some(task));
        }
        assert_eq!(Task::from_code(0), None);
    }
}
