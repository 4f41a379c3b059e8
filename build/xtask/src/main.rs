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
        Task::ModelCheck => tasks::model_check::model_check(),
        Task::Test => tasks::test::test(),
        Task::Mutants { file, jobs } => tasks::mutants::mutants(file.as_deref(), jobs),
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
