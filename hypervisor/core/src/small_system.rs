//! Small host-side systems (a host VMM, guests, maybe a PD) used by tests and the model checker:
//! the real engine and real domains on the fake arch.
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

use std::boxed::Box;
use std::string::String;
use std::vec;
use std::vec::Vec;

use crate::addr::{Ipa, PhysAddr, Vmid, PAGE_SIZE};
use crate::arch::fake::FakeArch;

use crate::audit::audit;
use crate::descriptor::{MemoryType, PageState, Rights};
use crate::domain::{
    Context, ConversionMode, Domain, DomainId, DomainKind, Domains, Events, GuestLink, Registers,
    RunState, VSpace, Window,
};
use crate::engine::{BootMapping, BootSharing, Engine, Request};
use crate::error::Error;
use crate::frame_table::{FrameTable, VecStorage};
use crate::kernel::console::{ConsoleName, LineBuffer};
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

/// The engine of a small system: its frame table in vectors, so a system clones.
pub type SmallEngine = Engine<VecStorage>;

/// The domains of a small system (the fake arch keeps no per-context state).
pub type SmallDomains = Domains<()>;

/// The default small system: 514 frames, 8 side-table records.
pub type SmallSystem = System;

/// What a system is booted from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Frames tracked from [`FRAME_BASE`].
    pub frames: usize,
    /// Records of the borrower side table.
    pub side_table: usize,
    /// Table pool pages from [`POOL_BASE`].
    pub pool_pages: usize,
    /// Every domain (ids dense from 0, in any order), each with VMID `id + 1`.
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
        side_table: BORROWERS,
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

/// A domain of a small system: a PD, or a protected VM when it is some host's guest, named
/// `domain<n>`, with one context that never runs.
pub fn small_domain<C>(
    id: DomainId,
    link: Option<GuestLink>,
    vspace: VSpace,
    context: C,
) -> Domain<C> {
    let name = std::format!("domain{}", id.0);
    let kind = match link {
        Some(link) => DomainKind::Vm {
            protected: true,
            mode: link.mode,
        },
        None => DomainKind::Pd { passive: false },
    };
    let mut contexts = heapless::Vec::new();
    let _ = contexts.push(Context {
        registers: Registers::default(),
        state: RunState::Stopped,
        child_id: None,
        budget: 0,
        overrun: 0,
        last_fault: None,
        faults: 0,
        arch: context,
    });
    Domain {
        // Cannot fail: `domain<n>` obeys the name rule.
        name: ConsoleName::from_padded(name.as_bytes()).unwrap_or_else(|_| unreachable_name()),
        kind,
        priority: 0,
        parent: link.map(|link| link.host),
        vspace,
        contexts,
        events: Events::default(),
        line: LineBuffer::new(),
    }
}

fn unreachable_name() -> ConsoleName {
    panic!("a small system's domain names obey the name rule")
}

/// Engine, domains and fake machine.
#[derive(Clone, Debug)]
pub struct System {
    /// The ownership core.
    pub engine: SmallEngine,
    /// The domains (their address spaces), on the heap: 63 domain slots are too big to move
    /// around on a test thread's stack.
    pub domains: Box<SmallDomains>,
    /// The fake machine.
    pub arch: FakeArch,
}

/// The engine together with the domains it works on, as tests drive it.
#[derive(Debug)]
pub struct Bound<'a> {
    /// The engine.
    pub engine: &'a mut SmallEngine,
    /// The domains.
    pub domains: &'a mut SmallDomains,
}

impl System {
    /// Boots a system from `layout`.
    pub fn boot_layout(layout: &Layout) -> Result<Self, Error> {
        let pool_end = PhysAddr(POOL_BASE.get() + layout.pool_pages as u64 * PAGE_SIZE);
        let mut arch = FakeArch::new(POOL_BASE, pool_end);
        let mut engine = Engine::new(VecStorage::new(layout.frames, layout.side_table));
        engine.init(
            TablePool::new(POOL_BASE, layout.pool_pages)?,
            FRAME_BASE,
            layout.frames,
        )?;
        engine.protect(HYPERVISOR.0, HYPERVISOR.1)?;
        let mut domains = Box::new(Domains::new());
        // Domains live at their id: create them in id order, with no id missing.
        let mut ids = layout.domains.clone();
        ids.sort_unstable();
        for (index, &id) in ids.iter().enumerate() {
            if usize::from(id.0) != index {
                return Err(Error::NoSuchDomain);
            }
            let vspace = engine.create_vspace(&mut arch, Vmid(u16::from(id.0) + 1))?;
            let link = layout
                .guests
                .iter()
                .find(|(guest, _)| *guest == id)
                .map(|&(_, link)| link);
            // The link itself is set (and checked) by the engine, below.
            domains
                .push(small_domain(id, link, vspace, ()))
                .ok_or(Error::NoSuchDomain)?;
        }
        for &(guest, link) in &layout.guests {
            engine.link_guest(&mut domains, guest, link)?;
        }
        for mapping in &layout.boot {
            engine.map_at_boot(&mut arch, &domains, mapping)?;
        }
        arch.end_call();
        Ok(Self {
            engine,
            domains,
            arch,
        })
    }

    /// The engine with its domains, and the machine.
    pub fn parts(&mut self) -> (Bound<'_>, &mut FakeArch) {
        (
            Bound {
                engine: &mut self.engine,
                domains: &mut self.domains,
            },
            &mut self.arch,
        )
    }

    /// A domain's address space.
    pub fn vspace(&self, id: DomainId) -> Option<&VSpace> {
        self.domains.vspace(id)
    }

    /// What `domain` sees at `ipa`.
    pub fn page_state(&self, domain: DomainId, ipa: Ipa) -> Result<Option<PageState>, Error> {
        self.engine
            .page_state(&self.arch, &self.domains, domain, ipa)
    }

    /// Runs one conversion request.
    pub fn convert(&mut self, request: Request) -> Result<(), Error> {
        self.engine.convert(&mut self.arch, &self.domains, request)
    }

    /// Tears a guest down.
    pub fn teardown(&mut self, guest: DomainId) -> Result<(), Error> {
        self.engine
            .teardown(&mut self.arch, &mut self.domains, guest)
    }

    /// Runs the audit; returns every violation as text.
    pub fn audit(&self) -> Vec<String> {
        let mut scratch = vec![0u8; self.engine.frame_table().frames()];
        let mut found = Vec::new();
        let summary = audit(
            &self.engine,
            &self.domains,
            &self.arch,
            &mut scratch,
            &mut |violation| {
                found.push(std::format!("{violation}"));
            },
        );
        if summary.is_none() {
            found.push(String::from("audit scratch too small"));
        }
        found
    }

    /// Physical address of the frame at `index`.
    pub fn frame(index: usize) -> PhysAddr {
        PhysAddr(FRAME_BASE.get() + index as u64 * PAGE_SIZE)
    }

    /// Boots the default system: host owns block C and frames A and B, guests own nothing.
    pub fn boot() -> Result<Self, Error> {
        Self::boot_layout(&default_layout())
    }
}

impl Bound<'_> {
    /// A domain's address space.
    pub fn domain(&self, id: DomainId) -> Option<&VSpace> {
        self.domains.vspace(id)
    }

    /// The frame table.
    pub fn frame_table(&self) -> &FrameTable<VecStorage> {
        self.engine.frame_table()
    }

    /// The table pool.
    pub fn pool(&self) -> &TablePool {
        self.engine.pool()
    }

    /// See [`Engine::page_state`].
    pub fn page_state(
        &self,
        arch: &FakeArch,
        domain: DomainId,
        ipa: Ipa,
    ) -> Result<Option<PageState>, Error> {
        self.engine.page_state(arch, self.domains, domain, ipa)
    }

    /// See [`Engine::convert`].
    pub fn convert(&mut self, arch: &mut FakeArch, request: Request) -> Result<(), Error> {
        self.engine.convert(arch, self.domains, request)
    }

    /// See [`Engine::donate`].
    pub fn donate(
        &mut self,
        arch: &mut FakeArch,
        host: DomainId,
        guest: DomainId,
        ipa: Ipa,
        pages: u64,
    ) -> Result<(), Error> {
        self.engine
            .donate(arch, self.domains, host, guest, ipa, pages)
    }

    /// See [`Engine::share`].
    pub fn share(
        &mut self,
        arch: &mut FakeArch,
        guest: DomainId,
        ipa: Ipa,
        pages: u64,
    ) -> Result<(), Error> {
        self.engine.share(arch, self.domains, guest, ipa, pages)
    }

    /// See [`Engine::unshare`].
    pub fn unshare(
        &mut self,
        arch: &mut FakeArch,
        guest: DomainId,
        ipa: Ipa,
        pages: u64,
    ) -> Result<(), Error> {
        self.engine.unshare(arch, self.domains, guest, ipa, pages)
    }

    /// See [`Engine::relinquish`].
    pub fn relinquish(
        &mut self,
        arch: &mut FakeArch,
        guest: DomainId,
        ipa: Ipa,
        pages: u64,
    ) -> Result<(), Error> {
        self.engine
            .relinquish(arch, self.domains, guest, ipa, pages)
    }

    /// See [`Engine::share_with_guest`].
    pub fn share_with_guest(
        &mut self,
        arch: &mut FakeArch,
        host: DomainId,
        guest: DomainId,
        ipa: Ipa,
        pages: u64,
        rights: Rights,
    ) -> Result<(), Error> {
        self.engine
            .share_with_guest(arch, self.domains, host, guest, ipa, pages, rights)
    }

    /// See [`Engine::unshare_from_guest`].
    pub fn unshare_from_guest(
        &mut self,
        arch: &mut FakeArch,
        host: DomainId,
        guest: DomainId,
        ipa: Ipa,
        pages: u64,
    ) -> Result<(), Error> {
        self.engine
            .unshare_from_guest(arch, self.domains, host, guest, ipa, pages)
    }

    /// See [`Engine::lend`].
    pub fn lend(
        &mut self,
        arch: &mut FakeArch,
        host: DomainId,
        guest: DomainId,
        ipa: Ipa,
        pages: u64,
        rights: Rights,
    ) -> Result<(), Error> {
        self.engine
            .lend(arch, self.domains, host, guest, ipa, pages, rights)
    }

    /// See [`Engine::reclaim`].
    pub fn reclaim(
        &mut self,
        arch: &mut FakeArch,
        host: DomainId,
        guest: DomainId,
        ipa: Ipa,
        pages: u64,
    ) -> Result<(), Error> {
        self.engine
            .reclaim(arch, self.domains, host, guest, ipa, pages)
    }

    /// See [`Engine::teardown`].
    pub fn teardown(&mut self, arch: &mut FakeArch, guest: DomainId) -> Result<(), Error> {
        self.engine.teardown(arch, self.domains, guest)
    }

    /// See [`Engine::map_at_boot`].
    pub fn map_at_boot(&mut self, arch: &mut FakeArch, mapping: &BootMapping) -> Result<(), Error> {
        self.engine.map_at_boot(arch, self.domains, mapping)
    }

    /// See [`Engine::pin`].
    pub fn pin(&mut self, pa: PhysAddr) -> Result<(), Error> {
        self.engine.pin(pa)
    }

    /// See [`Engine::unpin`].
    pub fn unpin(&mut self, pa: PhysAddr) -> Result<(), Error> {
        self.engine.unpin(pa)
    }
}
