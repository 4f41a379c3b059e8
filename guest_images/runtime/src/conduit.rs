//! The two ways a guest traps out: `HVC #0` (the hypervisor's calls, ABI family 1) and `SMC #0`
//! (never served by Frameshift: it goes to the VMM as `FAULT_VM_SMC`). Both implement
//! [`smccc::Call`], so the `smccc` crate's PSCI and Arm-architecture calls run over them.
//!
//! On the AArch64 firmware target each call is the real instruction with `x0`-`x17` in and out
//! (SMCCC 1.2 allows results up to `x17`; Frameshift's state query returns six). In host unit
//! tests it goes to a fake hypervisor the test installs, so the encoding of every wrapper is
//! tested on x86-64 (STYLE rule 2).

/// Which instruction a call uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Conduit {
    /// `HVC #0`.
    Hvc,
    /// `SMC #0`.
    Smc,
}

/// The `HVC #0` conduit.
#[derive(Clone, Copy, Debug)]
pub struct Hvc;

/// The `SMC #0` conduit.
#[derive(Clone, Copy, Debug)]
pub struct Smc;

/// One call: `function` in `w0`, `args` in `x1`-`x17`; returns `x0`-`x17`.
pub fn call(conduit: Conduit, function: u32, args: [u64; 17]) -> [u64; 18] {
    let mut registers = [0u64; 18];
    registers[0] = u64::from(function);
    registers[1..].copy_from_slice(&args);
    backend::trap(conduit, &mut registers);
    registers
}

fn call32(conduit: Conduit, function: u32, args: [u32; 7]) -> [u32; 8] {
    let mut wide = [0u64; 17];
    for (slot, arg) in wide.iter_mut().zip(args) {
        *slot = u64::from(arg);
    }
    let results = call(conduit, function, wide);
    // SMC32/HVC32 results are the low 32 bits of x0-x7.
    core::array::from_fn(|index| results[index] as u32)
}

impl smccc::Call for Hvc {
    fn call32(function: u32, args: [u32; 7]) -> [u32; 8] {
        call32(Conduit::Hvc, function, args)
    }

    fn call64(function: u32, args: [u64; 17]) -> [u64; 18] {
        call(Conduit::Hvc, function, args)
    }
}

impl smccc::Call for Smc {
    fn call32(function: u32, args: [u32; 7]) -> [u32; 8] {
        call32(Conduit::Smc, function, args)
    }

    fn call64(function: u32, args: [u64; 17]) -> [u64; 18] {
        call(Conduit::Smc, function, args)
    }
}

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod backend {
    use super::Conduit;

    macro_rules! trap {
        ($instruction:literal, $r:ident) => {
            // SAFETY: the hypervisor (or, for an SMC, the VMM through the hypervisor) reads and
            // writes only x0-x17 and never this guest's memory on its behalf for a call whose
            // arguments are plain values; all of x0-x17 are in/out here, so the compiler keeps
            // nothing live in them.
            unsafe {
                core::arch::asm!(
                    $instruction,
                    inout("x0") $r[0], inout("x1") $r[1], inout("x2") $r[2], inout("x3") $r[3],
                    inout("x4") $r[4], inout("x5") $r[5], inout("x6") $r[6], inout("x7") $r[7],
                    inout("x8") $r[8], inout("x9") $r[9], inout("x10") $r[10],
                    inout("x11") $r[11], inout("x12") $r[12], inout("x13") $r[13],
                    inout("x14") $r[14], inout("x15") $r[15], inout("x16") $r[16],
                    inout("x17") $r[17],
                    options(nostack),
                )
            }
        };
    }

    pub(super) fn trap(conduit: Conduit, registers: &mut [u64; 18]) {
        let r = registers;
        match conduit {
            Conduit::Hvc => trap!("hvc #0", r),
            Conduit::Smc => trap!("smc #0", r),
        }
    }
}

#[cfg(all(not(all(target_arch = "aarch64", target_os = "none")), not(test)))]
mod backend {
    use super::Conduit;

    /// A host build (`cargo clippy` on x86-64) has no hypervisor: every call is refused.
    pub(super) fn trap(_conduit: Conduit, registers: &mut [u64; 18]) {
        *registers = [0; 18];
        registers[0] = frameshift_abi::smccc::NOT_SUPPORTED as u64;
    }
}

#[cfg(all(not(all(target_arch = "aarch64", target_os = "none")), test))]
pub(crate) mod backend {
    //! The host fake: each test thread installs its own hypervisor.
    use super::Conduit;
    use std::boxed::Box;
    use std::cell::RefCell;

    type Fake = Box<dyn FnMut(Conduit, &mut [u64; 18])>;

    std::thread_local! {
        static FAKE: RefCell<Option<Fake>> = RefCell::new(None);
    }

    /// Route this thread's calls to `fake`, which gets `x0`-`x17` and leaves the results there.
    pub(crate) fn install(fake: impl FnMut(Conduit, &mut [u64; 18]) + 'static) {
        FAKE.with(|cell| *cell.borrow_mut() = Some(Box::new(fake)));
    }

    pub(super) fn trap(conduit: Conduit, registers: &mut [u64; 18]) {
        FAKE.with(|cell| match cell.borrow_mut().as_mut() {
            Some(fake) => fake(conduit, registers),
            None => panic!("test did not install a fake hypervisor"),
        });
    }
}

#[cfg(test)]
pub(crate) use backend::install as install_fake;

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::rc::Rc;
    use std::vec::Vec;

    #[test]
    fn call_passes_function_and_arguments_and_returns_every_register() {
        let seen = Rc::new(RefCell::new(Vec::new()));
        let log = seen.clone();
        install_fake(move |conduit, registers| {
            log.borrow_mut()
                .push((conduit, registers[0], registers[1], registers[17]));
            *registers = core::array::from_fn(|index| 100 + index as u64);
        });
        let mut args = [0u64; 17];
        args[0] = 0xAA;
        args[16] = 0xBB;
        let results = call(Conduit::Smc, 0xC600_0003, args);
        assert_eq!(results[0], 100);
        assert_eq!(results[17], 117);
        assert_eq!(*seen.borrow(), [(Conduit::Smc, 0xC600_0003, 0xAA, 0xBB)]);
    }

    #[test]
    fn thirty_two_bit_calls_zero_extend_and_truncate() {
        install_fake(|conduit, registers| {
            assert_eq!(conduit, Conduit::Hvc);
            assert_eq!(registers[1], 0xFFFF_FFFF);
            registers[0] = 0x1_0000_0002;
        });
        let results = <Hvc as smccc::Call>::call32(0x8400_0000, [u32::MAX, 0, 0, 0, 0, 0, 0]);
        assert_eq!(results[0], 2);
    }
}
