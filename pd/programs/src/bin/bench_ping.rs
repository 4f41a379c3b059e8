//! Notification benchmark, the driving side: times ping-pong round trips with the
//! higher-priority pong (bench/notify.xml, `cargo xtask bench`).
//!
//! A round trip: ping notifies pong, pong runs at once (higher priority) and notifies back, pong
//! waits again, ping's handler returns and its next wait finds the notification. The loop lives
//! in the handlers, so it is a small state machine; between two loops both PDs yield (channel
//! 1) to start the next with full budgets.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![deny(unsafe_code)]

use frameshift_pd::time::{counter, counter_frequency};
use frameshift_pd::{ChannelSet, Handler};
use frameshift_pd_programs::bench::{
    iterations_for, per_operation, report, yield_now, BENCH_ROUND_CHANNEL, BENCH_YIELD_CHANNEL,
    CALIBRATION_ITERATIONS, REPETITIONS,
};

/// The figure's name on the `bench` lines.
const NAME: &str = "notify_pingpong";

/// Which loop runs now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// The short loop that sizes the timed ones.
    Calibrate,
    /// A full-length loop, not reported (`frameshift_pd_programs::bench::measure`).
    WarmUp,
    /// Timed loop number `n` (1-based).
    Measure(u32),
    /// All loops done: ping stops notifying and the system goes idle.
    Done,
}

struct Ping {
    phase: Phase,
    /// Round trips completed in the current loop.
    rounds: u64,
    /// Round trips the current loop makes.
    target: u64,
    /// Round trips of each timed loop.
    iterations: u64,
    /// The counter when the current loop began.
    start: u64,
    /// The timed loops, printed once the last has run: no loop follows a console line.
    ticks: [u64; REPETITIONS as usize],
}

impl Ping {
    /// Starts the current phase's loop: both PDs have just yielded.
    fn begin(&mut self) {
        yield_now();
        self.rounds = 0;
        self.target = match self.phase {
            Phase::Calibrate => CALIBRATION_ITERATIONS,
            _ => self.iterations,
        };
        self.start = counter();
        BENCH_ROUND_CHANNEL.notify();
    }

    /// The current loop is over after `ticks`.
    fn end(&mut self, ticks: u64) {
        self.phase = match self.phase {
            Phase::Calibrate => {
                let each = per_operation(ticks, CALIBRATION_ITERATIONS, counter_frequency());
                self.iterations = iterations_for(each);
                Phase::WarmUp
            }
            Phase::WarmUp => Phase::Measure(1),
            Phase::Measure(repetition) => {
                if let Some(slot) = self.ticks.get_mut(repetition as usize - 1) {
                    *slot = ticks;
                }
                if repetition < REPETITIONS {
                    Phase::Measure(repetition + 1)
                } else {
                    for (repetition, ticks) in (1..).zip(self.ticks) {
                        report(NAME, ticks, self.iterations, repetition);
                    }
                    Phase::Done
                }
            }
            Phase::Done => Phase::Done,
        };
        if self.phase != Phase::Done {
            // Pong yields and answers on the same channel; `begin` runs then.
            BENCH_YIELD_CHANNEL.notify();
        }
    }
}

impl Handler for Ping {
    fn notified(&mut self, channels: ChannelSet) {
        if channels.contains(BENCH_ROUND_CHANNEL) {
            self.rounds += 1;
            if self.rounds < self.target {
                BENCH_ROUND_CHANNEL.notify();
            } else {
                let ticks = counter().wrapping_sub(self.start);
                self.end(ticks);
            }
        }
        if channels.contains(BENCH_YIELD_CHANNEL) {
            self.begin();
        }
    }
}

fn init() -> Ping {
    BENCH_YIELD_CHANNEL.notify();
    Ping {
        phase: Phase::Calibrate,
        rounds: 0,
        target: 0,
        iterations: 0,
        start: 0,
        ticks: [0; REPETITIONS as usize],
    }
}

frameshift_pd::protection_domain!(init);
