//! The bench VMM (`bench_vmm.elf`, tests/systems/bench/guest.xml, `cargo xtask bench`): it
//! starts the bench guest and serves the round trips the guest times, doing as little as a VMM
//! can: a forwarded `HVC` gets the usual answer, a read of the doorbell page gets
//! [`BENCH_MMIO_VALUE`], and nothing is printed on those paths. It also emulates the guest's
//! PL011 (the `bench` lines), yields on [`BENCH_VMM_YIELD_HVC`] so that every timed loop starts
//! with a full budget, and ends the system when the guest turns its VM off.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![deny(unsafe_code)]

use frameshift_pd::{
    debug_println, memory_region_symbol, system_off, Child, Handler, MessageInfo, VcpuRegister,
    VmFault, VmReply,
};
use frameshift_vm_protocol::answers::{forwarded_call_answer, Conduit};
use frameshift_vm_protocol::bench::{BENCH_MMIO_VALUE, BENCH_VMM_YIELD_HVC};
use frameshift_vm_protocol::boot::{BOOT_MAGIC, GUEST_ENTRY};
use frameshift_vm_protocol::doorbell::DOORBELL_IPA;
use frameshift_vm_protocol::pl011::UART_IPA;
use frameshift_vmm::config::{Config, Symbols};
use frameshift_vmm::pl011::Pl011;
use frameshift_vmm_pd::{
    fail, flush_console, forward_virtual_ppi, serve_vm_fault, setvar_id, uart_access,
};

struct BenchVmm {
    vm: Child,
    uart: Pl011,
}

fn init() -> BenchVmm {
    let symbols = Symbols {
        guest_ram_vaddr: memory_region_symbol!(guest_ram_vaddr).get(),
        guest_ram_size: memory_region_symbol!(guest_ram_size).get(),
        guest_image_vaddr: memory_region_symbol!(guest_image_vaddr).get(),
        guest_image_size: memory_region_symbol!(guest_image_size).get(),
        guest_vcpu_id: setvar_id!(guest_vcpu_id),
        vmm_start_channel: setvar_id!(vmm_start_channel),
        vmm_done_channel: setvar_id!(vmm_done_channel),
    };
    let config = match Config::from_symbols(&symbols) {
        Ok(config) => config,
        Err(error) => fail(format_args!("configuration: {error}")),
    };
    let vm = Child::new(config.vcpu);
    if let Err(error) = vm.vcpu_write_reg(VcpuRegister::x(0), BOOT_MAGIC) {
        fail(format_args!("writing the boot vCPU's x0: {error}"));
    }
    if let Err(error) = vm.vcpu_restart(GUEST_ENTRY) {
        fail(format_args!("starting the boot vCPU: {error}"));
    }
    debug_println!("vmm: guest started at {GUEST_ENTRY}");
    BenchVmm {
        vm,
        uart: Pl011::new(),
    }
}

impl BenchVmm {
    fn handle(&mut self, vcpu: Child, fault: VmFault) -> VmReply {
        match fault {
            VmFault::DataAbort {
                ipa, access, value, ..
            } if access.valid => {
                let offset = ipa.get() - ipa.page_base().get();
                if ipa.page_base() == UART_IPA {
                    uart_access(self.vm, &mut self.uart, offset, access, value)
                } else if ipa.page_base() == DOORBELL_IPA && !access.write {
                    VmReply::skip_with_read(BENCH_MMIO_VALUE)
                } else {
                    fail(format_args!("vCPU {}: no device at {ipa}", vcpu.index()))
                }
            }
            VmFault::Hvc { x } => {
                if x[0] == u64::from(BENCH_VMM_YIELD_HVC) {
                    // A trapped WFI yields: this PD, alone at its priority, comes straight back
                    // with a full budget.
                    aarch64_cpu::asm::wfi();
                }
                VmReply::skip_with_results(forwarded_call_answer(Conduit::Hvc, &x))
            }
            VmFault::Power { .. } => {
                flush_console(self.vm, &self.uart);
                debug_println!("vmm: the guest turned its VM off");
                system_off(0)
            }
            VmFault::Vppi { irq } => forward_virtual_ppi(vcpu, irq),
            other => fail(format_args!(
                "vCPU {}: {other:?} is not a bench round trip",
                vcpu.index()
            )),
        }
    }
}

impl Handler for BenchVmm {
    fn fault(&mut self, child: Child, message: MessageInfo) -> Option<MessageInfo> {
        serve_vm_fault(child, message, |fault| self.handle(child, fault))
    }
}

frameshift_pd::protection_domain!(init);
