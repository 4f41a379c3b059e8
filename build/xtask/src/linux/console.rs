//! Reading Linux's own console lines: the facts a boot test checks, taken from what the kernel
//! printed, the same way whether Linux ran on plain QEMU (bare lines) or under Frameshift (each
//! line inside `FS|<vm>|...`). A line matches wherever its text starts after the printk
//! timestamp, so a prefix in front of it does not matter.

use std::time::Duration;

use super::initramfs::{MARKER_CPUS, MARKER_INIT, MARKER_KERNEL};

/// The text of `line` after its printk timestamp (`[    0.953463] `), and the timestamp, if
/// it has one.
pub fn split_timestamp(line: &str) -> (Option<Duration>, &str) {
    let Some(open) = line.find('[') else {
        return (None, line);
    };
    let Some(close) = line[open..].find("] ").map(|offset| open + offset) else {
        return (None, line);
    };
    let stamp = line[open + 1..close].trim();
    let Some((seconds, micros_text)) = stamp.split_once('.') else {
        return (None, line);
    };
    // printk prints microseconds, always six digits.
    match (seconds.parse::<u64>(), micros_text.parse::<u64>()) {
        (Ok(seconds), Ok(micros)) if micros_text.len() == 6 => {
            let time = Duration::from_secs(seconds) + Duration::from_micros(micros);
            (Some(time), &line[close + 2..])
        }
        _ => (None, line),
    }
}

/// The lines of `console` whose text (after any prefix and timestamp) contains `needle`.
fn lines_with<'a>(console: &'a str, needle: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    console.lines().filter(move |line| line.contains(needle))
}

/// `major.minor` after `marker` in the first line that has it, e.g. `PSCIv1.1` → (1, 1).
fn version_after(console: &str, marker: &str) -> Option<(u32, u32)> {
    let line = lines_with(console, marker).next()?;
    let rest = &line[line.find(marker)? + marker.len()..];
    let number: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let (major, minor) = number.trim_end_matches('.').split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// PSCI's version as Linux found it: `psci: PSCIv1.1 detected in firmware.`
pub fn psci_version(console: &str) -> Option<(u32, u32)> {
    version_after(console, "psci: PSCIv")
}

/// The SMC Calling Convention version Linux settled on: `psci: SMC Calling Convention v1.1`.
pub fn smccc_version(console: &str) -> Option<(u32, u32)> {
    version_after(console, "SMC Calling Convention v")
}

/// The four FEATURES words of `smccc: KVM: hypervisor services detected (x3 x2 x1 x0)`, in
/// the order Linux prints them (x3 first).
pub fn kvm_services(console: &str) -> Option<[u32; 4]> {
    let marker = "KVM: hypervisor services detected (";
    let line = lines_with(console, marker).next()?;
    let inside = line[line.find(marker)? + marker.len()..]
        .split(')')
        .next()?;
    let words: Vec<u32> = inside
        .split_whitespace()
        .map(|word| u32::from_str_radix(word.trim_start_matches("0x"), 16).ok())
        .collect::<Option<_>>()?;
    words.try_into().ok()
}

/// The kernel's clock when `/init` wrote its first marker (the printk timestamp of that line):
/// the time from the kernel's clock start (`time_init`) to user space.
pub fn init_marker_time(console: &str) -> Option<Duration> {
    lines_with(console, MARKER_INIT).find_map(|line| match split_timestamp(line) {
        (Some(time), text) if text.trim_end() == MARKER_INIT => Some(time),
        _ => None,
    })
}

/// The value printed after `prefix` in the init script's lines.
fn marker_value<'a>(console: &'a str, prefix: &'a str) -> Option<&'a str> {
    let line = lines_with(console, prefix).next()?;
    Some(line[line.find(prefix)? + prefix.len()..].trim_end())
}

/// The kernel release `/init` saw (`uname -r`).
pub fn init_kernel_release(console: &str) -> Option<&str> {
    marker_value(console, MARKER_KERNEL)
}

/// The number of CPUs `/init` counted in `/proc/cpuinfo`.
pub fn init_cpu_count(console: &str) -> Option<u32> {
    marker_value(console, MARKER_CPUS)?.parse().ok()
}

/// The CPUs the kernel brought up: `smp: Brought up 1 node, 2 CPUs` (or `1 CPU`).
pub fn cpus_brought_up(console: &str) -> Option<u32> {
    let marker = "smp: Brought up ";
    let line = lines_with(console, marker).next()?;
    let rest = &line[line.find(marker)? + marker.len()..];
    let after_nodes = rest.split(", ").nth(1)?;
    after_nodes.split_whitespace().next()?.parse().ok()
}

/// Linux's last word before PSCI `SYSTEM_OFF`: `reboot: Power down`.
pub fn powered_down(console: &str) -> bool {
    lines_with(console, "reboot: Power down").next().is_some()
}

/// A kernel panic, with its line.
pub fn panic_line(console: &str) -> Option<&str> {
    lines_with(console, "Kernel panic - not syncing").next()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines of a real boot (Debian 6.12 on QEMU 7.2, plain), one under a Frameshift prefix.
    const CONSOLE: &str = "\
[    0.000000] Booting Linux on physical CPU 0x0000000000 [0x411fd070]
[    0.000000] psci: PSCIv1.1 detected in firmware.
[    0.000000] psci: Using standard PSCI v0.2 function IDs
[    0.000000] psci: SMC Calling Convention v1.0
[    0.091489] smp: Brought up 1 node, 2 CPUs
FS|linux|[    0.000000] smccc: KVM: hypervisor services detected (0x03000000 0x00000000 0x00000000 0x0000029d)
[    1.084258] Run /init as init process
[    1.377497] FRAMESHIFT-LINUX: init reached
FRAMESHIFT-LINUX: kernel 6.12.117+deb12-cloud-arm64
FRAMESHIFT-LINUX: cpus 2
FRAMESHIFT-LINUX: powering off
[    1.380036] reboot: Power down
";

    #[test]
    fn the_facts_come_from_linuxs_lines() {
        assert_eq!(psci_version(CONSOLE), Some((1, 1)));
        assert_eq!(smccc_version(CONSOLE), Some((1, 0)));
        assert_eq!(kvm_services(CONSOLE), Some([0x0300_0000, 0, 0, 0x29d]));
        assert_eq!(
            init_marker_time(CONSOLE),
            Some(Duration::from_micros(1_377_497))
        );
        assert_eq!(
            init_kernel_release(CONSOLE),
            Some("6.12.117+deb12-cloud-arm64")
        );
        assert_eq!(init_cpu_count(CONSOLE), Some(2));
        assert_eq!(cpus_brought_up(CONSOLE), Some(2));
        assert!(powered_down(CONSOLE));
        assert_eq!(panic_line(CONSOLE), None);
    }

    #[test]
    fn absent_or_malformed_lines_give_nothing() {
        let other = "[    0.1] psci: PSCIvX.Y detected\nsmp: Brought up 1 node, 1 CPU\n";
        assert_eq!(psci_version(other), None);
        assert_eq!(smccc_version(""), None);
        assert_eq!(
            kvm_services("KVM: hypervisor services detected (0x1 0x2)"),
            None
        );
        assert_eq!(init_marker_time("FRAMESHIFT-LINUX: init reached\n"), None);
        assert_eq!(
            init_marker_time("[    1.000000] FRAMESHIFT-LINUX: init reached twice\n"),
            None
        );
        assert_eq!(cpus_brought_up(other), Some(1));
        assert!(!powered_down(other));
        assert_eq!(
            panic_line("[ 2.000000] Kernel panic - not syncing: No init found"),
            Some("[ 2.000000] Kernel panic - not syncing: No init found")
        );
    }

    #[test]
    fn timestamps_split_off_whatever_prefix_the_line_has() {
        assert_eq!(
            split_timestamp("FS|linux|[   12.000100] text"),
            (Some(Duration::from_micros(12_000_100)), "text")
        );
        assert_eq!(split_timestamp("no stamp"), (None, "no stamp"));
        assert_eq!(split_timestamp("[abc] x"), (None, "[abc] x"));
        assert_eq!(split_timestamp("[ 1.5] x"), (None, "[ 1.5] x"));
    }
}
