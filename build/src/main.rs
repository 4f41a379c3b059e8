//! `cargo xtask`: Frameshift's task runner.
#![forbid(unsafe_code)]

fn main() {
    eprintln!("xtask: no tasks yet");
    std::process::exit(2);
}
