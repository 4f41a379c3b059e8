//! The tasks behind `cargo xtask`: one module per task, each returning the process exit status.

pub mod audit;
pub mod bench;
pub mod build;
pub mod check;
pub mod hostile;
pub mod linux;
pub mod model_check;
pub mod mutants;
pub mod run;
pub mod soak;
pub mod system;
pub mod test;

use std::fmt;
use std::path::PathBuf;

use crate::qemu::Cpu;

pub use system::{
    build_system, default_out_dir, default_system_path, search_paths, BuiltSystem, OUT_DIR_NAME,
};

/// A task failure that stops the task: printed as `xtask: error: <message>`, exit status 1.
///
/// Every error of the layers below (install, firmware, SDF, image, QEMU) converts into it with
/// `?`; their own `Display` already says what failed and how to fix it.
#[derive(Debug)]
pub struct TaskError(String);

impl TaskError {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

// Not `std::error::Error` on purpose: that would make this blanket conversion overlap with
// `From<T> for T`.
impl<E: std::error::Error> From<E> for TaskError {
    fn from(error: E) -> Self {
        Self(error.to_string())
    }
}

/// What a task returns: its exit status, or the error that stopped it.
pub type TaskResult = Result<u8, TaskError>;

/// `cargo xtask run` options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunArgs {
    /// The system description (default: [`default_system_path`]).
    pub system: Option<PathBuf>,
    /// Where the image and report go (default: [`default_out_dir`]).
    pub out: Option<PathBuf>,
    /// Start halted with a gdb stub and print how to attach.
    pub gdb: bool,
    /// `-icount shift=0,sleep=off`.
    pub icount: bool,
    /// Timeout in seconds (ignored with `gdb`).
    pub timeout_secs: u64,
    /// The emulated CPU.
    pub cpu: Cpu,
}
