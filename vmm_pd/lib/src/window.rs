//! The window: the VMM's own map of its guest's RAM (libvmm's `guest_ram_vaddr`). Guest page
//! `GUEST_RAM_IPA + n` is window page `window + n`; in split mode a guest names a shared page by
//! its alias, which is the same page. Only pages the guest shares are reachable through it.

use frameshift_abi::addr::{Ipa, PAGE_SIZE};
use frameshift_vm_protocol::boot::GUEST_RAM_IPA;

/// The window onto a guest's RAM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// The first address in the VMM.
    pub base: Ipa,
    /// Its size in pages (the guest's RAM).
    pub pages: u64,
}

impl Window {
    /// The VMM address of the page holding guest address `ipa` (either half in split mode), if
    /// it lies in the guest's RAM.
    pub fn page_of(&self, ipa: Ipa) -> Option<Ipa> {
        let offset = ipa.private_ipa().get().checked_sub(GUEST_RAM_IPA.get())?;
        (offset < self.pages * PAGE_SIZE).then(|| self.base.add(offset).page_base())
    }

    /// The guest IPA of window page `index`.
    pub const fn guest_page(&self, index: u64) -> Ipa {
        GUEST_RAM_IPA.add(index * PAGE_SIZE)
    }

    /// The VMM address of window page `index`.
    pub const fn vmm_page(&self, index: u64) -> Ipa {
        self.base.add(index * PAGE_SIZE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_pages_map_into_the_window_in_either_half() {
        let window = Window {
            base: Ipa(0x2000_0000),
            pages: 512,
        };
        assert_eq!(window.page_of(Ipa(0x4000_0000)), Some(Ipa(0x2000_0000)));
        assert_eq!(window.page_of(Ipa(0x4001_0abc)), Some(Ipa(0x2001_0000)));
        assert_eq!(window.page_of(Ipa(0x80_4001_0000)), Some(Ipa(0x2001_0000)));
        assert_eq!(window.page_of(Ipa(0x401f_f000)), Some(Ipa(0x201f_f000)));
        for outside in [0x4020_0000, 0x3fff_f000, 0, 0x80_4020_0000, u64::MAX] {
            assert_eq!(window.page_of(Ipa(outside)), None, "{outside:#x}");
        }
        assert_eq!(window.guest_page(3), Ipa(0x4000_3000));
        assert_eq!(window.vmm_page(3), Ipa(0x2000_3000));
    }
}
