//! Single-CPU global state without locks, and the witness that makes its exclusive use a type.
//!
//! Frameshift runs on CPU 0 only, and EL2 always runs with `DAIF` masked: an exception is only
//! ever taken from EL1, never while EL2 code runs. So each **entry** into EL2 is the only thread
//! of control there is, until it returns to EL1 or powers off. An entry mints one [`Exclusive`]
//! token ([`Exclusive::enter`]), and a [`GlobalCell`] hands out its value only against a
//! mutable borrow of that token: two references from globals can never be live at once, since
//! each one holds the token borrowed for as long as it lives.
//!
//! # Entry points and their order
//!
//! This is the one place the lock order is written down. There are no locks; instead:
//!
//! | entry | mints a token | touches |
//! | --- | --- | --- |
//! | `fs_el2_main` (boot) | once, at the top | `mmu::TABLES` (then dropped), then `boot::STATE` |
//! | `fs_fill_first_frame` (first `ERET`) | once | `boot::STATE` |
//! | `fs_trap_lower` (every exception from EL1) | once | `boot::STATE` |
//! | `fs_trap_current` (exception at EL2: a bug) | never | the console only, then power-off |
//! | the panic handler | never | the console only, then power-off |
//!
//! The last two may run while some reference into the state is live (a panic inside an entry),
//! so they take none: they print on the PL011, which has no state, and power off.

use core::cell::UnsafeCell;

/// A global that only the hypervisor's single, non-reentrant thread of control touches.
#[derive(Debug)]
pub struct GlobalCell<T>(UnsafeCell<T>);

// SAFETY: there is exactly one CPU and EL2 is never re-entered (module doc), and every access
// goes through `get_mut`, which takes the entry's one `Exclusive` token mutably.
unsafe impl<T> Sync for GlobalCell<T> {}

/// Proof that its holder is inside one EL2 entry, the only thread of control there is. Zero
/// sized; only an entry point (boot, a trap from EL1) mints one.
#[derive(Debug)]
pub struct Exclusive {
    _private: (),
}

impl Exclusive {
    /// The token of the current entry.
    ///
    /// # Safety
    ///
    /// Call once per entry into EL2, at its top (the entry points in the module doc), and only
    /// from code that runs with every exception masked and never returns into code that holds
    /// another token.
    pub unsafe fn enter() -> Self {
        Self { _private: () }
    }
}

impl<T> GlobalCell<T> {
    /// Wraps `value`.
    pub const fn new(value: T) -> Self {
        Self(UnsafeCell::new(value))
    }

    /// The value, for as long as `witness` stays borrowed: no other global can be reached
    /// meanwhile.
    #[allow(
        clippy::mut_from_ref,
        reason = "exclusivity comes from the witness, borrowed for the reference's lifetime"
    )]
    pub fn get_mut<'a>(&'a self, witness: &'a mut Exclusive) -> &'a mut T {
        let _ = witness;
        // SAFETY: the witness is the entry's only token (`Exclusive::enter`'s contract) and it
        // is borrowed mutably for 'a, so no other reference obtained from any `GlobalCell` is
        // live while this one is; and nothing else runs on the CPU (module doc).
        unsafe { &mut *self.0.get() }
    }
}
