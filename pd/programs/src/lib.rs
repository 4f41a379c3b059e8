//! What the scenario PD programs agree on: channel ids, labels, round counts and addresses. The
//! systems in tests/systems/*.xml use the same numbers, and the QEMU tests check the lines the
//! programs print.
#![no_std]
#![forbid(unsafe_code)]

use frameshift_pd::{get_mr, set_mr, Channel, Ipa, MessageInfo};

pub mod bench;

/// Notification rounds of the ping-pong scenario.
pub const PING_PONG_ROUNDS: u64 = 1000;
/// The channel ping and pong each know the other by (pingpong.xml).
pub const PING_PONG_CHANNEL: Channel = Channel::new(0);

/// The channel the client calls the server on, and the server sees the client on (ppc.xml).
pub const PPC_CHANNEL: Channel = Channel::new(0);
/// Request label: "sum the message registers".
pub const LABEL_SUM: u64 = 0x5;
/// Reply label of a sum.
pub const LABEL_SUM_REPLY: u64 = 0x6;
/// Protected calls the client makes.
pub const PPC_CALLS: u64 = 3;

/// The servers' `protected` body: checks that the call is a [`LABEL_SUM`] request on
/// `expected`, sums its message registers into MR0 and returns the sum with the reply's
/// [`MessageInfo`]. Any other call is a bug in the scenario: the PD panics (and is stopped).
pub fn serve_sum(expected: Channel, channel: Channel, message: MessageInfo) -> (u64, MessageInfo) {
    if channel != expected || message.label() != LABEL_SUM {
        panic!(
            "unexpected call on channel {} label={:#x}",
            channel.index(),
            message.label()
        );
    }
    let sum: u64 = (0..message.count()).map(get_mr).sum();
    set_mr(0, sum);
    (sum, MessageInfo::new(LABEL_SUM_REPLY, 1))
}

/// The channel between attacker and survivor (isolation.xml).
pub const ISOLATION_CHANNEL: Channel = Channel::new(0);
/// Where the survivor maps its secret region; the attacker has nothing mapped there.
pub const SECRET_IPA: Ipa = Ipa(0x1000_0000);
/// Where the attacker maps the survivor's secret region read-only (isolation.xml): it may read
/// the secret there, but a write must fault (I2: a borrower never has more than it was given).
pub const SECRET_READ_ONLY_IPA: Ipa = Ipa(0x2000_0000);
/// The value the survivor keeps in its secret region.
pub const SECRET_VALUE: u64 = 0x5ec2_e75e_c2e7_0001;
/// An address in the hypervisor's reserved range (its image is linked here): mapped in no
/// domain (invariant I4).
pub const HYPERVISOR_IPA: Ipa = Ipa(0x4010_0000);

/// Times the worker must see the spinner's counter move before it ends the run (preemption.xml).
pub const PREEMPTION_ROUNDS: u64 = 3;

/// The channel the VMM and its peer PD use in the top-level system.xml.
pub const VMM_PEER_CHANNEL: Channel = Channel::new(1);

/// Faults of its child the restarter answers with a reply (each restarts the child, which
/// retries the faulting load); it leaves the next one unanswered (restart.xml).
pub const RESTARTS: u64 = 3;

/// The channel the passive server and its client share: calls and notifications (passive.xml).
pub const PASSIVE_CHANNEL: Channel = Channel::new(0);
/// Protected calls the passive client makes before it notifies the server.
pub const PASSIVE_CALLS: u64 = 2;

/// The channel the kicker notifies the higher-priority `kicked` PD on (starvation.xml).
pub const KICK_CHANNEL: Channel = Channel::new(0);
/// Kicks per second of counter time: one every 250 us, twenty per 5 ms time slice.
pub const KICKS_PER_SECOND: u64 = 4000;
/// Loop rounds of the peer's work: tens of millions of instructions, several time slices.
pub const PEER_ROUNDS: u64 = 8_000_000;

/// The 16-bit T32 instructions the thumb PD runs at EL0 (thumb.xml): `movs r0, #0`; a `wfi`
/// that traps to EL2; two `adds r0, #1` whose effect shows whether the hypervisor resumed right
/// after the `wfi`; `svc #0` back to EL1. The right answer is r0 = 2.
pub const T32_WFI_ADDS: u64 = 2;
