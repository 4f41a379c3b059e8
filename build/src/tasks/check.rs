//! `cargo xtask check FILE`: validate a system description without building anything.
//!
//! Prints `OK` (exit status 0), or the Microkit-worded error message, whose first line is the
//! first line of output (exit status 1). Warnings go to stderr so stdout stays exactly that.

use std::path::{Path, PathBuf};

use super::{search_paths, TaskResult};
use crate::firmware;
use crate::sdf;

/// Validates `file`, looking for prefill files in `extra_search_paths` first.
pub fn check(file: &Path, extra_search_paths: &[PathBuf]) -> TaskResult {
    let programs_dir = firmware::programs_dir(&firmware::workspace_root());
    let mut paths = extra_search_paths.to_vec();
    paths.extend(search_paths(file, &programs_dir));
    match sdf::parse_file(file, &paths) {
        Ok(_) => {
            println!("OK");
            Ok(0)
        }
        Err(error) => {
            for warning in error.warnings() {
                eprintln!("{warning}");
            }
            println!("{}", error.message());
            Ok(1)
        }
    }
}
