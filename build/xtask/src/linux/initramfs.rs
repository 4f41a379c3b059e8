//! The guest's initramfs: busybox (static, arm64) and an `/init` script that prints marker lines
//! and powers the machine off, as a gzip-compressed `newc` archive.
//!
//! | path | what |
//! | --- | --- |
//! | `/init` | [`INIT_SCRIPT`] |
//! | `/bin/busybox` | Debian's `busybox-static` |
//! | `/bin/<applet>` | a symbolic link to `busybox` for each of [`APPLETS`] |
//! | `/dev/console`, `/dev/kmsg` | device nodes, so init has a console before any mount |
//! | `/proc`, `/sys` | mount points |
//!
//! The first marker goes to `/dev/kmsg`, so Linux prints it with its own timestamp (the
//! kernel's clock at that moment: virtual time under `-icount`). The later lines go through
//! `/dev/console`, the tty path, which is the UART driver's interrupt-capable side.

use std::io::Write;

use flate2::write::GzEncoder;
use flate2::{Compression, GzBuilder};

use super::cpio::Archive;

/// The line `/init` writes to `/dev/kmsg` first: the boot has reached user space.
pub const MARKER_INIT: &str = "FRAMESHIFT-LINUX: init reached";
/// The prefix of the line with the kernel release (`uname -r`).
pub const MARKER_KERNEL: &str = "FRAMESHIFT-LINUX: kernel ";
/// The prefix of the line with the number of CPUs Linux brought up.
pub const MARKER_CPUS: &str = "FRAMESHIFT-LINUX: cpus ";
/// The line right before the power-off.
pub const MARKER_POWER_OFF: &str = "FRAMESHIFT-LINUX: powering off";

/// `/init`. `poweroff -f` skips init's shutdown and calls `reboot(RB_POWER_OFF)` at once, which
/// Linux carries out with PSCI `SYSTEM_OFF`.
pub const INIT_SCRIPT: &str = "\
#!/bin/sh
# Frameshift's Linux guest test: say that user space runs, what runs it, and power off.
mount -t proc proc /proc
echo 'FRAMESHIFT-LINUX: init reached' > /dev/kmsg
echo \"FRAMESHIFT-LINUX: kernel $(uname -r)\"
echo \"FRAMESHIFT-LINUX: cpus $(grep -c ^processor /proc/cpuinfo)\"
echo 'FRAMESHIFT-LINUX: powering off'
poweroff -f
";

/// The busybox applets `/init` uses, each linked in `/bin`.
pub const APPLETS: [&str; 6] = ["sh", "mount", "echo", "uname", "grep", "poweroff"];

/// The archive, uncompressed.
pub fn archive(busybox: &[u8]) -> Vec<u8> {
    let mut archive = Archive::new();
    archive.directory("bin", 0o755);
    archive.file("bin/busybox", 0o755, busybox);
    for applet in APPLETS {
        archive.symlink(&format!("bin/{applet}"), "busybox");
    }
    archive.directory("dev", 0o755);
    // Linux's console (5:1) and printk's user interface (1:11), with the kernel's numbers.
    archive.char_device("dev/console", 0o600, 5, 1);
    archive.char_device("dev/kmsg", 0o644, 1, 11);
    archive.directory("proc", 0o755);
    archive.directory("sys", 0o755);
    archive.file("init", 0o755, INIT_SCRIPT.as_bytes());
    archive.finish()
}

/// The archive, gzip-compressed (no file name, modification time 0: reproducible).
pub fn build(busybox: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut encoder: GzEncoder<Vec<u8>> = GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), Compression::best());
    encoder.write_all(&archive(busybox))?;
    encoder.finish()
}

#[cfg(test)]
// A failed expectation in a test is the test failing, which is what panicking reports.
#[allow(clippy::expect_used, clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::linux::cpio;
    use std::io::Read;

    #[test]
    fn the_archive_has_init_busybox_its_applets_and_the_device_nodes() {
        let gzip = build(b"\x7fELF fake busybox").unwrap();
        let mut bytes = Vec::new();
        flate2::read::GzDecoder::new(gzip.as_slice())
            .read_to_end(&mut bytes)
            .unwrap();
        let entries = cpio::read(&bytes).expect("a valid newc archive");
        let find = |path: &str| {
            entries
                .iter()
                .find(|entry| entry.path == path)
                .unwrap_or_else(|| panic!("{path} in the archive"))
        };
        let init = find("init");
        assert!(init.is_file() && init.mode & 0o111 == 0o111);
        assert_eq!(init.data, INIT_SCRIPT.as_bytes());
        assert_eq!(find("bin/busybox").data, b"\x7fELF fake busybox");
        for applet in APPLETS {
            let link = find(&format!("bin/{applet}"));
            assert!(link.is_symlink() && link.data == b"busybox", "{applet}");
        }
        assert_eq!(find("dev/console").device, (5, 1));
        assert_eq!(find("dev/kmsg").device, (1, 11));
        assert!(find("proc").is_directory());
        // Parents come before their children, as the kernel creates entries in order.
        let position = |path: &str| entries.iter().position(|entry| entry.path == path);
        assert!(position("bin") < position("bin/busybox"));
        assert!(position("dev") < position("dev/console"));
    }

    #[test]
    fn the_script_prints_every_marker_and_uses_only_linked_applets() {
        for marker in [MARKER_INIT, MARKER_KERNEL, MARKER_CPUS, MARKER_POWER_OFF] {
            assert!(INIT_SCRIPT.contains(marker), "{marker}");
        }
        assert!(INIT_SCRIPT.starts_with("#!/bin/sh\n"));
        for line in INIT_SCRIPT
            .lines()
            .skip(1)
            .filter(|line| !line.starts_with('#'))
        {
            let command = line.split_whitespace().next().unwrap_or_default();
            assert!(APPLETS.contains(&command), "{command} is linked");
        }
    }

    #[test]
    fn the_same_busybox_gives_the_same_bytes() {
        assert_eq!(build(b"abc").unwrap(), build(b"abc").unwrap());
    }
}
