//! The one domain model: a protection domain or a virtual machine, with one id type.
//!
//! A [`Domain`] owns everything about itself (STYLE rule 16, Hafnium's `struct vm`):
//!
//! | part | what |
//! | --- | --- |
//! | identity | its console name, [`DomainKind`] (a PD, passive or not; a VM, protected or not, with its conversion mode), priority, parent and Microkit child id |
//! | [`VSpace`] | its stage-2 table, and for a guest its link to its host (window, mode) and whether it is alive |
//! | [`Context`]s | one for a PD, one per `<vcpu>` for a VM: saved registers, run state, child id, budget, and the arch's own per-context state |
//! | [`Events`] | its Microkit state: pending notifications, child faults (by child id), callers, whom it serves |
//! | console line | its partial console line |
//!
//! Every subsystem names a domain by [`DomainId`] (its index in the boot information) and a
//! context by [`ContextId`].

mod context;
mod registers;
mod vspace;

use core::fmt;
use core::ops::{Index, IndexMut};

pub use context::{Context, ContextId, RunState};
pub use registers::Registers;
pub use vspace::{ConversionMode, GuestLink, VSpace, Window};

use crate::kernel::console::{ConsoleName, LineBuffer};

/// Most domains a system may have: Microkit's limit, one bit each in a `u64`, and what the
/// frame table's 6-bit owner field can name.
pub const MAX_DOMAINS: usize = 63;

/// Most vCPUs (contexts) one virtual machine may have (the ABI crate's limit, which the build
/// tool and the boot-information reader enforce too).
pub use frameshift_abi::boot_info::MAX_VCPUS;

/// Highest Microkit child id (`id` of a child PD, `<vcpu id>`): child faults are bits of a
/// `u64`.
pub const MAX_CHILD_ID: u8 = 61;

/// A domain (protection domain or virtual machine): its index in the boot information,
/// `0..MAX_DOMAINS`.
#[repr(transparent)]
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct DomainId(pub u8);

impl DomainId {
    /// The domain id as an index, if it is in range.
    pub const fn index(self) -> Option<usize> {
        if (self.0 as usize) < MAX_DOMAINS {
            Some(self.0 as usize)
        } else {
            None
        }
    }

    /// This domain's bit in a per-domain bit set.
    pub const fn bit(self) -> u64 {
        1 << (self.0 & 63)
    }
}

impl fmt::Display for DomainId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "domain{}", self.0)
    }
}

/// What a domain is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DomainKind {
    /// A Microkit protection domain.
    Pd {
        /// Microkit `passive="true"`: after `init` the PD has no time of its own; it runs only
        /// on the time of whoever gives it an event (docs/ABI.md, "Passive PDs").
        passive: bool,
    },
    /// A virtual machine, child of its VMM PD. Its vCPUs never run in this version.
    Vm {
        /// A protected VM (the Frameshift extension): its memory is private from boot.
        protected: bool,
        /// How it tells shared from private memory.
        mode: ConversionMode,
    },
}

impl DomainKind {
    /// Whether this is a protection domain.
    pub const fn is_pd(self) -> bool {
        matches!(self, Self::Pd { .. })
    }

    /// Whether this is a passive PD.
    pub const fn is_passive(self) -> bool {
        matches!(self, Self::Pd { passive: true })
    }
}

/// A domain's Microkit event state: what is waiting for it and whom its running handler serves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Events {
    /// Notification channel bits not yet delivered.
    pub notifications: u64,
    /// Children (bit per Microkit child id: a child PD's id or a vCPU's id) whose faults are not
    /// yet delivered.
    pub child_faults: u64,
    /// Callers (bit per domain) blocked in a call to this PD that it has not yet been given
    /// (`RunState::Calling` with `delivered: false`).
    pub callers: u64,
    /// The caller whose protected procedure call this PD's current handler is serving.
    pub serving: Option<DomainId>,
    /// The child (by child id) whose fault this PD's current handler is handling.
    pub handling_fault: Option<u8>,
}

/// One domain. `C` is the arch's per-context state ([`crate::arch::Arch::Context`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Domain<C> {
    /// Name for the console prefix and fault lines.
    pub name: ConsoleName,
    /// PD or VM.
    pub kind: DomainKind,
    /// Microkit priority (0..=254; higher runs first).
    pub priority: u8,
    /// The domain its faults are reported to.
    pub parent: Option<DomainId>,
    /// Its stage-2 address space.
    pub vspace: VSpace,
    /// Its contexts: one for a PD, one per vCPU for a VM.
    pub contexts: heapless::Vec<Context<C>, MAX_VCPUS>,
    /// Its Microkit event state.
    pub events: Events,
    /// Its partial console line.
    pub line: LineBuffer,
}

impl<C> Domain<C> {
    /// Whether this is a PD.
    pub fn is_pd(&self) -> bool {
        self.kind.is_pd()
    }

    /// The context whose Microkit child id is `child_id`, if it has one.
    pub fn context_of_child(&self, child_id: u8) -> Option<usize> {
        self.contexts
            .iter()
            .position(|context| context.child_id == Some(child_id))
    }
}

/// Every domain of the system, in boot-information order (ids are dense from 0).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Domains<C> {
    list: heapless::Vec<Domain<C>, MAX_DOMAINS>,
}

impl<C> Default for Domains<C> {
    fn default() -> Self {
        Self::new()
    }
}

impl<C> Domains<C> {
    /// No domains (a `const` initialiser).
    pub const fn new() -> Self {
        Self {
            list: heapless::Vec::new(),
        }
    }

    /// Number of domains.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Removes every domain.
    pub fn clear(&mut self) {
        self.list.clear();
    }

    /// Adds a domain with the next id; `None` (and the domain dropped) if [`MAX_DOMAINS`]
    /// exist already.
    pub fn push(&mut self, domain: Domain<C>) -> Option<DomainId> {
        let id = DomainId(self.list.len() as u8);
        self.list.push(domain).ok()?;
        Some(id)
    }

    /// A domain.
    pub fn get(&self, id: DomainId) -> Option<&Domain<C>> {
        self.list.get(id.index()?)
    }

    /// A domain, for writing.
    pub fn get_mut(&mut self, id: DomainId) -> Option<&mut Domain<C>> {
        self.list.get_mut(id.index()?)
    }

    /// Every domain with its id.
    pub fn iter(&self) -> impl Iterator<Item = (DomainId, &Domain<C>)> {
        self.list
            .iter()
            .enumerate()
            .map(|(index, domain)| (DomainId(index as u8), domain))
    }

    /// Every domain with its id, for writing.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (DomainId, &mut Domain<C>)> {
        self.list
            .iter_mut()
            .enumerate()
            .map(|(index, domain)| (DomainId(index as u8), domain))
    }

    /// A domain's stage-2 address space.
    pub fn vspace(&self, id: DomainId) -> Option<&VSpace> {
        self.get(id).map(|domain| &domain.vspace)
    }

    /// A context.
    pub fn context(&self, id: ContextId) -> Option<&Context<C>> {
        self.get(id.domain)?.contexts.get(usize::from(id.index))
    }

    /// A context, for writing.
    pub fn context_mut(&mut self, id: ContextId) -> Option<&mut Context<C>> {
        self.get_mut(id.domain)?
            .contexts
            .get_mut(usize::from(id.index))
    }

    /// Every context, domain by domain.
    pub fn context_ids(&self) -> impl Iterator<Item = ContextId> + '_ {
        self.iter().flat_map(|(domain, record)| {
            (0..record.contexts.len()).map(move |index| ContextId {
                domain,
                index: index as u8,
            })
        })
    }

    /// The context of `parent`'s child `child_id`: a child PD's context, or a vCPU of a child VM.
    pub fn child_context(&self, parent: DomainId, child_id: u8) -> Option<ContextId> {
        self.iter()
            .filter(|(_, domain)| domain.parent == Some(parent))
            .find_map(|(domain, record)| {
                record.context_of_child(child_id).map(|index| ContextId {
                    domain,
                    index: index as u8,
                })
            })
    }
}

/// `domains[id]`: a domain the caller knows exists (an id the kernel took from its own tables).
/// An id that does not exist is a hypervisor bug, never a domain's doing: every id a domain
/// names is checked first.
impl<C> Index<DomainId> for Domains<C> {
    type Output = Domain<C>;

    fn index(&self, id: DomainId) -> &Domain<C> {
        &self.list[usize::from(id.0)]
    }
}

impl<C> IndexMut<DomainId> for Domains<C> {
    fn index_mut(&mut self, id: DomainId) -> &mut Domain<C> {
        &mut self.list[usize::from(id.0)]
    }
}

/// `domains[context]`: a context the caller knows exists (as for [`DomainId`]).
impl<C> Index<ContextId> for Domains<C> {
    type Output = Context<C>;

    fn index(&self, id: ContextId) -> &Context<C> {
        &self[id.domain].contexts[usize::from(id.index)]
    }
}

impl<C> IndexMut<ContextId> for Domains<C> {
    fn index_mut(&mut self, id: ContextId) -> &mut Context<C> {
        &mut self[id.domain].contexts[usize::from(id.index)]
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::format;

    #[test]
    fn domain_ids_past_the_owner_field_have_no_index() {
        assert_eq!(DomainId(0).index(), Some(0));
        assert_eq!(DomainId(62).index(), Some(62));
        assert_eq!(DomainId(63).index(), None);
        assert_eq!(format!("{}", DomainId(7)), "domain7");
        assert_eq!(DomainId(5).bit(), 1 << 5);
    }
}
