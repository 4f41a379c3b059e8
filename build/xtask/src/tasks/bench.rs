//! `cargo xtask bench`: there are no benchmarks yet, and this says so rather than pretending.

use super::TaskResult;

/// Prints that there are no benchmarks yet.
pub fn bench() -> TaskResult {
    println!("no benchmarks yet");
    Ok(0)
}
