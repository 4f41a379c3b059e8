//! Memory regions mapped into this PD: volatile word access within their bounds.
//!
//! A region is shared memory another domain may change at any time, so it is never turned into
//! a Rust reference; every access is a volatile load or store, bounds- and alignment-checked.

use crate::Ipa;

/// A memory region mapped at `base` for `size` bytes in this PD's VSpace.
#[derive(Clone, Copy, Debug)]
pub struct Region {
    base: Ipa,
    size: u64,
}

impl Region {
    /// A region of `size` bytes at `base`.
    ///
    /// # Safety
    ///
    /// `[base, base + size)` must be mapped in this PD (by a `<map>` in system.xml) with the
    /// rights the accesses made through it need, and must not overlap any Rust object of this
    /// program (its image, stack or statics).
    pub const unsafe fn new(base: Ipa, size: u64) -> Self {
        Self { base, size }
    }

    /// The region's base address.
    pub const fn base(&self) -> Ipa {
        self.base
    }

    /// The address of the aligned `u64` at `offset`, if it lies inside the region.
    fn word(&self, offset: u64) -> Option<*mut u64> {
        let in_bounds =
            offset.is_multiple_of(8) && offset.checked_add(8).is_some_and(|end| end <= self.size);
        in_bounds.then(|| self.base.add(offset).get() as *mut u64)
    }

    /// Read the `u64` at `offset`. An offset outside the region or unaligned is a bug in the PD
    /// and panics.
    pub fn read_u64(&self, offset: u64) -> u64 {
        match self.word(offset) {
            // SAFETY: `new`'s contract makes every aligned word inside the region mapped and
            // readable and not part of any Rust object; `word` checked bounds and alignment.
            Some(pointer) => unsafe { pointer.read_volatile() },
            None => panic!("read at {offset:#x} outside region at {}", self.base),
        }
    }

    /// Write the `u64` at `offset`. An offset outside the region or unaligned is a bug in the PD
    /// and panics.
    pub fn write_u64(&self, offset: u64, value: u64) {
        match self.word(offset) {
            // SAFETY: as in `read_u64`, plus `new`'s contract that the mapping is writable when
            // the PD writes through it.
            Some(pointer) => unsafe { pointer.write_volatile(value) },
            None => panic!("write at {offset:#x} outside region at {}", self.base),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_writes_stay_inside_the_region() {
        let mut backing = [0u64; 4];
        // SAFETY: `backing` is a live local array of 32 bytes, accessed only through the region
        // while the region is in use.
        let region = unsafe { Region::new(Ipa(backing.as_mut_ptr() as u64), 32) };
        region.write_u64(24, 0xfeed);
        assert_eq!(region.read_u64(24), 0xfeed);
        assert!(region.word(32).is_none());
        assert!(region.word(4).is_none());
        assert!(region.word(u64::MAX - 3).is_none());
        assert_eq!(backing[3], 0xfeed);
    }
}
