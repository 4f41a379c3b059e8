//! The host VMM protection domain (`protected_vmm.elf`), libvmm style: it starts its guest's boot vCPU, emulates the
//! guest's PL011 and the demo's doorbell from stage-2 faults, answers the calls the hypervisor
//! forwards, converts memory with the guest when asked, and after each run tears the guest down
//! and starts it again from a clean image (issue 9, items 6 to 8).
//!
//! It touches guest memory only through its window (`guest_ram_vaddr`), and only pages it holds
//! a capability for, which it checks with `PD_FRAME_CAPS` first. Its one deliberate read of a
//! page the guest took back (demo step 2) is made under the runtime's probe: the abort is
//! expected, printed, and the VMM carries on.
//!
//! One program serves every guest and both conversion modes; system.xml configures each VMM PD
//! with patched symbols (frameshift_vmm::config). The decisions are in `frameshift-vmm`, which
//! is host-tested; this file makes the calls.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![deny(unsafe_code)]

use frameshift_abi::addr::{Ipa, PAGE_SIZE};
use frameshift_abi::guest_call::{PSCI_CPU_OFF, PSCI_SYSTEM_OFF, PSCI_SYSTEM_RESET};
use frameshift_pd::memory::CapHeld;
use frameshift_pd::vm_fault::DataAccess;
use frameshift_pd::{
    audit, debug_println, frame_cap_at, memory_region_symbol, probe, system_off, Channel,
    ChannelSet, Child, Handler, MessageInfo, Region, Rights, VcpuRegister, VmFault, VmReply,
};
use frameshift_vm_protocol::answers::{forwarded_call_answer, Conduit};
use frameshift_vm_protocol::boot::{BOOT_MAGIC, GUEST_ENTRY};
use frameshift_vm_protocol::demo::{self, PLAINTEXT, PLAINTEXT_LEN};
use frameshift_vm_protocol::doorbell::{
    Command, VmmMemoryCall, COMMAND, DOORBELL_IPA, STATUS, STATUS_FAULTED, STATUS_OK,
    STATUS_UNKNOWN_COMMAND, VALUE, VMM_PAGE_MARK,
};
use frameshift_vm_protocol::pl011::UART_IPA;
use frameshift_vmm::config::{Config, Symbols};
use frameshift_vmm::pl011::Pl011;
use frameshift_vmm::run::{Problem, RunChecks};
use frameshift_vmm::window::Window;
use frameshift_vmm_pd::{
    donate_all, fail, flush_console, forward_virtual_ppi, serve_vm_fault, setvar_id, uart_access,
};

/// How many times the guest runs: once from the image the build tool placed, then again after
/// each teardown from the clean image the VMM restores.
const RUNS: u32 = 2;

struct Vmm {
    config: Config,
    /// The boot vCPU; it also names the VM in memory calls.
    vm: Child,
    window: Window,
    window_region: Region,
    image_region: Region,
    uart: Pl011,
    doorbell_status: u64,
    doorbell_value: u64,
    /// Runs started so far.
    run: u32,
    checks: RunChecks,
}

fn init() -> Vmm {
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
    let window = Window {
        base: config.window,
        pages: config.pages,
    };
    #[allow(unsafe_code)]
    // SAFETY: system.xml maps the guest's RAM read-write at `guest_ram_vaddr` for its whole
    // `guest_ram_size` (the window) and nothing of this program lies there; the VMM reads or
    // writes a window page only when it holds a capability for it (checked with
    // PD_FRAME_CAPS) and probes it otherwise.
    let window_region = unsafe { Region::new(config.window, config.pages * PAGE_SIZE) };
    #[allow(unsafe_code)]
    // SAFETY: the clean image's region is mapped readable at `guest_image_vaddr`, page
    // granular, so the image rounded up to 8 bytes lies in it; it overlaps nothing of ours.
    let image_region = unsafe { Region::new(config.image, config.image_bytes.next_multiple_of(8)) };
    debug_println!(
        "vmm: window {} ({} pages of guest RAM), clean image {} bytes at {}",
        config.window,
        config.pages,
        config.image_bytes,
        config.image
    );
    let mut vmm = Vmm {
        config,
        vm: Child::new(config.vcpu),
        window,
        window_region,
        image_region,
        uart: Pl011::new(),
        doorbell_status: STATUS_OK,
        doorbell_value: 0,
        run: 0,
        checks: RunChecks::default(),
    };
    match config.start_channel {
        None => vmm.start_guest(),
        Some(channel) => debug_println!("vmm: waiting for a notification on channel {channel}"),
    }
    vmm
}

impl Vmm {
    fn start_guest(&mut self) {
        self.run += 1;
        self.checks = RunChecks::default();
        self.uart.clear();
        if let Err(error) = self.vm.vcpu_write_reg(VcpuRegister::x(0), BOOT_MAGIC) {
            fail(format_args!("writing the boot vCPU's x0: {error}"));
        }
        if let Err(error) = self.vm.vcpu_restart(GUEST_ENTRY) {
            fail(format_args!("starting the boot vCPU: {error}"));
        }
        debug_println!(
            "run {}: vCPU {} started at {GUEST_ENTRY} with x0 = the boot magic",
            self.run,
            self.vm.index()
        );
    }

    /// The guest stopped (or was stopped as it expected): check the run, then restart it or
    /// finish.
    fn run_ended(&mut self) {
        if let Err(problem) = self.checks.verdict() {
            fail(format_args!("run {}: {problem}", self.run));
        }
        debug_println!("run {} passed", self.run);
        if self.run < RUNS {
            self.teardown_and_restart();
        } else {
            self.finish();
        }
    }

    fn teardown_and_restart(&mut self) {
        flush_console(self.vm, &self.uart);
        if let Err(error) = self.vm.teardown() {
            fail(format_args!("PD_VM_TEARDOWN: {error}"));
        }
        for page in 0..self.window.pages {
            let address = self.window.vmm_page(page);
            // The first word under the probe: a page that did not come back faults here
            // rather than stopping the VMM.
            match probe::read_u64(address) {
                Err(fault) => fail(format_args!(
                    "teardown: window page {address} did not come back (esr={:#x})",
                    fault.esr
                )),
                Ok(first) => {
                    let offset = page * PAGE_SIZE;
                    let nonzero = (0..PAGE_SIZE / 8)
                        .map(|word| self.window_region.read_u64(offset + word * 8))
                        .any(|word| word != 0);
                    if first != 0 || nonzero {
                        fail(format_args!(
                            "teardown: guest page {} came back not zeroed",
                            self.window.guest_page(page)
                        ));
                    }
                }
            }
        }
        debug_println!(
            "teardown: the VM stopped; its {} pages came back into the window, every byte zero",
            self.window.pages
        );
        let words = self.config.image_bytes.div_ceil(8);
        for word in 0..words {
            self.window_region
                .write_u64(word * 8, self.image_region.read_u64(word * 8));
        }
        donate_all(self.vm, self.window.guest_page(0), self.window.pages);
        debug_println!(
            "clean image ({} bytes) copied into the window and all {} pages donated back",
            self.config.image_bytes,
            self.window.pages
        );
        if probe::read_u64(self.window.vmm_page(0)).is_ok() {
            fail(format_args!("the window still reaches a donated page"));
        }
        debug_println!("the window no longer reaches them (the read above faulted)");
        self.start_guest();
    }

    fn finish(&mut self) {
        match audit() {
            Ok(report) if report.violations == 0 => debug_println!(
                "audit: 0 violations over {} mapped pages",
                report.mapped_pages
            ),
            Ok(report) => fail(format_args!("audit: {} violations", report.violations)),
            Err(error) => fail(format_args!("PD_AUDIT: {error}")),
        }
        debug_println!("all {RUNS} runs passed");
        match self.config.done_channel {
            Some(channel) => {
                debug_println!("vmm: done; notifying channel {channel}");
                Channel::new(channel).notify();
            }
            None => system_off(0),
        }
    }

    /// The window page of guest address `ipa`, which the VMM must hold as a page the guest
    /// shared (a derived capability), with its frame.
    fn shared_page(&mut self, ipa: Ipa) -> Option<(Ipa, frameshift_abi::addr::PhysAddr)> {
        let page = self.window.page_of(ipa)?;
        match frame_cap_at(page) {
            Some((run, frame)) if run.held == CapHeld::Derived => Some((page, frame)),
            _ => None,
        }
    }

    fn read_message(&self, page: Ipa) -> [u8; PLAINTEXT_LEN] {
        let offset = page.get() - self.window.base.get();
        let mut message = [0u8; PLAINTEXT_LEN];
        for (index, chunk) in message.chunks_mut(8).enumerate() {
            let word = self
                .window_region
                .read_u64(offset + index as u64 * 8)
                .to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
        message
    }

    /// Carry out one doorbell command; returns its `STATUS` (and sets `VALUE`).
    fn command(&mut self, word: u64) -> u64 {
        let Some(command) = Command::decode(word) else {
            debug_println!("doorbell: unknown command word {word:#x}");
            return STATUS_UNKNOWN_COMMAND;
        };
        match command {
            Command::Hello { program, mode } => {
                self.checks.hello = Some((program, mode));
                debug_println!(
                    "guest is {} in {} mode (the hypervisor told it)",
                    program.name(),
                    mode.name()
                );
                STATUS_OK
            }
            Command::BufferShared(ipa) => {
                self.checks.check_buffer_half(ipa);
                let Some((page, frame)) = self.shared_page(ipa) else {
                    self.checks.fail(Problem::NotShared(ipa));
                    return 1;
                };
                let offset = page.get() - self.window.base.get();
                for (index, word) in demo::words(&demo::ciphertext()).enumerate() {
                    self.window_region
                        .write_u64(offset + index as u64 * 8, word);
                }
                self.checks.frame_before = Some(frame);
                debug_println!(
                    "step 1: the guest shared its buffer {ipa}: window page {page}, frame {frame}"
                );
                debug_println!(
                    "wrote the ChaCha20-encrypted frame ({PLAINTEXT_LEN} bytes) into it"
                );
                STATUS_OK
            }
            Command::BufferUnshared(ipa) => {
                let Some(page) = self.window.page_of(ipa) else {
                    self.checks.fail(Problem::NotShared(ipa));
                    return 1;
                };
                debug_println!(
                    "step 2: the guest unshared {ipa}; reading window page {page} again"
                );
                match probe::read_u64(page) {
                    Err(fault) => {
                        debug_println!(
                            "the read faulted (esr={:#x}, far={}): the page is the guest's alone, as expected",
                            fault.esr,
                            fault.far
                        );
                        self.checks.read_faulted = Some(true);
                        STATUS_FAULTED
                    }
                    Ok(value) => {
                        debug_println!("ISOLATION BROKEN: read {value:#x} from an unshared page");
                        self.checks.read_faulted = Some(false);
                        self.checks.fail(Problem::ReadAfterUnshare);
                        STATUS_OK
                    }
                }
            }
            Command::PlaintextReady(ipa) => {
                let Some((page, frame)) = self.shared_page(ipa) else {
                    self.checks.fail(Problem::NotShared(ipa));
                    return 1;
                };
                let message = self.read_message(page);
                let right = &message == PLAINTEXT;
                self.checks.plaintext_right = Some(right);
                self.checks.frame_after = Some(frame);
                let text = core::str::from_utf8(&message).unwrap_or("(not text)");
                debug_println!("step 4: the guest shared {ipa} again; it reads \"{text}\"");
                let before = self.checks.frame_before.unwrap_or_default();
                debug_println!(
                    "buffer frame before {before}, after {frame}: {}",
                    if before == frame {
                        "the same physical page, nothing moved or was copied"
                    } else {
                        "MOVED"
                    }
                );
                if right {
                    STATUS_OK
                } else {
                    1
                }
            }
            Command::Result { failures } => {
                self.checks.guest_failures = Some(failures);
                debug_println!("the guest reports {failures} failed checks");
                STATUS_OK
            }
            Command::Peek(ipa) => {
                let Some(page) = self.window.page_of(ipa) else {
                    return STATUS_UNKNOWN_COMMAND;
                };
                match probe::read_u64(page) {
                    Ok(value) => {
                        self.doorbell_value = value;
                        STATUS_OK
                    }
                    Err(_) => STATUS_FAULTED,
                }
            }
            Command::Memory(call, ipa) => self.memory_call(call, ipa),
            Command::ExpectGuardAbort(ipa) => {
                self.checks.expected_guard_abort = Some(ipa);
                STATUS_OK
            }
        }
    }

    /// A memory call the guest asked for, on its page `ipa`; returns the call's SMCCC status.
    fn memory_call(&mut self, call: VmmMemoryCall, ipa: Ipa) -> u64 {
        let (Some(page), guest_page) = (self.window.page_of(ipa), ipa.private_ipa().page_base())
        else {
            return STATUS_UNKNOWN_COMMAND;
        };
        let gives = matches!(
            call,
            VmmMemoryCall::ShareWithGuest | VmmMemoryCall::Lend | VmmMemoryCall::Donate
        );
        if gives {
            // Mark the page so the guest can see it got the VMM's: only if the VMM owns it.
            let owned = frame_cap_at(page).is_some_and(|(run, _)| run.held == CapHeld::Original);
            if owned {
                self.window_region
                    .write_u64(page.get() - self.window.base.get(), VMM_PAGE_MARK);
            }
        }
        let result = match call {
            VmmMemoryCall::ShareWithGuest => {
                self.vm.share_with_guest(guest_page, 1, Rights::READ_WRITE)
            }
            VmmMemoryCall::UnshareFromGuest => self.vm.unshare_from_guest(guest_page, 1),
            VmmMemoryCall::Lend => self.vm.lend(guest_page, 1, Rights::READ_WRITE),
            VmmMemoryCall::Reclaim => self.vm.reclaim(guest_page, 1),
            VmmMemoryCall::Donate => self.vm.donate(guest_page, 1),
        };
        match result {
            Ok(()) => STATUS_OK,
            Err(frameshift_pd::CallError::Refused(status)) => status as u64,
            Err(frameshift_pd::CallError::UnknownEvent(_)) => STATUS_UNKNOWN_COMMAND,
        }
    }

    fn doorbell(&mut self, offset: u64, access: DataAccess, value: u64) -> VmReply {
        if access.write {
            if offset == COMMAND {
                self.doorbell_value = 0;
                self.doorbell_status = self.command(value);
            }
            VmReply::skip()
        } else {
            VmReply::skip_with_read(match offset {
                STATUS => self.doorbell_status,
                VALUE => self.doorbell_value,
                _ => 0,
            })
        }
    }

    fn handle(&mut self, vcpu: Child, fault: VmFault) -> VmReply {
        match fault {
            VmFault::DataAbort { ipa, access, value, .. } if access.valid => {
                let offset = ipa.get() - ipa.page_base().get();
                if ipa.page_base() == UART_IPA {
                    uart_access(self.vm, &mut self.uart, offset, access, value)
                } else if ipa.page_base() == DOORBELL_IPA {
                    self.doorbell(offset, access, value)
                } else {
                    fail(format_args!("vCPU {}: no device at {ipa} to emulate", vcpu.index()))
                }
            }
            VmFault::DataAbort { ipa, esr, .. } => fail(format_args!(
                "vCPU {}: access to {ipa} without a valid syndrome (esr={esr:#x}) cannot be emulated",
                vcpu.index()
            )),
            VmFault::Abort { ipa, esr } if self.checks.is_expected_guard_abort(ipa) => {
                self.checks.guard_abort_seen = true;
                debug_println!(
                    "MMIO guard: the guest's access to unregistered {ipa} arrived as an abort (esr={esr:#x}), not for emulation, as expected"
                );
                self.run_ended();
                VmReply::stop()
            }
            VmFault::Abort { ipa, esr } => fail(format_args!(
                "vCPU {}: abort at {ipa} (esr={esr:#x}) the VMM may not emulate",
                vcpu.index()
            )),
            VmFault::Hvc { x } => {
                debug_println!("forwarded HVC {:#x}: not a call this VMM serves", x[0]);
                VmReply::skip_with_results(forwarded_call_answer(Conduit::Hvc, &x))
            }
            VmFault::Smc { x } => {
                debug_println!("forwarded SMC {:#x}: not a call this VMM serves", x[0]);
                VmReply::skip_with_results(forwarded_call_answer(Conduit::Smc, &x))
            }
            VmFault::Power { function } if function == u64::from(PSCI_CPU_OFF) && vcpu != self.vm => {
                debug_println!("vCPU {} turned itself off (PSCI CPU_OFF)", vcpu.index());
                VmReply::stop()
            }
            VmFault::Power { function } => {
                let name = match function {
                    f if f == u64::from(PSCI_SYSTEM_OFF) => "SYSTEM_OFF",
                    f if f == u64::from(PSCI_SYSTEM_RESET) => "SYSTEM_RESET",
                    _ => "CPU_OFF",
                };
                debug_println!("the guest stopped its VM (PSCI {name}); the system runs on");
                self.run_ended();
                VmReply::stop()
            }
            VmFault::Vppi { irq } => forward_virtual_ppi(vcpu, irq),
            VmFault::Exception { esr, pc } => fail(format_args!(
                "vCPU {}: exception esr={esr:#x} pc={pc:#x} the hypervisor did not handle",
                vcpu.index()
            )),
        }
    }
}

impl Handler for Vmm {
    fn notified(&mut self, channels: ChannelSet) {
        match self.config.start_channel {
            Some(start) if channels.contains(Channel::new(start)) && self.run == 0 => {
                debug_println!("vmm: notified on channel {start}: starting the guest");
                self.start_guest();
            }
            _ => debug_println!(
                "vmm: notification on channels {:#x} ignored",
                channels.bits()
            ),
        }
    }

    fn fault(&mut self, child: Child, message: MessageInfo) -> Option<MessageInfo> {
        serve_vm_fault(child, message, |fault| self.handle(child, fault))
    }
}

frameshift_pd::protection_domain!(init);
