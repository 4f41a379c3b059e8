//! Boot at EL2: MMU and caches, EL2 controls, GIC and timer, then the boot information, checked
//! before any of it is used; a bad image is refused with a clear message and never run.

use frameshift_abi::boot_info::BootInfo;

use super::entry::fs_run_first;
use super::global::GlobalCell;
use super::stage2::El2Machine;
use super::trap::{configure_el2, fatal, Hypervisor, ARCH_DOMAINS, HYPERVISOR};
use super::{gic, mmu};
use crate::addr::{DomainId, PhysAddr, PAGE_SIZE};
use crate::engine::Engine;
use crate::hv_line;
use crate::kernel::vspace::build_vspaces;
use crate::kernel::Kernel;
use crate::table_pool::TablePool;

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

/// The ownership core: frame table, table pool and every domain's stage-2 table.
pub static ENGINE: GlobalCell<KernelEngine> = GlobalCell::new(Engine::empty());

extern "C" {
    static __image_start: u8;
    static __image_end: u8;
    static __stack_bottom: u64;
}

/// Written at the lowest word of the EL2 stack at boot; a stack that grew past its end
/// overwrote it (the 1 GiB identity blocks leave no room for a guard page).
const STACK_CANARY: u64 = 0x5741_434b_4341_4e59;

fn stack_canary() -> *mut u64 {
    core::ptr::addr_of!(__stack_bottom).cast_mut()
}

/// Stops with a panic status if the EL2 stack ever overflowed.
pub fn check_stack() {
    // SAFETY: __stack_bottom is the first, 16-byte aligned word of the stack section.
    if unsafe { stack_canary().read_volatile() } != STACK_CANARY {
        hv_line!("panic EL2 stack overflow");
        fatal(3, "panic");
    }
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
    // SAFETY: the lowest stack word is far below anything the boot path has pushed yet.
    unsafe { stack_canary().write_volatile(STACK_CANARY) };
    configure_el2();
    let image_start = core::ptr::addr_of!(__image_start) as u64;
    let image_end = core::ptr::addr_of!(__image_end) as u64;
    hv_line!("boot frameshift el2 image={image_start:#x}..{image_end:#x}");
    // SAFETY: called once, after the MMU mapped the GIC.
    if let Err(error) = unsafe { gic::init() } {
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
    let Some((heap_start, heap_size)) = info.hypervisor_heap(address) else {
        refuse_boot_info(format_args!("no hypervisor heap after the blob"));
    };
    // Stage-2 roots are 8 KiB aligned, so the pool starts on an 8 KiB boundary.
    let pool_base = heap_start.next_multiple_of(2 * PAGE_SIZE);
    let pool_pages = (heap_start + heap_size).saturating_sub(pool_base) / PAGE_SIZE;
    let pool = match TablePool::new(PhysAddr(pool_base), pool_pages as usize) {
        Ok(pool) => pool,
        Err(error) => refuse_boot_info(format_args!("table pool: {error}")),
    };
    let frames = header.convertible_size / PAGE_SIZE;
    if frames > CONVERTIBLE_FRAMES as u64
        || header
            .convertible_base
            .saturating_add(header.convertible_size)
            > RAM_MAPPED_END
    {
        refuse_boot_info(format_args!(
            "convertible range {:#x}+{:#x} exceeds what this kernel tracks ({CONVERTIBLE_FRAMES} frames below {RAM_MAPPED_END:#x})",
            header.convertible_base, header.convertible_size
        ));
    }
    // SAFETY: boot is single-threaded; this is the only reference to the engine.
    let engine = unsafe { ENGINE.get_mut() };
    let mut machine = El2Machine;
    let prepared = engine
        .init(pool, PhysAddr(header.convertible_base), frames as usize)
        .and_then(|()| engine.protect(PhysAddr(header.hypervisor_base), PhysAddr(hypervisor_end)));
    if let Err(error) = prepared {
        refuse_boot_info(format_args!("memory layout: {error}"));
    }
    if let Err(error) = build_vspaces(engine, &mut machine, info.domains().len(), info.mappings()) {
        refuse_boot_info(format_args!("{error}"));
    }
    // SAFETY: boot is single-threaded; no other reference to the per-domain state exists yet.
    let arch = unsafe { ARCH_DOMAINS.get_mut() };
    for (index, slot) in arch.iter_mut().enumerate().take(info.domains().len()) {
        slot.vttbr = engine.vttbr(DomainId(index as u8)).unwrap_or(0);
    }
    if !info.irqs().is_empty() {
        hv_line!(
            "warning irqs={} are not delivered by this version",
            info.irqs().len()
        );
    }
    let kernel = match Kernel::new(info.domains(), info.channels()) {
        Ok(kernel) => kernel,
        Err(error) => refuse_boot_info(format_args!("{error}")),
    };
    check_stack();
    hv_line!(
        "start domains={} mappings={} channels={} table-pages-free={}",
        info.domains().len(),
        info.mappings().len(),
        info.channels().len(),
        engine.pool().available()
    );
    run(kernel)
}

/// Installs the kernel and enters the first domain.
pub fn run(kernel: Kernel) -> ! {
    // SAFETY: boot is the only user so far; no other reference exists.
    unsafe {
        *HYPERVISOR.get_mut() = Some(Hypervisor {
            kernel,
            fp_owner: None,
        })
    };
    // SAFETY: HYPERVISOR is set; fs_run_first resets the stack and never returns.
    unsafe { fs_run_first() }
}

/// The panic handler's body: prints the message and the final status line.
pub fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    hv_line!("panic {info}");
    fatal(3, "panic")
}
