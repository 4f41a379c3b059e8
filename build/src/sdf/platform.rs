//! The kernel configuration the Microkit checks are evaluated against (Frameshift on QEMU virt).
//!
//! These are the values of the Microkit tool's `Config` for the configuration the conformance
//! fixtures were produced with (shared/microkit-sdf/README.md): AArch64, hypervisor mode, one
//! core, 40-bit physical addresses, no SMC forwarding, 16 scheduling domains.

/// Page sizes, smallest first (Microkit `page_sizes()`).
pub(crate) const PAGE_SIZES: [u64; 2] = super::model::PAGE_SIZES;
/// The smallest page size.
pub(crate) const SMALL_PAGE: u64 = PAGE_SIZES[0];
/// The large (2 MiB block) page size.
pub(crate) const LARGE_PAGE: u64 = PAGE_SIZES[1];

/// Microkit `user_top()` for a 40-bit hypervisor configuration: the top of a PD's address space.
/// The PD stack sits directly below it, so PD maps must end below `USER_TOP - stack_size`.
pub(crate) const USER_TOP: u64 = 0xff_ffff_e000;

/// Number of cores (Microkit `num_cores`).
pub(crate) const NUM_CORES: u64 = 1;
/// Most protection domains a system may define, children counted (Microkit `MAX_PDS`).
pub(crate) const MAX_PDS: usize = 63;
/// Largest channel, IRQ and vCPU id (the badge has 62 usable bits).
pub(crate) const PD_MAX_ID: u64 = 61;
/// Highest PD priority (255 is the monitor's).
pub(crate) const PD_MAX_PRIORITY: u64 = 254;
/// Default scheduling budget, in microseconds.
pub(crate) const BUDGET_DEFAULT: u64 = 1000;
/// Default PD stack size.
pub(crate) const PD_DEFAULT_STACK_SIZE: u64 = 0x2000;
/// Smallest PD stack size.
pub(crate) const PD_MIN_STACK_SIZE: u64 = 0x1000;
/// Largest PD stack size.
pub(crate) const PD_MAX_STACK_SIZE: u64 = 0x100_0000;
/// The PD name Microkit reserves for its monitor.
pub(crate) const MONITOR_PD_NAME: &str = "monitor";
/// Destination slots available to `<cspace>` cap maps.
pub(crate) const CAP_MAP_MAX_SLOT: u64 = 128;
/// Scheduling domains the kernel is configured with (`KernelNumDomains`).
pub(crate) const NUM_DOMAINS: u64 = 16;
/// Domain schedule entries the kernel is configured with (`KernelNumDomainSchedules`).
pub(crate) const NUM_DOMAIN_SCHEDULES: u64 = 100;
/// Whether seL4 is built as a hypervisor (virtual machines allowed).
pub(crate) const HYPERVISOR: bool = true;
/// Whether the kernel forwards SMCs (`smc="true"` is refused when it does not).
pub(crate) const ARM_SMC: bool = false;
/// Most `<protection_domain>` nesting levels the parser follows. Deeper nesting cannot be valid
/// (it would exceed [`MAX_PDS`]) and bounding it keeps the recursive descent off the stack limit.
pub(crate) const MAX_PD_NESTING: usize = MAX_PDS + 1;

/// Highest address (exclusive) a PD with this stack size may map (Microkit
/// `pd_map_max_vaddr`). Saturates instead of underflowing; the stack size is range-checked first.
pub(crate) fn pd_map_max_vaddr(stack_size: u64) -> u64 {
    USER_TOP.saturating_sub(stack_size)
}

/// Highest address (exclusive) a virtual machine may map (Microkit `vm_map_max_vaddr`).
pub(crate) fn vm_map_max_vaddr() -> u64 {
    USER_TOP
}
