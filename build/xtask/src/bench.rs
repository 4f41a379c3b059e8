//! The machinery behind `cargo xtask bench` (the task itself is [`crate::tasks::bench`]).
//!
//! Benchmark systems (`tests/systems/bench/*.xml`, each optionally joined by idle PDs) boot in
//! QEMU under `-icount shift=0,sleep=off`, where one instruction is one nanosecond of virtual
//! time, so the PDs time operations with the generic timer's counter and print
//! `bench <name> instructions=<n> ...` lines (`frameshift_pd_programs::bench`). The host side:
//!
//! | module | what |
//! | --- | --- |
//! | [`catalogue`] | every figure the issue asks for, with its anchor, and the systems that measure it |
//! | [`systems`] | a benchmark system joined by idle PDs |
//! | [`collect`] | the `bench` lines of a console, checked: present, well formed, both measurements equal |
//! | [`report`] | the table, the script-readable lines and `bench.json` |
//! | [`plot`] | the SVG plot of conversion against bounce cost over the sizes |
//!
//! `tests/tests/bench_smoke.rs` boots every benchmark system once through [`run_once`], so
//! `cargo xtask test` checks that they work; it never judges how fast they are.

pub mod catalogue;
pub mod collect;
pub mod plot;
pub mod report;
pub mod systems;

pub use catalogue::{bench_systems, figures, BenchSystem, Figure, Group};
pub use collect::{measure_system, run_once, BenchError, BenchLine, Measurement};
