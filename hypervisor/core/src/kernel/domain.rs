//! A domain as the scheduler sees it: identity, priority, run state, saved registers and the
//! events waiting for it.

use core::fmt;

use super::console::{ConsoleName, LineBuffer};
use super::registers::Registers;

/// Index of a domain in the boot information's domain table (and in the kernel's).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(transparent)]
pub struct DomainIndex(pub u8);

impl DomainIndex {
    /// The index as a `usize`, for table lookups.
    pub const fn get(self) -> usize {
        self.0 as usize
    }

    /// This domain's bit in a per-domain bit set.
    pub const fn bit(self) -> u64 {
        1 << self.0
    }
}

impl fmt::Display for DomainIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Where a domain is in the Microkit event loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunState {
    /// Has work: running `init` or an event handler (or preempted while doing so).
    Ready,
    /// Blocked in `PD_REPLY_RECV`, waiting for its next event.
    Waiting,
    /// Blocked in `PD_PPCALL` until `server` replies. `delivered` says whether the server has
    /// received the call yet; `server_channel` is the channel id at the server's end.
    Calling {
        /// The PD called.
        server: DomainIndex,
        /// Channel id the server sees the call on.
        server_channel: u8,
        /// Whether the server's `protected` handler has been given the call.
        delivered: bool,
    },
    /// Faulted, and its fault went to its parent: blocked until the parent's `fault` handler
    /// ends. A reply restarts it at the faulting instruction (Ready); no reply stops it.
    /// Notifications and calls to it wait meanwhile, as they would for a busy PD.
    Faulted,
    /// Stopped after a fault (or never started: a VM in this version). Never runs again.
    Stopped,
}

/// Whether a domain is a Microkit PD or a VM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DomainKind {
    /// A protection domain.
    ProtectionDomain,
    /// A virtual machine (not started by this version of the kernel).
    VirtualMachine,
}

/// One domain's scheduling and event state.
#[derive(Clone, Debug)]
pub struct Domain {
    /// Name for the console prefix and fault lines.
    pub name: ConsoleName,
    /// PD or VM.
    pub kind: DomainKind,
    /// Microkit priority (0..=254; higher runs first).
    pub priority: u8,
    /// Microkit `passive="true"`: after `init` the PD has no time of its own; it runs only on
    /// the time of whoever gives it an event (docs/ABI.md, "Passive PDs").
    pub passive: bool,
    /// The domain its faults are reported to.
    pub parent: Option<DomainIndex>,
    /// Its Microkit child id at the parent (reported with its faults).
    pub child_id: u64,
    /// Run state.
    pub state: RunState,
    /// Saved registers while the domain is not running on the CPU.
    pub registers: Registers,
    /// Notification channel bits not yet delivered.
    pub pending_notifications: u64,
    /// Children (bit per domain index) whose faults are not yet delivered.
    pub pending_faults: u64,
    /// Callers (bit per domain index) blocked in a call to this PD that it has not yet been
    /// given (`RunState::Calling` with `delivered: false`).
    pub pending_callers: u64,
    /// What is left of this domain's time slice, in counter ticks. Spent only while it runs;
    /// refilled only when it reaches zero or the domain yields (system.rs, "Scheduling").
    pub budget: u64,
    /// The caller whose protected procedure call this PD's current handler is serving.
    pub serving: Option<DomainIndex>,
    /// The child whose fault this PD's current handler is handling.
    pub handling_fault: Option<DomainIndex>,
    /// The fault reported for this domain (kept for its parent's `fault` event).
    pub last_fault: Option<super::fault::FaultReport>,
    /// Faults this domain has taken.
    pub faults: u32,
    /// The domain's partial console line.
    pub line: LineBuffer,
}
