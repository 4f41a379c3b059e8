//! What the bench guest and the bench VMM agree on (tests/systems/bench/guest.xml).

/// An `HVC` the hypervisor does not serve: it reaches the bench VMM's `fault()`, which answers
/// it as any forwarded call (`answers::forwarded_call_answer`). A function id of the OEM
/// service range, fast, 64-bit.
pub const BENCH_NULL_HVC: u32 = 0xC300_00B0;
/// An `HVC` on which the bench VMM yields (a trapped `WFI`: a fresh budget) before it answers.
pub const BENCH_VMM_YIELD_HVC: u32 = 0xC300_00B1;
/// What the bench VMM answers to every read of the doorbell page.
pub const BENCH_MMIO_VALUE: u64 = 0xBE4C_0000_0000_00B2;
/// Range sizes, in 4 KiB pages, of the conversion and bounce sweep: 4 KiB to 2 MiB.
pub const SWEEP_PAGES: [u64; 10] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bench_calls_are_distinct_fast_64_bit_oem_calls() {
        for id in [BENCH_NULL_HVC, BENCH_VMM_YIELD_HVC] {
            assert_eq!(id >> 24, 0xC3, "{id:#x}");
        }
        assert_ne!(BENCH_NULL_HVC, BENCH_VMM_YIELD_HVC);
    }

    #[test]
    fn the_sweep_doubles_from_one_page_to_a_2_mib_block() {
        assert_eq!(SWEEP_PAGES[0], 1);
        assert!(SWEEP_PAGES.windows(2).all(|pair| pair[1] == 2 * pair[0]));
        assert_eq!(SWEEP_PAGES[SWEEP_PAGES.len() - 1] * 4096, 2 << 20);
    }
}
