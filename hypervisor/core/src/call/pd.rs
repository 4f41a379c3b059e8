//! PD calls (docs/ABI.md family 2) as a type: one variant per call, with typed arguments.

use frameshift_abi::pd_call::{
    PD_AUDIT, PD_DEBUG_WRITE, PD_FRAME_CAPS, PD_IRQ_ACK, PD_MEM_DONATE, PD_MEM_LEND,
    PD_MEM_RECLAIM, PD_MEM_SHARE_WITH_GUEST, PD_MEM_UNSHARE_FROM_GUEST, PD_NOTIFY, PD_PPCALL,
    PD_REPLY_RECV, PD_STOP, PD_SYSTEM_OFF, PD_VCPU_ACK_VPPI, PD_VCPU_INJECT_IRQ, PD_VCPU_READ_REG,
    PD_VCPU_RESTART, PD_VCPU_STOP, PD_VCPU_WRITE_REG, PD_VM_CONSOLE_WRITE, PD_VM_TEARDOWN,
    REPLY_MESSAGE, REPLY_NONE, STOP_EXCEPTION, STOP_PANIC,
};
use frameshift_abi::vcpu::REG_COUNT;

use super::{at_most, grant, Bytes, CallError, ChannelId, ChildId, Message, PageRange};
use crate::addr::{Ipa, IPA_BITS};
use crate::descriptor::Rights;
use crate::domain::Registers;
use crate::hypervisor::DEBUG_WRITE_MAX;

/// Most bytes one `PD_VM_CONSOLE_WRITE` carries (`x3`-`x7`).
pub const VM_CONSOLE_WRITE_MAX: usize = 40;

/// Highest GIC INTID a virtual interrupt may have (1020-1023 are special).
const MAX_INTID: u64 = 1019;

/// Why a PD's runtime gave up (`PD_STOP`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StopCause {
    /// Its code panicked.
    Panic,
    /// It took an exception it cannot handle.
    Exception,
}

/// A vCPU register number (`vcpu::REG_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct VcpuRegister(u8);

impl VcpuRegister {
    fn new(raw: u64) -> Result<Self, CallError> {
        let number = at_most(raw, REG_COUNT - 1, "no such vCPU register")?;
        Ok(Self(number as u8))
    }

    /// The register number.
    pub const fn get(self) -> u8 {
        self.0
    }
}

/// One PD call, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PdCall {
    /// `PD_DEBUG_WRITE`: bytes for the PD's console line.
    DebugWrite(Bytes<{ DEBUG_WRITE_MAX as usize }>),
    /// `PD_NOTIFY`.
    Notify {
        /// The channel at this end.
        channel: ChannelId,
    },
    /// `PD_IRQ_ACK`.
    IrqAck {
        /// The interrupt's channel at this end.
        channel: ChannelId,
    },
    /// `PD_PPCALL`.
    PpCall {
        /// The channel at this end.
        channel: ChannelId,
        /// The message.
        message: Message,
    },
    /// `PD_REPLY_RECV`: end the handler, with a reply or none, and wait.
    ReplyRecv {
        /// The reply, if the handler sends one.
        reply: Option<Message>,
    },
    /// `PD_SYSTEM_OFF`.
    SystemOff {
        /// The exit status, capped at 255.
        status: u8,
    },
    /// `PD_STOP`.
    Stop(StopCause),
    /// `PD_VCPU_RESTART`.
    VcpuRestart {
        /// The vCPU.
        vcpu: ChildId,
        /// Where it starts.
        entry: u64,
    },
    /// `PD_VCPU_STOP`.
    VcpuStop {
        /// The vCPU.
        vcpu: ChildId,
    },
    /// `PD_VCPU_READ_REG`.
    VcpuReadRegister {
        /// The vCPU.
        vcpu: ChildId,
        /// The register.
        register: VcpuRegister,
    },
    /// `PD_VCPU_WRITE_REG`.
    VcpuWriteRegister {
        /// The vCPU.
        vcpu: ChildId,
        /// The register.
        register: VcpuRegister,
        /// Its new value.
        value: u64,
    },
    /// `PD_VCPU_INJECT_IRQ`.
    VcpuInjectIrq {
        /// The vCPU.
        vcpu: ChildId,
        /// The INTID, at most 1019.
        intid: u16,
        /// The priority.
        priority: u8,
        /// Group 0 or 1.
        group: u8,
    },
    /// `PD_VCPU_ACK_VPPI`.
    VcpuAckVppi {
        /// The vCPU.
        vcpu: ChildId,
        /// The virtual PPI (16..=31).
        intid: u16,
    },
    /// `PD_MEM_DONATE`.
    MemDonate {
        /// The VM (by any of its vCPUs).
        vm: ChildId,
        /// The guest pages.
        range: PageRange,
    },
    /// `PD_MEM_SHARE_WITH_GUEST`.
    MemShareWithGuest {
        /// The VM.
        vm: ChildId,
        /// The guest pages.
        range: PageRange,
        /// The guest's rights.
        rights: Rights,
    },
    /// `PD_MEM_UNSHARE_FROM_GUEST`.
    MemUnshareFromGuest {
        /// The VM.
        vm: ChildId,
        /// The guest pages.
        range: PageRange,
    },
    /// `PD_MEM_LEND`.
    MemLend {
        /// The VM.
        vm: ChildId,
        /// The guest pages.
        range: PageRange,
        /// The guest's rights.
        rights: Rights,
    },
    /// `PD_MEM_RECLAIM`.
    MemReclaim {
        /// The VM.
        vm: ChildId,
        /// The guest pages.
        range: PageRange,
    },
    /// `PD_VM_TEARDOWN`.
    VmTeardown {
        /// The VM.
        vm: ChildId,
    },
    /// `PD_FRAME_CAPS`: the caller's capability run at or after `from`.
    FrameCaps {
        /// Where to start: a page-aligned IPA inside the IPA space.
        from: Ipa,
    },
    /// `PD_AUDIT`.
    Audit {
        /// `x1` = `AUDIT_DUMP`: write the auditor's dump too (dump.rs).
        dump: bool,
    },
    /// `PD_VM_CONSOLE_WRITE`.
    VmConsoleWrite {
        /// The VM.
        vm: ChildId,
        /// The bytes.
        bytes: Bytes<VM_CONSOLE_WRITE_MAX>,
    },
}

impl PdCall {
    /// Decodes the call in `registers` (function id in `w0`: the upper half of `x0` is ignored,
    /// as SMCCC says), or says why it is refused.
    pub fn decode(registers: &Registers) -> Result<Self, CallError> {
        let x = &registers.x;
        let range = || PageRange::new(x[2], x[3], false);
        let message = || Message {
            info: x[2],
            registers: [x[3], x[4], x[5], x[6], x[7], x[8], x[9], x[10]],
        };
        Ok(match x[0] as u32 {
            PD_DEBUG_WRITE => Self::DebugWrite(Bytes::new(x[1], &x[2..8])?),
            PD_NOTIFY => Self::Notify {
                channel: ChannelId::new(x[1])?,
            },
            PD_IRQ_ACK => Self::IrqAck {
                channel: ChannelId::new(x[1])?,
            },
            PD_PPCALL => Self::PpCall {
                channel: ChannelId::new(x[1])?,
                message: message(),
            },
            PD_REPLY_RECV => Self::ReplyRecv {
                reply: match x[1] {
                    REPLY_NONE => None,
                    REPLY_MESSAGE => Some(message()),
                    _ => return Err(CallError::Invalid("reply flag")),
                },
            },
            PD_SYSTEM_OFF => Self::SystemOff {
                status: u8::try_from(x[1]).unwrap_or(u8::MAX),
            },
            PD_STOP => Self::Stop(match x[1] {
                STOP_PANIC => StopCause::Panic,
                STOP_EXCEPTION => StopCause::Exception,
                _ => return Err(CallError::Invalid("stop cause")),
            }),
            PD_VCPU_RESTART => Self::VcpuRestart {
                vcpu: ChildId::new(x[1])?,
                entry: x[2],
            },
            PD_VCPU_STOP => Self::VcpuStop {
                vcpu: ChildId::new(x[1])?,
            },
            PD_VCPU_READ_REG => Self::VcpuReadRegister {
                vcpu: ChildId::new(x[1])?,
                register: VcpuRegister::new(x[2])?,
            },
            PD_VCPU_WRITE_REG => Self::VcpuWriteRegister {
                vcpu: ChildId::new(x[1])?,
                register: VcpuRegister::new(x[2])?,
                value: x[3],
            },
            PD_VCPU_INJECT_IRQ => Self::VcpuInjectIrq {
                vcpu: ChildId::new(x[1])?,
                intid: at_most(x[2], MAX_INTID, "INTID above 1019")? as u16,
                priority: at_most(x[3], u64::from(u8::MAX), "priority above 255")? as u8,
                group: at_most(x[4], 1, "interrupt group not 0 or 1")? as u8,
            },
            PD_VCPU_ACK_VPPI => Self::VcpuAckVppi {
                vcpu: ChildId::new(x[1])?,
                intid: match x[2] {
                    16..=31 => x[2] as u16,
                    _ => return Err(CallError::Invalid("not a PPI")),
                },
            },
            PD_MEM_DONATE => Self::MemDonate {
                vm: ChildId::new(x[1])?,
                range: range()?,
            },
            PD_MEM_SHARE_WITH_GUEST => Self::MemShareWithGuest {
                vm: ChildId::new(x[1])?,
                range: range()?,
                rights: grant(x[4])?,
            },
            PD_MEM_UNSHARE_FROM_GUEST => Self::MemUnshareFromGuest {
                vm: ChildId::new(x[1])?,
                range: range()?,
            },
            PD_MEM_LEND => Self::MemLend {
                vm: ChildId::new(x[1])?,
                range: range()?,
                rights: grant(x[4])?,
            },
            PD_MEM_RECLAIM => Self::MemReclaim {
                vm: ChildId::new(x[1])?,
                range: range()?,
            },
            PD_VM_TEARDOWN => Self::VmTeardown {
                vm: ChildId::new(x[1])?,
            },
            PD_FRAME_CAPS => {
                let from = Ipa(x[1]);
                if !from.is_page_aligned() || x[1] >= 1 << IPA_BITS {
                    return Err(CallError::Invalid("start not a page of the IPA space"));
                }
                Self::FrameCaps { from }
            }
            PD_AUDIT => Self::Audit {
                dump: x[1] == frameshift_abi::pd_call::AUDIT_DUMP,
            },
            PD_VM_CONSOLE_WRITE => Self::VmConsoleWrite {
                vm: ChildId::new(x[1])?,
                bytes: Bytes::new(x[2], &x[3..8])?,
            },
            _ => return Err(CallError::NotSupported),
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
    use frameshift_abi::pd_call::{
        PD_AUDIT, PD_FRAME_CAPS, PD_MEM_DONATE, PD_VCPU_INJECT_IRQ, PD_VCPU_READ_REG,
    };
    use frameshift_abi::smccc::{INVALID_PARAMETER, NOT_SUPPORTED};

    fn decode(words: &[u64]) -> Result<PdCall, CallError> {
        let mut registers = Registers::default();
        registers.x[..words.len()].copy_from_slice(words);
        PdCall::decode(&registers)
    }

    const VM: u64 = 5;
    const IPA: u64 = 0x4000_0000;

    #[test]
    fn every_call_decodes_with_its_typed_arguments() {
        let vm = ChildId::new(VM).unwrap();
        let range = PageRange::new(IPA, 2, false).unwrap();
        let word = u64::from_le_bytes(*b"hello wo");
        let hello = Bytes::<8>::new(5, &[word]).unwrap();
        assert_eq!(hello.as_slice(), b"hello");
        let message = Message {
            info: 0x1002,
            registers: [3, 4, 5, 6, 7, 8, 9, 10],
        };
        let call_words = [0, 3, 0x1002, 3, 4, 5, 6, 7, 8, 9, 10];
        let with = |function: u32, rest: &[u64]| {
            let mut words = call_words;
            words[0] = u64::from(function);
            words[1..1 + rest.len()].copy_from_slice(rest);
            decode(&words).unwrap()
        };
        let register = VcpuRegister::new(32).unwrap();
        let cases = [
            (
                with(PD_DEBUG_WRITE, &[5, word]),
                PdCall::DebugWrite(Bytes::new(5, &[word, 0, 0, 0, 0, 0]).unwrap()),
            ),
            (
                with(PD_NOTIFY, &[61]),
                PdCall::Notify {
                    channel: ChannelId::new(61).unwrap(),
                },
            ),
            (
                with(PD_IRQ_ACK, &[0]),
                PdCall::IrqAck {
                    channel: ChannelId::new(0).unwrap(),
                },
            ),
            (
                with(PD_PPCALL, &[]),
                PdCall::PpCall {
                    channel: ChannelId::new(3).unwrap(),
                    message,
                },
            ),
            (
                with(PD_REPLY_RECV, &[REPLY_MESSAGE]),
                PdCall::ReplyRecv {
                    reply: Some(message),
                },
            ),
            (
                with(PD_REPLY_RECV, &[REPLY_NONE]),
                PdCall::ReplyRecv { reply: None },
            ),
            (
                with(PD_SYSTEM_OFF, &[300]),
                PdCall::SystemOff { status: 255 },
            ),
            (
                with(PD_STOP, &[STOP_EXCEPTION]),
                PdCall::Stop(StopCause::Exception),
            ),
            (
                with(PD_VCPU_RESTART, &[VM, 0x8000]),
                PdCall::VcpuRestart {
                    vcpu: vm,
                    entry: 0x8000,
                },
            ),
            (with(PD_VCPU_STOP, &[VM]), PdCall::VcpuStop { vcpu: vm }),
            (
                with(PD_VCPU_READ_REG, &[VM, 32]),
                PdCall::VcpuReadRegister { vcpu: vm, register },
            ),
            (
                with(PD_VCPU_WRITE_REG, &[VM, 32, 7]),
                PdCall::VcpuWriteRegister {
                    vcpu: vm,
                    register,
                    value: 7,
                },
            ),
            (
                with(PD_VCPU_INJECT_IRQ, &[VM, 1019, 255, 1]),
                PdCall::VcpuInjectIrq {
                    vcpu: vm,
                    intid: 1019,
                    priority: 255,
                    group: 1,
                },
            ),
            (
                with(PD_VCPU_ACK_VPPI, &[VM, 27]),
                PdCall::VcpuAckVppi {
                    vcpu: vm,
                    intid: 27,
                },
            ),
            (
                with(PD_MEM_DONATE, &[VM, IPA, 2]),
                PdCall::MemDonate { vm, range },
            ),
            (
                with(PD_MEM_SHARE_WITH_GUEST, &[VM, IPA, 2, 1]),
                PdCall::MemShareWithGuest {
                    vm,
                    range,
                    rights: Rights::READ,
                },
            ),
            (
                with(PD_MEM_UNSHARE_FROM_GUEST, &[VM, IPA, 2]),
                PdCall::MemUnshareFromGuest { vm, range },
            ),
            (
                with(PD_MEM_LEND, &[VM, IPA, 2, 7]),
                PdCall::MemLend {
                    vm,
                    range,
                    rights: Rights::ALL,
                },
            ),
            (
                with(PD_MEM_RECLAIM, &[VM, IPA, 2]),
                PdCall::MemReclaim { vm, range },
            ),
            (with(PD_VM_TEARDOWN, &[VM]), PdCall::VmTeardown { vm }),
            (
                with(PD_FRAME_CAPS, &[IPA]),
                PdCall::FrameCaps { from: Ipa(IPA) },
            ),
            (with(PD_AUDIT, &[]), PdCall::Audit { dump: false }),
            (with(PD_AUDIT, &[1]), PdCall::Audit { dump: true }),
            (
                with(PD_VM_CONSOLE_WRITE, &[VM, 5, word]),
                PdCall::VmConsoleWrite {
                    vm,
                    bytes: Bytes::new(5, &[word, 0, 0, 0, 0]).unwrap(),
                },
            ),
        ];
        for (decoded, expected) in cases {
            assert_eq!(decoded, expected);
        }
        // The function id is w0: the upper half of x0 is ignored.
        assert_eq!(
            decode(&[(0xdead << 32) | u64::from(PD_AUDIT)]),
            Ok(PdCall::Audit { dump: false })
        );
    }

    #[test]
    fn malformed_arguments_are_refused_with_invalid_parameter() {
        let refused = [
            // Counts too big.
            [u64::from(PD_DEBUG_WRITE), 49, 0, 0, 0, 0],
            [u64::from(PD_VM_CONSOLE_WRITE), VM, 41, 0, 0, 0],
            // Channel and child ids above 61, or with bits set above the field.
            [u64::from(PD_NOTIFY), 62, 0, 0, 0, 0],
            [u64::from(PD_PPCALL), 1 << 40, 0, 0, 0, 0],
            [u64::from(PD_VCPU_STOP), 62, 0, 0, 0, 0],
            [u64::from(PD_MEM_DONATE), (1 << 32) | VM, IPA, 1, 0, 0],
            // Unknown flags and causes.
            [u64::from(PD_REPLY_RECV), 2, 0, 0, 0, 0],
            [u64::from(PD_STOP), 2, 0, 0, 0, 0],
            // Registers, INTIDs, priorities, groups, PPIs out of range.
            [u64::from(PD_VCPU_READ_REG), VM, REG_COUNT, 0, 0, 0],
            [u64::from(PD_VCPU_INJECT_IRQ), VM, 1020, 0, 0, 0],
            [u64::from(PD_VCPU_INJECT_IRQ), VM, 32, 256, 0, 0],
            [u64::from(PD_VCPU_INJECT_IRQ), VM, 32, 0, 2, 0],
            [u64::from(PD_VCPU_ACK_VPPI), VM, 32, 0, 0, 0],
            // Ranges: unaligned, empty, too long, beyond the IPA space.
            [u64::from(PD_MEM_DONATE), VM, IPA + 8, 1, 0, 0],
            [u64::from(PD_MEM_DONATE), VM, IPA, 0, 0, 0],
            [u64::from(PD_MEM_RECLAIM), VM, IPA, 513, 0, 0],
            [u64::from(PD_MEM_DONATE), VM, (1 << 40) - 0x1000, 2, 0, 0],
            // Rights empty or with unknown bits.
            [u64::from(PD_MEM_LEND), VM, IPA, 1, 0, 0],
            [u64::from(PD_MEM_SHARE_WITH_GUEST), VM, IPA, 1, 8, 0],
            [u64::from(PD_MEM_SHARE_WITH_GUEST), VM, IPA, 1, 0x101, 0],
            // A start that is no page of the IPA space.
            [u64::from(PD_FRAME_CAPS), IPA + 1, 0, 0, 0, 0],
            [u64::from(PD_FRAME_CAPS), 1 << 40, 0, 0, 0, 0],
        ];
        for words in refused {
            let answer = decode(&words);
            assert!(
                matches!(answer, Err(CallError::Invalid(_))),
                "{words:x?}: {answer:?}"
            );
            assert_eq!(answer.unwrap_err().code(), INVALID_PARAMETER);
        }
        // The largest legal values are taken.
        assert!(decode(&[u64::from(PD_DEBUG_WRITE), 48]).is_ok());
        assert!(decode(&[u64::from(PD_MEM_DONATE), VM, (1 << 40) - 0x1000, 1]).is_ok());
        assert!(decode(&[u64::from(PD_MEM_DONATE), VM, IPA, 512]).is_ok());
        assert!(decode(&[u64::from(PD_VCPU_READ_REG), VM, REG_COUNT - 1]).is_ok());
    }

    #[test]
    fn an_unknown_function_is_not_supported() {
        for function in [0u64, 0xC600_0119, 0xC600_00FF, 0x8400_0008] {
            assert_eq!(decode(&[function]), Err(CallError::NotSupported));
        }
        assert_eq!(CallError::NotSupported.code(), NOT_SUPPORTED);
    }
}
