//! Small host-side systems (a host VMM, guests, maybe a PD) used by tests and the model checker.
//!
//! A system is booted from a [`Layout`]: which domains exist, which of them are guests of which
//! host (window and mode), and the boot mappings. The reference model
//! (`frameshift_harness::model_check::reference`) boots from the same layout, so the engine and the model
//! start from one description.
//!
//! The default system, [`SmallSystem`] (physical layout; the frame table covers 2 MiB + 2
//! frames):
//!
//! | PA | what | host IPA (window) | guest IPA |
//! | --- | --- | --- | --- |
//! | 0x4000_0000 | block C (2 MiB, 512 frames) | 0x8000_0000 | 0x4000_0000 |
//! | 0x4020_0000 | lone frame A | 0x8020_0000 | 0x4020_0000 |
//! | 0x4020_1000 | lone frame B | 0x8020_1000 | 0x4020_1000 |
//!
//! Both guests have the same window, so they compete for the same frames. Guest 1 uses history
//! mode, guest 2 split mode. At boot the host owns everything (C as one 2 MiB block).

extern crate std;

use std::string::String;
use std::vec;
use std::vec::Vec;

use crate::addr::{DomainId, Ipa, PhysAddr, Vmid, PAGE_SIZE};
use crate::arch::fake::FakeArch;
use crate::audit::audit;
use crate::descriptor::{MemoryType, Rights};
use crate::engine::{BootMapping, BootSharing, ConversionMode, Engine, GuestLink, Window};
use crate::table_pool::TablePool;

/// Frames tracked by the small system.
pub const FRAMES: usize = 514;
/// Borrower side-table capacity.
pub const BORROWERS: usize = 8;
/// The host VMM.
pub const HOST: DomainId = DomainId(0);
/// The history-mode guest.
pub const GUEST_HISTORY: DomainId = DomainId(1);
/// The split-mode guest.
pub const GUEST_SPLIT: DomainId = DomainId(2);
/// First tracked frame (block C).
pub const FRAME_BASE: PhysAddr = PhysAddr(0x4000_0000);
/// Guest IPA of block C's first page.
pub const BLOCK_IPA: Ipa = Ipa(0x4000_0000);
/// Guest IPA of lone frame A.
pub const FRAME_A_IPA: Ipa = Ipa(0x4020_0000);
/// Guest IPA of lone frame B.
pub const FRAME_B_IPA: Ipa = Ipa(0x4020_1000);
/// The host window base.
pub const WINDOW_HOST_BASE: Ipa = Ipa(0x8000_0000);
/// Table pool.
pub const POOL_BASE: PhysAddr = PhysAddr(0x1000_0000);
/// Table pool size in pages.
pub const POOL_PAGES: usize = 128;
/// Hypervisor image (protected, I4).
pub const HYPERVISOR: (PhysAddr, PhysAddr) = (PhysAddr(0x0800_0000), PhysAddr(0x0820_0000));

/// The engine type of the small system.
pub type SmallEngine = Engine<FRAMES, BORROWERS>;

/// The default small system: 514 frames, 8 side-table records.
pub type SmallSystem = System<FRAMES, BORROWERS>;

/// What a system is booted from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Frames tracked from [`FRAME_BASE`].
    pub frames: usize,
    /// Table pool pages from [`POOL_BASE`].
    pub pool_pages: usize,
    /// Every domain, created in this order with VMID `id + 1`.
    pub domains: Vec<DomainId>,
    /// The guests and their links to their hosts.
    pub guests: Vec<(DomainId, GuestLink)>,
    /// Boot mappings, applied in this order.
    pub boot: Vec<BootMapping>,
}

/// The window both guests of the default layout share.
pub fn window() -> Window {
    Window {
        guest_base: BLOCK_IPA,
        host_base: WINDOW_HOST_BASE,
        size: 2 * 1024 * 1024 + 2 * PAGE_SIZE,
    }
}

/// A guest link to [`HOST`] through `window` in `mode`.
pub fn link(window: Window, mode: ConversionMode) -> GuestLink {
    GuestLink {
        host: HOST,
        window,
        mode,
    }
}

/// A boot mapping of `pages` frames from `pa` at `ipa` into `domain`.
pub fn boot_mapping(
    domain: DomainId,
    ipa: Ipa,
    pa: PhysAddr,
    pages: u64,
    rights: Rights,
    sharing: BootSharing,
) -> BootMapping {
    BootMapping {
        domain,
        ipa,
        pa,
        pages,
        rights,
        memory: MemoryType::Normal,
        sharing,
    }
}

/// The default layout: host, a history-mode and a split-mode guest; the host owns block C and
/// frames A and B read-write.
pub fn default_layout() -> Layout {
    Layout {
        frames: FRAMES,
        pool_pages: POOL_PAGES,
        domains: vec![HOST, GUEST_HISTORY, GUEST_SPLIT],
        guests: vec![
            (GUEST_HISTORY, link(window(), ConversionMode::History)),
            (GUEST_SPLIT, link(window(), ConversionMode::Split)),
        ],
        boot: vec![boot_mapping(
            HOST,
            WINDOW_HOST_BASE,
            FRAME_BASE,
            FRAMES as u64,
            Rights::READ_WRITE,
            BootSharing::Private,
        )],
    }
}

/// Engine plus fake machine.
#[derive(Clone, Debug)]
pub struct System<const FRAMES: usize, const BORROWERS: usize> {
    /// The ownership core.
    pub engine: Engine<FRAMES, BORROWERS>,
    /// The fake machine.
    pub arch: FakeArch,
}

impl<const FRAMES: usize, const BORROWERS: usize> System<FRAMES, BORROWERS> {
    /// Boots a system from `layout`.
    pub fn boot_layout(layout: &Layout) -> Result<Self, crate::Error> {
        let pool_end = PhysAddr(POOL_BASE.get() + layout.pool_pages as u64 * PAGE_SIZE);
        let mut arch = FakeArch::new(POOL_BASE, pool_end);
        let mut engine = Box::new(Engine::<FRAMES, BORROWERS>::empty());
        engine.init(
            TablePool::new(POOL_BASE, layout.pool_pages)?,
            FRAME_BASE,
            layout.frames,
        )?;
        engine.protect(HYPERVISOR.0, HYPERVISOR.1)?;
        for &domain in &layout.domains {
            engine.create_domain(&mut arch, domain, Vmid(u16::from(domain.0) + 1))?;
        }
        for &(guest, link) in &layout.guests {
            engine.link_guest(guest, link)?;
        }
        for mapping in &layout.boot {
            engine.map_at_boot(&mut arch, mapping)?;
        }
        arch.end_call();
        Ok(Self {
            engine: *engine,
            arch,
        })
    }

    /// Runs the audit; returns every violation as text.
    pub fn audit(&self) -> Vec<String> {
        let mut scratch = [0u8; FRAMES];
        let mut found = Vec::new();
        let summary = audit(&self.engine, &self.arch, &mut scratch, &mut |violation| {
            found.push(std::format!("{violation}"));
        });
        if summary.is_none() {
            found.push(String::from("audit scratch too small"));
        }
        found
    }

    /// Physical address of the frame at `index`.
    pub fn frame(index: usize) -> PhysAddr {
        PhysAddr(FRAME_BASE.get() + index as u64 * PAGE_SIZE)
    }
}

impl SmallSystem {
    /// Boots the default system: host owns block C and frames A and B, guests own nothing.
    pub fn boot() -> Result<Self, crate::Error> {
        Self::boot_layout(&default_layout())
    }
}
