//! The guest's device tree: exactly the devices Linux needs to boot on this VMM (DESIGN.md 10),
//! at the addresses QEMU's `virt` machine uses, so a kernel that boots on `virt` finds them.
//!
//! | node | what |
//! | --- | --- |
//! | `/chosen` | `bootargs`, `stdout-path`, `linux,initrd-start`/`-end` |
//! | `/memory@40000000` | the guest's RAM |
//! | `/cpus/cpu@N` | one per vCPU, `reg` = its MPIDR (Aff0 = index), `enable-method = "psci"` |
//! | `/psci` | PSCI 1.0 and 0.2, `method = "hvc"`: the hypervisor serves it at EL2 |
//! | `/intc@8000000` | a GICv3: the distributor, then one redistributor frame pair per vCPU; no ITS |
//! | `/timer` | the arch timer's four PPIs (Linux at EL1 uses the virtual one, PPI 27) |
//! | `/apb-pclk` | the fixed 24 MHz clock the PL011's driver asks for |
//! | `/pl011@9000000` | the emulated UART, SPI 1 |

use frameshift_fdt::{FdtError, FdtWriter};

use crate::layout::{Placement, RAM_BASE, UART_BASE, UART_SIZE, UART_SPI};
use crate::vgic::{GICD_BASE, GICD_SIZE, GICR_BASE, GICR_STRIDE};

/// The interrupt controller's phandle.
const GIC_PHANDLE: u32 = 1;
/// The UART clock's phandle.
const CLOCK_PHANDLE: u32 = 2;
/// GIC interrupt specifier: an SPI, a PPI.
const GIC_SPI: u32 = 0;
const GIC_PPI: u32 = 1;
/// `IRQ_TYPE_LEVEL_HIGH`.
const LEVEL_HIGH: u32 = 4;
/// The arch timer's PPIs (as PPI numbers, INTID - 16): secure physical, non-secure physical,
/// virtual, hypervisor.
const TIMER_PPIS: [u32; 4] = [13, 14, 11, 10];

/// What the tree describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Guest<'a> {
    /// Bytes of RAM from [`RAM_BASE`].
    pub ram_bytes: u64,
    /// vCPUs (1..=[`crate::vgic::MAX_VCPUS`]); vCPU `n` has MPIDR `n`.
    pub vcpus: u32,
    /// Where the kernel, initrd and tree go.
    pub placement: Placement,
    /// The kernel command line.
    pub bootargs: &'a str,
}

fn node_name<'b>(buffer: &'b mut [u8; 32], prefix: &str, address: u64) -> &'b str {
    // "<prefix>@<hex>" with no formatting machinery: the names are short and fixed.
    let mut length = 0;
    for byte in prefix.bytes().chain(core::iter::once(b'@')) {
        buffer[length] = byte;
        length += 1;
    }
    let digits = if address == 0 {
        1
    } else {
        (64 - address.leading_zeros()).div_ceil(4) as usize
    };
    for index in (0..digits).rev() {
        let nibble = ((address >> (index * 4)) & 0xF) as u8;
        buffer[length] = if nibble < 10 {
            b'0' + nibble
        } else {
            b'a' + nibble - 10
        };
        length += 1;
    }
    core::str::from_utf8(&buffer[..length]).unwrap_or("")
}

/// Writes the tree into `buffer`; returns its size.
pub fn write(buffer: &mut [u8], guest: &Guest<'_>) -> Result<usize, FdtError> {
    let mut name = [0u8; 32];
    let mut tree = FdtWriter::new(buffer)?;
    tree.begin_node("")?;
    tree.property_u32("#address-cells", 2)?;
    tree.property_u32("#size-cells", 2)?;
    tree.property_string("compatible", "linux,dummy-virt")?;
    tree.property_string("model", "frameshift,linux-vmm")?;
    tree.property_u32("interrupt-parent", GIC_PHANDLE)?;

    tree.begin_node("chosen")?;
    tree.property_string("bootargs", guest.bootargs)?;
    tree.property_string(
        "stdout-path",
        node_name(&mut name, "/pl011", UART_BASE.get()),
    )?;
    tree.property_u64s("linux,initrd-start", &[guest.placement.initrd.get()])?;
    tree.property_u64s("linux,initrd-end", &[guest.placement.initrd_end.get()])?;
    tree.end_node()?;

    tree.begin_node(node_name(&mut name, "memory", RAM_BASE.get()))?;
    tree.property_string("device_type", "memory")?;
    tree.property_u64s("reg", &[RAM_BASE.get(), guest.ram_bytes])?;
    tree.end_node()?;

    tree.begin_node("cpus")?;
    tree.property_u32("#address-cells", 1)?;
    tree.property_u32("#size-cells", 0)?;
    for cpu in 0..guest.vcpus {
        tree.begin_node(node_name(&mut name, "cpu", u64::from(cpu)))?;
        tree.property_string("device_type", "cpu")?;
        tree.property_string("compatible", "arm,armv8")?;
        tree.property_u32("reg", cpu)?;
        tree.property_string("enable-method", "psci")?;
        tree.end_node()?;
    }
    tree.end_node()?;

    tree.begin_node("psci")?;
    tree.property_strings("compatible", &["arm,psci-1.0", "arm,psci-0.2"])?;
    tree.property_string("method", "hvc")?;
    tree.end_node()?;

    tree.begin_node(node_name(&mut name, "intc", GICD_BASE.get()))?;
    tree.property_string("compatible", "arm,gic-v3")?;
    tree.property_u32("#interrupt-cells", 3)?;
    tree.property_empty("interrupt-controller")?;
    tree.property_u32("#redistributor-regions", 1)?;
    tree.property_u64s(
        "reg",
        &[
            GICD_BASE.get(),
            GICD_SIZE,
            GICR_BASE.get(),
            u64::from(guest.vcpus) * GICR_STRIDE,
        ],
    )?;
    tree.property_u32("phandle", GIC_PHANDLE)?;
    tree.end_node()?;

    tree.begin_node("timer")?;
    tree.property_string("compatible", "arm,armv8-timer")?;
    let mut timer = [0u32; 12];
    for (cells, ppi) in timer.chunks_mut(3).zip(TIMER_PPIS) {
        cells.copy_from_slice(&[GIC_PPI, ppi, LEVEL_HIGH]);
    }
    tree.property_cells("interrupts", &timer)?;
    tree.property_empty("always-on")?;
    tree.end_node()?;

    tree.begin_node("apb-pclk")?;
    tree.property_string("compatible", "fixed-clock")?;
    tree.property_u32("#clock-cells", 0)?;
    tree.property_u32("clock-frequency", 24_000_000)?;
    tree.property_string("clock-output-names", "clk24mhz")?;
    tree.property_u32("phandle", CLOCK_PHANDLE)?;
    tree.end_node()?;

    tree.begin_node(node_name(&mut name, "pl011", UART_BASE.get()))?;
    tree.property_strings("compatible", &["arm,pl011", "arm,primecell"])?;
    tree.property_u64s("reg", &[UART_BASE.get(), UART_SIZE])?;
    tree.property_cells("interrupts", &[GIC_SPI, UART_SPI, LEVEL_HIGH])?;
    tree.property_cells("clocks", &[CLOCK_PHANDLE, CLOCK_PHANDLE])?;
    tree.property_strings("clock-names", &["uartclk", "apb_pclk"])?;
    tree.end_node()?;

    tree.end_node()?;
    tree.finish(0)
}

#[cfg(test)]
// A failed expectation in a test is the test failing, which is what panicking reports.
#[allow(clippy::expect_used, clippy::unwrap_used)]
mod tests {
    use super::*;
    use frameshift_abi::addr::Ipa;
    use std::vec::Vec;

    fn guest(vcpus: u32) -> Guest<'static> {
        Guest {
            ram_bytes: 0x1000_0000,
            vcpus,
            placement: Placement {
                kernel: Ipa(0x4000_0000),
                initrd: Ipa(0x4F00_0000),
                initrd_end: Ipa(0x4F0F_0BE6),
                dtb: Ipa(0x4FE0_0000),
            },
            bootargs: "console=ttyAMA0 panic=-1",
        }
    }

    fn blob(vcpus: u32) -> Vec<u8> {
        let mut buffer = [0u8; 4096];
        let size = write(&mut buffer, &guest(vcpus)).expect("the tree fits");
        buffer[..size].to_vec()
    }

    #[test]
    fn a_reader_finds_what_linux_needs() {
        let bytes = blob(2);
        let tree = fdt::Fdt::new(&bytes).expect("a valid tree");
        let chosen = tree.chosen();
        assert_eq!(chosen.bootargs(), Some("console=ttyAMA0 panic=-1"));
        let stdout = chosen.stdout().expect("stdout-path");
        assert_eq!(stdout.name, "pl011@9000000");
        let memory = tree.memory().regions().next().expect("a memory region");
        assert_eq!(memory.starting_address as u64, 0x4000_0000);
        assert_eq!(memory.size, Some(0x1000_0000));
        let start = tree.find_node("/chosen").unwrap();
        let initrd = start.property("linux,initrd-start").unwrap().as_usize();
        let end = start.property("linux,initrd-end").unwrap().as_usize();
        assert_eq!((initrd, end), (Some(0x4F00_0000), Some(0x4F0F_0BE6)));
        let cpus: Vec<usize> = tree.cpus().map(|cpu| cpu.ids().first()).collect();
        assert_eq!(cpus, [0, 1]);
        let psci = tree.find_node("/psci").unwrap();
        assert_eq!(psci.property("method").unwrap().as_str(), Some("hvc"));
        let gic = tree.find_compatible(&["arm,gic-v3"]).expect("a GICv3");
        let regions: Vec<(usize, Option<usize>)> = gic
            .reg()
            .unwrap()
            .map(|region| (region.starting_address as usize, region.size))
            .collect();
        assert_eq!(
            regions,
            [(0x0800_0000, Some(0x1_0000)), (0x080A_0000, Some(0x4_0000))]
        );
        let uart = tree.find_compatible(&["arm,pl011"]).expect("a PL011");
        let interrupts = uart.property("interrupts").unwrap().value;
        assert_eq!(interrupts, [0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 4]);
        let timer = tree.find_compatible(&["arm,armv8-timer"]).expect("a timer");
        // The third specifier is the virtual timer: PPI 11, INTID 27.
        let cells = timer.property("interrupts").unwrap().value;
        assert_eq!(cells[24..36], [0, 0, 0, 1, 0, 0, 0, 11, 0, 0, 0, 4]);
    }

    #[test]
    fn one_cpu_node_and_redistributor_per_vcpu() {
        for vcpus in [1, 2, 4] {
            let bytes = blob(vcpus);
            let tree = fdt::Fdt::new(&bytes).expect("a valid tree");
            assert_eq!(tree.cpus().count(), vcpus as usize);
            let gic = tree.find_compatible(&["arm,gic-v3"]).unwrap();
            let redistributors = gic.reg().unwrap().nth(1).unwrap();
            assert_eq!(redistributors.size, Some(vcpus as usize * 0x2_0000));
        }
    }

    #[test]
    fn a_small_buffer_is_an_error_not_a_partial_tree() {
        let mut buffer = [0u8; 256];
        assert_eq!(write(&mut buffer, &guest(1)), Err(FdtError::BufferFull));
    }

    #[test]
    fn node_names_are_hex_addresses() {
        let mut name = [0u8; 32];
        assert_eq!(node_name(&mut name, "cpu", 0), "cpu@0");
        assert_eq!(node_name(&mut name, "pl011", 0x900_0000), "pl011@9000000");
        assert_eq!(
            node_name(&mut name, "memory", 0x4000_0000),
            "memory@40000000"
        );
    }
}
