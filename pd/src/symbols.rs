//! Data symbols the image builder patches into each PD's ELF (libmicrokit's `microkit_*` and the
//! `setvar_vaddr` variables).
//!
//! Each symbol is an ordinary (immutable) `#[no_mangle]` static placed in `.data`, so it has bytes
//! in the file for the builder to overwrite. Because the compiler sees its initial value, every
//! read goes through `read_volatile`: the value that counts is the one in memory at run time, put
//! there by the builder, not the zero in the source.

/// Longest PD name the builder writes, NUL padded.
pub const NAME_LEN: usize = 64;

/// Read a patched symbol as the builder left it in memory.
#[doc(hidden)]
pub fn read_patched<T: Copy>(symbol: &T) -> T {
    // SAFETY: `symbol` is a valid, aligned reference to a `Copy` value; a volatile read only
    // stops the compiler from assuming the value it was initialised with.
    unsafe { core::ptr::read_volatile(symbol) }
}

mod patched {
    // The names are the Microkit tool's; the builder looks them up in the symbol table.
    #![allow(non_upper_case_globals)]

    #[no_mangle]
    #[link_section = ".data"]
    static microkit_name: [u8; super::NAME_LEN] = [0; super::NAME_LEN];
    #[no_mangle]
    #[link_section = ".data"]
    static microkit_passive: u8 = 0;
    #[no_mangle]
    #[link_section = ".data"]
    static microkit_notifications: u64 = 0;
    #[no_mangle]
    #[link_section = ".data"]
    static microkit_pps: u64 = 0;
    #[no_mangle]
    #[link_section = ".data"]
    static microkit_irqs: u64 = 0;

    pub(super) fn name() -> [u8; super::NAME_LEN] {
        super::read_patched(&microkit_name)
    }
    pub(super) fn passive() -> u8 {
        super::read_patched(&microkit_passive)
    }
    pub(super) fn notifications() -> u64 {
        super::read_patched(&microkit_notifications)
    }
    pub(super) fn pps() -> u64 {
        super::read_patched(&microkit_pps)
    }
    pub(super) fn irqs() -> u64 {
        super::read_patched(&microkit_irqs)
    }
}

/// This PD's name from system.xml.
#[derive(Clone, Copy, Debug)]
pub struct PdName([u8; NAME_LEN]);

impl PdName {
    /// The name up to its first NUL; an unpatched or non-UTF-8 name reads as `"?"`.
    pub fn as_str(&self) -> &str {
        let length = self
            .0
            .iter()
            .position(|&byte| byte == 0)
            .unwrap_or(NAME_LEN);
        match self.0.get(..length).map(core::str::from_utf8) {
            Some(Ok(name)) if !name.is_empty() => name,
            _ => "?",
        }
    }
}

impl core::fmt::Display for PdName {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// This PD's name (`microkit_name`).
pub fn pd_name() -> PdName {
    PdName(patched::name())
}

/// Whether this PD is passive (`microkit_passive`).
pub fn pd_is_passive() -> bool {
    patched::passive() != 0
}

/// Channels this PD may notify (`microkit_notifications`, bit `i` = channel `i`).
pub fn notification_channels() -> crate::ChannelSet {
    crate::ChannelSet::from_bits(patched::notifications())
}

/// Channels this PD may call (`microkit_pps`).
pub fn pp_channels() -> crate::ChannelSet {
    crate::ChannelSet::from_bits(patched::pps())
}

/// Channels on which this PD receives interrupts (`microkit_irqs`).
pub fn irq_channels() -> crate::ChannelSet {
    crate::ChannelSet::from_bits(patched::irqs())
}

/// Define a `u64` variable the builder patches (a `<map setvar_vaddr="NAME">` or a memory
/// region's `setvar`) and read its patched value as an [`Ipa`](crate::Ipa). Use once per name:
///
/// ```
/// let buffer: frameshift_pd::Ipa = frameshift_pd::memory_region_symbol!(buffer_vaddr);
/// // On the host nothing patches it.
/// assert_eq!(buffer, frameshift_pd::Ipa(0));
/// ```
#[macro_export]
macro_rules! memory_region_symbol {
    ($symbol:ident) => {{
        #[allow(non_upper_case_globals, unsafe_code)]
        #[no_mangle]
        #[link_section = ".data"]
        static $symbol: u64 = 0;
        $crate::Ipa($crate::symbols::read_patched(&$symbol))
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_stops_at_nul_and_tolerates_garbage() {
        let mut bytes = [0u8; NAME_LEN];
        bytes[..5].copy_from_slice(b"hello");
        assert_eq!(PdName(bytes).as_str(), "hello");
        assert_eq!(PdName([0; NAME_LEN]).as_str(), "?");
        assert_eq!(PdName([0xff; NAME_LEN]).as_str(), "?");
        assert_eq!(PdName([b'a'; NAME_LEN]).as_str().len(), NAME_LEN);
    }

    #[test]
    fn patched_symbols_read_as_initialised_on_the_host() {
        assert!(!pd_is_passive());
        assert!(notification_channels().is_empty());
        assert_eq!(
            crate::memory_region_symbol!(test_region_vaddr),
            crate::Ipa(0)
        );
    }
}
