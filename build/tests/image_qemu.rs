//! The image really boots in QEMU 7.2 `virt`: a stand-in EL2 kernel (a few hand-assembled
//! instructions) follows `FRAMESHIFT_BOOT_INFO` to the blob, checks its magic, prints `OK` (or
//! `X`) on the PL011 and powers off with PSCI `SYSTEM_OFF`. This proves that QEMU's `-kernel`
//! loader puts every segment at its physical address, that the entry is right and that the
//! symbol patch points at the loaded blob.
#![allow(
    clippy::expect_used,
    reason = "a test fails loudly on the first unexpected result"
)]

mod image_support;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use frameshift_build::image::build;
use image_support::*;

/// The stand-in kernel's code at 0x4010_0000 (encodings checked with `llvm-mc`):
///
/// ```text
/// 0x00 adr  x1, .+0x2010          // &FRAMESHIFT_BOOT_INFO (0x4010_2010)
/// 0x04 ldr  x2, [x1]              // boot info PA
/// 0x08 ldr  x3, [x2]              // its first 8 bytes
/// 0x0c ldr  x4, magic             // "FSBOOTv1"
/// 0x10 movz x5, #0x0900, lsl #16  // PL011 data register
/// 0x14 cmp  x3, x4
/// 0x18 b.ne bad
/// 0x1c mov  w6, #'O' ; strb w6, [x5] ; mov w6, #'K' ; strb w6, [x5] ; b off
/// 0x30 bad: mov w6, #'X' ; strb w6, [x5]
/// 0x38 off: mov w0, #0x8400_0008 (movz + movk) ; smc #0   // PSCI SYSTEM_OFF
/// 0x44 b .
/// 0x48 magic: "FSBOOTv1"
/// ```
const CODE: [u32; 18] = [
    0x1001_0081,
    0xF940_0022,
    0xF940_0043,
    0x5800_01E4,
    0xD2A1_2005,
    0xEB04_007F,
    0x5400_00C1,
    0x5280_09E6,
    0x3900_00A6,
    0x5280_0966,
    0x3900_00A6,
    0x1400_0003,
    0x5280_0B06,
    0x3900_00A6,
    0x5280_0100,
    0x72B0_8000,
    0xD400_0003,
    0x1400_0000,
];

/// Boots `image` in QEMU; returns the exit status, the console and QEMU's stderr.
fn run_qemu(image: &std::path::Path) -> (std::process::ExitStatus, String, String) {
    let mut child = Command::new("qemu-system-aarch64")
        .args([
            "-machine",
            "virt,virtualization=on,gic-version=3",
            "-cpu",
            "cortex-a57",
        ])
        .args([
            "-m", "512M", "-display", "none", "-monitor", "none", "-serial", "stdio",
        ])
        .args(["-no-reboot", "-kernel"])
        .arg(image)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("qemu-system-aarch64 (QEMU 7.2) must be installed");
    // A generous bound that only a hang reaches; the run itself takes well under a second.
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for QEMU") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("QEMU did not power off: the stand-in kernel hung");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut console = String::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut console)
        .expect("console");
    let mut errors = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut errors)
        .expect("stderr");
    (status, console, errors)
}

fn checking_hypervisor() -> StandInElf {
    let mut code: Vec<u8> = CODE.iter().flat_map(|word| word.to_le_bytes()).collect();
    code.extend_from_slice(b"FSBOOTv1");
    let mut elf = hypervisor();
    elf.segments[0].mem_size = code.len() as u64;
    elf.segments[0].data = code;
    elf
}

#[test]
fn qemu_loads_the_image_and_the_kernel_finds_the_boot_info() {
    let dir = scratch("qemu-boot");
    let inputs = write_fixtures(&dir);
    checking_hypervisor().write(&inputs.hypervisor_elf);
    let image = build(&system(), &inputs).expect("build");
    let written = image.write_to(&dir.join("out")).expect("write");

    let (status, console, errors) = run_qemu(&written.image);
    assert!(status.success(), "QEMU exit {status:?}, stderr: {errors}");
    assert_eq!(console, "OK", "console {console:?}, stderr: {errors}");
}

#[test]
fn qemu_run_detects_a_corrupted_boot_info_magic() {
    // The same stand-in kernel against an image whose boot-info magic was overwritten: it must
    // print `X`, which shows the check above is not vacuous.
    let dir = scratch("qemu-corrupt");
    let inputs = write_fixtures(&dir);
    checking_hypervisor().write(&inputs.hypervisor_elf);
    let mut image = build(&system(), &inputs).expect("build");
    image.image[image.boot_info_offset_in_image] ^= 0xFF;
    let written = image.write_to(&dir.join("out")).expect("write");
    let (_, console, errors) = run_qemu(&written.image);
    assert_eq!(console, "X", "stderr: {errors}");
}
