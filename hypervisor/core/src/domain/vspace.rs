//! A domain's stage-2 address space, and a guest's link to its host.

use crate::addr::Ipa;
use crate::domain::DomainId;
use crate::stage2::Stage2Table;

/// How a guest tells shared from private memory (DESIGN.md 4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConversionMode {
    /// pKVM style: one IPA space; the state comes from the hypercall history.
    History,
    /// TDX/SEV/CCA style: shared pages are mapped at the alias `IPA | 1 << 39`.
    Split,
}

/// The host's window onto a guest's memory: guest IPA `guest_base + x` is host IPA
/// `host_base + x` (libvmm's `guest_ram_vaddr` idiom).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Window {
    /// First guest IPA covered.
    pub guest_base: Ipa,
    /// Where it appears in the host.
    pub host_base: Ipa,
    /// Bytes covered.
    pub size: u64,
}

impl Window {
    /// The host IPA of guest IPA `ipa`, if the window covers it.
    pub fn host_ipa(&self, ipa: Ipa) -> Option<Ipa> {
        let offset = ipa.get().checked_sub(self.guest_base.get())?;
        (offset < self.size).then(|| Ipa(self.host_base.get() + offset))
    }
}

/// A guest's relation to its host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GuestLink {
    /// The host VMM's domain.
    pub host: DomainId,
    /// The host's window onto the guest's memory.
    pub window: Window,
    /// History or split mode.
    pub mode: ConversionMode,
}

/// One domain's stage-2 address space.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct VSpace {
    /// Its stage-2 table.
    pub table: Stage2Table,
    /// Set for guests (virtual machines under a host VMM).
    pub link: Option<GuestLink>,
    /// Cleared when a guest is torn down.
    pub alive: bool,
}

impl VSpace {
    /// A live address space over `table`, linked to no host.
    pub const fn new(table: Stage2Table) -> Self {
        Self {
            table,
            link: None,
            alive: true,
        }
    }
}
