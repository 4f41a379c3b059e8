//! Channels, channel sets and child handles: the ids a PD names its peers by.
//!
//! Ids come from system.xml (`<end pd=".." id=".."/>`, `<irq id=".."/>`, a VM's `id`); Microkit
//! allows 0..=61 in one id space per PD, so a set of them fits in one `u64`.

use crate::call::{self, CallError, CallRegisters};
use crate::message::{self, MessageInfo, MESSAGE_REGISTERS};
use frameshift_abi::pd_call::{PD_IRQ_ACK, PD_NOTIFY, PD_PPCALL};

/// Highest channel id Microkit allows (the ABI crate's).
pub const MAX_CHANNEL_ID: usize = frameshift_abi::boot_info::MAX_CHANNEL_ID as usize;

/// One end of a channel (or an IRQ) as this PD numbers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Channel(usize);

impl Channel {
    /// The channel with this id. Ids are fixed by the system description, so one past
    /// [`MAX_CHANNEL_ID`] is a bug in the program and panics at compile time in a `const`.
    pub const fn new(id: usize) -> Self {
        assert!(id <= MAX_CHANNEL_ID, "Microkit channel ids are 0..=61");
        Self(id)
    }

    /// The id.
    pub const fn index(self) -> usize {
        self.0
    }

    /// Signal the notification at the other end (libmicrokit `microkit_notify`). A refusal means
    /// the system description has no such notifying channel: that is a bug, so it panics (at the
    /// caller's line).
    #[track_caller]
    pub fn notify(self) {
        if let Err(error) = self.try_notify() {
            panic!("notify on channel {} {error}", self.0);
        }
    }

    /// [`Channel::notify`], returning the hypervisor's refusal instead of panicking.
    pub fn try_notify(self) -> Result<(), CallError> {
        let mut registers = CallRegisters::new(PD_NOTIFY);
        registers.0[1] = self.0 as u64;
        call::hvc(&mut registers);
        registers.result()
    }

    /// Acknowledge the interrupt delivered on this channel (libmicrokit `microkit_irq_ack`).
    pub fn irq_ack(self) -> Result<(), CallError> {
        let mut registers = CallRegisters::new(PD_IRQ_ACK);
        registers.0[1] = self.0 as u64;
        call::hvc(&mut registers);
        registers.result()
    }

    /// Protected procedure call to the PD at the other end (libmicrokit `microkit_ppcall`): sends
    /// `message` and the message registers, blocks until the callee replies, loads the reply's
    /// message registers and returns its message info. A refusal (no `pp` end, or the callee is
    /// not of strictly higher priority) is a bug in the system description and panics (at the
    /// caller's line).
    #[track_caller]
    pub fn pp_call(self, message: MessageInfo) -> MessageInfo {
        match self.try_pp_call(message) {
            Ok(reply) => reply,
            Err(error) => panic!("pp_call on channel {} {error}", self.0),
        }
    }

    /// [`Channel::pp_call`], returning the hypervisor's refusal instead of panicking.
    pub fn try_pp_call(self, message: MessageInfo) -> Result<MessageInfo, CallError> {
        let mut registers = CallRegisters::new(PD_PPCALL);
        registers.0[1] = self.0 as u64;
        registers.0[2] = message.0;
        message::store_to(&mut registers.0[3..3 + MESSAGE_REGISTERS]);
        call::hvc(&mut registers);
        registers.result()?;
        message::load_from(&registers.0[3..3 + MESSAGE_REGISTERS]);
        Ok(MessageInfo(registers.0[2]))
    }
}

/// A set of channels, as one notification event delivers them (bit `i` = channel `i`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ChannelSet(u64);

impl ChannelSet {
    /// The set whose bit `i` stands for channel `i`. Bits above [`MAX_CHANNEL_ID`] are dropped:
    /// no channel has such an id.
    pub const fn from_bits(bits: u64) -> Self {
        Self(bits & ((1 << (MAX_CHANNEL_ID + 1)) - 1))
    }

    /// The raw bits.
    pub const fn bits(self) -> u64 {
        self.0
    }

    /// Whether `channel` is in the set.
    pub const fn contains(self, channel: Channel) -> bool {
        self.0 & (1 << channel.0) != 0
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The channels in the set, lowest id first.
    pub fn iter(self) -> impl Iterator<Item = Channel> {
        let mut bits = self.0;
        core::iter::from_fn(move || {
            if bits == 0 {
                return None;
            }
            let id = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            Some(Channel(id))
        })
    }
}

/// A child (virtual machine or child PD) of this PD, by its Microkit `id`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Child(usize);

impl Child {
    /// The child with this id.
    pub const fn new(id: usize) -> Self {
        Self(id)
    }

    /// The id.
    pub const fn index(self) -> usize {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{get_mr, set_mr};
    use frameshift_abi::smccc;
    use std::cell::RefCell;
    use std::rc::Rc;
    use std::vec::Vec;

    #[test]
    fn channel_set_iterates_its_members_in_order() {
        let set = ChannelSet::from_bits(1 << 0 | 1 << 5 | 1 << 61 | 1 << 63);
        let ids: Vec<usize> = set.iter().map(Channel::index).collect();
        assert_eq!(ids, [0, 5, 61]);
        assert!(set.contains(Channel::new(5)));
        assert!(!set.contains(Channel::new(4)));
        assert!(ChannelSet::from_bits(0).is_empty());
    }

    #[test]
    #[should_panic(expected = "Microkit channel ids are 0..=61")]
    fn channel_id_past_61_panics() {
        let _ = Channel::new(62);
    }

    #[test]
    fn notify_passes_the_channel_id_and_reports_refusal() {
        let seen = Rc::new(RefCell::new(Vec::new()));
        let log = seen.clone();
        call::install_fake(move |registers| {
            log.borrow_mut().push((registers.0[0], registers.0[1]));
            registers.0[0] = if registers.0[1] == 3 {
                0
            } else {
                smccc::INVALID_PARAMETER as u64
            };
        });
        assert_eq!(Channel::new(3).try_notify(), Ok(()));
        assert_eq!(
            Channel::new(4).try_notify(),
            Err(CallError::Refused(smccc::INVALID_PARAMETER))
        );
        assert_eq!(
            *seen.borrow(),
            [(u64::from(PD_NOTIFY), 3), (u64::from(PD_NOTIFY), 4)]
        );
    }

    #[test]
    fn pp_call_sends_and_receives_message_registers() {
        call::install_fake(|registers| {
            assert_eq!(registers.0[0], u64::from(PD_PPCALL));
            assert_eq!(registers.0[1], 2);
            let message = MessageInfo(registers.0[2]);
            let sum: u64 = registers.0[3..3 + message.count()].iter().sum();
            registers.0 = [0; 12];
            registers.0[2] = MessageInfo::new(0x51, 1).0;
            registers.0[3] = sum;
        });
        for (index, value) in [10, 20, 30, 40].into_iter().enumerate() {
            set_mr(index, value);
        }
        let reply = Channel::new(2).pp_call(MessageInfo::new(7, 4));
        assert_eq!(reply, MessageInfo::new(0x51, 1));
        assert_eq!(get_mr(0), 100);
    }
}
