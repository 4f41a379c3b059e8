//! Host tests of the Microkit state machine: each test plays the PDs' side by setting registers
//! the way the PD runtime would before an `HVC`, then checks the kernel's decision and what the
//! PDs see.

extern crate std;

use std::string::{String, ToString};
use std::vec::Vec;

use frameshift_abi::boot_info::{
    ChannelDesc, DomainDesc, IrqDesc, CHANNEL_A_CALLS_B, CHANNEL_A_NOTIFIES_B,
    CHANNEL_B_NOTIFIES_A, DOMAIN_FLAG_PASSIVE, DOMAIN_KIND_PD, DOMAIN_KIND_VM, IRQ_TRIGGER_LEVEL,
    NONE,
};
use frameshift_abi::pd_call::{
    MessageInfo, EVENT_FAULT, EVENT_NOTIFIED, EVENT_PROTECTED, FAULT_STAGE2_ABORT, PD_DEBUG_WRITE,
    PD_IRQ_ACK, PD_NOTIFY, PD_PPCALL, PD_REPLY_RECV, PD_STOP, PD_SYSTEM_OFF, REPLY_MESSAGE,
    REPLY_NONE, STOP_EXCEPTION, STOP_PANIC,
};
use frameshift_abi::smccc::{INVALID_PARAMETER, NOT_SUPPORTED, SUCCESS};

use super::test_system::{domain_desc, TestSystem};
use super::*;
use crate::arch::fake::FakeArch;
use crate::arch::Arch;
use crate::domain::{ContextId, DomainId, Registers, RunState};
use crate::hypervisor::{BuildError, Decision, Exit, Halt, HaltReason};

fn pd(name: &str, priority: u8, parent: u32) -> DomainDesc {
    let child_id = if parent == NONE { NONE } else { 7 };
    domain_desc(name, DOMAIN_KIND_PD, priority, parent, child_id)
}

fn channel(a: u32, id_a: u32, b: u32, id_b: u32, flags: u32) -> ChannelDesc {
    ChannelDesc {
        domain_a: a,
        id_a,
        domain_b: b,
        id_b,
        flags,
        reserved0: 0,
    }
}

const A: ContextId = ContextId::pd(DomainId(0));
const B: ContextId = ContextId::pd(DomainId(1));
const C: ContextId = ContextId::pd(DomainId(2));
const B_ID: DomainId = DomainId(1);

/// Simulates the running PD issuing `HVC #0` with `args` in x0.. and returns the decision.
fn hvc(kernel: &mut TestSystem, args: &[u64], out: &mut String) -> Decision {
    let current = kernel.current().unwrap();
    let registers = kernel.registers_mut(current).unwrap();
    registers.x[..args.len()].copy_from_slice(args);
    kernel.handle(Exit::Hypercall, 0, out)
}

/// `hvc` at counter value `now`.
trait HvcAt {
    fn handle_hvc_at(&mut self, now: u64, args: &[u64], out: &mut String) -> Decision;
}

impl HvcAt for TestSystem {
    fn handle_hvc_at(&mut self, now: u64, args: &[u64], out: &mut String) -> Decision {
        let current = self.current().unwrap();
        let registers = self.registers_mut(current).unwrap();
        registers.x[..args.len()].copy_from_slice(args);
        self.handle(Exit::Hypercall, now, out)
    }
}

fn regs(kernel: &mut TestSystem, domain: ContextId) -> Registers {
    *kernel.registers_mut(domain).unwrap()
}

fn stage2_fault(injectable: bool) -> Exit {
    Exit::Fault(FaultReport {
        kind: FaultKind::Translation,
        ipa: crate::addr::Ipa(0x1234_5000),
        esr: 0x9200_0007,
        pc: 0x20_0040,
        injectable,
    })
}

#[test]
fn the_highest_priority_pd_inits_first_and_idle_halts() {
    let mut out = String::new();
    let mut kernel =
        TestSystem::new(&[pd("low", 10, NONE), pd("high", 200, NONE)], &[], &[]).unwrap();
    assert_eq!(kernel.start(0), Decision::Run(B));
    assert_eq!(regs(&mut kernel, B).pc, 0x20_0000);
    assert_eq!(regs(&mut kernel, B).sp, 0x40_0000);
    assert_eq!(regs(&mut kernel, B).pstate, FakeArch::ENTRY_PSTATE);
    assert_eq!(
        hvc(&mut kernel, &[PD_REPLY_RECV.into(), REPLY_NONE], &mut out),
        Decision::Run(A)
    );
    let decision = hvc(&mut kernel, &[PD_REPLY_RECV.into(), REPLY_NONE], &mut out);
    let Decision::Halt(halt) = decision else {
        panic!("{decision:?}")
    };
    assert_eq!(
        halt,
        Halt {
            status: 0,
            reason: HaltReason::Idle
        }
    );
    kernel.write_halt_line(&halt, &mut out).unwrap();
    assert_eq!(
        out,
        "FS|hypervisor|halt status=0 reason=idle faults=0 notifications=0 calls=0 preemptions=0 stopped=0\n"
    );
}

#[test]
fn a_notification_to_a_higher_priority_pd_preempts_and_carries_its_channel_bit() {
    let mut out = String::new();
    let channels = [channel(0, 3, 1, 5, CHANNEL_A_NOTIFIES_B)];
    let mut kernel = TestSystem::new(
        &[pd("client", 10, NONE), pd("server", 20, NONE)],
        &channels,
        &[],
    )
    .unwrap();
    assert_eq!(kernel.start(0), Decision::Run(B));
    assert_eq!(
        hvc(&mut kernel, &[PD_REPLY_RECV.into(), REPLY_NONE], &mut out),
        Decision::Run(A)
    );
    // The client notifies on its channel 3; the server sees its own id, 5.
    assert_eq!(
        hvc(&mut kernel, &[PD_NOTIFY.into(), 3], &mut out),
        Decision::Run(B)
    );
    let server = regs(&mut kernel, B);
    assert_eq!(
        (server.x[0], server.x[1], server.x[2]),
        (0, EVENT_NOTIFIED, 1 << 5)
    );
    assert_eq!(regs(&mut kernel, A).x[0], SUCCESS as u64);
    // The server may not notify back: its end has no notify right.
    assert_eq!(
        hvc(&mut kernel, &[PD_NOTIFY.into(), 5], &mut out),
        Decision::Run(B)
    );
    assert_eq!(regs(&mut kernel, B).x[0], INVALID_PARAMETER as u64);
    assert_eq!(
        hvc(&mut kernel, &[PD_REPLY_RECV.into(), REPLY_NONE], &mut out),
        Decision::Run(A)
    );
    assert_eq!(kernel.counters().notifications, 1);
}

#[test]
fn notifications_to_a_lower_priority_pd_wait_and_coalesce() {
    let mut out = String::new();
    let channels = [channel(
        0,
        1,
        1,
        2,
        CHANNEL_A_NOTIFIES_B | CHANNEL_B_NOTIFIES_A,
    )];
    let mut kernel =
        TestSystem::new(&[pd("high", 100, NONE), pd("low", 1, NONE)], &channels, &[]).unwrap();
    assert_eq!(kernel.start(0), Decision::Run(A));
    assert_eq!(
        hvc(&mut kernel, &[PD_NOTIFY.into(), 1], &mut out),
        Decision::Run(A)
    );
    assert_eq!(
        hvc(&mut kernel, &[PD_NOTIFY.into(), 1], &mut out),
        Decision::Run(A)
    );
    // The low PD has not run init yet: it starts at its entry, not with an event.
    assert_eq!(
        hvc(&mut kernel, &[PD_REPLY_RECV.into(), REPLY_NONE], &mut out),
        Decision::Run(B)
    );
    assert_eq!(regs(&mut kernel, B).pc, 0x20_0000);
    assert_eq!(
        hvc(&mut kernel, &[PD_REPLY_RECV.into(), REPLY_NONE], &mut out),
        Decision::Run(B)
    );
    let low = regs(&mut kernel, B);
    assert_eq!((low.x[1], low.x[2]), (EVENT_NOTIFIED, 1 << 2));
    assert!(matches!(
        hvc(&mut kernel, &[PD_REPLY_RECV.into(), REPLY_NONE], &mut out),
        Decision::Halt(_)
    ));
}

#[test]
fn a_protected_call_runs_the_server_and_returns_its_reply() {
    let mut out = String::new();
    let channels = [channel(0, 4, 1, 9, CHANNEL_A_CALLS_B)];
    let mut kernel = TestSystem::new(
        &[pd("client", 10, NONE), pd("server", 20, NONE)],
        &channels,
        &[],
    )
    .unwrap();
    assert_eq!(kernel.start(0), Decision::Run(B));
    assert_eq!(
        hvc(&mut kernel, &[PD_REPLY_RECV.into(), REPLY_NONE], &mut out),
        Decision::Run(A)
    );
    let message = MessageInfo::new(0x42, 2).0;
    let decision = hvc(
        &mut kernel,
        &[PD_PPCALL.into(), 4, message, 11, 22],
        &mut out,
    );
    assert_eq!(decision, Decision::Run(B));
    let server = regs(&mut kernel, B);
    assert_eq!(server.x[1], EVENT_PROTECTED);
    assert_eq!(
        (server.x[2], server.x[3], server.x[4], server.x[11]),
        (message, 11, 22, 9)
    );
    let reply = MessageInfo::new(0, 1).0;
    assert_eq!(
        hvc(
            &mut kernel,
            &[PD_REPLY_RECV.into(), REPLY_MESSAGE, reply, 33],
            &mut out
        ),
        Decision::Run(A)
    );
    let client = regs(&mut kernel, A);
    assert_eq!(
        (client.x[0], client.x[2], client.x[3]),
        (SUCCESS as u64, reply, 33)
    );
    assert_eq!(kernel.counters().calls, 1);
}

#[test]
fn protected_calls_only_go_up_through_pp_ends() {
    let mut out = String::new();
    let channels = [
        channel(0, 1, 1, 1, CHANNEL_A_CALLS_B),
        channel(0, 2, 2, 2, CHANNEL_A_CALLS_B),
    ];
    let domains = [
        pd("caller", 50, NONE),
        pd("equal", 50, NONE),
        pd("higher", 60, NONE),
    ];
    let mut kernel = TestSystem::new(&domains, &channels, &[]).unwrap();
    assert_eq!(kernel.start(0), Decision::Run(C));
    assert_eq!(
        hvc(&mut kernel, &[PD_REPLY_RECV.into(), REPLY_NONE], &mut out),
        Decision::Run(A)
    );
    // Equal priority: refused, and the caller keeps running.
    assert_eq!(
        hvc(&mut kernel, &[PD_PPCALL.into(), 1, 0], &mut out),
        Decision::Run(A)
    );
    assert_eq!(regs(&mut kernel, A).x[0], INVALID_PARAMETER as u64);
    // No such channel.
    assert_eq!(
        hvc(&mut kernel, &[PD_PPCALL.into(), 3, 0], &mut out),
        Decision::Run(A)
    );
    assert_eq!(regs(&mut kernel, A).x[0], INVALID_PARAMETER as u64);
    // Strictly higher, pp end: accepted.
    assert_eq!(
        hvc(&mut kernel, &[PD_PPCALL.into(), 2, 0], &mut out),
        Decision::Run(C)
    );
}

#[test]
fn a_fault_without_parent_is_printed_and_the_others_run_on() {
    let mut out = String::new();
    let mut kernel = TestSystem::new(
        &[pd("victim", 10, NONE), pd("attacker", 20, NONE)],
        &[],
        &[],
    )
    .unwrap();
    assert_eq!(kernel.start(0), Decision::Run(B));
    assert_eq!(
        kernel.handle(stage2_fault(false), 0, &mut out),
        Decision::Run(A)
    );
    assert_eq!(
        out,
        "FS|hypervisor|fault pd=attacker ipa=0x12345000 esr=0x92000007 pc=0x200040 kind=translation\n\
         FS|hypervisor|stopped pd=attacker reason=fault\n"
    );
    assert_eq!(kernel.domain(B).unwrap().state, RunState::Stopped);
    let Decision::Halt(halt) = hvc(&mut kernel, &[PD_REPLY_RECV.into(), REPLY_NONE], &mut out)
    else {
        panic!()
    };
    // The victim finished, but a PD had to be stopped: the run failed.
    assert_eq!(halt.status, 1);
    assert_eq!(kernel.counters().faults, 1);
    assert_eq!(kernel.counters().stopped, 1);
}

#[test]
fn pd_stop_stops_only_the_caller_and_the_idle_halt_reports_it() {
    let mut out = String::new();
    let channels = [channel(0, 1, 1, 2, CHANNEL_A_CALLS_B)];
    let mut kernel = TestSystem::new(
        &[pd("client", 10, NONE), pd("crasher", 20, NONE)],
        &channels,
        &[],
    )
    .unwrap();
    assert_eq!(kernel.start(0), Decision::Run(B));
    // Unknown reason: refused, and the PD is still running.
    assert_eq!(
        hvc(&mut kernel, &[PD_STOP.into(), 7], &mut out),
        Decision::Run(B)
    );
    assert_eq!(regs(&mut kernel, B).x[0], INVALID_PARAMETER as u64);
    assert_eq!(kernel.domain(B).unwrap().state, RunState::Ready);
    // A partial line is flushed before the stop line.
    hvc(
        &mut kernel,
        &[
            PD_DEBUG_WRITE.into(),
            4,
            u64::from_le_bytes(*b"oops\0\0\0\0"),
        ],
        &mut out,
    );
    assert_eq!(
        hvc(&mut kernel, &[PD_STOP.into(), STOP_PANIC], &mut out),
        Decision::Run(A)
    );
    assert_eq!(
        out,
        "FS|crasher|oops\nFS|hypervisor|stopped pd=crasher reason=panic\n"
    );
    assert_eq!(kernel.domain(B).unwrap().state, RunState::Stopped);
    // The rest runs on; calls to the stopped PD are refused.
    assert_eq!(
        hvc(&mut kernel, &[PD_PPCALL.into(), 1, 0], &mut out),
        Decision::Run(A)
    );
    assert_eq!(regs(&mut kernel, A).x[0], INVALID_PARAMETER as u64);
    let Decision::Halt(halt) = hvc(&mut kernel, &[PD_REPLY_RECV.into(), REPLY_NONE], &mut out)
    else {
        panic!()
    };
    assert_eq!(
        halt,
        Halt {
            status: 1,
            reason: HaltReason::Idle
        }
    );
    let mut line = String::new();
    kernel.write_halt_line(&halt, &mut line).unwrap();
    assert!(line.ends_with(" preemptions=0 stopped=1\n"), "{line}");
}

#[test]
fn pd_stop_for_an_exception_says_so() {
    let mut out = String::new();
    let mut kernel = TestSystem::new(&[pd("wild", 10, NONE)], &[], &[]).unwrap();
    kernel.start(0);
    assert!(matches!(
        hvc(&mut kernel, &[PD_STOP.into(), STOP_EXCEPTION], &mut out),
        Decision::Halt(Halt { status: 1, .. })
    ));
    assert_eq!(out, "FS|hypervisor|stopped pd=wild reason=exception\n");
}

#[test]
fn an_injectable_fault_goes_back_to_the_pd_a_bounded_number_of_times() {
    let mut out = String::new();
    let mut kernel = TestSystem::new(&[pd("prober", 10, NONE)], &[], &[]).unwrap();
    assert_eq!(kernel.start(0), Decision::Run(A));
    for _ in 0..crate::hypervisor::MAX_INJECTED_FAULTS {
        assert_eq!(
            kernel.handle(stage2_fault(true), 0, &mut out),
            Decision::InjectAbort(A)
        );
    }
    assert!(matches!(
        kernel.handle(stage2_fault(true), 0, &mut out),
        Decision::Halt(_)
    ));
    assert_eq!(kernel.domain(A).unwrap().state, RunState::Stopped);
}

#[test]
fn a_pd_call_between_faults_renews_the_injection_budget() {
    let mut out = String::new();
    let mut kernel = TestSystem::new(&[pd("prober", 10, NONE)], &[], &[]).unwrap();
    assert_eq!(kernel.start(0), Decision::Run(A));
    for _ in 0..3 {
        for _ in 0..crate::hypervisor::MAX_INJECTED_FAULTS {
            assert_eq!(
                kernel.handle(stage2_fault(true), 0, &mut out),
                Decision::InjectAbort(A)
            );
        }
        // Any call, even one refused, shows the PD is not stuck in its abort handler.
        assert_eq!(hvc(&mut kernel, &[0xC600_0F00], &mut out), Decision::Run(A));
    }
    assert_eq!(kernel.domain(A).unwrap().state, RunState::Ready);
}

#[test]
fn a_childs_fault_goes_to_its_parent() {
    let mut out = String::new();
    let mut kernel =
        TestSystem::new(&[pd("parent", 10, NONE), pd("child", 5, 0)], &[], &[]).unwrap();
    assert_eq!(kernel.start(0), Decision::Run(A));
    assert_eq!(
        hvc(&mut kernel, &[PD_REPLY_RECV.into(), REPLY_NONE], &mut out),
        Decision::Run(B)
    );
    assert_eq!(
        kernel.handle(stage2_fault(true), 0, &mut out),
        Decision::Run(A)
    );
    let parent = regs(&mut kernel, A);
    assert_eq!(parent.x[1], EVENT_FAULT);
    assert_eq!(MessageInfo(parent.x[2]).label(), FAULT_STAGE2_ABORT);
    assert_eq!(MessageInfo(parent.x[2]).count(), 3);
    assert_eq!(
        (parent.x[3], parent.x[4], parent.x[5], parent.x[11]),
        (0x1234_5000, 0x9200_0007, 0x20_0040, 7)
    );
    assert!(out.ends_with("to=parent\n"), "{out}");
    // Blocked until the parent answers; no answer stops it for good.
    assert_eq!(kernel.domain(B).unwrap().state, RunState::Faulted);
    assert!(matches!(
        hvc(&mut kernel, &[PD_REPLY_RECV.into(), REPLY_NONE], &mut out),
        Decision::Halt(_)
    ));
    assert_eq!(kernel.domain(B).unwrap().state, RunState::Stopped);
    assert!(
        out.ends_with("FS|hypervisor|stopped pd=child reason=parent\n"),
        "{out}"
    );
}

/// Parent at priority 10 (index 0), child at 5 (index 1), the child's fault delivered.
fn faulted_child(out: &mut String) -> TestSystem {
    let mut kernel =
        TestSystem::new(&[pd("parent", 10, NONE), pd("child", 5, 0)], &[], &[]).unwrap();
    assert_eq!(kernel.start(0), Decision::Run(A));
    assert_eq!(
        hvc(&mut kernel, &[PD_REPLY_RECV.into(), REPLY_NONE], out),
        Decision::Run(B)
    );
    // The child has run a little: its registers are no longer the initial ones.
    let child = kernel.registers_mut(B).unwrap();
    child.pc = 0x20_0040;
    child.x[7] = 0x77;
    assert_eq!(kernel.handle(stage2_fault(false), 0, out), Decision::Run(A));
    assert_eq!(regs(&mut kernel, A).x[1], EVENT_FAULT);
    kernel
}

#[test]
fn a_fault_reply_restarts_the_child_at_the_faulting_instruction() {
    let mut out = String::new();
    let mut kernel = faulted_child(&mut out);
    assert_eq!(
        hvc(
            &mut kernel,
            &[PD_REPLY_RECV.into(), REPLY_MESSAGE, 0],
            &mut out
        ),
        Decision::Run(B)
    );
    // Same PC (retry, as seL4 does for a fault reply) and every register as it was.
    let child = regs(&mut kernel, B);
    assert_eq!((child.pc, child.x[7]), (0x20_0040, 0x77));
    assert_eq!(kernel.domain(B).unwrap().state, RunState::Ready);
    // The retry faults again: a second fault event, and this time no reply.
    assert_eq!(
        kernel.handle(stage2_fault(false), 0, &mut out),
        Decision::Run(A)
    );
    assert_eq!(regs(&mut kernel, A).x[1], EVENT_FAULT);
    assert!(matches!(
        hvc(&mut kernel, &[PD_REPLY_RECV.into(), REPLY_NONE], &mut out),
        Decision::Halt(_)
    ));
    assert_eq!(kernel.domain(B).unwrap().state, RunState::Stopped);
    assert_eq!(kernel.counters().faults, 2);
    assert_eq!(out.matches("to=parent").count(), 2, "{out}");
}

#[test]
fn an_unknown_reply_flag_is_refused_and_changes_nothing() {
    let mut out = String::new();
    let mut kernel = faulted_child(&mut out);
    assert_eq!(
        hvc(&mut kernel, &[PD_REPLY_RECV.into(), 2], &mut out),
        Decision::Run(A)
    );
    assert_eq!(regs(&mut kernel, A).x[0], INVALID_PARAMETER as u64);
    assert_eq!(kernel.domain(A).unwrap().state, RunState::Ready);
    assert_eq!(
        kernel.domain(A).unwrap().handling_fault,
        Some(7),
        "B, by its child id"
    );
    assert_eq!(kernel.domain(B).unwrap().state, RunState::Faulted);
    // The handler can still answer properly afterwards.
    assert_eq!(
        hvc(
            &mut kernel,
            &[PD_REPLY_RECV.into(), REPLY_MESSAGE, 0],
            &mut out
        ),
        Decision::Run(B)
    );
}

#[test]
fn a_faulted_child_keeps_its_notifications_until_it_is_restarted() {
    let mut out = String::new();
    let channels = [channel(0, 1, 1, 2, CHANNEL_A_NOTIFIES_B)];
    let mut kernel =
        TestSystem::new(&[pd("parent", 10, NONE), pd("child", 5, 0)], &channels, &[]).unwrap();
    kernel.start(0);
    hvc(&mut kernel, &[PD_REPLY_RECV.into(), REPLY_NONE], &mut out);
    assert_eq!(
        kernel.handle(stage2_fault(false), 0, &mut out),
        Decision::Run(A)
    );
    // The parent notifies the faulted child while handling its fault: the bit waits.
    assert_eq!(
        hvc(&mut kernel, &[PD_NOTIFY.into(), 1], &mut out),
        Decision::Run(A)
    );
    assert_eq!(kernel.domain(B).unwrap().pending_notifications, 1 << 2);
    assert_eq!(
        hvc(
            &mut kernel,
            &[PD_REPLY_RECV.into(), REPLY_MESSAGE, 0],
            &mut out
        ),
        Decision::Run(B)
    );
    // The restarted child finishes; its next wait gets the notification.
    assert_eq!(
        hvc(&mut kernel, &[PD_REPLY_RECV.into(), REPLY_NONE], &mut out),
        Decision::Run(B)
    );
    let child = regs(&mut kernel, B);
    assert_eq!((child.x[1], child.x[2]), (EVENT_NOTIFIED, 1 << 2));
}

#[test]
fn a_restarted_server_still_answers_the_call_it_was_serving() {
    let mut out = String::new();
    // supervisor (30) is the parent of server (20); client (10) calls server.
    let channels = [channel(2, 1, 1, 4, CHANNEL_A_CALLS_B)];
    let domains = [
        pd("supervisor", 30, NONE),
        pd("server", 20, 0),
        pd("client", 10, NONE),
    ];
    let mut kernel = TestSystem::new(&domains, &channels, &[]).unwrap();
    assert_eq!(kernel.start(0), Decision::Run(A));
    hvc(&mut kernel, &[PD_REPLY_RECV.into(), REPLY_NONE], &mut out);
    hvc(&mut kernel, &[PD_REPLY_RECV.into(), REPLY_NONE], &mut out);
    assert_eq!(kernel.current(), Some(C));
    assert_eq!(
        hvc(&mut kernel, &[PD_PPCALL.into(), 1, 0], &mut out),
        Decision::Run(B)
    );
    // The server faults inside its protected handler; the caller keeps waiting.
    assert_eq!(
        kernel.handle(stage2_fault(false), 0, &mut out),
        Decision::Run(A)
    );
    assert!(matches!(
        kernel.domain(C).unwrap().state,
        RunState::Calling { server: B_ID, .. }
    ));
    assert_eq!(
        hvc(
            &mut kernel,
            &[PD_REPLY_RECV.into(), REPLY_MESSAGE, 0],
            &mut out
        ),
        Decision::Run(B)
    );
    let reply = MessageInfo::new(3, 1).0;
    assert_eq!(
        hvc(
            &mut kernel,
            &[PD_REPLY_RECV.into(), REPLY_MESSAGE, reply, 99],
            &mut out
        ),
        Decision::Run(C)
    );
    let client = regs(&mut kernel, C);
    assert_eq!(
        (client.x[0], client.x[2], client.x[3]),
        (SUCCESS as u64, reply, 99)
    );
}

#[test]
fn a_server_that_sends_no_reply_releases_its_caller_with_an_error() {
    let mut out = String::new();
    let channels = [channel(0, 1, 1, 1, CHANNEL_A_CALLS_B)];
    let mut kernel = TestSystem::new(
        &[pd("client", 1, NONE), pd("server", 2, NONE)],
        &channels,
        &[],
    )
    .unwrap();
    kernel.start(0);
    hvc(&mut kernel, &[PD_REPLY_RECV.into(), REPLY_NONE], &mut out);
    hvc(&mut kernel, &[PD_REPLY_RECV.into(), REPLY_NONE], &mut out);
    assert_eq!(
        hvc(&mut kernel, &[PD_PPCALL.into(), 1, 0], &mut out),
        Decision::Run(B)
    );
    assert_eq!(
        hvc(&mut kernel, &[PD_REPLY_RECV.into(), REPLY_NONE], &mut out),
        Decision::Run(A)
    );
    assert_eq!(regs(&mut kernel, A).x[0], INVALID_PARAMETER as u64);
}

#[test]
fn a_faulted_child_stops_when_its_parent_stops() {
    let mut out = String::new();
    // grandparent-less chain: top (30) <- middle (20) <- leaf (10).
    let domains = [pd("top", 30, NONE), pd("middle", 20, 0), pd("leaf", 10, 1)];
    let mut kernel = TestSystem::new(&domains, &[], &[]).unwrap();
    kernel.start(0);
    hvc(&mut kernel, &[PD_REPLY_RECV.into(), REPLY_NONE], &mut out);
    hvc(&mut kernel, &[PD_REPLY_RECV.into(), REPLY_NONE], &mut out);
    assert_eq!(kernel.current(), Some(C));
    // leaf faults to middle; middle faults in its fault handler, to top.
    assert_eq!(
        kernel.handle(stage2_fault(false), 0, &mut out),
        Decision::Run(B)
    );
    assert_eq!(
        kernel.handle(stage2_fault(false), 0, &mut out),
        Decision::Run(A)
    );
    assert_eq!(kernel.domain(C).unwrap().state, RunState::Faulted);
    // top leaves middle stopped: nobody can answer leaf any more, so it stops too.
    assert!(matches!(
        hvc(&mut kernel, &[PD_REPLY_RECV.into(), REPLY_NONE], &mut out),
        Decision::Halt(_)
    ));
    assert_eq!(kernel.domain(B).unwrap().state, RunState::Stopped);
    assert_eq!(kernel.domain(C).unwrap().state, RunState::Stopped);
}

#[test]
fn a_passive_server_serves_calls_and_notifications_at_its_own_priority() {
    let mut out = String::new();
    let channels = [channel(
        0,
        1,
        1,
        2,
        CHANNEL_A_CALLS_B | CHANNEL_A_NOTIFIES_B,
    )];
    let mut server = pd("server", 50, NONE);
    server.flags = DOMAIN_FLAG_PASSIVE;
    let mut kernel = TestSystem::new(&[pd("client", 10, NONE), server], &channels, &[]).unwrap();
    assert!(kernel.domain(B).unwrap().passive);
    assert!(!kernel.domain(A).unwrap().passive);
    // The passive server runs its init first, on its own time.
    assert_eq!(kernel.start(0), Decision::Run(B));
    assert_eq!(
        hvc(&mut kernel, &[PD_REPLY_RECV.into(), REPLY_NONE], &mut out),
        Decision::Run(A)
    );
    assert_eq!(
        hvc(&mut kernel, &[PD_PPCALL.into(), 1, 0], &mut out),
        Decision::Run(B)
    );
    assert_eq!(regs(&mut kernel, B).x[1], EVENT_PROTECTED);
    assert_eq!(
        hvc(
            &mut kernel,
            &[PD_REPLY_RECV.into(), REPLY_MESSAGE, 0],
            &mut out
        ),
        Decision::Run(A)
    );
    // Microkit binds a passive PD's scheduling context to its notification object: a
    // notification still runs it, and at its priority it preempts the notifier.
    assert_eq!(
        hvc(&mut kernel, &[PD_NOTIFY.into(), 1], &mut out),
        Decision::Run(B)
    );
    assert_eq!(
        (regs(&mut kernel, B).x[1], regs(&mut kernel, B).x[2]),
        (EVENT_NOTIFIED, 1 << 2)
    );
}

#[test]
fn a_server_that_faults_releases_its_caller_with_an_error() {
    let mut out = String::new();
    let channels = [channel(0, 1, 1, 1, CHANNEL_A_CALLS_B)];
    let mut kernel = TestSystem::new(
        &[pd("client", 1, NONE), pd("server", 2, NONE)],
        &channels,
        &[],
    )
    .unwrap();
    kernel.start(0);
    hvc(&mut kernel, &[PD_REPLY_RECV.into(), REPLY_NONE], &mut out);
    assert_eq!(
        hvc(&mut kernel, &[PD_PPCALL.into(), 1, 0], &mut out),
        Decision::Run(B)
    );
    assert_eq!(
        kernel.handle(stage2_fault(false), 0, &mut out),
        Decision::Run(A)
    );
    assert_eq!(regs(&mut kernel, A).x[0], INVALID_PARAMETER as u64);
    // The server is gone: later calls are refused at once.
    assert_eq!(
        hvc(&mut kernel, &[PD_PPCALL.into(), 1, 0], &mut out),
        Decision::Run(A)
    );
    assert_eq!(regs(&mut kernel, A).x[0], INVALID_PARAMETER as u64);
}

#[test]
fn the_timer_rotates_equal_priorities_but_never_hands_the_cpu_down() {
    let mut out = String::new();
    let domains = [
        pd("spin1", 10, NONE),
        pd("spin2", 10, NONE),
        pd("low", 5, NONE),
    ];
    let mut kernel = TestSystem::new(&domains, &[], &[]).unwrap();
    kernel.set_time_slice(1000);
    assert_eq!(kernel.start(0), Decision::Run(A));
    assert_eq!(kernel.slice_end(), Some(1000));
    // The timer fires when the budget is used up (a little late, as hardware may be).
    assert_eq!(
        kernel.handle(Exit::TimerTick, 1003, &mut out),
        Decision::Run(B)
    );
    assert_eq!(kernel.slice_end(), Some(2003));
    assert_eq!(
        kernel.handle(Exit::TimerTick, 2003, &mut out),
        Decision::Run(A)
    );
    assert_eq!(kernel.counters().preemptions, 2);
    // spin1 finishes; spin2 alone at the top keeps the CPU across ticks.
    let decision = kernel.handle_hvc_at(2500, &[PD_REPLY_RECV.into(), REPLY_NONE], &mut out);
    assert_eq!(decision, Decision::Run(B));
    assert_eq!(kernel.slice_end(), Some(3500));
    assert_eq!(
        kernel.handle(Exit::TimerTick, 3500, &mut out),
        Decision::Run(B)
    );
    assert_eq!(kernel.counters().preemptions, 2);
    // A tick that comes early ends nothing: the rest of the budget stays.
    assert_eq!(
        kernel.handle(Exit::TimerTick, 3600, &mut out),
        Decision::Run(B)
    );
    assert_eq!(kernel.slice_end(), Some(4500));
}

/// K and P share priority 10; H (20) is K's notification target. K notifies H every
/// `kick_every` ticks of its own time and never blocks; P just spins. Runs until `until` and
/// returns the ticks each of K and P ran.
fn kicker_and_peer(slice: u64, kick_every: u64, until: u64) -> (u64, u64) {
    const K: ContextId = A;
    const P: ContextId = B;
    const H: ContextId = C;
    let mut out = String::new();
    let channels = [channel(0, 0, 2, 0, CHANNEL_A_NOTIFIES_B)];
    let domains = [
        pd("kicker", 10, NONE),
        pd("peer", 10, NONE),
        pd("high", 20, NONE),
    ];
    let mut kernel = TestSystem::new(&domains, &channels, &[]).unwrap();
    kernel.set_time_slice(slice);
    let mut now = 0;
    // H inits first and waits for notifications.
    assert_eq!(kernel.start(now), Decision::Run(H));
    let mut decision = kernel.handle_hvc_at(now, &[PD_REPLY_RECV.into(), REPLY_NONE], &mut out);
    let mut ran = [0u64; 3];
    let mut since_kick = 0;
    while now < until {
        let Decision::Run(running) = decision else {
            panic!("{decision:?}")
        };
        let slice_end = kernel.slice_end().unwrap();
        let (at, exit_args): (u64, Option<&[u64]>) = match running {
            // H's handler takes a few ticks, then waits again.
            H => (now + 10, Some(&[PD_REPLY_RECV.into(), REPLY_NONE])),
            K if now + (kick_every - since_kick) < slice_end => (
                now + (kick_every - since_kick),
                Some(&[PD_NOTIFY.into(), 0]),
            ),
            _ => (slice_end, None),
        };
        ran[usize::from(running.domain.0)] += at - now;
        if running == K {
            since_kick = if exit_args.is_some() {
                0
            } else {
                since_kick + (at - now)
            };
        }
        now = at;
        decision = match exit_args {
            Some(args) => kernel.handle_hvc_at(now, args, &mut out),
            None => kernel.handle(Exit::TimerTick, now, &mut out),
        };
    }
    (ran[usize::from(K.domain.0)], ran[usize::from(P.domain.0)])
}

#[test]
fn an_equal_priority_peer_gets_its_share_while_a_pd_keeps_kicking_a_higher_priority() {
    // 5 ms slices, a kick every 250 us (62.5 MHz ticks), one simulated second.
    let (kicker, peer) = kicker_and_peer(312_500, 15_625, 62_500_000);
    // Round robin: each had a full slice per round, so they differ by at most one slice.
    assert!(peer > 0, "the peer never ran");
    assert!(
        kicker.abs_diff(peer) <= 312_500,
        "kicker={kicker} peer={peer}"
    );
}

#[test]
fn a_preempted_domain_keeps_its_place_and_what_is_left_of_its_budget() {
    let mut out = String::new();
    let channels = [channel(0, 0, 2, 0, CHANNEL_A_NOTIFIES_B)];
    let domains = [
        pd("first", 10, NONE),
        pd("second", 10, NONE),
        pd("high", 20, NONE),
    ];
    let mut kernel = TestSystem::new(&domains, &channels, &[]).unwrap();
    kernel.set_time_slice(1000);
    assert_eq!(kernel.start(0), Decision::Run(C));
    assert_eq!(
        kernel.handle_hvc_at(0, &[PD_REPLY_RECV.into(), REPLY_NONE], &mut out),
        Decision::Run(A)
    );
    // A runs 400 ticks and wakes H, which runs 300 ticks.
    assert_eq!(
        kernel.handle_hvc_at(400, &[PD_NOTIFY.into(), 0], &mut out),
        Decision::Run(C)
    );
    assert_eq!(kernel.ready_queue(10).collect::<Vec<_>>(), [A, B]);
    assert_eq!(
        kernel.handle_hvc_at(700, &[PD_REPLY_RECV.into(), REPLY_NONE], &mut out),
        Decision::Run(A)
    );
    // A is back at the head with the 600 ticks it had left: H's time was not charged to it.
    assert_eq!(kernel.domain(A).unwrap().budget, 600);
    assert_eq!(kernel.slice_end(), Some(1300));
    assert_eq!(
        kernel.handle(Exit::TimerTick, 1300, &mut out),
        Decision::Run(B)
    );
    assert_eq!(kernel.ready_queue(10).collect::<Vec<_>>(), [B, A]);
    assert_eq!(kernel.domain(A).unwrap().budget, 1000);
}

#[test]
fn a_domain_that_wakes_joins_the_tail_of_its_queue() {
    let mut out = String::new();
    // A notifies B; all three share priority 10.
    let channels = [channel(0, 0, 1, 0, CHANNEL_A_NOTIFIES_B)];
    let domains = [pd("a", 10, NONE), pd("b", 10, NONE), pd("c", 10, NONE)];
    let mut kernel = TestSystem::new(&domains, &channels, &[]).unwrap();
    kernel.set_time_slice(1000);
    assert_eq!(kernel.start(0), Decision::Run(A));
    assert_eq!(
        kernel.handle(Exit::TimerTick, 1000, &mut out),
        Decision::Run(B)
    );
    // B waits; C runs; A (at the head now) notifies B, which joins the tail behind C.
    assert_eq!(
        kernel.handle_hvc_at(1100, &[PD_REPLY_RECV.into(), REPLY_NONE], &mut out),
        Decision::Run(C)
    );
    assert_eq!(
        kernel.handle(Exit::TimerTick, 2100, &mut out),
        Decision::Run(A)
    );
    assert_eq!(
        kernel.handle_hvc_at(2200, &[PD_NOTIFY.into(), 0], &mut out),
        Decision::Run(A)
    );
    assert_eq!(kernel.ready_queue(10).collect::<Vec<_>>(), [A, C, B]);
    // B kept the 900 ticks it had when it blocked.
    assert_eq!(kernel.domain(B).unwrap().budget, 900);
}

#[test]
fn a_wfi_yields_to_the_tail_and_resumes_after_the_trapped_instruction() {
    let mut out = String::new();
    let domains = [pd("a", 10, NONE), pd("b", 10, NONE)];
    let mut kernel = TestSystem::new(&domains, &[], &[]).unwrap();
    kernel.set_time_slice(1000);
    assert_eq!(kernel.start(0), Decision::Run(A));
    // A 16-bit T32 WFI (ESR_EL2.IL = 0) is skipped by 2 bytes, not 4.
    assert_eq!(
        kernel.handle(
            Exit::WaitForInterrupt(InstructionLength::Narrow),
            100,
            &mut out
        ),
        Decision::Run(B)
    );
    assert_eq!(regs(&mut kernel, A).pc, 0x20_0002);
    assert_eq!(kernel.ready_queue(10).collect::<Vec<_>>(), [B, A]);
    // The yielder waits with a full budget.
    assert_eq!(kernel.domain(A).unwrap().budget, 1000);
    assert_eq!(
        kernel.handle(
            Exit::WaitForInterrupt(InstructionLength::Wide),
            200,
            &mut out
        ),
        Decision::Run(A)
    );
    assert_eq!(regs(&mut kernel, B).pc, 0x20_0004);
}

#[test]
fn a_caller_whose_call_returns_resumes_at_the_head_with_its_budget() {
    let mut out = String::new();
    // A calls C; B shares A's priority.
    let channels = [channel(0, 0, 2, 0, CHANNEL_A_CALLS_B)];
    let domains = [
        pd("caller", 10, NONE),
        pd("peer", 10, NONE),
        pd("server", 20, NONE),
    ];
    let mut kernel = TestSystem::new(&domains, &channels, &[]).unwrap();
    kernel.set_time_slice(1000);
    assert_eq!(kernel.start(0), Decision::Run(C));
    assert_eq!(
        kernel.handle_hvc_at(0, &[PD_REPLY_RECV.into(), REPLY_NONE], &mut out),
        Decision::Run(A)
    );
    assert_eq!(
        kernel.handle_hvc_at(300, &[PD_PPCALL.into(), 0, 0], &mut out),
        Decision::Run(C)
    );
    assert_eq!(kernel.ready_queue(10).collect::<Vec<_>>(), [B]);
    assert_eq!(
        kernel.handle_hvc_at(800, &[PD_REPLY_RECV.into(), REPLY_MESSAGE, 0], &mut out),
        Decision::Run(A)
    );
    assert_eq!(kernel.ready_queue(10).collect::<Vec<_>>(), [A, B]);
    assert_eq!(kernel.domain(A).unwrap().budget, 700);
}

#[test]
fn a_parent_blocked_calling_its_faulted_child_is_a_deadlock_not_a_success() {
    let mut out = String::new();
    // The parent calls its higher-priority child, whose handler faults: the fault goes to the
    // parent, which is blocked in the call.
    let channels = [channel(0, 0, 1, 0, CHANNEL_A_CALLS_B)];
    let domains = [
        pd("parent", 10, NONE),
        pd("child", 20, 0),
        pd("bystander", 5, NONE),
    ];
    let mut kernel = TestSystem::new(&domains, &channels, &[]).unwrap();
    assert_eq!(kernel.start(0), Decision::Run(B));
    assert_eq!(
        hvc(&mut kernel, &[PD_REPLY_RECV.into(), REPLY_NONE], &mut out),
        Decision::Run(A)
    );
    assert_eq!(
        hvc(&mut kernel, &[PD_PPCALL.into(), 0, 0], &mut out),
        Decision::Run(B)
    );
    // The bystander still runs: the deadlock only shows once nothing else can.
    assert_eq!(
        kernel.handle(stage2_fault(false), 0, &mut out),
        Decision::Run(C)
    );
    let decision = hvc(&mut kernel, &[PD_REPLY_RECV.into(), REPLY_NONE], &mut out);
    let Decision::Halt(halt) = decision else {
        panic!("{decision:?}")
    };
    assert_eq!(
        halt,
        Halt {
            status: 1,
            reason: HaltReason::Deadlock
        }
    );
    let mut lines = String::new();
    kernel.write_halt_line(&halt, &mut lines).unwrap();
    assert_eq!(
        lines,
        "FS|hypervisor|blocked pd=parent waits-for=child in=call\n\
         FS|hypervisor|blocked pd=child waits-for=parent in=fault\n\
         FS|hypervisor|halt status=1 reason=deadlock faults=1 notifications=0 calls=1 \
         preemptions=0 stopped=0\n"
    );
}

#[test]
fn smc_is_refused_and_skipped() {
    let mut out = String::new();
    let mut kernel = TestSystem::new(&[pd("p", 1, NONE)], &[], &[]).unwrap();
    kernel.start(0);
    kernel.registers_mut(A).unwrap().x[0] = 0x8400_0008;
    assert_eq!(
        kernel.handle(
            Exit::SecureMonitorCall(InstructionLength::Wide),
            0,
            &mut out
        ),
        Decision::Run(A)
    );
    let registers = regs(&mut kernel, A);
    assert_eq!(
        (registers.x[0], registers.pc),
        (NOT_SUPPORTED as u64, 0x20_0004)
    );
}

#[test]
fn unknown_calls_are_not_supported() {
    let mut out = String::new();
    let mut kernel = TestSystem::new(&[pd("p", 1, NONE)], &[], &[]).unwrap();
    kernel.start(0);
    assert_eq!(hvc(&mut kernel, &[0xC600_0003], &mut out), Decision::Run(A));
    assert_eq!(regs(&mut kernel, A).x[0], NOT_SUPPORTED as u64);
}

#[test]
fn debug_write_builds_prefixed_lines() {
    let mut out = String::new();
    let mut kernel = TestSystem::new(&[pd("hello", 1, NONE)], &[], &[]).unwrap();
    kernel.start(0);
    let word = u64::from_le_bytes(*b"hi\nFS|ev");
    hvc(&mut kernel, &[PD_DEBUG_WRITE.into(), 8, word], &mut out);
    assert_eq!(out, "FS|hello|hi\n");
    assert_eq!(
        hvc(&mut kernel, &[PD_DEBUG_WRITE.into(), 49], &mut out),
        Decision::Run(A)
    );
    assert_eq!(regs(&mut kernel, A).x[0], INVALID_PARAMETER as u64);
    kernel.flush_console(&mut out);
    assert_eq!(out, "FS|hello|hi\nFS|hello|FS|ev\n");
}

#[test]
fn system_off_names_the_caller() {
    let mut out = String::new();
    let mut kernel = TestSystem::new(&[pd("boss", 1, NONE)], &[], &[]).unwrap();
    kernel.start(0);
    let Decision::Halt(halt) = hvc(&mut kernel, &[PD_SYSTEM_OFF.into(), 300], &mut out) else {
        panic!()
    };
    assert_eq!(
        halt,
        Halt {
            status: 255,
            reason: HaltReason::SystemOff(A.domain)
        }
    );
    kernel.write_halt_line(&halt, &mut out).unwrap();
    assert!(
        out.starts_with("FS|hypervisor|halt status=255 reason=system-off by=boss "),
        "{out}"
    );
}

#[test]
fn inconsistent_boot_info_is_refused() {
    assert_eq!(
        TestSystem::new(&[], &[], &[]).unwrap_err(),
        BuildError::DomainCount(0)
    );
    assert_eq!(
        TestSystem::new(&[pd("a", 255, NONE)], &[], &[]).unwrap_err(),
        BuildError::Priority(0)
    );
    assert_eq!(
        TestSystem::new(&[pd("a", 1, 0)], &[], &[]).unwrap_err(),
        BuildError::Parent(0)
    );
    assert_eq!(
        TestSystem::new(&[pd("a", 1, 1), pd("b", 1, NONE)], &[], &[]).unwrap_err(),
        BuildError::Parent(0)
    );
    let mut vm = pd("vm", 1, NONE);
    vm.kind = DOMAIN_KIND_VM;
    assert_eq!(
        TestSystem::new(&[vm, pd("b", 1, 0)], &[], &[]).unwrap_err(),
        BuildError::Parent(1)
    );
    let mut odd = pd("odd", 1, NONE);
    odd.kind = 9;
    assert_eq!(
        TestSystem::new(&[odd], &[], &[]).unwrap_err(),
        BuildError::DomainKind(0)
    );
    assert!(matches!(
        TestSystem::new(&[pd("a", 1, NONE)], &[channel(0, 1, 5, 1, 0)], &[]).unwrap_err(),
        BuildError::Channel(_)
    ));
}

fn irq(domain: u32, intid: u32, channel_id: u32) -> IrqDesc {
    IrqDesc {
        domain,
        irq: intid,
        channel_id,
        trigger: IRQ_TRIGGER_LEVEL,
    }
}

#[test]
fn an_interrupt_wakes_its_pd_and_stays_masked_until_acknowledged() {
    let mut out = String::new();
    let mut kernel = TestSystem::new(
        &[pd("driver", 50, NONE), pd("other", 10, NONE)],
        &[],
        &[irq(0, 34, 5)],
    )
    .unwrap();
    assert_eq!(kernel.irqs()[0].intid, 34);
    assert_eq!(kernel.start(0), Decision::Run(A));
    assert_eq!(
        hvc(&mut kernel, &[PD_REPLY_RECV.into(), REPLY_NONE], &mut out),
        Decision::Run(B)
    );
    // Nothing runnable, but the driver's interrupt can still wake it: wait, do not halt.
    assert_eq!(
        hvc(&mut kernel, &[PD_REPLY_RECV.into(), REPLY_NONE], &mut out),
        Decision::WaitForInterrupt
    );
    assert_eq!(
        kernel.handle(Exit::Interrupt(34), 0, &mut out),
        Decision::Run(A)
    );
    let driver = regs(&mut kernel, A);
    assert_eq!((driver.x[1], driver.x[2]), (EVENT_NOTIFIED, 1 << 5));
    assert_eq!(kernel.take_acknowledged_irq(), None);
    // Acknowledging another channel is refused; its own channel unmasks INTID 34.
    assert_eq!(
        hvc(&mut kernel, &[PD_IRQ_ACK.into(), 4], &mut out),
        Decision::Run(A)
    );
    assert_eq!(regs(&mut kernel, A).x[0], INVALID_PARAMETER as u64);
    assert_eq!(
        hvc(&mut kernel, &[PD_IRQ_ACK.into(), 5], &mut out),
        Decision::Run(A)
    );
    assert_eq!(regs(&mut kernel, A).x[0], SUCCESS as u64);
    assert_eq!(kernel.take_acknowledged_irq(), Some(34));
    assert_eq!(kernel.take_acknowledged_irq(), None);
    // An interrupt nobody owns changes nothing.
    assert_eq!(
        kernel.handle(Exit::Interrupt(99), 0, &mut out),
        Decision::Run(A)
    );
    assert_eq!(kernel.counters().interrupts, 1);
    // Once the driver is stopped nothing can wake anyone: the system halts.
    let decision = kernel.handle(stage2_fault(false), 0, &mut out);
    let Decision::Halt(halt) = decision else {
        panic!("{decision:?}")
    };
    let mut line = String::new();
    kernel.write_halt_line(&halt, &mut line).unwrap();
    assert!(line.ends_with(" interrupts=1\n"), "{line}");
}

#[test]
fn interrupt_records_are_checked() {
    let domains = [pd("a", 1, NONE), pd("b", 1, NONE)];
    let bad =
        |irqs: &[IrqDesc]| TestSystem::new(&domains, &[channel(0, 1, 1, 1, 0)], irqs).unwrap_err();
    assert_eq!(bad(&[irq(2, 40, 3)]), BuildError::Irq(0));
    assert_eq!(bad(&[irq(0, 27, 3)]), BuildError::Irq(0));
    assert_eq!(bad(&[irq(0, 40, 62)]), BuildError::Irq(0));
    assert_eq!(bad(&[irq(0, 40, 1)]), BuildError::Irq(0));
    assert_eq!(bad(&[irq(0, 40, 3), irq(1, 40, 3)]), BuildError::Irq(1));
    assert_eq!(bad(&[irq(0, 40, 3), irq(0, 41, 3)]), BuildError::Irq(1));
    let mut edge = irq(0, 40, 3);
    edge.trigger = 7;
    assert_eq!(bad(&[edge]), BuildError::Irq(0));
}

#[test]
fn more_interrupts_than_the_kernel_holds_are_refused_as_too_many() {
    // 65 valid records: distinct SPIs, and channel ids 0..=40 on one PD and 0..=23 on the other.
    let irqs: Vec<IrqDesc> = (0..65u32)
        .map(|k| {
            let (domain, channel) = if k < 41 { (0, k) } else { (1, k - 41) };
            irq(domain, 32 + k, channel)
        })
        .collect();
    let domains = [pd("a", 1, NONE), pd("b", 1, NONE)];
    let error = TestSystem::new(&domains, &[], &irqs).unwrap_err();
    assert_eq!(error, BuildError::TooManyIrqs { count: 65 });
    assert_eq!(error.to_string(), "65 irqs (at most 64)");
    // Exactly the capacity is accepted.
    assert!(TestSystem::new(&domains, &[], &irqs[..64]).is_ok());
}

#[test]
fn names_that_break_the_console_rule_or_repeat_are_refused() {
    use frameshift_abi::domain_name::DomainNameError;
    assert_eq!(
        TestSystem::new(&[pd("ok", 1, NONE), pd("hypervisor", 1, NONE)], &[], &[]).unwrap_err(),
        BuildError::Name {
            index: 1,
            error: DomainNameError::Reserved
        }
    );
    assert_eq!(
        TestSystem::new(&[pd("a|b", 1, NONE)], &[], &[]).unwrap_err(),
        BuildError::Name {
            index: 0,
            error: DomainNameError::BadByte {
                byte: b'|',
                position: 1
            }
        }
    );
    let error = TestSystem::new(&[pd("twin", 1, NONE), pd("twin", 2, NONE)], &[], &[]).unwrap_err();
    assert_eq!(error, BuildError::DuplicateName { index: 1, other: 0 });
    assert_eq!(error.to_string(), "domain 1: name already used by domain 0");
    // `a?b` is a name of its own, printed as itself.
    let mut out = String::new();
    let mut kernel = TestSystem::new(&[pd("a?b", 1, NONE)], &[], &[]).unwrap();
    kernel.start(0);
    let word = u64::from_le_bytes(*b"hi\n\0\0\0\0\0");
    hvc(&mut kernel, &[PD_DEBUG_WRITE.into(), 3, word], &mut out);
    assert_eq!(out, "FS|a?b|hi\n");
}

#[test]
fn time_run_past_the_budget_comes_out_of_the_next_one() {
    let mut out = String::new();
    let domains = [pd("a", 10, NONE), pd("b", 10, NONE)];
    let mut kernel = TestSystem::new(&domains, &[], &[]).unwrap();
    kernel.set_time_slice(1000);
    assert_eq!(kernel.start(0), Decision::Run(A));
    // The timer comes 80 ticks late: A ran 1080 ticks on a 1000-tick budget.
    assert_eq!(
        kernel.handle(Exit::TimerTick, 1080, &mut out),
        Decision::Run(B)
    );
    assert_eq!(kernel.domain(A).unwrap().budget, 920);
    // B's timer is on time: B gets its full 1000 and owes nothing.
    assert_eq!(kernel.slice_end(), Some(2080));
    assert_eq!(
        kernel.handle(Exit::TimerTick, 2080, &mut out),
        Decision::Run(A)
    );
    assert_eq!(kernel.domain(B).unwrap().budget, 1000);
    // A's slice ends 920 ticks later: over the two rounds each ran exactly 2000 ticks' worth.
    assert_eq!(kernel.slice_end(), Some(3000));
    // A yields having overrun again by 30 (a late exit): the yield refills it less the 30.
    assert_eq!(
        kernel.handle(
            Exit::WaitForInterrupt(InstructionLength::Wide),
            3030,
            &mut out
        ),
        Decision::Run(B)
    );
    assert_eq!(kernel.domain(A).unwrap().budget, 970);
}
