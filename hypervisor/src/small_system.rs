//! A small host-side system (a host VMM and two guests) used by tests and the model checker.
//!
//! Physical layout (the frame table covers 2 MiB + 2 frames):
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
use std::vec::Vec;

use crate::addr::{DomainId, Ipa, PhysAddr, Vmid, PAGE_SIZE};
use crate::audit::audit;
use crate::descriptor::{MemoryType, Rights};
use crate::engine::{BootMapping, BootSharing, ConversionMode, Engine, GuestLink, Window};
use crate::fake_arch::FakeArch;
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

/// Engine plus fake machine.
#[derive(Clone, Debug)]
pub struct SmallSystem {
    /// The ownership core.
    pub engine: SmallEngine,
    /// The fake machine.
    pub arch: FakeArch,
}

/// The window both guests share.
pub fn window() -> Window {
    Window {
        guest_base: BLOCK_IPA,
        host_base: WINDOW_HOST_BASE,
        size: 2 * 1024 * 1024 + 2 * PAGE_SIZE,
    }
}

impl SmallSystem {
    /// Boots the system: host owns block C and frames A and B, guests own nothing.
    pub fn boot() -> Result<Self, crate::Error> {
        let pool_end = PhysAddr(POOL_BASE.get() + POOL_PAGES as u64 * PAGE_SIZE);
        let mut arch = FakeArch::new(POOL_BASE, pool_end);
        let mut engine = Box::new(SmallEngine::empty());
        engine.init(TablePool::new(POOL_BASE, POOL_PAGES)?, FRAME_BASE, FRAMES)?;
        engine.protect(HYPERVISOR.0, HYPERVISOR.1)?;
        engine.create_domain(&mut arch, HOST, Vmid(1))?;
        engine.create_domain(&mut arch, GUEST_HISTORY, Vmid(2))?;
        engine.create_domain(&mut arch, GUEST_SPLIT, Vmid(3))?;
        let link = |mode| GuestLink {
            host: HOST,
            window: window(),
            mode,
        };
        engine.link_guest(GUEST_HISTORY, link(ConversionMode::History))?;
        engine.link_guest(GUEST_SPLIT, link(ConversionMode::Split))?;
        engine.map_at_boot(
            &mut arch,
            &BootMapping {
                domain: HOST,
                ipa: WINDOW_HOST_BASE,
                pa: FRAME_BASE,
                pages: FRAMES as u64,
                rights: Rights::READ_WRITE,
                memory: MemoryType::Normal,
                sharing: BootSharing::Private,
            },
        )?;
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
