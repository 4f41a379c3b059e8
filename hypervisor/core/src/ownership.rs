//! The ownership state machine: the one place that decides every memory transition.
//!
//! Each request is decided frame by frame from a [`FrameView`]: the frame's state, who owns it
//! relative to the (host, guest) pair involved, who borrows it, and the owner's rights. [`decide`]
//! is the single function that accepts or refuses a transition, rights included; the engine only
//! carries out its answer.
//!
//! States as seen by one domain (DESIGN.md 4): `Owned` O, `SharedOwned` SO, `SharedBorrowed`
//! SB, `Lent` L (owner, no access, keeps a lent-away annotation), `NoPage` -.
//!
//! | operation | caller | frame before (host, guest) | frame after (host, guest) | zero |
//! | --- | --- | --- | --- | --- |
//! | donate | host | owner host: (O, -) | owner guest: (-, O) | no |
//! | share | guest | owner guest: (-, O) | (SB, SO); the host borrows with the owner's rights ∩ RW | no |
//! | unshare | guest | owner guest: (SB, SO), no other borrower, unpinned | (-, O) | no |
//! | relinquish | guest | owner guest: (-, O), unpinned | owner host: (O, -) | **yes** |
//! | relinquish | guest | owner host: (L, SB) (a lent frame) | (L, -) | no |
//! | share to guest | host | owner host: (O or SO, -) | (SO, SB); the guest borrows with the rights asked, at most the owner's | no |
//! | unshare from guest | host | owner host: (SO, SB), unpinned | (O, -), or (SO, -) if others still borrow | no |
//! | lend | host | owner host: (O, -), unpinned | (L, SB); rights as for share to guest | no |
//! | reclaim | host | owner host: (L, -) | (O, -) | no |
//! | teardown | hypervisor | owner guest: (-, O) or (SB, SO) | owner host: (O, -) | **yes** |
//! | teardown | hypervisor | owner host: (SO, SB) | (O, -) or (SO, -) | no |
//! | teardown | hypervisor | owner host: (L, SB) | (L, -) | no |
//!
//! Rights: a borrower never gets more than the owner has. A guest's share gives its host the
//! guest's own rights without execute (the host never runs guest memory), and is refused with
//! [`Error::InvalidRights`] when that leaves nothing (an execute-only page); share to guest and
//! lend are refused with it when the rights asked are empty or not within the owner's.
//!
//! Everything else is refused with a precise [`Error`] and changes nothing. Where the guest's
//! mappings live depends on its [`ConversionMode`](crate::domain::ConversionMode): in history
//! mode always at the IPA; in split mode private (`Owned`) pages at the IPA and shared ones at its
//! alias `IPA | 1 << 39`. The host always sees a guest's frame at the window position of the
//! guest's IPA.

use crate::descriptor::{PageState, Rights};
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
    /// The owner's rights on the frame.
    pub owner_rights: Rights,
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
    /// The rights of the side that becomes a borrower (the host on share, the guest on share
    /// to guest and lend); empty when nobody starts borrowing.
    pub borrower_rights: Rights,
}

/// Decides one frame's transition for `operation`, or refuses it. `requested` is the rights a
/// share to guest or a lend grants (ignored by the other operations).
pub fn decide(
    operation: Operation,
    view: FrameView,
    requested: Rights,
) -> Result<Transition, Error> {
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
        borrower_rights: Rights::empty(),
    };
    let to_host_zeroed = Transition {
        owner: Host,
        state: Owned,
        host: Mapped(O),
        guest: NoPage,
        owner_rights: OwnerRights::ReadWrite,
        zero: true,
        borrower_rights: Rights::empty(),
    };
    // After the guest stops borrowing a host frame: still shared if others borrow it.
    let host_after_guest_leaves = if view.other_borrowers {
        (SharedOwned, SO)
    } else {
        (Owned, O)
    };
    // The host's rights on a guest's shared page: the guest's own, never execute.
    let host_share = view.owner_rights & Rights::READ_WRITE;
    // A grant to the guest: something, and nothing the owner lacks.
    let grant_ok = !requested.is_empty() && view.owner_rights.contains(requested);
    let granting = |transition: Transition, rights| Transition {
        borrower_rights: rights,
        ..transition
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
            borrower_rights: Rights::empty(),
        }),
        (Operation::Share, Guest, Owned) if host_share.is_empty() => Err(Error::InvalidRights),
        (Operation::Share, Guest, Owned) => Ok(granting(
            keep(Guest, SharedOwned, Mapped(SB), Mapped(SO)),
            host_share,
        )),
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
        (Operation::ShareWithGuest, Host, Owned | SharedOwned) if !grant_ok => {
            Err(Error::InvalidRights)
        }
        (Operation::ShareWithGuest, Host, Owned | SharedOwned) => Ok(granting(
            keep(Host, SharedOwned, Mapped(SO), Mapped(SB)),
            requested,
        )),
        (Operation::UnshareFromGuest, Host, SharedOwned) if !view.guest_borrows => {
            Err(Error::WrongState)
        }
        (Operation::UnshareFromGuest, Host, SharedOwned) if view.pinned => Err(Error::Pinned),
        (Operation::UnshareFromGuest, Host, SharedOwned) => {
            let (state, host) = host_after_guest_leaves;
            Ok(keep(Host, state, Mapped(host), NoPage))
        }
        (Operation::Lend, Host, Owned) if view.pinned => Err(Error::Pinned),
        (Operation::Lend, Host, Owned) if !grant_ok => Err(Error::InvalidRights),
        (Operation::Lend, Host, Owned) => {
            Ok(granting(keep(Host, Lent, LentAway, Mapped(SB)), requested))
        }
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
    //! (build/xtask/src/tasks/mutants.rs): none; every mutant that builds is caught.

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

    /// A condition on the owner's rights and the rights a request grants.
    #[derive(Clone, Copy, Debug)]
    enum Grant {
        /// Any rights.
        Anything,
        /// The grant is non-empty and within the owner's rights.
        Within,
        /// The grant is empty or asks for a right the owner lacks.
        Beyond,
        /// The owner can read or write (a share gives its host something).
        Shareable,
        /// The owner can neither read nor write.
        Unshareable,
    }

    use Grant::{Anything, Beyond, Shareable, Unshareable, Within};

    impl Grant {
        fn admits(self, owner: Rights, requested: Rights) -> bool {
            let within = !requested.is_empty() && owner.contains(requested);
            let shareable = owner.intersects(Rights::READ_WRITE);
            match self {
                Anything => true,
                Within => within,
                Beyond => !within,
                Shareable => shareable,
                Unshareable => !shareable,
            }
        }
    }

    /// The rights a new borrower gets in an expected answer.
    #[derive(Clone, Copy, Debug)]
    enum Borrows {
        /// Nobody starts borrowing.
        Nothing,
        /// The rights the request asked for.
        Requested,
        /// The owner's rights without execute.
        OwnerReadWrite,
    }

    /// One row of the expected-answer table: for this operation, owner and state, flags (host
    /// borrows, guest borrows, other borrowers, pinned) and rights matching these conditions, the
    /// answer is this.
    struct Row {
        operation: Operation,
        owner: Holder,
        states: &'static [FrameState],
        flags: [Flag; 4],
        grant: Grant,
        answer: Result<(Transition, Borrows), Error>,
    }

    const fn keep(owner: Holder, state: FrameState, host: Side, guest: Side) -> Transition {
        Transition {
            owner,
            state,
            host,
            guest,
            owner_rights: OwnerRights::Keep,
            zero: false,
            borrower_rights: Rights::empty(),
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
        borrower_rights: Rights::empty(),
    };

    const fn row(
        operation: Operation,
        owner: Holder,
        states: &'static [FrameState],
        flags: [Flag; 4],
        grant: Grant,
        answer: Result<(Transition, Borrows), Error>,
    ) -> Row {
        Row {
            operation,
            owner,
            states,
            flags,
            grant,
            answer,
        }
    }

    const fn plain(transition: Transition) -> Result<(Transition, Borrows), Error> {
        Ok((transition, Borrows::Nothing))
    }

    /// The state machine, written from the module's table (DESIGN.md 4) rather than from
    /// `decide`: the first row that matches gives the answer, and a combination no row matches
    /// is refused with `WrongState`. Flags: [host borrows, guest borrows, other borrowers,
    /// pinned]. Where one request has several faults, the order of the rows is the order in
    /// which they are reported.
    #[rustfmt::skip]
    const TABLE: &[Row] = &[
        // donate: host (O, -) -> guest (-, O), contents kept, the guest may execute from it.
        row(Operation::Donate, Host, &[Owned], [Any, Any, Any, Set], Anything, Err(Error::Pinned)),
        row(Operation::Donate, Host, &[Owned], [Any, Any, Any, Clear], Anything, plain(Transition {
            owner: Guest, state: Owned, host: NONE, guest: O,
            owner_rights: OwnerRights::All, zero: false, borrower_rights: Rights::empty(),
        })),
        // share: guest (-, O) -> (SB, SO), the host with the guest's rights less execute; adds
        // access, so a pin does not matter; an owner that can neither read nor write has
        // nothing to share.
        row(Operation::Share, Guest, &[Owned], [Any, Any, Any, Any], Unshareable,
            Err(Error::InvalidRights)),
        row(Operation::Share, Guest, &[Owned], [Any, Any, Any, Any], Shareable,
            Ok((keep(Guest, SharedOwned, SB, SO), Borrows::OwnerReadWrite))),
        // unshare: guest (SB, SO) with the host as the only borrower, unpinned -> (-, O).
        row(Operation::Unshare, Guest, &[SharedOwned], [Clear, Any, Any, Any], Anything,
            Err(Error::WrongState)),
        row(Operation::Unshare, Guest, &[SharedOwned], [Any, Any, Set, Any], Anything,
            Err(Error::WrongState)),
        row(Operation::Unshare, Guest, &[SharedOwned], [Set, Any, Clear, Set], Anything,
            Err(Error::Pinned)),
        row(Operation::Unshare, Guest, &[SharedOwned], [Set, Any, Clear, Clear], Anything,
            plain(keep(Guest, Owned, NONE, O))),
        // relinquish: guest (-, O), unpinned -> host (O, -), zeroed; or a lent frame
        // (L, SB) -> (L, -).
        row(Operation::Relinquish, Guest, &[Owned], [Any, Any, Any, Set], Anything,
            Err(Error::Pinned)),
        row(Operation::Relinquish, Guest, &[Owned], [Any, Any, Any, Clear], Anything,
            plain(TO_HOST_ZEROED)),
        row(Operation::Relinquish, Host, &[Lent], [Any, Set, Any, Any], Anything,
            plain(keep(Host, Lent, LENT, NONE))),
        // share with guest: host (O or SO, -) -> (SO, SB), with rights within the owner's.
        row(Operation::ShareWithGuest, Host, &[Owned, SharedOwned], [Any, Set, Any, Any], Anything,
            Err(Error::AlreadyBorrowed)),
        row(Operation::ShareWithGuest, Host, &[Owned, SharedOwned], [Any, Clear, Any, Any], Beyond,
            Err(Error::InvalidRights)),
        row(Operation::ShareWithGuest, Host, &[Owned, SharedOwned], [Any, Clear, Any, Any], Within,
            Ok((keep(Host, SharedOwned, SO, SB), Borrows::Requested))),
        // unshare from guest: host (SO, SB), unpinned -> (O, -), or (SO, -) if others borrow.
        row(Operation::UnshareFromGuest, Host, &[SharedOwned], [Any, Clear, Any, Any], Anything,
            Err(Error::WrongState)),
        row(Operation::UnshareFromGuest, Host, &[SharedOwned], [Any, Set, Any, Set], Anything,
            Err(Error::Pinned)),
        row(Operation::UnshareFromGuest, Host, &[SharedOwned], [Any, Set, Set, Clear], Anything,
            plain(keep(Host, SharedOwned, SO, NONE))),
        row(Operation::UnshareFromGuest, Host, &[SharedOwned], [Any, Set, Clear, Clear], Anything,
            plain(keep(Host, Owned, O, NONE))),
        // lend: host (O, -), unpinned -> (L, SB), with rights within the owner's.
        row(Operation::Lend, Host, &[Owned], [Any, Any, Any, Set], Anything, Err(Error::Pinned)),
        row(Operation::Lend, Host, &[Owned], [Any, Any, Any, Clear], Beyond,
            Err(Error::InvalidRights)),
        row(Operation::Lend, Host, &[Owned], [Any, Any, Any, Clear], Within,
            Ok((keep(Host, Lent, LENT, SB), Borrows::Requested))),
        // reclaim: host (L, -), nobody borrowing any more -> (O, -).
        row(Operation::Reclaim, Host, &[Lent], [Any, Set, Any, Any], Anything,
            Err(Error::AlreadyBorrowed)),
        row(Operation::Reclaim, Host, &[Lent], [Any, Any, Set, Any], Anything,
            Err(Error::AlreadyBorrowed)),
        row(Operation::Reclaim, Host, &[Lent], [Any, Clear, Clear, Any], Anything,
            plain(keep(Host, Owned, O, NONE))),
        // teardown of a dead guest, whatever the pins: its frames go home zeroed...
        row(Operation::Teardown, Guest, &[Owned], [Any, Any, Any, Any], Anything,
            plain(TO_HOST_ZEROED)),
        // ...unless other domains (boot-time PD sharing) still borrow them;
        row(Operation::Teardown, Guest, &[SharedOwned], [Any, Any, Set, Any], Anything,
            Err(Error::WrongState)),
        row(Operation::Teardown, Guest, &[SharedOwned], [Any, Any, Clear, Any], Anything,
            plain(TO_HOST_ZEROED)),
        // the host's frames it borrowed are simply dropped.
        row(Operation::Teardown, Host, &[SharedOwned], [Any, Set, Set, Any], Anything,
            plain(keep(Host, SharedOwned, SO, NONE))),
        row(Operation::Teardown, Host, &[SharedOwned], [Any, Set, Clear, Any], Anything,
            plain(keep(Host, Owned, O, NONE))),
        row(Operation::Teardown, Host, &[Lent], [Any, Set, Any, Any], Anything,
            plain(keep(Host, Lent, LENT, NONE))),
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

    /// Every set of rights (the three bits).
    fn every_rights() -> impl Iterator<Item = Rights> + Clone {
        (0..8u8).map(Rights::from_bits_truncate)
    }

    /// Every view: each owner and state with each of the 16 flag combinations and each set of
    /// owner rights.
    fn every_view() -> impl Iterator<Item = FrameView> {
        OWNERS.into_iter().flat_map(|owner| {
            STATES.into_iter().flat_map(move |state| {
                (0..16u8).flat_map(move |bits| {
                    every_rights().map(move |owner_rights| FrameView {
                        state,
                        owner,
                        host_borrows: bits & 1 != 0,
                        guest_borrows: bits & 2 != 0,
                        other_borrowers: bits & 4 != 0,
                        pinned: bits & 8 != 0,
                        owner_rights,
                    })
                })
            })
        })
    }

    fn matches(row: &Row, operation: Operation, view: FrameView, requested: Rights) -> bool {
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
            && row.grant.admits(view.owner_rights, requested)
    }

    fn expected(row: &Row, view: FrameView, requested: Rights) -> Result<Transition, Error> {
        row.answer.map(|(transition, borrows)| Transition {
            borrower_rights: match borrows {
                Borrows::Nothing => Rights::empty(),
                Borrows::Requested => requested,
                Borrows::OwnerReadWrite => view.owner_rights & Rights::READ_WRITE,
            },
            ..transition
        })
    }

    #[test]
    fn every_operation_on_every_view_gets_the_tabled_answer() {
        let mut used = [0usize; TABLE.len()];
        let mut accepted = [0usize; OPERATIONS.len()];
        for (index, operation) in OPERATIONS.into_iter().enumerate() {
            for view in every_view() {
                for requested in every_rights() {
                    let expected = match TABLE
                        .iter()
                        .position(|row| matches(row, operation, view, requested))
                    {
                        Some(row) => {
                            used[row] += 1;
                            expected(&TABLE[row], view, requested)
                        }
                        None => Err(Error::WrongState),
                    };
                    let answer = decide(operation, view, requested);
                    assert_eq!(
                        answer, expected,
                        "{operation:?} on {view:?} for {requested:?}"
                    );
                    accepted[index] += usize::from(answer.is_ok());
                }
            }
        }
        // Every row is reachable (a row shadowed by an earlier one would test nothing).
        for (row, &count) in used.iter().enumerate() {
            assert!(count > 0, "row {row} of the table never applies");
        }
        // Accepted combinations per operation, counted from the table by hand: flags a row
        // leaves free double the count (16 flag combinations per owner and state), and each is
        // tried with the 8 owner rights and the 8 requested rights (64 pairs). Of those pairs, 6
        // owner rights can be shared (read or write: 6 * 8 pairs), and 19 grant something
        // within the owner's rights (1 + 3 + 3 non-empty subsets of the 1-, 2- and 3-right sets
        // and their 1, 3 and 7: 3 * 1 + 3 * 3 + 1 * 7).
        assert_eq!(
            accepted,
            [
                8 * 64,                // donate: host-owned, unpinned
                16 * 6 * 8,            // share: guest-owned, any flags, shareable rights
                2 * 64,                // unshare: host borrows, no other borrower, unpinned
                (8 + 8) * 64,          // relinquish: guest-owned unpinned; lent, guest borrowing
                (8 + 8) * 19,          // share with guest: O or SO, guest not borrowing yet
                4 * 64,                // unshare from guest: guest borrows, unpinned
                8 * 19,                // lend: host-owned, unpinned
                4 * 64,                // reclaim: lent, nobody borrowing
                (16 + 8 + 8 + 8) * 64, // teardown: guest O; guest SO alone; host SO; host Lent
            ]
        );
    }

    fn view(owner: Holder, state: FrameState) -> FrameView {
        FrameView {
            state,
            owner,
            host_borrows: false,
            guest_borrows: false,
            other_borrowers: false,
            pinned: false,
            owner_rights: Rights::READ_WRITE,
        }
    }

    #[test]
    fn the_legal_requests_of_the_module_table_are_accepted() {
        // Liveness, one consistent view per row of the module's table: a legal request that is
        // refused is a bug even though refusing is always safe.
        let with = |owner, state, host_borrows, guest_borrows| FrameView {
            host_borrows,
            guest_borrows,
            ..view(owner, state)
        };
        let legal = [
            (Operation::Donate, with(Host, Owned, false, false)),
            (Operation::Share, with(Guest, Owned, false, false)),
            (Operation::Unshare, with(Guest, SharedOwned, true, false)),
            (Operation::Relinquish, with(Guest, Owned, false, false)),
            (Operation::Relinquish, with(Host, Lent, false, true)),
            (Operation::ShareWithGuest, with(Host, Owned, false, false)),
            (
                Operation::ShareWithGuest,
                with(Host, SharedOwned, false, false),
            ),
            (
                Operation::UnshareFromGuest,
                with(Host, SharedOwned, false, true),
            ),
            (Operation::Lend, with(Host, Owned, false, false)),
            (Operation::Reclaim, with(Host, Lent, false, false)),
            (Operation::Teardown, with(Guest, Owned, false, false)),
            (Operation::Teardown, with(Guest, SharedOwned, true, false)),
            (Operation::Teardown, with(Host, SharedOwned, false, true)),
            (Operation::Teardown, with(Host, Lent, false, true)),
        ];
        for (operation, view) in legal {
            assert!(
                decide(operation, view, Rights::READ).is_ok(),
                "{operation:?} on {view:?} must be accepted"
            );
        }
    }

    #[test]
    fn a_share_gives_the_host_at_most_the_guest_rights_and_never_execute() {
        let share = |owner_rights| {
            decide(
                Operation::Share,
                FrameView {
                    owner_rights,
                    ..view(Guest, Owned)
                },
                Rights::ALL,
            )
            .map(|transition| transition.borrower_rights)
        };
        assert_eq!(share(Rights::READ), Ok(Rights::READ));
        assert_eq!(share(Rights::READ | Rights::EXECUTE), Ok(Rights::READ));
        assert_eq!(share(Rights::ALL), Ok(Rights::READ_WRITE));
        assert_eq!(share(Rights::EXECUTE), Err(Error::InvalidRights));
        // A grant to the guest is the rights asked for, within the owner's.
        let grant = |operation, requested| {
            decide(operation, view(Host, Owned), requested).map(|t| t.borrower_rights)
        };
        assert_eq!(
            grant(Operation::ShareWithGuest, Rights::READ),
            Ok(Rights::READ)
        );
        assert_eq!(
            grant(Operation::Lend, Rights::READ_WRITE),
            Ok(Rights::READ_WRITE)
        );
        assert_eq!(
            grant(Operation::Lend, Rights::ALL),
            Err(Error::InvalidRights)
        );
        assert_eq!(
            grant(Operation::ShareWithGuest, Rights::empty()),
            Err(Error::InvalidRights)
        );
    }

    #[test]
    fn share_of_a_borrowed_frame_is_refused() {
        // The guest borrows a host frame: it cannot share it onwards.
        let borrowed = FrameView {
            guest_borrows: true,
            ..view(Host, SharedOwned)
        };
        assert_eq!(
            decide(Operation::Share, borrowed, Rights::READ),
            Err(Error::WrongState)
        );
        assert_eq!(
            decide(Operation::Relinquish, borrowed, Rights::READ),
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
        let rights = Rights::READ;
        assert_eq!(
            decide(Operation::Unshare, pinned(Guest, SharedOwned), rights),
            Err(Error::Pinned)
        );
        assert_eq!(
            decide(Operation::Donate, pinned(Host, Owned), rights),
            Err(Error::Pinned)
        );
        assert_eq!(
            decide(Operation::Relinquish, pinned(Guest, Owned), rights),
            Err(Error::Pinned)
        );
        // Sharing more is fine while pinned.
        assert!(decide(Operation::Share, pinned(Guest, Owned), rights).is_ok());
    }

    #[test]
    fn only_relinquish_and_teardown_zero() {
        let mut operations = Operation::REQUESTS.to_vec();
        operations.push(Operation::Teardown);
        for operation in operations {
            for view in every_view() {
                let Ok(transition) = decide(operation, view, Rights::READ) else {
                    continue;
                };
                if transition.zero {
                    assert!(matches!(
                        operation,
                        Operation::Relinquish | Operation::Teardown
                    ));
                    assert_eq!(view.owner, Guest, "only frames leaving the guest");
                }
                assert!(matches!(transition.owner, Host | Guest));
                assert!(view.owner == Host || view.owner == Guest);
            }
        }
    }
}
