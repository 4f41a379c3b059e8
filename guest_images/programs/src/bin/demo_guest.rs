//! The demo guest (DESIGN.md 8): a page turns private and shared in place while the VMM watches.
//!
//! 1. It shares a buffer page; the VMM writes an encrypted frame into it.
//! 2. It unshares the page; the VMM's next read of it faults.
//! 3. It checks with the state query that the page is private, and decrypts it in place.
//! 4. It shares the page again; the VMM reads the plaintext at the same physical address.
//!
//! Each step prints one line and rings the VMM's doorbell. In split mode the guest reaches the
//! shared page through its alias (`IPA | 1 << 39`) and the private page at its IPA; in history
//! mode both are the IPA. Without a hypervisor (plain QEMU) it only decrypts a local copy, to
//! check its runtime.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![deny(unsafe_code)]

use frameshift_abi::guest_call::{MemState, KVM_UID, PEER_HOST, PEER_NONE};
use frameshift_guest::calls::{self, has_feature};
use frameshift_guest::page::{self, WordView};
use frameshift_guest::{println, Guest, Ipa};
use frameshift_guest_programs::{Checks, Doorbell, DOORBELL_PAGE};
use frameshift_vm_protocol::demo::{self, PLAINTEXT, PLAINTEXT_LEN};
use frameshift_vm_protocol::doorbell::{Command, ProgramKind, STATUS_FAULTED, STATUS_OK};

fn run(guest: &Guest) {
    let mut checks = Checks::default();
    if guest.under_hypervisor() {
        demo(guest, &mut checks);
        Doorbell.ring(Command::Result {
            failures: checks.failed,
        });
    } else {
        bare(&mut checks);
    }
    if checks.failed == 0 {
        println!("demo passed ({} checks)", checks.passed);
    } else {
        println!(
            "demo FAILED: {} of {} checks",
            checks.failed,
            checks.passed + checks.failed
        );
    }
}

/// Decrypt `buffer`'s first bytes in place and check the message.
fn decrypt_in_place(buffer: Ipa, checks: &mut Checks) {
    #[allow(unsafe_code)]
    // SAFETY: `buffer` is a page of this guest's RAM, mapped read-write at its IPA, that nobody
    // else can reach (the hypervisor just said so, or there is no hypervisor); no other
    // reference to it is alive.
    let bytes = unsafe { page::private_bytes(buffer) };
    let message = &mut bytes[..PLAINTEXT_LEN];
    demo::apply_keystream(message);
    let text = core::str::from_utf8(message).unwrap_or("(not text)");
    println!("decrypted in place: \"{text}\"");
    checks.check(
        "plaintext",
        message == PLAINTEXT,
        format_args!("got {message:x?}"),
    );
}

fn bare(checks: &mut Checks) {
    println!("no hypervisor: nothing to convert; checking the runtime with a local decryption");
    let Some(buffer) = page::allocate_page() else {
        checks.check("allocate", false, format_args!("no free page"));
        return;
    };
    let view = WordView::new(buffer);
    for (index, word) in demo::words(&demo::ciphertext()).enumerate() {
        view.write(index as u64 * 8, word);
    }
    decrypt_in_place(buffer, checks);
}

fn demo(guest: &Guest, checks: &mut Checks) {
    let Some(mode) = guest.mode else { return };
    if let Err(error) = calls::mmio_guard(DOORBELL_PAGE) {
        checks.check(
            "doorbell",
            false,
            format_args!("MMIO_GUARD refused: {error}"),
        );
        return;
    }
    println!("doorbell page {DOORBELL_PAGE} registered with MMIO_GUARD");
    Doorbell.ring(Command::Hello {
        program: ProgramKind::Demo,
        mode,
    });

    let info = calls::hyp_meminfo();
    let granule = info.map_or(0, |info| info.granule);
    let features = calls::features();
    let uid = calls::call_uid();
    println!(
        "hypervisor: UID {} (KVM's), FEATURES {:#x} {:#x} {:#x} {:#x}, granule {granule} bytes",
        if uid == KVM_UID { "is" } else { "is NOT" },
        features[0],
        features[1],
        features[2],
        features[3]
    );
    checks.equal("uid", uid, KVM_UID);
    checks.equal("granule", granule, 4096);
    for (name, number) in [("MEM_SHARE", 3), ("MEM_UNSHARE", 4), ("FS_MEM_STATE", 120)] {
        checks.check(
            name,
            has_feature(features, number),
            format_args!("not in FEATURES"),
        );
    }

    let Some(buffer) = page::allocate_page() else {
        checks.check("allocate", false, format_args!("no free page"));
        return;
    };
    let shared = mode.shared_view(buffer);
    println!("step 1: buffer page at IPA {buffer} is private; sharing it with the VMM");
    checks.equal("share", calls::mem_share(buffer, 1), Ok(1));
    let state = calls::mem_state(buffer, 1);
    let view = state.map(|answer| (answer.state(), answer.peer, answer.mapped_at));
    checks.equal(
        "shared state",
        view,
        Ok((Some(MemState::SharedOwned), PEER_HOST, shared)),
    );
    println!("MEM_SHARE done: the hypervisor says shared with the VMM, reached at {shared}");
    let status = Doorbell.ring(Command::BufferShared(shared));
    checks.equal("VMM wrote the frame", status, STATUS_OK);
    let first = WordView::new(shared).read(0);
    println!("the VMM wrote an encrypted frame into it: first bytes {first:#018x}");

    println!("step 2: MEM_UNSHARE {buffer}: the page becomes private again, in place");
    checks.equal("unshare", calls::mem_unshare(buffer, 1), Ok(1));
    let status = Doorbell.ring(Command::BufferUnshared(buffer));
    if checks.equal("VMM read faulted", status, STATUS_FAULTED) {
        println!("the VMM's read of the page faulted, as it must");
    }

    let state = calls::mem_state(buffer, 1);
    let private = state.is_ok_and(|answer| answer.is_private() && answer.mapped_at == buffer);
    checks.check("private state", private, format_args!("{state:x?}"));
    if let Ok(answer) = state {
        println!(
            "step 3: FS_MEM_STATE {buffer}: state {} (private), peer {} (none), mapped at {}; decrypting in place",
            answer.state_raw, answer.peer, answer.mapped_at
        );
    }
    if private {
        decrypt_in_place(buffer, checks);
    }
    checks.equal("peer none", state.map(|answer| answer.peer), Ok(PEER_NONE));

    println!("step 4: sharing the page again for the VMM to read the plaintext");
    checks.equal("share again", calls::mem_share(buffer, 1), Ok(1));
    let status = Doorbell.ring(Command::PlaintextReady(shared));
    if checks.equal("VMM read the plaintext", status, STATUS_OK) {
        println!("the VMM read the plaintext at the same physical address");
    }
}

frameshift_guest::guest_main!(run, devices = [DOORBELL_PAGE]);
