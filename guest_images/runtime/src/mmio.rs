//! Device register access. On the firmware target each access is one `LDR`/`STR` with a plain
//! base register, written in `asm!` so the compiler can never pick a pair or a write-back form:
//! those leave `ESR_EL2.ISV` clear, and the VMM could not emulate the access from the syndrome
//! (DESIGN.md 9, "stp aborts have ISV=0"). In host unit tests accesses go to a fake device.

use frameshift_abi::addr::Ipa;

/// Read the 32-bit register at `address`.
///
/// # Safety
///
/// `address` must be a 4-byte aligned device register this guest has mapped as Device memory
/// (under a hypervisor: an MMIO page it registered with `MMIO_GUARD`), whose read has no effect
/// the caller does not intend.
pub unsafe fn read32(address: Ipa) -> u32 {
    // SAFETY: forwarded from this function's contract.
    unsafe { backend::read(address, 4) as u32 }
}

/// Write the 32-bit register at `address`.
///
/// # Safety
///
/// As [`read32`], for a write.
pub unsafe fn write32(address: Ipa, value: u32) {
    // SAFETY: forwarded from this function's contract.
    unsafe { backend::write(address, 4, u64::from(value)) }
}

/// Read the 64-bit register at `address`.
///
/// # Safety
///
/// As [`read32`], 8-byte aligned.
pub unsafe fn read64(address: Ipa) -> u64 {
    // SAFETY: forwarded from this function's contract.
    unsafe { backend::read(address, 8) }
}

/// Write the 64-bit register at `address`.
///
/// # Safety
///
/// As [`read32`], 8-byte aligned, for a write.
pub unsafe fn write64(address: Ipa, value: u64) {
    // SAFETY: forwarded from this function's contract.
    unsafe { backend::write(address, 8, value) }
}

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod backend {
    use frameshift_abi::addr::Ipa;

    /// # Safety
    ///
    /// See [`super::read32`].
    pub(super) unsafe fn read(address: Ipa, bytes: u8) -> u64 {
        let value: u64;
        let pointer = address.get() as usize;
        if bytes == 4 {
            let word: u32;
            // SAFETY: the caller guarantees a mapped, aligned device register.
            unsafe {
                core::arch::asm!("ldr {value:w}, [{pointer}]", value = out(reg) word,
                    pointer = in(reg) pointer, options(nostack, preserves_flags));
            }
            value = u64::from(word);
        } else {
            // SAFETY: as above.
            unsafe {
                core::arch::asm!("ldr {value}, [{pointer}]", value = out(reg) value,
                    pointer = in(reg) pointer, options(nostack, preserves_flags));
            }
        }
        value
    }

    /// # Safety
    ///
    /// See [`super::write32`].
    pub(super) unsafe fn write(address: Ipa, bytes: u8, value: u64) {
        let pointer = address.get() as usize;
        if bytes == 4 {
            // SAFETY: the caller guarantees a mapped, aligned device register.
            unsafe {
                core::arch::asm!("str {value:w}, [{pointer}]", value = in(reg) value as u32,
                    pointer = in(reg) pointer, options(nostack, preserves_flags));
            }
        } else {
            // SAFETY: as above.
            unsafe {
                core::arch::asm!("str {value}, [{pointer}]", value = in(reg) value,
                    pointer = in(reg) pointer, options(nostack, preserves_flags));
            }
        }
    }
}

#[cfg(not(all(target_arch = "aarch64", target_os = "none")))]
pub(crate) mod backend {
    //! Host builds: accesses go to a per-thread fake device (tests), or read as zero.
    use frameshift_abi::addr::Ipa;

    /// One device access: address, size in bytes, and the value written (`None` for a read).
    #[cfg(test)]
    pub(crate) type Device = std::boxed::Box<dyn FnMut(Ipa, u8, Option<u64>) -> u64>;

    #[cfg(test)]
    std::thread_local! {
        static DEVICE: std::cell::RefCell<Option<Device>> = std::cell::RefCell::new(None);
    }

    /// Route this thread's device accesses to `device`.
    #[cfg(test)]
    pub(crate) fn install(device: impl FnMut(Ipa, u8, Option<u64>) -> u64 + 'static) {
        DEVICE.with(|cell| *cell.borrow_mut() = Some(std::boxed::Box::new(device)));
    }

    #[cfg_attr(not(test), allow(unused_variables))]
    fn access(address: Ipa, bytes: u8, written: Option<u64>) -> u64 {
        #[cfg(test)]
        return DEVICE.with(|cell| match cell.borrow_mut().as_mut() {
            Some(device) => device(address, bytes, written),
            None => panic!("test did not install a fake device"),
        });
        #[cfg(not(test))]
        0
    }

    /// # Safety
    ///
    /// None on the host: nothing is dereferenced.
    pub(super) unsafe fn read(address: Ipa, bytes: u8) -> u64 {
        access(address, bytes, None)
    }

    /// # Safety
    ///
    /// None on the host: nothing is dereferenced.
    pub(super) unsafe fn write(address: Ipa, bytes: u8, value: u64) {
        access(address, bytes, Some(value));
    }
}

#[cfg(test)]
pub(crate) use backend::install as install_fake_device;
