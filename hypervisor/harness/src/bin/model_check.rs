//! `model-check`: explores every reachable state of the ownership core's scenarios and prints
//! the report. Its last line is `model-check: states=N transitions=M violations=V
//! complete=true|false`; it exits with 1 if there is a violation or the search was incomplete.
#![forbid(unsafe_code)]

use std::process::ExitCode;

fn main() -> ExitCode {
    let report = frameshift_harness::model_check::run_default();
    println!("{report}");
    if report.violations == 0 && report.complete {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
