//! Single-CPU global state without locks.
//!
//! Frameshift runs on CPU 0 only, and EL2 always runs with `DAIF` masked: an exception is only
//! ever taken from EL1, never while EL2 code runs. So a handler that takes the one `&mut` to a
//! global at entry cannot be interrupted by another user of it.

use core::cell::UnsafeCell;

/// A global that only the hypervisor's single, non-reentrant thread of control touches.
#[derive(Debug)]
pub struct GlobalCell<T>(UnsafeCell<T>);

// SAFETY: there is exactly one CPU and EL2 is never re-entered (module doc), so the value is never
// accessed concurrently.
unsafe impl<T> Sync for GlobalCell<T> {}

impl<T> GlobalCell<T> {
    /// Wraps `value`.
    pub const fn new(value: T) -> Self {
        Self(UnsafeCell::new(value))
    }

    /// The value.
    ///
    /// # Safety
    ///
    /// No other reference obtained from this cell may be live. Callers take it once, at the top
    /// of an exception handler or of boot, and pass it down.
    #[allow(clippy::mut_from_ref)] // reason: the aliasing rule is the caller's documented duty.
    pub unsafe fn get_mut(&self) -> &mut T {
        // SAFETY: the caller guarantees exclusivity (see above).
        unsafe { &mut *self.0.get() }
    }

    /// The raw pointer (for memory the hardware reads, such as translation tables).
    pub const fn as_ptr(&self) -> *mut T {
        self.0.get()
    }
}
