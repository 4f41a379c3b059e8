//! `<memory_region>` and `<map>`: parsing, and the per-address-space map checks.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use frameshift_abi::addr::{Ipa, PhysAddr};
use roxmltree::Node;

use super::error::{SdfError, SdfResult};
use super::model::Perms;
use super::platform::PAGE_SIZES;
use super::xml::{Pos, SdfFile};

/// A `<memory_region>` as written, with its position.
#[derive(Clone, Debug)]
pub(crate) struct RawMemoryRegion {
    pub(crate) name: String,
    pub(crate) size: u64,
    pub(crate) page_size: u64,
    pub(crate) page_size_specified: bool,
    pub(crate) phys_addr: Option<PhysAddr>,
    pub(crate) prefill_path: Option<PathBuf>,
    pub(crate) prefill_len: Option<u64>,
    /// `prefill_bootinfo` was given (Frameshift does not support it).
    pub(crate) prefill_bootinfo: bool,
    pub(crate) pos: Pos,
}

/// A `<map>` as written, with its position.
#[derive(Clone, Debug)]
pub(crate) struct RawMap {
    pub(crate) mr: String,
    pub(crate) vaddr: Ipa,
    pub(crate) perms: Perms,
    pub(crate) cached: bool,
    pub(crate) setvar_vaddr: Option<String>,
    pub(crate) setvar_size: Option<String>,
    pub(crate) setvar_prefill_size: Option<String>,
    pub(crate) pos: Pos,
}

/// `prefill_bootinfo` values Microkit knows (any other is refused by name).
const BOOTINFO_TYPES: [&str; 6] = [
    "x86_vbe",
    "x86_mbmmap",
    "x86_acpi_rsdp",
    "x86_framebuffer",
    "x86_tsc_freq",
    "fdt",
];

/// Where a `prefill_path` is found: the first search path that holds it.
fn find_on_search_path(path: &Path, search_paths: &[PathBuf]) -> Option<PathBuf> {
    search_paths
        .iter()
        .map(|dir| dir.join(path))
        .find(|candidate| candidate.exists())
}

impl RawMemoryRegion {
    pub(crate) fn from_xml(
        file: &SdfFile<'_>,
        node: Node<'_, '_>,
        search_paths: &[PathBuf],
    ) -> SdfResult<Self> {
        file.check_attributes(
            node,
            &[
                "name",
                "size",
                "page_size",
                "phys_addr",
                "prefill_path",
                "prefill_bootinfo",
            ],
        )?;
        let name = file.required(node, "name")?;

        let page_size_specified = node.attribute("page_size").is_some();
        let page_size = file.opt_number(node, "page_size")?.unwrap_or(PAGE_SIZES[0]);
        if !PAGE_SIZES.contains(&page_size) {
            return Err(
                file.value_error(node, format_args!("page size {page_size:#x} not supported"))
            );
        }

        let mut prefill = None;
        if let Some(path_text) = node.attribute("prefill_path") {
            let Some(full_path) = find_on_search_path(Path::new(path_text), search_paths) else {
                return Err(file.value_error(
                    node,
                    format_args!("unable to find prefill file: '{path_text}'"),
                ));
            };
            // Only the length is needed here; the image builder reads the bytes.
            let len = match std::fs::metadata(&full_path) {
                Ok(metadata) if metadata.is_file() => metadata.len(),
                _ => {
                    return Err(file.value_error(
                        node,
                        format_args!("failed to read file '{path_text}' at prefill_path"),
                    ))
                }
            };
            if len == 0 {
                return Err(
                    file.value_error(node, format_args!("prefill file '{path_text}' is empty"))
                );
            }
            prefill = Some((full_path, len));
        }

        let prefill_bootinfo = match node.attribute("prefill_bootinfo") {
            None => false,
            Some(kind) if BOOTINFO_TYPES.contains(&kind) => true,
            Some(kind) => {
                return Err(file.value_error(
                    node,
                    format_args!("BootInfoMap type: '{kind}' is not supported"),
                ))
            }
        };
        if prefill.is_some() && prefill_bootinfo {
            return Err(file.value_error(
                node,
                "prefill_path and prefill_bootinfo cannot be both specified",
            ));
        }

        let size = match file.opt_number(node, "size")? {
            Some(size) => {
                if !size.is_multiple_of(page_size) {
                    return Err(file.value_error(node, "size is not a multiple of the page size"));
                }
                if let Some((_, len)) = &prefill {
                    if *len > size {
                        return Err(file.value_error(
                            node,
                            format_args!(
                                "size of prefill file exceeds memory region size: {len:x} > {size:x}"
                            ),
                        ));
                    }
                }
                size
            }
            None if prefill_bootinfo => page_size,
            None => match &prefill {
                Some((_, len)) => round_up(file, node, *len, page_size)?,
                None => {
                    return Err(file.value_error(
                        node,
                        "size must be specified if memory region is not prefilled",
                    ))
                }
            },
        };

        let phys_addr = file.opt_number(node, "phys_addr")?.map(PhysAddr);
        if let Some(phys_addr) = phys_addr {
            if !phys_addr.is_aligned_to(page_size) {
                return Err(file.value_error(node, "phys_addr is not aligned to the page size"));
            }
        }

        let (prefill_path, prefill_len) = match prefill {
            Some((path, len)) => (Some(path), Some(len)),
            None => (None, None),
        };
        Ok(Self {
            name: name.to_string(),
            size,
            page_size,
            page_size_specified,
            phys_addr,
            prefill_path,
            prefill_len,
            prefill_bootinfo,
            pos: file.pos(node),
        })
    }
}

/// `len` rounded up to `page_size`; a file too large for the address space is refused instead of
/// wrapping.
fn round_up(file: &SdfFile<'_>, node: Node<'_, '_>, len: u64, page_size: u64) -> SdfResult<u64> {
    len.div_ceil(page_size)
        .checked_mul(page_size)
        .ok_or_else(|| file.value_error(node, "size of prefill file is too large"))
}

impl RawMap {
    /// A `<map>`; `allow_setvar` is false inside a virtual machine, which has no program image.
    pub(crate) fn from_xml(
        file: &SdfFile<'_>,
        node: Node<'_, '_>,
        allow_setvar: bool,
        max_vaddr: u64,
    ) -> SdfResult<Self> {
        let mut allowed = vec!["mr", "vaddr", "perms", "cached"];
        if allow_setvar {
            allowed.extend(["setvar_vaddr", "setvar_size", "setvar_prefill_size"]);
        }
        file.check_attributes(node, &allowed)?;

        let mr = file.required(node, "mr")?;
        let vaddr = Ipa(file.required_number(node, "vaddr")?);
        if vaddr.get() >= max_vaddr {
            return Err(file.value_error(
                node,
                format_args!("vaddr ({vaddr:#x}) must be less than {max_vaddr:#x}"),
            ));
        }

        let perms = match node.attribute("perms") {
            None => Perms {
                read: true,
                write: true,
                execute: false,
            },
            Some(text) => {
                let mut perms = Perms::default();
                for c in text.chars() {
                    match c {
                        'r' => perms.read = true,
                        'w' => perms.write = true,
                        'x' => perms.execute = true,
                        _ => {
                            return Err(file.value_error(
                                node,
                                "perms must only be a combination of 'r', 'w', and 'x'",
                            ))
                        }
                    }
                }
                // The kernel cannot map a page write-only on any architecture.
                if perms.write && !perms.read {
                    return Err(file.value_error(
                        node,
                        "perms must not be 'w', write-only mappings are not allowed",
                    ));
                }
                perms
            }
        };
        let cached = file.opt_bool(node, "cached", true)?;

        let symbol = |name: &str| node.attribute(name).map(str::to_string);
        Ok(Self {
            mr: mr.to_string(),
            vaddr,
            perms,
            cached,
            setvar_vaddr: symbol("setvar_vaddr"),
            setvar_size: symbol("setvar_size"),
            setvar_prefill_size: symbol("setvar_prefill_size"),
            pos: file.pos(node),
        })
    }
}

/// Regions by name, built once so that a map finds its region without scanning every region.
pub(crate) type RegionsByName<'r> = HashMap<&'r str, &'r RawMemoryRegion>;

/// Indexes `regions` by name (the first of a name wins; names are unique once checked).
pub(crate) fn regions_by_name(regions: &[RawMemoryRegion]) -> RegionsByName<'_> {
    let mut by_name = HashMap::with_capacity(regions.len());
    for region in regions {
        by_name.entry(region.name.as_str()).or_insert(region);
    }
    by_name
}

/// Address ranges checked one by one, in document order, for the first one that overlaps an
/// earlier one (Microkit's quadratic "compare with every earlier range", in `n log n`).
///
/// Checking stops at the first overlap, so the ranges kept are pairwise non-overlapping. Ordered
/// by (start, end) their ends never decrease (for two ranges `a` before `b`, `a.end > b.end` would
/// make them overlap), so the earlier ranges a new one overlaps are exactly those that start
/// before its end and end after its start: a contiguous run just below its end.
#[derive(Debug)]
pub(crate) struct DisjointRanges<T> {
    by_start: BTreeSet<(u64, u64, usize)>,
    items: Vec<(T, u64, u64)>,
}

impl<T: Copy> DisjointRanges<T> {
    pub(crate) fn new() -> Self {
        Self {
            by_start: BTreeSet::new(),
            items: Vec::new(),
        }
    }

    /// Adds `[start, end)` for `item`, or returns the earliest added range it overlaps (in
    /// Microkit's sense: `start < other_end && end > other_start`) with its bounds.
    pub(crate) fn insert(&mut self, item: T, start: u64, end: u64) -> Result<(), (T, u64, u64)> {
        let earliest = self
            .by_start
            .range(..(end, 0, 0))
            .rev()
            .take_while(|(_, other_end, _)| *other_end > start)
            .map(|(_, _, index)| *index)
            .min();
        if let Some(other) = earliest.and_then(|index| self.items.get(index)) {
            return Err(*other);
        }
        self.by_start.insert((start, end, self.items.len()));
        self.items.push((item, start, end));
        Ok(())
    }
}

/// Microkit `check_maps`: every map names a region, is aligned to its page size, fits below
/// `max_end`, and overlaps no earlier map of the same address space.
pub(crate) fn check_maps(
    file: &SdfFile<'_>,
    regions: &RegionsByName<'_>,
    maps: &[RawMap],
    address_space: &str,
    max_end: u64,
) -> SdfResult<()> {
    let mut checked: DisjointRanges<&str> = DisjointRanges::new();
    for map in maps {
        let at = || format!("@ {}", file.loc(map.pos));
        let Some(region) = regions.get(map.mr.as_str()) else {
            return Err(SdfError::microkit(format!(
                "Error: invalid memory region name '{}' on 'map' {}",
                map.mr,
                at()
            )));
        };
        if !map.vaddr.is_aligned_to(region.page_size) {
            return Err(SdfError::microkit(format!(
                "Error: invalid vaddr alignment on 'map' {}",
                at()
            )));
        }
        let start = map.vaddr.get();
        let Some(end) = start.checked_add(region.size) else {
            return Err(SdfError::microkit(format!(
                "Error: map for '{}' has address range that overflows {}",
                map.mr,
                at()
            )));
        };
        if end > max_end {
            return Err(SdfError::microkit(format!(
                "Error: map for '{}' has virtual address range [{start:#x}..{end:#x}) which exceeds valid address space [0x0..{max_end:#x}) {}",
                map.mr,
                at()
            )));
        }
        if let Err((name, other_start, other_end)) = checked.insert(&map.mr, start, end) {
            return Err(SdfError::microkit(format!(
                "Error: map for '{}' has virtual address range [{start:#x}..{end:#x}) which overlaps with map for '{name}' [{other_start:#x}..{other_end:#x}) in {address_space} {}",
                map.mr,
                at()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::DisjointRanges;

    /// The quadratic reference: the first earlier range overlapping `[start, end)`.
    fn first_overlap(earlier: &[(u64, u64)], start: u64, end: u64) -> Option<usize> {
        earlier
            .iter()
            .position(|(other_start, other_end)| start < *other_end && end > *other_start)
    }

    #[test]
    fn finds_the_same_overlap_as_comparing_with_every_earlier_range() {
        // Every sequence of ranges over a small grid, zero-length ones included.
        let grid: Vec<(u64, u64)> = (0..6)
            .flat_map(|start| (start..6).map(move |end| (start, end)))
            .collect();
        for a in &grid {
            for b in &grid {
                for c in &grid {
                    for d in &grid {
                        let sequence = [*a, *b, *c, *d];
                        let mut ranges = DisjointRanges::new();
                        let mut earlier = Vec::new();
                        for (index, (start, end)) in sequence.iter().copied().enumerate() {
                            let expected = first_overlap(&earlier, start, end);
                            let got = ranges.insert(index, start, end).err().map(|(i, s, e)| {
                                assert_eq!(earlier.get(i), Some(&(s, e)));
                                i
                            });
                            assert_eq!(got, expected, "{sequence:?} at {index}");
                            if expected.is_some() {
                                break;
                            }
                            earlier.push((start, end));
                        }
                    }
                }
            }
        }
    }
}
