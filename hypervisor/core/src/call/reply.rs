//! What a call or an event writes back: the one place results become registers.

use frameshift_abi::pd_call::{MessageInfo, EVENT_FAULT, EVENT_NOTIFIED, EVENT_PROTECTED};
use frameshift_abi::smccc::SUCCESS;

use super::Message;
use crate::domain::Registers;

/// Most result registers after `x0` a reply carries (`x1`-`x6`).
pub const MAX_RESULTS: usize = 6;

/// The answer to a call: `x0` and the result registers it names. Registers it does not name
/// keep their value (SMCCC: every other register is preserved).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reply {
    /// `x0` only: a status (0, or a negative SMCCC or PSCI code), or a value such as a version.
    Status(i64),
    /// `x0` = `status` and `x1`.. = `values[..count]`.
    Values {
        /// `x0`.
        status: i64,
        /// `x1`..
        values: [u64; MAX_RESULTS],
        /// How many of `values` are written.
        count: usize,
    },
    /// `x0` = 0, `x2` = the `MessageInfo`, `x3`-`x10` = the message registers (a protected
    /// call's reply, as the caller's `PD_PPCALL` returns it).
    Message(Message),
}

impl Reply {
    /// `x0` = 0 and `x1`.. = `values`.
    pub fn success(values: &[u64]) -> Self {
        Self::with_status(SUCCESS, values)
    }

    /// `x0` = `status` and `x1`.. = `values` (at most [`MAX_RESULTS`]; more are dropped).
    pub fn with_status(status: i64, values: &[u64]) -> Self {
        let mut words = [0u64; MAX_RESULTS];
        let count = values.len().min(MAX_RESULTS);
        words[..count].copy_from_slice(&values[..count]);
        Self::Values {
            status,
            values: words,
            count,
        }
    }

    /// Writes the reply into the caller's saved registers.
    pub fn write(&self, registers: &mut Registers) {
        match *self {
            Self::Status(status) => registers.set_status(status),
            Self::Values {
                status,
                values,
                count,
            } => {
                registers.set_status(status);
                registers.x[1..=count].copy_from_slice(&values[..count]);
            }
            Self::Message(message) => {
                registers.set_status(SUCCESS);
                message.write(registers);
            }
        }
    }
}

impl Message {
    /// The message a caller sends: `x2` and `x3`-`x10` of its call.
    pub fn read(registers: &Registers) -> Self {
        let mut message = Self {
            info: registers.x[2],
            ..Self::default()
        };
        message.registers.copy_from_slice(&registers.x[3..=10]);
        message
    }

    /// Writes the message into `x2` and `x3`-`x10`.
    pub fn write(&self, registers: &mut Registers) {
        registers.x[2] = self.info;
        registers.x[3..=10].copy_from_slice(&self.registers);
    }

    /// The `MessageInfo` label.
    pub fn label(&self) -> u64 {
        MessageInfo(self.info).label()
    }
}

/// An event `PD_REPLY_RECV` returns (docs/ABI.md, "Events").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Event {
    /// Notifications: the bit set of channel ids.
    Notified(u64),
    /// A protected procedure call on `channel` (this end's id).
    Protected {
        /// The caller's message.
        message: Message,
        /// The channel id at this end.
        channel: u8,
    },
    /// A child's fault: its label and details, from the child `child`.
    Fault {
        /// `FAULT_*` label and the detail registers (MR0..).
        message: Message,
        /// The child's Microkit id (a child PD's id, a vCPU's id).
        child: u8,
    },
}

impl Event {
    /// A fault event with `label` and the first `count` of `details` as MR0...
    pub fn fault(label: u64, details: &[u64], child: u8) -> Self {
        let count = details.len().min(8);
        let mut registers = [0u64; 8];
        registers[..count].copy_from_slice(&details[..count]);
        Self::Fault {
            message: Message {
                info: MessageInfo::new(label, count).0,
                registers,
            },
            child,
        }
    }

    /// Writes the event into the waiting PD's saved registers: `x0` = 0, `x1` = the event kind,
    /// `x2` onwards as docs/ABI.md's table says. A notification leaves `x3`-`x11` unchanged.
    pub fn write(&self, registers: &mut Registers) {
        registers.set_status(SUCCESS);
        match *self {
            Self::Notified(bits) => {
                registers.x[1] = EVENT_NOTIFIED;
                registers.x[2] = bits;
            }
            Self::Protected { message, channel } => {
                registers.x[1] = EVENT_PROTECTED;
                message.write(registers);
                registers.x[11] = u64::from(channel);
            }
            Self::Fault { message, child } => {
                registers.x[1] = EVENT_FAULT;
                message.write(registers);
                registers.x[11] = u64::from(child);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_write_only_the_registers_they_name() {
        let mut registers = Registers {
            x: core::array::from_fn(|index| 100 + index as u64),
            ..Registers::default()
        };
        Reply::with_status(-3, &[0]).write(&mut registers);
        assert_eq!(registers.x[0], -3i64 as u64);
        assert_eq!(registers.x[1], 0);
        assert_eq!(registers.x[2], 102);
        Reply::Status(7).write(&mut registers);
        assert_eq!(registers.x[..3], [7, 0, 102]);
        Reply::success(&[1, 2, 3, 4, 5, 6]).write(&mut registers);
        assert_eq!(registers.x[..8], [0, 1, 2, 3, 4, 5, 6, 107]);
        let message = Message {
            info: 0x1003,
            registers: [9; 8],
        };
        Reply::Message(message).write(&mut registers);
        assert_eq!(registers.x[..3], [0, 1, 0x1003]);
        assert_eq!(Message::read(&registers), message);
        assert_eq!(registers.x[11], 111);
    }

    #[test]
    fn events_are_laid_out_as_the_abi_says() {
        let mut registers = Registers::default();
        registers.x[3] = 55;
        Event::Notified(0b101).write(&mut registers);
        assert_eq!(registers.x[..4], [0, EVENT_NOTIFIED, 0b101, 55]);
        Event::fault(5, &[1, 2, 3], 9).write(&mut registers);
        assert_eq!(registers.x[1], EVENT_FAULT);
        assert_eq!(MessageInfo(registers.x[2]), MessageInfo::new(5, 3));
        assert_eq!(registers.x[3..7], [1, 2, 3, 0]);
        assert_eq!(registers.x[11], 9);
        let message = Message {
            info: 2,
            registers: [4; 8],
        };
        Event::Protected {
            message,
            channel: 6,
        }
        .write(&mut registers);
        assert_eq!(registers.x[1], EVENT_PROTECTED);
        assert_eq!(Message::read(&registers), message);
        assert_eq!(registers.x[11], 6);
    }
}
