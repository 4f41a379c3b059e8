//! One run of a guest, from its start to its power-off, as the VMM checks it.
//!
//! A run passes when the guest said who it is (`Hello`), reported its own verdict with no failed
//! check (`Result`), and, for the demo guest, every step the VMM can see held:
//!
//! | step | the VMM checks |
//! | --- | --- |
//! | 1 `BufferShared(ipa)` | the IPA is in the half its mode says (the alias in split mode), and the VMM holds the page (a derived capability); it records the frame |
//! | 2 `BufferUnshared` | its read of the page faults |
//! | 4 `PlaintextReady` | the page holds the plaintext, at the same frame as in step 1 |
//!
//! A guest that expects the MMIO guard to stop it (`ExpectGuardAbort`) must be stopped so.

use frameshift_abi::addr::{Ipa, PhysAddr};
use frameshift_vm_protocol::boot::ConversionMode;
use frameshift_vm_protocol::doorbell::ProgramKind;

/// What went wrong in a run (the first thing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Problem {
    /// The guest never said hello.
    NoHello,
    /// The guest never reported its verdict.
    NoVerdict,
    /// The guest reported failed checks.
    GuestFailed(u64),
    /// The demo's buffer was named in the wrong half for the guest's mode.
    WrongHalf(Ipa),
    /// The VMM does not hold the page the guest says it shared.
    NotShared(Ipa),
    /// The VMM could read the buffer after the guest unshared it.
    ReadAfterUnshare,
    /// The plaintext was wrong (or could not be read).
    WrongPlaintext,
    /// The buffer's frame changed between step 1 and step 4.
    FrameMoved {
        /// Before.
        before: PhysAddr,
        /// After.
        after: PhysAddr,
    },
    /// A demo step never happened.
    StepMissing(&'static str),
    /// The guest expected the MMIO guard to stop it, and it was not stopped so.
    NoGuardAbort,
}

impl core::fmt::Display for Problem {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NoHello => write!(f, "the guest never said hello"),
            Self::NoVerdict => write!(f, "the guest never reported its verdict"),
            Self::GuestFailed(count) => write!(f, "the guest reports {count} failed checks"),
            Self::WrongHalf(ipa) => write!(f, "buffer {ipa} is in the wrong half for the mode"),
            Self::NotShared(ipa) => write!(f, "the VMM holds no shared page at {ipa}"),
            Self::ReadAfterUnshare => write!(f, "the VMM read the buffer after MEM_UNSHARE"),
            Self::WrongPlaintext => write!(f, "the plaintext is wrong"),
            Self::FrameMoved { before, after } => {
                write!(f, "the buffer moved from frame {before} to {after}")
            }
            Self::StepMissing(step) => write!(f, "demo step '{step}' never happened"),
            Self::NoGuardAbort => write!(f, "the unregistered MMIO access was not stopped"),
        }
    }
}

/// The checks of one run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunChecks {
    /// Who the guest says it is, and its mode.
    pub hello: Option<(ProgramKind, ConversionMode)>,
    /// The guest's own verdict: failed checks.
    pub guest_failures: Option<u64>,
    /// Demo step 1: the buffer's frame.
    pub frame_before: Option<PhysAddr>,
    /// Demo step 2: the VMM's read after the unshare faulted.
    pub read_faulted: Option<bool>,
    /// Demo step 4: the plaintext was right.
    pub plaintext_right: Option<bool>,
    /// Demo step 4: the buffer's frame.
    pub frame_after: Option<PhysAddr>,
    /// The MMIO-guard abort the guest announced.
    pub expected_guard_abort: Option<Ipa>,
    /// It came.
    pub guard_abort_seen: bool,
    /// The first problem recorded as it happened.
    pub problem: Option<Problem>,
}

impl RunChecks {
    /// Record `problem` unless an earlier one is recorded.
    pub fn fail(&mut self, problem: Problem) {
        self.problem.get_or_insert(problem);
    }

    /// Step 1's buffer IPA must be in the half the guest's mode shares in.
    pub fn check_buffer_half(&mut self, ipa: Ipa) -> bool {
        let wanted_alias = matches!(self.hello, Some((_, ConversionMode::Split)));
        let right = ipa.is_shared_alias() == wanted_alias;
        if !right {
            self.fail(Problem::WrongHalf(ipa));
        }
        right
    }

    /// Whether the guest's announced guard abort is at `ipa` (then it ends the run as expected).
    pub fn is_expected_guard_abort(&self, ipa: Ipa) -> bool {
        self.expected_guard_abort
            .is_some_and(|expected| expected.page_base() == ipa.page_base())
    }

    /// The run's verdict.
    pub fn verdict(&self) -> Result<(), Problem> {
        if let Some(problem) = self.problem {
            return Err(problem);
        }
        let Some((program, _)) = self.hello else {
            return Err(Problem::NoHello);
        };
        match self.guest_failures {
            None => return Err(Problem::NoVerdict),
            Some(0) => {}
            Some(failed) => return Err(Problem::GuestFailed(failed)),
        }
        if self.expected_guard_abort.is_some() && !self.guard_abort_seen {
            return Err(Problem::NoGuardAbort);
        }
        if program == ProgramKind::Demo {
            let Some(before) = self.frame_before else {
                return Err(Problem::StepMissing("buffer shared"));
            };
            match self.read_faulted {
                None => return Err(Problem::StepMissing("buffer unshared")),
                Some(false) => return Err(Problem::ReadAfterUnshare),
                Some(true) => {}
            }
            match (self.plaintext_right, self.frame_after) {
                (Some(true), Some(after)) if after == before => {}
                (Some(true), Some(after)) => return Err(Problem::FrameMoved { before, after }),
                (Some(false), _) => return Err(Problem::WrongPlaintext),
                _ => return Err(Problem::StepMissing("plaintext ready")),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demo(mode: ConversionMode) -> RunChecks {
        RunChecks {
            hello: Some((ProgramKind::Demo, mode)),
            guest_failures: Some(0),
            frame_before: Some(PhysAddr(0x4234_5000)),
            read_faulted: Some(true),
            plaintext_right: Some(true),
            frame_after: Some(PhysAddr(0x4234_5000)),
            ..RunChecks::default()
        }
    }

    #[test]
    fn a_complete_demo_passes_and_each_missing_piece_fails_it() {
        assert_eq!(demo(ConversionMode::History).verdict(), Ok(()));
        let cases = [
            (
                RunChecks {
                    hello: None,
                    ..demo(ConversionMode::Split)
                },
                Problem::NoHello,
            ),
            (
                RunChecks {
                    guest_failures: None,
                    ..demo(ConversionMode::Split)
                },
                Problem::NoVerdict,
            ),
            (
                RunChecks {
                    guest_failures: Some(2),
                    ..demo(ConversionMode::Split)
                },
                Problem::GuestFailed(2),
            ),
            (
                RunChecks {
                    frame_before: None,
                    ..demo(ConversionMode::Split)
                },
                Problem::StepMissing("buffer shared"),
            ),
            (
                RunChecks {
                    read_faulted: Some(false),
                    ..demo(ConversionMode::Split)
                },
                Problem::ReadAfterUnshare,
            ),
            (
                RunChecks {
                    read_faulted: None,
                    ..demo(ConversionMode::Split)
                },
                Problem::StepMissing("buffer unshared"),
            ),
            (
                RunChecks {
                    plaintext_right: Some(false),
                    ..demo(ConversionMode::Split)
                },
                Problem::WrongPlaintext,
            ),
            (
                RunChecks {
                    frame_after: Some(PhysAddr(0x4300_0000)),
                    ..demo(ConversionMode::Split)
                },
                Problem::FrameMoved {
                    before: PhysAddr(0x4234_5000),
                    after: PhysAddr(0x4300_0000),
                },
            ),
            (
                RunChecks {
                    expected_guard_abort: Some(Ipa(0x0a00_1000)),
                    ..demo(ConversionMode::Split)
                },
                Problem::NoGuardAbort,
            ),
        ];
        for (checks, problem) in cases {
            assert_eq!(checks.verdict(), Err(problem), "{checks:?}");
        }
    }

    #[test]
    fn the_abi_checker_needs_only_its_verdict_and_announced_abort() {
        let mut checks = RunChecks {
            hello: Some((ProgramKind::AbiCheck, ConversionMode::History)),
            guest_failures: Some(0),
            expected_guard_abort: Some(Ipa(0x0a00_1000)),
            ..RunChecks::default()
        };
        assert_eq!(checks.verdict(), Err(Problem::NoGuardAbort));
        assert!(checks.is_expected_guard_abort(Ipa(0x0a00_1008)));
        assert!(!checks.is_expected_guard_abort(Ipa(0x0a00_0000)));
        checks.guard_abort_seen = true;
        assert_eq!(checks.verdict(), Ok(()));
    }

    #[test]
    fn the_buffer_must_be_in_its_modes_half_and_the_first_problem_sticks() {
        let mut split = demo(ConversionMode::Split);
        assert!(split.check_buffer_half(Ipa(0x80_4001_0000)));
        assert!(!split.check_buffer_half(Ipa(0x4001_0000)));
        split.fail(Problem::WrongPlaintext);
        assert_eq!(split.verdict(), Err(Problem::WrongHalf(Ipa(0x4001_0000))));
        let mut history = demo(ConversionMode::History);
        assert!(history.check_buffer_half(Ipa(0x4001_0000)));
        assert!(!history.check_buffer_half(Ipa(0x80_4001_0000)));
    }
}
