//! Host tests of the auditor's record (dump.rs) on the fake arch: the conversion log, the audit
//! after every accepted conversion and the I8 check after every refused one (what the feature
//! `audit-every-conversion` turns on), and the dump's lines.

extern crate std;

use std::string::String;
use std::vec::Vec;

use frameshift_abi::boot_info::{
    DomainDesc, MappingDesc, DOMAIN_FLAG_PROTECTED, DOMAIN_KIND_PD, DOMAIN_KIND_VM,
    MAPPING_KIND_REGION, MAPPING_KIND_WINDOW, MAPPING_STATE_NO_PAGE, MAPPING_STATE_OWNED, NONE,
    RIGHT_EXECUTE, RIGHT_READ, RIGHT_WRITE,
};
use frameshift_abi::guest_call as guest;
use frameshift_abi::pd_call::{AUDIT_DUMP, PD_AUDIT, PD_REPLY_RECV, PD_VCPU_RESTART, REPLY_NONE};

use super::test_system::{domain_desc, TestSystem};
use crate::addr::{Ipa, PAGE_SIZE};
use crate::call::PageRange;
use crate::domain::{ContextId, DomainId};
use crate::engine::Request;
use crate::error::Error;
use crate::hypervisor::{Decision, Exit, Halt, HaltReason};
use crate::ownership::Operation;

const RAM: u64 = 0x4000_0000;
const WINDOW: u64 = 0x2000_0000;
const VMM: ContextId = ContextId::pd(DomainId(0));
const VM: DomainId = DomainId(1);
const VCPU: ContextId = ContextId {
    domain: VM,
    index: 0,
};
const VCPU_ID: u64 = 3;

fn region(domain: u32, ipa: u64, rights: u8, kind: u8, state: u8) -> MappingDesc {
    MappingDesc {
        ipa,
        pa: 0x4200_0000,
        size: 8 * PAGE_SIZE,
        domain,
        region: 0,
        rights,
        cached: 1,
        kind,
        state,
        page_shift: 12,
    }
}

/// A VMM and its protected VM (8 private pages, the VMM's window onto them), the guest running,
/// the audit after every conversion on.
fn running() -> (TestSystem, String) {
    let vmm = DomainDesc {
        mapping_count: 1,
        ..domain_desc("vmm", DOMAIN_KIND_PD, 100, NONE, NONE)
    };
    let vm = DomainDesc {
        flags: DOMAIN_FLAG_PROTECTED,
        vcpu_ids: 1 << VCPU_ID,
        first_mapping: 1,
        mapping_count: 1,
        ..domain_desc("guest", DOMAIN_KIND_VM, 50, 0, VCPU_ID as u32)
    };
    let mappings = [
        region(
            0,
            WINDOW,
            RIGHT_READ | RIGHT_WRITE,
            MAPPING_KIND_WINDOW,
            MAPPING_STATE_NO_PAGE,
        ),
        region(
            1,
            RAM,
            RIGHT_READ | RIGHT_WRITE | RIGHT_EXECUTE,
            MAPPING_KIND_REGION,
            MAPPING_STATE_OWNED,
        ),
    ];
    let mut system = TestSystem::with_mappings(&[vmm, vm], &mappings, &[], &[]).unwrap();
    system.audit_conversions = true;
    let mut out = String::new();
    assert_eq!(system.start(0), Decision::Run(VMM));
    assert_eq!(
        call(
            &mut system,
            &[PD_VCPU_RESTART.into(), VCPU_ID, RAM],
            &mut out
        ),
        Decision::Run(VMM)
    );
    assert_eq!(
        call(&mut system, &[PD_REPLY_RECV.into(), REPLY_NONE], &mut out),
        Decision::Run(VCPU)
    );
    (system, out)
}

fn call(system: &mut TestSystem, args: &[u64], out: &mut String) -> Decision {
    let current = system.current().unwrap();
    let registers = system.registers_mut(current).unwrap();
    registers.x[..args.len()].copy_from_slice(args);
    registers.pc += 4;
    system.handle(Exit::Hypercall, 0, out)
}

fn x0(system: &TestSystem, context: ContextId) -> i64 {
    system.context(context).unwrap().registers.x[0] as i64
}

#[test]
fn accepted_conversions_are_audited_and_refused_ones_are_not() {
    let (mut system, mut out) = running();
    let audits = system.audits();
    let share = u64::from(guest::MEM_SHARE);
    // Accepted: one full audit each.
    assert_eq!(
        call(&mut system, &[share, RAM, 1], &mut out),
        Decision::Run(VCPU)
    );
    assert_eq!(x0(&system, VCPU), 0);
    assert_eq!(system.audits(), audits + 1);
    // Refused (already shared; outside RAM): no full audit, but logged, and no violation.
    for ipa in [RAM, 0x1000_0000] {
        assert_eq!(
            call(&mut system, &[share, ipa, 1], &mut out),
            Decision::Run(VCPU)
        );
        assert!(x0(&system, VCPU) < 0);
    }
    assert_eq!(system.audits(), audits + 1);
    let log: Vec<(u64, Operation, i64)> = system
        .conversions()
        .records()
        .map(|record| (record.seq, record.operation, record.code))
        .collect();
    assert_eq!(log.len(), 3);
    assert_eq!((log[0].0, log[0].1, log[0].2), (1, Operation::Share, 0));
    assert!(log[1].2 < 0 && log[2].2 < 0);
    assert!(!out.contains("audit violation"), "{out}");
}

#[test]
fn a_refused_request_that_changed_what_it_names_halts_with_an_i8_violation() {
    let (mut system, mut out) = running();
    let range = PageRange {
        ipa: Ipa(RAM + PAGE_SIZE),
        pages: 1,
    };
    let attempt = {
        let (hypervisor, arch) = system.parts();
        hypervisor.attempt(arch, VM, VM, Operation::Share, range)
    };
    // The engine changes the page behind the kernel's back, and the request says "refused".
    {
        let (hypervisor, arch) = system.parts();
        let domains = &hypervisor.domains;
        let request = Request::new(Operation::Share, DomainId(0), VM, range.ipa, 1);
        hypervisor.engine.convert(arch, domains, request).unwrap();
        hypervisor.record_conversion(arch, attempt, Err(Error::WrongState));
    }
    let decision = {
        let (hypervisor, arch) = system.parts();
        hypervisor.audit_after_conversion(arch, &mut out)
    };
    assert_eq!(
        decision,
        Some(Decision::Halt(Halt {
            status: 3,
            reason: HaltReason::AuditViolation
        }))
    );
    assert!(
        out.contains("FS|hypervisor|audit violation I8 domain1 ipa 0x40001000 pages 1: a refused share changed what it names"),
        "{out}"
    );
    // A refusal that changed nothing is not reported.
    let attempt = {
        let (hypervisor, arch) = system.parts();
        hypervisor.attempt(arch, VM, VM, Operation::Share, range)
    };
    let (hypervisor, arch) = system.parts();
    hypervisor.record_conversion(arch, attempt, Err(Error::WrongState));
    assert_eq!(hypervisor.audit_after_conversion(arch, &mut out), None);
}

#[test]
fn a_violation_after_an_accepted_conversion_halts_the_run() {
    let (mut system, mut out) = running();
    // The guest's descriptor of page 2 disappears behind the frame table's back (an I3
    // violation: a holder record without a descriptor), then the guest makes a legal call
    // that converts memory.
    {
        let (hypervisor, arch) = system.parts();
        let table = &hypervisor.domains[VM].vspace.table;
        let slot = table.translate_descriptor(arch, Ipa(RAM + 2 * PAGE_SIZE));
        arch.poke(slot, 0);
    }
    let share = u64::from(guest::MEM_SHARE);
    let decision = call(&mut system, &[share, RAM, 1], &mut out);
    assert_eq!(
        decision,
        Decision::Halt(Halt {
            status: 3,
            reason: HaltReason::AuditViolation
        })
    );
    assert!(out.contains("FS|hypervisor|audit violation I3"), "{out}");
}

#[test]
fn the_dump_lists_domains_frames_mappings_and_the_log() {
    let (mut system, mut out) = running();
    let share = u64::from(guest::MEM_SHARE);
    assert_eq!(
        call(&mut system, &[share, RAM + PAGE_SIZE, 1], &mut out),
        Decision::Run(VCPU)
    );
    // The guest's timer hands the CPU to its VMM, which asks for the dump.
    assert_eq!(
        system.handle(Exit::VirtualTimer, 0, &mut out),
        Decision::Run(VMM)
    );
    out.clear();
    assert_eq!(
        call(&mut system, &[PD_AUDIT.into(), AUDIT_DUMP], &mut out),
        Decision::Run(VMM)
    );
    assert_eq!(x0(&system, VMM), 0);
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("FS|hypervisor|dump begin at=call "),
        "{out}"
    );
    assert!(
        lines[0].contains(" base=0x42000000 ") && lines[0].contains(" conversions=1 logged=1"),
        "{out}"
    );
    for expected in [
        "FS|hypervisor|dump domain id=0 name=vmm kind=pd protected=0",
        "FS|hypervisor|dump domain id=1 name=guest kind=vm protected=1",
        "FS|hypervisor|dump frames pa=0x42000000 count=1 state=owned owner=1 rights=rwx borrowers=-",
        "FS|hypervisor|dump frames pa=0x42001000 count=1 state=shared owner=1 rights=rwx borrowers=0:rw",
        "FS|hypervisor|dump frames pa=0x42002000 count=6 state=owned owner=1 rights=rwx borrowers=-",
        "FS|hypervisor|dump map domain=0 ipa=0x20001000 pa=0x42001000 pages=1 state=shared-borrowed rights=rw memory=normal",
        "FS|hypervisor|dump map domain=1 ipa=0x40000000 pa=0x42000000 pages=1 state=owned rights=rwx memory=normal",
        "FS|hypervisor|dump map domain=1 ipa=0x40001000 pa=0x42001000 pages=1 state=shared-owned rights=rwx memory=normal",
        "FS|hypervisor|dump map domain=1 ipa=0x40002000 pa=0x42002000 pages=6 state=owned rights=rwx memory=normal",
        "FS|hypervisor|dump conversion seq=1 time=0 by=1 vm=1 op=share ipa=0x40001000 pages=1 pa=0x42001000 code=0",
    ] {
        assert!(lines.contains(&expected), "missing {expected}:\n{out}");
    }
    let end = lines
        .iter()
        .position(|line| line.starts_with("FS|hypervisor|dump end"))
        .unwrap();
    assert_eq!(
        lines[end],
        std::format!("FS|hypervisor|dump end lines={}", end - 1)
    );
    // The halt writes it again.
    out.clear();
    let decision = call(
        &mut system,
        &[frameshift_abi::pd_call::PD_SYSTEM_OFF.into(), 0],
        &mut out,
    );
    assert!(matches!(decision, Decision::Halt(_)));
    assert!(
        out.starts_with("FS|hypervisor|dump begin at=halt "),
        "{out}"
    );
}
