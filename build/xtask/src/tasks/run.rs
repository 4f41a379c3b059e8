//! `cargo xtask run`: build everything for a system, boot it in QEMU, and exit with its verdict.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{build_system, default_out_dir, default_system_path, RunArgs, TaskResult};
use crate::firmware;
use crate::install;
use crate::qemu::{self, QemuOptions, GDB_PORT};

/// The QEMU options `cargo xtask run` uses: the console is streamed, and with a debugger there
/// is no timeout (a person is stepping through).
pub fn qemu_options(args: &RunArgs) -> QemuOptions {
    QemuOptions {
        timeout: (!args.gdb).then(|| Duration::from_secs(args.timeout_secs)),
        icount: args.icount,
        cpu: args.cpu,
        gdb_wait: args.gdb,
        stream: true,
        ..QemuOptions::default()
    }
}

/// How to attach a debugger to a QEMU started with `-s -S`; `programs` are the system's PD ELFs.
pub fn gdb_instructions(kernel_elf: &Path, programs: &[PathBuf]) -> String {
    let kernel = kernel_elf.display();
    let mut text = format!(
        "QEMU is stopped at the first instruction, waiting for a debugger on localhost:{GDB_PORT}.\n\
         In another terminal, attach with the kernel's symbols:\n\n\
         \x20   gdb-multiarch -ex 'target remote :{GDB_PORT}' {kernel}\n\n\
         (or `gdb` instead of `gdb-multiarch` if your gdb supports aarch64), set breakpoints by\n\
         symbol (`break <function>`), then `continue`.\n"
    );
    if !programs.is_empty() {
        text.push_str(
            "PDs run at their link addresses with stage 1 off, so their symbols overlap; to debug\n\
             one PD, add its symbols (one at a time):\n",
        );
        for program in programs {
            text.push_str(&format!(
                "    (gdb) add-symbol-file {}\n",
                program.display()
            ));
        }
    }
    text.push_str("Quit with `kill` in gdb, or Ctrl-C here.\n");
    text
}

/// Builds the firmware and the image, boots it and streams the console; the exit status is the
/// halt line's status, or 1 when there is no halt line, the run timed out, or QEMU failed.
pub fn run(args: &RunArgs) -> TaskResult {
    install::ensure_tools()?;
    let root = firmware::workspace_root();
    let firmware = firmware::build(&root)?;
    let kernel = firmware.kernel()?;
    let system = args.system.clone().unwrap_or_else(default_system_path);
    let out = args.out.clone().unwrap_or_else(default_out_dir);
    let built = build_system(&system, &firmware, &out)?;
    eprintln!(
        "xtask: image {} (report {})",
        built.image.display(),
        built.report.display()
    );

    let options = qemu_options(args);
    if args.gdb {
        eprintln!("{}", gdb_instructions(kernel, &built.programs));
    }
    eprintln!("xtask: booting {} in QEMU", system.display());
    let outcome = qemu::run(&built.image, &options)?;
    if !outcome.qemu_stderr.trim().is_empty() {
        eprintln!("xtask: QEMU said: {}", outcome.qemu_stderr.trim());
    }
    eprintln!("xtask: {}", outcome.summary());
    // exit_code() is always 0..=255.
    Ok(u8::try_from(outcome.exit_code()).unwrap_or(1))
}

#[cfg(test)]
// A failed expectation in a test is the test failing, which is what panicking reports.
#[allow(clippy::expect_used, clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::qemu::Cpu;

    fn args(gdb: bool) -> RunArgs {
        RunArgs {
            system: None,
            out: None,
            gdb,
            icount: true,
            timeout_secs: 7,
            cpu: Cpu::Max,
        }
    }

    #[test]
    fn gdb_disables_the_timeout_and_streams() {
        let plain = qemu_options(&args(false));
        assert_eq!(plain.timeout, Some(Duration::from_secs(7)));
        assert!(plain.stream && plain.icount && !plain.gdb_wait);
        assert_eq!(plain.cpu, Cpu::Max);
        let gdb = qemu_options(&args(true));
        assert_eq!(gdb.timeout, None);
        assert!(gdb.gdb_wait);
    }

    #[test]
    fn gdb_instructions_name_the_port_and_the_symbols() {
        let programs = [PathBuf::from("/w/programs/hello.elf")];
        let text = gdb_instructions(Path::new("/w/kernel"), &programs);
        assert!(
            text.contains("gdb-multiarch -ex 'target remote :1234' /w/kernel"),
            "{text}"
        );
        assert!(
            text.contains("add-symbol-file /w/programs/hello.elf"),
            "{text}"
        );
    }
}
