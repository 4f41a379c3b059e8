//! `cargo xtask check FILE`: validate a system description without building anything.
//!
//! Prints `OK` (exit status 0), or the Microkit-worded error message, whose first line is the
//! first line of output (exit status 1). Warnings go to stderr so stdout stays exactly that.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::{search_paths, TaskResult};
use crate::firmware;
use frameshift_build::sdf;

/// Validates `file`, looking for prefill files in `extra_search_paths` first.
pub fn check(file: &Path, extra_search_paths: &[PathBuf]) -> TaskResult {
    let programs_dir = firmware::programs_dir(&firmware::workspace_root());
    let mut paths = extra_search_paths.to_vec();
    paths.extend(search_paths(file, &programs_dir));
    match sdf::parse_file(file, &paths) {
        Ok(system) => {
            print_warnings(&system.warnings);
            println!("OK");
            Ok(0)
        }
        Err(error) => {
            print_warnings(error.warnings());
            println!("{}", error.message());
            Ok(1)
        }
    }
}

/// The warnings Microkit prints before its answer (e.g. unused memory regions), to stderr,
/// buffered (a file can have hundreds of thousands).
fn print_warnings(warnings: &[String]) {
    let mut stderr = std::io::BufWriter::new(std::io::stderr().lock());
    for warning in warnings {
        // A closed stderr loses only the warnings; the answer on stdout still follows.
        let _ = writeln!(stderr, "{warning}");
    }
    let _ = stderr.flush();
}
