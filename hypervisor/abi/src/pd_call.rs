//! PD to hypervisor calls (ABI family 2): the Microkit operations.
//!
//! A PD calls the hypervisor with `HVC #0`, the function identifier in `x0` and arguments in
//! `x1`.. as SMCCC 1.2 allows (arguments and results in `x0`-`x17`). The hypervisor returns a
//! status in `x0` (`smccc::SUCCESS` or a negative code) and results in `x1`...
//!
//! Identifiers sit in the SMCCC vendor-specific hypervisor range (owner 6, fast, SMC64), above the
//! numbers pKVM uses for guests, so a guest call and a PD call can never be confused.
//!
//! Message registers: a protected procedure call carries a [`MessageInfo`] word and up to
//! [`MESSAGE_REGISTERS`] message registers in `x3`-`x10`, both ways.

/// Write bytes to the console: `x1` = byte count (0..=48), `x2`-`x7` = the bytes, little endian,
/// 8 per register. The hypervisor adds the `FS|<pd>|` prefix when a line starts.
pub const PD_DEBUG_WRITE: u32 = 0xC600_0100;
/// Signal the notification on channel `x1`.
pub const PD_NOTIFY: u32 = 0xC600_0101;
/// Acknowledge the interrupt delivered on channel `x1`.
pub const PD_IRQ_ACK: u32 = 0xC600_0102;
/// Protected procedure call on channel `x1`, [`MessageInfo`] in `x2`, message registers in
/// `x3`-`x10`. Returns the reply's [`MessageInfo`] in `x2` and its message registers in
/// `x3`-`x10`. Only allowed to a PD of strictly higher priority through a `pp="true"` end.
pub const PD_PPCALL: u32 = 0xC600_0103;
/// End the current handler and wait for the next event. `x1` says whether the handler replies:
/// [`REPLY_NONE`] or [`REPLY_MESSAGE`] (any other value is refused with `INVALID_PARAMETER` and
/// changes nothing). With [`REPLY_MESSAGE`], `x2`-`x10` are the reply (`MessageInfo` and message
/// registers): a `protected` handler's reply goes to its caller, and a `fault` handler's reply
/// restarts the faulting child at the faulting instruction. Returns the next event, laid out as
/// [`EventRegisters`] shows.
pub const PD_REPLY_RECV: u32 = 0xC600_0104;
/// Power the system off: `x1` = status, 0 for success. The hypervisor prints its final status
/// line naming the caller, then PSCI `SYSTEM_OFF`.
pub const PD_SYSTEM_OFF: u32 = 0xC600_0105;
/// Stop the calling PD for good, because its runtime cannot go on: `x1` = why, [`STOP_PANIC`]
/// or [`STOP_EXCEPTION`]. The hypervisor prints `stopped pd=<name> reason=<panic|exception>`,
/// never runs the PD again, and lets every other PD run on; the final halt line counts it
/// (`stopped=`), and a run that then ends idle has status 1. Does not return; any other `x1`
/// is refused with `INVALID_PARAMETER` and changes nothing.
pub const PD_STOP: u32 = 0xC600_0106;

// ------------------------------------------------------------------ VMM calls --
//
// A PD that is the parent of a `<virtual_machine>` controls its vCPUs and converts memory with its
// guest through these calls (Microkit's `microkit_vcpu_*` plus the host side of DESIGN.md 4). A
// vCPU is named by its Microkit `<vcpu id>` (the child id its faults arrive with); a VM is named
// by the id of any of its vCPUs. docs/ABI.md, "VMM calls", documents each one. A call naming a
// vCPU that is not the caller's child is refused with `INVALID_PARAMETER` and changes nothing.

/// Start or restart a vCPU: `x1` = vCPU id, `x2` = entry PC. Microkit's `microkit_vcpu_restart`.
/// A protected VM's vCPU can only be started while it is fresh (never run since the VM's memory
/// was last populated): the VMM never steers a running protected guest.
pub const PD_VCPU_RESTART: u32 = 0xC600_0107;
/// Stop a vCPU: `x1` = vCPU id. Microkit's `microkit_vcpu_stop`.
pub const PD_VCPU_STOP: u32 = 0xC600_0108;
/// Read a vCPU register: `x1` = vCPU id, `x2` = register number (`vcpu::REG_*`). Returns the
/// value in `x1`. Refused for a protected VM's vCPU unless it is fresh.
pub const PD_VCPU_READ_REG: u32 = 0xC600_0109;
/// Write a vCPU register: `x1` = vCPU id, `x2` = register number, `x3` = value. Only while the
/// vCPU is not running; refused for a protected VM's vCPU unless it is fresh.
pub const PD_VCPU_WRITE_REG: u32 = 0xC600_010A;
/// Inject a virtual interrupt through a GICv3 list register: `x1` = vCPU id, `x2` = INTID,
/// `x3` = priority (0-255, the top bits the list register keeps), `x4` = group (0 or 1).
/// Microkit's `microkit_vcpu_arm_inject_irq`.
pub const PD_VCPU_INJECT_IRQ: u32 = 0xC600_010B;
/// Acknowledge a virtual PPI delivered as a `FAULT_VM_VPPI` event: `x1` = vCPU id, `x2` = INTID.
/// The PPI can fire again. Microkit's `microkit_vcpu_arm_ack_vppi`.
pub const PD_VCPU_ACK_VPPI: u32 = 0xC600_010C;

/// Donate pages to the guest, contents kept: `x1` = VM, `x2` = guest IPA, `x3` = pages. The
/// frames are the ones at the window position of that IPA, which the VMM must own.
pub const PD_MEM_DONATE: u32 = 0xC600_0110;
/// Share the VMM's pages with the guest: `x1` = VM, `x2` = guest IPA, `x3` = pages, `x4` =
/// rights (`RIGHT_*`).
pub const PD_MEM_SHARE_WITH_GUEST: u32 = 0xC600_0111;
/// Take pages shared with the guest back: `x1` = VM, `x2` = guest IPA, `x3` = pages.
pub const PD_MEM_UNSHARE_FROM_GUEST: u32 = 0xC600_0112;
/// Lend pages for the guest's exclusive use: `x1` = VM, `x2` = guest IPA, `x3` = pages, `x4` =
/// rights.
pub const PD_MEM_LEND: u32 = 0xC600_0113;
/// Reclaim lent pages the guest relinquished (or a dead guest held): `x1` = VM, `x2` = guest
/// IPA, `x3` = pages.
pub const PD_MEM_RECLAIM: u32 = 0xC600_0114;
/// Tear the VM down: `x1` = VM. Every vCPU stops and is reset to fresh; the guest's own frames
/// come back to the VMM zeroed, in its window; frames the VMM shared stay intact.
pub const PD_VM_TEARDOWN: u32 = 0xC600_0115;
/// List the caller's frame capabilities: `x1` = IPA to start from. Returns the first capability
/// run at or above it: `x1` = IPA, `x2` = PA, `x3` = pages in the run, `x4` = how it is held
/// (`CAP_*`), `x5` = rights, `x6` = the peer's domain index or `NONE`; `x0` = `NOT_REQUIRED`
/// when there is none.
pub const PD_FRAME_CAPS: u32 = 0xC600_0116;
/// Run the I1-I4 audit now: returns `x1` = violations, `x2` = mapped pages, `x3` = audits run
/// since boot. `x1` = [`AUDIT_DUMP`] also writes the auditor's dump to the console, and again at
/// the halt.
pub const PD_AUDIT: u32 = 0xC600_0117;
/// `PD_AUDIT` `x1`: write the dump too (any other value: the audit alone).
pub const AUDIT_DUMP: u64 = 1;
/// Print bytes as a line of the VM's own console (the emulated UART): `x1` = VM, `x2` = byte
/// count (0..=40), `x3`-`x7` = the bytes. The hypervisor prefixes them with the VM's name.
pub const PD_VM_CONSOLE_WRITE: u32 = 0xC600_0118;

/// `PD_FRAME_CAPS` `x4`: the original capability (the caller owns the frame).
pub const CAP_ORIGINAL: u64 = 0;
/// `PD_FRAME_CAPS` `x4`: a derived capability (the caller borrows the frame).
pub const CAP_DERIVED: u64 = 1;
/// `PD_FRAME_CAPS` `x4`: the original capability of a frame lent away (no access now).
pub const CAP_LENT_AWAY: u64 = 2;

/// `PD_STOP` `x1`: the PD's code panicked.
pub const STOP_PANIC: u64 = 0;
/// `PD_STOP` `x1`: the PD took an exception its runtime cannot handle (such as an injected
/// abort outside the probe).
pub const STOP_EXCEPTION: u64 = 1;

/// `PD_REPLY_RECV` `x1`: the handler sends no reply. A child whose fault it handled stays
/// stopped for good; a caller it served gets `INVALID_PARAMETER` instead of a reply.
pub const REPLY_NONE: u64 = 0;
/// `PD_REPLY_RECV` `x1`: `x2`-`x10` are the handler's reply (Microkit `protected` returning, or
/// `fault` returning `true`).
pub const REPLY_MESSAGE: u64 = 1;

/// Number of message registers carried in registers (`x3`-`x10`).
pub const MESSAGE_REGISTERS: usize = 8;

/// `PD_REPLY_RECV` event: one or more notifications; `x2` = bit set of channel ids.
pub const EVENT_NOTIFIED: u64 = 0;
/// `PD_REPLY_RECV` event: a protected procedure call; `x2` = [`MessageInfo`], `x3`-`x10` =
/// message registers, `x11` = channel id.
pub const EVENT_PROTECTED: u64 = 1;
/// `PD_REPLY_RECV` event: a child faulted; `x2` = [`MessageInfo`] (label = `FAULT_*`),
/// `x3`-`x10` = fault details, `x11` = child id.
pub const EVENT_FAULT: u64 = 2;

/// Documentation anchor: the register layout of an event returned by [`PD_REPLY_RECV`].
///
/// | register | notified        | protected        | fault                  |
/// |----------|-----------------|------------------|------------------------|
/// | x0       | status          | status           | status                 |
/// | x1       | `EVENT_NOTIFIED`| `EVENT_PROTECTED`| `EVENT_FAULT`          |
/// | x2       | channel bit set | `MessageInfo`    | `MessageInfo`          |
/// | x3-x10   | -               | MR0-MR7          | MR0-MR7 (fault detail) |
/// | x11      | -               | channel id       | child id               |
#[derive(Debug)]
pub enum EventRegisters {}

/// Fault label: a stage-2 data or instruction abort. MR0 = IPA, MR1 = ESR_EL2, MR2 = faulting PC.
pub const FAULT_STAGE2_ABORT: u64 = 1;
/// Fault label: an unknown or illegal exception from EL1. MR0 = ESR_EL2, MR1 = faulting PC.
pub const FAULT_UNKNOWN: u64 = 2;
// Labels 3 and up are a virtual machine's faults: `vcpu::FAULT_VM_*`.

/// A Microkit message-info word: `label << 12 | count`, as seL4's `seL4_MessageInfo` with the
/// capability fields left zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[repr(transparent)]
pub struct MessageInfo(pub u64);

impl MessageInfo {
    /// A message with `label` and `count` message registers (`count` is clamped to
    /// [`MESSAGE_REGISTERS`]).
    pub const fn new(label: u64, count: usize) -> Self {
        let count = if count > MESSAGE_REGISTERS {
            MESSAGE_REGISTERS
        } else {
            count
        };
        Self(label << 12 | count as u64)
    }

    /// The label.
    pub const fn label(self) -> u64 {
        self.0 >> 12
    }

    /// The number of message registers used, clamped to [`MESSAGE_REGISTERS`].
    pub const fn count(self) -> usize {
        let count = (self.0 & 0x7f) as usize;
        if count > MESSAGE_REGISTERS {
            MESSAGE_REGISTERS
        } else {
            count
        }
    }
}
