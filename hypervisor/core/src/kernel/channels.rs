//! The Microkit channel table: which PD may notify or call which, and on which channel ids.

use frameshift_abi::boot_info::{
    ChannelDesc, CHANNEL_A_CALLS_B, CHANNEL_A_NOTIFIES_B, CHANNEL_B_CALLS_A, CHANNEL_B_NOTIFIES_A,
};

use crate::domain::DomainId;

/// Most channels a system may have (Microkit allows 63 per PD; this bounds the whole system).
/// Defined in the ABI crate, so that the build tool refuses a system with more.
pub use frameshift_abi::boot_info::MAX_CHANNELS;

/// Highest Microkit channel id (defined once, in the ABI crate).
pub use frameshift_abi::boot_info::MAX_CHANNEL_ID;

/// The far end of a channel: the other PD and the id the channel has there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FarEnd {
    /// The other PD.
    pub domain: DomainId,
    /// The channel id at that PD's end.
    pub channel: u8,
}

/// What a PD wants to do along a channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelUse {
    /// `PD_NOTIFY`: allowed if the channel's flags let this end signal the other
    /// (Microkit `notify="true"` on this end).
    Notify,
    /// `PD_PPCALL`: allowed if the far end has `pp="true"`.
    Call,
}

/// A checked channel; both ends are valid domain indices and ids are at most [`MAX_CHANNEL_ID`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Channel {
    end_a: (DomainId, u8),
    end_b: (DomainId, u8),
    flags: u32,
}

/// Why the channel table could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelError {
    /// More channels than [`MAX_CHANNELS`].
    TooMany,
    /// Channel `index` names a domain that does not exist.
    BadDomain {
        /// Index of the channel record.
        index: usize,
    },
    /// Channel `index` uses an id above [`MAX_CHANNEL_ID`].
    BadId {
        /// Index of the channel record.
        index: usize,
    },
    /// Channel `index` reuses an id already taken at one of its ends.
    DuplicateId {
        /// Index of the channel record.
        index: usize,
    },
}

/// All channels of the system.
#[derive(Clone, Debug, Default)]
pub struct ChannelTable {
    channels: heapless::Vec<Channel, MAX_CHANNELS>,
}

impl ChannelTable {
    /// No channels (a `const` initialiser).
    pub const fn empty() -> Self {
        Self {
            channels: heapless::Vec::new(),
        }
    }

    /// Checks and copies the boot information's channel records (`domain_count` domains exist).
    pub fn new(records: &[ChannelDesc], domain_count: usize) -> Result<Self, ChannelError> {
        let mut table = Self::default();
        for (index, record) in records.iter().enumerate() {
            let domain = |raw: u32| -> Result<DomainId, ChannelError> {
                usize::try_from(raw)
                    .ok()
                    .filter(|&d| d < domain_count)
                    .and_then(|d| u8::try_from(d).ok())
                    .map(DomainId)
                    .ok_or(ChannelError::BadDomain { index })
            };
            let id = |raw: u32| -> Result<u8, ChannelError> {
                if raw > MAX_CHANNEL_ID {
                    Err(ChannelError::BadId { index })
                } else {
                    Ok(raw as u8)
                }
            };
            let channel = Channel {
                end_a: (domain(record.domain_a)?, id(record.id_a)?),
                end_b: (domain(record.domain_b)?, id(record.id_b)?),
                flags: record.flags,
            };
            let taken = |end: (DomainId, u8)| {
                table
                    .channels
                    .iter()
                    .any(|c| c.end_a == end || c.end_b == end)
            };
            if taken(channel.end_a) || taken(channel.end_b) || channel.end_a == channel.end_b {
                return Err(ChannelError::DuplicateId { index });
            }
            table
                .channels
                .push(channel)
                .map_err(|_| ChannelError::TooMany)?;
        }
        Ok(table)
    }

    /// Whether `domain` already has a channel with id `channel` (an interrupt may not reuse it).
    pub fn uses(&self, domain: DomainId, channel: u8) -> bool {
        self.channels
            .iter()
            .any(|c| c.end_a == (domain, channel) || c.end_b == (domain, channel))
    }

    /// The far end of `from`'s channel `channel`, if `from` may use it for `usage`.
    pub fn far_end(&self, from: DomainId, channel: u64, usage: ChannelUse) -> Option<FarEnd> {
        let channel = u8::try_from(channel).ok()?;
        let (a_to_b, b_to_a) = match usage {
            ChannelUse::Notify => (CHANNEL_A_NOTIFIES_B, CHANNEL_B_NOTIFIES_A),
            ChannelUse::Call => (CHANNEL_A_CALLS_B, CHANNEL_B_CALLS_A),
        };
        self.channels.iter().find_map(|c| {
            if c.end_a == (from, channel) && c.flags & a_to_b != 0 {
                Some(FarEnd {
                    domain: c.end_b.0,
                    channel: c.end_b.1,
                })
            } else if c.end_b == (from, channel) && c.flags & b_to_a != 0 {
                Some(FarEnd {
                    domain: c.end_a.0,
                    channel: c.end_a.1,
                })
            } else {
                None
            }
        })
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on an unexpected error"
)]
mod tests {
    use super::*;

    fn channel(a: u32, id_a: u32, b: u32, id_b: u32, flags: u32) -> ChannelDesc {
        ChannelDesc {
            domain_a: a,
            id_a,
            domain_b: b,
            id_b,
            flags,
            reserved0: 0,
        }
    }

    #[test]
    fn notify_follows_the_direction_flags() {
        let table = ChannelTable::new(&[channel(0, 1, 1, 2, CHANNEL_A_NOTIFIES_B)], 2).unwrap();
        assert_eq!(
            table.far_end(DomainId(0), 1, ChannelUse::Notify),
            Some(FarEnd {
                domain: DomainId(1),
                channel: 2
            })
        );
        assert_eq!(table.far_end(DomainId(1), 2, ChannelUse::Notify), None);
        assert_eq!(table.far_end(DomainId(0), 1, ChannelUse::Call), None);
        assert_eq!(table.far_end(DomainId(0), 2, ChannelUse::Notify), None);
        assert_eq!(
            table.far_end(DomainId(0), 1 << 40, ChannelUse::Notify),
            None
        );
    }

    #[test]
    fn calls_follow_the_pp_flags() {
        let table = ChannelTable::new(&[channel(0, 5, 1, 7, CHANNEL_B_CALLS_A)], 2).unwrap();
        assert_eq!(
            table.far_end(DomainId(1), 7, ChannelUse::Call),
            Some(FarEnd {
                domain: DomainId(0),
                channel: 5
            })
        );
        assert_eq!(table.far_end(DomainId(0), 5, ChannelUse::Call), None);
    }

    #[test]
    fn bad_records_are_refused() {
        assert_eq!(
            ChannelTable::new(&[channel(0, 1, 2, 1, 0)], 2).unwrap_err(),
            ChannelError::BadDomain { index: 0 }
        );
        assert_eq!(
            ChannelTable::new(&[channel(0, 62, 1, 1, 0)], 2).unwrap_err(),
            ChannelError::BadId { index: 0 }
        );
        assert_eq!(
            ChannelTable::new(&[channel(0, 1, 1, 1, 0), channel(0, 1, 1, 2, 0)], 2).unwrap_err(),
            ChannelError::DuplicateId { index: 1 }
        );
    }
}
