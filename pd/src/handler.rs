//! The `Handler` trait and the event loop that drives it (libmicrokit's `main`).
//!
//! After `init` the PD waits in `PD_REPLY_RECV`; each event runs one handler method to completion,
//! and the reply of a `protected` or `fault` handler travels with the next `PD_REPLY_RECV`:
//!
//! ```text
//! init() ──> PD_REPLY_RECV(no reply) ──> EVENT_NOTIFIED  ──> notified()  ─┐
//!                 ^                 ├──> EVENT_PROTECTED ──> protected() ─┤ reply (if any)
//!                 │                 └──> EVENT_FAULT     ──> fault()     ─┤
//!                 └───────────────────────────────────────────────────────┘
//! ```

use crate::call::{self, CallError, CallRegisters};
use crate::channel::{Channel, ChannelSet, Child};
use crate::message::{self, MessageInfo, MESSAGE_REGISTERS};
use frameshift_abi::pd_call::{
    EVENT_FAULT, EVENT_NOTIFIED, EVENT_PROTECTED, PD_REPLY_RECV, REPLY_MESSAGE, REPLY_NONE,
};

/// What a PD does when events arrive. Every method has a default, as in sel4-microkit: an event
/// the PD did not expect is a bug in the system description, so the defaults panic (which prints
/// the event and stops this PD, which makes the run fail once the others are done).
pub trait Handler {
    /// Notifications arrived on `channels` (libmicrokit `notified`).
    fn notified(&mut self, channels: ChannelSet) {
        panic!("unexpected notification on channels {:#x}", channels.bits())
    }

    /// A protected procedure call arrived on `channel`; the message registers hold its arguments.
    /// Returns the reply's message info; the message registers then hold the reply.
    fn protected(&mut self, channel: Channel, message: MessageInfo) -> MessageInfo {
        panic!(
            "unexpected protected call on channel {} label={:#x}",
            channel.index(),
            message.label()
        )
    }

    /// `child` faulted; the message registers hold the fault details (`FAULT_*` label). Return a
    /// reply to restart the child, which retries the faulting instruction (so fix the cause
    /// first, or bound the retries), or `None` to leave it stopped for good.
    fn fault(&mut self, child: Child, message: MessageInfo) -> Option<MessageInfo> {
        panic!(
            "unexpected fault of child {} label={:#x}",
            child.index(),
            message.label()
        )
    }
}

/// One event returned by `PD_REPLY_RECV`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// Notifications on these channels.
    Notified(ChannelSet),
    /// A protected procedure call on this channel.
    Protected(Channel, MessageInfo),
    /// A fault of this child.
    Fault(Child, MessageInfo),
}

impl Event {
    /// Decode the registers `PD_REPLY_RECV` returned; loads the message registers of a protected
    /// call or fault into the PD's message-register store.
    pub fn decode(registers: &CallRegisters) -> Result<Self, CallError> {
        registers.result()?;
        let [_, kind, info, .., id] = registers.0;
        let message = MessageInfo(info);
        match kind {
            EVENT_NOTIFIED => Ok(Self::Notified(ChannelSet::from_bits(info))),
            EVENT_PROTECTED | EVENT_FAULT => {
                let id = usize::try_from(id).map_err(|_| CallError::UnknownEvent(kind))?;
                message::load_from(&registers.0[3..3 + MESSAGE_REGISTERS]);
                if kind == EVENT_PROTECTED {
                    if id > crate::channel::MAX_CHANNEL_ID {
                        return Err(CallError::UnknownEvent(kind));
                    }
                    Ok(Self::Protected(Channel::new(id), message))
                } else {
                    Ok(Self::Fault(Child::new(id), message))
                }
            }
            other => Err(CallError::UnknownEvent(other)),
        }
    }
}

/// Run the handler method for `event`; returns the reply to send, if any.
pub fn dispatch(handler: &mut impl Handler, event: Event) -> Option<MessageInfo> {
    match event {
        Event::Notified(channels) => {
            handler.notified(channels);
            None
        }
        Event::Protected(channel, message) => Some(handler.protected(channel, message)),
        Event::Fault(child, message) => handler.fault(child, message),
    }
}

/// Send `reply` (if any) and wait for the next event: one `PD_REPLY_RECV`, with `x1` =
/// `REPLY_MESSAGE` and the reply in `x2`-`x10`, or `x1` = `REPLY_NONE`.
pub fn reply_recv(reply: Option<MessageInfo>) -> Result<Event, CallError> {
    let mut registers = CallRegisters::new(PD_REPLY_RECV);
    registers.0[1] = REPLY_NONE;
    if let Some(reply) = reply {
        registers.0[1] = REPLY_MESSAGE;
        registers.0[2] = reply.0;
        message::store_to(&mut registers.0[3..3 + MESSAGE_REGISTERS]);
    }
    call::hvc(&mut registers);
    Event::decode(&registers)
}

/// The event loop: wait, dispatch, reply, forever. Returns only if the hypervisor refuses
/// `PD_REPLY_RECV` or returns an event this runtime does not know, with that error.
pub fn event_loop(handler: &mut impl Handler) -> CallError {
    let mut reply = None;
    loop {
        match reply_recv(reply.take()) {
            Ok(event) => reply = dispatch(handler, event),
            Err(error) => return error,
        }
    }
}

/// Run a PD: `init`, then the event loop. What [`crate::protection_domain!`] calls.
pub fn run_protection_domain<H: Handler>(init: impl FnOnce() -> H) -> ! {
    let mut handler = init();
    let error = event_loop(&mut handler);
    panic!("PD_REPLY_RECV {error}")
}

/// Declare the PD's entry: `init` runs once, and the `Handler` it returns serves every event.
///
/// ```no_run
/// struct Idle;
/// impl frameshift_pd::Handler for Idle {}
///
/// fn init() -> Idle {
///     Idle
/// }
/// frameshift_pd::protection_domain!(init);
/// ```
///
/// On the host (documentation tests, `cargo clippy --workspace`) the macro also defines a
/// stand-in `main`, so a PD program's file is a complete crate root in both builds.
#[macro_export]
macro_rules! protection_domain {
    ($init:expr) => {
        /// Called by the runtime's `_start` once `.bss` is zero and FP is on.
        #[allow(unsafe_code)]
        #[no_mangle]
        extern "C" fn frameshift_pd_main() -> ! {
            $crate::handler::run_protection_domain($init)
        }

        /// PD programs run only under Frameshift; a host build (`cargo clippy --workspace`)
        /// gets this stand-in `main` so that the program still type-checks there.
        #[cfg(not(target_os = "none"))]
        fn main() {
            let _ = frameshift_pd_main as extern "C" fn() -> !;
            ::std::eprintln!("this is a Frameshift PD program: build it for aarch64-unknown-none");
            ::std::process::exit(2);
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{get_mr, set_mr};
    use frameshift_abi::smccc;
    use std::cell::RefCell;
    use std::collections::VecDeque;
    use std::rc::Rc;
    use std::vec::Vec;

    /// A PD that records what it saw; its `protected` sums the message registers.
    #[derive(Default)]
    struct Recorder {
        notified: Vec<u64>,
        protected: Vec<(usize, u64)>,
    }

    impl Handler for Recorder {
        fn notified(&mut self, channels: ChannelSet) {
            self.notified.push(channels.bits());
        }

        fn protected(&mut self, channel: Channel, message: MessageInfo) -> MessageInfo {
            self.protected.push((channel.index(), message.label()));
            let sum = (0..message.count()).map(get_mr).sum();
            set_mr(0, sum);
            MessageInfo::new(0x5, 1)
        }
    }

    /// Fake hypervisor: hands out `events` one per `PD_REPLY_RECV` and logs the reply registers
    /// each call carried; refuses once the script is exhausted.
    fn script(events: Vec<[u64; 12]>) -> Rc<RefCell<Vec<[u64; 12]>>> {
        let log = Rc::new(RefCell::new(Vec::new()));
        let calls = log.clone();
        let mut events: VecDeque<[u64; 12]> = events.into();
        call::install_fake(move |registers| {
            assert_eq!(registers.0[0], u64::from(PD_REPLY_RECV));
            calls.borrow_mut().push(registers.0);
            registers.0 = match events.pop_front() {
                Some(event) => event,
                None => {
                    let mut refused = [0; 12];
                    refused[0] = smccc::NOT_SUPPORTED as u64;
                    refused
                }
            };
        });
        log
    }

    #[test]
    fn loop_dispatches_each_event_and_carries_replies() {
        let mut protected = [0u64; 12];
        protected[1] = EVENT_PROTECTED;
        protected[2] = MessageInfo::new(0x77, 4).0;
        protected[3..7].copy_from_slice(&[1, 2, 3, 4]);
        protected[11] = 9;
        let mut notified = [0u64; 12];
        notified[1] = EVENT_NOTIFIED;
        notified[2] = 0b1010;
        let log = script(std::vec![notified, protected, notified]);

        let mut recorder = Recorder::default();
        let error = event_loop(&mut recorder);

        assert_eq!(error, CallError::Refused(smccc::NOT_SUPPORTED));
        assert_eq!(recorder.notified, [0b1010, 0b1010]);
        assert_eq!(recorder.protected, [(9, 0x77)]);
        let log = log.borrow();
        assert_eq!(log.len(), 4);
        // First wait and the wait after a notification carry no reply.
        assert_eq!((log[0][1], log[0][2]), (REPLY_NONE, 0));
        assert_eq!((log[1][1], log[1][2]), (REPLY_NONE, 0));
        // The wait after the protected call carries its reply: label 5, one register = 10.
        assert_eq!(log[2][1], REPLY_MESSAGE);
        assert_eq!(log[2][2], MessageInfo::new(0x5, 1).0);
        assert_eq!(log[2][3], 10);
        assert_eq!((log[3][1], log[3][2]), (REPLY_NONE, 0));
    }

    /// Replies to the first fault of each child, leaves the second unanswered.
    #[derive(Default)]
    struct Restarter {
        faults: usize,
    }

    impl Handler for Restarter {
        fn fault(&mut self, _child: Child, _message: MessageInfo) -> Option<MessageInfo> {
            self.faults += 1;
            (self.faults == 1).then_some(MessageInfo::new(0, 0))
        }
    }

    #[test]
    fn a_fault_reply_is_flagged_and_no_reply_is_not() {
        let mut fault = [0u64; 12];
        fault[1] = EVENT_FAULT;
        fault[2] = MessageInfo::new(frameshift_abi::pd_call::FAULT_STAGE2_ABORT, 3).0;
        fault[11] = 1;
        let log = script(std::vec![fault, fault]);
        let mut restarter = Restarter::default();
        event_loop(&mut restarter);
        assert_eq!(restarter.faults, 2);
        let log = log.borrow();
        assert_eq!(log.len(), 3);
        // init's wait, the reply that restarts the child, and the wait that leaves it stopped.
        assert_eq!(log[0][1], REPLY_NONE);
        assert_eq!((log[1][1], log[1][2]), (REPLY_MESSAGE, 0));
        assert_eq!(log[2][1], REPLY_NONE);
    }

    #[test]
    fn unknown_event_kind_ends_the_loop() {
        let mut bogus = [0u64; 12];
        bogus[1] = 42;
        let _log = script(std::vec![bogus]);
        assert_eq!(
            event_loop(&mut Recorder::default()),
            CallError::UnknownEvent(42)
        );
    }

    #[test]
    fn protected_event_with_bad_channel_id_is_rejected() {
        let mut registers = CallRegisters::default();
        registers.0[1] = EVENT_PROTECTED;
        registers.0[11] = 62;
        assert_eq!(
            Event::decode(&registers),
            Err(CallError::UnknownEvent(EVENT_PROTECTED))
        );
    }

    #[test]
    fn fault_event_decodes_child_and_details() {
        let mut registers = CallRegisters::default();
        registers.0[1] = EVENT_FAULT;
        registers.0[2] = MessageInfo::new(frameshift_abi::pd_call::FAULT_STAGE2_ABORT, 3).0;
        registers.0[3] = 0x1000_0000;
        registers.0[11] = 1;
        let event = Event::decode(&registers);
        assert_eq!(
            event,
            Ok(Event::Fault(
                Child::new(1),
                MessageInfo::new(frameshift_abi::pd_call::FAULT_STAGE2_ABORT, 3)
            ))
        );
        assert_eq!(get_mr(0), 0x1000_0000);
    }

    #[test]
    #[should_panic(expected = "unexpected notification on channels 0x4")]
    fn default_notified_panics() {
        struct Silent;
        impl Handler for Silent {}
        dispatch(&mut Silent, Event::Notified(ChannelSet::from_bits(4)));
    }
}
