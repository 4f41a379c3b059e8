//! Shared helpers of the tests that run the real `xtask` binary: a scratch directory per test
//! binary, a system file written there, and `xtask check` on it.
#![allow(
    dead_code,
    reason = "each test binary uses a different subset of the helpers"
)]
#![allow(
    unreachable_pub,
    reason = "a test-support module shared by several test binaries"
)]
#![allow(clippy::expect_used, reason = "setup failing is a test failure")]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// `CARGO_TARGET_TMPDIR/<this test binary's name>`, created.
pub fn scratch_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(env!("CARGO_CRATE_NAME"));
    std::fs::create_dir_all(&dir).expect("create test dir");
    dir
}

/// Writes `xml` to `name` in the scratch directory; returns its path.
pub fn write_system(name: &str, xml: &str) -> PathBuf {
    let path = scratch_dir().join(name);
    std::fs::write(&path, xml).expect("write system file");
    path
}

/// `xtask check PATH`.
pub fn check(path: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("check")
        .arg(path)
        .output()
        .expect("run xtask")
}

/// Standard output, its trailing white space trimmed.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout)
        .trim_end()
        .to_owned()
}

/// Standard output's lines.
pub fn stdout_lines(output: &Output) -> Vec<String> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}
