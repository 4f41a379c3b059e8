//! The model checker's scenarios: small system layouts and request alphabets.

extern crate std;

use std::vec;
use std::vec::Vec;

use super::Step;
use frameshift_core::addr::{Ipa, PhysAddr, PAGES_PER_BLOCK, PAGE_SIZE};
use frameshift_core::descriptor::Rights;
use frameshift_core::domain::{ConversionMode, DomainId, Window};
use frameshift_core::engine::{BootSharing, Request, MAX_RANGE_PAGES};
use frameshift_core::ownership::Operation;
use frameshift_core::small_system::{
    boot_mapping, default_layout, link, Layout, System, BLOCK_IPA, FRAME_A_IPA, FRAME_BASE,
    FRAME_B_IPA, GUEST_HISTORY, GUEST_SPLIT, HOST, WINDOW_HOST_BASE,
};

/// Frames of the tiny system.
pub const TINY_FRAMES: usize = 6;
/// Side-table records of the tiny system.
pub const TINY_BORROWERS: usize = 2;
/// The tiny system: six frames, two side-table records, so capacity runs out (the small system,
/// [`frameshift_core::small_system::SmallSystem`], has 514 frames, a 2 MiB block and two lone
/// frames, and 8 side-table records).
pub type TinySystem = System;
/// A protection domain that is nobody's guest and holds borrows from boot.
pub const THIRD: DomainId = DomainId(3);
/// Where [`THIRD`] maps the frames it borrows.
pub const THIRD_IPA: Ipa = Ipa(0x1000_0000);
/// A layout and a request alphabet, explored from boot.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// Its name in the report.
    pub name: &'static str,
    /// What the system boots from.
    pub layout: Layout,
    /// The alphabet: every step is tried in every state.
    pub steps: Vec<Step>,
    /// Guest IPAs whose translations (in every guest, at the alias too, and in the host's
    /// window) are compared before and after every request (I6).
    pub probes: Vec<Ipa>,
}

fn convert(operation: Operation, guest: DomainId, ipa: Ipa, pages: u64, rights: Rights) -> Step {
    Step::Convert(Request {
        operation,
        host: HOST,
        guest,
        ipa,
        pages,
        rights,
    })
}

const EVERY: [Operation; 8] = Operation::REQUESTS;
const GUEST_CYCLE: [Operation; 4] = [
    Operation::Donate,
    Operation::Share,
    Operation::Unshare,
    Operation::Relinquish,
];

/// Every operation in `operations` by `guest` on `pages` pages from `ipa`, granting read-write.
fn each(guest: DomainId, ipa: Ipa, pages: u64, operations: &[Operation]) -> Vec<Step> {
    operations
        .iter()
        .map(|&operation| convert(operation, guest, ipa, pages, Rights::READ_WRITE))
        .collect()
}

fn teardowns() -> Vec<Step> {
    vec![Step::Teardown(GUEST_HISTORY), Step::Teardown(GUEST_SPLIT)]
}

/// Guest IPA of tiny frame `index`.
pub fn tiny_ipa(index: u64) -> Ipa {
    Ipa(BLOCK_IPA.get() + index * PAGE_SIZE)
}

/// Tiny frame `index`.
pub fn tiny_frame(index: u64) -> PhysAddr {
    PhysAddr(FRAME_BASE.get() + index * PAGE_SIZE)
}

/// The tiny layout (one window of six pages onto frames 0-5 for both guests). Frames 0-1: the
/// host's, read-write; frame 2: the host's with execute rights too. Without `third`, frames
/// 3-4 are the host's and frame 5 is nobody's. With `third`, frame 3 is the host's and shared
/// at boot with [`THIRD`]; frame 4 is the history-mode guest's, shared at boot with the host
/// and with [`THIRD`] (a borrow outside the guest and its host); and frame 5 is the split-mode
/// guest's, mapped at frame 0's guest IPA (so frame 0 cannot go to that guest, and frame 5
/// can reach the host's window only at frame 0's place).
pub fn tiny_layout(pool_pages: usize, third: bool) -> Layout {
    let window = Window {
        guest_base: BLOCK_IPA,
        host_base: WINDOW_HOST_BASE,
        size: TINY_FRAMES as u64 * PAGE_SIZE,
    };
    let host_ipa = |index: u64| Ipa(WINDOW_HOST_BASE.get() + index * PAGE_SIZE);
    let rw = Rights::READ_WRITE;
    let mut boot = vec![
        boot_mapping(
            HOST,
            host_ipa(0),
            tiny_frame(0),
            2,
            rw,
            BootSharing::Private,
        ),
        boot_mapping(
            HOST,
            host_ipa(2),
            tiny_frame(2),
            1,
            Rights::ALL,
            BootSharing::Private,
        ),
    ];
    let mut domains = vec![HOST, GUEST_HISTORY, GUEST_SPLIT];
    if third {
        domains.push(THIRD);
        let read = Rights::READ;
        let shared = BootSharing::Shareable;
        boot.extend([
            boot_mapping(HOST, host_ipa(3), tiny_frame(3), 1, rw, shared),
            boot_mapping(THIRD, THIRD_IPA, tiny_frame(3), 1, read, shared),
            boot_mapping(GUEST_HISTORY, tiny_ipa(4), tiny_frame(4), 1, rw, shared),
            boot_mapping(HOST, host_ipa(4), tiny_frame(4), 1, rw, shared),
            boot_mapping(
                THIRD,
                Ipa(THIRD_IPA.get() + PAGE_SIZE),
                tiny_frame(4),
                1,
                read,
                shared,
            ),
            boot_mapping(
                GUEST_SPLIT,
                tiny_ipa(0),
                tiny_frame(5),
                1,
                rw,
                BootSharing::Private,
            ),
        ]);
    } else {
        boot.push(boot_mapping(
            HOST,
            host_ipa(3),
            tiny_frame(3),
            2,
            rw,
            BootSharing::Private,
        ));
    }
    Layout {
        frames: TINY_FRAMES,
        side_table: TINY_BORROWERS,
        pool_pages,
        domains,
        guests: vec![
            (GUEST_HISTORY, link(window, ConversionMode::History)),
            (GUEST_SPLIT, link(window, ConversionMode::Split)),
        ],
        boot,
    }
}

/// The tiny layout (without [`THIRD`]) with guest memory of reduced rights from boot, as a
/// protected VM's boot-time regions can have: the history-mode guest owns frame 3 read-only and
/// frame 5 execute-only, the split-mode guest owns frame 4 read-execute (each at its own IPA).
pub fn guest_rights_layout(pool_pages: usize) -> Layout {
    let mut layout = tiny_layout(pool_pages, false);
    // The host keeps frames 0-2; frames 3-5 go to the guests instead.
    layout.boot.retain(|mapping| mapping.pa < tiny_frame(3));
    let private = BootSharing::Private;
    let read_execute = Rights::READ.union(Rights::EXECUTE);
    layout.boot.extend([
        boot_mapping(
            GUEST_HISTORY,
            tiny_ipa(3),
            tiny_frame(3),
            1,
            Rights::READ,
            private,
        ),
        boot_mapping(
            GUEST_SPLIT,
            tiny_ipa(4),
            tiny_frame(4),
            1,
            read_execute,
            private,
        ),
        boot_mapping(
            GUEST_HISTORY,
            tiny_ipa(5),
            tiny_frame(5),
            1,
            Rights::EXECUTE,
            private,
        ),
    ]);
    layout
}

/// Table pages the tiny layout without [`THIRD`] takes at boot: three roots of two pages, and
/// the host window's level-2 and level-3 tables.
pub const TINY_BOOT_TABLES: usize = 8;

/// The scenarios, each explored from boot.
///
/// Frames are independent, so the state space is the product of per-frame states; one alphabet
/// with everything would be far too large. Each scenario explores a few frames with the
/// operations that make them interesting:
/// - *contention* (small system): both guests fight over frame A with every operation, and the
///   split-mode guest has every operation on frame B;
/// - *history-block* (small system): the history-mode guest cycles (donate, share, unshare,
///   relinquish) the block's first page, second page, whole block, and the 2-page range across
///   the block's end into frame A;
/// - *split-block* (small system): the split-mode guest with every operation on the block's
///   first page, second page and whole block;
/// - *block-sharing* (small system): the host shares the whole block read-only with both
///   guests, which needs 512 side-table records for the second guest: the side table is full;
/// - *rights-and-pins* (tiny): grants of read-only, read-execute and all rights on a
///   read-write frame and on a read-write-execute frame, empty grants, and a pin on each;
/// - *two-page-range* (tiny): every operation on a 2-page range while single-page requests
///   and a pin change its second page;
/// - *third-domain* (tiny): frames a third domain borrows from the host and from a guest, a
///   guest page that holds another frame than the window's, and the side table running out;
/// - *table-pool* (tiny): a table pool with four pages to spare, which the two guests exhaust;
/// - *guest-rights* (tiny): guests that own read-only, read-execute and execute-only memory
///   from boot share, unshare and relinquish it: the host never gets more than the guest has,
///   nor execute, and an execute-only page cannot be shared.
pub fn scenarios() -> Vec<Scenario> {
    let second_page = Ipa(BLOCK_IPA.get() + PAGE_SIZE);
    let last_page = Ipa(BLOCK_IPA.get() + (PAGES_PER_BLOCK - 1) * PAGE_SIZE);
    let small_probes = vec![
        FRAME_A_IPA,
        FRAME_B_IPA,
        BLOCK_IPA,
        second_page,
        Ipa(BLOCK_IPA.get() + 2 * PAGE_SIZE),
        last_page,
    ];
    let contention = [
        each(GUEST_HISTORY, FRAME_A_IPA, 1, &EVERY),
        each(GUEST_SPLIT, FRAME_A_IPA, 1, &EVERY),
        each(GUEST_SPLIT, FRAME_B_IPA, 1, &EVERY),
        teardowns(),
    ]
    .concat();
    let history_block = [
        each(GUEST_HISTORY, BLOCK_IPA, 1, &GUEST_CYCLE),
        each(GUEST_HISTORY, second_page, 1, &GUEST_CYCLE),
        each(GUEST_HISTORY, BLOCK_IPA, MAX_RANGE_PAGES, &GUEST_CYCLE),
        each(GUEST_HISTORY, last_page, 2, &GUEST_CYCLE),
        teardowns(),
    ]
    .concat();
    let split_block = [
        each(GUEST_SPLIT, BLOCK_IPA, 1, &EVERY),
        each(GUEST_SPLIT, second_page, 1, &EVERY),
        each(GUEST_SPLIT, BLOCK_IPA, MAX_RANGE_PAGES, &EVERY),
        teardowns(),
    ]
    .concat();

    let read = Rights::READ;
    let block_sharing = [GUEST_HISTORY, GUEST_SPLIT]
        .into_iter()
        .flat_map(|guest| {
            [Operation::ShareWithGuest, Operation::UnshareFromGuest]
                .map(|operation| convert(operation, guest, BLOCK_IPA, MAX_RANGE_PAGES, read))
        })
        .chain(teardowns())
        .collect();
    let read_execute = Rights::READ.union(Rights::EXECUTE);
    let grants = |guest, index, rights: &[Rights]| -> Vec<Step> {
        rights
            .iter()
            .flat_map(|&rights| {
                [Operation::ShareWithGuest, Operation::Lend]
                    .map(|operation| convert(operation, guest, tiny_ipa(index), 1, rights))
            })
            .collect()
    };
    let pins = |index| vec![Step::Pin(tiny_frame(index)), Step::Unpin(tiny_frame(index))];
    let rights_and_pins = [
        each(GUEST_SPLIT, tiny_ipa(0), 1, &EVERY),
        grants(GUEST_SPLIT, 0, &[read, read_execute, Rights::empty()]),
        pins(0),
        each(GUEST_HISTORY, tiny_ipa(2), 1, &EVERY),
        grants(GUEST_HISTORY, 2, &[read_execute, Rights::ALL]),
        pins(2),
        teardowns(),
    ]
    .concat();
    let two_page_range = [
        each(GUEST_HISTORY, tiny_ipa(0), 2, &EVERY),
        each(GUEST_SPLIT, tiny_ipa(0).shared_alias(), 2, &EVERY),
        each(GUEST_HISTORY, tiny_ipa(1), 1, &GUEST_CYCLE),
        each(GUEST_SPLIT, tiny_ipa(1), 1, &EVERY),
        pins(1),
        teardowns(),
    ]
    .concat();
    let share_both = |index| -> Vec<Step> {
        [GUEST_HISTORY, GUEST_SPLIT]
            .into_iter()
            .flat_map(|guest| {
                [
                    convert(Operation::ShareWithGuest, guest, tiny_ipa(index), 1, read),
                    convert(Operation::UnshareFromGuest, guest, tiny_ipa(index), 1, read),
                ]
            })
            .collect()
    };
    let third_domain = [
        share_both(3),
        each(
            GUEST_HISTORY,
            tiny_ipa(3),
            1,
            &[Operation::Donate, Operation::Lend],
        ),
        each(GUEST_HISTORY, tiny_ipa(4), 1, &EVERY),
        each(GUEST_SPLIT, tiny_ipa(4), 1, &[Operation::ShareWithGuest]),
        each(GUEST_SPLIT, tiny_ipa(0), 1, &EVERY),
        each(
            GUEST_HISTORY,
            tiny_ipa(0),
            1,
            &[Operation::Donate, Operation::Relinquish],
        ),
        share_both(0),
        pins(3),
        teardowns(),
    ]
    .concat();
    let guest_rights = [
        each(GUEST_HISTORY, tiny_ipa(3), 1, &EVERY),
        each(GUEST_SPLIT, tiny_ipa(4), 1, &EVERY),
        each(GUEST_HISTORY, tiny_ipa(5), 1, &GUEST_CYCLE),
        teardowns(),
    ]
    .concat();
    let table_pool = [
        each(GUEST_HISTORY, tiny_ipa(0), 1, &EVERY),
        each(GUEST_SPLIT, tiny_ipa(1), 1, &EVERY),
        pins(5),
        teardowns(),
    ]
    .concat();

    let tiny_probes: Vec<Ipa> = (0..TINY_FRAMES as u64).map(tiny_ipa).collect();
    let generous = 64;
    let tiny = |name, layout, steps| Scenario {
        name,
        layout,
        steps,
        probes: tiny_probes.clone(),
    };
    vec![
        Scenario {
            name: "contention",
            layout: default_layout(),
            steps: contention,
            probes: small_probes.clone(),
        },
        Scenario {
            name: "history-block",
            layout: default_layout(),
            steps: history_block,
            probes: small_probes.clone(),
        },
        Scenario {
            name: "split-block",
            layout: default_layout(),
            steps: split_block,
            probes: small_probes.clone(),
        },
        Scenario {
            name: "block-sharing",
            layout: default_layout(),
            steps: block_sharing,
            probes: small_probes,
        },
        tiny(
            "rights-and-pins",
            tiny_layout(generous, false),
            rights_and_pins,
        ),
        tiny(
            "two-page-range",
            tiny_layout(generous, false),
            two_page_range,
        ),
        tiny("third-domain", tiny_layout(generous, true), third_domain),
        tiny(
            "table-pool",
            tiny_layout(TINY_BOOT_TABLES + 4, false),
            table_pool,
        ),
        tiny("guest-rights", guest_rights_layout(generous), guest_rights),
    ]
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on an unexpected error"
)]
mod tests {
    use super::*;
    use frameshift_core::error::Error;

    /// A dead split-mode guest is torn down even when the table pool is empty: a teardown only
    /// takes mappings away from the guest and gives the frames back to a host window that still
    /// has its tables, so it needs no table page. (The engine used to reserve tables for the
    /// guest's whole range and its alias range too, none of which a teardown allocates, and
    /// this teardown failed with `OutOfTableMemory` for ever.)
    #[test]
    fn a_dead_guest_is_torn_down_with_an_empty_table_pool() {
        let layout = tiny_layout(TINY_BOOT_TABLES + 4, false);
        let mut system = TinySystem::boot_layout(&layout).unwrap();
        // The split-mode guest's donate takes its level-2 and level-3 tables, the history-mode
        // guest's the last two pages.
        let donate =
            |guest, index| Request::new(Operation::Donate, HOST, guest, tiny_ipa(index), 1);
        system.convert(donate(GUEST_SPLIT, 0)).unwrap();
        system.convert(donate(GUEST_HISTORY, 1)).unwrap();
        assert_eq!(system.engine.pool().available(), 0);
        // A request that does need a table is refused, and the pool stays empty.
        let share = Request::new(Operation::Share, HOST, GUEST_SPLIT, tiny_ipa(0), 1);
        assert_eq!(system.convert(share), Err(Error::OutOfTableMemory));
        system.arch.end_call();
        system.teardown(GUEST_SPLIT).unwrap();
        system.arch.end_call();
        assert_eq!(system.arch.take_violations(), Vec::<String>::new());
        assert_eq!(system.audit(), Vec::<String>::new());
        // The frame is the host's again, and the guest's emptied tables went back to the pool.
        let host_ipa = Ipa(WINDOW_HOST_BASE.get());
        assert_eq!(
            system.page_state(HOST, host_ipa),
            Ok(Some(frameshift_core::PageState::Owned))
        );
        assert_eq!(system.engine.pool().available(), 2);
    }
}
