//! Register-channel check (tests/systems/register_channel.xml; docs/ISOLATION.md, I9): no EL1
//! or EL0 register carries a value from one domain to another.
//!
//! Every copy sets each register of [`registers::REGISTERS`] that holds data on this CPU to a
//! pattern (the writer and `spin_a` one pattern, the reader and `spin_b` its complement, so
//! every writable bit differs) and later reads them all back: any value that is not its own is a
//! leak. Its role comes from its name:
//!
//! | name | priority | what it does |
//! | --- | --- | --- |
//! | `reader` | high | sets its pattern in `init`, then, when notified, checks it and counts the registers whose value differs from the writer's (`distinct`) |
//! | `writer` | lower | sets its pattern, publishes it, notifies the reader (which runs at once), checks its own pattern, then probes the registers the hypervisor must refuse and prints one `reg <NAME> <outcome>` line per register |
//! | `spin_a`, `spin_b` | equal, lowest | set their patterns and re-check them in a loop until each has seen the other run in between (time-slice preemption) |
//!
//! Outcomes: `held` (reads and writes complete and the register keeps the pattern), `fixed`
//! (reads and writes complete, nothing changes), `undef` (every access is UNDEFINED: absent, or
//! refused by the hypervisor), `read-only`, `write-only`.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![deny(unsafe_code)]

mod registers;

use frameshift_pd::{
    debug_println, memory_region_symbol, pd_name, Channel, ChannelSet, Handler, Region,
};
use registers::{A32Code, Access, Phase, REGISTERS};

/// The writer's pattern; the reader's is its complement.
const PATTERN: u64 = 0xA5A5_A5A5_A5A5_A5A5;
/// The channel between writer and reader.
const EXCHANGE: Channel = Channel::new(0);
/// Interleavings each spinner waits to see.
const INTERLEAVINGS: u64 = 3;
/// Registers in the table.
const COUNT: usize = REGISTERS.len();
/// Leaks listed one per line (the count covers them all).
const LISTED_LEAKS: usize = 16;

/// What probing a register found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    NotProbed,
    Held,
    Fixed,
    Undefined,
    ReadOnly,
    WriteOnly,
}

impl Outcome {
    const fn word(self) -> &'static str {
        match self {
            Self::NotProbed => "not-probed",
            Self::Held => "held",
            Self::Fixed => "fixed",
            Self::Undefined => "undef",
            Self::ReadOnly => "read-only",
            Self::WriteOnly => "write-only",
        }
    }
}

/// One leak: the register and the value found instead of this PD's own.
#[derive(Clone, Copy, Debug)]
struct Leak {
    index: usize,
    found: u64,
    own: u64,
}

/// This PD's view of the registers.
struct Registers {
    pattern: u64,
    outcomes: [Outcome; COUNT],
    /// The value each register had before this PD wrote it.
    before: [u64; COUNT],
    /// The value each held register read back once every pattern was written.
    own: [u64; COUNT],
    leaks: u64,
    listed: [Option<Leak>; LISTED_LEAKS],
}

impl Registers {
    fn new(pattern: u64) -> Self {
        registers::install_vectors();
        Self {
            pattern,
            outcomes: [Outcome::NotProbed; COUNT],
            before: [0; COUNT],
            own: [0; COUNT],
            leaks: 0,
            listed: [None; LISTED_LEAKS],
        }
    }

    /// Finds out what each register of `phase` does with a write of the pattern and one of its
    /// complement (so every copy, whatever its pattern, finds the same registers held), then
    /// puts the old value back: `VBAR_EL1` must point at the vectors while later probes may
    /// still be refused.
    fn classify(&mut self, phase: Phase) {
        for (index, register) in REGISTERS.iter().enumerate() {
            if register.phase != phase {
                continue;
            }
            let mask = register.mask;
            let before = registers::read(index);
            let old = before.value().unwrap_or(0);
            let wrote = registers::write(index, (old & !mask) | (PATTERN & mask));
            let first = registers::read(index);
            let _ = registers::write(index, (old & !mask) | (!PATTERN & mask));
            let second = registers::read(index);
            self.before[index] = old;
            self.outcomes[index] = match (before, wrote, first, second) {
                (Access::Undefined, Access::Undefined, ..) => Outcome::Undefined,
                (Access::Undefined, Access::Done(_), ..) => Outcome::WriteOnly,
                (Access::Done(_), Access::Undefined, ..) => Outcome::ReadOnly,
                (_, _, Access::Done(first), Access::Done(second)) => {
                    if (first ^ second) & mask != 0 {
                        Outcome::Held
                    } else {
                        Outcome::Fixed
                    }
                }
                _ => Outcome::WriteOnly,
            };
            if before != Access::Undefined && wrote != Access::Undefined {
                let _ = registers::write(index, old);
            }
        }
    }

    fn held(&self) -> impl Iterator<Item = usize> + '_ {
        (0..COUNT).filter(|&index| self.outcomes[index] == Outcome::Held)
    }

    fn checked(&self) -> usize {
        self.held().count()
    }

    /// Writes the pattern into every held register (in table order, so the exception registers
    /// and `VBAR_EL1` come last), then records what each reads back. From here until
    /// [`Registers::restore_vectors`] this PD must take no exception.
    fn set_pattern(&mut self) {
        for (index, register) in REGISTERS.iter().enumerate() {
            if self.outcomes[index] == Outcome::Held {
                let mask = register.mask;
                let _ =
                    registers::write(index, (self.before[index] & !mask) | (self.pattern & mask));
            }
        }
        for index in 0..COUNT {
            if self.outcomes[index] == Outcome::Held {
                self.own[index] = registers::read(index).value().unwrap_or(0);
            }
        }
    }

    /// Reads every held register back; a value that is not this PD's own is a leak.
    fn check(&mut self) {
        for (index, register) in REGISTERS.iter().enumerate() {
            if self.outcomes[index] != Outcome::Held {
                continue;
            }
            let mask = register.mask;
            let own = self.own[index];
            let found = match registers::read(index) {
                Access::Done(value) => value,
                Access::Undefined => !own,
            };
            if (found ^ own) & mask != 0 {
                if let Some(slot) = self.listed.get_mut(self.leaks as usize) {
                    *slot = Some(Leak { index, found, own });
                }
                self.leaks += 1;
            }
        }
    }

    /// Points `VBAR_EL1` back at the vectors, ending the no-exception window.
    fn restore_vectors(&self) {
        registers::install_vectors();
    }

    fn print_leaks(&self) {
        for leak in self.listed.iter().flatten() {
            debug_println!(
                "leak {} found={:#x} own={:#x}",
                REGISTERS[leak.index].name,
                leak.found,
                leak.own
            );
        }
    }

    fn print_outcomes(&self) {
        for (index, register) in REGISTERS.iter().enumerate() {
            debug_println!("reg {} {}", register.name, self.outcomes[index].word());
        }
    }
}

/// The region `baselines`: 16 bytes per register, a held flag then the writer's value.
fn baselines() -> Region {
    let base = memory_region_symbol!(baselines_vaddr);
    // SAFETY: register_channel.xml maps the 4 KiB region `baselines` at `baselines_vaddr` in the
    // writer (rw) and the reader (r), away from the program's image and stack; 16 bytes for each
    // of the COUNT registers fit in it.
    #[allow(unsafe_code)]
    unsafe {
        Region::new(base, 0x1000)
    }
}

/// The region `spin`: each spinner's loop counter, then each one's done flag.
fn spin() -> Region {
    let base = memory_region_symbol!(spin_vaddr);
    // SAFETY: register_channel.xml maps the 4 KiB region `spin` read-write at `spin_vaddr` in
    // both spinners, away from the program's image and stack.
    #[allow(unsafe_code)]
    unsafe {
        Region::new(base, 0x1000)
    }
}

/// The handler: only the reader has work left after `init`.
struct RegChannel {
    reader: Option<Registers>,
}

impl Handler for RegChannel {
    fn notified(&mut self, channels: ChannelSet) {
        let Some(registers) = self.reader.as_mut() else {
            panic!("unexpected notification on channels {:#x}", channels.bits())
        };
        registers.check();
        registers.restore_vectors();
        let shared = baselines();
        let mut distinct = 0;
        for index in registers.held() {
            let offset = 16 * index as u64;
            let writer_held = shared.read_u64(offset) == 1;
            let writer_value = shared.read_u64(offset + 8);
            if writer_held && (writer_value ^ registers.own[index]) & REGISTERS[index].mask != 0 {
                distinct += 1;
            }
        }
        registers.print_leaks();
        debug_println!(
            "reader checked={} distinct={distinct} leaks={}",
            registers.checked(),
            registers.leaks
        );
    }
}

fn writer() -> RegChannel {
    let mut registers = Registers::new(PATTERN);
    registers.classify(Phase::Data);
    registers.set_pattern();
    let shared = baselines();
    for index in 0..COUNT {
        let held = registers.outcomes[index] == Outcome::Held;
        shared.write_u64(16 * index as u64, u64::from(held));
        shared.write_u64(16 * index as u64 + 8, registers.own[index]);
    }
    // The reader has the higher priority: it runs, and checks its registers, before this call
    // returns.
    EXCHANGE.notify();
    registers.check();
    registers.restore_vectors();
    registers.classify(Phase::Refused);
    registers.print_outcomes();
    aarch32_el0_checks();
    registers.print_leaks();
    debug_println!(
        "writer checked={} leaks={}",
        registers.checked(),
        registers.leaks
    );
    RegChannel { reader: None }
}

/// AArch32 EL0 (every supported CPU has it: `ID_AA64PFR0_EL1.EL0` = 2) sees AArch64 registers
/// under AArch32 names: its TPIDRURW must be TPIDR_EL0's low half, which the hypervisor
/// switches. An AArch32 access the hypervisor refuses (CNTP_CTL, with EL0 access opened by
/// `CNTKCTL_EL1.EL0PTEN` so the access reaches EL2) must come back as UNDEFINED at the
/// AArch32 vector (`VBAR_EL1` + 0x600).
fn aarch32_el0_checks() {
    const VALUE: u64 = 0x1357_9BDF;
    const EC_SVC32: u64 = 0x11;
    let index = |name: &str| REGISTERS.iter().position(|register| register.name == name);
    let (Some(tpidr_el0), Some(cntkctl)) = (index("TPIDR_EL0"), index("CNTKCTL_EL1")) else {
        panic!("TPIDR_EL0 and CNTKCTL_EL1 are in the register table");
    };
    let (read_back, syndrome) = registers::aarch32_el0(A32Code::Tpidrurw, VALUE);
    let aarch64 = registers::read(tpidr_el0).value().unwrap_or(0);
    debug_println!(
        "aarch32 TPIDRURW wrote={VALUE:#x} read={:#x} ec={:#x} TPIDR_EL0={:#x}",
        read_back & 0xFFFF_FFFF,
        syndrome >> 26,
        aarch64 & 0xFFFF_FFFF
    );
    let old = registers::read(cntkctl).value().unwrap_or(0);
    let _ = registers::write(cntkctl, old | (1 << 9));
    let (_, syndrome) = registers::aarch32_el0(A32Code::CntpCtl, 0);
    let _ = registers::write(cntkctl, old);
    let outcome = match syndrome >> 26 {
        0 => "undef",
        EC_SVC32 => "completed",
        _ => "other",
    };
    debug_println!("aarch32 CNTP_CTL {outcome} esr={syndrome:#x}");
}

fn reader() -> RegChannel {
    let mut registers = Registers::new(!PATTERN);
    registers.classify(Phase::Data);
    // Kept until the notification: the writer runs in between.
    registers.set_pattern();
    RegChannel {
        reader: Some(registers),
    }
}

fn spinner(me: u64, pattern: u64) -> RegChannel {
    let shared = spin();
    let other = 1 - me;
    let mut registers = Registers::new(pattern);
    registers.classify(Phase::Data);
    registers.set_pattern();
    let mut count: u64 = 0;
    let mut last_seen = shared.read_u64(8 * other);
    let mut interleavings = 0;
    // Each time the other spinner's counter moved between two rounds, the CPU went to it and
    // came back: the registers checked next have been through two domain switches.
    while interleavings < INTERLEAVINGS && shared.read_u64(16 + 8 * other) == 0 {
        registers.check();
        count += 1;
        shared.write_u64(8 * me, count);
        let seen = shared.read_u64(8 * other);
        if seen != last_seen {
            interleavings += 1;
            last_seen = seen;
        }
    }
    registers.restore_vectors();
    shared.write_u64(16 + 8 * me, 1);
    registers.print_leaks();
    debug_println!(
        "spinner checked={} leaks={} interleavings={interleavings}",
        registers.checked(),
        registers.leaks
    );
    RegChannel { reader: None }
}

fn init() -> RegChannel {
    match pd_name().as_str() {
        "writer" => writer(),
        "reader" => reader(),
        "spin_a" => spinner(0, PATTERN),
        "spin_b" => spinner(1, !PATTERN),
        other => panic!("no register-channel role for a PD named {other}"),
    }
}

frameshift_pd::protection_domain!(init);
