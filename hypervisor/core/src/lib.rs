//! Frameshift's portable hypervisor core: the ownership core (frame table, stage-2 tables,
//! conversion engine, audit) and the Microkit kernel logic. The EL2 binary that drives it is
//! the `frameshift-hypervisor` crate.
//!
//! The core is `no_std`, allocation-free and free of assembly; it reaches the machine only
//! through [`arch::Stage2Arch`]. Host tests run it against [`arch::fake::FakeArch`].
//!
//! | module | concept |
//! | --- | --- |
//! | [`addr`] | `PhysAddr`, `Ipa`, `Vmid`, `DomainId` |
//! | [`descriptor`] | stage-2 descriptor encoding, break-before-make predicate |
//! | [`walk`] | software table walker (as the hardware walks) |
//! | [`stage2`] | stage-2 tables: map, split, coalesce, BBM + TLB maintenance |
//! | [`table_pool`] | the fixed pool of table pages, reserve-then-take |
//! | [`frame_table`] | per-frame owner, state, borrowers, pins (8 bytes per frame) |
//! | [`ownership`] | the state machine: one table, one `decide` |
//! | [`engine`] | prepare/commit conversions, boot mappings, teardown |
//! | [`audit`](mod@audit) | I1-I4 cross-check of tables against the frame table |
//! | `arch::fake`, `small_system` | host only (feature `fake`): fake machine, test system (the model checker is in `frameshift-harness`) |
#![cfg_attr(not(any(test, feature = "fake")), no_std)]
#![forbid(unsafe_code)]

pub mod addr;
pub mod arch;
pub mod audit;
pub mod descriptor;
pub mod engine;
pub mod error;
pub mod frame_table;
pub mod kernel;
pub mod ownership;
#[cfg(any(test, feature = "fake"))]
pub mod small_system;
pub mod stage2;
pub mod table_pool;
pub mod walk;

pub use addr::{DomainId, Ipa, PhysAddr, Vmid, BLOCK_SIZE, MAX_DOMAINS, PAGE_SIZE};
pub use arch::{DescriptorSlot, PhysMemory, Stage2Arch};
pub use audit::{audit, AuditSummary, Invariant, Violation};
pub use descriptor::{Leaf, MemoryType, PageState, Rights};
pub use engine::{
    BootMapping, BootSharing, ConversionMode, Domain, Engine, GuestLink, Request, Window,
    MAX_RANGE_PAGES,
};
pub use error::Error;
pub use frame_table::{FrameRecord, FrameState, FrameTable};
pub use ownership::{decide, FrameView, Holder, Operation, Side, Transition};
pub use stage2::{Entry, Stage2Table, VTCR_EL2};
pub use table_pool::TablePool;
