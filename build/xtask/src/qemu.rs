//! The QEMU launcher shared by `cargo xtask run` and the QEMU integration tests.
//!
//! One machine configuration (DESIGN.md section 9): `virt` with virtualization on and GICv3, so
//! the image starts at EL2. Semihosting is deliberately never enabled: with it, any EL1 domain
//! could end QEMU with an exit code of its choice, so the verdict comes only from the console's
//! halt line (see [`crate::console`]).

use std::ffi::OsString;
use std::fmt;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::console::{self, HaltLine};

/// The QEMU system emulator for AArch64.
pub const QEMU_PROGRAM: &str = "qemu-system-aarch64";

/// The machine: `virt` with EL2 (virtualization=on) and a GICv3 (the EL2 timer is PPI 26).
pub const MACHINE: &str = "virt,virtualization=on,gic-version=3";

/// The TCP port `-s` makes QEMU's gdb stub listen on.
pub const GDB_PORT: u16 = 1234;

/// How long QEMU may keep running after the halt line before it is killed. The hypervisor calls
/// PSCI SYSTEM_OFF right after printing the halt line, so a QEMU still alive after this means
/// the power-off path is broken: the run is then reported as a QEMU failure.
pub const HALT_GRACE: Duration = Duration::from_secs(5);

/// The arguments that make every QEMU run here a console-only one: the serial port on stdio, no
/// display and no monitor, and a guest reset ends QEMU rather than rebooting.
pub const CONSOLE_ONLY: [&str; 4] = ["-nographic", "-monitor", "none", "-no-reboot"];

/// `-icount shift=0,sleep=off`: one virtual nanosecond per instruction, so counter values repeat
/// run to run.
pub const ICOUNT: [&str; 2] = ["-icount", "shift=0,sleep=off"];

/// `machine` (the machine, CPU and memory arguments), then [`CONSOLE_ONLY`], then [`ICOUNT`]
/// if `icount`: how every QEMU command line here begins.
pub fn console_argv(machine: &[&str], icount: bool) -> Vec<OsString> {
    let mut args: Vec<OsString> = machine.iter().map(OsString::from).collect();
    args.extend(CONSOLE_ONLY.map(OsString::from));
    if icount {
        args.extend(ICOUNT.map(OsString::from));
    }
    args
}

/// How often the launcher checks whether QEMU has exited.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// The emulated CPU.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Cpu {
    /// Cortex-A57 (ARMv8.0): the default, closest to the hardware the design targets.
    #[default]
    CortexA57,
    /// Cortex-A53 (ARMv8.0, in-order): the other ARMv8.0 core the hypervisor supports.
    CortexA53,
    /// QEMU's `max` CPU (every feature QEMU implements).
    Max,
}

impl Cpu {
    /// The `-cpu` argument.
    pub fn qemu_name(self) -> &'static str {
        match self {
            Cpu::CortexA57 => "cortex-a57",
            Cpu::CortexA53 => "cortex-a53",
            Cpu::Max => "max",
        }
    }
}

/// How to run one image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QemuOptions {
    /// Kill QEMU after this long; `None` waits forever (used with a debugger attached).
    pub timeout: Option<Duration>,
    /// `-icount shift=0,sleep=off`: one virtual nanosecond per instruction, so counter values
    /// repeat run to run (DESIGN.md sections 8 and 9).
    pub icount: bool,
    /// The emulated CPU.
    pub cpu: Cpu,
    /// The `-m` argument.
    pub memory: String,
    /// `-s -S`: start halted, with a gdb stub on port [`GDB_PORT`].
    pub gdb_wait: bool,
    /// Copy the console to this process's stdout as it arrives (it is always captured too).
    pub stream: bool,
}

impl Default for QemuOptions {
    fn default() -> Self {
        Self {
            timeout: Some(Duration::from_secs(60)),
            icount: false,
            cpu: Cpu::CortexA57,
            memory: "512M".to_owned(),
            gdb_wait: false,
            stream: false,
        }
    }
}

impl QemuOptions {
    /// The full QEMU argument list (without the program name) to boot `image`.
    pub fn argv(&self, image: &Path) -> Vec<OsString> {
        let mut args = console_argv(
            &[
                "-machine",
                MACHINE,
                "-cpu",
                self.cpu.qemu_name(),
                "-m",
                &self.memory,
            ],
            self.icount,
        );
        if self.gdb_wait {
            args.extend(["-s", "-S"].map(OsString::from));
        }
        args.push("-kernel".into());
        args.push(image.as_os_str().to_owned());
        args
    }
}

/// What one QEMU run produced.
#[derive(Debug)]
pub struct RunOutcome {
    /// Everything the guest wrote to the serial console (lossily decoded as UTF-8).
    pub console: String,
    /// The final `FS|hypervisor|halt ...` line, if the run printed one.
    pub halt: Option<HaltLine>,
    /// How QEMU ended (killed by a signal after a timeout).
    pub qemu_exit: ExitStatus,
    /// The timeout expired and QEMU was killed.
    pub timed_out: bool,
    /// QEMU's own diagnostics (its stderr).
    pub qemu_stderr: String,
}

impl RunOutcome {
    /// The run's exit code: the halt status, or 1 when there is no halt line, the run timed out,
    /// or QEMU failed (including QEMU still running after the halt line).
    pub fn exit_code(&self) -> i32 {
        match &self.halt {
            Some(halt) if !self.timed_out && self.qemu_exit.success() => halt.exit_code(),
            _ => 1,
        }
    }

    /// A one-line human verdict for the end of a run.
    pub fn summary(&self) -> String {
        match (&self.halt, self.timed_out, self.qemu_exit.success()) {
            (_, true, _) => "timed out (QEMU killed)".to_owned(),
            (Some(halt), false, true) => halt.to_string(),
            (Some(halt), false, false) => {
                format!(
                    "{halt}, but QEMU did not power off cleanly ({})",
                    self.qemu_exit
                )
            }
            (None, false, _) => format!("no halt line (QEMU {})", self.qemu_exit),
        }
    }
}

/// Why QEMU could not be run at all.
#[derive(Debug)]
pub enum QemuError {
    /// The image file does not exist.
    ImageMissing(PathBuf),
    /// `qemu-system-aarch64` is not on PATH.
    NotFound,
    /// Starting, watching or killing QEMU failed.
    Io(io::Error),
}

impl fmt::Display for QemuError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QemuError::ImageMissing(path) => write!(f, "image {} does not exist", path.display()),
            QemuError::NotFound => write!(
                f,
                "{QEMU_PROGRAM} not found on PATH (run `cargo xtask run` or `cargo xtask test`, which install it)"
            ),
            QemuError::Io(error) => write!(f, "running {QEMU_PROGRAM}: {error}"),
        }
    }
}

impl std::error::Error for QemuError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            QemuError::Io(error) => Some(error),
            _ => None,
        }
    }
}

impl From<io::Error> for QemuError {
    fn from(error: io::Error) -> Self {
        QemuError::Io(error)
    }
}

/// Boots `image` in QEMU and waits until QEMU exits, the timeout expires (QEMU is then killed),
/// or QEMU outlives the halt line by a grace period (then it is killed too).
pub fn run(image: &Path, options: &QemuOptions) -> Result<RunOutcome, QemuError> {
    if !image.is_file() {
        return Err(QemuError::ImageMissing(image.to_owned()));
    }
    let mut child = Command::new(QEMU_PROGRAM)
        .args(options.argv(image))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| match error.kind() {
            io::ErrorKind::NotFound => QemuError::NotFound,
            _ => QemuError::Io(error),
        })?;

    let halt_is_last = Arc::new(AtomicBool::new(false));
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| io::Error::other("no QEMU stdout pipe"))?;
    let stderr = child
        .stderr
        .take()
        .ok_or_else(|| io::Error::other("no QEMU stderr pipe"))?;
    let console_reader = {
        let halt_is_last = Arc::clone(&halt_is_last);
        let stream = options.stream;
        thread::spawn(move || read_console(stdout, stream, &halt_is_last))
    };
    let stderr_reader = thread::spawn(move || {
        let mut text = Vec::new();
        // A failed read only loses QEMU's diagnostics; the verdict does not depend on them.
        let _ = { stderr }.read_to_end(&mut text);
        String::from_utf8_lossy(&text).into_owned()
    });

    let (qemu_exit, timed_out) = wait(&mut child, options.timeout, &halt_is_last)?;
    let console = console_reader.join().unwrap_or_default();
    let qemu_stderr = stderr_reader.join().unwrap_or_default();
    let halt = console::find_halt(&console);
    Ok(RunOutcome {
        console,
        halt,
        qemu_exit,
        timed_out,
        qemu_stderr,
    })
}

/// Collects QEMU's stdout, optionally echoing it, and keeps `halt_is_last` equal to "the last
/// complete protocol line is a halt line": raised by a halt line, lowered again by any protocol
/// line after it (the hypervisor prints nothing after its halt line, so that one was not the end).
fn read_console(mut stdout: impl Read, stream: bool, halt_is_last: &AtomicBool) -> String {
    let mut captured = Vec::new();
    let mut chunk = [0u8; 4096];
    let mut line_start = 0;
    loop {
        let count = match stdout.read(&mut chunk) {
            Ok(0) => break,
            Ok(count) => count,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        let bytes = chunk.get(..count).unwrap_or_default();
        if stream {
            let mut out = io::stdout().lock();
            // Echo failures (a closed pipe) must not stop the capture the verdict depends on.
            let _ = out.write_all(bytes).and_then(|()| out.flush());
        }
        captured.extend_from_slice(bytes);
        while let Some(newline) = captured
            .get(line_start..)
            .and_then(|rest| rest.iter().position(|b| *b == b'\n'))
        {
            let line_end = line_start + newline;
            let line =
                String::from_utf8_lossy(captured.get(line_start..line_end).unwrap_or_default());
            if console::parse_line(&line).is_some() {
                let halt = console::parse_halt(&line).is_some();
                halt_is_last.store(halt, Ordering::Relaxed);
            }
            line_start = line_end + 1;
        }
    }
    String::from_utf8_lossy(&captured).into_owned()
}

/// Waits for QEMU to exit, and kills it once `timeout` has passed. Returns the exit status and
/// whether the timeout fired.
pub fn wait_or_kill(child: &mut Child, timeout: Duration) -> io::Result<(ExitStatus, bool)> {
    wait(child, Some(timeout), &AtomicBool::new(false))
}

/// Waits for QEMU to exit; kills it on timeout or when it outlives the halt line (the grace period
/// runs while the halt line is the last protocol line, and starts again after a later halt line).
/// Returns the exit status and whether the timeout fired.
fn wait(
    child: &mut Child,
    timeout: Option<Duration>,
    halt_is_last: &AtomicBool,
) -> io::Result<(ExitStatus, bool)> {
    let start = Instant::now();
    let mut halt_deadline: Option<Instant> = None;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok((status, false));
        }
        let now = Instant::now();
        if timeout.is_some_and(|limit| now.duration_since(start) >= limit) {
            return Ok((kill(child)?, true));
        }
        if halt_is_last.load(Ordering::Relaxed) {
            let deadline = *halt_deadline.get_or_insert(now + HALT_GRACE);
            if now >= deadline {
                return Ok((kill(child)?, false));
            }
        } else {
            halt_deadline = None;
        }
        thread::sleep(POLL_INTERVAL);
    }
}

fn kill(child: &mut Child) -> io::Result<ExitStatus> {
    // QEMU may exit on its own between the last poll and the kill; that is not an error.
    if let Err(error) = child.kill() {
        if error.kind() != io::ErrorKind::InvalidInput {
            return Err(error);
        }
    }
    child.wait()
}

#[cfg(test)]
// A failed expectation in a test is the test failing, which is what panicking reports.
#[allow(clippy::expect_used, clippy::unwrap_used)]
mod tests {
    use super::*;

    fn argv_strings(options: &QemuOptions, image: &str) -> Vec<String> {
        options
            .argv(Path::new(image))
            .into_iter()
            .map(|arg| arg.into_string().expect("UTF-8 test argument"))
            .collect()
    }

    #[test]
    fn default_argv_is_the_documented_machine() {
        let argv = argv_strings(&QemuOptions::default(), "out/frameshift.img");
        assert_eq!(
            argv.join(" "),
            "-machine virt,virtualization=on,gic-version=3 -cpu cortex-a57 -m 512M -nographic \
             -monitor none -no-reboot -kernel out/frameshift.img"
        );
    }

    #[test]
    fn options_add_icount_gdb_and_cpu() {
        let options = QemuOptions {
            icount: true,
            gdb_wait: true,
            cpu: Cpu::Max,
            ..QemuOptions::default()
        };
        let argv = argv_strings(&options, "img");
        let joined = argv.join(" ");
        assert!(joined.contains("-cpu max "), "{joined}");
        assert!(joined.contains(" -icount shift=0,sleep=off "), "{joined}");
        assert!(joined.contains(" -s -S "), "{joined}");
        assert_eq!(argv.last().map(String::as_str), Some("img"));
    }

    #[test]
    fn never_enables_semihosting() {
        let options = QemuOptions {
            icount: true,
            gdb_wait: true,
            cpu: Cpu::Max,
            ..QemuOptions::default()
        };
        assert!(argv_strings(&options, "img")
            .iter()
            .all(|arg| !arg.contains("semihosting")));
    }

    #[test]
    fn console_reader_flags_a_complete_halt_line_only() {
        let flag = AtomicBool::new(false);
        let text = read_console(&b"FS|hypervisor|halt status=0 reason=ok"[..], false, &flag);
        assert!(
            !flag.load(Ordering::Relaxed),
            "an unterminated line is not yet a verdict"
        );
        assert_eq!(text, "FS|hypervisor|halt status=0 reason=ok");

        let flag = AtomicBool::new(false);
        read_console(
            &b"FS|a|x\r\nFS|hypervisor|halt status=0 reason=ok\r\n"[..],
            false,
            &flag,
        );
        assert!(flag.load(Ordering::Relaxed));
    }

    #[test]
    fn console_reader_lowers_the_flag_when_output_follows_a_halt_line() {
        // A halt line that is not the last protocol line must not start the grace period that
        // kills QEMU (issue 7, break 1: a forged early halt line cut legitimate runs short).
        let flag = AtomicBool::new(false);
        read_console(
            &b"FS|hypervisor|halt status=0 reason=ok\nFS|hello|still running\nQEMU noise\n"[..],
            false,
            &flag,
        );
        assert!(!flag.load(Ordering::Relaxed));

        let flag = AtomicBool::new(false);
        read_console(
            &b"FS|evil|FS|hypervisor|halt status=0 reason=ok\n"[..],
            false,
            &flag,
        );
        assert!(
            !flag.load(Ordering::Relaxed),
            "a domain's text is not a halt line"
        );
    }

    #[test]
    fn missing_image_is_reported_before_starting_qemu() {
        let error = run(
            Path::new("/nonexistent/frameshift.img"),
            &QemuOptions::default(),
        )
        .expect_err("missing image");
        assert!(matches!(error, QemuError::ImageMissing(_)), "{error}");
    }
}
