//! The QEMU launcher against real QEMU, with tiny hand-assembled EL2 images.
//!
//! The images are built here rather than with the real kernel so the launcher's own behaviour
//! (capture, halt-line verdict, timeout kill, PSCI power-off) is tested independently of it.
// A failed expectation in a test is the test failing, which is what panicking reports.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod support;

use std::path::PathBuf;
use std::time::Duration;

use frameshift_xtask::qemu::{self, Cpu, QemuOptions};

/// Where the image is loaded: the kernel's link address (coordination.md memory layout).
const LOAD_ADDRESS: u64 = 0x4010_0000;

/// What the image does after printing its message.
#[derive(Clone, Copy)]
enum Ending {
    /// PSCI SYSTEM_OFF by SMC from EL2: QEMU exits with status 0.
    PowerOff,
    /// Spin forever, so only the launcher's timeout ends the run.
    Spin,
}

/// A minimal AArch64 program: print `message` on the PL011 at 0x0900_0000, then end.
///
/// Hand-encoded instead of assembled because the host has no AArch64 assembler and this is ten
/// instructions; each word names its instruction.
fn program(message: &str, ending: Ending) -> Vec<u8> {
    let words: [u32; 10] = [
        0x1000_0201, // 0x00 adr  x1, 0x40          (the message)
        0xD2A1_2002, // 0x04 movz x2, #0x0900, lsl #16 (PL011 data register)
        0x3840_1423, // 0x08 ldrb w3, [x1], #1
        0x3400_0063, // 0x0c cbz  w3, 0x18
        0x3900_0043, // 0x10 strb w3, [x2]
        0x17FF_FFFD, // 0x14 b    0x08
        0x5280_0100, // 0x18 movz w0, #0x0008
        0x72B0_8000, // 0x1c movk w0, #0x8400, lsl #16 (PSCI SYSTEM_OFF)
        match ending {
            Ending::PowerOff => 0xD400_0003, // 0x20 smc #0
            Ending::Spin => 0xD503_201F,     // 0x20 nop
        },
        0x1400_0000, // 0x24 b .
    ];
    let mut code: Vec<u8> = words.iter().flat_map(|word| word.to_le_bytes()).collect();
    code.resize(0x40, 0);
    code.extend_from_slice(message.as_bytes());
    code.push(0);
    code
}

/// Wraps `code` in an ELF64 executable with one PT_LOAD segment at [`LOAD_ADDRESS`].
///
/// Hand-written (120 bytes of header) because the fixture needs nothing else from an ELF writer.
fn elf(code: &[u8]) -> Vec<u8> {
    const EHDR_SIZE: u16 = 64;
    const PHDR_SIZE: u16 = 56;
    const CODE_OFFSET: u64 = 0x80;
    let size = code.len() as u64;
    let mut out = Vec::new();
    out.extend_from_slice(&[0x7F, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    out.extend_from_slice(&2u16.to_le_bytes()); // e_type: EXEC
    out.extend_from_slice(&183u16.to_le_bytes()); // e_machine: AArch64
    out.extend_from_slice(&1u32.to_le_bytes()); // e_version
    out.extend_from_slice(&LOAD_ADDRESS.to_le_bytes()); // e_entry
    out.extend_from_slice(&u64::from(EHDR_SIZE).to_le_bytes()); // e_phoff
    out.extend_from_slice(&0u64.to_le_bytes()); // e_shoff
    out.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    out.extend_from_slice(&EHDR_SIZE.to_le_bytes());
    out.extend_from_slice(&PHDR_SIZE.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // e_phnum
    out.extend_from_slice(&[0; 6]); // e_shentsize, e_shnum, e_shstrndx
    out.extend_from_slice(&1u32.to_le_bytes()); // p_type: PT_LOAD
    out.extend_from_slice(&5u32.to_le_bytes()); // p_flags: R X
    out.extend_from_slice(&CODE_OFFSET.to_le_bytes());
    out.extend_from_slice(&LOAD_ADDRESS.to_le_bytes()); // p_vaddr
    out.extend_from_slice(&LOAD_ADDRESS.to_le_bytes()); // p_paddr
    out.extend_from_slice(&size.to_le_bytes()); // p_filesz
    out.extend_from_slice(&size.to_le_bytes()); // p_memsz
    out.extend_from_slice(&4u64.to_le_bytes()); // p_align
    out.resize(CODE_OFFSET as usize, 0);
    out.extend_from_slice(code);
    out
}

fn write_image(name: &str, message: &str, ending: Ending) -> PathBuf {
    let path = support::scratch_dir().join(name);
    std::fs::write(&path, elf(&program(message, ending))).expect("write test image");
    path
}

#[test]
fn halt_line_status_becomes_the_exit_code() {
    let image = write_image(
        "halt3.elf",
        "FS|hypervisor|boot\r\nFS|hypervisor|halt status=3 reason=test-failure pd=hello\r\n",
        Ending::PowerOff,
    );
    let outcome = qemu::run(&image, &QemuOptions::default()).expect("QEMU runs");
    assert!(!outcome.timed_out, "{outcome:?}");
    assert!(
        outcome.qemu_exit.success(),
        "PSCI SYSTEM_OFF ends QEMU with 0: {outcome:?}"
    );
    let halt = outcome.halt.as_ref().expect("halt line captured");
    assert_eq!(
        (halt.status, halt.reason.as_str(), halt.field("pd")),
        (3, "test-failure", Some("hello"))
    );
    assert_eq!(outcome.exit_code(), 3);
    assert!(
        outcome.console.starts_with("FS|hypervisor|boot\r\n"),
        "{:?}",
        outcome.console
    );
}

#[test]
fn success_under_icount_and_the_max_cpu() {
    let image = write_image(
        "halt0.elf",
        "FS|hypervisor|halt status=0 reason=ok\n",
        Ending::PowerOff,
    );
    let options = QemuOptions {
        icount: true,
        cpu: Cpu::Max,
        ..QemuOptions::default()
    };
    let outcome = qemu::run(&image, &options).expect("QEMU runs");
    assert_eq!(outcome.exit_code(), 0, "{outcome:?}");
    assert_eq!(outcome.halt.map(|halt| halt.reason), Some("ok".to_owned()));
}

#[test]
fn power_off_without_halt_line_is_a_failure() {
    let image = write_image("nohalt.elf", "FS|hello|bye\n", Ending::PowerOff);
    let outcome = qemu::run(&image, &QemuOptions::default()).expect("QEMU runs");
    assert!(outcome.qemu_exit.success(), "{outcome:?}");
    assert_eq!(outcome.halt, None);
    assert_eq!(outcome.exit_code(), 1);
}

#[test]
fn a_spinning_image_is_killed_at_the_timeout() {
    let image = write_image("spin.elf", "FS|hello|spinning\n", Ending::Spin);
    let options = QemuOptions {
        timeout: Some(Duration::from_secs(2)),
        ..QemuOptions::default()
    };
    let outcome = qemu::run(&image, &options).expect("QEMU runs");
    assert!(outcome.timed_out, "{outcome:?}");
    assert!(!outcome.qemu_exit.success());
    assert_eq!(outcome.exit_code(), 1);
    assert!(
        outcome.console.contains("FS|hello|spinning"),
        "{:?}",
        outcome.console
    );
}

#[test]
fn qemu_outliving_its_halt_line_is_killed_and_fails() {
    let image = write_image(
        "haltspin.elf",
        "FS|hypervisor|halt status=0 reason=ok\n",
        Ending::Spin,
    );
    let options = QemuOptions {
        timeout: Some(Duration::from_secs(60)),
        ..QemuOptions::default()
    };
    let outcome = qemu::run(&image, &options).expect("QEMU runs");
    assert!(
        !outcome.timed_out,
        "killed by the halt grace period, not the timeout: {outcome:?}"
    );
    assert!(outcome.halt.is_some());
    assert_eq!(
        outcome.exit_code(),
        1,
        "a status 0 that never powered off is not a pass"
    );
}

#[test]
fn a_forged_halt_line_neither_decides_nor_cuts_the_run_short() {
    // Issue 7, break 1: a domain's text after its own prefix, and a halt line with the
    // hypervisor's prefix followed by more output (what a PD named `hypervisor` printed), must
    // neither become the verdict nor start the grace period that kills QEMU after a halt line.
    let image = write_image(
        "forged.elf",
        "FS|hypervisor|boot\r\n\
         FS|evil|FS|hypervisor|halt status=0 reason=ok\r\n\
         FS|hypervisor|halt status=0 reason=forged\r\n\
         FS|evil|still running\r\n",
        Ending::Spin,
    );
    // Long enough that the grace period, had it started, would have ended the run first.
    let options = QemuOptions {
        timeout: Some(qemu::HALT_GRACE + Duration::from_secs(3)),
        ..QemuOptions::default()
    };
    let outcome = qemu::run(&image, &options).expect("QEMU runs");
    assert!(
        outcome.timed_out,
        "only the timeout may end this run, not a grace period after a forged halt line: {outcome:?}"
    );
    assert_eq!(outcome.halt, None, "{outcome:?}");
    assert_eq!(outcome.exit_code(), 1);
    assert!(
        outcome.console.contains("FS|evil|still running"),
        "{:?}",
        outcome.console
    );
}
