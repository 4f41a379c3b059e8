//! The Linux VMM protection domain (`linux_vmm.elf`), libvmm style: it boots an unmodified arm64
//! Linux kernel with an initramfs in its virtual machine and serves it until it powers off.
//!
//! - **Loading.** The kernel (an arm64 `Image`) and the initramfs come as two read-only prefilled
//!   regions. The VMM places them in guest RAM (`frameshift_linux_vmm::layout`), writes the
//!   device tree it generates (`frameshift_linux_vmm::device_tree`) into the last 2 MiB block,
//!   and starts the boot vCPU as the arm64 boot protocol asks: `x0` = the tree's address,
//!   `x1`-`x3` = 0, MMU off, interrupts masked.
//! - **Protected guests.** When the window does not reach guest RAM (its first page faults
//!   under the probe), the VM is protected: its RAM is private from boot. The VMM then tears the
//!   fresh VM down, which gives it the pages zeroed, writes the image into them, and donates
//!   them all back with their contents (`PD_MEM_DONATE`), so no page of the booting guest is
//!   ever the VMM's. It then reads and writes a page of the guest's kernel through the window,
//!   expecting both to fault, and says so; and again once the guest has powered off.
//! - **Devices.** The PL011 and the GICv3 distributor and redistributors are emulated from the
//!   guest's stage-2 faults (`frameshift_vmm::pl011`, `frameshift_linux_vmm::vgic`); the UART's
//!   lines become the VM's console lines. The virtual timer arrives as `FAULT_VM_VPPI` and is injected, then
//!   acknowledged; a trapped `ICC_SGI1R_EL1` write sends SGIs to the other vCPU's list
//!   registers; other trapped system registers (debug, PMU) read as zero.
//! - **The end.** PSCI `SYSTEM_OFF` stops the VM; the VMM ends the system with status 0.
//!   `SYSTEM_RESET` (what `panic=-1` makes a panicking kernel do) ends it with status 1.
//!
//! Why the VMM, not the hypervisor, emulates the distributor and redistributors (libvmm's
//! choice, not pKVM's): the hypervisor already gives the VMM everything an interrupt needs to
//! reach a vCPU (list-register injection, the virtual timer as a fault), and the distributor's
//! state (enables, priorities, routing) is bookkeeping of the guest's own devices, which only the
//! VMM emulates. Keeping it out of EL2 keeps the trusted code small: a VMM that gets it wrong
//! can only confuse its own guest, which it could stop anyway. The price is a VMM round trip
//! per distributor access, which Linux makes mostly at boot.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![deny(unsafe_code)]

use frameshift_abi::addr::{Ipa, PAGE_SIZE};
use frameshift_abi::guest_call::{PSCI_CPU_OFF, PSCI_SYSTEM_OFF, PSCI_SYSTEM_RESET};
use frameshift_linux_vmm::calls::{self, SysRegAccess};
use frameshift_linux_vmm::config::{Config, Symbols};
use frameshift_linux_vmm::device_tree::{self, Guest};
use frameshift_linux_vmm::layout::{self, ImageHeader, Placement, RAM_BASE, UART_BASE, UART_INTID};
use frameshift_linux_vmm::vgic::{Vgic, VTIMER_PPI};
use frameshift_pd::vm_fault::DataAccess;
use frameshift_pd::{
    debug_println, memory_region_symbol, probe, system_off, ChannelSet, Child, Handler,
    MessageInfo, Region, VcpuRegister, VmFault, VmReply,
};
use frameshift_vmm::pl011::Pl011;
use frameshift_vmm_pd::{donate_all, fail, flush_console, serve_vm_fault, setvar_id, uart_access};

/// The kernel command line: the PL011 console, and a reset (PSCI `SYSTEM_RESET`, so the VMM
/// ends the run with a failure) instead of a hang should the kernel panic.
const BOOTARGS: &str = "console=ttyAMA0 panic=-1";

/// Room for the device tree (it takes about 1.5 KiB).
const DTB_BUFFER: usize = 4096;

/// How many unexpected accesses (to no device, or to untrapped registers) are printed.
const REPORT_LIMIT: u32 = 8;

struct Vmm {
    config: Config,
    /// The boot vCPU; it also names the VM.
    vm: Child,
    placement: Placement,
    /// The VM's RAM is private to it (a protected VM).
    protected: bool,
    uart: Pl011,
    /// The UART's interrupt line as last seen, to inject on its rising edge.
    uart_line: bool,
    gic: Vgic,
    /// A vCPU's virtual timer fired but could not be injected yet (the guest had not enabled
    /// it): acknowledge it once it is injected.
    timer_unacked: [bool; 2],
    reports: u32,
    counts: Counts,
}

/// What the VMM did for its guest, printed when it powers off.
#[derive(Clone, Copy, Debug, Default)]
struct Counts {
    /// Virtual timer interrupts injected.
    timer: u64,
    /// SGIs injected (one per target vCPU).
    sgis: u64,
    /// UART interrupts raised.
    uart: u64,
    /// Emulated MMIO accesses (UART, distributor, redistributors).
    mmio: u64,
    /// Trapped system-register accesses.
    sysregs: u64,
}

fn region(base: Ipa, bytes: u64) -> Region {
    #[allow(unsafe_code)]
    // SAFETY: every region made here is one system.xml maps into this PD, page granular, at
    // `base` for at least `bytes` rounded up to a page (the build tool patched both symbols
    // from that map); nothing of this program lies there.
    unsafe {
        Region::new(base, bytes.next_multiple_of(PAGE_SIZE))
    }
}

fn init() -> Vmm {
    let symbols = Symbols {
        guest_ram_vaddr: memory_region_symbol!(guest_ram_vaddr).get(),
        guest_ram_size: memory_region_symbol!(guest_ram_size).get(),
        kernel_vaddr: memory_region_symbol!(kernel_vaddr).get(),
        kernel_size: memory_region_symbol!(kernel_size).get(),
        initrd_vaddr: memory_region_symbol!(initrd_vaddr).get(),
        initrd_size: memory_region_symbol!(initrd_size).get(),
        guest_vcpu_id: setvar_id!(guest_vcpu_id),
        guest_vcpu2_id: setvar_id!(guest_vcpu2_id),
    };
    let config = match Config::from_symbols(&symbols) {
        Ok(config) => config,
        Err(error) => fail(format_args!("configuration: {error}")),
    };
    let kernel = region(config.kernel.base, config.kernel.bytes);
    let words: [u64; 8] = core::array::from_fn(|index| kernel.read_u64(index as u64 * 8));
    let header = match ImageHeader::parse(&words) {
        Ok(header) => header,
        Err(error) => fail(format_args!("kernel: {error}")),
    };
    let placement = match layout::place(
        config.ram_bytes,
        &header,
        config.kernel.bytes,
        config.initrd.bytes,
    ) {
        Ok(placement) => placement,
        Err(error) => fail(format_args!("layout: {error}")),
    };
    let vm = Child::new(config.vcpus[0] as usize);
    let protected = probe::read_u64(config.window).is_err();
    debug_println!(
        "linux-vmm: {} MiB of guest RAM at {RAM_BASE} (window {}), {} vCPU(s), {} VM",
        config.ram_bytes >> 20,
        config.window,
        config.vcpu_count,
        if protected {
            "a protected"
        } else {
            "a non-protected"
        }
    );
    let mut vmm = Vmm {
        config,
        vm,
        placement,
        protected,
        uart: Pl011::new(),
        uart_line: false,
        gic: Vgic::new(config.vcpu_count),
        timer_unacked: [false; 2],
        reports: 0,
        counts: Counts::default(),
    };
    vmm.load(&kernel);
    vmm.start();
    vmm
}

impl Vmm {
    /// The window region over all of guest RAM.
    fn window(&self) -> Region {
        region(self.config.window, self.config.ram_bytes)
    }

    /// Copies `bytes` from the start of `from` to guest address `to`, through the window.
    fn copy_in(&self, window: &Region, from: &Region, to: Ipa, bytes: u64) {
        let offset = to.get() - RAM_BASE.get();
        for word in 0..bytes.div_ceil(8) {
            window.write_u64(offset + word * 8, from.read_u64(word * 8));
        }
    }

    /// Puts the kernel, the initramfs and the device tree into guest RAM; for a protected VM,
    /// into pages it then donates to the guest.
    fn load(&mut self, kernel: &Region) {
        if self.protected {
            // The guest's RAM is its own from boot and the VMM cannot write it: a teardown of
            // the fresh VM hands it back zeroed, to be filled and donated back.
            if let Err(error) = self.vm.teardown() {
                fail(format_args!("PD_VM_TEARDOWN of the fresh VM: {error}"));
            }
        }
        let window = self.window();
        let initrd = region(self.config.initrd.base, self.config.initrd.bytes);
        self.copy_in(
            &window,
            kernel,
            self.placement.kernel,
            self.config.kernel.bytes,
        );
        self.copy_in(
            &window,
            &initrd,
            self.placement.initrd,
            self.config.initrd.bytes,
        );
        let mut tree = [0u8; DTB_BUFFER];
        let guest = Guest {
            ram_bytes: self.config.ram_bytes,
            vcpus: self.config.vcpu_count as u32,
            placement: self.placement,
            bootargs: BOOTARGS,
        };
        let size = match device_tree::write(&mut tree, &guest) {
            Ok(size) => size,
            Err(error) => fail(format_args!("device tree: {error}")),
        };
        let dtb_offset = self.placement.dtb.get() - RAM_BASE.get();
        for (index, chunk) in tree[..size].chunks(8).enumerate() {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            window.write_u64(dtb_offset + index as u64 * 8, u64::from_le_bytes(word));
        }
        debug_println!(
            "linux-vmm: kernel ({} bytes) at {}, initramfs ({} bytes) at {}, device tree ({size} bytes) at {}",
            self.config.kernel.bytes,
            self.placement.kernel,
            self.config.initrd.bytes,
            self.placement.initrd,
            self.placement.dtb
        );
        if self.protected {
            let pages = self.config.ram_bytes / PAGE_SIZE;
            donate_all(self.vm, RAM_BASE, pages);
            debug_println!(
                "linux-vmm: all {pages} pages donated to the guest with their contents; the VMM keeps none"
            );
            self.try_to_read_the_kernel("before the boot");
        }
    }

    /// Reads, then writes, the first page of the guest's kernel text through the window: for a
    /// protected VM both must fault.
    fn try_to_read_the_kernel(&self, when: &str) {
        let address = self
            .config
            .window
            .add(self.placement.kernel.get() - RAM_BASE.get());
        match probe::read_u64(address) {
            Err(fault) => debug_println!(
                "linux-vmm: reading guest kernel memory {} (window {address}) {when}: faulted (esr={:#x}), the page is the guest's alone",
                self.placement.kernel,
                fault.esr
            ),
            Ok(value) => fail(format_args!(
                "ISOLATION BROKEN: read {value:#x} from guest kernel memory {} {when}",
                self.placement.kernel
            )),
        }
        match probe::write_u64(address, 0) {
            Err(fault) => debug_println!(
                "linux-vmm: writing guest kernel memory {} (window {address}) {when}: faulted (esr={:#x})",
                self.placement.kernel,
                fault.esr
            ),
            Ok(()) => fail(format_args!(
                "ISOLATION BROKEN: wrote guest kernel memory {} {when}",
                self.placement.kernel
            )),
        }
    }

    fn start(&mut self) {
        for register in 0..4 {
            let value = if register == 0 {
                self.placement.dtb.get()
            } else {
                0
            };
            if let Err(error) = self.vm.vcpu_write_reg(VcpuRegister::x(register), value) {
                fail(format_args!("writing the boot vCPU's x{register}: {error}"));
            }
        }
        if let Err(error) = self.vm.vcpu_restart(self.placement.kernel) {
            fail(format_args!("starting the boot vCPU: {error}"));
        }
        debug_println!(
            "linux-vmm: vCPU {} started at {} with x0 = {} (the device tree)",
            self.vm.index(),
            self.placement.kernel,
            self.placement.dtb
        );
    }

    fn vcpu_child(&self, index: usize) -> Child {
        Child::new(self.config.vcpus[index] as usize)
    }

    /// Moves every interrupt due for vCPU `index` into its list registers, while there is room.
    fn deliver(&mut self, index: usize) {
        let child = self.vcpu_child(index);
        while let Some(injection) = self.gic.next_injection(index) {
            let intid = injection.intid as u16;
            if child
                .vcpu_inject_irq(intid, injection.priority, injection.group)
                .is_err()
            {
                // Every list register is in use: it stays pending for the next chance.
                self.gic.give_back(index, injection);
                break;
            }
            match injection.intid {
                VTIMER_PPI => {
                    self.counts.timer += 1;
                    self.acknowledge_timer(index);
                }
                0..16 => self.counts.sgis += 1,
                _ => {}
            }
        }
    }

    fn acknowledge_timer(&mut self, index: usize) {
        if let Some(unacked) = self.timer_unacked.get_mut(index) {
            *unacked = false;
        }
        if let Err(error) = self.vcpu_child(index).vcpu_ack_vppi(VTIMER_PPI as u16) {
            fail(format_args!("acknowledging the virtual timer: {error}"));
        }
    }

    /// Every vCPU gets what is due to it (after a change to the distributor's state).
    fn deliver_all(&mut self) {
        for index in 0..self.config.vcpu_count {
            self.deliver(index);
        }
    }

    fn report(&mut self, what: core::fmt::Arguments<'_>) {
        if self.reports < REPORT_LIMIT {
            self.reports += 1;
            debug_println!("linux-vmm: {what}");
        }
    }

    fn uart(&mut self, offset: u64, access: DataAccess, value: u64) -> VmReply {
        let reply = uart_access(self.vm, &mut self.uart, offset, access, value);
        let line = self.uart.interrupt();
        if line && !self.uart_line {
            self.counts.uart += 1;
            self.gic.raise_spi(UART_INTID);
            self.deliver_all();
        }
        self.uart_line = line;
        reply
    }

    fn data_abort(&mut self, index: usize, ipa: Ipa, access: DataAccess, value: u64) -> VmReply {
        let bytes = 1u64 << access.size_log2;
        self.counts.mmio += 1;
        if ipa.page_base() == UART_BASE {
            return self.uart(ipa.get() - UART_BASE.get(), access, value);
        }
        if self.gic.contains(ipa) {
            if access.write {
                self.gic.write(ipa, bytes, value);
                self.deliver_all();
                return VmReply::skip();
            }
            return VmReply::skip_with_read(self.gic.read(ipa, bytes));
        }
        self.report(format_args!(
            "vCPU {index}: {} of {bytes} bytes at {ipa}, where there is no device: reads as zero, writes ignored",
            if access.write { "write" } else { "read" }
        ));
        if access.write {
            VmReply::skip()
        } else {
            VmReply::skip_with_read(0)
        }
    }

    fn system_register(&mut self, index: usize, child: Child, esr: u64, pc: u64) -> VmReply {
        let Some(access) = SysRegAccess::decode(esr) else {
            fail(format_args!(
                "vCPU {index}: exception esr={esr:#x} pc={pc:#x} the hypervisor did not handle"
            ))
        };
        let register = access.register;
        self.counts.sysregs += 1;
        if access.is_sgi() {
            let value = if register == 31 {
                0
            } else {
                match child.vcpu_read_reg(VcpuRegister::x(register)) {
                    Ok(value) => value,
                    Err(error) => fail(format_args!("reading the SGI register: {error}")),
                }
            };
            let (intid, targets) = calls::sgi_targets(value, index, self.config.vcpu_count);
            for target in 0..self.config.vcpu_count {
                if targets & (1 << target) != 0 {
                    self.gic.raise_private(target, intid);
                    self.deliver(target);
                }
            }
            return VmReply::skip();
        }
        let (op0, op1, crn, crm, op2) = access.encoding;
        self.report(format_args!(
            "vCPU {index}: {} S{op0}_{op1}_C{crn}_C{crm}_{op2} trapped: reads as zero, writes ignored",
            if access.read { "mrs" } else { "msr" }
        ));
        if access.read && register != 31 {
            if let Err(error) = child.vcpu_write_reg(VcpuRegister::x(register), 0) {
                fail(format_args!(
                    "writing x{register} for a trapped read: {error}"
                ));
            }
        }
        VmReply::skip()
    }

    fn powered_off(&mut self, function: u64) -> ! {
        flush_console(self.vm, &self.uart);
        let counts = self.counts;
        debug_println!(
            "linux-vmm: injected timer={} sgi={} uart={}; emulated mmio={} sysreg={}",
            counts.timer,
            counts.sgis,
            counts.uart,
            counts.mmio,
            counts.sysregs
        );
        if function == u64::from(PSCI_SYSTEM_OFF) {
            debug_println!("linux-vmm: the guest powered off (PSCI SYSTEM_OFF)");
            if self.protected {
                self.try_to_read_the_kernel("after the power-off");
            }
            system_off(0)
        }
        if function == u64::from(PSCI_SYSTEM_RESET) {
            fail(format_args!(
                "the guest reset itself (PSCI SYSTEM_RESET): a kernel panic, with panic=-1"
            ))
        }
        fail(format_args!(
            "the guest turned its boot vCPU off (PSCI CPU_OFF)"
        ))
    }

    fn handle(&mut self, child: Child, fault: VmFault) -> VmReply {
        let Some(index) = self.config.vcpu_index(child.index() as u64) else {
            fail(format_args!(
                "a fault from child {}, not one of our vCPUs",
                child.index()
            ))
        };
        let reply = match fault {
            VmFault::DataAbort {
                ipa, access, value, ..
            } if access.valid => self.data_abort(index, ipa, access, value),
            VmFault::DataAbort { ipa, esr, pc, .. } => fail(format_args!(
                "vCPU {index}: access to {ipa} without a valid syndrome (esr={esr:#x} pc={pc:#x}) cannot be emulated"
            )),
            VmFault::Abort { ipa, esr } => fail(format_args!(
                "vCPU {index}: abort at {ipa} (esr={esr:#x}) the VMM may not emulate"
            )),
            VmFault::Hvc { x } | VmFault::Smc { x } => {
                VmReply::skip_with_results(calls::forwarded_call(&x))
            }
            VmFault::Power { function }
                if function == u64::from(PSCI_CPU_OFF) && index != 0 =>
            {
                debug_println!("linux-vmm: vCPU {index} turned itself off (PSCI CPU_OFF)");
                return VmReply::stop();
            }
            VmFault::Power { function }
                if function == u64::from(PSCI_SYSTEM_OFF)
                    || function == u64::from(PSCI_SYSTEM_RESET)
                    || function == u64::from(PSCI_CPU_OFF) =>
            {
                self.powered_off(function)
            }
            VmFault::Power { function } => fail(format_args!(
                "vCPU {index}: power fault for PSCI function {function:#x}"
            )),
            VmFault::Vppi { irq } => {
                if irq != u64::from(VTIMER_PPI) {
                    fail(format_args!("vCPU {index}: virtual PPI {irq}, not the timer"));
                }
                self.gic.raise_private(index, VTIMER_PPI);
                if let Some(unacked) = self.timer_unacked.get_mut(index) {
                    *unacked = true;
                }
                self.deliver(index);
                VmReply::retry()
            }
            VmFault::Exception { esr, pc } => self.system_register(index, child, esr, pc),
        };
        // Whatever was waiting for a full set of list registers gets another chance.
        self.deliver_all();
        reply
    }
}

impl Handler for Vmm {
    fn notified(&mut self, channels: ChannelSet) {
        debug_println!(
            "linux-vmm: notification on channels {:#x} ignored",
            channels.bits()
        );
    }

    fn fault(&mut self, child: Child, message: MessageInfo) -> Option<MessageInfo> {
        serve_vm_fault(child, message, |fault| self.handle(child, fault))
    }
}

frameshift_pd::protection_domain!(init);
