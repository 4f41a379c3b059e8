//! Boot at EL2: MMU and caches, EL2 controls, GIC and timer, then the boot information, checked
//! before any of it is used; a bad image is refused with a clear message and never run. Then
//! the portable [`Hypervisor`] is built in place, with its frame table carved from the heap the
//! boot information describes, and the first domain is entered.

use frameshift_abi::boot_info::BootInfo;
use frameshift_abi::layout::HYPERVISOR_END;
use frameshift_core::{BootError, FatalReason, Heap, Hypervisor, PhysAddr};

use super::entry::fs_run_first;
use super::features::IdRegisters;
use super::global::{Exclusive, GlobalCell};
use super::machine::El2Machine;
use super::trap::{configure_el2, fatal};
use super::{gic, mmu};
use crate::hv_line;

/// `[physical address, size]` of the boot information, patched into the ELF by the image builder
/// (frameshift_abi::boot_info::BOOT_INFO_SYMBOL). It lives in `.data` so that it has file bytes to
/// patch even while it is zero.
#[no_mangle]
#[link_section = ".data.frameshift_boot_info"]
pub static FRAMESHIFT_BOOT_INFO: [u64; 2] = [0, 0];

/// End of the RAM the EL2 identity map covers (`mmu`).
pub const RAM_MAPPED_END: u64 = 0x1_0000_0000;

/// Everything the hypervisor keeps: the portable hypervisor and the machine it runs on.
#[derive(Debug)]
pub struct State {
    /// All the hypervisor's decisions and bookkeeping.
    pub hypervisor: Hypervisor<El2Machine>,
    /// The CPU: features, FP/SIMD owner, the GIC driver.
    pub machine: El2Machine,
}

/// The hypervisor's state. Every field is zero until boot fills it in place (the frame table
/// is in the heap, sized from the boot information), so it costs the image file nothing
/// (`.bss`).
pub static STATE: GlobalCell<State> = GlobalCell::new(State {
    hypervisor: Hypervisor::EMPTY,
    machine: El2Machine::EMPTY,
});

extern "C" {
    static __image_start: u8;
    static __image_end: u8;
}

/// Why the boot information was refused (printed after `error boot-info: `).
pub fn refuse_boot_info(message: core::fmt::Arguments<'_>) -> ! {
    hv_line!("error boot-info: {message}");
    fatal(FatalReason::BadBootInfo)
}

/// The Rust entry point, called by `_start` on the boot stack with the MMU off.
#[no_mangle]
extern "C" fn fs_el2_main() -> ! {
    // SAFETY: the top of the boot entry; every exception is masked and nothing else runs.
    let mut witness = unsafe { Exclusive::enter() };
    // SAFETY: first thing at boot, MMU off, single CPU.
    unsafe { mmu::enable(&mut witness) };
    boot_with_mmu(witness)
}

/// Everything after the MMU is on. A separate, never inlined function, so its stack frame is
/// allocated only once the guard page under the stack is unmapped: an overflow then faults
/// instead of silently overwriting `.bss`.
#[inline(never)]
fn boot_with_mmu(mut witness: Exclusive) -> ! {
    let State {
        hypervisor,
        machine,
    } = STATE.get_mut(&mut witness);
    let id_registers = IdRegisters::read();
    machine.features = id_registers.features();
    configure_el2(&machine.features);
    let image_start = core::ptr::addr_of!(__image_start) as u64;
    let image_end = core::ptr::addr_of!(__image_end) as u64;
    hv_line!("boot frameshift el2 image={image_start:#x}..{image_end:#x}");
    if let Some(feature) = id_registers.unhandled_feature() {
        // Domains would share that feature's EL1 registers (docs/ISOLATION.md, I9).
        hv_line!("error cpu: {feature} is neither switched nor trapped by this hypervisor");
        fatal(FatalReason::UnsupportedCpu);
    }
    // SAFETY: called once, after the MMU mapped the GIC.
    match unsafe { gic::init(&mut machine.features) } {
        Ok(gic) => machine.gic = Some(gic),
        Err(error) => {
            hv_line!("error gic: {error}");
            fatal(FatalReason::GicInit);
        }
    }

    // SAFETY: a plain static; read volatile because the image builder patches it after linking,
    // so the compiler must not assume the initializer.
    let [address, size] = unsafe { core::ptr::addr_of!(FRAMESHIFT_BOOT_INFO).read_volatile() };
    if address == 0 && size == 0 {
        refuse_boot_info(format_args!(
            "no boot information (FRAMESHIFT_BOOT_INFO is [0, 0]; build the image with the image builder)"
        ));
    }
    let reserved_end = HYPERVISOR_END.get();
    let end = address.saturating_add(size);
    if address % 8 != 0 || address < image_end || end > reserved_end {
        refuse_boot_info(format_args!(
            "blob at {address:#x}, {size} bytes, is not inside [{image_end:#x}, {reserved_end:#x})"
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
    if image_start < header.hypervisor_base || hypervisor_end > reserved_end {
        refuse_boot_info(format_args!(
            "hypervisor range {:#x}+{:#x} does not hold the kernel image within {reserved_end:#x}",
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
    // SAFETY: the heap lies in the hypervisor's reserved range after the blob, up to its end
    // (`hypervisor_heap` checked it against the validated header, and the range against the
    // image above), in identity-mapped RAM that nothing else uses: it is the hypervisor's for
    // the whole run, and this is the only reference to it ever made. It starts on a 4 KiB
    // boundary, so the frame table carved from it is aligned.
    let memory =
        unsafe { core::slice::from_raw_parts_mut(heap_start as *mut u8, heap_size as usize) };
    let heap = Heap::new(
        PhysAddr(heap_start),
        PhysAddr(heap_start + heap_size),
        memory,
    );
    let built = hypervisor.boot(&info, machine, heap, &mut |violation| {
        hv_line!("audit violation {violation}")
    });
    let report = match built {
        Ok(report) => report,
        // The audit checks the hypervisor's own work: a violation is a hypervisor bug.
        Err(BootError::Audit { .. }) => fatal(FatalReason::BootAudit),
        Err(error @ BootError::HeapTooSmall { .. }) => {
            hv_line!("error heap: {error}");
            fatal(FatalReason::HeapTooSmall)
        }
        Err(error) => refuse_boot_info(format_args!("{error}")),
    };
    hv_line!(
        "audit boot mapped-pages={} violations=0",
        report.mapped_pages
    );
    for binding in hypervisor.irqs() {
        let configured = match machine.gic.as_mut() {
            Some(gic) => gic::configure_device_interrupt(gic, binding.intid, binding.edge),
            None => fatal(FatalReason::GicInit),
        };
        if let Err(error) = configured {
            refuse_boot_info(format_args!("irq {}: {error}", binding.intid));
        }
    }
    hv_line!(
        "start domains={} mappings={} channels={} irqs={} table-pages-free={}",
        info.domains().len(),
        info.mappings().len(),
        info.channels().len(),
        info.irqs().len(),
        report.table_pages_free
    );
    machine.running = true;
    // SAFETY: the hypervisor is built; fs_run_first resets the stack and never returns, so no
    // reference taken here (nor the witness) survives.
    unsafe { fs_run_first() }
}

/// The panic handler's body: prints the message and the final status line. It takes no
/// reference to the state (a panic may come from inside an entry that holds one).
pub fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    hv_line!("panic {info}");
    fatal(FatalReason::Panic)
}
