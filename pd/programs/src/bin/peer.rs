//! Peer: at the kicker's priority, always runnable, it does `PEER_ROUNDS` rounds of work and
//! then ends the run. It can finish only if round robin gives it its share of the CPU while the
//! kicker keeps preempting itself with notifications (starvation.xml). It reports how many
//! kicks happened while it worked, so the run shows the kicking went on meanwhile.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![deny(unsafe_code)]

use frameshift_pd::{debug_println, memory_region_symbol, system_off, Handler, Region};
use frameshift_pd_programs::PEER_ROUNDS;

struct Peer;

impl Handler for Peer {}

fn init() -> Peer {
    let base = memory_region_symbol!(kicks_vaddr);
    // SAFETY: starvation.xml maps the 4 KiB region `kicks` read-only at `kicks_vaddr`, away from
    // this program's image and stack; the peer only reads it.
    #[allow(unsafe_code)]
    let kicks = unsafe { Region::new(base, 0x1000) };
    let before = kicks.read_u64(0);
    debug_println!("peer start");
    let mut work = 0u64;
    for round in 0..PEER_ROUNDS {
        work = core::hint::black_box(work.wrapping_add(round));
    }
    let during = kicks.read_u64(0) - before;
    debug_println!("peer done rounds={PEER_ROUNDS} kicks-while-working={during} work={work:#x}");
    system_off(0)
}

frameshift_pd::protection_domain!(init);
