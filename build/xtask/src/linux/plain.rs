//! Booting the guest kernel under plain QEMU, with no hypervisor: the reference run that shows
//! the kernel and initramfs are good, and half of the cost-of-virtualization figure.
//!
//! The machine is QEMU's own `virt` with a GICv3 and no EL2, with QEMU's PSCI firmware (SMC
//! Calling Convention 1.0, so Linux makes no vendor hypervisor calls there). Two things QEMU
//! would make differ from run to run are pinned: `dtb-randomness=off` drops the device tree's
//! `kaslr-seed` and `rng-seed`, and `-rtc ...,clock=vm` starts the RTC at a fixed date and runs
//! it on virtual time. With `-icount shift=0,sleep=off` the boot is then the same instruction
//! for instruction every time.

use std::ffi::OsString;
use std::io::{self, Read};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::qemu::{console_argv, wait_or_kill, QEMU_PROGRAM};

/// The kernel command line: the PL011 console, and a reboot (PSCI `SYSTEM_RESET`) instead of a
/// hang should the kernel panic.
pub const BOOTARGS: &str = "console=ttyAMA0 panic=-1";

/// How one plain boot is run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlainBoot {
    /// `-smp`.
    pub cpus: u32,
    /// `-icount shift=0,sleep=off`.
    pub icount: bool,
    /// The guest's RAM (`-m`).
    pub memory: String,
    /// Kill QEMU after this long.
    pub timeout: Duration,
}

impl Default for PlainBoot {
    fn default() -> Self {
        Self {
            cpus: 2,
            icount: false,
            memory: "256M".to_owned(),
            timeout: Duration::from_secs(30),
        }
    }
}

impl PlainBoot {
    /// QEMU's arguments to boot `kernel` with `initrd`.
    pub fn argv(&self, kernel: &Path, initrd: &Path) -> Vec<OsString> {
        let mut args = console_argv(
            &[
                "-machine",
                "virt,gic-version=3,dtb-randomness=off",
                "-cpu",
                "cortex-a57",
                "-smp",
                &self.cpus.to_string(),
                "-m",
                &self.memory,
                "-rtc",
                "base=2025-01-01T00:00:00,clock=vm",
            ],
            self.icount,
        );
        args.push("-kernel".into());
        args.push(kernel.as_os_str().to_owned());
        args.push("-initrd".into());
        args.push(initrd.as_os_str().to_owned());
        args.push("-append".into());
        args.push(BOOTARGS.into());
        args
    }
}

/// What one plain boot produced.
#[derive(Debug)]
pub struct PlainOutcome {
    /// The serial console.
    pub console: String,
    /// How QEMU ended: with PSCI `SYSTEM_OFF` it exits on its own with status 0.
    pub status: ExitStatus,
    /// The timeout fired and QEMU was killed.
    pub timed_out: bool,
    /// How long it took on the host.
    pub wall: Duration,
}

/// Boots `kernel` and `initrd` under plain QEMU and waits for QEMU to exit or the timeout.
pub fn boot(kernel: &Path, initrd: &Path, options: &PlainBoot) -> io::Result<PlainOutcome> {
    let start = Instant::now();
    let mut child = Command::new(QEMU_PROGRAM)
        .args(options.argv(kernel, initrd))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut stdout = child
        .stdout
        .take()
        .ok_or_else(|| io::Error::other("no QEMU stdout pipe"))?;
    let reader = thread::spawn(move || {
        let mut bytes = Vec::new();
        // A read error only shortens the console, which the checks then find lacking.
        let _ = stdout.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    });
    let (status, timed_out) = wait_or_kill(&mut child, options.timeout)?;
    let console = reader.join().unwrap_or_default();
    Ok(PlainOutcome {
        console,
        status,
        timed_out,
        wall: start.elapsed(),
    })
}

#[cfg(test)]
// A failed expectation in a test is the test failing, which is what panicking reports.
#[allow(clippy::expect_used, clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_machine_is_plain_virt_with_pinned_randomness() {
        let options = PlainBoot {
            icount: true,
            ..PlainBoot::default()
        };
        let argv: Vec<String> = options
            .argv(Path::new("vmlinuz"), Path::new("initramfs.cpio.gz"))
            .into_iter()
            .map(|arg| arg.into_string().unwrap())
            .collect();
        assert_eq!(
            argv.join(" "),
            "-machine virt,gic-version=3,dtb-randomness=off -cpu cortex-a57 -smp 2 -m 256M \
             -rtc base=2025-01-01T00:00:00,clock=vm -nographic -monitor none -no-reboot \
             -icount shift=0,sleep=off -kernel vmlinuz -initrd initramfs.cpio.gz \
             -append console=ttyAMA0 panic=-1"
        );
        assert!(!argv.iter().any(|arg| arg.contains("virtualization")));
        assert!(!argv.iter().any(|arg| arg.contains("semihosting")));
    }
}
