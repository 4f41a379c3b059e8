//! The ownership state machine: the one place that decides every memory transition.
//!
//! Each request is decided frame by frame from a [`FrameView`]: the frame's state, who owns it
//! relative to the (host, guest) pair involved, and who borrows it. [`decide`] is the single
//! function that accepts or refuses a transition; the engine only carries out its answer.
//!
//! States as seen by one domain (DESIGN.md 4): `Owned` O, `SharedOwned` SO, `SharedBorrowed`
//! SB, `Lent` L (owner, no access, keeps a lent-away annotation), `NoPage` -.
//!
//! | operation | caller | frame before (host, guest) | frame after (host, guest) | zero |
//! | --- | --- | --- | --- | --- |
//! | donate | host | owner host: (O, -) | owner guest: (-, O) | no |
//! | share | guest | owner guest: (-, O) | (SB, SO) | no |
//! | unshare | guest | owner guest: (SB, SO), no other borrower, unpinned | (-, O) | no |
//! | relinquish | guest | owner guest: (-, O), unpinned | owner host: (O, -) | **yes** |
//! | relinquish | guest | owner host: (L, SB) (a lent frame) | (L, -) | no |
//! | share to guest | host | owner host: (O or SO, -) | (SO, SB) | no |
//! | unshare from guest | host | owner host: (SO, SB), unpinned | (O, -), or (SO, -) if others still borrow | no |
//! | lend | host | owner host: (O, -), unpinned | (L, SB) | no |
//! | reclaim | host | owner host: (L, -) | (O, -) | no |
//! | teardown | hypervisor | owner guest: (-, O) or (SB, SO) | owner host: (O, -) | **yes** |
//! | teardown | hypervisor | owner host: (SO, SB) | (O, -) or (SO, -) | no |
//! | teardown | hypervisor | owner host: (L, SB) | (L, -) | no |
//!
//! Everything else is refused with a precise [`Error`] and changes nothing. Where the guest's
//! mappings live depends on its [`ConversionMode`](crate::engine::ConversionMode): in history mode always at the IPA; in split
//! mode private (`Owned`) pages at the IPA and shared ones at its alias `IPA | 1 << 39`. The host
//! always sees a guest's frame at the window position of the guest's IPA.

use crate::descriptor::PageState;
use crate::error::Error;
use crate::frame_table::FrameState;

/// A memory operation (DESIGN.md 4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Operation {
    /// Host gives a frame to the guest, contents kept.
    Donate,
    /// Guest shares an owned frame with its host.
    Share,
    /// Guest takes a shared frame back; the host loses access before the call returns.
    Unshare,
    /// Guest gives an owned frame back (zeroed), or drops a lent frame.
    Relinquish,
    /// Host shares one of its frames with the guest.
    ShareWithGuest,
    /// Host takes a shared frame back from the guest.
    UnshareFromGuest,
    /// Host lends a frame for the guest's exclusive use.
    Lend,
    /// Host takes back a lent frame the borrower gave up.
    Reclaim,
    /// The hypervisor returns a dead guest's frames.
    Teardown,
}

impl Operation {
    /// Every request a domain can make (all but [`Operation::Teardown`], which only the
    /// hypervisor starts), in the order of DESIGN.md 4.
    pub const REQUESTS: [Self; 8] = [
        Self::Donate,
        Self::Share,
        Self::Unshare,
        Self::Relinquish,
        Self::ShareWithGuest,
        Self::UnshareFromGuest,
        Self::Lend,
        Self::Reclaim,
    ];
}

/// Who holds a role, relative to the (host, guest) pair a request is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Holder {
    /// Nobody (free frame).
    Nobody,
    /// The host of the pair.
    Host,
    /// The guest of the pair.
    Guest,
    /// Some other domain.
    Other,
}

/// One frame as the state machine sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FrameView {
    /// The frame's state.
    pub state: FrameState,
    /// Its owner.
    pub owner: Holder,
    /// The host is a borrower.
    pub host_borrows: bool,
    /// The guest is a borrower.
    pub guest_borrows: bool,
    /// A domain other than the pair borrows it.
    pub other_borrowers: bool,
    /// In-flight uses forbid taking access away.
    pub pinned: bool,
}

/// What one side (host or guest) holds for the frame after a transition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    /// No mapping.
    NoPage,
    /// The owner's lent-away annotation, no access.
    LentAway,
    /// A mapping in this state.
    Mapped(PageState),
}

/// What the owner's recorded rights become.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OwnerRights {
    /// Unchanged.
    Keep,
    /// Read, write and execute (a guest receiving a frame may run code from it).
    All,
    /// Read and write (the host receiving a frame back).
    ReadWrite,
}

/// An accepted transition for one frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Transition {
    /// The owner afterwards (host or guest).
    pub owner: Holder,
    /// The frame's state afterwards.
    pub state: FrameState,
    /// The host's side afterwards.
    pub host: Side,
    /// The guest's side afterwards.
    pub guest: Side,
    /// Owner rights afterwards.
    pub owner_rights: OwnerRights,
    /// Zero the frame after the guest lost access and before the host gains it (I5).
    pub zero: bool,
}

/// Decides one frame's transition for `operation`, or refuses it.
pub fn decide(operation: Operation, view: FrameView) -> Result<Transition, Error> {
    use FrameState::{Lent, Owned, SharedOwned};
    use Holder::{Guest, Host};
    use PageState::{Owned as O, SharedBorrowed as SB, SharedOwned as SO};
    use Side::{LentAway, Mapped, NoPage};

    let keep = |owner, state, host, guest| Transition {
        owner,
        state,
        host,
        guest,
        owner_rights: OwnerRights::Keep,
        zero: false,
    };
    let to_host_zeroed = Transition {
        owner: Host,
        state: Owned,
        host: Mapped(O),
        guest: NoPage,
        owner_rights: OwnerRights::ReadWrite,
        zero: true,
    };
    // After the guest stops borrowing a host frame: still shared if others borrow it.
    let host_after_guest_leaves = if view.other_borrowers {
        (SharedOwned, SO)
    } else {
        (Owned, O)
    };

    match (operation, view.owner, view.state) {
        (Operation::Donate, Host, Owned) if view.pinned => Err(Error::Pinned),
        (Operation::Donate, Host, Owned) => Ok(Transition {
            owner: Guest,
            state: Owned,
            host: NoPage,
            guest: Mapped(O),
            owner_rights: OwnerRights::All,
            zero: false,
        }),
        (Operation::Share, Guest, Owned) => Ok(keep(Guest, SharedOwned, Mapped(SB), Mapped(SO))),
        (Operation::Unshare, Guest, SharedOwned) if !view.host_borrows || view.other_borrowers => {
            Err(Error::WrongState)
        }
        (Operation::Unshare, Guest, SharedOwned) if view.pinned => Err(Error::Pinned),
        (Operation::Unshare, Guest, SharedOwned) => Ok(keep(Guest, Owned, NoPage, Mapped(O))),
        (Operation::Relinquish, Guest, Owned) if view.pinned => Err(Error::Pinned),
        (Operation::Relinquish, Guest, Owned) => Ok(to_host_zeroed),
        (Operation::Relinquish, Host, Lent) if view.guest_borrows => {
            Ok(keep(Host, Lent, LentAway, NoPage))
        }
        (Operation::ShareWithGuest, Host, Owned | SharedOwned) if view.guest_borrows => {
            Err(Error::AlreadyBorrowed)
        }
        (Operation::ShareWithGuest, Host, Owned | SharedOwned) => {
            Ok(keep(Host, SharedOwned, Mapped(SO), Mapped(SB)))
        }
        (Operation::UnshareFromGuest, Host, SharedOwned) if !view.guest_borrows => {
            Err(Error::WrongState)
        }
        (Operation::UnshareFromGuest, Host, SharedOwned) if view.pinned => Err(Error::Pinned),
        (Operation::UnshareFromGuest, Host, SharedOwned) => {
            let (state, host) = host_after_guest_leaves;
            Ok(keep(Host, state, Mapped(host), NoPage))
        }
        (Operation::Lend, Host, Owned) if view.pinned => Err(Error::Pinned),
        (Operation::Lend, Host, Owned) => Ok(keep(Host, Lent, LentAway, Mapped(SB))),
        (Operation::Reclaim, Host, Lent) if view.guest_borrows || view.other_borrowers => {
            Err(Error::AlreadyBorrowed)
        }
        (Operation::Reclaim, Host, Lent) => Ok(keep(Host, Owned, Mapped(O), NoPage)),
        (Operation::Teardown, Guest, Owned) => Ok(to_host_zeroed),
        (Operation::Teardown, Guest, SharedOwned) if view.other_borrowers => {
            // Only boot-time PD sharing creates such frames; their other holders' IPAs are not
            // known here, so the frame cannot be taken back safely.
            Err(Error::WrongState)
        }
        (Operation::Teardown, Guest, SharedOwned) => Ok(to_host_zeroed),
        (Operation::Teardown, Host, SharedOwned) if view.guest_borrows => {
            let (state, host) = host_after_guest_leaves;
            Ok(keep(Host, state, Mapped(host), NoPage))
        }
        (Operation::Teardown, Host, Lent) if view.guest_borrows => {
            Ok(keep(Host, Lent, LentAway, NoPage))
        }
        _ => Err(Error::WrongState),
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on an unexpected error"
)]
mod tests {
    //! Mutation check: `cargo xtask mutants` (this file is its default). Explained equivalent
    //! mutants, one `equivalent mutant: <name> -- <why>` line each, which that command reads
    //! (build/src/tasks/mutants.rs): none; every mutant that builds is caught.

    use super::*;
    use FrameState::{Free, Lent, Owned, SharedOwned};
    use Holder::{Guest, Host, Nobody, Other};

    /// A condition on one flag of a [`FrameView`].
    #[derive(Clone, Copy, Debug)]
    enum Flag {
        /// Must be set.
        Set,
        /// Must be clear.
        Clear,
        /// Either.
        Any,
    }
    use Flag::{Any, Clear, Set};

    impl Flag {
        fn admits(self, value: bool) -> bool {
            match self {
                Set => value,
                Clear => !value,
                Any => true,
            }
        }
    }

    /// One row of the expected-answer table: for this operation, owner and state, and flags
    /// (host borrows, guest borrows, other borrowers, pinned) matching these conditions, the
    /// answer is this.
    struct Row {
        operation: Operation,
        owner: Holder,
        states: &'static [FrameState],
        flags: [Flag; 4],
        answer: Result<Transition, Error>,
    }

    const fn keep(owner: Holder, state: FrameState, host: Side, guest: Side) -> Transition {
        Transition {
            owner,
            state,
            host,
            guest,
            owner_rights: OwnerRights::Keep,
            zero: false,
        }
    }

    const SO: Side = Side::Mapped(PageState::SharedOwned);
    const SB: Side = Side::Mapped(PageState::SharedBorrowed);
    const O: Side = Side::Mapped(PageState::Owned);
    const NONE: Side = Side::NoPage;
    const LENT: Side = Side::LentAway;

    /// The frame goes back to the host, zeroed (relinquish and teardown of guest memory, I5).
    const TO_HOST_ZEROED: Transition = Transition {
        owner: Host,
        state: Owned,
        host: O,
        guest: NONE,
        owner_rights: OwnerRights::ReadWrite,
        zero: true,
    };

    const fn row(
        operation: Operation,
        owner: Holder,
        states: &'static [FrameState],
        flags: [Flag; 4],
        answer: Result<Transition, Error>,
    ) -> Row {
        Row {
            operation,
            owner,
            states,
            flags,
            answer,
        }
    }

    /// The state machine, written from the module's table (DESIGN.md 4) rather than from
    /// `decide`: the first row that matches gives the answer, and a combination no row matches
    /// is refused with `WrongState`. Flags: [host borrows, guest borrows, other borrowers,
    /// pinned]. Where one request has several faults, the order of the rows is the order in
    /// which they are reported.
    #[rustfmt::skip]
    const TABLE: &[Row] = &[
        // donate: host (O, -) -> guest (-, O), contents kept, the guest may execute from it.
        row(Operation::Donate, Host, &[Owned], [Any, Any, Any, Set], Err(Error::Pinned)),
        row(Operation::Donate, Host, &[Owned], [Any, Any, Any, Clear], Ok(Transition {
            owner: Guest, state: Owned, host: NONE, guest: O,
            owner_rights: OwnerRights::All, zero: false,
        })),
        // share: guest (-, O) -> (SB, SO); adds access, so a pin does not matter.
        row(Operation::Share, Guest, &[Owned], [Any, Any, Any, Any],
            Ok(keep(Guest, SharedOwned, SB, SO))),
        // unshare: guest (SB, SO) with the host as the only borrower, unpinned -> (-, O).
        row(Operation::Unshare, Guest, &[SharedOwned], [Clear, Any, Any, Any], Err(Error::WrongState)),
        row(Operation::Unshare, Guest, &[SharedOwned], [Any, Any, Set, Any], Err(Error::WrongState)),
        row(Operation::Unshare, Guest, &[SharedOwned], [Set, Any, Clear, Set], Err(Error::Pinned)),
        row(Operation::Unshare, Guest, &[SharedOwned], [Set, Any, Clear, Clear],
            Ok(keep(Guest, Owned, NONE, O))),
        // relinquish: guest (-, O), unpinned -> host (O, -), zeroed; or a lent frame
        // (L, SB) -> (L, -).
        row(Operation::Relinquish, Guest, &[Owned], [Any, Any, Any, Set], Err(Error::Pinned)),
        row(Operation::Relinquish, Guest, &[Owned], [Any, Any, Any, Clear], Ok(TO_HOST_ZEROED)),
        row(Operation::Relinquish, Host, &[Lent], [Any, Set, Any, Any],
            Ok(keep(Host, Lent, LENT, NONE))),
        // share with guest: host (O or SO, -) -> (SO, SB).
        row(Operation::ShareWithGuest, Host, &[Owned, SharedOwned], [Any, Set, Any, Any],
            Err(Error::AlreadyBorrowed)),
        row(Operation::ShareWithGuest, Host, &[Owned, SharedOwned], [Any, Clear, Any, Any],
            Ok(keep(Host, SharedOwned, SO, SB))),
        // unshare from guest: host (SO, SB), unpinned -> (O, -), or (SO, -) if others borrow.
        row(Operation::UnshareFromGuest, Host, &[SharedOwned], [Any, Clear, Any, Any],
            Err(Error::WrongState)),
        row(Operation::UnshareFromGuest, Host, &[SharedOwned], [Any, Set, Any, Set],
            Err(Error::Pinned)),
        row(Operation::UnshareFromGuest, Host, &[SharedOwned], [Any, Set, Set, Clear],
            Ok(keep(Host, SharedOwned, SO, NONE))),
        row(Operation::UnshareFromGuest, Host, &[SharedOwned], [Any, Set, Clear, Clear],
            Ok(keep(Host, Owned, O, NONE))),
        // lend: host (O, -), unpinned -> (L, SB).
        row(Operation::Lend, Host, &[Owned], [Any, Any, Any, Set], Err(Error::Pinned)),
        row(Operation::Lend, Host, &[Owned], [Any, Any, Any, Clear],
            Ok(keep(Host, Lent, LENT, SB))),
        // reclaim: host (L, -), nobody borrowing any more -> (O, -).
        row(Operation::Reclaim, Host, &[Lent], [Any, Set, Any, Any], Err(Error::AlreadyBorrowed)),
        row(Operation::Reclaim, Host, &[Lent], [Any, Any, Set, Any], Err(Error::AlreadyBorrowed)),
        row(Operation::Reclaim, Host, &[Lent], [Any, Clear, Clear, Any],
            Ok(keep(Host, Owned, O, NONE))),
        // teardown of a dead guest, whatever the pins: its frames go home zeroed...
        row(Operation::Teardown, Guest, &[Owned], [Any, Any, Any, Any], Ok(TO_HOST_ZEROED)),
        // ...unless other domains (boot-time PD sharing) still borrow them;
        row(Operation::Teardown, Guest, &[SharedOwned], [Any, Any, Set, Any], Err(Error::WrongState)),
        row(Operation::Teardown, Guest, &[SharedOwned], [Any, Any, Clear, Any], Ok(TO_HOST_ZEROED)),
        // the host's frames it borrowed are simply dropped.
        row(Operation::Teardown, Host, &[SharedOwned], [Any, Set, Set, Any],
            Ok(keep(Host, SharedOwned, SO, NONE))),
        row(Operation::Teardown, Host, &[SharedOwned], [Any, Set, Clear, Any],
            Ok(keep(Host, Owned, O, NONE))),
        row(Operation::Teardown, Host, &[Lent], [Any, Set, Any, Any],
            Ok(keep(Host, Lent, LENT, NONE))),
    ];

    const OPERATIONS: [Operation; 9] = [
        Operation::Donate,
        Operation::Share,
        Operation::Unshare,
        Operation::Relinquish,
        Operation::ShareWithGuest,
        Operation::UnshareFromGuest,
        Operation::Lend,
        Operation::Reclaim,
        Operation::Teardown,
    ];
    const OWNERS: [Holder; 4] = [Nobody, Host, Guest, Other];
    const STATES: [FrameState; 4] = [Free, Owned, SharedOwned, Lent];

    /// Every view: each owner and state with each of the 16 flag combinations.
    fn every_view() -> impl Iterator<Item = FrameView> {
        OWNERS.into_iter().flat_map(|owner| {
            STATES.into_iter().flat_map(move |state| {
                (0..16u8).map(move |bits| FrameView {
                    state,
                    owner,
                    host_borrows: bits & 1 != 0,
                    guest_borrows: bits & 2 != 0,
                    other_borrowers: bits & 4 != 0,
                    pinned: bits & 8 != 0,
                })
            })
        })
    }

    fn matches(row: &Row, operation: Operation, view: FrameView) -> bool {
        let flags = [
            view.host_borrows,
            view.guest_borrows,
            view.other_borrowers,
            view.pinned,
        ];
        row.operation == operation
            && row.owner == view.owner
            && row.states.contains(&view.state)
            && row
                .flags
                .iter()
                .zip(flags)
                .all(|(flag, value)| flag.admits(value))
    }

    #[test]
    fn every_operation_on_every_view_gets_the_tabled_answer() {
        let mut used = [0usize; TABLE.len()];
        let mut accepted = [0usize; OPERATIONS.len()];
        for (index, operation) in OPERATIONS.into_iter().enumerate() {
            for view in every_view() {
                let expected = match TABLE.iter().position(|row| matches(row, operation, view)) {
                    Some(row) => {
                        used[row] += 1;
                        TABLE[row].answer
                    }
                    None => Err(Error::WrongState),
                };
                let answer = decide(operation, view);
                assert_eq!(answer, expected, "{operation:?} on {view:?}");
                accepted[index] += usize::from(answer.is_ok());
            }
        }
        // Every row is reachable (a row shadowed by an earlier one would test nothing).
        for (row, &count) in used.iter().enumerate() {
            assert!(count > 0, "row {row} of the table never applies");
        }
        // Accepted views per operation, counted from the table by hand: flags a row leaves
        // free double the count (16 views per owner and state).
        assert_eq!(
            accepted,
            [
                8,              // donate: host-owned, unpinned
                16,             // share: guest-owned, any flags
                2,              // unshare: host borrows, no other borrower, unpinned
                8 + 8,          // relinquish: guest-owned unpinned; lent with the guest borrowing
                8 + 8,          // share with guest: Owned or SharedOwned, guest not borrowing yet
                4,              // unshare from guest: guest borrows, unpinned
                8,              // lend: host-owned, unpinned
                4,              // reclaim: lent, nobody borrowing
                16 + 8 + 8 + 8, // teardown: guest Owned; guest SO alone; host SO, host Lent
            ]
        );
    }

    #[test]
    fn the_legal_requests_of_the_module_table_are_accepted() {
        // Liveness, one consistent view per row of the module's table: a legal request that is
        // refused is a bug even though refusing is always safe.
        let view = |owner, state, host_borrows, guest_borrows| FrameView {
            state,
            owner,
            host_borrows,
            guest_borrows,
            other_borrowers: false,
            pinned: false,
        };
        let legal = [
            (Operation::Donate, view(Host, Owned, false, false)),
            (Operation::Share, view(Guest, Owned, false, false)),
            (Operation::Unshare, view(Guest, SharedOwned, true, false)),
            (Operation::Relinquish, view(Guest, Owned, false, false)),
            (Operation::Relinquish, view(Host, Lent, false, true)),
            (Operation::ShareWithGuest, view(Host, Owned, false, false)),
            (
                Operation::ShareWithGuest,
                view(Host, SharedOwned, false, false),
            ),
            (
                Operation::UnshareFromGuest,
                view(Host, SharedOwned, false, true),
            ),
            (Operation::Lend, view(Host, Owned, false, false)),
            (Operation::Reclaim, view(Host, Lent, false, false)),
            (Operation::Teardown, view(Guest, Owned, false, false)),
            (Operation::Teardown, view(Guest, SharedOwned, true, false)),
            (Operation::Teardown, view(Host, SharedOwned, false, true)),
            (Operation::Teardown, view(Host, Lent, false, true)),
        ];
        for (operation, view) in legal {
            assert!(
                decide(operation, view).is_ok(),
                "{operation:?} on {view:?} must be accepted"
            );
        }
    }

    fn view(owner: Holder, state: FrameState) -> FrameView {
        FrameView {
            state,
            owner,
            host_borrows: false,
            guest_borrows: false,
            other_borrowers: false,
            pinned: false,
        }
    }

    #[test]
    fn share_of_a_borrowed_frame_is_refused() {
        // The guest borrows a host frame: it cannot share it onwards.
        let borrowed = FrameView {
            guest_borrows: true,
            ..view(Host, SharedOwned)
        };
        assert_eq!(decide(Operation::Share, borrowed), Err(Error::WrongState));
        assert_eq!(
            decide(Operation::Relinquish, borrowed),
            Err(Error::WrongState)
        );
    }

    #[test]
    fn pins_block_every_access_removal() {
        let pinned = |owner, state| FrameView {
            pinned: true,
            host_borrows: true,
            ..view(owner, state)
        };
        assert_eq!(
            decide(Operation::Unshare, pinned(Guest, SharedOwned)),
            Err(Error::Pinned)
        );
        assert_eq!(
            decide(Operation::Donate, pinned(Host, Owned)),
            Err(Error::Pinned)
        );
        assert_eq!(
            decide(Operation::Relinquish, pinned(Guest, Owned)),
            Err(Error::Pinned)
        );
        // Sharing more is fine while pinned.
        assert!(decide(Operation::Share, pinned(Guest, Owned)).is_ok());
    }

    #[test]
    fn only_relinquish_and_teardown_zero() {
        let mut operations = Operation::REQUESTS.to_vec();
        operations.push(Operation::Teardown);
        let owners = [Nobody, Host, Guest, Other];
        let states = [Free, Owned, SharedOwned, Lent];
        for operation in operations {
            for owner in owners {
                for state in states {
                    for bits in 0..16u8 {
                        let view = FrameView {
                            state,
                            owner,
                            host_borrows: bits & 1 != 0,
                            guest_borrows: bits & 2 != 0,
                            other_borrowers: bits & 4 != 0,
                            pinned: bits & 8 != 0,
                        };
                        let Ok(transition) = decide(operation, view) else {
                            continue;
                        };
                        if transition.zero {
                            assert!(matches!(
                                operation,
                                Operation::Relinquish | Operation::Teardown
                            ));
                            assert_eq!(owner, Guest, "only frames leaving the guest");
                        }
                        assert!(matches!(transition.owner, Host | Guest));
                        assert!(owner == Host || owner == Guest);
                    }
                }
            }
        }
    }
}
