//! A deliberately simple reference model of the ownership rules: plain maps, no page tables,
//! no blocks, no side tables. Written from DESIGN.md 4 independently of the engine's
//! `ownership::decide`, so the differential test compares two readings of the same rules.

use std::collections::BTreeMap;

use frameshift_hypervisor::addr::{PAGE_SIZE, SHARED_ALIAS_BIT};
use frameshift_hypervisor::small_system::{self, FRAMES, FRAME_BASE, HOST, WINDOW_HOST_BASE};
use frameshift_hypervisor::{DomainId, FrameState, Ipa, PageState, PhysAddr, Rights};

/// What a domain sees at one IPA.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum View {
    /// A mapping of a frame with these rights in this state.
    Mapped(PhysAddr, Rights, PageState),
    /// The owner's lent-away marker for this frame.
    LentAway(PhysAddr),
}

/// One frame's record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Frame {
    pub(crate) owner: Option<DomainId>,
    pub(crate) state: FrameState,
    pub(crate) owner_rights: Rights,
    pub(crate) borrowers: BTreeMap<DomainId, Rights>,
    pub(crate) pins: u8,
}

/// A model operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    Donate,
    Share,
    Unshare,
    Relinquish,
    ShareWithGuest,
    UnshareFromGuest,
    Lend,
    Reclaim,
}

/// The model state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Model {
    pub(crate) frames: BTreeMap<PhysAddr, Frame>,
    pub(crate) views: BTreeMap<(DomainId, Ipa), View>,
    pub(crate) alive: BTreeMap<DomainId, bool>,
    /// Frames zeroed so far.
    pub(crate) zeroed: std::collections::BTreeSet<PhysAddr>,
}

/// Whether a guest uses split mode (guest 2 in the small system).
fn split(guest: DomainId) -> bool {
    guest == small_system::GUEST_SPLIT
}

fn window(ipa: Ipa) -> Option<Ipa> {
    small_system::window().host_ipa(ipa)
}

/// Where the guest sees a frame in `state`.
fn guest_at(guest: DomainId, ipa: Ipa, state: PageState) -> Ipa {
    if split(guest) && state != PageState::Owned {
        Ipa(ipa.get() | SHARED_ALIAS_BIT)
    } else {
        ipa
    }
}

/// The changes one page makes; computed first for every page, applied only if all succeed.
#[derive(Clone, Debug)]
struct Effect {
    remove: Vec<(DomainId, Ipa)>,
    add: Vec<((DomainId, Ipa), View)>,
    frame: (PhysAddr, Frame),
    zero: bool,
}

impl Model {
    /// Boot: the host owns every frame at its window position, read-write.
    pub(crate) fn boot() -> Self {
        let mut model = Model {
            frames: BTreeMap::new(),
            views: BTreeMap::new(),
            alive: BTreeMap::new(),
            zeroed: Default::default(),
        };
        for index in 0..FRAMES as u64 {
            let pa = PhysAddr(FRAME_BASE.get() + index * PAGE_SIZE);
            let frame = Frame {
                owner: Some(HOST),
                state: FrameState::Owned,
                owner_rights: Rights::READ_WRITE,
                borrowers: BTreeMap::new(),
                pins: 0,
            };
            model.frames.insert(pa, frame);
            let host_ipa = Ipa(WINDOW_HOST_BASE.get() + index * PAGE_SIZE);
            model.views.insert(
                (HOST, host_ipa),
                View::Mapped(pa, Rights::READ_WRITE, PageState::Owned),
            );
        }
        for domain in [HOST, small_system::GUEST_HISTORY, small_system::GUEST_SPLIT] {
            model.alive.insert(domain, true);
        }
        model
    }

    fn empty(&self, domain: DomainId, ipa: Ipa) -> bool {
        !self.views.contains_key(&(domain, ipa))
    }

    /// The guest's view of private IPA `ipa`: at the IPA or, in split mode, at its alias.
    fn guest_view(&self, guest: DomainId, ipa: Ipa) -> Option<(Ipa, View)> {
        if let Some(view) = self.views.get(&(guest, ipa)) {
            return Some((ipa, *view));
        }
        let alias = Ipa(ipa.get() | SHARED_ALIAS_BIT);
        if split(guest) {
            if let Some(view) = self.views.get(&(guest, alias)) {
                return Some((alias, *view));
            }
        }
        None
    }

    /// Pins a frame.
    pub(crate) fn pin(&mut self, pa: PhysAddr) -> bool {
        match self.frames.get_mut(&pa) {
            Some(frame) if frame.owner.is_some() && frame.pins < u8::MAX => {
                frame.pins += 1;
                true
            }
            _ => false,
        }
    }

    /// Unpins a frame.
    pub(crate) fn unpin(&mut self, pa: PhysAddr) -> bool {
        match self.frames.get_mut(&pa) {
            Some(frame) if frame.pins > 0 => {
                frame.pins -= 1;
                true
            }
            _ => false,
        }
    }

    /// One page of an operation.
    fn page(&self, op: Op, guest: DomainId, ipa: Ipa, rights: Rights) -> Option<Effect> {
        let host_ipa = window(ipa)?;
        let host_view = self.views.get(&(HOST, host_ipa)).copied();
        let guest_view = self.guest_view(guest, ipa);
        let both_guest_halves_empty = self.empty(guest, ipa)
            && (!split(guest) || self.empty(guest, Ipa(ipa.get() | SHARED_ALIAS_BIT)));
        let mapped =
            |domain, at, pa, rights, state| ((domain, at), View::Mapped(pa, rights, state));
        match op {
            Op::Donate => {
                let Some(View::Mapped(pa, _, PageState::Owned)) = host_view else {
                    return None;
                };
                let frame = self.frames.get(&pa)?;
                if frame.pins > 0 || !both_guest_halves_empty {
                    return None;
                }
                let mut new = frame.clone();
                new.owner = Some(guest);
                new.owner_rights = Rights::ALL;
                Some(Effect {
                    remove: vec![(HOST, host_ipa)],
                    add: vec![mapped(guest, ipa, pa, Rights::ALL, PageState::Owned)],
                    frame: (pa, new),
                    zero: false,
                })
            }
            Op::Share => {
                let (at, View::Mapped(pa, guest_rights, PageState::Owned)) = guest_view? else {
                    return None;
                };
                let frame = self.frames.get(&pa)?;
                if frame.owner != Some(guest) || host_view.is_some() {
                    return None;
                }
                let mut new = frame.clone();
                new.state = FrameState::SharedOwned;
                new.borrowers.insert(HOST, Rights::READ_WRITE);
                let alias = guest_at(guest, ipa, PageState::SharedOwned);
                Some(Effect {
                    remove: vec![(guest, at)],
                    add: vec![
                        mapped(guest, alias, pa, guest_rights, PageState::SharedOwned),
                        mapped(
                            HOST,
                            host_ipa,
                            pa,
                            Rights::READ_WRITE,
                            PageState::SharedBorrowed,
                        ),
                    ],
                    frame: (pa, new),
                    zero: false,
                })
            }
            Op::Unshare => {
                let (at, View::Mapped(pa, guest_rights, PageState::SharedOwned)) = guest_view?
                else {
                    return None;
                };
                let frame = self.frames.get(&pa)?;
                let only_host = frame.borrowers.len() == 1 && frame.borrowers.contains_key(&HOST);
                if frame.owner != Some(guest) || !only_host || frame.pins > 0 {
                    return None;
                }
                let mut new = frame.clone();
                new.state = FrameState::Owned;
                new.borrowers.clear();
                Some(Effect {
                    remove: vec![(guest, at), (HOST, host_ipa)],
                    add: vec![mapped(guest, ipa, pa, guest_rights, PageState::Owned)],
                    frame: (pa, new),
                    zero: false,
                })
            }
            Op::Relinquish => {
                let (at, view) = guest_view?;
                match view {
                    View::Mapped(pa, _, PageState::Owned) => {
                        let frame = self.frames.get(&pa)?;
                        if frame.owner != Some(guest) || frame.pins > 0 || host_view.is_some() {
                            return None;
                        }
                        let mut new = frame.clone();
                        new.owner = Some(HOST);
                        new.owner_rights = Rights::READ_WRITE;
                        Some(Effect {
                            remove: vec![(guest, at)],
                            add: vec![mapped(
                                HOST,
                                host_ipa,
                                pa,
                                Rights::READ_WRITE,
                                PageState::Owned,
                            )],
                            frame: (pa, new),
                            zero: true,
                        })
                    }
                    View::Mapped(pa, _, PageState::SharedBorrowed) => {
                        let frame = self.frames.get(&pa)?;
                        if frame.state != FrameState::Lent || frame.owner != Some(HOST) {
                            return None;
                        }
                        let mut new = frame.clone();
                        new.borrowers.remove(&guest);
                        Some(Effect {
                            remove: vec![(guest, at)],
                            add: vec![],
                            frame: (pa, new),
                            zero: false,
                        })
                    }
                    _ => None,
                }
            }
            Op::ShareWithGuest => {
                let Some(View::Mapped(pa, _, host_state)) = host_view else {
                    return None;
                };
                let frame = self.frames.get(&pa)?;
                let host_owns = frame.owner == Some(HOST)
                    && matches!(host_state, PageState::Owned | PageState::SharedOwned);
                let valid_rights = !rights.is_empty() && frame.owner_rights.contains(rights);
                if !host_owns
                    || frame.borrowers.contains_key(&guest)
                    || !both_guest_halves_empty
                    || !valid_rights
                {
                    return None;
                }
                let mut new = frame.clone();
                new.state = FrameState::SharedOwned;
                new.borrowers.insert(guest, rights);
                let at = guest_at(guest, ipa, PageState::SharedBorrowed);
                Some(Effect {
                    remove: vec![(HOST, host_ipa)],
                    add: vec![
                        mapped(
                            HOST,
                            host_ipa,
                            pa,
                            frame.owner_rights,
                            PageState::SharedOwned,
                        ),
                        mapped(guest, at, pa, rights, PageState::SharedBorrowed),
                    ],
                    frame: (pa, new),
                    zero: false,
                })
            }
            Op::UnshareFromGuest => {
                let (at, View::Mapped(pa, _, PageState::SharedBorrowed)) = guest_view? else {
                    return None;
                };
                let frame = self.frames.get(&pa)?;
                if frame.owner != Some(HOST)
                    || frame.state != FrameState::SharedOwned
                    || frame.pins > 0
                {
                    return None;
                }
                let mut new = frame.clone();
                new.borrowers.remove(&guest);
                let state = if new.borrowers.is_empty() {
                    PageState::Owned
                } else {
                    PageState::SharedOwned
                };
                new.state = if new.borrowers.is_empty() {
                    FrameState::Owned
                } else {
                    FrameState::SharedOwned
                };
                Some(Effect {
                    remove: vec![(guest, at), (HOST, host_ipa)],
                    add: vec![mapped(HOST, host_ipa, pa, frame.owner_rights, state)],
                    frame: (pa, new),
                    zero: false,
                })
            }
            Op::Lend => {
                let Some(View::Mapped(pa, _, PageState::Owned)) = host_view else {
                    return None;
                };
                let frame = self.frames.get(&pa)?;
                let valid_rights = !rights.is_empty() && frame.owner_rights.contains(rights);
                if frame.pins > 0 || !both_guest_halves_empty || !valid_rights {
                    return None;
                }
                let mut new = frame.clone();
                new.state = FrameState::Lent;
                new.borrowers.insert(guest, rights);
                let at = guest_at(guest, ipa, PageState::SharedBorrowed);
                Some(Effect {
                    remove: vec![(HOST, host_ipa)],
                    add: vec![
                        ((HOST, host_ipa), View::LentAway(pa)),
                        mapped(guest, at, pa, rights, PageState::SharedBorrowed),
                    ],
                    frame: (pa, new),
                    zero: false,
                })
            }
            Op::Reclaim => {
                let Some(View::LentAway(pa)) = host_view else {
                    return None;
                };
                let frame = self.frames.get(&pa)?;
                if frame.state != FrameState::Lent || !frame.borrowers.is_empty() {
                    return None;
                }
                let mut new = frame.clone();
                new.state = FrameState::Owned;
                Some(Effect {
                    remove: vec![(HOST, host_ipa)],
                    add: vec![mapped(
                        HOST,
                        host_ipa,
                        pa,
                        frame.owner_rights,
                        PageState::Owned,
                    )],
                    frame: (pa, new),
                    zero: false,
                })
            }
        }
    }

    fn apply(&mut self, effect: Effect) {
        for key in effect.remove {
            self.views.remove(&key);
        }
        for (key, view) in effect.add {
            self.views.insert(key, view);
        }
        if effect.zero {
            self.zeroed.insert(effect.frame.0);
        }
        self.frames.insert(effect.frame.0, effect.frame.1);
    }

    /// A range request; returns whether it was accepted. All or nothing.
    pub(crate) fn request(
        &mut self,
        op: Op,
        guest: DomainId,
        ipa: Ipa,
        pages: u64,
        rights: Rights,
    ) -> bool {
        let reclaim = op == Op::Reclaim;
        if !self.alive.get(&guest).copied().unwrap_or(false) && !reclaim {
            return false;
        }
        if !ipa.get().is_multiple_of(PAGE_SIZE) || pages == 0 || pages > 512 {
            return false;
        }
        let first = if split(guest) {
            Ipa(ipa.get() & !SHARED_ALIAS_BIT)
        } else {
            ipa
        };
        let mut effects = Vec::new();
        for page in 0..pages {
            let Some(effect) = self.page(op, guest, Ipa(first.get() + page * PAGE_SIZE), rights)
            else {
                return false;
            };
            effects.push(effect);
        }
        for effect in effects {
            self.apply(effect);
        }
        true
    }

    /// Teardown of a guest.
    pub(crate) fn teardown(&mut self, guest: DomainId) {
        self.alive.insert(guest, false);
        let held: Vec<(Ipa, View)> = self
            .views
            .iter()
            .filter(|((domain, _), _)| *domain == guest)
            .map(|((_, ipa), view)| (*ipa, *view))
            .collect();
        for (at, view) in held {
            let View::Mapped(pa, _, _) = view else {
                continue;
            };
            let ipa = Ipa(at.get() & !SHARED_ALIAS_BIT);
            let host_ipa = window(if split(guest) { ipa } else { at })
                .expect("guest frames lie in the window");
            let frame = self.frames[&pa].clone();
            let mut new = frame.clone();
            self.views.remove(&(guest, at));
            if frame.owner == Some(guest) {
                new.owner = Some(HOST);
                new.state = FrameState::Owned;
                new.owner_rights = Rights::READ_WRITE;
                new.borrowers.clear();
                self.zeroed.insert(pa);
                self.views.insert(
                    (HOST, host_ipa),
                    View::Mapped(pa, Rights::READ_WRITE, PageState::Owned),
                );
            } else if frame.state == FrameState::Lent {
                new.borrowers.remove(&guest);
            } else {
                new.borrowers.remove(&guest);
                let (state, view_state) = if new.borrowers.is_empty() {
                    (FrameState::Owned, PageState::Owned)
                } else {
                    (FrameState::SharedOwned, PageState::SharedOwned)
                };
                new.state = state;
                self.views.insert(
                    (HOST, host_ipa),
                    View::Mapped(pa, frame.owner_rights, view_state),
                );
            }
            self.frames.insert(pa, new);
        }
    }
}
