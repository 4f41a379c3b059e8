//! The guest runtime on plain QEMU: `virt` with virtualization off, so the guest runs at EL1 on
//! the machine itself, with QEMU's real PL011 at 0x0900_0000 and QEMU's own PSCI behind `HVC`
//! (hw/arm/virt.c picks the HVC conduit when EL2 is absent). No hypervisor: the boot register
//! is not the VMM's magic, so the guest makes no Frameshift call and says so.
//!
//! These runs check what the hypervisor-side tests cannot yet (the kernel does not run VMs): the
//! entry, `.bss`, FP, the vectors, the stage-1 tables and the MMU, the console and PSCI
//! `SYSTEM_OFF`; and that the flat image (`<bin>.bin`, what a region's `prefill_path` places in a
//! guest's RAM) boots exactly like the ELF.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use frameshift_tests::scenario;
use frameshift_vm_protocol::demo::PLAINTEXT;

/// How long one plain-QEMU boot may take.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Boots plain QEMU `virt` (no EL2, no EL3) with `load` arguments; returns the console and
/// QEMU's exit status, or an error on timeout.
fn boot_plain(load: &[String]) -> Result<(String, i32), String> {
    let mut child = Command::new(frameshift_xtask::qemu::QEMU_PROGRAM)
        .args([
            "-machine",
            "virt",
            "-cpu",
            "cortex-a57",
            "-m",
            "128M",
            "-nographic",
        ])
        .args(["-monitor", "none", "-no-reboot"])
        .args(load)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| format!("cannot run QEMU: {error}"))?;
    let mut stdout = child.stdout.take().ok_or("no stdout")?;
    let reader = std::thread::spawn(move || {
        let mut console = Vec::new();
        let _ = stdout.read_to_end(&mut console);
        console
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|error| error.to_string())? {
            break status;
        }
        if start.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            let console = reader.join().unwrap_or_default();
            return Err(format!(
                "timed out after {TIMEOUT:?}; console:\n{}",
                String::from_utf8_lossy(&console)
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let console = reader.join().map_err(|_| "console reader panicked")?;
    Ok((
        String::from_utf8_lossy(&console).into_owned(),
        status.code().unwrap_or(-1),
    ))
}

fn program(name: &str) -> Result<std::path::PathBuf, String> {
    let firmware = scenario::firmware()?;
    let path = firmware.programs_dir.join(name);
    if path.exists() {
        Ok(path)
    } else {
        Err(format!("{} was not built", path.display()))
    }
}

fn lines(console: &str) -> Vec<&str> {
    console
        .lines()
        .map(|line| line.trim_end_matches('\r'))
        .filter(|line| !line.is_empty())
        .collect()
}

/// The demo guest's whole console without a hypervisor, and a clean power-off.
fn check_bare_demo(console: &str, status: i32) {
    let lines = lines(console);
    assert_eq!(lines.len(), 4, "{console}");
    let boot = "bare mode: demo_guest booted at EL1 with its MMU on, RAM 0x40000000..";
    assert!(lines[0].starts_with(boot), "{console}");
    assert_eq!(
        lines[1],
        "no hypervisor: nothing to convert; checking the runtime with a local decryption"
    );
    let plaintext = std::str::from_utf8(PLAINTEXT).unwrap_or_default();
    assert_eq!(lines[2], format!("decrypted in place: \"{plaintext}\""));
    assert_eq!(lines[3], "demo passed (1 checks)");
    // QEMU exits only through the guest's PSCI SYSTEM_OFF (-no-reboot, no semihosting).
    assert_eq!(status, 0, "{console}");
}

#[test]
fn demo_guest_boots_bare_from_its_elf_with_the_mmu_on() -> Result<(), String> {
    let elf = program("demo_guest.elf")?;
    let (console, status) = boot_plain(&["-kernel".to_owned(), elf.display().to_string()])?;
    check_bare_demo(&console, status);
    Ok(())
}

/// An ELF64 AArch64 executable whose one `PT_LOAD` segment is `bytes` at 0x4000_0000, entered
/// there: how to hand QEMU a flat image at the base of RAM (its generic loader refuses raw data
/// there, where it puts the device tree when no kernel is given).
fn wrap_in_elf(bytes: &[u8]) -> Vec<u8> {
    let base = 0x4000_0000u64;
    let mut out = vec![0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    out.extend(2u16.to_le_bytes()); // ET_EXEC
    out.extend(183u16.to_le_bytes()); // EM_AARCH64
    out.extend(1u32.to_le_bytes());
    out.extend(base.to_le_bytes()); // e_entry
    out.extend(64u64.to_le_bytes()); // e_phoff
    out.extend(0u64.to_le_bytes()); // e_shoff
    out.extend(0u32.to_le_bytes());
    for half in [64u16, 56, 1, 64, 0, 0] {
        out.extend(half.to_le_bytes());
    }
    let offset = 0x1000u64;
    out.extend(1u32.to_le_bytes()); // PT_LOAD
    out.extend(7u32.to_le_bytes()); // RWX
    out.extend(offset.to_le_bytes());
    out.extend(base.to_le_bytes());
    out.extend(base.to_le_bytes());
    // File size = memory size: nothing past the flat image is zero-filled by the loader, as
    // nothing is by a prefill; the guest zeroes its own .bss.
    out.extend((bytes.len() as u64).to_le_bytes());
    out.extend((bytes.len() as u64).to_le_bytes());
    out.extend(0x1000u64.to_le_bytes());
    out.resize(offset as usize, 0);
    out.extend_from_slice(bytes);
    out
}

#[test]
fn the_flat_image_boots_like_the_elf() -> Result<(), String> {
    let bin = std::fs::read(program("demo_guest.bin")?).map_err(|error| error.to_string())?;
    let wrapped = scenario::image_dir("guest_runtime").join("demo_guest_flat.elf");
    std::fs::create_dir_all(wrapped.parent().ok_or("no parent")?)
        .map_err(|error| error.to_string())?;
    std::fs::write(&wrapped, wrap_in_elf(&bin)).map_err(|error| error.to_string())?;
    let (console, status) = boot_plain(&["-kernel".to_owned(), wrapped.display().to_string()])?;
    check_bare_demo(&console, status);
    Ok(())
}

#[test]
fn the_flat_image_is_the_elf_loaded_from_the_link_base() -> Result<(), String> {
    let elf = program("demo_guest.elf")?;
    let bytes = std::fs::read(&elf).map_err(|error| error.to_string())?;
    let image =
        frameshift_xtask::firmware::flat_image(&elf, &bytes).map_err(|error| error.to_string())?;
    assert_eq!(image.base, 0x4000_0000);
    let bin = std::fs::read(program("demo_guest.bin")?).map_err(|error| error.to_string())?;
    assert_eq!(bin, image.bytes);
    // `_start`'s first instruction is `mov x19, x0` (0xaa0003f3): the entry is the first byte.
    assert_eq!(bin.get(..4), Some(&0xaa00_03f3u32.to_le_bytes()[..]));
    assert!(Path::new(&elf).with_extension("bin").exists());
    Ok(())
}
