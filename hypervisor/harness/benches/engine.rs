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
use frameshift_core::frame_table::FrameTable;
use frameshift_core::small_system::{
    boot_mapping, link, window, SmallEngine, SmallSystem, BLOCK_IPA, FRAMES, FRAME_A_IPA,
    FRAME_BASE, GUEST_HISTORY, HOST, HYPERVISOR, POOL_BASE, POOL_PAGES, WINDOW_HOST_BASE,
};
use frameshift_core::{
    BootSharing, ConversionMode, DescriptorSlot, Engine, Ipa, PhysAddr, PhysMemory, Rights,
    Stage2Arch, TablePool, Vmid, PAGE_SIZE,
};

/// Frames the EL2 kernel's frame table tracks: QEMU `virt` with 512 MiB has convertible memory
/// [0x4200_0000, 0x6000_0000) (`CONVERTIBLE_FRAMES` in hypervisor/src/arch/aarch64/boot.rs).
const KERNEL_FRAMES: usize = (0x6000_0000 - 0x4200_0000) / PAGE_SIZE as usize;
/// The kernel's borrower side-table records (`BORROWER_RECORDS` there).
const KERNEL_BORROWERS: usize = 1024;
/// Bytes of one borrower side-table record.
const BORROWER_RECORD_BYTES: usize = 4;

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
        self.page(pa)[self.locate(pa).2]
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
}

/// The small system on the flat machine, with the block and frame A donated to the guest.
fn flat_system() -> (Box<SmallEngine>, FlatArch) {
    let mut arch = FlatArch::new();
    let mut engine = Box::new(Engine::empty());
    engine
        .init(TablePool::new(POOL_BASE, POOL_PAGES).unwrap(), FRAME_BASE, FRAMES)
        .unwrap();
    engine.protect(HYPERVISOR.0, HYPERVISOR.1).unwrap();
    engine.create_domain(&mut arch, HOST, Vmid(1)).unwrap();
    engine.create_domain(&mut arch, GUEST, Vmid(2)).unwrap();
    engine
        .link_guest(GUEST, link(window(), ConversionMode::History))
        .unwrap();
    let mapping = boot_mapping(
        HOST,
        WINDOW_HOST_BASE,
        FRAME_BASE,
        FRAMES as u64,
        Rights::READ_WRITE,
        BootSharing::Private,
    );
    engine.map_at_boot(&mut arch, &mapping).unwrap();
    donate(&mut engine, &mut arch);
    (engine, arch)
}

/// The small system on the checking fake, with the block and frame A donated to the guest.
fn checking_system() -> (Box<SmallEngine>, FakeArch) {
    let system = SmallSystem::boot().unwrap();
    let (mut engine, mut arch) = (Box::new(system.engine), system.arch);
    donate(&mut engine, &mut arch);
    arch.end_call();
    assert_eq!(arch.take_violations(), Vec::<String>::new());
    (engine, arch)
}

fn donate(engine: &mut SmallEngine, arch: &mut impl Stage2Arch) {
    engine
        .donate(arch, HOST, GUEST, BLOCK_IPA, BLOCK_PAGES)
        .unwrap();
    engine.donate(arch, HOST, GUEST, FRAME_A_IPA, 1).unwrap();
}

/// One share + unshare round trip of `pages` pages from `ipa`; both must be accepted.
fn round_trip(engine: &mut SmallEngine, arch: &mut impl Stage2Arch, ipa: Ipa, pages: u64) {
    engine
        .share(arch, GUEST, black_box(ipa), black_box(pages))
        .expect("share accepted");
    engine
        .unshare(arch, GUEST, black_box(ipa), black_box(pages))
        .expect("unshare accepted");
}

/// The round trips benchmarked: name, first IPA, pages.
fn cases() -> [(&'static str, Ipa, u64); 3] {
    [
        ("page", FRAME_A_IPA, 1),
        ("page_in_block", Ipa(BLOCK_IPA.get() + 7 * PAGE_SIZE), 1),
        ("block", BLOCK_IPA, BLOCK_PAGES),
    ]
}

/// The frame table's bytes per frame in the kernel's configuration, and the table that gives it.
fn print_metadata() {
    let table = size_of::<FrameTable<KERNEL_FRAMES, KERNEL_BORROWERS>>();
    let records = KERNEL_FRAMES * size_of::<frameshift_core::FrameRecord>();
    let side = KERNEL_BORROWERS * BORROWER_RECORD_BYTES;
    println!(
        "metadata: frame table {table} bytes for {KERNEL_FRAMES} frames = {:.3} bytes per frame \
         ({} per frame record, + {side} bytes of borrower side table and {} of header, \
         amortised)",
        table as f64 / KERNEL_FRAMES as f64,
        size_of::<frameshift_core::FrameRecord>(),
        table - records - side,
    );
    println!(
        "metadata: the EL2 kernel's audit also keeps 1 scratch byte per frame (AUDIT_SCRATCH), \
         used only while an audit runs"
    );
}

/// The TLB maintenance one round trip of each case asks for (counted on the flat machine).
fn print_tlb_maintenance() {
    for (name, ipa, pages) in cases() {
        let (mut engine, mut arch) = flat_system();
        round_trip(&mut engine, &mut arch, ipa, pages);
        println!(
            "tlb: {name}: one share + unshare round trip invalidates {} IPA(s) and {} whole \
             VMID(s)",
            arch.invalidated_ipas, arch.invalidated_vmids
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
        let (mut engine, mut arch) = flat_system();
        group.bench_function(BenchmarkId::new("flat", name), |bencher| {
            bencher.iter(|| round_trip(&mut engine, &mut arch, ipa, pages));
        });
        let (mut engine, mut arch) = checking_system();
        group.bench_function(BenchmarkId::new("checking_fake", name), |bencher| {
            bencher.iter(|| {
                round_trip(&mut engine, &mut arch, ipa, pages);
                // Ends the "call" (the fake's I6 check) and empties its invalidation log.
                black_box(arch.end_call());
            });
        });
        assert_eq!(arch.take_violations(), Vec::<String>::new(), "{name}");
    }
    group.finish();
}

fn main() {
    print_metadata();
    print_tlb_maintenance();
    let mut criterion = Criterion::default().configure_from_args();
    conversions(&mut criterion);
    criterion.final_summary();
}
