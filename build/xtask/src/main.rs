//! `cargo xtask`: Frameshift's task runner (the tasks themselves live in `frameshift_xtask::tasks`).
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use frameshift_xtask::qemu::Cpu;
use frameshift_xtask::tasks::{self, RunArgs};

/// Frameshift's task runner: installs what is missing, builds the firmware and the boot image,
/// and runs it in QEMU.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask", version)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Build the firmware and the image for a system, boot it in QEMU, stream the console, and
    /// exit with the status of the final halt line (1 if there is none).
    Run {
        /// The system description (default: system.xml at the workspace root).
        #[arg(long, value_name = "FILE")]
        system: Option<PathBuf>,
        /// Where to write frameshift.img and report.txt (default: out/ at the workspace root).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Start QEMU halted with a gdb stub on :1234 and print how to attach.
        #[arg(long)]
        gdb: bool,
        /// Deterministic time: `-icount shift=0,sleep=off` (one virtual ns per instruction).
        #[arg(long)]
        icount: bool,
        /// Kill QEMU after this many seconds (ignored with --gdb).
        #[arg(long, value_name = "SECS", default_value_t = 60)]
        timeout: u64,
        /// The emulated CPU.
        #[arg(long, value_enum, default_value_t = CpuArg::CortexA57)]
        cpu: CpuArg,
    },
    /// Build the firmware and write the boot image and its report to out/.
    Build {
        /// The system description (default: system.xml at the workspace root).
        #[arg(long, value_name = "FILE")]
        system: Option<PathBuf>,
        /// Where to write frameshift.img and report.txt (default: out/ at the workspace root).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// Validate a system description: print `OK`, or the error message (exit status 1).
    Check {
        /// The system description to check.
        file: PathBuf,
        /// More directories to look in for `prefill_path` files, searched before the default
        /// ones (the file's own directory, then the built PD programs), as Microkit's
        /// `--search-path`.
        #[arg(long = "search-path", value_name = "DIR")]
        search_paths: Vec<PathBuf>,
    },
    /// Fetch (or find cached) Debian's arm64 kernel and busybox, build the Linux guest's
    /// initramfs, and print where they are (target/linux/guest/).
    Linux {
        /// Ask the Debian archive for the current versions even if some are cached.
        #[arg(long)]
        refresh: bool,
        /// Then boot them under plain QEMU (no hypervisor), as is and under -icount, and print
        /// the figures.
        #[arg(long)]
        boot: bool,
    },
    /// Exhaustively model-check the ownership state machine.
    ModelCheck,
    /// Install what is missing, build the firmware, run every host and QEMU test and the model
    /// checker, and print a summary.
    Test,
    /// Run cargo-mutants on one source file (installing it if missing) with the tests that
    /// matter for it; print `mutants: caught=C total=T ...` and every survivor, and exit 1 if a
    /// survivor is not an explained equivalent mutant (see build/src/tasks/mutants.rs).
    Mutants {
        /// The source file to mutate (default: hypervisor/core/src/ownership.rs in the workspace).
        #[arg(value_name = "FILE")]
        file: Option<PathBuf>,
        /// Mutants built and tested in parallel (each needs its own copy of the tree).
        #[arg(long, value_name = "N", default_value_t = 1)]
        jobs: usize,
    },
    /// The auditor's view: boot a system whose PDs ask for the hypervisor's dump (default: the
    /// hostile system, short), re-run the I1-I4 audit on every dump on the host, and write
    /// audit.json, holdings.svg and timeline.svg; exit 1 on any finding.
    Audit {
        /// The system description (default: tests/systems/hostile.xml with a short plan).
        #[arg(long, value_name = "FILE")]
        system: Option<PathBuf>,
        /// Audit a saved console transcript instead of booting.
        #[arg(long, value_name = "FILE")]
        console: Option<PathBuf>,
        /// Where to write audit.json and the pictures (default: target/audit/).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// Boot the hostile system's soak: the hostile guest makes N seeded random hypercalls, with
    /// the audit after every conversion; prints `soak: calls=N audits=A violations=V
    /// mismatches=M panics=P seed=S` and exits 0 only when V, M and P are 0.
    Soak {
        /// Hypercalls to make (CI runs 10^6; 10^8 is a long run).
        #[arg(long, value_name = "N", default_value_t = 1_000_000)]
        calls: u64,
        /// The PRNG seed (default: from the clock; printed either way).
        #[arg(long, value_name = "S", value_parser = parse_seed)]
        seed: Option<u64>,
        /// Copy the console to stdout as it arrives.
        #[arg(long)]
        stream: bool,
    },
    /// Boot the benchmark systems under icount (one instruction per virtual nanosecond), print
    /// the table of instructions per operation against the seL4 + Microkit anchors and one
    /// `bench <name> instructions=<n> ...` line per figure, and write bench.json.
    Bench {
        /// Where to write bench.json, the plot, the generated systems and their images
        /// (default: out/bench/ at the workspace root).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Also run the host engine benchmark (criterion): cargo bench -p frameshift-harness
        /// --bench engine.
        #[arg(long)]
        engine: bool,
        /// Kill a benchmark boot after this many seconds.
        #[arg(long, value_name = "SECS", default_value_t = 120)]
        timeout: u64,
    },
}

/// A seed in decimal or `0x` hex.
fn parse_seed(text: &str) -> Result<u64, String> {
    match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse(),
    }
    .map_err(|error| format!("{text}: {error}"))
}

/// `--cpu` values.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum CpuArg {
    /// Cortex-A57 (ARMv8.0).
    CortexA57,
    /// Cortex-A53 (ARMv8.0).
    CortexA53,
    /// QEMU's `max` CPU.
    Max,
}

impl From<CpuArg> for Cpu {
    fn from(cpu: CpuArg) -> Self {
        match cpu {
            CpuArg::CortexA57 => Cpu::CortexA57,
            CpuArg::CortexA53 => Cpu::CortexA53,
            CpuArg::Max => Cpu::Max,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Run {
            system,
            out,
            gdb,
            icount,
            timeout,
            cpu,
        } => tasks::run::run(&RunArgs {
            system,
            out,
            gdb,
            icount,
            timeout_secs: timeout,
            cpu: cpu.into(),
        }),
        Task::Build { system, out } => tasks::build::build(system.as_deref(), out.as_deref()),
        Task::Check { file, search_paths } => tasks::check::check(&file, &search_paths),
        Task::Linux { refresh, boot } => {
            tasks::linux::linux(tasks::linux::LinuxArgs { refresh, boot })
        }
        Task::ModelCheck => tasks::model_check::model_check(),
        Task::Test => tasks::test::test(),
        Task::Mutants { file, jobs } => tasks::mutants::mutants(file.as_deref(), jobs),
        Task::Audit {
            system,
            console,
            out,
        } => tasks::audit::audit(system.as_deref(), console.as_deref(), out.as_deref()),
        Task::Soak {
            calls,
            seed,
            stream,
        } => tasks::soak::soak(calls, seed, stream),
        Task::Bench {
            out,
            engine,
            timeout,
        } => tasks::bench::bench(&tasks::bench::BenchArgs {
            out,
            engine,
            timeout_secs: timeout,
        }),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            eprintln!("xtask: error: {error}");
            ExitCode::FAILURE
        }
    }
}
