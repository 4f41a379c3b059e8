//! Boot, from `_start`'s call to the program's `main`, and what the program learns about its VM.
//!
//! ```text
//! _start (entry.rs): stack, FP on, vectors, .bss zeroed
//!   run(): x0 == BOOT_MAGIC?  -- no -->  bare: RAM = the image and a few pages, no hypercalls
//!           | yes
//!           MMIO_GUARD(UART)              (refused: console through FS_CONSOLE_WRITE)
//!           HYP_MEMINFO                   x2 = 1 << 39 => split mode, 0 => history mode
//!           FS_MEM_STATE from the RAM base => how much RAM is ours
//!         stage 1 built and on, first console line, main(&guest), PSCI SYSTEM_OFF
//! ```
//!
//! The conversion mode and the RAM come from the hypervisor, never from the VMM: a guest trusts
//! only the hypervisor (DESIGN.md 3).

use crate::calls::{self, SmcccError};
use crate::console::{self, ConsoleBackend};
use crate::memory_map::{self, GuestRam, MemoryPlan, TablePage, TablePool};
use frameshift_abi::addr::{Ipa, PAGE_SIZE};
use frameshift_abi::guest_call::{MemState, MAX_RANGE_PAGES, SPLIT_SHARED_BIT};
use frameshift_vm_protocol::boot::{ConversionMode, Launcher, GUEST_RAM_IPA};
use frameshift_vm_protocol::pl011::UART_IPA;

/// What a guest program knows about itself and its VM.
#[derive(Clone, Copy, Debug)]
pub struct Guest {
    /// The program's name.
    pub program: &'static str,
    /// Who started it.
    pub launcher: Launcher,
    /// Its conversion mode, as the hypervisor reports it (`None` without hypervisor).
    pub mode: Option<ConversionMode>,
    /// Its RAM.
    pub ram: GuestRam,
}

impl Guest {
    /// The guest runs under Frameshift and may make its calls.
    pub fn under_hypervisor(&self) -> bool {
        self.launcher == Launcher::FrameshiftVmm
    }

    /// The address at which this guest reaches page `ipa` while the page is shared.
    pub fn shared_view(&self, ipa: Ipa) -> Ipa {
        match self.mode {
            Some(mode) => mode.shared_view(ipa),
            None => ipa,
        }
    }

    /// The word the first console line starts with: `history`, `split` or `bare`.
    pub fn mode_name(&self) -> &'static str {
        self.mode.map_or("bare", ConversionMode::name)
    }
}

/// Why the hypervisor's `HYP_MEMINFO` answer gives no conversion mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModeError {
    /// The call itself failed.
    Call(SmcccError),
    /// `x2` is neither 0 nor the split-mode alias bit.
    UnknownAlias(u64),
}

impl core::fmt::Display for ModeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Call(error) => write!(f, "HYP_MEMINFO failed: {error}"),
            Self::UnknownAlias(bit) => {
                write!(f, "HYP_MEMINFO x2 = {bit:#x} is no alias bit I know")
            }
        }
    }
}

/// The mode the hypervisor runs this guest in, from `HYP_MEMINFO`'s `x2` (docs/ABI.md): the
/// shared-alias bit in split mode, 0 in history mode. The VMM has no say in it.
pub fn detect_mode() -> Result<ConversionMode, ModeError> {
    let info = calls::hyp_meminfo().map_err(ModeError::Call)?;
    match info.shared_alias {
        0 => Ok(ConversionMode::History),
        SPLIT_SHARED_BIT => Ok(ConversionMode::Split),
        other => Err(ModeError::UnknownAlias(other)),
    }
}

/// The mode as the state query sees it: the shared alias of the first RAM page answers as a
/// private page of ours only in split mode, where a guest "may name either half" (docs/ABI.md,
/// `FS_MEM_STATE`); in history mode that IPA is not ours at all. A cross-check of
/// [`detect_mode`] for the ABI checker.
pub fn mode_from_mem_state(ram_base: Ipa) -> ConversionMode {
    match calls::mem_state(ram_base.shared_alias(), 1) {
        Ok(answer) if answer.state() == Some(MemState::Owned) => ConversionMode::Split,
        _ => ConversionMode::History,
    }
}

/// Most RAM boot looks for: 1 GiB.
pub const MAX_RAM_PAGES: u64 = 1 << 18;

/// How many pages from `base` are in the state of the first one: the guest's RAM at boot, when
/// it has shared nothing. In a protected VM that is private memory; in a VM that is not
/// protected, the VMM's memory mapped into it.
pub fn measure_ram(base: Ipa) -> Result<u64, SmcccError> {
    let first = calls::mem_state(base, 1)?.state();
    if first.is_none() || first == Some(MemState::NoPage) {
        return Ok(0);
    }
    let mut pages = 0;
    while pages < MAX_RAM_PAGES {
        let answer = calls::mem_state(Ipa(base.get() + pages * PAGE_SIZE), MAX_RANGE_PAGES)?;
        if answer.state() != first {
            break;
        }
        let run = answer.run.min(MAX_RANGE_PAGES);
        pages += run;
        if run < MAX_RANGE_PAGES {
            break;
        }
    }
    Ok(pages.min(MAX_RAM_PAGES))
}

/// Pages after the image a bare guest may use (QEMU's RAM is larger; this is what it maps).
pub const BARE_FREE_PAGES: u64 = 16;
/// Pages of stage-1 tables the pool holds.
pub const TABLE_POOL_PAGES: usize = 24;

struct Pool(core::cell::UnsafeCell<[TablePage; TABLE_POOL_PAGES]>);

// SAFETY: the pool is touched only through the one `TablePool` boot makes, on the boot vCPU,
// before any other vCPU runs.
unsafe impl Sync for Pool {}

static TABLE_POOL: Pool = Pool(core::cell::UnsafeCell::new(
    [const { TablePage([0; PAGE_SIZE as usize]) }; TABLE_POOL_PAGES],
));

/// Boot, run the program, power off. What [`crate::guest_main!`] calls from `_start`.
#[doc(hidden)]
pub fn run(program: &'static str, boot_register: u64, devices: &[Ipa], main: fn(&Guest)) -> ! {
    let launcher = Launcher::from_boot_register(boot_register);
    let image = crate::arch::image_layout();
    let mut guard_refusal = None;
    let (mode, ram) = match launcher {
        Launcher::FrameshiftVmm => {
            if let Err(error) = calls::mmio_guard(UART_IPA) {
                console::set_backend(ConsoleBackend::Hypercall);
                guard_refusal = Some(error);
            }
            let pages = match measure_ram(GUEST_RAM_IPA) {
                Ok(pages) => pages,
                Err(error) => fail(format_args!("the hypervisor does not know my RAM: {error}")),
            };
            let ram = GuestRam {
                base: GUEST_RAM_IPA,
                pages,
            };
            let mode = match detect_mode() {
                Ok(mode) => mode,
                Err(error) => fail(format_args!("no conversion mode: {error}")),
            };
            (Some(mode), ram)
        }
        Launcher::Bare => {
            let image_pages = (image.end - image.start).div_ceil(PAGE_SIZE);
            let ram = GuestRam {
                base: GUEST_RAM_IPA,
                pages: image_pages + BARE_FREE_PAGES,
            };
            (None, ram)
        }
    };
    let mut all_devices = [UART_IPA; memory_map::MAX_RANGES];
    let count = devices.len().min(all_devices.len() - 5);
    all_devices[1..=count].copy_from_slice(&devices[..count]);
    let split = mode == Some(ConversionMode::Split);
    let plan = match MemoryPlan::new(&image, &ram, split, &all_devices[..=count]) {
        Ok(plan) => plan,
        Err(error) => fail(format_args!("no stage-1 plan: {error:?}")),
    };
    let pages = core::ptr::NonNull::new(TABLE_POOL.0.get().cast::<TablePage>());
    let Some(pages) = pages else {
        fail(format_args!("no table pool"))
    };
    // SAFETY: the pool is zeroed .bss, used by nothing else, and identity mapped by the plan
    // (it lies in the image, which the plan maps read-write).
    let pool = unsafe { TablePool::new(pages, TABLE_POOL_PAGES) };
    let tables = match memory_map::build(&plan, pool) {
        Ok(tables) => tables,
        Err(error) => fail(format_args!("stage-1 tables refused: {error}")),
    };
    // SAFETY: the tables map the whole image (code, data, stacks, this pool), the rest of the
    // RAM and the devices, all identity mapped, so every address this program uses stays valid.
    unsafe { crate::arch::enable_mmu(tables.root_address().0 as u64) };
    // The tables live for the guest's whole life and are never changed again.
    core::mem::forget(tables);
    crate::page::init(Ipa(image.end), ram.end());

    let guest = Guest {
        program,
        launcher,
        mode,
        ram,
    };
    crate::println!(
        "{} mode: {program} booted at EL{} with its MMU {}, RAM {:#x}..{:#x} ({} pages)",
        guest.mode_name(),
        crate::arch::current_el(),
        if crate::arch::mmu_enabled() {
            "on"
        } else {
            "off"
        },
        ram.base,
        ram.end(),
        ram.pages,
    );
    if let Some(error) = guard_refusal {
        crate::println!("MMIO_GUARD refused the UART page ({error}): console via FS_CONSOLE_WRITE");
    }
    main(&guest);
    crate::psci::system_off()
}

/// Print why boot cannot go on and power off.
fn fail(reason: core::fmt::Arguments<'_>) -> ! {
    crate::println!("boot failed: {reason}");
    crate::psci::system_off()
}

/// Declare a guest program: its entry function (not named `main`) runs once the guest is booted; when it returns, the guest
/// powers off (PSCI `SYSTEM_OFF`). `devices` lists the program's own MMIO pages, mapped as
/// Device memory next to the UART (the program registers them with `MMIO_GUARD` itself).
///
/// ```text
/// fn run(guest: &frameshift_guest::Guest) {
///     frameshift_guest::println!("hello from {}", guest.program);
/// }
/// frameshift_guest::guest_main!(run, devices = []);
/// ```
#[macro_export]
macro_rules! guest_main {
    ($main:path, devices = [$($device:expr),* $(,)?]) => {
        /// Called by the runtime's `_start` with the boot register `x0`.
        #[allow(unsafe_code)]
        #[no_mangle]
        extern "C" fn frameshift_guest_main(boot_register: u64) -> ! {
            $crate::boot::run(
                env!("CARGO_BIN_NAME"),
                boot_register,
                &[$($device),*],
                $main,
            )
        }

        /// Guest programs run only under QEMU; a host build gets this stand-in `main` so the
        /// program still type-checks there (`cargo clippy --workspace`).
        #[cfg(not(target_os = "none"))]
        fn main() {
            let _ = frameshift_guest_main as extern "C" fn(u64) -> !;
            ::std::eprintln!("this is a Frameshift guest image: build it for aarch64-unknown-none");
            ::std::process::exit(2);
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conduit::install_fake;
    use frameshift_abi::guest_call::{FS_MEM_STATE, HYP_MEMINFO};
    use std::cell::RefCell;
    use std::rc::Rc;
    use std::vec::Vec;

    /// A fake hypervisor with `private` private pages from the RAM base, in `mode`.
    fn hypervisor(private: u64, split: bool) -> Rc<RefCell<Vec<(u64, u64)>>> {
        let log = Rc::new(RefCell::new(Vec::new()));
        let calls = log.clone();
        install_fake(move |_, registers| {
            assert_eq!(registers[0], u64::from(FS_MEM_STATE));
            let (ipa, pages) = (registers[1], registers[2].max(1));
            calls.borrow_mut().push((ipa, pages));
            let alias = ipa & (1 << 39) != 0;
            let page = ((ipa & !(1 << 39)) - 0x4000_0000) / PAGE_SIZE;
            *registers = [0; 18];
            if alias && !split || page >= private {
                return; // state 0, no page
            }
            registers[1] = (private - page).min(pages);
            registers[2] = MemState::Owned as u64;
        });
        log
    }

    /// A fake hypervisor that answers `HYP_MEMINFO` with `x2` = `alias` and records the calls.
    fn meminfo(alias: u64) -> Rc<RefCell<Vec<u64>>> {
        let log = Rc::new(RefCell::new(Vec::new()));
        let calls = log.clone();
        install_fake(move |_, registers| {
            calls.borrow_mut().push(registers[0]);
            *registers = [0; 18];
            registers[0] = 4096;
            registers[1] = 1;
            registers[2] = alias;
        });
        log
    }

    #[test]
    fn the_mode_is_hyp_meminfos_alias_bit() {
        let log = meminfo(1 << 39);
        assert_eq!(detect_mode(), Ok(ConversionMode::Split));
        assert_eq!(*log.borrow(), [u64::from(HYP_MEMINFO)]);
        let _log = meminfo(0);
        assert_eq!(detect_mode(), Ok(ConversionMode::History));
    }

    #[test]
    fn an_unknown_alias_or_a_failed_call_gives_no_mode() {
        let _log = meminfo(1 << 38);
        assert_eq!(detect_mode(), Err(ModeError::UnknownAlias(1 << 38)));
        install_fake(|_, registers| registers[0] = SmcccError::NOT_SUPPORTED.0 as u64);
        assert_eq!(
            detect_mode(),
            Err(ModeError::Call(SmcccError::NOT_SUPPORTED))
        );
    }

    #[test]
    fn the_state_query_cross_check_sees_the_alias_only_in_split_mode() {
        let _log = hypervisor(512, true);
        assert_eq!(mode_from_mem_state(GUEST_RAM_IPA), ConversionMode::Split);
        let log = hypervisor(512, false);
        assert_eq!(mode_from_mem_state(GUEST_RAM_IPA), ConversionMode::History);
        assert_eq!(*log.borrow(), [(0x80_4000_0000, 1)]);
        install_fake(|_, registers| registers[0] = SmcccError::INVALID_PARAMETER.0 as u64);
        assert_eq!(mode_from_mem_state(GUEST_RAM_IPA), ConversionMode::History);
    }

    #[test]
    fn ram_is_measured_in_runs_of_at_most_512_pages() {
        let log = hypervisor(1024 + 7, false);
        assert_eq!(measure_ram(GUEST_RAM_IPA), Ok(1031));
        assert_eq!(
            *log.borrow(),
            [
                (0x4000_0000, 1),
                (0x4000_0000, 512),
                (0x4020_0000, 512),
                (0x4040_0000, 512)
            ]
        );
        let _log = hypervisor(0, false);
        assert_eq!(measure_ram(GUEST_RAM_IPA), Ok(0));
        let _log = hypervisor(512, false);
        assert_eq!(measure_ram(GUEST_RAM_IPA), Ok(512));
    }
}
