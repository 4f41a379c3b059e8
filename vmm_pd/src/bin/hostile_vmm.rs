//! The hostile VMM (`hostile_vmm.elf`, issue 10): it serves the hostile guest
//! (guest_images/programs/src/bin/hostile_guest.rs) and attacks it, one task per run, with a
//! teardown and a restart from the clean image between runs (frameshift_vm_protocol::hostile).
//!
//! - It reads and writes every page of its window while the guest holds them private, under the
//!   probe, and counts the faults (every access must fault).
//! - It donates a frame it does not own, reclaims a live guest's frame, lends and shares pages
//!   it does not hold, shares one page twice, and makes the guest's own `MEM_RELINQUISH` call
//!   itself; it restarts the vCPU at a pc outside guest RAM, reads and writes its registers
//!   while a hypercall is in flight, and injects interrupts that do not exist. Each request must
//!   be refused with its code (printed on one `attack` line each).
//! - ToCToU: it writes a shared buffer in a loop, preempted in and out by the timer, while the
//!   guest unshares it; it counts the writes that landed and the faults after.
//! - Each teardown: every reclaimed frame reads all zero, and the kernel's counts (its audit's
//!   mapped pages, the VMM's own frames) are the same at the start of every run.
//!
//! Its last lines: `hostile-vmm ...` with its figures, then the audit (with the auditor's dump).
#![cfg_attr(target_os = "none", no_std, no_main)]
#![deny(unsafe_code)]

use frameshift_abi::addr::{Ipa, PAGE_SIZE};
use frameshift_abi::guest_call::{MAX_RANGE_PAGES, MEM_RELINQUISH};
use frameshift_pd::call::{self as pd_call, CallRegisters};
use frameshift_pd::memory::CapHeld;
use frameshift_pd::symbols::read_patched;
use frameshift_pd::vm_fault::DataAccess;
use frameshift_pd::{
    audit, audit_and_dump, debug_println, frame_cap_at, memory_region_symbol, probe, system_off,
    Channel, ChannelSet, Child, Handler, MessageInfo, Region, Rights, VcpuRegister, VmFault,
    VmReply,
};
use frameshift_vm_protocol::answers::{forwarded_call_answer, Conduit};
use frameshift_vm_protocol::boot::{BOOT_MAGIC, GUEST_ENTRY};
use frameshift_vm_protocol::doorbell::{
    COMMAND, DOORBELL_IPA, STATUS, STATUS_OK, STATUS_UNKNOWN_COMMAND, VALUE,
};
use frameshift_vm_protocol::hostile::{
    Ask, HostileCommand, Params, Task, PLAN_ATTACKS, PLAN_CYCLES, PLAN_SOAK, SHARED_MARK,
    TOCTOU_FAULTS, UNREGISTERED_MMIO,
};
use frameshift_vm_protocol::pl011::UART_IPA;
use frameshift_vmm::config::{Config, Symbols, UNSET};
use frameshift_vmm::pl011::Pl011;
use frameshift_vmm::window::Window;
use frameshift_vmm_pd::forward_virtual_ppi;

/// Parameters when system.xml gives no `hostile_params` region.
const DEFAULT_PARAMS: Params = Params {
    calls: 10_000,
    seed: 0x5eed,
    cycles: 3,
    plan: PLAN_SOAK | PLAN_ATTACKS | PLAN_CYCLES,
};
/// The ToCToU writer gives up after this many writes without a fault.
const TOCTOU_MAX_WRITES: u64 = 50_000_000;

/// `setvar_id` symbols: left at [`UNSET`] when system.xml does not set them.
mod ids {
    #![allow(non_upper_case_globals, unsafe_code)]

    #[no_mangle]
    #[link_section = ".data"]
    pub(super) static guest_vcpu_id: u64 = super::UNSET;
    #[no_mangle]
    #[link_section = ".data"]
    pub(super) static attacker_channel: u64 = super::UNSET;
}

/// The VMM's figures.
#[derive(Default)]
struct Figures {
    forwarded: u64,
    window_faults: u64,
    window_accesses_landed: u64,
    refusals: u64,
    accepted_attacks: u64,
    toctou_landed: u64,
    toctou_faults: u64,
    toctou_late: u64,
    mmio_aborts: u64,
    zero_pages_checked: u64,
    /// Accesses to a just-donated page that faulted, and that landed.
    donated_faults: u64,
    donated_landed: u64,
    nonzero_pages: u64,
    count_drift: u64,
}

struct Vmm {
    params: Params,
    vm: Child,
    window: Window,
    window_region: Region,
    image_region: Region,
    image_bytes: u64,
    attacker: Option<Channel>,
    uart: Pl011,
    doorbell_status: u64,
    doorbell_value: u64,
    /// Runs started so far.
    run: u64,
    task: Task,
    figures: Figures,
    /// (mapped pages, VMM-held window frames) at the start of the first run after a teardown.
    baseline: Option<(u64, u64)>,
    window_attacked: bool,
    spin_ended: bool,
    attacker_done: bool,
    /// The dump while the guest shares a page was written.
    dumped_shared: bool,
}

fn fail(reason: core::fmt::Arguments<'_>) -> ! {
    debug_println!("FAILED: {reason}");
    system_off(1)
}

fn read_params() -> Params {
    let base = memory_region_symbol!(hostile_params_vaddr);
    if base.get() == 0 {
        return DEFAULT_PARAMS;
    }
    #[allow(unsafe_code)]
    // SAFETY: system.xml maps the parameter block's region readable at `hostile_params_vaddr`,
    // a whole page, so its five words lie in it; nothing of this program lives there.
    let region = unsafe { Region::new(base, PAGE_SIZE) };
    let words = core::array::from_fn(|index| region.read_u64(index as u64 * 8));
    Params::decode(words).unwrap_or_else(|| fail(format_args!("hostile_params: no magic")))
}

fn init() -> Vmm {
    let symbols = Symbols {
        guest_ram_vaddr: memory_region_symbol!(guest_ram_vaddr).get(),
        guest_ram_size: memory_region_symbol!(guest_ram_size).get(),
        guest_image_vaddr: memory_region_symbol!(guest_image_vaddr).get(),
        guest_image_size: memory_region_symbol!(guest_image_size).get(),
        guest_vcpu_id: read_patched(&ids::guest_vcpu_id),
        vmm_start_channel: UNSET,
        vmm_done_channel: UNSET,
    };
    let config: Config = Config::from_symbols(&symbols)
        .unwrap_or_else(|error| fail(format_args!("configuration: {error}")));
    let params = read_params();
    #[allow(unsafe_code)]
    // SAFETY: system.xml maps the guest's RAM read-write at `guest_ram_vaddr` for its whole
    // size (the window); nothing of this program lies there. The VMM touches a window page
    // with plain accesses only when it holds a capability for it, and probes it otherwise.
    let window_region = unsafe { Region::new(config.window, config.pages * PAGE_SIZE) };
    #[allow(unsafe_code)]
    // SAFETY: the clean image's region is mapped readable at `guest_image_vaddr`, page
    // granular, so the image rounded up to 8 bytes lies in it; it overlaps nothing of ours.
    let image_region = unsafe { Region::new(config.image, config.image_bytes.next_multiple_of(8)) };
    let attacker = match read_patched(&ids::attacker_channel) {
        UNSET => None,
        id => Some(Channel::new(id as usize)),
    };
    debug_println!(
        "hostile-vmm: calls={} seed={:#x} cycles={} plan={:#x}, window {} ({} pages)",
        params.calls,
        params.seed,
        params.cycles,
        params.plan,
        config.window,
        config.pages
    );
    let mut vmm = Vmm {
        params,
        vm: Child::new(config.vcpu),
        window: Window {
            base: config.window,
            pages: config.pages,
        },
        window_region,
        image_region,
        image_bytes: config.image_bytes,
        attacker,
        uart: Pl011::new(),
        doorbell_status: STATUS_OK,
        doorbell_value: 0,
        run: 0,
        task: Task::Soak,
        figures: Figures::default(),
        baseline: None,
        window_attacked: false,
        spin_ended: false,
        attacker_done: false,
        dumped_shared: false,
    };
    match vmm.task_of(1) {
        Some(task) => vmm.start(task),
        None => fail(format_args!("the plan {:#x} has no run", params.plan)),
    }
    vmm
}

/// The code of a refused call (0 if it was accepted).
fn code<T>(result: Result<T, frameshift_pd::CallError>) -> i64 {
    match result {
        Ok(_) => 0,
        Err(frameshift_pd::CallError::Refused(status)) => status,
        Err(frameshift_pd::CallError::UnknownEvent(_)) => i64::MIN,
    }
}

impl Vmm {
    /// The task of run `run` (from 1) under the plan, or `None` after the last.
    fn task_of(&self, run: u64) -> Option<Task> {
        let plan = self.params.plan;
        let on = |bit: u64, count: u64| if plan & bit != 0 { count } else { 0 };
        let tasks = [
            (Task::Soak, on(PLAN_SOAK, 1)),
            (Task::VmmAttacks, on(PLAN_ATTACKS, 1)),
            (Task::Toctou, on(PLAN_ATTACKS, 1)),
            (Task::Cycle, on(PLAN_CYCLES, self.params.cycles)),
            (Task::Hlt, on(PLAN_ATTACKS, 1)),
            (Task::Mmio, on(PLAN_ATTACKS, 1)),
            (Task::Spin, on(PLAN_ATTACKS, 1)),
        ];
        let mut left = run;
        for (task, count) in tasks {
            if left <= count {
                return Some(task);
            }
            left -= count;
        }
        None
    }

    fn start(&mut self, task: Task) {
        self.run += 1;
        self.task = task;
        self.uart.clear();
        if let Err(error) = self.vm.vcpu_write_reg(VcpuRegister::x(0), BOOT_MAGIC) {
            fail(format_args!("writing the boot vCPU's x0: {error}"));
        }
        if let Err(error) = self.vm.vcpu_restart(GUEST_ENTRY) {
            fail(format_args!("starting the boot vCPU: {error}"));
        }
        debug_println!("run {}: task {}", self.run, task.name());
    }

    /// The run ended (the guest powered its VM off, or the VMM stopped it).
    fn run_ended(&mut self) {
        let pending = self.uart.pending();
        if !pending.is_empty() {
            let _ = self.vm.vm_console_write(pending);
            let _ = self.vm.vm_console_write(b"\n");
        }
        if self.task == Task::Spin {
            self.spin_ended = true;
            if self.attacker.is_some() && !self.attacker_done {
                debug_println!("spin run ended; waiting for the attacker");
                return;
            }
        }
        self.next_run();
    }

    fn next_run(&mut self) {
        match self.task_of(self.run + 1) {
            Some(task) => {
                self.teardown();
                self.start(task);
            }
            None => self.finish(),
        }
    }

    /// Window frames the VMM holds as their owner.
    fn owned_window_frames(&self) -> u64 {
        (0..self.window.pages)
            .filter(|&page| {
                frame_cap_at(self.window.vmm_page(page))
                    .is_some_and(|(run, _)| run.held == CapHeld::Original)
            })
            .count() as u64
    }

    fn teardown(&mut self) {
        if let Err(error) = self.vm.teardown() {
            fail(format_args!("PD_VM_TEARDOWN: {error}"));
        }
        let owned = self.owned_window_frames();
        if owned != self.window.pages {
            fail(format_args!(
                "teardown: {owned} of {} window frames came back",
                self.window.pages
            ));
        }
        for page in 0..self.window.pages {
            let offset = page * PAGE_SIZE;
            let nonzero =
                (0..PAGE_SIZE / 8).any(|word| self.window_region.read_u64(offset + word * 8) != 0);
            self.figures.zero_pages_checked += 1;
            if nonzero {
                self.figures.nonzero_pages += 1;
                debug_println!(
                    "FAIL teardown: guest page {} came back not zeroed",
                    self.window.guest_page(page)
                );
            }
        }
        let words = self.image_bytes.div_ceil(8);
        for word in 0..words {
            self.window_region
                .write_u64(word * 8, self.image_region.read_u64(word * 8));
        }
        let mut page = 0;
        while page < self.window.pages {
            let count = (self.window.pages - page).min(MAX_RANGE_PAGES);
            if let Err(error) = self.vm.donate(self.window.guest_page(page), count) {
                fail(format_args!("donating {count} pages: {error}"));
            }
            page += count;
        }
        // The image's first page was written just above, so this CPU's TLB holds the VMM's
        // translation of it: right after the donation (no other domain ran, VTTBR_EL2 never
        // changed) a read and a write must both fault, which only a TLB invalidation by the
        // donation ensures.
        let first = self.window.vmm_page(0);
        for landed in [
            probe::read_u64(first).is_ok(),
            probe::write_u64(first, 0x5741_4C4B).is_ok(),
        ] {
            if landed {
                self.figures.donated_landed += 1;
                debug_println!("FAIL teardown: the window still reaches the donated page {first}");
            } else {
                self.figures.donated_faults += 1;
            }
        }
        let mapped = audit().map_or(u64::MAX, |report| report.mapped_pages);
        let counts = (mapped, self.owned_window_frames());
        match self.baseline {
            None => self.baseline = Some(counts),
            Some(baseline) if baseline != counts => {
                self.figures.count_drift += 1;
                debug_println!(
                    "FAIL counts: mapped pages and VMM frames {counts:?}, at the first restart {baseline:?}"
                );
            }
            Some(_) => {}
        }
    }

    fn finish(&mut self) {
        let figures = &self.figures;
        debug_println!(
            "hostile-vmm runs={} forwarded={} window-faults={} window-landed={} refusals={} accepted-attacks={}",
            self.run,
            figures.forwarded,
            figures.window_faults,
            figures.window_accesses_landed,
            figures.refusals,
            figures.accepted_attacks,
        );
        debug_println!(
            "hostile-vmm toctou-landed={} toctou-faults={} toctou-late={} mmio-aborts={}",
            figures.toctou_landed,
            figures.toctou_faults,
            figures.toctou_late,
            figures.mmio_aborts,
        );
        debug_println!(
            "hostile-vmm zero-pages={} nonzero-pages={} count-drift={} donated-faults={} donated-landed={}",
            figures.zero_pages_checked,
            figures.nonzero_pages,
            figures.count_drift,
            figures.donated_faults,
            figures.donated_landed
        );
        match audit_and_dump() {
            Ok(report) => debug_println!(
                "audit: {} violations over {} mapped pages, {} audits run since boot",
                report.violations,
                report.mapped_pages,
                report.audits_run
            ),
            Err(error) => fail(format_args!("PD_AUDIT: {error}")),
        }
        let clean = figures.window_accesses_landed == 0
            && figures.accepted_attacks == 0
            && figures.toctou_late == 0
            && figures.nonzero_pages == 0
            && figures.count_drift == 0
            && figures.donated_landed == 0;
        system_off(if clean { 0 } else { 1 })
    }

    /// One attack that must be refused; prints it and counts the verdict.
    fn refused(&mut self, what: &str, code: i64) {
        if code < 0 {
            self.figures.refusals += 1;
            debug_println!("attack {what}: refused code={code}");
        } else {
            self.figures.accepted_attacks += 1;
            debug_println!("FAIL attack {what}: accepted");
        }
    }

    /// The guest's page `ipa` holds its secret and is private: attack it. Returns (`STATUS` =
    /// attacks accepted, `VALUE` = faults).
    fn attack_private(&mut self, vcpu: Child, ipa: Ipa) -> (u64, u64) {
        let accepted_before = self.figures.accepted_attacks;
        let faults_before = self.figures.window_faults;
        if !self.window_attacked {
            self.window_attacked = true;
            // Every page of the window is the guest's now (nothing is shared): every read and
            // every write must fault.
            for page in 0..self.window.pages {
                let address = self.window.vmm_page(page);
                // A page the guest gave back (for the share-twice attack) is the VMM's own.
                if frame_cap_at(address).is_some() {
                    continue;
                }
                match probe::read_u64(address) {
                    Err(_) => self.figures.window_faults += 1,
                    Ok(_) => self.figures.window_accesses_landed += 1,
                }
                match probe::write_u64(address.add(8), 0x4841_434b_4544_2121) {
                    Err(_) => self.figures.window_faults += 1,
                    Ok(()) => self.figures.window_accesses_landed += 1,
                }
            }
            debug_println!(
                "attack window: reads and writes of every private page, {} faulted, {} landed",
                self.figures.window_faults - faults_before,
                self.figures.window_accesses_landed
            );
            // The vCPU is in a hypercall (this MMIO access) right now.
            self.refused(
                "vcpu-restart-outside-ram",
                code(vcpu.vcpu_restart(Ipa(0x1000))),
            );
            self.refused(
                "vcpu-write-x0-in-flight",
                code(vcpu.vcpu_write_reg(VcpuRegister::x(0), 0)),
            );
            self.refused("vcpu-read-pc", code(vcpu.vcpu_read_reg(VcpuRegister::PC)));
            for intid in [1020u16, 1023, 4096, u16::MAX] {
                let result = vcpu.vcpu_inject_irq(intid, 0xA0, 1);
                self.refused("inject-nonexistent-irq", code(result));
            }
            // The guest's own call, made by the VMM: not a PD call.
            let mut registers = CallRegisters::new(MEM_RELINQUISH);
            registers.0[1] = ipa.get();
            registers.0[2] = 1;
            pd_call::hvc(&mut registers);
            self.refused("relinquish-for-the-guest", registers.0[0] as i64);
            // Share one page twice: the page the guest relinquished to the VMM for this.
            let owned = (0..self.window.pages).find(|&page| {
                frame_cap_at(self.window.vmm_page(page))
                    .is_some_and(|(run, _)| run.held == CapHeld::Original)
            });
            match owned {
                Some(page) => {
                    let guest_page = self.window.guest_page(page);
                    let first = self.vm.share_with_guest(guest_page, 1, Rights::READ_WRITE);
                    if first.is_err() {
                        self.figures.accepted_attacks += 1;
                        debug_println!("FAIL share-once: {}", code(first));
                    }
                    let second = self.vm.share_with_guest(guest_page, 1, Rights::READ_WRITE);
                    self.refused("share-twice", code(second));
                    let _ = self.vm.unshare_from_guest(guest_page, 1);
                }
                None => {
                    self.figures.accepted_attacks += 1;
                    debug_println!("FAIL share-twice: the VMM owns no window page");
                }
            }
        }
        let page = ipa.private_ipa().page_base();
        self.refused("donate-not-owned", code(self.vm.donate(page, 1)));
        self.refused("reclaim-live", code(self.vm.reclaim(page, 1)));
        self.refused(
            "lend-not-owned",
            code(self.vm.lend(page, 1, Rights::READ_WRITE)),
        );
        self.refused(
            "share-not-owned",
            code(self.vm.share_with_guest(page, 1, Rights::READ_WRITE)),
        );
        self.refused(
            "unshare-not-shared",
            code(self.vm.unshare_from_guest(page, 1)),
        );
        (
            self.figures.accepted_attacks - accepted_before,
            self.figures.window_faults - faults_before,
        )
    }

    /// ToCToU: write the buffer until the writes have faulted `TOCTOU_FAULTS` times. Returns
    /// (writes landed after the first fault, writes landed).
    fn toctou_write(&mut self, ipa: Ipa) -> (u64, u64) {
        let Some(page) = self.window.page_of(ipa) else {
            return (u64::MAX, 0);
        };
        let mut landed = 0u64;
        let mut faults = 0u64;
        let mut late = 0u64;
        let mut writes = 0u64;
        while faults < TOCTOU_FAULTS && writes < TOCTOU_MAX_WRITES {
            writes += 1;
            match probe::write_u64(page, writes) {
                Ok(()) if faults == 0 => landed += 1,
                Ok(()) => late += 1,
                Err(_) => {
                    faults += 1;
                    // The fault is the hypervisor's word that the page left the VMM: its
                    // capability must be gone too (and the call renews the fault budget).
                    if frame_cap_at(page).is_some() {
                        late += 1;
                    }
                }
            }
        }
        self.figures.toctou_landed += landed;
        self.figures.toctou_faults += faults;
        self.figures.toctou_late += late;
        debug_println!(
            "toctou: {landed} writes landed before MEM_UNSHARE, then {faults} faulted, {late} landed after the first fault"
        );
        if faults < TOCTOU_FAULTS {
            fail(format_args!("toctou: {writes} writes and no unshare"));
        }
        (late, landed)
    }

    /// Carry out one doorbell command; returns its `STATUS` (and sets `VALUE`).
    fn command(&mut self, vcpu: Child, word: u64) -> u64 {
        let Some(command) = HostileCommand::decode(word) else {
            debug_println!("doorbell: unknown command word {word:#x}");
            return STATUS_UNKNOWN_COMMAND;
        };
        let (status, value) = match command {
            HostileCommand::Ask(Ask::Task) => (STATUS_OK, self.task.code()),
            HostileCommand::Ask(Ask::Calls) => (STATUS_OK, self.params.calls),
            HostileCommand::Ask(Ask::Seed) => (STATUS_OK, self.params.seed),
            HostileCommand::Ask(Ask::Run) => (STATUS_OK, self.run),
            HostileCommand::Ask(Ask::Audit) => match audit() {
                Ok(report) => (report.violations, report.audits_run),
                Err(error) => fail(format_args!("PD_AUDIT: {error}")),
            },
            HostileCommand::AttackPrivate(ipa) => self.attack_private(vcpu, ipa),
            HostileCommand::Shared(ipa) => match self.window.page_of(ipa) {
                Some(page)
                    if frame_cap_at(page).is_some_and(|(run, _)| run.held == CapHeld::Derived) =>
                {
                    self.window_region
                        .write_u64(page.get() - self.window.base.get(), SHARED_MARK);
                    if !self.dumped_shared {
                        // The auditor's dump while a page is shared (cargo xtask audit).
                        self.dumped_shared = true;
                        if let Err(error) = audit_and_dump() {
                            fail(format_args!("PD_AUDIT: {error}"));
                        }
                    }
                    (STATUS_OK, 0)
                }
                _ => (1, 0),
            },
            HostileCommand::ToctouWrite(ipa) => self.toctou_write(ipa),
            HostileCommand::Done => (STATUS_OK, 0),
            HostileCommand::Spinning => {
                if let Some(channel) = self.attacker {
                    channel.notify();
                }
                (STATUS_OK, 0)
            }
        };
        self.doorbell_value = value;
        status
    }

    fn handle(&mut self, vcpu: Child, fault: VmFault) -> VmReply {
        match fault {
            VmFault::DataAbort {
                ipa, access, value, ..
            } if access.valid => {
                let offset = ipa.get() - ipa.page_base().get();
                if ipa.page_base() == UART_IPA {
                    self.uart(offset, access, value)
                } else if ipa.page_base() == DOORBELL_IPA {
                    self.doorbell(vcpu, offset, access, value)
                } else {
                    fail(format_args!("no device at {ipa} to emulate"))
                }
            }
            VmFault::DataAbort { ipa, esr, .. } => fail(format_args!(
                "access to {ipa} without a valid syndrome (esr={esr:#x})"
            )),
            VmFault::Abort { ipa, esr }
                if self.task == Task::Mmio && ipa.page_base() == UNREGISTERED_MMIO =>
            {
                self.figures.mmio_aborts += 1;
                debug_println!(
                    "mmio: the guest's read of unregistered {ipa} came as an abort (esr={esr:#x}), not for emulation; stopping the run"
                );
                self.run_ended();
                VmReply::stop()
            }
            VmFault::Abort { ipa, esr } => fail(format_args!("abort at {ipa} (esr={esr:#x})")),
            VmFault::Hvc { x } => {
                self.figures.forwarded += 1;
                VmReply::skip_with_results(forwarded_call_answer(Conduit::Hvc, &x))
            }
            VmFault::Smc { x } => {
                self.figures.forwarded += 1;
                VmReply::skip_with_results(forwarded_call_answer(Conduit::Smc, &x))
            }
            VmFault::Power { .. } if vcpu != self.vm => VmReply::stop(),
            VmFault::Power { function } => {
                debug_println!(
                    "run {} ({}) ended: PSCI {function:#x}",
                    self.run,
                    self.task.name()
                );
                self.run_ended();
                VmReply::stop()
            }
            VmFault::Vppi { irq } => forward_virtual_ppi(vcpu, irq),
            VmFault::Exception { esr, pc } => {
                fail(format_args!("exception esr={esr:#x} pc={pc:#x} at EL2"))
            }
        }
    }

    fn uart(&mut self, offset: u64, access: DataAccess, value: u64) -> VmReply {
        if access.write {
            if let Some(line) = self.uart.write(offset, value) {
                let _ = self.vm.vm_console_write(line);
            }
            VmReply::skip()
        } else {
            VmReply::skip_with_read(self.uart.read(offset))
        }
    }

    fn doorbell(&mut self, vcpu: Child, offset: u64, access: DataAccess, value: u64) -> VmReply {
        if access.write {
            if offset == COMMAND {
                self.doorbell_value = 0;
                self.doorbell_status = self.command(vcpu, value);
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
}

impl Handler for Vmm {
    fn notified(&mut self, channels: ChannelSet) {
        match self.attacker {
            Some(channel) if channels.contains(channel) => {
                self.attacker_done = true;
                if self.spin_ended {
                    self.next_run();
                }
            }
            _ => debug_println!("notification on channels {:#x} ignored", channels.bits()),
        }
    }

    fn fault(&mut self, child: Child, message: MessageInfo) -> Option<MessageInfo> {
        match VmFault::from_message(message) {
            Ok(fault) => self.handle(child, fault).send(),
            Err(other) => fail(format_args!(
                "child {} fault label {}: not a VM fault",
                child.index(),
                other.label
            )),
        }
    }
}

frameshift_pd::protection_domain!(init);
