//! The engine's unit tests, on the small system (the real engine and domains on the fake arch).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on an unexpected error"
)]

extern crate std;
use super::*;
use crate::addr::PAGES_PER_BLOCK;
use crate::descriptor::MemoryType;
use crate::small_system::*;
use std::string::String;
use std::vec::Vec;

fn quiet(system: &mut SmallSystem) -> Vec<crate::arch::fake::Invalidation> {
    let invalidations = system.arch.end_call();
    assert_eq!(system.arch.take_violations(), Vec::<String>::new());
    assert_eq!(system.audit(), Vec::<String>::new());
    invalidations
}

fn host_state(system: &SmallSystem, guest_ipa: Ipa) -> Option<PageState> {
    let host_ipa = window().host_ipa(guest_ipa).unwrap();
    system.page_state(HOST, host_ipa).unwrap()
}

#[test]
fn boot_maps_the_block_as_one_descriptor_and_audits_clean() {
    let mut system = SmallSystem::boot().unwrap();
    quiet(&mut system);
    let host = system.vspace(HOST).unwrap().table;
    assert_eq!(host.leaf_level(&system.arch, WINDOW_HOST_BASE), Some(2));
    assert_eq!(host.leaf_level(&system.arch, Ipa(0x8020_0000)), Some(3));
    assert_eq!(host_state(&system, FRAME_A_IPA), Some(PageState::Owned));
    assert_eq!(system.engine.frame_table().record_at(0).owner(), Some(HOST));
}

#[test]
fn donate_share_unshare_relinquish_history_mode() {
    let mut system = SmallSystem::boot().unwrap();
    let (mut engine, arch) = system.parts();
    arch.poke(SmallSystem::frame(512), 0xC0FFEE);
    engine
        .donate(arch, HOST, GUEST_HISTORY, FRAME_A_IPA, 1)
        .unwrap();
    let invalidations = quiet(&mut system);
    assert!(!invalidations.is_empty(), "the host's mapping was removed");
    assert_eq!(host_state(&system, FRAME_A_IPA), None);
    let (mut engine, arch) = system.parts();
    assert_eq!(
        engine.page_state(arch, GUEST_HISTORY, FRAME_A_IPA),
        Ok(Some(PageState::Owned))
    );
    engine.share(arch, GUEST_HISTORY, FRAME_A_IPA, 1).unwrap();
    quiet(&mut system);
    assert_eq!(
        host_state(&system, FRAME_A_IPA),
        Some(PageState::SharedBorrowed)
    );
    let (mut engine, arch) = system.parts();
    assert_eq!(
        engine.share(arch, GUEST_HISTORY, FRAME_A_IPA, 1),
        Err(Error::WrongState)
    );
    engine.unshare(arch, GUEST_HISTORY, FRAME_A_IPA, 1).unwrap();
    assert!(
        !quiet(&mut system).is_empty(),
        "unshare invalidates the host's translation"
    );
    assert_eq!(host_state(&system, FRAME_A_IPA), None);
    assert_eq!(
        system.arch.peek(SmallSystem::frame(512)),
        0xC0FFEE,
        "no copy, no change"
    );
    let (mut engine, arch) = system.parts();
    engine
        .relinquish(arch, GUEST_HISTORY, FRAME_A_IPA, 1)
        .unwrap();
    quiet(&mut system);
    assert!(system.arch.is_zero(SmallSystem::frame(512)));
    assert_eq!(host_state(&system, FRAME_A_IPA), Some(PageState::Owned));
}

#[test]
fn split_mode_uses_the_alias_for_shared_pages() {
    let mut system = SmallSystem::boot().unwrap();
    let (mut engine, arch) = system.parts();
    engine
        .donate(arch, HOST, GUEST_SPLIT, FRAME_B_IPA, 1)
        .unwrap();
    engine.share(arch, GUEST_SPLIT, FRAME_B_IPA, 1).unwrap();
    quiet(&mut system);
    let (mut engine, arch) = system.parts();
    assert_eq!(engine.page_state(arch, GUEST_SPLIT, FRAME_B_IPA), Ok(None));
    let alias = FRAME_B_IPA.shared_alias();
    assert_eq!(
        engine.page_state(arch, GUEST_SPLIT, alias),
        Ok(Some(PageState::SharedOwned))
    );
    // The guest may name the alias when unsharing.
    engine.unshare(arch, GUEST_SPLIT, alias, 1).unwrap();
    quiet(&mut system);
    let (engine, arch) = system.parts();
    assert_eq!(
        engine.page_state(arch, GUEST_SPLIT, FRAME_B_IPA),
        Ok(Some(PageState::Owned))
    );
    assert_eq!(engine.page_state(arch, GUEST_SPLIT, alias), Ok(None));
}

#[test]
fn whole_block_conversion_is_one_descriptor_change_and_inner_pages_split() {
    let mut system = SmallSystem::boot().unwrap();
    let (mut engine, arch) = system.parts();
    engine
        .donate(arch, HOST, GUEST_HISTORY, BLOCK_IPA, 512)
        .unwrap();
    let invalidations = quiet(&mut system);
    assert_eq!(
        invalidations.len(),
        1,
        "one block, one invalidation: {invalidations:?}"
    );
    let guest = system.vspace(GUEST_HISTORY).unwrap().table;
    assert_eq!(guest.leaf_level(&system.arch, BLOCK_IPA), Some(2));
    let (mut engine, arch) = system.parts();
    let second = Ipa(BLOCK_IPA.get() + PAGE_SIZE);
    engine.share(arch, GUEST_HISTORY, second, 1).unwrap();
    quiet(&mut system);
    assert_eq!(guest.leaf_level(&system.arch, BLOCK_IPA), Some(3), "split");
    let (mut engine, arch) = system.parts();
    engine.unshare(arch, GUEST_HISTORY, second, 1).unwrap();
    quiet(&mut system);
    assert_eq!(
        guest.leaf_level(&system.arch, BLOCK_IPA),
        Some(2),
        "coalesced"
    );
}

#[test]
fn refused_requests_change_nothing() {
    let mut system = SmallSystem::boot().unwrap();
    let (mut engine, arch) = system.parts();
    engine
        .donate(arch, HOST, GUEST_HISTORY, FRAME_A_IPA, 1)
        .unwrap();
    quiet(&mut system);
    let before = system.clone();
    let (mut engine, arch) = system.parts();
    // The range covers A (guest-owned) and B (host-owned): all or nothing.
    assert_eq!(
        engine.share(arch, GUEST_HISTORY, FRAME_A_IPA, 2),
        Err(Error::NotMapped)
    );
    assert_eq!(
        engine.donate(arch, HOST, GUEST_SPLIT, FRAME_A_IPA, 2),
        Err(Error::NotMapped)
    );
    assert_eq!(
        engine.donate(arch, HOST, GUEST_HISTORY, Ipa(0x4020_0800), 1),
        Err(Error::Misaligned)
    );
    assert_eq!(
        engine.lend(arch, HOST, GUEST_HISTORY, FRAME_B_IPA, 1, Rights::empty()),
        Err(Error::InvalidRights)
    );
    assert_eq!(
        engine.unshare(arch, GUEST_HISTORY, FRAME_A_IPA, 1),
        Err(Error::WrongState)
    );
    assert_eq!(
        engine.donate(arch, HOST, GUEST_HISTORY, Ipa(0x7000_0000), 1),
        Err(Error::IpaOutOfRange)
    );
    assert_eq!(
        engine.donate(arch, HOST, DomainId(9), FRAME_B_IPA, 1),
        Err(Error::NoSuchDomain)
    );
    assert!(system.arch.end_call().is_empty());
    assert_eq!(system.engine, before.engine);
}

#[test]
fn each_refusal_names_its_reason() {
    let mut system = SmallSystem::boot().unwrap();
    let (mut engine, arch) = system.parts();
    let second = Ipa(BLOCK_IPA.get() + PAGE_SIZE);
    engine
        .donate(arch, HOST, GUEST_HISTORY, FRAME_A_IPA, 1)
        .unwrap();
    engine
        .share_with_guest(arch, HOST, GUEST_SPLIT, FRAME_B_IPA, 1, Rights::READ)
        .unwrap();
    // The host no longer holds A: nothing to donate there.
    assert_eq!(
        engine.donate(arch, HOST, GUEST_SPLIT, FRAME_A_IPA, 1),
        Err(Error::NotMapped)
    );
    // The block's second page goes to guest 2; a second donate finds the host's slot empty.
    engine.donate(arch, HOST, GUEST_SPLIT, second, 1).unwrap();
    assert_eq!(
        engine.donate(arch, HOST, GUEST_SPLIT, second, 1),
        Err(Error::NotMapped)
    );
    // Sharing B with guest 2 twice.
    assert_eq!(
        engine.share_with_guest(arch, HOST, GUEST_SPLIT, FRAME_B_IPA, 1, Rights::READ),
        Err(Error::AlreadyBorrowed)
    );
    // Granting more than the owner has.
    assert_eq!(
        engine.share_with_guest(arch, HOST, GUEST_HISTORY, FRAME_B_IPA, 1, Rights::ALL),
        Err(Error::InvalidRights)
    );
    // The block's first page is shared with guest 1; lending it as well is refused (the
    // host no longer holds it exclusively).
    engine
        .share_with_guest(arch, HOST, GUEST_HISTORY, BLOCK_IPA, 1, Rights::READ)
        .unwrap();
    assert_eq!(
        engine.lend(arch, HOST, GUEST_HISTORY, BLOCK_IPA, 1, Rights::READ),
        Err(Error::WrongState)
    );
    // Nothing lent: reclaim finds no annotation.
    assert_eq!(
        engine.reclaim(arch, HOST, GUEST_HISTORY, FRAME_B_IPA, 1),
        Err(Error::WrongState)
    );
    assert_eq!(
        engine.reclaim(arch, HOST, GUEST_HISTORY, FRAME_A_IPA, 1),
        Err(Error::NotMapped)
    );
    // Unshare of a page the guest owns but never shared.
    assert_eq!(
        engine.unshare(arch, GUEST_HISTORY, FRAME_A_IPA, 1),
        Err(Error::WrongState)
    );
    // A guest cannot relinquish what it merely borrows from a share.
    assert_eq!(
        engine.relinquish(arch, GUEST_SPLIT, FRAME_B_IPA, 1),
        Err(Error::WrongState)
    );
    // Ranges: zero pages, more than a block, wrapping.
    assert_eq!(
        engine.share(arch, GUEST_HISTORY, FRAME_A_IPA, 0),
        Err(Error::InvalidRange)
    );
    assert_eq!(
        engine.share(arch, GUEST_HISTORY, FRAME_A_IPA, 513),
        Err(Error::InvalidRange)
    );
    assert_eq!(
        engine.share(arch, GUEST_HISTORY, Ipa(!0xFFF), 2),
        Err(Error::InvalidRange)
    );
    // Who may ask: the guest's host only.
    assert_eq!(
        engine.donate(arch, GUEST_SPLIT, GUEST_HISTORY, FRAME_B_IPA, 1),
        Err(Error::NotLinked)
    );
    assert_eq!(
        engine.share(arch, HOST, FRAME_A_IPA, 1),
        Err(Error::NotLinked)
    );
    quiet(&mut system);
}

#[test]
fn pinned_shared_frame_cannot_be_unshared() {
    let mut system = SmallSystem::boot().unwrap();
    let (mut engine, arch) = system.parts();
    engine
        .donate(arch, HOST, GUEST_HISTORY, FRAME_A_IPA, 1)
        .unwrap();
    engine.share(arch, GUEST_HISTORY, FRAME_A_IPA, 1).unwrap();
    engine.pin(SmallSystem::frame(512)).unwrap();
    assert_eq!(
        engine.unshare(arch, GUEST_HISTORY, FRAME_A_IPA, 1),
        Err(Error::Pinned)
    );
    engine.unpin(SmallSystem::frame(512)).unwrap();
    engine.unshare(arch, GUEST_HISTORY, FRAME_A_IPA, 1).unwrap();
    quiet(&mut system);
}

#[test]
fn lend_relinquish_reclaim_and_teardown() {
    let mut system = SmallSystem::boot().unwrap();
    let (mut engine, arch) = system.parts();
    arch.poke(SmallSystem::frame(513), 77);
    engine
        .lend(arch, HOST, GUEST_SPLIT, FRAME_B_IPA, 1, Rights::READ_WRITE)
        .unwrap();
    quiet(&mut system);
    assert_eq!(host_state(&system, FRAME_B_IPA), None);
    let (mut engine, arch) = system.parts();
    assert_eq!(
        engine.reclaim(arch, HOST, GUEST_SPLIT, FRAME_B_IPA, 1),
        Err(Error::AlreadyBorrowed)
    );
    engine
        .relinquish(arch, GUEST_SPLIT, FRAME_B_IPA, 1)
        .unwrap();
    engine
        .reclaim(arch, HOST, GUEST_SPLIT, FRAME_B_IPA, 1)
        .unwrap();
    quiet(&mut system);
    assert_eq!(
        system.arch.peek(SmallSystem::frame(513)),
        77,
        "lent frames are not zeroed"
    );
    // Teardown: the guest's own frames are zeroed, host-shared ones kept.
    let (mut engine, arch) = system.parts();
    arch.poke(SmallSystem::frame(0), 1);
    engine
        .donate(arch, HOST, GUEST_SPLIT, BLOCK_IPA, 512)
        .unwrap();
    engine
        .share(arch, GUEST_SPLIT, Ipa(BLOCK_IPA.get() + PAGE_SIZE), 1)
        .unwrap();
    engine
        .share_with_guest(arch, HOST, GUEST_SPLIT, FRAME_B_IPA, 1, Rights::READ)
        .unwrap();
    engine.teardown(arch, GUEST_SPLIT).unwrap();
    quiet(&mut system);
    assert!(system.arch.is_zero(SmallSystem::frame(0)));
    assert!(system.arch.is_zero(SmallSystem::frame(1)));
    assert_eq!(system.arch.peek(SmallSystem::frame(513)), 77);
    assert_eq!(host_state(&system, BLOCK_IPA), Some(PageState::Owned));
    assert_eq!(host_state(&system, FRAME_B_IPA), Some(PageState::Owned));
    let (mut engine, arch) = system.parts();
    assert_eq!(
        engine.share(arch, GUEST_SPLIT, BLOCK_IPA, 1),
        Err(Error::DomainDead)
    );
    let host = engine.domain(HOST).unwrap().table;
    assert_eq!(
        host.leaf_level(arch, WINDOW_HOST_BASE),
        Some(2),
        "the block coalesced back"
    );
}

/// A system of `domains` PDs and no guest over `frames` frames from [`FRAME_BASE`].
fn plain_system(frames: usize, side_table: usize, pool_pages: usize, domains: u8) -> SmallSystem {
    let layout = Layout {
        frames,
        side_table,
        pool_pages,
        domains: (0..domains).map(DomainId).collect(),
        guests: Vec::new(),
        boot: Vec::new(),
    };
    SmallSystem::boot_layout(&layout).unwrap()
}

#[test]
fn microkit_region_shared_by_many_pds_fills_the_side_table_with_an_error() {
    // A Microkit region mapped into several PDs at boot: the first mapper owns the frames,
    // the others borrow them; the side table here has room for 3 extra borrowers.
    let mut system = plain_system(4, 3, 256, 8);
    let region = |domain| BootMapping {
        domain: DomainId(domain),
        ipa: Ipa(0x1000_0000),
        pa: FRAME_BASE,
        pages: 2,
        rights: Rights::READ,
        memory: MemoryType::Normal,
        sharing: BootSharing::Shareable,
    };
    // Owner + 1 inline borrower + 3 side-table records per frame: 2 frames need 6 > 3.
    let (mut engine, arch) = system.parts();
    engine.map_at_boot(arch, &region(0)).unwrap();
    engine.map_at_boot(arch, &region(1)).unwrap();
    engine.map_at_boot(arch, &region(2)).unwrap();
    let before = system.clone();
    let (mut engine, arch) = system.parts();
    assert_eq!(
        engine.map_at_boot(arch, &region(3)),
        Err(Error::BorrowerTableFull)
    );
    assert_eq!(system.engine, before.engine, "refused, nothing changed");
    assert_eq!(system.engine.frame_table().borrower_count(0), 2);
    assert_eq!(
        system.page_state(DomainId(2), Ipa(0x1000_0000)),
        Ok(Some(PageState::SharedBorrowed))
    );
    assert_eq!(
        system.page_state(DomainId(0), Ipa(0x1000_0000)),
        Ok(Some(PageState::SharedOwned))
    );
}

#[test]
fn exhausted_table_pool_refuses_and_changes_nothing() {
    let mut system = plain_system(1024, 4, 4, 1);
    let mapping = |ipa: u64, pa: u64| BootMapping {
        domain: DomainId(0),
        ipa: Ipa(ipa),
        pa: PhysAddr(pa),
        pages: 1,
        rights: Rights::READ_WRITE,
        memory: MemoryType::Normal,
        sharing: BootSharing::Private,
    };
    // Root (2 pages) + level-2 + level-3 table: the pool is now empty.
    let (mut engine, arch) = system.parts();
    engine
        .map_at_boot(arch, &mapping(0x1000, 0x4000_0000))
        .unwrap();
    assert_eq!(engine.pool().available(), 0);
    let before = system.clone();
    let (mut engine, arch) = system.parts();
    assert_eq!(
        engine.map_at_boot(arch, &mapping(0x40_0000_0000 - 0x1000, 0x4000_1000)),
        Err(Error::OutOfTableMemory)
    );
    assert_eq!(system.engine, before.engine);
    assert!(system.arch.same_memory(&before.arch));
    // Same table, no new table needed: still fine.
    let (mut engine, arch) = system.parts();
    engine
        .map_at_boot(arch, &mapping(0x2000, 0x4000_2000))
        .unwrap();
}

#[test]
fn boot_mapping_refuses_hypervisor_memory_and_double_mapping() {
    let mut system = SmallSystem::boot().unwrap();
    let mut mapping = BootMapping {
        domain: GUEST_HISTORY,
        ipa: Ipa(0x1000_0000),
        pa: HYPERVISOR.0,
        pages: 1,
        rights: Rights::READ,
        memory: MemoryType::Normal,
        sharing: BootSharing::Shareable,
    };
    let (mut engine, arch) = system.parts();
    assert_eq!(
        engine.map_at_boot(arch, &mapping),
        Err(Error::HypervisorMemory)
    );
    mapping.pa = POOL_BASE;
    assert_eq!(
        engine.map_at_boot(arch, &mapping),
        Err(Error::HypervisorMemory)
    );
    mapping.pa = SmallSystem::frame(3);
    assert_eq!(
        engine.map_at_boot(arch, &mapping),
        Err(Error::WrongState),
        "host owns it privately"
    );
    mapping.pa = PhysAddr(0x0900_0000);
    mapping.memory = MemoryType::Device;
    engine.map_at_boot(arch, &mapping).unwrap();
    assert_eq!(
        engine.page_state(arch, GUEST_HISTORY, mapping.ipa),
        Ok(Some(PageState::Passthrough))
    );
    assert_eq!(
        engine.map_at_boot(arch, &mapping),
        Err(Error::AlreadyMapped)
    );
    quiet(&mut system);
}

/// The default system with guest 1 owning frame A from boot with `rights` (a protected VM's
/// boot-time memory keeps the rights its mapping has).
fn guest_owns_frame_a(rights: Rights) -> SmallSystem {
    let mut layout = default_layout();
    layout.boot = vec![
        boot_mapping(
            HOST,
            WINDOW_HOST_BASE,
            FRAME_BASE,
            512,
            Rights::READ_WRITE,
            BootSharing::Private,
        ),
        boot_mapping(
            GUEST_HISTORY,
            FRAME_A_IPA,
            SmallSystem::frame(512),
            1,
            rights,
            BootSharing::Private,
        ),
    ];
    SmallSystem::boot_layout(&layout).unwrap()
}

#[test]
fn a_share_gives_the_host_no_more_than_the_guest_has() {
    // Read-only and read-execute pages reach the host read-only: the host never gets to write
    // a page its guest could only read, nor to execute guest memory.
    for (guest, host) in [
        (Rights::READ, Rights::READ),
        (Rights::READ | Rights::EXECUTE, Rights::READ),
        (Rights::ALL, Rights::READ_WRITE),
    ] {
        let mut system = guest_owns_frame_a(guest);
        let (mut engine, arch) = system.parts();
        engine.share(arch, GUEST_HISTORY, FRAME_A_IPA, 1).unwrap();
        quiet(&mut system);
        let host_ipa = window().host_ipa(FRAME_A_IPA).unwrap();
        let leaf = system
            .vspace(HOST)
            .unwrap()
            .table
            .lookup(&system.arch, host_ipa)
            .unwrap();
        assert_eq!((leaf.rights, leaf.state), (host, PageState::SharedBorrowed));
        assert_eq!(
            system.engine.frame_table().borrower_rights(512, HOST),
            Some(host)
        );
    }
    // An execute-only page has nothing the host may use: refused, nothing changed.
    let mut system = guest_owns_frame_a(Rights::EXECUTE);
    let before = system.clone();
    let (mut engine, arch) = system.parts();
    assert_eq!(
        engine.share(arch, GUEST_HISTORY, FRAME_A_IPA, 1),
        Err(Error::InvalidRights)
    );
    assert_eq!(system.engine, before.engine);
    assert!(system.arch.end_call().is_empty());
}

#[test]
fn a_plan_for_512_pages_stays_small_on_the_el2_stack() {
    // One run per page at worst, each 20 bytes: 10 KiB, against the EL2 stack's 128 KiB
    // (kernel.ld). A uniform range is one run.
    assert!(
        size_of::<Plan>() <= 10 * 1024 + 128,
        "{}",
        size_of::<Plan>()
    );
    let system = SmallSystem::boot().unwrap();
    let whole_block = Request::new(Operation::Donate, HOST, GUEST_HISTORY, BLOCK_IPA, 512);
    let plan = system
        .engine
        .prepare(&system.arch, &system.domains, whole_block)
        .unwrap();
    assert_eq!((plan.runs(), plan.pages(), plan.is_block()), (1, 512, true));
    // The guest has no table at all yet: a level-2 table for its block, nothing else.
    assert_eq!(plan.table_pages(), 1);
}

#[test]
#[should_panic(expected = "reason=commit-invariant")]
fn a_plan_committed_on_another_state_halts_the_hypervisor() {
    // The commit trusts its plan; one made before another change would apply stale decisions,
    // so it halts instead (the fake arch panics with the halt line).
    let mut system = SmallSystem::boot().unwrap();
    let donate = Request::new(Operation::Donate, HOST, GUEST_HISTORY, FRAME_A_IPA, 1);
    let plan = system
        .engine
        .prepare(&system.arch, &system.domains, donate)
        .unwrap();
    system.convert(donate).unwrap();
    system.engine.commit(&mut system.arch, plan);
}

/// A value no frame record holds (the owner field says domain 62, bit 45 is unused).
const SCRIBBLE: u64 = 0x0000_2000_0000_003F;

#[test]
fn whole_block_fast_path_writes_one_record_and_agrees_with_the_slow_path() {
    // Whole-block requests of every kind, in both modes, on the small system (block C is
    // folded from boot: the host maps it whole) and on a copy unfolded before every step,
    // which takes the slow path. Both give the same answer and the same engine, tables, frame
    // contents and invalidations; and where the plan is one block and the group was folded,
    // the fast path wrote the group's first record alone (the other 511 keep a scribble).
    use crate::ownership::Operation::*;
    let split_block = BLOCK_IPA.shared_alias();
    let steps: [(Operation, DomainId, Ipa, Rights, bool); 16] = [
        (Donate, GUEST_HISTORY, BLOCK_IPA, Rights::empty(), true),
        (Share, GUEST_HISTORY, BLOCK_IPA, Rights::empty(), true),
        (Share, GUEST_HISTORY, BLOCK_IPA, Rights::empty(), false),
        (Unshare, GUEST_HISTORY, BLOCK_IPA, Rights::empty(), true),
        (Relinquish, GUEST_HISTORY, BLOCK_IPA, Rights::empty(), true),
        (ShareWithGuest, GUEST_HISTORY, BLOCK_IPA, Rights::READ, true),
        (Donate, GUEST_SPLIT, BLOCK_IPA, Rights::empty(), false),
        (
            UnshareFromGuest,
            GUEST_HISTORY,
            BLOCK_IPA,
            Rights::empty(),
            true,
        ),
        (Donate, GUEST_SPLIT, BLOCK_IPA, Rights::empty(), true),
        (Share, GUEST_SPLIT, split_block, Rights::empty(), true),
        (Unshare, GUEST_SPLIT, split_block, Rights::empty(), true),
        (Relinquish, GUEST_SPLIT, BLOCK_IPA, Rights::empty(), true),
        (Lend, GUEST_SPLIT, BLOCK_IPA, Rights::READ_WRITE, true),
        (Relinquish, GUEST_SPLIT, BLOCK_IPA, Rights::empty(), true),
        (Reclaim, GUEST_SPLIT, BLOCK_IPA, Rights::empty(), true),
        (Donate, GUEST_HISTORY, BLOCK_IPA, Rights::empty(), true),
    ];
    let mut fast = SmallSystem::boot().unwrap();
    quiet(&mut fast);
    let mut fast_steps = 0;
    for (number, (operation, guest, ipa, rights, accepted)) in steps.into_iter().enumerate() {
        let request = Request {
            rights,
            ..Request::new(operation, HOST, guest, ipa, PAGES_PER_BLOCK)
        };
        let mut slow = fast.clone();
        slow.engine.unfold_frame_groups();
        let folded = fast.engine.frame_table().folded_record(0).is_some();
        let block = fast
            .engine
            .prepare(&fast.arch, &fast.domains, request)
            .is_ok_and(|plan| plan.is_block());
        fast.engine
            .frame_table_mut()
            .scribble_on_folded(0, SCRIBBLE);
        let answer = fast.convert(request);
        assert_eq!(answer.is_ok(), accepted, "step {number}: {answer:?}");
        assert_eq!(slow.convert(request), answer, "step {number}");
        assert!(fast.engine == slow.engine, "step {number}: engines differ");
        assert!(fast.arch.same_memory(&slow.arch), "step {number}");
        assert_eq!(fast.arch.take_frame_writes(), slow.arch.take_frame_writes());
        assert_eq!(quiet(&mut fast), quiet(&mut slow), "step {number}");
        if folded && block && accepted {
            assert!(
                fast.engine.frame_table().scribbled(0, SCRIBBLE),
                "step {number}: the fast path wrote the group's other records"
            );
            fast_steps += 1;
        }
    }
    // Every accepted step but three: lend, and the relinquish of what was lent, are no block
    // plans (the owner keeps one lent-away annotation per page), and the reclaim after them
    // finds the group unfolded by their per-page commits (it folds it again, for the last).
    assert_eq!(fast_steps, 11);
}

#[test]
fn unsharing_inside_a_block_flushes_a_vmid_only_when_a_table_changes_shape() {
    use crate::arch::fake::Invalidation;
    let vmid_flushes = |invalidations: &[Invalidation]| -> Vec<Vmid> {
        invalidations
            .iter()
            .filter_map(|invalidation| match *invalidation {
                Invalidation::Vmid(vmid) => Some(vmid),
                Invalidation::Ipa(..) => None,
            })
            .collect()
    };
    let guest_vmid = Vmid(u16::from(GUEST_HISTORY.0) + 1);
    let host_vmid = Vmid(u16::from(HOST.0) + 1);
    let mut system = SmallSystem::boot().unwrap();
    let (mut engine, arch) = system.parts();
    engine
        .donate(arch, HOST, GUEST_HISTORY, BLOCK_IPA, PAGES_PER_BLOCK)
        .unwrap();
    quiet(&mut system);
    let page = |n: u64| Ipa(BLOCK_IPA.get() + n * PAGE_SIZE);
    // Sharing pages 7 and 8 splits the guest's block (a block replaced by a table: invalidated
    // by IPA) and gives the host a table of its own: no VMID-wide flush.
    let (mut engine, arch) = system.parts();
    engine.share(arch, GUEST_HISTORY, page(7), 2).unwrap();
    assert_eq!(vmid_flushes(&quiet(&mut system)), []);
    // Unsharing page 7 leaves both tables as they were (page 8 still shared): the host's page
    // goes with one IPA invalidation, no VMID-wide flush.
    let (mut engine, arch) = system.parts();
    engine.unshare(arch, GUEST_HISTORY, page(7), 1).unwrap();
    let invalidations = quiet(&mut system);
    assert_eq!(vmid_flushes(&invalidations), []);
    let host_page = window().host_ipa(page(7)).unwrap();
    assert!(invalidations.contains(&Invalidation::Ipa(host_vmid, host_page)));
    // Unsharing page 8 changes both shapes: the guest's table is coalesced back into a block
    // and the host's emptied table is freed; each drops a table descriptor, which walk caches
    // may hold for the whole 2 MiB: one VMID-wide flush each.
    let (mut engine, arch) = system.parts();
    engine.unshare(arch, GUEST_HISTORY, page(8), 1).unwrap();
    let mut flushed = vmid_flushes(&quiet(&mut system));
    flushed.sort_unstable();
    assert_eq!(flushed, [host_vmid, guest_vmid]);
    let guest = system.vspace(GUEST_HISTORY).unwrap().table;
    assert_eq!(guest.leaf_level(&system.arch, page(8)), Some(2));
}
