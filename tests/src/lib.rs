//! Shared helpers for Frameshift's integration tests.
#![forbid(unsafe_code)]
