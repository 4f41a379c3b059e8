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
    use super::*;

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
            ..view(Holder::Host, FrameState::SharedOwned)
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
            decide(
                Operation::Unshare,
                pinned(Holder::Guest, FrameState::SharedOwned)
            ),
            Err(Error::Pinned)
        );
        assert_eq!(
            decide(Operation::Donate, pinned(Holder::Host, FrameState::Owned)),
            Err(Error::Pinned)
        );
        assert_eq!(
            decide(
                Operation::Relinquish,
                pinned(Holder::Guest, FrameState::Owned)
            ),
            Err(Error::Pinned)
        );
        // Sharing more is fine while pinned.
        assert!(decide(Operation::Share, pinned(Holder::Guest, FrameState::Owned)).is_ok());
    }

    #[test]
    fn only_relinquish_and_teardown_zero() {
        let mut operations = Operation::REQUESTS.to_vec();
        operations.push(Operation::Teardown);
        let owners = [Holder::Nobody, Holder::Host, Holder::Guest, Holder::Other];
        let states = [
            FrameState::Free,
            FrameState::Owned,
            FrameState::SharedOwned,
            FrameState::Lent,
        ];
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
                            assert_eq!(owner, Holder::Guest, "only frames leaving the guest");
                        }
                        assert!(matches!(transition.owner, Holder::Host | Holder::Guest));
                        assert!(owner == Holder::Host || owner == Holder::Guest);
                    }
                }
            }
        }
    }
}
