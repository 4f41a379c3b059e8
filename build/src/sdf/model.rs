//! The parsed system description: what a valid system.xml means, independent of XML.
//!
//! The parser (`sdf::parse_file`) produces a [`SystemDescription`] only after every Microkit check has
//! passed; the image builder consumes it. Field names follow the Microkit SDF attributes.

use std::path::PathBuf;

use frameshift_abi::addr::{Ipa, PhysAddr};

/// Page sizes the AArch64 configuration supports (Microkit `page_size`).
pub const PAGE_SIZES: [u64; 2] = [0x1000, 0x20_0000];

/// A whole, validated system.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SystemDescription {
    /// Protection domains, flattened in document order (a parent comes before its children).
    pub protection_domains: Vec<ProtectionDomain>,
    /// Memory regions in document order.
    pub memory_regions: Vec<MemoryRegion>,
    /// Channels in document order.
    pub channels: Vec<Channel>,
    /// Warnings Microkit prints for a valid file (e.g. `WARNING: unused memory region 'x'`),
    /// one full line each, in the order Microkit prints them.
    pub warnings: Vec<String>,
}

/// Microkit `<protection_domain>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProtectionDomain {
    /// `name`.
    pub name: String,
    /// Index of the parent PD in [`SystemDescription::protection_domains`], if nested.
    pub parent: Option<usize>,
    /// `id` as a child of its parent (required when nested).
    pub child_id: Option<u64>,
    /// `priority` (default 0).
    pub priority: u8,
    /// `budget` in microseconds (default 1000).
    pub budget: u64,
    /// `period` in microseconds (default = budget).
    pub period: u64,
    /// `passive` (default false).
    pub passive: bool,
    /// `stack_size` (default 0x2000).
    pub stack_size: u64,
    /// `<program_image path>`.
    pub program_image: PathBuf,
    /// `<map>` children.
    pub maps: Vec<Map>,
    /// `<irq>` children.
    pub irqs: Vec<Irq>,
    /// `<setvar>` children.
    pub setvars: Vec<SetVar>,
    /// The `<virtual_machine>` child, if any.
    pub virtual_machine: Option<VirtualMachine>,
    /// `fpu` (default true).
    pub fpu: bool,
    /// `<program_image path_for_symbols>`: the ELF to read symbols from, if not `program_image`.
    pub program_image_for_symbols: Option<PathBuf>,
    /// `setvar_id` symbols: patched with a channel, IRQ, child PD or vCPU id (Microkit 2.x).
    pub id_setvars: Vec<IdSetVar>,
}

/// A `setvar_id` attribute: `symbol` is patched with the id `id` this PD sees.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdSetVar {
    /// The symbol in the PD's program image.
    pub symbol: String,
    /// The channel, IRQ, child PD or vCPU id.
    pub id: u64,
}

/// Microkit `<map>` (in a PD or a VM).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Map {
    /// `mr`: index into [`SystemDescription::memory_regions`].
    pub memory_region: usize,
    /// `vaddr` (the IPA, for PDs with stage 1 off and for VMs).
    pub vaddr: Ipa,
    /// `perms`: any of read, write, execute.
    pub perms: Perms,
    /// `cached` (default true).
    pub cached: bool,
    /// `setvar_vaddr`: symbol patched with `vaddr`.
    pub setvar_vaddr: Option<String>,
    /// `setvar_size`: symbol patched with the region size.
    pub setvar_size: Option<String>,
    /// `setvar_prefill_size`: symbol patched with the size of the region's prefill file.
    pub setvar_prefill_size: Option<String>,
}

/// Access rights of a mapping (`perms="rwx"` subsets).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Perms {
    /// `r`.
    pub read: bool,
    /// `w`.
    pub write: bool,
    /// `x`.
    pub execute: bool,
}

/// Microkit `<memory_region>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryRegion {
    /// `name`.
    pub name: String,
    /// `size`, a multiple of `page_size`.
    pub size: u64,
    /// `page_size` (default 0x1000).
    pub page_size: u64,
    /// `phys_addr`, for device memory or fixed placement.
    pub phys_addr: Option<PhysAddr>,
    /// `prefill_path`: file whose bytes start the region, as found on the search path.
    pub prefill_path: Option<PathBuf>,
    /// Length in bytes of the prefill file when it was validated (non-zero, <= `size`).
    pub prefill_len: Option<u64>,
}

/// Microkit `<channel>` with its two `<end>`s.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Channel {
    /// The two ends, in document order.
    pub ends: [ChannelEnd; 2],
}

/// Microkit `<end>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelEnd {
    /// `pd`: index into [`SystemDescription::protection_domains`].
    pub pd: usize,
    /// `id` (0..=61).
    pub id: u64,
    /// `notify` (default true): this end may notify the other.
    pub notify: bool,
    /// `pp` (default false): this end may make protected procedure calls to the other.
    pub pp: bool,
}

/// Microkit `<irq>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Irq {
    /// `irq`: the GIC interrupt id.
    pub irq: u64,
    /// `id`: the channel id the PD sees it on.
    pub id: u64,
    /// `trigger` (default level).
    pub trigger: IrqTrigger,
}

/// `trigger="level|edge"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IrqTrigger {
    /// Level triggered.
    Level,
    /// Edge triggered.
    Edge,
}

/// Microkit `<setvar>`: patch `symbol` with the physical address of `region_paddr`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetVar {
    /// `symbol`.
    pub symbol: String,
    /// `region_paddr`: index into [`SystemDescription::memory_regions`].
    pub region_paddr: usize,
}

/// Microkit `<virtual_machine>`, with the Frameshift `protected` and `conversion` extension
/// (docs/SDF.md).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VirtualMachine {
    /// `name`.
    pub name: String,
    /// `priority` (default 0).
    pub priority: u8,
    /// `budget` (default 1000).
    pub budget: u64,
    /// `period` (default = budget).
    pub period: u64,
    /// `<vcpu id>`s, in document order.
    pub vcpus: Vec<u64>,
    /// `<map>` children (guest RAM and devices, at guest physical addresses).
    pub maps: Vec<Map>,
    /// The Frameshift extension: `protected="true"` makes the guest's memory private from boot.
    pub protected: bool,
    /// The Frameshift `conversion` attribute: how a protected guest tells shared pages from
    /// private ones. `Some` exactly when [`VirtualMachine::protected`] (default
    /// [`Conversion::History`]); `None` for an unprotected VM.
    pub conversion: Option<Conversion>,
}

/// `conversion="history|split"` on a protected `<virtual_machine>` (docs/SDF.md §5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Conversion {
    /// pKVM style: a page keeps its IPA; the guest's share and unshare calls decide its state.
    History,
    /// SEV/TDX style: a shared page appears at its IPA with bit 39 set (the upper half of the
    /// 40-bit IPA space), so all of the guest's own maps lie below that bit.
    Split,
}

impl Conversion {
    /// The attribute value: `history` or `split`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::History => "history",
            Self::Split => "split",
        }
    }
}

impl std::fmt::Display for Conversion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
