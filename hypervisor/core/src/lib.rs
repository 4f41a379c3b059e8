//! Frameshift's portable hypervisor core: everything the hypervisor decides, with no assembly
//! and no system register, built `no_std` for the EL2 kernel and tested on the host against a
//! fake machine. The EL2 binary that drives it is the `frameshift-hypervisor` crate; the model
//! checker and the differential test are in `frameshift-harness`.
//!
//! | module | concept |
//! | --- | --- |
//! | [`addr`] | `PhysAddr`, `Ipa`, `Vmid` |
//! | [`domain`] | the one domain model: `Domain`, `DomainId`, contexts, address spaces |
//! | [`hypervisor`] | the `Hypervisor` object: all the state; boot, and the exits the arch layer reports |
//! | [`kernel`] | the Microkit logic: scheduling, channels, faults, console |
//! | [`descriptor`] | stage-2 descriptor encoding, break-before-make predicate |
//! | [`walk`] | software table walker (as the hardware walks) |
//! | [`stage2`] | stage-2 tables: map, split, coalesce, BBM + TLB maintenance |
//! | [`table_pool`] | the fixed pool of table pages, reserve-then-take |
//! | [`frame_table`] | per-frame owner, state, borrowers, pins (8 bytes per frame): the capability derivation tree |
//! | [`ownership`] | the state machine: one table, one `decide` |
//! | [`engine`] | prepare → plan → commit conversions, boot mappings, teardown, frame capabilities |
//! | [`audit`](mod@audit) | I1-I4 cross-check of tables against the frame table |
//! | [`error`], [`fatal`] | why a request is refused; why the hypervisor halts itself |
//! | [`arch`] | the machine traits, and (feature `fake`) the host fake arch |
//! | `small_system` | (feature `fake`) small test systems on the fake arch |
#![cfg_attr(not(any(test, feature = "fake")), no_std)]
#![forbid(unsafe_code)]

pub mod addr;
pub mod arch;
pub mod audit;
pub mod descriptor;
pub mod domain;
pub mod engine;
pub mod error;
pub mod fatal;
pub mod frame_table;
pub mod hypervisor;
pub mod kernel;
pub mod ownership;
#[cfg(any(test, feature = "fake"))]
pub mod small_system;
pub mod stage2;
pub mod table_pool;
pub mod walk;

pub use addr::{Ipa, PhysAddr, Vmid, BLOCK_SIZE, PAGE_SIZE};
pub use arch::{
    Arch, ContextKind, DescriptorSlot, ListRegistersFull, PhysMemory, Stage2Arch, VirtualIrq,
};
pub use audit::{audit, AuditSummary, Invariant, Violation};
pub use descriptor::{Leaf, MemoryType, PageState, Rights};
pub use domain::{
    Context, ContextId, ConversionMode, Domain, DomainId, DomainKind, Domains, GuestLink,
    Registers, RunState, VSpace, Window, MAX_DOMAINS, MAX_VCPUS,
};
pub use engine::{
    BootMapping, BootSharing, CapHeld, CapRun, Engine, Plan, Request, MAX_RANGE_PAGES,
};
pub use error::Error;
pub use fatal::FatalReason;
pub use frame_table::{FrameRecord, FrameState, FrameStorage, FrameTable, StaticStorage};
pub use hypervisor::{BootError, Decision, Exit, Halt, HaltReason, Heap, Hypervisor};
pub use ownership::{decide, FrameView, Holder, Operation, Side, Transition};
pub use stage2::{Entry, Stage2Table, VTCR_EL2};
pub use table_pool::TablePool;
