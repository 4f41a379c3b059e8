//! Host benchmark of the conversion engine (issue 11): conversions per second and metadata bytes
//! per frame. Run it with `cargo bench -p frameshift-harness --bench engine` (or `cargo xtask
//! bench --engine`); `cargo xtask test` never runs it.
//!
//! A guest of the small system (`frameshift_core::small_system`: a 2 MiB block and two lone
//! frames, all donated to the guest first) shares and unshares, and every iteration is one
//! round trip, two conversions; criterion's `elem/s` is conversions per second:
//!
//! | benchmark | what |
//! | --- | --- |
//! | `page` | one lone 4 KiB frame |
//! | `page_in_block` | one 4 KiB page inside the 2 MiB block (the block is split, then coalesced) |
//! | `block` | the whole 2 MiB block, one range call |
//!
//! each on two machines: `flat`, a lean one (table pages in an array, TLB maintenance free) that
//! times the engine alone, and `checking_fake`, the fake arch the tests use, which also checks
//! break-before-make and stale TLB entries on every write. Before the timings it prints the
//! frame table's size per frame in the kernel's configuration, and the TLB maintenance each
//! round trip asks for.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark whose setup fails must stop loudly"
)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput};
use frameshift_core::arch::fake::FakeArch;
use frameshift_core::arch::PageWords;
use frameshift_core::frame_table::{BorrowerRecord, VecStorage};
use frameshift_core::hypervisor::{heap_bytes, SIDE_TABLE_RECORDS};
use frameshift_core::small_system::{
    default_layout, small_domain, SmallDomains, SmallEngine, SmallSystem, BLOCK_IPA, FRAMES,
    FRAME_A_IPA, FRAME_BASE, GUEST_HISTORY, HOST, HYPERVISOR, POOL_BASE, POOL_PAGES,
};
use frameshift_core::{
    DescriptorSlot, Domains, Engine, FatalReason, FrameRecord, Ipa, PhysAddr, PhysMemory,
    Stage2Arch, TablePool, Vmid, PAGE_SIZE,
};

/// Frames the EL2 kernel's frame table tracks on QEMU `virt` with 512 MiB: the image builder's
/// convertible range [0x4200_0000, 0x6000_0000) (122,880 frames, as in issue 11).
const KERNEL_FRAMES: u64 = (0x6000_0000 - 0x4200_0000) / PAGE_SIZE;

/// The guest whose memory converts.
const GUEST: frameshift_core::DomainId = GUEST_HISTORY;
/// Pages of the 2 MiB block.
const BLOCK_PAGES: u64 = 512;

/// A lean machine: table pages and frames in flat arrays, descriptor writes plain stores, TLB
/// maintenance only counted. What is left to time is the engine.
struct FlatArch {
    tables: Vec<PageWords>,
    frames: Vec<PageWords>,
    invalidated_ipas: u64,
    invalidated_vmids: u64,
}

impl FlatArch {
    fn new() -> Self {
        Self {
            tables: vec![[0; 512]; POOL_PAGES],
            frames: vec![[0; 512]; FRAMES],
            invalidated_ipas: 0,
            invalidated_vmids: 0,
        }
    }

    /// The page array, page index and word index of `pa`.
    fn locate(&self, pa: PhysAddr) -> (bool, usize, usize) {
        let word = ((pa.get() % PAGE_SIZE) / 8) as usize;
        let in_range = |base: PhysAddr, pages: usize| {
            let offset = pa.get().checked_sub(base.get())?;
            let page = (offset / PAGE_SIZE) as usize;
            (page < pages).then_some(page)
        };
        if let Some(page) = in_range(POOL_BASE, POOL_PAGES) {
            (true, page, word)
        } else if let Some(page) = in_range(FRAME_BASE, FRAMES) {
            (false, page, word)
        } else {
            panic!("the engine touched {pa}, outside the benchmark machine's memory")
        }
    }

    fn page(&self, pa: PhysAddr) -> &PageWords {
        match self.locate(pa) {
            (true, page, _) => &self.tables[page],
            (false, page, _) => &self.frames[page],
        }
    }
}

impl PhysMemory for FlatArch {
    fn read_u64(&self, pa: PhysAddr) -> u64 {
        match self.locate(pa) {
            (true, page, word) => self.tables[page][word],
            (false, page, word) => self.frames[page][word],
        }
    }

    fn page_mut(&mut self, pa: PhysAddr) -> &mut PageWords {
        match self.locate(pa) {
            (true, page, _) => &mut self.tables[page],
            (false, page, _) => &mut self.frames[page],
        }
    }

    fn with_page<R>(&self, pa: PhysAddr, visit: &mut dyn FnMut(&PageWords) -> R) -> R {
        visit(self.page(pa))
    }
}

impl Stage2Arch for FlatArch {
    fn write_descriptor(&mut self, slot: DescriptorSlot, value: u64) {
        let word = self.locate(slot.pa).2;
        self.page_mut(slot.pa)[word] = value;
    }

    fn invalidate_ipa(&mut self, _vmid: Vmid, _ipa: Ipa) {
        self.invalidated_ipas += 1;
    }

    fn invalidate_vmid(&mut self, _vmid: Vmid) {
        self.invalidated_vmids += 1;
    }

    fn fatal(&mut self, reason: FatalReason) -> ! {
        panic!("the engine halted the benchmark machine: {reason:?}")
    }
}

/// A benchmark system: the engine, its domains and the machine.
struct Bench<A> {
    engine: Box<SmallEngine>,
    domains: Box<SmallDomains>,
    arch: A,
}

/// The small system's default layout (host, a history-mode and a split-mode guest, the host
/// owning every frame) on the flat machine, with the block and frame A donated to the guest.
fn flat_system() -> Bench<FlatArch> {
    let layout = default_layout();
    let mut arch = FlatArch::new();
    let mut engine = Box::new(Engine::new(VecStorage::new(
        layout.frames,
        layout.side_table,
    )));
    engine
        .init(
            TablePool::new(POOL_BASE, POOL_PAGES).unwrap(),
            FRAME_BASE,
            FRAMES,
        )
        .unwrap();
    engine.protect(HYPERVISOR.0, HYPERVISOR.1).unwrap();
    let mut domains = Box::new(Domains::new());
    for &id in &layout.domains {
        let vspace = engine
            .create_vspace(&mut arch, Vmid(u16::from(id.0) + 1))
            .unwrap();
        let link = layout
            .guests
            .iter()
            .find(|(guest, _)| *guest == id)
            .map(|&(_, link)| link);
        domains.push(small_domain(id, link, vspace, ())).unwrap();
    }
    for &(guest, link) in &layout.guests {
        engine.link_guest(&mut domains, guest, link).unwrap();
    }
    for mapping in &layout.boot {
        engine.map_at_boot(&mut arch, &domains, mapping).unwrap();
    }
    let mut bench = Bench {
        engine,
        domains,
        arch,
    };
    bench.donate();
    bench
}

/// The small system on the checking fake, with the block and frame A donated to the guest.
fn checking_system() -> Bench<FakeArch> {
    let system = SmallSystem::boot().unwrap();
    let mut bench = Bench {
        engine: Box::new(system.engine),
        domains: system.domains,
        arch: system.arch,
    };
    bench.donate();
    bench.arch.end_call();
    assert_eq!(bench.arch.take_violations(), Vec::<String>::new());
    bench
}

impl<A: Stage2Arch> Bench<A> {
    fn donate(&mut self) {
        let (engine, domains, arch) = (&mut self.engine, &*self.domains, &mut self.arch);
        engine
            .donate(arch, domains, HOST, GUEST, BLOCK_IPA, BLOCK_PAGES)
            .unwrap();
        engine
            .donate(arch, domains, HOST, GUEST, FRAME_A_IPA, 1)
            .unwrap();
    }

    /// One share + unshare round trip of `pages` pages from `ipa`; both must be accepted.
    fn round_trip(&mut self, ipa: Ipa, pages: u64) {
        let (engine, domains, arch) = (&mut self.engine, &*self.domains, &mut self.arch);
        engine
            .share(arch, domains, GUEST, black_box(ipa), black_box(pages))
            .expect("share accepted");
        engine
            .unshare(arch, domains, GUEST, black_box(ipa), black_box(pages))
            .expect("unshare accepted");
    }
}

/// The round trips benchmarked: name, first IPA, pages.
fn cases() -> [(&'static str, Ipa, u64); 3] {
    [
        ("page", FRAME_A_IPA, 1),
        ("page_in_block", Ipa(BLOCK_IPA.get() + 7 * PAGE_SIZE), 1),
        ("block", BLOCK_IPA, BLOCK_PAGES),
    ]
}

/// The metadata the EL2 kernel keeps per frame, as it carves it from its heap at boot
/// ([`heap_bytes`]): the frame records, the borrower side table and the audit's scratch.
fn print_metadata() {
    let total = heap_bytes(KERNEL_FRAMES);
    let records = KERNEL_FRAMES * size_of::<FrameRecord>() as u64;
    let side = (SIDE_TABLE_RECORDS * size_of::<BorrowerRecord>()) as u64;
    let scratch = total - records - side;
    let per_frame = |bytes: u64| bytes as f64 / KERNEL_FRAMES as f64;
    println!(
        "metadata: frame table {:.3} bytes per frame ({} per frame record + {side} bytes of \
         borrower side table amortised over {KERNEL_FRAMES} frames)",
        per_frame(records + side),
        size_of::<FrameRecord>(),
    );
    println!(
        "metadata: with the audit's scratch ({scratch} bytes, 1 per frame, used only while an \
         audit runs) {:.3} bytes per frame",
        per_frame(total),
    );
}

/// The TLB maintenance one round trip of each case asks for (counted on the flat machine).
fn print_tlb_maintenance() {
    for (name, ipa, pages) in cases() {
        let mut bench = flat_system();
        bench.round_trip(ipa, pages);
        println!(
            "tlb: {name}: one share + unshare round trip invalidates {} IPA(s) and {} whole \
             VMID(s)",
            bench.arch.invalidated_ipas, bench.arch.invalidated_vmids
        );
    }
}

fn conversions(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("conversions");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        // One iteration is a round trip: two conversions.
        .throughput(Throughput::Elements(2));
    for (name, ipa, pages) in cases() {
        let mut flat = flat_system();
        group.bench_function(BenchmarkId::new("flat", name), |bencher| {
            bencher.iter(|| flat.round_trip(ipa, pages));
        });
        let mut checking = checking_system();
        group.bench_function(BenchmarkId::new("checking_fake", name), |bencher| {
            bencher.iter(|| {
                checking.round_trip(ipa, pages);
                // Ends the "call" (the fake's I6 check) and empties its invalidation log.
                black_box(checking.arch.end_call());
            });
        });
        assert_eq!(
            checking.arch.take_violations(),
            Vec::<String>::new(),
            "{name}"
        );
    }
    group.finish();
}

/// With `FRAMESHIFT_ENGINE_ROUND_TRIPS=<n>` in the environment, the benchmark runs `n` round
/// trips of case `FRAMESHIFT_ENGINE_CASE` (default `page`) on the flat machine and nothing else:
/// under `perf stat -e instructions:u` that gives instructions per conversion, which, unlike
/// time, does not depend on what else the host runs.
fn fixed_round_trips() -> bool {
    let Some(count) = std::env::var("FRAMESHIFT_ENGINE_ROUND_TRIPS")
        .ok()
        .and_then(|count| count.parse::<u64>().ok())
    else {
        return false;
    };
    let wanted = std::env::var("FRAMESHIFT_ENGINE_CASE").unwrap_or_else(|_| "page".into());
    let (name, ipa, pages) = cases()
        .into_iter()
        .find(|(name, _, _)| *name == wanted)
        .expect("FRAMESHIFT_ENGINE_CASE names a case: page, page_in_block or block");
    let mut bench = flat_system();
    let start = std::time::Instant::now();
    for _ in 0..count {
        bench.round_trip(ipa, pages);
    }
    let elapsed = start.elapsed();
    println!(
        "{name}: {count} round trips ({} conversions) in {elapsed:?}: {:.0} conversions/s",
        2 * count,
        (2 * count) as f64 / elapsed.as_secs_f64()
    );
    true
}

fn main() {
    if fixed_round_trips() {
        return;
    }
    print_metadata();
    print_tlb_maintenance();
    let mut criterion = Criterion::default().configure_from_args();
    conversions(&mut criterion);
    criterion.final_summary();
}
