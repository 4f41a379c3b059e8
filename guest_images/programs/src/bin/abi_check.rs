//! The ABI checker: calls every function of the guest ABI (docs/ABI.md, "Guest to hypervisor")
//! with valid and invalid arguments and checks every register of every answer against the
//! written spec. It prints `FAIL <check>: ...` for each failure, then
//! `abi-check passed=<n> failed=<m>`, and tells its VMM the count.
//!
//! It needs a VM with 4 MiB of RAM mapped `rwx` at 0x4000_0000 and two vCPUs (the second off),
//! and a VMM that serves the doorbell (it asks the VMM to peek at pages and to share, lend and
//! donate pages, so each conversion is also checked from the other side). Its last act is an
//! access to an MMIO page it never registered, which must reach the VMM as an abort that is
//! not emulated (the MMIO guard): that ends its run.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![deny(unsafe_code)]

use core::sync::atomic::{AtomicU64, Ordering};
use frameshift_abi::addr::{Ipa, PAGE_SIZE};
use frameshift_abi::guest_call::{
    self as abi, features_bitmap, KVM_UID, MEMINFO_GRANULE, MEMINFO_RANGE, PEER_HOST, PEER_NONE,
};
use frameshift_abi::smccc::{INVALID_PARAMETER, NOT_SUPPORTED};
use frameshift_guest::boot::{mode_from_mem_state, Guest};
use frameshift_guest::calls::raw;
use frameshift_guest::conduit::Conduit;
use frameshift_guest::console::{self, ConsoleBackend};
use frameshift_guest::page::WordView;
use frameshift_guest::{mmio, println, secondary};
use frameshift_guest_programs::{Checks, Doorbell, DOORBELL_PAGE};
use frameshift_vm_protocol::answers::{VMM_HVC_MARK, VMM_SMC_MARK};
use frameshift_vm_protocol::boot::ConversionMode;
use frameshift_vm_protocol::doorbell::{
    Command, ProgramKind, VmmMemoryCall, STATUS_OK, UNREGISTERED_MMIO_IPA, VMM_PAGE_MARK,
};

/// RAM the checks need: 4 MiB, the upper half free for them.
const RAM_PAGES: u64 = 1024;
/// What the guest writes into a page before it changes the page's state.
const PATTERN: u64 = 0x5a5a_0123_4567_a5a5;
/// State query `x4` for RAM mapped `rwx` in system.xml.
const RIGHTS_RWX: u64 = 7;
/// Rights of a page the VMM shares or lends read-write.
const RIGHTS_RW: u64 = 3;
/// PSCI `AFFINITY_INFO` / `CPU_ON` target that no VM here has.
const NO_SUCH_VCPU: u64 = 7;
/// PSCI functions Frameshift does not implement.
const PSCI_CPU_SUSPEND: u32 = 0xC400_0001;
const PSCI_MIGRATE: u32 = 0xC400_0005;
const PSCI_SYSTEM_SUSPEND: u32 = 0xC400_000E;
/// `SMCCC_ARCH_WORKAROUND_1`: an Arm architecture call Frameshift does not list.
const ARCH_WORKAROUND_1: u32 = 0x8000_8000;
/// A vendor hypervisor function number nobody defines.
const UNKNOWN_VENDOR_CALL: u32 = 0xC600_0050;

fn hvc(function: u32, args: &[u64]) -> [u64; 8] {
    let mut registers = [0u64; 7];
    for (slot, arg) in registers.iter_mut().zip(args) {
        *slot = *arg;
    }
    raw(Conduit::Hvc, function, registers)
}

/// `x0` as a signed status.
fn status(results: &[u64; 8]) -> i64 {
    results[0] as i64
}

struct Checker<'a> {
    guest: &'a Guest,
    mode: ConversionMode,
    checks: Checks,
    /// The first page the checks use (the upper half of RAM).
    free: Ipa,
}

impl Checker<'_> {
    fn page(&self, index: u64) -> Ipa {
        self.free.add(index * PAGE_SIZE)
    }

    /// A range call `function(ipa, pages)` must be refused with `INVALID_PARAMETER` and
    /// `x1` = 0 (no page done).
    fn refused(&mut self, name: &str, function: u32, ipa: Ipa, pages: u64) {
        let results = hvc(function, &[ipa.get(), pages, 0]);
        self.checks
            .equal(name, (status(&results), results[1]), (INVALID_PARAMETER, 0));
    }

    /// A range call must succeed for all `done` pages.
    fn done(&mut self, name: &str, function: u32, ipa: Ipa, pages: u64, done: u64) {
        let results = hvc(function, &[ipa.get(), pages, 0]);
        self.checks
            .equal(name, (status(&results), results[1]), (0, done));
    }

    /// The state query of `pages` pages from `ipa`: (x0, x1 run, x2 state, x3 peer, x5).
    fn state(&self, ipa: Ipa, pages: u64) -> (i64, u64, u64, u64, u64) {
        let r = hvc(abi::FS_MEM_STATE, &[ipa.get(), pages]);
        (status(&r), r[1], r[2], r[3], r[5])
    }

    fn expect_private(&mut self, name: &str, ipa: Ipa, pages: u64) {
        let got = self.state(ipa, pages);
        self.checks
            .equal(name, got, (0, pages.max(1), 1, PEER_NONE, ipa.get()));
    }

    fn expect_shared(&mut self, name: &str, ipa: Ipa, pages: u64) {
        let view = self.mode.shared_view(ipa).get();
        let got = self.state(ipa, pages);
        self.checks
            .equal(name, got, (0, pages.max(1), 2, PEER_HOST, view));
    }

    /// The VMM's read of the page: `Some(first word)`, or `None` if it faulted.
    fn peek(&self, ipa: Ipa) -> Option<u64> {
        match Doorbell.ring(Command::Peek(ipa)) {
            STATUS_OK => Some(Doorbell.value()),
            _ => None,
        }
    }

    fn vmm(&mut self, name: &str, call: VmmMemoryCall, ipa: Ipa, expected: i64) {
        let status = Doorbell.ring(Command::Memory(call, ipa)) as i64;
        self.checks.equal(name, status, expected);
    }

    fn arch_and_psci(&mut self) {
        self.checks.equal(
            "SMCCC_VERSION",
            hvc(abi::SMCCC_VERSION, &[])[0],
            abi::SMCCC_VERSION_1_1,
        );
        let listed = [
            abi::SMCCC_VERSION,
            abi::SMCCC_ARCH_FEATURES,
            abi::PSCI_VERSION,
            abi::PSCI_CPU_ON,
            abi::PSCI_SYSTEM_OFF,
            abi::PSCI_FEATURES,
            abi::VENDOR_HYP_CALL_UID,
            abi::VENDOR_HYP_FEATURES,
        ];
        for function in listed {
            let got = status(&hvc(abi::SMCCC_ARCH_FEATURES, &[u64::from(function)]));
            self.checks
                .equal("SMCCC_ARCH_FEATURES listed", (function, got), (function, 0));
        }
        for function in [abi::MEM_SHARE, ARCH_WORKAROUND_1, UNKNOWN_VENDOR_CALL] {
            let got = status(&hvc(abi::SMCCC_ARCH_FEATURES, &[u64::from(function)]));
            self.checks.equal(
                "SMCCC_ARCH_FEATURES other",
                (function, got),
                (function, NOT_SUPPORTED),
            );
        }

        self.checks.equal(
            "PSCI_VERSION",
            hvc(abi::PSCI_VERSION, &[])[0],
            abi::PSCI_VERSION_1_1,
        );
        let implemented = [
            abi::PSCI_VERSION,
            abi::PSCI_CPU_OFF,
            abi::PSCI_CPU_ON,
            abi::PSCI_AFFINITY_INFO,
            abi::PSCI_SYSTEM_OFF,
            abi::PSCI_SYSTEM_RESET,
            abi::PSCI_FEATURES,
            // Linux asks PSCI_FEATURES about SMCCC_VERSION before it uses SMCCC 1.1
            // (DESIGN.md 10); SMCCC_VERSION is implemented, so the answer is 0.
            abi::SMCCC_VERSION,
        ];
        for function in implemented {
            let got = status(&hvc(abi::PSCI_FEATURES, &[u64::from(function)]));
            self.checks
                .equal("PSCI_FEATURES implemented", (function, got), (function, 0));
        }
        for function in [PSCI_CPU_SUSPEND, PSCI_MIGRATE, PSCI_SYSTEM_SUSPEND] {
            let got = status(&hvc(abi::PSCI_FEATURES, &[u64::from(function)]));
            self.checks.equal(
                "PSCI_FEATURES not implemented",
                (function, got),
                (function, abi::PSCI_NOT_SUPPORTED),
            );
        }

        let affinity =
            |target: u64, level: u64| status(&hvc(abi::PSCI_AFFINITY_INFO, &[target, level]));
        self.checks.equal(
            "AFFINITY_INFO self",
            affinity(0, 0),
            abi::AFFINITY_ON as i64,
        );
        self.checks.equal(
            "AFFINITY_INFO vCPU 1 off",
            affinity(1, 0),
            abi::AFFINITY_OFF as i64,
        );
        self.checks.equal(
            "AFFINITY_INFO no vCPU",
            affinity(NO_SUCH_VCPU, 0),
            abi::PSCI_INVALID_PARAMETERS,
        );
        self.checks.equal(
            "AFFINITY_INFO level 1",
            affinity(0, 1),
            abi::PSCI_INVALID_PARAMETERS,
        );

        let entry = secondary::entry().get();
        let cpu_on = |target: u64, entry: u64| status(&hvc(abi::PSCI_CPU_ON, &[target, entry, 0]));
        self.checks
            .equal("CPU_ON self", cpu_on(0, entry), abi::PSCI_ALREADY_ON);
        self.checks.equal(
            "CPU_ON no vCPU",
            cpu_on(NO_SUCH_VCPU, entry),
            abi::PSCI_INVALID_PARAMETERS,
        );
        self.checks.equal(
            "CPU_ON entry outside RAM",
            cpu_on(1, 0x1000_0000),
            abi::PSCI_INVALID_ADDRESS,
        );
        self.checks.equal(
            "AFFINITY_INFO still off",
            affinity(1, 0),
            abi::AFFINITY_OFF as i64,
        );
        self.secondary();
    }

    /// `CPU_ON` of vCPU 1: it runs with `x0` = the context id, sees MPIDR Aff0 = 1, and its
    /// `CPU_OFF` makes `AFFINITY_INFO` say off again.
    fn secondary(&mut self) {
        const CONTEXT: u64 = 0xC0_FFEE;
        let started = secondary::start(1, secondary_main, CONTEXT);
        self.checks
            .equal("CPU_ON vCPU 1", started.map_err(i64::from), Ok(()));
        let mut rounds = 0u64;
        while SECONDARY_CONTEXT.load(Ordering::Acquire) == 0 && rounds < WAIT_ROUNDS {
            secondary::wait_for_event();
            rounds += 1;
        }
        self.checks.equal(
            "secondary x0",
            SECONDARY_CONTEXT.load(Ordering::Acquire),
            CONTEXT,
        );
        self.checks.equal(
            "secondary MPIDR Aff0",
            SECONDARY_MPIDR.load(Ordering::Acquire) & 0xFF,
            1,
        );
        let mut off = false;
        for _ in 0..WAIT_ROUNDS {
            if status(&hvc(abi::PSCI_AFFINITY_INFO, &[1, 0])) == abi::AFFINITY_OFF as i64 {
                off = true;
                break;
            }
            secondary::wait_for_event();
        }
        self.checks
            .check("CPU_OFF", off, format_args!("vCPU 1 never turned off"));
    }

    fn vendor(&mut self) {
        let uid = hvc(abi::VENDOR_HYP_CALL_UID, &[]);
        self.checks
            .equal("UID", [uid[0], uid[1], uid[2], uid[3]], KVM_UID);
        let features = hvc(abi::VENDOR_HYP_FEATURES, &[]);
        let words = [features[0], features[1], features[2], features[3]];
        self.checks
            .equal("FEATURES", words, [0x29D, 0, 0, 0x0300_0000]);
        self.checks
            .equal("FEATURES = implemented", words, features_bitmap());
        let meminfo = hvc(abi::HYP_MEMINFO, &[0, 0, 0]);
        // x2 is the shared-alias bit, which must agree with what the state query says about the
        // alias of the first RAM page (boot took the mode from x2 alone).
        let alias = match mode_from_mem_state(self.page(0)) {
            ConversionMode::Split => abi::SPLIT_SHARED_BIT,
            ConversionMode::History => 0,
        };
        self.checks.equal(
            "HYP_MEMINFO",
            (meminfo[0], meminfo[1], meminfo[2]),
            (MEMINFO_GRANULE, MEMINFO_RANGE, alias),
        );

        self.checks
            .equal("UART registered", console::backend(), ConsoleBackend::Pl011);
        let guard = |ipa: u64| status(&hvc(abi::MMIO_GUARD, &[ipa, 0, 0]));
        self.checks
            .equal("MMIO_GUARD doorbell", guard(DOORBELL_PAGE.get()), 0);
        self.checks.equal(
            "MMIO_GUARD RAM",
            guard(self.page(0).get()),
            INVALID_PARAMETER,
        );
        self.checks.equal(
            "MMIO_GUARD unaligned",
            guard(DOORBELL_PAGE.get() + 4),
            INVALID_PARAMETER,
        );
    }

    fn state_query(&mut self) {
        let page = self.page(0);
        let r = hvc(abi::FS_MEM_STATE, &[page.get(), 1]);
        self.checks.equal(
            "FS_MEM_STATE private",
            first::<6>(&r),
            [0, 1, 1, PEER_NONE, RIGHTS_RWX, page.get()],
        );
        self.expect_private("FS_MEM_STATE pages 0 means 1", page, 0);
        self.expect_private("FS_MEM_STATE run of 8", page, 8);
        let outside = self.state(Ipa(0x1000_0000), 1);
        let nothing = outside.0 == INVALID_PARAMETER || (outside.0 == 0 && outside.2 == 0);
        self.checks.check(
            "FS_MEM_STATE outside RAM",
            nothing,
            format_args!("{outside:x?}"),
        );
    }

    fn share_and_unshare(&mut self) {
        let page = self.page(0);
        WordView::new(page).write(0, PATTERN);
        self.done("MEM_SHARE pages 0", abi::MEM_SHARE, page, 0, 1);
        self.expect_shared("shared state", page, 1);
        let shared_word = WordView::new(self.mode.shared_view(page)).read(0);
        self.checks
            .equal("same bytes in the shared view", shared_word, PATTERN);
        let peeked = self.peek(page);
        self.checks
            .equal("VMM reads the shared page", peeked, Some(PATTERN));
        self.refused("MEM_SHARE twice", abi::MEM_SHARE, page, 1);
        // A neighbour stays shared: the unshare takes exactly its one page (the VMM still reads
        // the neighbour) and removes one descriptor from a table that stays.
        let neighbour = self.page(1);
        WordView::new(neighbour).write(0, !PATTERN);
        self.done("MEM_SHARE neighbour", abi::MEM_SHARE, neighbour, 1, 1);
        let peeked = self.peek(neighbour);
        self.checks
            .equal("VMM reads the neighbour", peeked, Some(!PATTERN));
        self.done("MEM_UNSHARE pages 0", abi::MEM_UNSHARE, page, 0, 1);
        self.expect_private("private again", page, 1);
        let peeked = self.peek(page);
        self.checks
            .equal("VMM read faults after MEM_UNSHARE", peeked, None);
        let peeked = self.peek(neighbour);
        self.checks
            .equal("VMM still reads the neighbour", peeked, Some(!PATTERN));
        self.done("MEM_UNSHARE neighbour", abi::MEM_UNSHARE, neighbour, 1, 1);
        self.checks
            .equal("contents kept", WordView::new(page).read(0), PATTERN);
        self.refused("MEM_UNSHARE private", abi::MEM_UNSHARE, page, 1);

        self.done("MEM_SHARE 4 pages", abi::MEM_SHARE, self.page(1), 4, 4);
        let run = self.state(self.page(1), 8);
        self.checks
            .equal("state run of 4 shared", (run.0, run.1, run.2), (0, 4, 2));
        self.done("MEM_UNSHARE 4 pages", abi::MEM_UNSHARE, self.page(1), 4, 4);

        self.refused("MEM_SHARE unaligned", abi::MEM_SHARE, page.add(8), 1);
        self.refused("MEM_SHARE 513 pages", abi::MEM_SHARE, page, 513);
        self.refused("MEM_SHARE outside RAM", abi::MEM_SHARE, Ipa(0x1000_0000), 1);
        self.done("MEM_SHARE 512 pages", abi::MEM_SHARE, page, 512, 512);
        self.done("MEM_UNSHARE 512 pages", abi::MEM_UNSHARE, page, 512, 512);

        // The last two pages of RAM and one past it: refused whole, and neither RAM page
        // becomes visible to the VMM.
        let end = self.guest.ram.end();
        let last_two = Ipa(end.get() - 2 * PAGE_SIZE);
        self.refused("MEM_SHARE past the end", abi::MEM_SHARE, last_two, 3);
        self.expect_private("past the end: nothing shared", last_two, 2);
        let peeks = (self.peek(last_two), self.peek(last_two.add(PAGE_SIZE)));
        self.checks
            .equal("past the end: VMM sees nothing", peeks, (None, None));

        // A range whose second page is shared cannot be unshared whole.
        self.done("MEM_SHARE one", abi::MEM_SHARE, self.page(5), 1, 1);
        self.refused(
            "MEM_UNSHARE partly shared",
            abi::MEM_UNSHARE,
            self.page(4),
            2,
        );
        self.expect_shared("partly shared: still shared", self.page(5), 1);
        self.expect_private("partly shared: still private", self.page(4), 1);
        self.done("MEM_UNSHARE one", abi::MEM_UNSHARE, self.page(5), 1, 1);

        let alias = page.shared_alias();
        match self.mode {
            ConversionMode::Split => {
                self.done("MEM_SHARE by alias", abi::MEM_SHARE, alias, 1, 1);
                self.expect_shared("shared by alias", page, 1);
                self.done("MEM_UNSHARE by alias", abi::MEM_UNSHARE, alias, 1, 1);
                self.expect_private("unshared by alias", page, 1);
            }
            ConversionMode::History => {
                self.refused("MEM_SHARE alias in history mode", abi::MEM_SHARE, alias, 1);
            }
        }
    }

    fn relinquish_and_vmm_calls(&mut self) {
        let page = self.page(100);
        WordView::new(page).write(0, PATTERN);
        self.done("MEM_RELINQUISH", abi::MEM_RELINQUISH, page, 1, 1);
        let gone = self.state(page, 1);
        self.checks
            .equal("relinquished: no page", (gone.0, gone.2), (0, 0));
        let peeked = self.peek(page);
        self.checks
            .equal("relinquished page zeroed for the VMM", peeked, Some(0));
        self.refused("MEM_RELINQUISH twice", abi::MEM_RELINQUISH, page, 1);
        self.refused(
            "MEM_RELINQUISH over a hole",
            abi::MEM_RELINQUISH,
            self.page(99),
            2,
        );
        self.expect_private("hole: neighbour kept", self.page(99), 1);
        self.refused("MEM_SHARE over a hole", abi::MEM_SHARE, self.page(99), 3);
        self.expect_private("hole: first page private", self.page(99), 1);
        self.expect_private("hole: last page private", self.page(101), 1);
        self.done(
            "MEM_SHARE for relinquish",
            abi::MEM_SHARE,
            self.page(101),
            1,
            1,
        );
        self.refused(
            "MEM_RELINQUISH shared",
            abi::MEM_RELINQUISH,
            self.page(101),
            1,
        );
        self.expect_shared("shared page kept", self.page(101), 1);
        self.done(
            "MEM_UNSHARE after relinquish",
            abi::MEM_UNSHARE,
            self.page(101),
            1,
            1,
        );

        // The VMM owns the relinquished page now: it shares, lends and donates it.
        let view = self.mode.shared_view(page);
        self.vmm("VMM share", VmmMemoryCall::ShareWithGuest, page, 0);
        let borrowed = self.state(page, 1);
        self.checks
            .equal("borrowed state", borrowed, (0, 1, 3, PEER_HOST, view.get()));
        let rights = hvc(abi::FS_MEM_STATE, &[page.get(), 1])[4];
        self.checks.equal("borrowed rights", rights, RIGHTS_RW);
        self.checks.equal(
            "the VMM's bytes",
            WordView::new(view).read(0),
            VMM_PAGE_MARK,
        );
        self.refused("MEM_UNSHARE borrowed", abi::MEM_UNSHARE, page, 1);
        self.refused("MEM_SHARE borrowed", abi::MEM_SHARE, page, 1);
        self.vmm("VMM unshare", VmmMemoryCall::UnshareFromGuest, page, 0);
        self.checks
            .equal("unshared by the VMM: no page", self.state(page, 1).2, 0);

        self.vmm("VMM lend", VmmMemoryCall::Lend, page, 0);
        self.checks.equal("lent state", self.state(page, 1).2, 3);
        let peeked = self.peek(page);
        self.checks.equal("lent: VMM has no access", peeked, None);
        self.vmm(
            "VMM reclaim while lent",
            VmmMemoryCall::Reclaim,
            page,
            INVALID_PARAMETER,
        );
        self.done("MEM_RELINQUISH lent", abi::MEM_RELINQUISH, page, 1, 1);
        self.checks
            .equal("dropped lent page: no page", self.state(page, 1).2, 0);
        self.vmm("VMM reclaim", VmmMemoryCall::Reclaim, page, 0);
        let peeked = self.peek(page);
        self.checks.check(
            "reclaimed: VMM reads",
            peeked.is_some(),
            format_args!("VMM read faulted"),
        );

        self.vmm("VMM donate", VmmMemoryCall::Donate, page, 0);
        self.expect_private("donated: private", page, 1);
        self.checks.equal(
            "donated: contents kept",
            WordView::new(page).read(0),
            VMM_PAGE_MARK,
        );
        let peeked = self.peek(page);
        self.checks
            .equal("donated: VMM has no access", peeked, None);
    }

    fn console_and_forwarding(&mut self) {
        let line = b"console-write ok\n";
        let mut words = [0u64; 7];
        for (slot, chunk) in words[1..].iter_mut().zip(line.chunks(8)) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            *slot = u64::from_le_bytes(word);
        }
        words[0] = line.len() as u64;
        let written = raw(Conduit::Hvc, abi::FS_CONSOLE_WRITE, words);
        self.checks.equal("FS_CONSOLE_WRITE", status(&written), 0);
        words[0] = abi::CONSOLE_WRITE_MAX + 1;
        let refused = raw(Conduit::Hvc, abi::FS_CONSOLE_WRITE, words);
        self.checks.equal(
            "FS_CONSOLE_WRITE 41 bytes",
            status(&refused),
            INVALID_PARAMETER,
        );

        // Not the hypervisor's calls: each must reach the VMM, including PD-call numbers (a
        // guest cannot make PD calls) and an SMC that names PSCI SYSTEM_OFF (a guest cannot
        // reach the firmware).
        for function in [UNKNOWN_VENDOR_CALL, 0xC600_0105, 0xC600_0100, 0xC300_0001] {
            let answer = hvc(function, &[0x1234]);
            self.checks.equal(
                "forwarded HVC",
                first::<4>(&answer),
                [
                    NOT_SUPPORTED as u64,
                    VMM_HVC_MARK,
                    u64::from(function),
                    0x1234,
                ],
            );
        }
        for function in [abi::PSCI_SYSTEM_OFF, abi::MEM_SHARE] {
            let answer = raw(Conduit::Smc, function, [0x1234, 0, 0, 0, 0, 0, 0]);
            self.checks.equal(
                "forwarded SMC",
                first::<4>(&answer),
                [
                    NOT_SUPPORTED as u64,
                    VMM_SMC_MARK,
                    u64::from(function),
                    0x1234,
                ],
            );
        }
    }
}

/// Bound on the waits for the secondary vCPU (each round is one `WFE`, which a hypervisor that
/// traps it turns into a yield).
const WAIT_ROUNDS: u64 = 10_000_000;

static SECONDARY_CONTEXT: AtomicU64 = AtomicU64::new(0);
static SECONDARY_MPIDR: AtomicU64 = AtomicU64::new(0);

fn secondary_main(context: u64) {
    SECONDARY_MPIDR.store(secondary::current_mpidr(), Ordering::Release);
    SECONDARY_CONTEXT.store(context, Ordering::Release);
    secondary::send_event();
}

/// The first `N` registers of an answer, for whole-answer comparisons.
fn first<const N: usize>(results: &[u64; 8]) -> [u64; N] {
    core::array::from_fn(|index| results[index])
}

fn run(guest: &Guest) {
    let Some(mode) = guest.mode else {
        println!("abi-check needs the Frameshift hypervisor: nothing to check here");
        return;
    };
    let mut checker = Checker {
        guest,
        mode,
        checks: Checks::default(),
        free: guest.ram.base.add(RAM_PAGES / 2 * PAGE_SIZE),
    };
    if !checker
        .checks
        .equal("RAM pages", guest.ram.pages, RAM_PAGES)
    {
        println!("abi-check passed=0 failed=1");
        return;
    }
    checker.vendor();
    Doorbell.ring(Command::Hello {
        program: ProgramKind::AbiCheck,
        mode,
    });
    checker.arch_and_psci();
    checker.state_query();
    checker.share_and_unshare();
    checker.relinquish_and_vmm_calls();
    checker.console_and_forwarding();

    let Checks { passed, failed } = checker.checks;
    Doorbell.ring(Command::ExpectGuardAbort(UNREGISTERED_MMIO_IPA));
    Doorbell.ring(Command::Result { failures: failed });
    println!("abi-check passed={passed} failed={failed}");
    println!(
        "last check: a read of unregistered MMIO page {UNREGISTERED_MMIO_IPA} must stop this VM"
    );
    #[allow(unsafe_code)]
    // SAFETY: the page is mapped as Device memory (`devices` below) and never registered; the
    // read is meant to be refused by the MMIO guard, and its value is not used.
    let value = unsafe { mmio::read32(UNREGISTERED_MMIO_IPA) };
    println!("FAIL mmio-guard: the unregistered read returned {value:#x}");
}

frameshift_guest::guest_main!(run, devices = [DOORBELL_PAGE, UNREGISTERED_MMIO_IPA]);
