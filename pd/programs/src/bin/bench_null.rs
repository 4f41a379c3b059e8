//! Null-call benchmark: times the cheapest PD call, an id the hypervisor does not define, which
//! it answers `NOT_SUPPORTED` without changing anything (bench/null.xml, `cargo xtask bench`).
#![cfg_attr(target_os = "none", no_std, no_main)]
#![deny(unsafe_code)]

use frameshift_abi::smccc::NOT_SUPPORTED;
use frameshift_pd::call::{self, CallRegisters};
use frameshift_pd::Handler;
use frameshift_pd_programs::bench::{measure, yield_now, NULL_CALL};

struct NullBench;

impl Handler for NullBench {}

fn init() -> NullBench {
    let mut wrong = 0u64;
    measure("null_call", yield_now, || {
        let mut registers = CallRegisters::new(NULL_CALL);
        call::hvc(&mut registers);
        if registers.status() != NOT_SUPPORTED {
            wrong += 1;
        }
    });
    // A call that was answered anything else did not time the null call.
    assert!(
        wrong == 0,
        "null call {NULL_CALL:#x} answered {wrong} times with a status other than NOT_SUPPORTED"
    );
    NullBench
}

frameshift_pd::protection_domain!(init);
