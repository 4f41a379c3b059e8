//! Message registers and message-info words of protected procedure calls.
//!
//! A PPC carries a [`MessageInfo`] and up to [`MESSAGE_REGISTERS`] message registers in `x3`-`x10`
//! (see `frameshift_abi::pd_call`). Like libmicrokit's `microkit_mr_set`/`microkit_mr_get`, the
//! runtime keeps one set of message registers per PD: a handler or caller fills them with
//! [`set_mr`] before a call or reply and reads them with [`get_mr`] after one.
//!
//! A PD is one thread on one core and handlers run to completion, so the store is never touched
//! concurrently; atomics (relaxed) make that safe without `unsafe`.

use core::sync::atomic::{AtomicU64, Ordering};

pub use frameshift_abi::pd_call::{MessageInfo, MESSAGE_REGISTERS};

type Store = [AtomicU64; MESSAGE_REGISTERS];

/// The PD's message registers.
#[cfg(not(test))]
static STORE: Store = [const { AtomicU64::new(0) }; MESSAGE_REGISTERS];

#[cfg(not(test))]
fn with_store<R>(f: impl FnOnce(&Store) -> R) -> R {
    f(&STORE)
}

// Host tests run in parallel threads; each gets its own registers, as each PD does.
#[cfg(test)]
std::thread_local! {
    static STORE: Store = const { [const { AtomicU64::new(0) }; MESSAGE_REGISTERS] };
}

#[cfg(test)]
fn with_store<R>(f: impl FnOnce(&Store) -> R) -> R {
    STORE.with(f)
}

/// Set message register `index` (0-based). An index past [`MESSAGE_REGISTERS`] is a bug in the
/// PD and panics.
pub fn set_mr(index: usize, value: u64) {
    with_store(|store| match store.get(index) {
        Some(register) => register.store(value, Ordering::Relaxed),
        None => panic!("message register {index} out of range"),
    })
}

/// Read message register `index` (0-based). An index past [`MESSAGE_REGISTERS`] is a bug in the
/// PD and panics.
pub fn get_mr(index: usize) -> u64 {
    with_store(|store| match store.get(index) {
        Some(register) => register.load(Ordering::Relaxed),
        None => panic!("message register {index} out of range"),
    })
}

/// Copy the message registers into call registers `x3`-`x10`.
pub(crate) fn store_to(registers: &mut [u64]) {
    with_store(|store| {
        for (slot, register) in registers.iter_mut().zip(store.iter()) {
            *slot = register.load(Ordering::Relaxed);
        }
    })
}

/// Load the message registers from call registers `x3`-`x10`.
pub(crate) fn load_from(registers: &[u64]) {
    with_store(|store| {
        for (value, register) in registers.iter().zip(store.iter()) {
            register.store(*value, Ordering::Relaxed);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_round_trip_through_call_registers() {
        for index in 0..MESSAGE_REGISTERS {
            set_mr(index, 100 + index as u64);
        }
        let mut call = [0u64; MESSAGE_REGISTERS];
        store_to(&mut call);
        assert_eq!(call, [100, 101, 102, 103, 104, 105, 106, 107]);
        load_from(&[7; MESSAGE_REGISTERS]);
        assert_eq!(get_mr(3), 7);
    }

    #[test]
    #[should_panic(expected = "message register 8 out of range")]
    fn out_of_range_register_panics() {
        set_mr(MESSAGE_REGISTERS, 1);
    }
}
