//! Frameshift's host test harness for the ownership core: the exhaustive [`model_check`]er
//! (with its independent reference model and its scenarios) and, under `tests/`, the
//! differential property test. The binary `model-check` prints the checker's report; `cargo
//! xtask model-check` and `cargo xtask test` run it.
#![forbid(unsafe_code)]

pub mod model_check;
