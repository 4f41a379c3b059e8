//! A context: one thread of execution of a domain (a PD's only one, or one vCPU of a VM), as
//! the scheduler sees it.

use core::fmt;

use super::{DomainId, Registers};
use crate::kernel::fault::FaultReport;

/// A context: the domain and the context's index in it (0 for a PD; the vCPU index for a VM).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ContextId {
    /// Its domain.
    pub domain: DomainId,
    /// Its index among the domain's contexts.
    pub index: u8,
}

impl ContextId {
    /// A PD's (only) context.
    pub const fn pd(domain: DomainId) -> Self {
        Self { domain, index: 0 }
    }
}

impl fmt::Display for ContextId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.domain, self.index)
    }
}

/// Where a context is in the Microkit event loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RunState {
    /// Has work: running `init` or an event handler (or preempted while doing so).
    Ready,
    /// Blocked in `PD_REPLY_RECV`, waiting for its next event.
    Waiting,
    /// Blocked in `PD_PPCALL` until `server` replies. `delivered` says whether the server has
    /// received the call yet; `server_channel` is the channel id at the server's end.
    Calling {
        /// The PD called.
        server: DomainId,
        /// Channel id the server sees the call on.
        server_channel: u8,
        /// Whether the server's `protected` handler has been given the call.
        delivered: bool,
    },
    /// Faulted, and its fault went to its parent: blocked until the parent's `fault` handler
    /// ends. A reply restarts it at the faulting instruction (Ready); no reply stops it.
    /// Notifications and calls to it wait meanwhile, as they would for a busy PD.
    Faulted,
    /// Stopped after a fault (or never started: a VM's vCPU in this version). Never runs again.
    Stopped,
}

/// One context. `C` is the arch's own per-context state (EL1 system registers, FP/SIMD, GIC
/// virtual interface on AArch64), which only the arch layer reads and writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Context<C> {
    /// Saved general registers while the context is not running on the CPU.
    pub registers: Registers,
    /// Run state.
    pub state: RunState,
    /// Its Microkit child id at its domain's parent (a child PD's `id`, a vCPU's `<vcpu id>`),
    /// the id its faults are reported with.
    pub child_id: Option<u8>,
    /// What is left of its time slice, in counter ticks. Spent only while it runs; refilled only
    /// when it reaches zero or the context yields (kernel/schedule.rs).
    pub budget: u64,
    /// Ticks it ran beyond its budget before the kernel could stop it (a late timer, an exit
    /// that came after the budget ran out): paid out of its next budget, so time it was not
    /// given is never free (kernel/schedule.rs).
    pub overrun: u64,
    /// The fault reported for this context (kept for its parent's `fault` event).
    pub last_fault: Option<FaultReport>,
    /// Faults this context has taken.
    pub faults: u32,
    /// The arch's per-context state.
    pub arch: C,
}

impl<C> Context<C> {
    /// Gives the context a new budget: a full `slice` less what it overran the last one by (at
    /// least one tick, so it still runs).
    pub fn refill(&mut self, slice: u64) {
        self.budget = slice.saturating_sub(self.overrun).max(1);
        self.overrun = 0;
    }
}
