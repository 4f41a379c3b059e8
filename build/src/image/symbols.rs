//! The Microkit-style symbols the builder patches into PD programs, and the values they get.
//!
//! As in Microkit, runtime symbols are optional (patched when the program defines them) and
//! `setvar` symbols are required (a missing one is a build error: the PD would otherwise run
//! with a zero address).

use crate::sdf::model::{ProtectionDomain, SystemDescription};

use super::address::PhysAddr;
use super::elf::ElfImage;
use super::error::ImageError;

/// `[u8; 64]`: the PD's name, NUL padded.
pub const MICROKIT_NAME: &str = "microkit_name";
/// `u64`: bit `id` set for every channel on which this PD may notify.
pub const MICROKIT_NOTIFICATIONS: &str = "microkit_notifications";
/// `u64`: bit `id` set for every channel on which this PD may make a protected procedure call.
pub const MICROKIT_PPS: &str = "microkit_pps";
/// `u64`: bit `id` set for every channel id that delivers an interrupt.
pub const MICROKIT_IRQS: &str = "microkit_irqs";
/// `u8`: 1 if the PD is passive.
pub const MICROKIT_PASSIVE: &str = "microkit_passive";
/// Size of the `microkit_name` array.
pub const MICROKIT_NAME_LEN: usize = 64;

/// One value to write at a symbol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Patch {
    /// The symbol.
    pub(crate) symbol: String,
    /// The little-endian bytes.
    pub(crate) value: Vec<u8>,
    /// `Some(reason)` if a missing symbol is an error (setvars), `None` if optional.
    pub(crate) required_by: Option<String>,
}

/// Bit `id` of a channel mask (ids above 63 cannot be represented and are left out; the
/// boot-info reader refuses ids above 61 anyway).
fn bit(id: u64) -> u64 {
    u32::try_from(id)
        .ok()
        .and_then(|id| 1u64.checked_shl(id))
        .unwrap_or(0)
}

/// The Microkit runtime symbols of PD number `pd_index`.
pub(crate) fn runtime_patches(system: &SystemDescription, pd_index: usize) -> Vec<Patch> {
    let Some(pd) = system.protection_domains.get(pd_index) else {
        return Vec::new();
    };
    let mut notifications = 0u64;
    let mut pps = 0u64;
    for channel in &system.channels {
        for end in channel.ends.iter().filter(|end| end.pd == pd_index) {
            if end.notify {
                notifications |= bit(end.id);
            }
            if end.pp {
                pps |= bit(end.id);
            }
        }
    }
    let irqs = pd.irqs.iter().fold(0u64, |mask, irq| mask | bit(irq.id));
    let mut name = pd.name.as_bytes().to_vec();
    name.resize(MICROKIT_NAME_LEN, 0);
    let optional = |symbol: &str, value: Vec<u8>| Patch {
        symbol: symbol.to_string(),
        value,
        required_by: None,
    };
    vec![
        optional(MICROKIT_NAME, name),
        optional(MICROKIT_NOTIFICATIONS, notifications.to_le_bytes().to_vec()),
        optional(MICROKIT_PPS, pps.to_le_bytes().to_vec()),
        optional(MICROKIT_IRQS, irqs.to_le_bytes().to_vec()),
        optional(MICROKIT_PASSIVE, vec![u8::from(pd.passive)]),
    ]
}

/// Applies `patches` to `elf`.
pub(crate) fn apply(elf: &mut ElfImage, patches: &[Patch]) -> Result<(), ImageError> {
    for patch in patches {
        let mut value = patch.value.clone();
        if patch.symbol == MICROKIT_NAME {
            // A shorter array than 64 bytes still gets the name, if it fits with its NUL.
            if let Some(symbol) = elf.symbol(MICROKIT_NAME) {
                let size = usize::try_from(symbol.size).unwrap_or(usize::MAX);
                let name_len = value
                    .iter()
                    .position(|&byte| byte == 0)
                    .unwrap_or(value.len());
                if size != 0 && size < value.len() && size > name_len {
                    value.truncate(size);
                }
            }
        }
        let patched = elf.patch(&patch.symbol, &value)?;
        if let (false, Some(reason)) = (patched, &patch.required_by) {
            return Err(ImageError::SymbolMissing {
                path: elf.path.clone(),
                symbol: patch.symbol.clone(),
                needed_by: reason.clone(),
            });
        }
    }
    Ok(())
}

/// A required `u64` patch.
pub(crate) fn setvar(symbol: &str, value: u64, reason: String) -> Patch {
    Patch {
        symbol: symbol.to_string(),
        value: value.to_le_bytes().to_vec(),
        required_by: Some(reason),
    }
}

/// Lists a PD's required setvar patches, given each region's physical address (`region_pa`)
/// and the length of its prefill file as loaded into the image (`prefill_len`).
pub(crate) fn setvar_patches(
    system: &SystemDescription,
    pd: &ProtectionDomain,
    region_pa: impl Fn(usize) -> Option<PhysAddr>,
    prefill_len: impl Fn(usize) -> Option<u64>,
) -> Result<Vec<Patch>, ImageError> {
    let mut patches = Vec::new();
    for map in &pd.maps {
        let region = system
            .memory_regions
            .get(map.memory_region)
            .ok_or_else(|| ImageError::BadReference {
                what: format!("a map of PD `{}`", pd.name),
            })?;
        if let Some(symbol) = &map.setvar_vaddr {
            let reason = format!("setvar_vaddr of the map of `{}`", region.name);
            patches.push(setvar(symbol, map.vaddr.get(), reason));
        }
        if let Some(symbol) = &map.setvar_size {
            let reason = format!("setvar_size of the map of `{}`", region.name);
            patches.push(setvar(symbol, region.size, reason));
        }
        if let Some(symbol) = &map.setvar_prefill_size {
            // The SDF parser refuses this on a region without a prefill file (Microkit's rule);
            // a model built in code gets an error here rather than a patched 0.
            let len = prefill_len(map.memory_region).ok_or_else(|| ImageError::BadReference {
                what: format!(
                    "setvar_prefill_size `{symbol}` of PD `{}` (memory region `{}` has no prefill file)",
                    pd.name, region.name
                ),
            })?;
            let reason = format!("setvar_prefill_size of the map of `{}`", region.name);
            patches.push(setvar(symbol, len, reason));
        }
    }
    for variable in &pd.id_setvars {
        let reason = format!("setvar id {}", variable.id);
        patches.push(setvar(&variable.symbol, variable.id, reason));
    }
    for variable in &pd.setvars {
        let region = system.memory_regions.get(variable.region_paddr);
        let pa = region_pa(variable.region_paddr);
        let (Some(region), Some(pa)) = (region, pa) else {
            return Err(ImageError::BadReference {
                what: format!("setvar `{}` of PD `{}`", variable.symbol, pd.name),
            });
        };
        let reason = format!("setvar region_paddr=\"{}\"", region.name);
        patches.push(setvar(&variable.symbol, pa.get(), reason));
    }
    Ok(patches)
}
