//! The hostile guest (issue 10): it attacks the hypervisor through every door a guest has, and
//! checks between attacks that its own private pages still hold what it wrote.
//!
//! Each run it asks the hostile VMM for its task (frameshift_vm_protocol::hostile):
//!
//! - `soak`: N hypercalls from a seeded PRNG (ChaCha8 keystream; the seed is printed). Function
//!   ids are the implemented ones plus random ids across the SMCCC space (through `HVC`, some
//!   through `SMC`); arguments come from the boundaries: its own private and shared pages, a pool
//!   of pages it may lose, the VMM's IPAs, hypervisor memory, MMIO, unaligned addresses, the IPA
//!   limit, page counts that overflow `ipa + n * 4096`, and the split-mode alias. Calls that
//!   would end the run (`CPU_OFF`, `SYSTEM_OFF`, `SYSTEM_RESET`) are left to the other tasks;
//!   `CPU_ON` and `FS_CONSOLE_WRITE` get only arguments the hypervisor must refuse.
//! - `vmm-attacks`, `toctou`, `cycle`: the guest's half of the VMM-side attacks.
//! - `hlt`, `mmio`, `spin`: semihosting `HLT #0xF000`, an unregistered MMIO read, a spin with
//!   interrupts masked.
//!
//! Each run ends with one summary line, `hostile <task> ...` with its figures.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![deny(unsafe_code)]

use core::sync::atomic::{AtomicU64, Ordering};

use chacha20::cipher::{KeyIvInit, StreamCipher};
use chacha20::ChaCha8;
use frameshift_abi::addr::{Ipa, PAGE_SIZE};
use frameshift_abi::guest_call::{
    self as guest, fast_call, MAX_RANGE_PAGES, OWNER_ARCH, OWNER_STANDARD, OWNER_VENDOR_HYP,
};
use frameshift_abi::layout::{HYPERVISOR_BASE, HYPERVISOR_END};
use frameshift_guest::calls::{self, raw};
use frameshift_guest::conduit::Conduit;
use frameshift_guest::page::{self, WordView};
use frameshift_guest::{cpu, mmio, println, psci, secondary, Guest};
use frameshift_guest_programs::{Checks, DOORBELL_PAGE};
use frameshift_vm_protocol::boot::ConversionMode;
use frameshift_vm_protocol::doorbell::{COMMAND, DOORBELL_IPA, STATUS, VALUE};
use frameshift_vm_protocol::hostile::{
    Ask, HostileCommand, Task, SHARED_MARK, TOCTOU_FAULTS, UNREGISTERED_MMIO,
};

/// Private pages holding the secret.
const SECRET_PAGES: usize = 2;
/// Pages the soak may share, unshare and relinquish (they hold nothing the guest needs).
const POOL_PAGES: usize = 16;
/// Every this many calls, the whole secret is compared (a sampled word after every call).
const FULL_CHECK_EVERY: u64 = 4096;
/// The IPA space's end (40 bits).
const IPA_LIMIT: u64 = 1 << 40;
/// The split-mode alias bit.
const ALIAS: u64 = 1 << 39;

/// Ring the hostile doorbell; returns (`STATUS`, `VALUE`).
fn ring(command: HostileCommand) -> (u64, u64) {
    #[allow(unsafe_code)]
    // SAFETY: COMMAND, STATUS and VALUE are 64-bit registers of the doorbell page, which the
    // program maps as Device memory (`guest_main!`'s devices) and registers with MMIO_GUARD
    // before the first ring; the VMM emulates every access.
    unsafe {
        mmio::write64(DOORBELL_IPA.add(COMMAND), command.encode());
        (
            mmio::read64(DOORBELL_IPA.add(STATUS)),
            mmio::read64(DOORBELL_IPA.add(VALUE)),
        )
    }
}

fn ask(what: Ask) -> u64 {
    ring(HostileCommand::Ask(what)).1
}

/// A seeded PRNG: the ChaCha8 keystream under a key made of the seed.
struct Rng {
    cipher: ChaCha8,
    words: [u64; 8],
    next: usize,
}

impl Rng {
    fn new(seed: u64) -> Self {
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&seed.to_le_bytes());
        Self {
            cipher: ChaCha8::new(&key.into(), &[0u8; 12].into()),
            words: [0; 8],
            next: 8,
        }
    }

    fn word(&mut self) -> u64 {
        if self.next == self.words.len() {
            let mut bytes = [0u8; 64];
            self.cipher.apply_keystream(&mut bytes);
            for (word, chunk) in self.words.iter_mut().zip(bytes.chunks_exact(8)) {
                *word = u64::from_le_bytes([
                    chunk[0], chunk[1], chunk[2], chunk[3], chunk[4], chunk[5], chunk[6], chunk[7],
                ]);
            }
            self.next = 0;
        }
        self.next += 1;
        self.words[self.next - 1]
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.word() % bound.max(1)
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

/// The secret pages and the words written into them.
struct Secret {
    pages: [Ipa; SECRET_PAGES],
    salt: u64,
}

impl Secret {
    fn word(&self, page: usize, index: u64) -> u64 {
        (self.salt ^ (page as u64) << 48 ^ index).wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }

    fn fill(pages: [Ipa; SECRET_PAGES], salt: u64) -> Self {
        let secret = Self { pages, salt };
        for (page, base) in secret.pages.iter().enumerate() {
            let view = WordView::new(*base);
            for index in 0..PAGE_SIZE / 8 {
                view.write(index * 8, secret.word(page, index));
            }
        }
        secret
    }

    /// Words that differ from what was written: all of them, or one sampled word.
    fn mismatches(&self, sample: Option<u64>) -> u64 {
        let mut wrong = 0;
        for (page, base) in self.pages.iter().enumerate() {
            let view = WordView::new(*base);
            match sample {
                Some(index) => {
                    let index = index % (PAGE_SIZE / 8);
                    wrong += u64::from(view.read(index * 8) != self.word(page, index));
                }
                None => {
                    for index in 0..PAGE_SIZE / 8 {
                        wrong += u64::from(view.read(index * 8) != self.word(page, index));
                    }
                }
            }
        }
        wrong
    }
}

fn allocate<const N: usize>(checks: &mut Checks) -> Option<[Ipa; N]> {
    let mut pages = [Ipa(0); N];
    for slot in pages.iter_mut() {
        match page::allocate_page() {
            Some(page) => *slot = page,
            None => {
                checks.check("allocate", false, format_args!("no free page"));
                return None;
            }
        }
    }
    Some(pages)
}

/// What a soak draws its arguments from.
struct Targets {
    secret: [Ipa; SECRET_PAGES],
    pool: [Ipa; POOL_PAGES],
    ram_end: u64,
}

/// Pool pages the soak shares and unshares back and forth; the rest of the pool, and the free
/// RAM above it, it may relinquish for good.
const TOGGLE_PAGES: usize = 12;

impl Targets {
    /// The physical address of a page of hypervisor memory, named as an IPA. The guest's own
    /// RAM starts at the same address as the machine's, so only the part above it is named:
    /// below, it would be the guest's own code.
    fn hypervisor_page(&self, rng: &mut Rng) -> u64 {
        let first = HYPERVISOR_BASE.0.max(self.ram_end);
        first + rng.below((HYPERVISOR_END.0 - first) / PAGE_SIZE) * PAGE_SIZE
    }

    /// A pool page that goes back and forth between private and shared (most often), or any
    /// address a conversion may name.
    fn toggle(&self, rng: &mut Rng) -> u64 {
        if rng.below(10) < 7 {
            self.pool[rng.below(TOGGLE_PAGES as u64) as usize].get()
        } else {
            self.convertible(rng)
        }
    }

    /// A page the guest may lose (most often), or any address a conversion may name.
    fn disposable(&self, rng: &mut Rng) -> u64 {
        if rng.below(10) < 7 {
            let first = self.pool[TOGGLE_PAGES].get();
            // From the first disposable page up to just past RAM.
            first + rng.below((self.ram_end - first) / PAGE_SIZE + 2) * PAGE_SIZE
        } else {
            self.convertible(rng)
        }
    }

    /// A page address for a call that may convert memory: never a secret page (the guest would
    /// lose it legitimately), but anything else a guest can name.
    fn convertible(&self, rng: &mut Rng) -> u64 {
        // Never a page `toggle` uses: a relinquished page never comes back, and the soak keeps
        // converting those until its last call.
        let pool =
            self.pool[TOGGLE_PAGES + rng.below((POOL_PAGES - TOGGLE_PAGES) as u64) as usize].get();
        match rng.below(14) {
            0..=5 => pool,
            6 => pool | ALIAS,
            7 => (pool + rng.below(PAGE_SIZE)) | 1,
            8 => 0x2000_0000 + rng.below(512) * PAGE_SIZE, // the VMM's window, in its own space
            9 => self.hypervisor_page(rng),
            10 => rng.pick(&[
                0x0800_0000,
                0x0900_0000,
                0x0a00_0000,
                0x0a00_3000,
                0x1000_0000,
            ]), // MMIO
            11 => rng.pick(&[IPA_LIMIT - PAGE_SIZE, IPA_LIMIT, ALIAS - PAGE_SIZE, !0xFFF]),
            12 => self.ram_end + rng.below(4) * PAGE_SIZE, // just past RAM
            _ => rng.word(),
        }
    }

    /// Any address, the secret pages included (for calls that must not convert them: unshare
    /// of a private page, the state query, `MMIO_GUARD` of RAM).
    fn any(&self, rng: &mut Rng) -> u64 {
        if rng.below(4) == 0 {
            let secret = self.secret[rng.below(SECRET_PAGES as u64) as usize].get();
            let hypervisor = self.hypervisor_page(rng);
            rng.pick(&[secret, secret | ALIAS, secret + 8, hypervisor])
        } else {
            self.convertible(rng)
        }
    }
}

fn page_count(rng: &mut Rng) -> u64 {
    if rng.below(10) < 6 {
        return 1 + rng.below(3);
    }
    match rng.below(10) {
        0 => 0,
        1..=4 => 1 + rng.below(4),
        5 => MAX_RANGE_PAGES,
        6 => MAX_RANGE_PAGES + 1,
        7 => u64::MAX / PAGE_SIZE + 1 - rng.below(2), // ipa + n * 4096 overflows
        8 => 1 << 52,
        _ => rng.word(),
    }
}

/// A function id drawn across the SMCCC space that is not one the hypervisor serves with an
/// effect that would end the run.
fn random_function(rng: &mut Rng) -> u32 {
    let forbidden = [
        guest::PSCI_CPU_OFF,
        guest::PSCI_SYSTEM_OFF,
        guest::PSCI_SYSTEM_RESET,
        guest::PSCI_CPU_ON,
        guest::FS_CONSOLE_WRITE,
    ];
    loop {
        let word = rng.word();
        let function = match word % 4 {
            // Fast calls of every owner, small function numbers.
            0 => fast_call(
                word & 16 != 0,
                (word >> 8) as u32 % 64,
                (word >> 16) as u32 % 256,
            ),
            // The owners the hypervisor serves, any number.
            1 => fast_call(
                word & 16 != 0,
                [OWNER_ARCH, OWNER_STANDARD, OWNER_VENDOR_HYP][(word >> 8) as usize % 3],
                (word >> 16) as u32 & 0xFFFF,
            ),
            // Yielding calls (bit 31 clear) and anything at all.
            _ => (word >> 32) as u32,
        };
        if !forbidden.contains(&(function & !(1 << 30))) && !forbidden.contains(&function) {
            return function;
        }
    }
}

/// The calls' outcomes by `x0`.
#[derive(Default)]
struct Outcomes {
    ok: u64,
    not_supported: u64,
    not_required: u64,
    invalid: u64,
    other: u64,
}

impl Outcomes {
    fn count(&mut self, x0: u64) {
        match x0 as i64 {
            0.. => self.ok += 1,
            -1 => self.not_supported += 1,
            -2 => self.not_required += 1,
            -3 => self.invalid += 1,
            _ => self.other += 1,
        }
    }
}

fn soak(guest: &Guest, checks: &mut Checks) {
    let calls = ask(Ask::Calls);
    let seed = ask(Ask::Seed);
    println!("hostile soak seed={seed:#x} calls={calls}");
    let Some(secret_pages) = allocate::<SECRET_PAGES>(checks) else {
        return;
    };
    let Some(pool) = allocate::<POOL_PAGES>(checks) else {
        return;
    };
    let secret = Secret::fill(secret_pages, seed);
    let targets = Targets {
        secret: secret_pages,
        pool,
        ram_end: guest.ram.end().get(),
    };
    let mut rng = Rng::new(seed);
    let mut outcomes = Outcomes::default();
    let mut mismatches = 0;
    let mut smc = 0;
    let mut random_ids = 0;
    for call in 0..calls {
        let mut args = [0u64; 7];
        let conduit = if rng.below(64) == 0 {
            smc += 1;
            Conduit::Smc
        } else {
            Conduit::Hvc
        };
        let function = match rng.below(20) {
            0..=2 => {
                args[0] = targets.toggle(&mut rng);
                args[1] = page_count(&mut rng);
                guest::MEM_SHARE
            }
            3..=5 => {
                args[0] = if rng.below(5) == 0 {
                    targets.any(&mut rng)
                } else {
                    targets.toggle(&mut rng)
                };
                args[1] = page_count(&mut rng);
                guest::MEM_UNSHARE
            }
            6..=7 => {
                args[0] = targets.disposable(&mut rng);
                args[1] = page_count(&mut rng);
                guest::MEM_RELINQUISH
            }
            8 => {
                args[0] = targets.any(&mut rng);
                guest::MMIO_GUARD
            }
            9..=10 => {
                args[0] = targets.any(&mut rng);
                args[1] = page_count(&mut rng);
                guest::FS_MEM_STATE
            }
            11 => {
                // CPU_ON that must be refused: vCPU 0 is on; no vCPU 7; vCPU 1 at an address
                // outside RAM.
                args[0] = rng.pick(&[0, 7, 1 << 8, 1]);
                args[1] = if args[0] == 1 {
                    targets.convertible(&mut rng) | IPA_LIMIT
                } else {
                    targets.any(&mut rng)
                };
                args[2] = rng.word();
                guest::PSCI_CPU_ON
            }
            12 => {
                // A console write longer than the limit: refused, prints nothing.
                args[0] = guest::CONSOLE_WRITE_MAX + 1 + rng.below(1 << 20);
                args[1] = rng.word();
                guest::FS_CONSOLE_WRITE
            }
            13 => {
                args[0] = rng.word();
                rng.pick(&[
                    guest::SMCCC_VERSION,
                    guest::SMCCC_ARCH_FEATURES,
                    guest::PSCI_VERSION,
                    guest::PSCI_FEATURES,
                    guest::PSCI_AFFINITY_INFO,
                    guest::VENDOR_HYP_CALL_UID,
                    guest::VENDOR_HYP_FEATURES,
                    guest::HYP_MEMINFO,
                ])
            }
            _ => {
                random_ids += 1;
                for arg in args.iter_mut() {
                    *arg = targets.any(&mut rng);
                }
                random_function(&mut rng)
            }
        };
        let results = raw(conduit, function, args);
        outcomes.count(results[0]);
        let full = call % FULL_CHECK_EVERY == FULL_CHECK_EVERY - 1;
        let wrong = secret.mismatches(if full { None } else { Some(rng.word()) });
        if wrong != 0 {
            mismatches += wrong;
            println!(
                "FAIL secret: {wrong} words changed after call {call} ({function:#x} {args:x?})"
            );
        }
    }
    mismatches += secret.mismatches(None);
    let (violations, audits) = ring(HostileCommand::Ask(Ask::Audit));
    checks.equal("secret mismatches", mismatches, 0);
    checks.equal("audit violations", violations, 0);
    println!(
        "hostile soak outcomes ok={} not-supported={} not-required={} invalid={} other={} smc={smc} random-ids={random_ids}",
        outcomes.ok, outcomes.not_supported, outcomes.not_required, outcomes.invalid, outcomes.other
    );
    // The one summary line (the VMM's console cuts lines at 160 bytes: what `cargo xtask soak`
    // reads comes first, the outcomes again in short last).
    println!(
        "hostile soak calls={calls} audits={audits} violations={violations} mismatches={mismatches} seed={seed:#x} ok={} nsup={} nreq={} inval={} other={}",
        outcomes.ok, outcomes.not_supported, outcomes.not_required, outcomes.invalid, outcomes.other
    );
}

fn vmm_attacks(checks: &mut Checks) {
    let Some(pages) = allocate::<SECRET_PAGES>(checks) else {
        return;
    };
    let secret = Secret::fill(pages, 0x5EC2E7);
    // One page goes back to the VMM, for its share-twice attack.
    let Some([given]) = allocate::<1>(checks) else {
        return;
    };
    checks.equal(
        "relinquish one page",
        calls::mem_relinquish(given, 1),
        Ok(1),
    );
    let mut faults = 0;
    let mut wrong_codes = 0;
    for page in pages {
        let (status, value) = ring(HostileCommand::AttackPrivate(page));
        faults += value;
        wrong_codes += status;
    }
    let mismatches = secret.mismatches(None);
    checks.equal("VMM attack refusals with their codes", wrong_codes, 0);
    checks.equal("secret after the VMM's attacks", mismatches, 0);
    checks.check("VMM faults", faults > 0, format_args!("{faults}"));
    println!(
        "hostile vmm-attacks vmm-faults={faults} wrong-codes={wrong_codes} mismatches={mismatches}"
    );
}

/// The ToCToU buffer (shared view) vCPU 1 hands the VMM, and whether vCPU 1 is done.
static TOCTOU_BUFFER: AtomicU64 = AtomicU64::new(0);
static TOCTOU_RESULT: AtomicU64 = AtomicU64::new(u64::MAX);
static TOCTOU_LANDED_LATE: AtomicU64 = AtomicU64::new(u64::MAX);

fn toctou_writer(_context: u64) {
    let buffer = Ipa(TOCTOU_BUFFER.load(Ordering::Acquire));
    let (late, landed) = ring(HostileCommand::ToctouWrite(buffer));
    TOCTOU_LANDED_LATE.store(late, Ordering::Release);
    TOCTOU_RESULT.store(landed, Ordering::Release);
    secondary::send_event();
}

fn toctou(guest: &Guest, checks: &mut Checks) {
    let Some([buffer]) = allocate::<1>(checks) else {
        return;
    };
    checks.equal("share the buffer", calls::mem_share(buffer, 1), Ok(1));
    let shared = guest.shared_view(buffer);
    TOCTOU_BUFFER.store(shared.get(), Ordering::Release);
    if let Err(error) = secondary::start(1, toctou_writer, 0) {
        checks.check("CPU_ON", false, format_args!("{error:?}"));
        return;
    }
    // Let the writer land some writes first: wait until the buffer changes.
    let view = WordView::new(shared);
    let start = cpu::virtual_counter();
    let second = cpu::counter_frequency();
    while view.read(0) == 0 && cpu::virtual_counter() - start < 5 * second {
        core::hint::spin_loop();
    }
    let unshared = calls::mem_unshare(buffer, 1);
    let private = WordView::new(buffer);
    let seen = private.read(0);
    checks.equal("unshare under the writer", unshared, Ok(1));
    // Read it over many time slices (the VMM runs in between): it never changes again.
    let mut reads = 0u64;
    let mut changes = 0u64;
    let until = cpu::virtual_counter() + second / 5;
    while cpu::virtual_counter() < until || TOCTOU_RESULT.load(Ordering::Acquire) == u64::MAX {
        reads += 1;
        if private.read(0) != seen {
            changes += 1;
        }
        if cpu::virtual_counter() - start > 20 * second {
            checks.check("writer finished", false, format_args!("no answer in 20 s"));
            break;
        }
    }
    let landed = TOCTOU_RESULT.load(Ordering::Acquire);
    let late = TOCTOU_LANDED_LATE.load(Ordering::Acquire);
    checks.equal("buffer changes after MEM_UNSHARE", changes, 0);
    checks.equal("VMM writes landed after the first fault", late, 0);
    checks.check(
        "VMM wrote before",
        landed > 0 && seen != 0,
        format_args!("landed={landed} seen={seen:#x}"),
    );
    println!(
        "hostile toctou vmm-writes-landed={landed} vmm-faults-after-unshare={TOCTOU_FAULTS} late-writes={late} guest-reads={reads} changes={changes}"
    );
}

fn cycle(guest: &Guest, checks: &mut Checks) {
    let run = ask(Ask::Run);
    let Some(pages) = allocate::<SECRET_PAGES>(checks) else {
        return;
    };
    // Every free page gets a fresh secret too, so the VMM's zero check covers them all.
    let secret = Secret::fill(pages, run.wrapping_mul(0xC0FFEE));
    let mut filled = SECRET_PAGES as u64;
    while let Some(page) = page::allocate_page() {
        let view = WordView::new(page);
        for index in 0..PAGE_SIZE / 8 {
            view.write(index * 8, run << 32 | index | 1);
        }
        filled += 1;
    }
    // Share the last secret page: the VMM writes its mark through its window.
    let share = pages[SECRET_PAGES - 1];
    checks.equal("share one page", calls::mem_share(share, 1), Ok(1));
    let (status, _) = ring(HostileCommand::Shared(guest.shared_view(share)));
    checks.equal("VMM wrote the shared page", status, 0);
    let mark = WordView::new(guest.shared_view(share)).read(0);
    checks.equal("the VMM's mark", mark, SHARED_MARK);
    // The first page stayed private: it holds exactly what was written.
    let private = WordView::new(pages[0]);
    let mismatches = (0..PAGE_SIZE / 8)
        .filter(|&index| private.read(index * 8) != secret.word(0, index))
        .count() as u64;
    checks.equal("private secret", mismatches, 0);
    println!("hostile cycle run={run} pages-filled={filled} mismatches={mismatches}");
}

fn hlt() {
    println!("hostile hlt: semihosting SYS_EXIT through HLT #0xF000 (semihosting is off)");
    #[cfg(all(target_arch = "aarch64", target_os = "none"))]
    #[allow(unsafe_code)]
    // SAFETY: HLT with x0 = SYS_EXIT (0x18) and x1 = ADP_Stopped_ApplicationExit. With
    // semihosting off it is an undefined instruction at EL1, which the runtime's vector reports
    // before it powers the VM off; nothing returns here.
    unsafe {
        core::arch::asm!("hlt #0xf000", in("x0") 0x18u64, in("x1") 0x20026u64);
    }
}

fn unregistered_mmio() {
    println!("hostile mmio: reading {UNREGISTERED_MMIO}, never registered with MMIO_GUARD");
    #[allow(unsafe_code)]
    // SAFETY: the page is mapped as Device memory in the guest's stage 1 (`devices`); what the
    // read returns, if it ever returns, is plain bits.
    let value = unsafe { mmio::read64(UNREGISTERED_MMIO) };
    println!("FAIL mmio: the read returned {value:#x}");
}

fn spin(checks: &mut Checks) {
    let second = cpu::counter_frequency();
    // A jump of the counter this long between two reads is a time slice someone else had.
    let gap = second / 1000;
    ring(HostileCommand::Spinning);
    let start = cpu::virtual_counter();
    #[cfg(all(target_arch = "aarch64", target_os = "none"))]
    #[allow(unsafe_code)]
    // SAFETY: masks the guest's own interrupts (PSTATE.DAIF at EL1); memory is untouched.
    unsafe {
        core::arch::asm!("msr daifset, #0xf");
    }
    let mut loops = 0u64;
    let mut descheduled = 0u64;
    let mut last = start;
    while last - start < second / 2 {
        let now = cpu::virtual_counter();
        if now - last > gap {
            descheduled += 1;
        }
        last = now;
        loops += 1;
    }
    #[cfg(all(target_arch = "aarch64", target_os = "none"))]
    #[allow(unsafe_code)]
    // SAFETY: unmasks what the spin masked.
    unsafe {
        core::arch::asm!("msr daifclr, #0xf");
    }
    checks.check(
        "descheduled",
        descheduled > 0,
        format_args!("{loops} loops, never descheduled"),
    );
    println!("hostile spin: 0.5 s with DAIF masked, loops={loops} descheduled={descheduled}");
}

fn run(guest: &Guest) {
    let mut checks = Checks::default();
    if !guest.under_hypervisor() {
        println!("hostile guest: no hypervisor to attack");
        return;
    }
    if let Err(error) = calls::mmio_guard(DOORBELL_PAGE) {
        println!("FAIL doorbell: MMIO_GUARD refused: {error}");
        return;
    }
    let task = Task::from_code(ask(Ask::Task));
    let mode = guest.mode.map_or("?", ConversionMode::name);
    println!(
        "hostile guest: task {} in {mode} mode",
        task.map_or("?", Task::name)
    );
    match task {
        Some(Task::Soak) => soak(guest, &mut checks),
        Some(Task::VmmAttacks) => vmm_attacks(&mut checks),
        Some(Task::Toctou) => toctou(guest, &mut checks),
        Some(Task::Cycle) => cycle(guest, &mut checks),
        Some(Task::Hlt) => hlt(),
        Some(Task::Mmio) => unregistered_mmio(),
        Some(Task::Spin) => spin(&mut checks),
        None => {
            checks.check("task", false, format_args!("the VMM named no task"));
        }
    }
    println!(
        "hostile checks passed={} failed={}",
        checks.passed, checks.failed
    );
    ring(HostileCommand::Done);
    psci::system_off();
}

frameshift_guest::guest_main!(run, devices = [DOORBELL_PAGE, UNREGISTERED_MMIO]);
