//! Property tests of the Microkit state machine: random systems driven by random PD behaviour
//! (any function id and arguments, timer ticks, faults, interrupts, time passing) never panic,
//! every decision obeys the scheduling rules, and round robin gives an always-runnable PD its
//! share whatever an equal-priority peer does.

extern crate std;

use std::string::String;
use std::vec::Vec;

use frameshift_abi::boot_info::{
    ChannelDesc, DomainDesc, IrqDesc, DOMAIN_KIND_PD, IRQ_TRIGGER_LEVEL, NAME_LEN, NONE,
};
use frameshift_abi::pd_call::{
    PD_DEBUG_WRITE, PD_IRQ_ACK, PD_NOTIFY, PD_PPCALL, PD_REPLY_RECV, PD_STOP, PD_SYSTEM_OFF,
};
use proptest::prelude::*;

use super::test_system::TestSystem;
use super::*;
use crate::addr::Ipa;
use crate::domain::{ContextId, DomainId, RunState};
use crate::hypervisor::{Decision, Exit, Halt, HaltReason};

fn pd(index: usize, priority: u8, parent: u32) -> DomainDesc {
    let mut name = [0u8; NAME_LEN];
    name[0] = b'a' + index as u8;
    DomainDesc {
        name,
        kind: DOMAIN_KIND_PD,
        priority,
        flags: 0,
        reserved0: 0,
        parent,
        child_id: if parent == NONE { NONE } else { index as u32 },
        first_mapping: 0,
        mapping_count: 0,
        reserved1: 0,
        entry: 0x20_0000,
        stack_top: 0x40_0000,
        vcpu_ids: 0,
    }
}

/// One step of PD (or hardware) behaviour, taken after `elapsed` ticks of the running domain.
#[derive(Clone, Debug)]
enum Step {
    Call { function: u32, args: [u64; 11] },
    Tick,
    Wait { narrow: bool },
    Smc,
    Fault { injectable: bool },
    Interrupt(u32),
}

/// The time slice of the property tests, in ticks.
const SLICE: u64 = 1000;

fn step() -> impl Strategy<Value = Step> {
    let function = prop_oneof![
        Just(PD_DEBUG_WRITE),
        Just(PD_NOTIFY),
        Just(PD_IRQ_ACK),
        Just(PD_PPCALL),
        Just(PD_PPCALL),
        Just(PD_REPLY_RECV),
        Just(PD_REPLY_RECV),
        Just(PD_REPLY_RECV),
        Just(PD_SYSTEM_OFF),
        Just(PD_STOP),
        any::<u32>(),
    ];
    // Small channel ids hit real channels often; the rest is any 64-bit value.
    let argument = prop_oneof![0u64..4, any::<u64>()];
    prop_oneof![
        8 => (function, proptest::array::uniform11(argument))
            .prop_map(|(function, args)| Step::Call { function, args }),
        1 => Just(Step::Tick),
        1 => any::<bool>().prop_map(|narrow| Step::Wait { narrow }),
        1 => Just(Step::Smc),
        1 => any::<bool>().prop_map(|injectable| Step::Fault { injectable }),
        1 => prop_oneof![Just(40u32), Just(41), any::<u32>()].prop_map(Step::Interrupt),
    ]
}

/// Whether `index` has something to run: what the scheduler must never leave waiting behind a
/// lower priority.
fn has_work(kernel: &TestSystem, index: ContextId) -> bool {
    let Some(domain) = kernel.domain(index) else {
        return false;
    };
    match domain.state {
        RunState::Ready => true,
        RunState::Waiting => {
            domain.pending_notifications != 0
                || domain.pending_faults != 0
                || (0..kernel.domain_count()).any(|other| {
                    matches!(
                        kernel.domain(ContextId::pd(DomainId(other as u8))).map(|d| d.state),
                        Some(RunState::Calling { server, delivered: false, .. }) if server == index.domain
                    )
                })
        }
        _ => false,
    }
}

fn check_decision(kernel: &TestSystem, decision: Decision) -> Result<(), TestCaseError> {
    let count = kernel.domain_count();
    // The ready queues hold exactly the domains with work, each once, at its own priority, and
    // every budget is between 1 tick and a full slice.
    for index in 0..count {
        let index = ContextId::pd(DomainId(index as u8));
        let domain = kernel.domain(index).unwrap();
        let places = (0..=u8::MAX)
            .map(|p| kernel.ready_queue(p).filter(|&d| d == index).count())
            .sum::<usize>();
        prop_assert_eq!(
            places,
            usize::from(has_work(kernel, index)),
            "domain {}",
            index
        );
        prop_assert_eq!(
            kernel
                .ready_queue(domain.priority)
                .filter(|&d| d == index)
                .count(),
            places
        );
        // A queued domain has budget left. Only a domain given its fault back may go on with
        // nothing (the timer then ends its slice at once); after a halt nothing runs again; a
        // domain that blocked as its budget ran out gets a full one when it is queued again.
        let may_be_spent = decision == Decision::InjectAbort(index)
            || matches!(decision, Decision::Halt(_))
            || places == 0;
        prop_assert!(
            (1..=SLICE).contains(&domain.budget) || (may_be_spent && domain.budget == 0),
            "budget {}",
            domain.budget
        );
    }
    let priority = |d: usize| {
        kernel
            .domain(ContextId::pd(DomainId(d as u8)))
            .map_or(0, |d| d.priority)
    };
    match decision {
        Decision::Run(chosen) | Decision::InjectAbort(chosen) => {
            let state = kernel.domain(chosen).map(|d| d.state);
            prop_assert_eq!(state, Some(RunState::Ready));
            prop_assert_eq!(kernel.current(), Some(chosen));
            // The chosen domain heads its queue (an injected abort goes to the domain that
            // faulted, whose slice may have just run out).
            let chosen_priority = priority(usize::from(chosen.domain.0));
            if matches!(decision, Decision::Run(_)) {
                prop_assert_eq!(kernel.ready_queue(chosen_priority).next(), Some(chosen));
            }
            prop_assert!(kernel.slice_end().is_some());
            for other in 0..count {
                if priority(other) > priority(usize::from(chosen.domain.0)) {
                    prop_assert!(
                        !has_work(kernel, ContextId::pd(DomainId(other as u8))),
                        "domain {} has work above the chosen {}",
                        other,
                        chosen
                    );
                }
            }
        }
        Decision::WaitForInterrupt
        | Decision::Halt(Halt {
            reason: HaltReason::Idle | HaltReason::Deadlock,
            ..
        }) => {
            for other in 0..count {
                prop_assert!(!has_work(kernel, ContextId::pd(DomainId(other as u8))));
            }
            prop_assert_eq!(kernel.slice_end(), None);
            // A halt says deadlock exactly when some domain is still blocked on another.
            let blocked = (0..count).any(|d| {
                matches!(
                    kernel
                        .domain(ContextId::pd(DomainId(d as u8)))
                        .map(|d| d.state),
                    Some(RunState::Calling { .. } | RunState::Faulted)
                )
            });
            if let Decision::Halt(halt) = decision {
                prop_assert_eq!(halt.reason == HaltReason::Deadlock, blocked);
                if blocked {
                    prop_assert_ne!(halt.status, 0, "a halt with blocked domains must fail");
                }
            }
        }
        Decision::Halt(_) => {}
    }
    // A faulted domain's parent is alive, so someone can still restart or stop it.
    for child in 0..count {
        let domain = kernel.domain(ContextId::pd(DomainId(child as u8)));
        if domain.map(|d| d.state) == Some(RunState::Faulted) {
            let parent = domain.and_then(|d| d.parent);
            prop_assert!(parent.is_some());
            prop_assert_ne!(
                parent.and_then(|p| kernel.domain(p)).map(|p| p.state),
                Some(RunState::Stopped)
            );
        }
    }
    // A domain blocked in a call waits on a live, strictly higher-priority server.
    for caller in 0..count {
        if let Some(RunState::Calling { server, .. }) = kernel
            .domain(ContextId::pd(DomainId(caller as u8)))
            .map(|d| d.state)
        {
            prop_assert!(priority(usize::from(server.0)) > priority(caller));
            prop_assert_ne!(
                kernel.domain(ContextId::pd(server)).map(|d| d.state),
                Some(RunState::Stopped)
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_pd_behaviour_never_breaks_the_scheduling_rules(
        // Few distinct priorities, so equal priorities (round robin, refused calls) are common.
        priorities in proptest::collection::vec(prop_oneof![Just(10u8), Just(20), Just(30), 0u8..=254], 2..6),
        parent_of_last in any::<bool>(),
        channel_flags in proptest::collection::vec(0u32..16, 0..6),
        steps in proptest::collection::vec((step(), 0..2 * SLICE), 1..120),
    ) {
        let count = priorities.len();
        let domains: Vec<DomainDesc> = priorities
            .iter()
            .enumerate()
            .map(|(index, &priority)| {
                let parent = if parent_of_last && index == count - 1 { 0 } else { NONE };
                pd(index, priority, parent)
            })
            .collect();
        // Channel k joins domains k % count and (k + 1) % count, with id k at both ends.
        let channels: Vec<ChannelDesc> = channel_flags
            .iter()
            .enumerate()
            .filter(|(k, _)| k % count != (k + 1) % count)
            .map(|(k, &flags)| ChannelDesc {
                domain_a: (k % count) as u32,
                id_a: k as u32,
                domain_b: ((k + 1) % count) as u32,
                id_b: k as u32,
                flags,
                reserved0: 0,
            })
            .collect();
        let irqs = [IrqDesc { domain: 0, irq: 40, channel_id: 20, trigger: IRQ_TRIGGER_LEVEL }];
        let mut kernel = TestSystem::new(&domains, &channels, &irqs).unwrap();
        kernel.set_time_slice(SLICE);
        let mut out = String::new();
        let mut now = 0;
        let mut decision = kernel.start(now);
        check_decision(&kernel, decision)?;
        for (step, elapsed) in steps {
            if let Decision::Halt(halt) = decision {
                kernel.write_halt_line(&halt, &mut out).unwrap();
                break;
            }
            // The timer fires at the end of the slice, a little late; any other exit may come
            // at any time, even after the slice ran out (the tick not yet taken).
            now = match (&step, kernel.slice_end()) {
                (Step::Tick, Some(end)) => end.max(now) + elapsed % 50,
                _ => now + elapsed,
            };
            let trapped = kernel.current().map(|c| (c, kernel.domain(c).unwrap().registers.pc));
            let exit = match step {
                Step::Call { function, args } => {
                    if let Some(current) = kernel.current() {
                        let registers = kernel.registers_mut(current).unwrap();
                        registers.x[0] = u64::from(function);
                        registers.x[1..12].copy_from_slice(&args);
                    }
                    Exit::Hypercall
                }
                Step::Tick => Exit::TimerTick,
                Step::Wait { narrow: true } => Exit::WaitForInterrupt(InstructionLength::Narrow),
                Step::Wait { narrow: false } => Exit::WaitForInterrupt(InstructionLength::Wide),
                Step::Smc => Exit::SecureMonitorCall(InstructionLength::Wide),
                Step::Fault { injectable } => Exit::Fault(FaultReport {
                    kind: FaultKind::Translation,
                    ipa: Ipa(0x1000),
                    esr: 0x9200_0007,
                    pc: 0x20_0000,
                    injectable,
                }),
                Step::Interrupt(intid) => Exit::Interrupt(intid),
            };
            // While waiting for an interrupt only an interrupt can arrive.
            if decision == Decision::WaitForInterrupt && !matches!(exit, Exit::Interrupt(_)) {
                continue;
            }
            decision = kernel.handle(exit, now, &mut out);
            check_decision(&kernel, decision)?;
            // A yield or a refused SMC resumes right after the trapped instruction, by its length.
            if let (Some((domain, pc)), Exit::WaitForInterrupt(length) | Exit::SecureMonitorCall(length)) = (trapped, exit) {
                prop_assert_eq!(kernel.domain(domain).unwrap().registers.pc, pc + length.bytes());
            }
            while kernel.take_acknowledged_irq().is_some() {}
        }
        kernel.flush_console(&mut out);
        for line in out.lines() {
            prop_assert!(line.starts_with("FS|"), "{}", line);
        }
    }
}

/// What the kicker does next, after running `run` ticks of its own time.
#[derive(Clone, Copy, Debug)]
enum KickerAction {
    /// `PD_NOTIFY` to the higher-priority PD.
    Notify,
    /// `PD_PPCALL` to the higher-priority PD (which replies when its handler ends).
    Call,
    /// `WFI`: yield the rest of the slice.
    Yield,
    /// `PD_REPLY_RECV` with nothing pending: block until its interrupt, `wake_after` ticks on.
    Block { wake_after: u64 },
}

fn kicker_action() -> impl Strategy<Value = KickerAction> {
    prop_oneof![
        4 => Just(KickerAction::Notify),
        2 => Just(KickerAction::Call),
        1 => Just(KickerAction::Yield),
        1 => (0..3 * SLICE).prop_map(|wake_after| KickerAction::Block { wake_after }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// K and P share priority 10, H has 20. K does anything a PD can (runs, kicks or calls H,
    /// yields, blocks until its interrupt); H's handlers take any time; P is always runnable and
    /// never gives up the CPU. Whatever K does, P is never behind K by more than one slice
    /// (plus the timer's lateness): round robin gives it a full slice every round.
    #[test]
    fn an_always_runnable_peer_gets_its_share_whatever_its_equal_does(
        plan in proptest::collection::vec((1..2 * SLICE, kicker_action(), 0..SLICE), 1..150),
        lateness in 0..SLICE / 10,
    ) {
        const K: ContextId = ContextId::pd(DomainId(0));
        const P: ContextId = ContextId::pd(DomainId(1));
        const H: ContextId = ContextId::pd(DomainId(2));
        const KICKER_IRQ: u32 = 40;
        let channels = [ChannelDesc {
            domain_a: 0,
            id_a: 0,
            domain_b: 2,
            id_b: 0,
            flags: frameshift_abi::boot_info::CHANNEL_A_NOTIFIES_B
                | frameshift_abi::boot_info::CHANNEL_A_CALLS_B,
            reserved0: 0,
        }];
        let irqs = [IrqDesc { domain: 0, irq: KICKER_IRQ, channel_id: 1, trigger: IRQ_TRIGGER_LEVEL }];
        let domains = [pd(0, 10, NONE), pd(1, 10, NONE), pd(2, 20, NONE)];
        let mut kernel = TestSystem::new(&domains, &channels, &irqs).unwrap();
        kernel.set_time_slice(SLICE);
        let mut out = String::new();
        let mut now = 0;
        let mut decision = kernel.start(now);
        let mut ran = [0u64; 3];
        // H's init ends at once; then each of H's handlers runs for the plan's time.
        let mut high_work = 0;
        let mut plan = plan.into_iter();
        let mut step = plan.next();
        let mut kicker_ran = 0;
        let mut wake_at: Option<u64> = None;
        let hvc = |kernel: &mut TestSystem, args: &[u64], now: u64, out: &mut String| {
            let current = kernel.current().unwrap();
            kernel.registers_mut(current).unwrap().x[..args.len()].copy_from_slice(args);
            kernel.handle(Exit::Hypercall, now, out)
        };
        while let Some((run, action, high_time)) = step {
            let Decision::Run(running) = decision else {
                prop_assert!(false, "P is always runnable, yet {:?}", decision);
                break;
            };
            // The next exit: the timer (late by `lateness`), K's interrupt, or what the running
            // domain does next.
            let timer = kernel.slice_end().unwrap() + lateness;
            let own = match running {
                H => Some(now + high_work),
                K => Some(now + (run - kicker_ran)),
                _ => None,
            };
            let at = [Some(timer), own, wake_at].into_iter().flatten().min().unwrap();
            ran[usize::from(running.domain.0)] += at - now;
            if running == K {
                kicker_ran += at - now;
            }
            now = at;
            decision = if wake_at == Some(now) {
                wake_at = None;
                kernel.handle(Exit::Interrupt(KICKER_IRQ), now, &mut out)
            } else if own == Some(now) && running == H {
                high_work = high_time;
                hvc(&mut kernel, &[PD_REPLY_RECV.into(), 1, 0], now, &mut out)
            } else if own == Some(now) && running == K {
                kicker_ran = 0;
                step = plan.next();
                match action {
                    KickerAction::Notify => hvc(&mut kernel, &[PD_NOTIFY.into(), 0], now, &mut out),
                    KickerAction::Call => hvc(&mut kernel, &[PD_PPCALL.into(), 0, 0], now, &mut out),
                    KickerAction::Yield => {
                        kernel.handle(Exit::WaitForInterrupt(InstructionLength::Wide), now, &mut out)
                    }
                    KickerAction::Block { wake_after } => {
                        wake_at = Some(now + wake_after);
                        while kernel.take_acknowledged_irq().is_some() {}
                        hvc(&mut kernel, &[PD_REPLY_RECV.into(), 0], now, &mut out)
                    }
                }
            } else {
                kernel.handle(Exit::TimerTick, now, &mut out)
            };
            let (kicker, peer) = (ran[usize::from(K.domain.0)], ran[usize::from(P.domain.0)]);
            prop_assert!(
                kicker <= peer + SLICE + lateness,
                "at {}: kicker ran {} ticks, the peer only {}",
                now,
                kicker,
                peer
            );
        }
    }
}
