//! What the VMM programs (`protected_vmm`, `linux_vmm`, `hostile_vmm`, `bench_vmm`) do the same way when they make their
//! calls: reading a `setvar_id` symbol, failing the system, decoding a child's fault as a VM
//! fault, emulating the PL011 (`frameshift_vmm::pl011`) on the VM's console, and donating a run
//! of guest RAM back to the guest. The decisions stay in the host-tested crates (`frameshift-vmm`,
//! `frameshift-linux-vmm`); this crate only makes calls.
#![no_std]
#![deny(unsafe_code)]

use frameshift_abi::addr::{Ipa, PAGE_SIZE};
use frameshift_abi::guest_call::MAX_RANGE_PAGES;
use frameshift_pd::vm_fault::DataAccess;
use frameshift_pd::{debug_println, system_off, Child, MessageInfo, VmFault, VmReply};
use frameshift_vmm::pl011::Pl011;

pub use frameshift_vmm::config::UNSET;

#[doc(hidden)]
pub use frameshift_pd::symbols::read_patched;

/// Define a `u64` variable the builder patches with a `setvar_id` (system.xml) and read its
/// value: [`UNSET`] when system.xml does not set it. Use once per name.
#[macro_export]
macro_rules! setvar_id {
    ($symbol:ident) => {{
        #[allow(non_upper_case_globals, unsafe_code)]
        #[no_mangle]
        #[link_section = ".data"]
        static $symbol: u64 = $crate::UNSET;
        $crate::read_patched(&$symbol)
    }};
}

/// Print why the system failed and end it with status 1.
pub fn fail(reason: core::fmt::Arguments<'_>) -> ! {
    debug_println!("FAILED: {reason}");
    system_off(1)
}

/// A child's fault: `handle` answers it when it is a VM fault, and the system fails otherwise.
pub fn serve_vm_fault(
    child: Child,
    message: MessageInfo,
    handle: impl FnOnce(VmFault) -> VmReply,
) -> Option<MessageInfo> {
    match VmFault::from_message(message) {
        Ok(fault) => handle(fault).send(),
        Err(other) => fail(format_args!(
            "child {} fault label {}: not a VM fault",
            child.index(),
            other.label
        )),
    }
}

/// The guest accessed the UART at `offset`: a write may end a line, which becomes `vm`'s
/// console line; a read gets the register's value.
pub fn uart_access(
    vm: Child,
    uart: &mut Pl011,
    offset: u64,
    access: DataAccess,
    value: u64,
) -> VmReply {
    if access.write {
        if let Some(line) = uart.write(offset, value) {
            // A refused console write has nowhere better to go; the guest runs on.
            let _ = vm.vm_console_write(line);
        }
        VmReply::skip()
    } else {
        VmReply::skip_with_read(uart.read(offset))
    }
}

/// The virtual timer's PPI (GIC INTID 27), which the hypervisor reports as `FAULT_VM_VPPI`.
pub const VTIMER_PPI: u16 = 27;

/// A virtual PPI fired on `vcpu` (`FAULT_VM_VPPI`): inject it (priority 0xA0, group 1), let it
/// fire again (`PD_VCPU_ACK_VPPI`), and resume the vCPU; the system fails if either is refused.
pub fn forward_virtual_ppi(vcpu: Child, irq: u64) -> VmReply {
    let irq = u16::try_from(irq).unwrap_or(VTIMER_PPI);
    let injected = vcpu
        .vcpu_inject_irq(irq, 0xA0, 1)
        .and_then(|()| vcpu.vcpu_ack_vppi(irq));
    if let Err(error) = injected {
        fail(format_args!("virtual PPI {irq}: {error}"));
    }
    VmReply::retry()
}

/// Print what the UART holds of an unfinished line, ended with a `\n`, on `vm`'s console.
pub fn flush_console(vm: Child, uart: &Pl011) {
    let pending = uart.pending();
    if !pending.is_empty() {
        let _ = vm.vm_console_write(pending);
        let _ = vm.vm_console_write(b"\n");
    }
}

/// Donate `pages` pages of guest RAM from `first` to `vm`'s guest, with their contents, as
/// many per call as a call takes; the system fails if one is refused.
pub fn donate_all(vm: Child, first: Ipa, pages: u64) {
    let mut page = 0;
    while page < pages {
        let count = (pages - page).min(MAX_RANGE_PAGES);
        let at = first.add(page * PAGE_SIZE);
        if let Err(error) = vm.donate(at, count) {
            fail(format_args!("donating {count} pages at {at}: {error}"));
        }
        page += count;
    }
}
