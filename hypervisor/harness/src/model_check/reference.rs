//! The reference model of the ownership rules: plain maps, no page tables, no blocks, no
//! side-table links.
//!
//! Written from DESIGN.md 4 and the transition table in [`frameshift_core::ownership`]'s module doc,
//! without calling [`frameshift_core::ownership::decide`] or any engine code: the model checker and the
//! differential test run every request on the engine and on this model and require the same
//! answer (accepted, or refused with the same [`Error`]) and the same resulting state. A legal
//! request the engine wrongly refuses is therefore a failure, not only an unsafe acceptance.
//!
//! What the model answers, in the order it checks (the first failure is the answer):
//! 1. the pair: the guest exists ([`Error::NoSuchDomain`]), is a guest of this host
//!    ([`Error::NotLinked`]), and is alive unless the request is a reclaim
//!    ([`Error::DomainDead`]);
//! 2. the range: page aligned ([`Error::Misaligned`]), `1..=MAX_RANGE_PAGES` pages without wrap
//!    ([`Error::InvalidRange`]), inside the guest's window ([`Error::IpaOutOfRange`]);
//! 3. every page in order, all or nothing:
//!    - where the caller holds the frame: the host at the window position for donate, share to
//!      guest and lend (nothing there: [`Error::NotMapped`], a lent-away annotation:
//!      [`Error::WrongState`]); the host's lent-away annotation for reclaim (a mapping there:
//!      [`Error::WrongState`]); the guest at the IPA or, in split mode, its alias for the rest
//!      ([`Error::NotMapped`]);
//!    - the state rule of the table ([`Error::WrongState`], [`Error::Pinned`],
//!      [`Error::AlreadyBorrowed`]), rights included: granted rights must be non-empty and
//!      within the owner's, and a guest's share gives the host the guest's rights less execute,
//!      which must not be empty ([`Error::InvalidRights`]);
//!    - a side that gains a mapping must have nothing else there ([`Error::AlreadyMapped`]);
//! 4. capacity: the borrower side table ([`Error::BorrowerTableFull`]), whose use the model
//!    counts itself (every borrower after a frame's first takes one record), then the table pool
//!    ([`Error::OutOfTableMemory`]), which the caller judges (the model has no tables; see
//!    [`crate::model_check::table_pages_to_reserve`]).
//!
//! Teardown is one step per page the dead guest still maps, each all-or-nothing; a refused
//! page stays and the first refusal is the answer. (The engine works per leaf. In the layouts
//! the model checker and the differential test use, the frames of a guest's block leaf are all
//! in one state, so the answers agree; only boot-time sharing with a third domain makes frames
//! differ, and those are lone pages.)

extern crate std;

use std::collections::BTreeMap;
use std::rc::Rc;
use std::vec;
use std::vec::Vec;

use frameshift_core::addr::{Ipa, PhysAddr, PAGE_SIZE};
use frameshift_core::descriptor::{PageState, Rights};
use frameshift_core::domain::{ConversionMode, DomainId, GuestLink};
use frameshift_core::engine::{BootSharing, Request, MAX_RANGE_PAGES};
use frameshift_core::error::Error;
use frameshift_core::frame_table::FrameState;
use frameshift_core::ownership::Operation;
use frameshift_core::small_system::{Layout, FRAME_BASE};

/// What a domain sees at one IPA.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum View {
    /// A mapping of a frame with these rights in this state.
    Mapped(PhysAddr, Rights, PageState),
    /// The owner's lent-away marker for this frame.
    LentAway(PhysAddr),
}

/// One frame's record.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Frame {
    /// The owner, if any.
    pub owner: Option<DomainId>,
    /// The frame's state.
    pub state: FrameState,
    /// The owner's rights.
    pub owner_rights: Rights,
    /// Borrowers and the rights granted to each.
    pub borrowers: BTreeMap<DomainId, Rights>,
    /// In-flight uses.
    pub pins: u8,
}

impl Frame {
    /// A frame nobody owns.
    pub fn free() -> Self {
        Self {
            owner: None,
            state: FrameState::Free,
            owner_rights: Rights::empty(),
            borrowers: BTreeMap::new(),
            pins: 0,
        }
    }
}

/// Everything the model knows, and what the engine's state is compared with.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct State {
    /// Frame records, by frame index.
    pub frames: Vec<Frame>,
    /// Every mapping and lent-away annotation of every domain, per page.
    pub views: BTreeMap<(DomainId, Ipa), View>,
    /// Whether each guest is alive.
    pub alive: BTreeMap<DomainId, bool>,
}

/// The model: the system's layout, its side-table capacity and its state.
#[derive(Clone, Debug)]
pub struct Model {
    layout: Rc<Layout>,
    side_table: usize,
    /// The state.
    pub state: State,
}

impl PartialEq for Model {
    fn eq(&self, other: &Self) -> bool {
        self.state == other.state
    }
}

impl Eq for Model {}

/// One page's accepted change.
#[derive(Clone, Debug)]
struct Change {
    frame: usize,
    remove: Vec<(DomainId, Ipa)>,
    add: Vec<((DomainId, Ipa), View)>,
    record: Frame,
    zero: bool,
    /// The change adds a borrower to a frame that has one already (one side-table record).
    side_record: bool,
    /// The descriptor slots the change writes, each with whether it writes something (a
    /// mapping or an annotation) or only clears: the host's window slot always, the guest's
    /// old slot if it moves or goes, its new slot if it gets one.
    writes: Vec<Write>,
    /// What the engine's commit reads from the page (two pages with the same signature over
    /// contiguous frames are converted alike).
    signature: Signature,
}

/// One descriptor slot a change writes: the domain, the IPA, and whether it maps something.
pub type Write = (DomainId, Ipa, bool);

/// Everything about one page that the engine's commit derives descriptors and records from:
/// what each side ends with, the new record's owner, state and rights, who borrowed before with
/// which rights, the owner's rights before, and where the guest's slot was and will be.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Signature {
    host: After,
    guest: After,
    zero: bool,
    owner_is_guest: bool,
    state: FrameState,
    owner_rights: Rights,
    rights_before: Rights,
    host_borrowed: Option<Rights>,
    guest_borrowed: Option<Rights>,
    old_at: Option<bool>,
    new_at: Option<bool>,
}

/// An accepted request, page by page, not yet applied.
#[derive(Clone, Debug)]
pub struct Plan {
    changes: Vec<Change>,
}

impl Plan {
    /// Side-table records the plan takes.
    pub fn side_records(&self) -> usize {
        self.changes
            .iter()
            .filter(|change| change.side_record)
            .count()
    }

    /// Every descriptor slot the plan writes, page by page (see [`Change`]'s `writes`).
    pub fn writes(&self) -> impl Iterator<Item = Write> + '_ {
        self.changes
            .iter()
            .flat_map(|change| change.writes.iter().copied())
    }

    /// Whether the pages form one run as the engine groups them: the same signature on every
    /// page, over frames that follow each other.
    pub fn uniform(&self) -> bool {
        let Some(first) = self.changes.first() else {
            return false;
        };
        self.changes.iter().enumerate().all(|(offset, change)| {
            change.signature == first.signature && change.frame == first.frame + offset
        })
    }

    /// The physical address of the first page's frame.
    pub fn first_frame(&self) -> Option<PhysAddr> {
        self.changes
            .first()
            .map(|change| Model::frame_address(change.frame))
    }

    /// Whether the host's side ends lent away (annotations are per page: never a block).
    pub fn host_lent(&self) -> bool {
        self.changes
            .first()
            .is_some_and(|change| change.signature.host == After::Lent)
    }
}

/// What the frame record says about one domain pair.
struct Relation {
    host_owns: bool,
    guest_owns: bool,
    host_borrows: bool,
    guest_borrows: bool,
    others_borrow: bool,
    pinned: bool,
}

/// What one side ends up with for the frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum After {
    Nothing,
    Lent,
    Map(Rights, PageState),
}

/// One page's accepted rule: the new record and what host and guest see afterwards.
struct Rule {
    record: Frame,
    host: After,
    guest: After,
    zero: bool,
}

impl Model {
    /// Boots the model from `layout`: each boot mapping, in order, page by page. A `Private`
    /// mapping takes a free frame (`Owned`); a `Shareable` one takes a free frame as its owner
    /// (`SharedOwned`) or, if the frame is shared already, borrows it (`SharedBorrowed`).
    /// Memory outside the frame table is passed through.
    pub fn boot(layout: Rc<Layout>) -> Result<Self, Error> {
        let side_table = layout.side_table;
        let mut state = State {
            frames: vec![Frame::free(); layout.frames],
            views: BTreeMap::new(),
            alive: layout
                .guests
                .iter()
                .map(|&(guest, _)| (guest, true))
                .collect(),
        };
        for mapping in &layout.boot {
            for page in 0..mapping.pages {
                let pa = PhysAddr(mapping.pa.get() + page * PAGE_SIZE);
                let ipa = Ipa(mapping.ipa.get() + page * PAGE_SIZE);
                let key = (mapping.domain, ipa);
                let Some(index) = frame_index(&layout, pa) else {
                    let view = View::Mapped(pa, mapping.rights, PageState::Passthrough);
                    state.views.insert(key, view);
                    continue;
                };
                let frame = &mut state.frames[index];
                let page_state = match (frame.state, mapping.sharing) {
                    (FrameState::Free, BootSharing::Private) => PageState::Owned,
                    (FrameState::Free, BootSharing::Shareable) => PageState::SharedOwned,
                    (FrameState::SharedOwned, BootSharing::Shareable) => PageState::SharedBorrowed,
                    _ => return Err(Error::WrongState),
                };
                if page_state == PageState::SharedBorrowed {
                    frame.borrowers.insert(mapping.domain, mapping.rights);
                } else {
                    frame.owner = Some(mapping.domain);
                    frame.owner_rights = mapping.rights;
                    frame.state = if page_state == PageState::Owned {
                        FrameState::Owned
                    } else {
                        FrameState::SharedOwned
                    };
                }
                state
                    .views
                    .insert(key, View::Mapped(pa, mapping.rights, page_state));
            }
        }
        Ok(Self {
            layout,
            side_table,
            state,
        })
    }

    /// Side-table records still free: every borrower after a frame's first takes one.
    pub fn free_side_records(&self) -> usize {
        let used: usize = self
            .state
            .frames
            .iter()
            .map(|frame| frame.borrowers.len().saturating_sub(1))
            .sum();
        self.side_table.saturating_sub(used)
    }

    /// The address of frame `index`.
    pub fn frame_address(index: usize) -> PhysAddr {
        PhysAddr(FRAME_BASE.get() + index as u64 * PAGE_SIZE)
    }

    fn link(&self, guest: DomainId) -> Option<GuestLink> {
        self.layout
            .guests
            .iter()
            .find(|(id, _)| *id == guest)
            .map(|&(_, link)| link)
    }

    /// Decides a request by the rules (steps 1-3 of the module doc), without capacity.
    pub fn plan(&self, request: &Request) -> Result<Plan, Error> {
        if !self.layout.domains.contains(&request.guest) {
            return Err(Error::NoSuchDomain);
        }
        let link = self.link(request.guest).ok_or(Error::NotLinked)?;
        if link.host != request.host {
            return Err(Error::NotLinked);
        }
        let alive = self
            .state
            .alive
            .get(&request.guest)
            .copied()
            .unwrap_or(false);
        match request.operation {
            Operation::Teardown if alive => return Err(Error::WrongState),
            Operation::Teardown | Operation::Reclaim => {}
            _ if !alive => return Err(Error::DomainDead),
            _ => {}
        }
        if !request.ipa.is_page_aligned() {
            return Err(Error::Misaligned);
        }
        if request.pages == 0 || request.pages > MAX_RANGE_PAGES {
            return Err(Error::InvalidRange);
        }
        let first = match link.mode {
            ConversionMode::History => request.ipa,
            ConversionMode::Split => request.ipa.private_ipa(),
        };
        let last = first
            .checked_add_pages(request.pages - 1)
            .ok_or(Error::InvalidRange)?;
        if link.window.host_ipa(first).is_none() || link.window.host_ipa(last).is_none() {
            return Err(Error::IpaOutOfRange);
        }
        let changes = (0..request.pages)
            .map(|page| self.page(request, link, Ipa(first.get() + page * PAGE_SIZE)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Plan { changes })
    }

    /// Applies an accepted plan; returns the frames it zeroes.
    pub fn commit(&mut self, plan: Plan) -> Vec<PhysAddr> {
        let mut zeroed = Vec::new();
        for change in plan.changes {
            for key in change.remove {
                self.state.views.remove(&key);
            }
            for (key, view) in change.add {
                self.state.views.insert(key, view);
            }
            if change.zero {
                zeroed.push(Self::frame_address(change.frame));
            }
            self.state.frames[change.frame] = change.record;
        }
        zeroed
    }

    /// A whole request (steps 1-4): `pool_suffices` says whether the engine's table pool can
    /// reserve what the request needs. Returns the frames it zeroes.
    pub fn request(
        &mut self,
        request: &Request,
        pool_suffices: impl FnOnce() -> bool,
    ) -> Result<Vec<PhysAddr>, Error> {
        let plan = self.plan(request)?;
        if plan.side_records() > self.free_side_records() {
            return Err(Error::BorrowerTableFull);
        }
        if !pool_suffices() {
            return Err(Error::OutOfTableMemory);
        }
        Ok(self.commit(plan))
    }

    /// Tears a guest down: it dies, then every page it maps is returned one by one;
    /// `pool_suffices(ipa)` says whether the table pool can reserve the step for the page the
    /// guest maps at `ipa`. Returns the first refusal and the frames zeroed.
    pub fn teardown(
        &mut self,
        guest: DomainId,
        mut pool_suffices: impl FnMut(Ipa) -> bool,
    ) -> (Result<(), Error>, Vec<PhysAddr>) {
        if !self.layout.domains.contains(&guest) {
            return (Err(Error::NoSuchDomain), Vec::new());
        }
        let Some(link) = self.link(guest) else {
            return (Err(Error::NotLinked), Vec::new());
        };
        self.state.alive.insert(guest, false);
        let held: Vec<Ipa> = self
            .state
            .views
            .range((guest, Ipa(0))..=(guest, Ipa(u64::MAX)))
            .map(|(&(_, ipa), _)| ipa)
            .collect();
        let mut result = Ok(());
        let mut zeroed = Vec::new();
        for ipa in held {
            let request = Request {
                operation: Operation::Teardown,
                host: link.host,
                guest,
                ipa,
                pages: 1,
                rights: Rights::empty(),
            };
            let step = self.plan(&request).and_then(|plan| {
                if pool_suffices(ipa) {
                    Ok(plan)
                } else {
                    Err(Error::OutOfTableMemory)
                }
            });
            match step {
                Ok(plan) => zeroed.extend(self.commit(plan)),
                Err(error) => result = result.and(Err(error)),
            }
        }
        (result, zeroed)
    }

    /// Takes a pin: the frame must be tracked and owned, and the count below 255.
    pub fn pin(&mut self, pa: PhysAddr) -> Result<(), Error> {
        let index = frame_index(&self.layout, pa).ok_or(Error::NotTracked)?;
        let frame = &mut self.state.frames[index];
        if frame.owner.is_none() || frame.pins == u8::MAX {
            return Err(Error::WrongState);
        }
        frame.pins += 1;
        Ok(())
    }

    /// Drops a pin: there must be one.
    pub fn unpin(&mut self, pa: PhysAddr) -> Result<(), Error> {
        let index = frame_index(&self.layout, pa).ok_or(Error::NotTracked)?;
        let frame = &mut self.state.frames[index];
        if frame.pins == 0 {
            return Err(Error::WrongState);
        }
        frame.pins -= 1;
        Ok(())
    }

    /// One page of a request (step 3 of the module doc).
    fn page(&self, request: &Request, link: GuestLink, ipa: Ipa) -> Result<Change, Error> {
        use Operation as Op;
        let (host, guest) = (request.host, request.guest);
        let split = link.mode == ConversionMode::Split;
        let host_ipa = link.window.host_ipa(ipa).ok_or(Error::IpaOutOfRange)?;
        let host_view = self.state.views.get(&(host, host_ipa)).copied();
        let alias = ipa.shared_alias();
        let private = self.state.views.get(&(guest, ipa)).copied();
        let aliased = if split {
            self.state.views.get(&(guest, alias)).copied()
        } else {
            None
        };
        let guest_view = match (private, aliased) {
            (None, None) => None,
            (Some(view), None) => Some((ipa, view)),
            (None, Some(view)) => Some((alias, view)),
            (Some(_), Some(_)) => return Err(Error::WrongState),
        };
        // Where the caller holds the frame.
        let pa = match request.operation {
            Op::Donate | Op::ShareWithGuest | Op::Lend => match host_view {
                Some(View::Mapped(pa, _, _)) => pa,
                Some(View::LentAway(_)) => return Err(Error::WrongState),
                None => return Err(Error::NotMapped),
            },
            Op::Reclaim => match host_view {
                Some(View::LentAway(pa)) => pa,
                Some(View::Mapped(..)) => return Err(Error::WrongState),
                None => return Err(Error::NotMapped),
            },
            _ => match guest_view {
                Some((_, View::Mapped(pa, _, _))) => pa,
                _ => return Err(Error::NotMapped),
            },
        };
        let index = frame_index(&self.layout, pa).ok_or(Error::NotTracked)?;
        let frame = &self.state.frames[index];
        let relation = Relation {
            host_owns: frame.owner == Some(host),
            guest_owns: frame.owner == Some(guest),
            host_borrows: frame.borrowers.contains_key(&host),
            guest_borrows: frame.borrowers.contains_key(&guest),
            others_borrow: frame.borrowers.keys().any(|&d| d != host && d != guest),
            pinned: frame.pins > 0,
        };
        let rule = Self::rule(request, frame, &relation)?;
        // A side that gains a mapping must have nothing else there.
        let guest_holds = matches!(guest_view, Some((_, View::Mapped(held, _, _))) if held == pa);
        if rule.guest != After::Nothing && !guest_holds && guest_view.is_some() {
            return Err(Error::AlreadyMapped);
        }
        let host_holds = matches!(
            host_view,
            Some(View::Mapped(held, _, _) | View::LentAway(held)) if held == pa
        );
        if rule.host != After::Nothing && !host_holds && host_view.is_some() {
            return Err(Error::AlreadyMapped);
        }
        // The views: remove what each side held, add what it holds afterwards.
        let mut remove = Vec::new();
        if let Some((at, _)) = guest_view.filter(|_| guest_holds) {
            remove.push((guest, at));
        }
        if host_holds {
            remove.push((host, host_ipa));
        }
        let mut add = Vec::new();
        match rule.host {
            After::Nothing => {}
            After::Lent => add.push(((host, host_ipa), View::LentAway(pa))),
            After::Map(rights, state) => {
                add.push(((host, host_ipa), View::Mapped(pa, rights, state)))
            }
        }
        if let After::Map(rights, state) = rule.guest {
            let at = if split && state != PageState::Owned {
                alias
            } else {
                ipa
            };
            add.push(((guest, at), View::Mapped(pa, rights, state)));
        }
        let side_record =
            rule.record.borrowers.len() > frame.borrowers.len() && !frame.borrowers.is_empty();
        // The slots the engine writes: the host's always (a clear when it keeps nothing), the
        // guest's old one when it moves or goes, its new one.
        let new_at = add
            .iter()
            .find(|((domain, _), _)| *domain == guest)
            .map(|((_, at), _)| *at);
        let old_at = guest_view.filter(|_| guest_holds).map(|(at, _)| at);
        let mut writes = vec![(host, host_ipa, rule.host != After::Nothing)];
        if let Some(old) = old_at.filter(|&old| Some(old) != new_at) {
            writes.push((guest, old, false));
        }
        if let Some(new) = new_at {
            writes.push((guest, new, true));
        }
        let signature = Signature {
            host: rule.host,
            guest: rule.guest,
            zero: rule.zero,
            owner_is_guest: rule.record.owner == Some(guest),
            state: rule.record.state,
            owner_rights: rule.record.owner_rights,
            rights_before: frame.owner_rights,
            host_borrowed: frame.borrowers.get(&host).copied(),
            guest_borrowed: frame.borrowers.get(&guest).copied(),
            old_at: old_at.map(Ipa::is_shared_alias),
            new_at: new_at.map(Ipa::is_shared_alias),
        };
        Ok(Change {
            frame: index,
            remove,
            add,
            record: rule.record,
            zero: rule.zero,
            side_record,
            writes,
            signature,
        })
    }

    /// The state rule of one frame (the table in `ownership`'s module doc).
    fn rule(request: &Request, frame: &Frame, relation: &Relation) -> Result<Rule, Error> {
        use FrameState::{Lent, Owned, SharedOwned};
        let (host, guest) = (request.host, request.guest);
        let mut record = frame.clone();
        // What the host and the guest see of the frame when they keep it as it is.
        let owner_view = |state| After::Map(frame.owner_rights, state);
        // The guest's frame goes back to the host, zeroed.
        let to_host_zeroed = |mut record: Frame| {
            record.owner = Some(host);
            record.state = Owned;
            record.owner_rights = Rights::READ_WRITE;
            record.borrowers.clear();
            Rule {
                record,
                host: After::Map(Rights::READ_WRITE, PageState::Owned),
                guest: After::Nothing,
                zero: true,
            }
        };
        // The guest stops borrowing a host frame: shared still if others borrow it.
        let guest_leaves = |mut record: Frame| {
            record.borrowers.remove(&guest);
            let (state, seen) = if record.borrowers.is_empty() {
                (Owned, PageState::Owned)
            } else {
                (SharedOwned, PageState::SharedOwned)
            };
            record.state = state;
            Rule {
                record,
                host: owner_view(seen),
                guest: After::Nothing,
                zero: false,
            }
        };
        let guest_rights = request.rights;
        // Granted rights must be non-empty and within the owner's.
        let grant_ok = !guest_rights.is_empty() && frame.owner_rights.contains(guest_rights);
        match request.operation {
            Operation::Donate if relation.host_owns && frame.state == Owned => {
                if relation.pinned {
                    return Err(Error::Pinned);
                }
                record.owner = Some(guest);
                record.owner_rights = Rights::ALL;
                Ok(Rule {
                    record,
                    host: After::Nothing,
                    guest: After::Map(Rights::ALL, PageState::Owned),
                    zero: false,
                })
            }
            Operation::Share if relation.guest_owns && frame.state == Owned => {
                // The host reads and writes a shared page at most as the guest can, and never
                // runs it.
                let host_rights = frame.owner_rights & Rights::READ_WRITE;
                if host_rights.is_empty() {
                    return Err(Error::InvalidRights);
                }
                record.state = SharedOwned;
                record.borrowers.insert(host, host_rights);
                Ok(Rule {
                    record,
                    host: After::Map(host_rights, PageState::SharedBorrowed),
                    guest: owner_view(PageState::SharedOwned),
                    zero: false,
                })
            }
            Operation::Unshare if relation.guest_owns && frame.state == SharedOwned => {
                if !relation.host_borrows || relation.others_borrow {
                    return Err(Error::WrongState);
                }
                if relation.pinned {
                    return Err(Error::Pinned);
                }
                record.state = Owned;
                record.borrowers.clear();
                Ok(Rule {
                    record,
                    host: After::Nothing,
                    guest: owner_view(PageState::Owned),
                    zero: false,
                })
            }
            Operation::Relinquish if relation.guest_owns && frame.state == Owned => {
                if relation.pinned {
                    return Err(Error::Pinned);
                }
                Ok(to_host_zeroed(record))
            }
            Operation::Relinquish
                if relation.host_owns && frame.state == Lent && relation.guest_borrows =>
            {
                record.borrowers.remove(&guest);
                Ok(Rule {
                    record,
                    host: After::Lent,
                    guest: After::Nothing,
                    zero: false,
                })
            }
            Operation::ShareWithGuest
                if relation.host_owns && matches!(frame.state, Owned | SharedOwned) =>
            {
                if relation.guest_borrows {
                    return Err(Error::AlreadyBorrowed);
                }
                if !grant_ok {
                    return Err(Error::InvalidRights);
                }
                record.state = SharedOwned;
                record.borrowers.insert(guest, guest_rights);
                Ok(Rule {
                    record,
                    host: owner_view(PageState::SharedOwned),
                    guest: After::Map(guest_rights, PageState::SharedBorrowed),
                    zero: false,
                })
            }
            Operation::UnshareFromGuest if relation.host_owns && frame.state == SharedOwned => {
                if !relation.guest_borrows {
                    return Err(Error::WrongState);
                }
                if relation.pinned {
                    return Err(Error::Pinned);
                }
                Ok(guest_leaves(record))
            }
            Operation::Lend if relation.host_owns && frame.state == Owned => {
                if relation.pinned {
                    return Err(Error::Pinned);
                }
                if !grant_ok {
                    return Err(Error::InvalidRights);
                }
                record.state = Lent;
                record.borrowers.insert(guest, guest_rights);
                Ok(Rule {
                    record,
                    host: After::Lent,
                    guest: After::Map(guest_rights, PageState::SharedBorrowed),
                    zero: false,
                })
            }
            Operation::Reclaim if relation.host_owns && frame.state == Lent => {
                if !frame.borrowers.is_empty() {
                    return Err(Error::AlreadyBorrowed);
                }
                record.state = Owned;
                Ok(Rule {
                    record,
                    host: owner_view(PageState::Owned),
                    guest: After::Nothing,
                    zero: false,
                })
            }
            Operation::Teardown if relation.guest_owns && frame.state == Owned => {
                Ok(to_host_zeroed(record))
            }
            Operation::Teardown if relation.guest_owns && frame.state == SharedOwned => {
                // Other holders (boot-time PD sharing) cannot be taken back from here.
                if relation.others_borrow {
                    return Err(Error::WrongState);
                }
                Ok(to_host_zeroed(record))
            }
            Operation::Teardown
                if relation.host_owns && frame.state == SharedOwned && relation.guest_borrows =>
            {
                Ok(guest_leaves(record))
            }
            Operation::Teardown
                if relation.host_owns && frame.state == Lent && relation.guest_borrows =>
            {
                record.borrowers.remove(&guest);
                Ok(Rule {
                    record,
                    host: After::Lent,
                    guest: After::Nothing,
                    zero: false,
                })
            }
            _ => Err(Error::WrongState),
        }
    }
}

/// The frame index of `pa` in `layout`'s frame table, if tracked.
fn frame_index(layout: &Layout, pa: PhysAddr) -> Option<usize> {
    let offset = pa.get().checked_sub(FRAME_BASE.get())?;
    let index = usize::try_from(offset / PAGE_SIZE).ok()?;
    (index < layout.frames).then_some(index)
}
