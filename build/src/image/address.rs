//! Addresses in the image builder: the shared `PhysAddr`/`Ipa` newtypes and the alignment and
//! overlap arithmetic the planner does on them.

pub use frameshift_abi::addr::{Ipa, PhysAddr};

/// `value` rounded up to a multiple of `align` (a power of two), or `None` on overflow.
pub(crate) fn align_up(value: u64, align: u64) -> Option<u64> {
    value.checked_next_multiple_of(align)
}

/// `value` rounded down to a multiple of `align` (a power of two).
pub(crate) fn align_down(value: u64, align: u64) -> u64 {
    value - value % align
}

/// `[a, a + a_size)` and `[b, b + b_size)` share a byte.
pub(crate) fn ranges_overlap(a: u64, a_size: u64, b: u64, b_size: u64) -> bool {
    a < b.saturating_add(b_size) && b < a.saturating_add(a_size)
}
