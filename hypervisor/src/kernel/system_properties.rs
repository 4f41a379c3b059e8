//! Property test of the Microkit state machine: random systems driven by random PD behaviour
//! (any function id and arguments, timer ticks, faults, interrupts) never panic, and every
//! decision obeys the scheduling rules.

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

use super::*;
use crate::addr::Ipa;

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
        ipc_buffer: 0,
    }
}

/// One step of PD (or hardware) behaviour.
#[derive(Clone, Debug)]
enum Step {
    Call { function: u32, args: [u64; 11] },
    Tick,
    Wait,
    Smc,
    Fault { injectable: bool },
    Interrupt(u32),
}

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
        1 => Just(Step::Wait),
        1 => Just(Step::Smc),
        1 => any::<bool>().prop_map(|injectable| Step::Fault { injectable }),
        1 => prop_oneof![Just(40u32), Just(41), any::<u32>()].prop_map(Step::Interrupt),
    ]
}

/// Whether `index` has something to run: what the scheduler must never leave waiting behind a
/// lower priority.
fn has_work(kernel: &Kernel, index: DomainIndex) -> bool {
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
                        kernel.domain(DomainIndex(other as u8)).map(|d| d.state),
                        Some(RunState::Calling { server, delivered: false, .. }) if server == index
                    )
                })
        }
        _ => false,
    }
}

fn check_decision(kernel: &Kernel, decision: Decision) -> Result<(), TestCaseError> {
    let count = kernel.domain_count();
    let priority = |d: usize| {
        kernel
            .domain(DomainIndex(d as u8))
            .map_or(0, |d| d.priority)
    };
    match decision {
        Decision::Run(chosen) | Decision::InjectAbort(chosen) => {
            let state = kernel.domain(chosen).map(|d| d.state);
            prop_assert_eq!(state, Some(RunState::Ready));
            prop_assert_eq!(kernel.current(), Some(chosen));
            for other in 0..count {
                if priority(other) > priority(chosen.get()) {
                    prop_assert!(
                        !has_work(kernel, DomainIndex(other as u8)),
                        "domain {} has work above the chosen {}",
                        other,
                        chosen
                    );
                }
            }
        }
        Decision::WaitForInterrupt
        | Decision::Halt(Halt {
            reason: HaltReason::Idle,
            ..
        }) => {
            for other in 0..count {
                prop_assert!(!has_work(kernel, DomainIndex(other as u8)));
            }
        }
        Decision::Halt(_) => {}
    }
    // A faulted domain's parent is alive, so someone can still restart or stop it.
    for child in 0..count {
        let domain = kernel.domain(DomainIndex(child as u8));
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
        if let Some(RunState::Calling { server, .. }) =
            kernel.domain(DomainIndex(caller as u8)).map(|d| d.state)
        {
            prop_assert!(priority(server.get()) > priority(caller));
            prop_assert_ne!(
                kernel.domain(server).map(|d| d.state),
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
        steps in proptest::collection::vec(step(), 1..120),
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
        let mut kernel = Kernel::new(&domains, &channels, &irqs).unwrap();
        let mut out = String::new();
        let mut decision = kernel.start();
        check_decision(&kernel, decision)?;
        for step in steps {
            if let Decision::Halt(_) = decision {
                break;
            }
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
                Step::Wait => Exit::WaitForInterrupt,
                Step::Smc => Exit::SecureMonitorCall,
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
            decision = kernel.handle(exit, &mut out);
            check_decision(&kernel, decision)?;
            while kernel.take_acknowledged_irq().is_some() {}
        }
        kernel.flush_console(&mut out);
        for line in out.lines() {
            prop_assert!(line.starts_with("FS|"), "{}", line);
        }
    }
}
