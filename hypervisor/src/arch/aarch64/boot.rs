//! Boot at EL2: MMU and caches, EL2 controls, GIC and timer, then the boot information, checked
//! before any of it is used; a bad image is refused with a clear message and never run.

use frameshift_abi::boot_info::BootInfo;

use super::context::ArchDomain;
use super::entry::fs_run_first;
use super::features::IdRegisters;
use super::global::GlobalCell;
use super::stage2::El2Machine;
use super::trap::{configure_el2, fatal, ARCH_DOMAINS, HYPERVISOR};
use super::{gic, mmu};
use crate::hv_line;
use frameshift_core::addr::{DomainId, PhysAddr, PAGE_SIZE};
use frameshift_core::engine::Engine;
use frameshift_core::kernel::boot::{build_system, BootError};

/// `[physical address, size]` of the boot information, patched into the ELF by the image builder
/// (frameshift_abi::boot_info::BOOT_INFO_SYMBOL). It lives in `.data` so that it has file bytes to
/// patch even while it is zero.
#[no_mangle]
#[link_section = ".data.frameshift_boot_info"]
pub static FRAMESHIFT_BOOT_INFO: [u64; 2] = [0, 0];

/// End of the hypervisor's reserved physical range (coordination.md: [0x4000_0000, 0x4200_0000)).
pub const RESERVED_END: u64 = 0x4200_0000;

/// End of the RAM the EL2 identity map covers (`mmu`).
pub const RAM_MAPPED_END: u64 = 0x1_0000_0000;

/// Frames the frame table can track: QEMU virt with `-m 512M` has convertible memory
/// [0x4200_0000, 0x6000_0000) (coordination.md).
pub const CONVERTIBLE_FRAMES: usize = (0x6000_0000 - 0x4200_0000) / PAGE_SIZE as usize;

/// Extra borrower records for frames shared with more than one domain.
pub const BORROWER_RECORDS: usize = 1024;

/// The kernel's ownership core.
pub type KernelEngine = Engine<CONVERTIBLE_FRAMES, BORROWER_RECORDS>;

/// One byte per tracked frame for the audit's per-domain mapping counts.
static AUDIT_SCRATCH: GlobalCell<[u8; CONVERTIBLE_FRAMES]> =
    GlobalCell::new([0; CONVERTIBLE_FRAMES]);

/// The ownership core: frame table, table pool and every domain's stage-2 table.
pub static ENGINE: GlobalCell<KernelEngine> = GlobalCell::new(Engine::empty());

extern "C" {
    static __image_start: u8;
    static __image_end: u8;
}

/// Why the boot information was refused (printed after `error boot-info: `).
pub fn refuse_boot_info(message: core::fmt::Arguments<'_>) -> ! {
    hv_line!("error boot-info: {message}");
    fatal(2, "bad-boot-info")
}

/// The Rust entry point, called by `_start` on the boot stack with the MMU off.
#[no_mangle]
extern "C" fn fs_el2_main() -> ! {
    // SAFETY: first thing at boot, MMU off, single CPU.
    unsafe { mmu::enable() };
    boot_with_mmu()
}

/// Everything after the MMU is on. A separate, never inlined function, so its stack frame is
/// allocated only once the guard page under the stack is unmapped: an overflow then faults
/// instead of silently overwriting `.bss`.
#[inline(never)]
fn boot_with_mmu() -> ! {
    let id_registers = IdRegisters::read();
    let mut features = id_registers.features();
    configure_el2(&features);
    let image_start = core::ptr::addr_of!(__image_start) as u64;
    let image_end = core::ptr::addr_of!(__image_end) as u64;
    hv_line!("boot frameshift el2 image={image_start:#x}..{image_end:#x}");
    if let Some(feature) = id_registers.unhandled_feature() {
        // Domains would share that feature's EL1 registers (docs/ISOLATION.md, I9).
        hv_line!("error cpu: {feature} is neither switched nor trapped by this hypervisor");
        fatal(3, "unsupported-cpu");
    }
    // SAFETY: called once, after the MMU mapped the GIC.
    if let Err(error) = unsafe { gic::init(&mut features) } {
        hv_line!("error gic: {error}");
        fatal(3, "panic");
    }

    // SAFETY: a plain static; read volatile because the image builder patches it after linking,
    // so the compiler must not assume the initializer.
    let [address, size] = unsafe { core::ptr::addr_of!(FRAMESHIFT_BOOT_INFO).read_volatile() };
    if address == 0 && size == 0 {
        refuse_boot_info(format_args!(
            "no boot information (FRAMESHIFT_BOOT_INFO is [0, 0]; build the image with the image builder)"
        ));
    }
    let end = address.saturating_add(size);
    if address % 8 != 0 || address < image_end || end > RESERVED_END {
        refuse_boot_info(format_args!(
            "blob at {address:#x}, {size} bytes, is not inside [{image_end:#x}, {RESERVED_END:#x})"
        ));
    }
    // SAFETY: the range lies in the hypervisor's reserved RAM after the image (checked above),
    // which the identity map covers and nothing else writes.
    let blob = unsafe { core::slice::from_raw_parts(address as *const u8, size as usize) };
    let info = match BootInfo::parse(blob) {
        Ok(info) => info,
        Err(error) => refuse_boot_info(format_args!("{error}")),
    };
    let header = info.header();
    let hypervisor_end = header
        .hypervisor_base
        .saturating_add(header.hypervisor_size);
    if image_start < header.hypervisor_base || hypervisor_end > RESERVED_END {
        refuse_boot_info(format_args!(
            "hypervisor range {:#x}+{:#x} does not hold the kernel image within {RESERVED_END:#x}",
            header.hypervisor_base, header.hypervisor_size
        ));
    }
    if header
        .convertible_base
        .saturating_add(header.convertible_size)
        > RAM_MAPPED_END
    {
        refuse_boot_info(format_args!(
            "convertible range ends above {RAM_MAPPED_END:#x}, outside the EL2 map"
        ));
    }
    let Some((heap_start, heap_size)) = info.hypervisor_heap(address) else {
        refuse_boot_info(format_args!("no hypervisor heap after the blob"));
    };
    // Stage-2 roots are 8 KiB aligned, so the pool starts on an 8 KiB boundary.
    let pool_base = heap_start.next_multiple_of(2 * PAGE_SIZE);
    let pool_pages = (heap_start + heap_size).saturating_sub(pool_base) / PAGE_SIZE;
    // SAFETY: boot is single-threaded; these are the only references to the engine and the
    // audit's scratch buffer.
    let (engine, scratch) = unsafe { (ENGINE.get_mut(), AUDIT_SCRATCH.get_mut()) };
    let mut machine = El2Machine;
    // SAFETY: boot is single-threaded; nothing else holds the hypervisor state yet.
    let hypervisor = unsafe { HYPERVISOR.get_mut() };
    hypervisor.features = features;
    let built = build_system(
        &info,
        &mut hypervisor.kernel,
        engine,
        &mut machine,
        (PhysAddr(pool_base), pool_pages as usize),
        scratch,
        &mut |violation| hv_line!("audit violation {violation}"),
    );
    match built {
        Ok(summary) => {
            hv_line!(
                "audit boot mapped-pages={} violations=0",
                summary.mapped_pages
            );
        }
        // The audit checks the hypervisor's own work: a violation is a hypervisor bug.
        Err(BootError::Audit { .. }) => fatal(3, "panic"),
        Err(error) => refuse_boot_info(format_args!("{error}")),
    }
    let kernel = &hypervisor.kernel;
    for binding in kernel.irqs() {
        if let Err(error) = gic::configure_device_interrupt(binding.intid, binding.edge) {
            refuse_boot_info(format_args!("irq {}: {error}", binding.intid));
        }
    }
    // SAFETY: boot is single-threaded; no other reference to the per-domain state exists yet.
    let arch = unsafe { ARCH_DOMAINS.get_mut() };
    for (index, slot) in arch.iter_mut().enumerate().take(info.domains().len()) {
        *slot = ArchDomain::initial(engine.vttbr(DomainId(index as u8)).unwrap_or(0));
    }
    hv_line!(
        "start domains={} mappings={} channels={} irqs={} table-pages-free={}",
        info.domains().len(),
        info.mappings().len(),
        info.channels().len(),
        info.irqs().len(),
        engine.pool().available()
    );
    hypervisor.running = true;
    // SAFETY: the kernel is built; fs_run_first resets the stack and never returns, so no
    // reference taken here survives.
    unsafe { fs_run_first() }
}

/// The panic handler's body: prints the message and the final status line.
pub fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    hv_line!("panic {info}");
    fatal(3, "panic")
}
