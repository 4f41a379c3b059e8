//! Reading program ELFs (with `object`) into loadable segments and a symbol table, and patching
//! data symbols in those segments before they go into the image.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use object::elf::{EM_AARCH64, ET_EXEC, PF_R, PF_W, PF_X, PT_LOAD};
use object::read::elf::{ElfFile64, FileHeader, ProgramHeader};
use object::{Endianness, Object, ObjectSymbol};

use super::address::{align_down, align_up, ranges_overlap};
use super::error::ImageError;

/// One `PT_LOAD` segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LoadSegment {
    /// `p_vaddr`.
    pub(crate) vaddr: u64,
    /// `p_paddr`.
    pub(crate) paddr: u64,
    /// `p_memsz`.
    pub(crate) mem_size: u64,
    /// The file bytes (`p_filesz` of them; grows when a symbol past them is patched).
    pub(crate) data: Vec<u8>,
    /// `p_flags` (`PF_R`, `PF_W`, `PF_X`).
    pub(crate) flags: u32,
}

impl LoadSegment {
    /// First page-aligned address of the segment.
    pub(crate) fn page_start(&self) -> u64 {
        align_down(self.vaddr, 0x1000)
    }

    /// One past the last byte, page aligned.
    pub(crate) fn page_end(&self) -> Option<u64> {
        self.vaddr
            .checked_add(self.mem_size)
            .and_then(|end| align_up(end, 0x1000))
    }

    /// `p_flags` as boot-info rights bits.
    pub(crate) fn rights(&self) -> u8 {
        use frameshift_abi::boot_info::{RIGHT_EXECUTE, RIGHT_READ, RIGHT_WRITE};
        let mut rights = 0;
        if self.flags & PF_R != 0 {
            rights |= RIGHT_READ;
        }
        if self.flags & PF_W != 0 {
            rights |= RIGHT_WRITE;
        }
        if self.flags & PF_X != 0 {
            rights |= RIGHT_EXECUTE;
        }
        rights
    }
}

/// A symbol's address and size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Symbol {
    /// `st_value`.
    pub(crate) address: u64,
    /// `st_size` (zero when the toolchain did not record it).
    pub(crate) size: u64,
}

/// A static AArch64 executable: entry, loadable segments (sorted by vaddr) and symbols.
#[derive(Clone, Debug)]
pub(crate) struct ElfImage {
    pub(crate) path: PathBuf,
    pub(crate) entry: u64,
    pub(crate) segments: Vec<LoadSegment>,
    symbols: BTreeMap<String, Symbol>,
}

impl ElfImage {
    /// Reads and checks `path`; `what` names the file in an I/O error.
    pub(crate) fn load(path: &Path, what: &'static str) -> Result<Self, ImageError> {
        let bytes = std::fs::read(path).map_err(|source| ImageError::Io {
            path: path.to_path_buf(),
            what,
            source,
        })?;
        Self::parse(path, &bytes)
    }

    /// Parses `bytes` (read from `path`).
    pub(crate) fn parse(path: &Path, bytes: &[u8]) -> Result<Self, ImageError> {
        let not_elf = |reason: String| ImageError::NotElf64 {
            path: path.to_path_buf(),
            reason,
        };
        let file = ElfFile64::<Endianness>::parse(bytes).map_err(|e| not_elf(e.to_string()))?;
        if !file.is_little_endian() {
            return Err(not_elf("big-endian".to_string()));
        }
        let endian = file.endian();
        let header = file.elf_header();
        let machine = header.e_machine(endian);
        if machine != EM_AARCH64 {
            return Err(ImageError::NotAarch64 {
                path: path.to_path_buf(),
                machine,
            });
        }
        let e_type = header.e_type(endian);
        if e_type != ET_EXEC {
            return Err(ImageError::NotExecutable {
                path: path.to_path_buf(),
                e_type,
            });
        }
        let mut segments = Vec::new();
        for program_header in file.elf_program_headers() {
            if program_header.p_type(endian) != PT_LOAD || program_header.p_memsz(endian) == 0 {
                continue;
            }
            let data = program_header
                .data(endian, bytes)
                .map_err(|()| not_elf("segment data outside the file".to_string()))?;
            let segment = LoadSegment {
                vaddr: program_header.p_vaddr(endian),
                paddr: program_header.p_paddr(endian),
                mem_size: program_header.p_memsz(endian),
                data: data.to_vec(),
                flags: program_header.p_flags(endian),
            };
            if segment.data.len() as u64 > segment.mem_size {
                return Err(not_elf(format!(
                    "segment at {:#x}: file size {:#x} exceeds memory size {:#x}",
                    segment.vaddr,
                    segment.data.len(),
                    segment.mem_size
                )));
            }
            if segment.page_end().is_none() {
                return Err(ImageError::SegmentTooLarge {
                    path: path.to_path_buf(),
                    vaddr: segment.vaddr,
                    mem_size: segment.mem_size,
                });
            }
            segments.push(segment);
        }
        segments.sort_by_key(|segment| segment.vaddr);
        if segments.is_empty() {
            return Err(ImageError::NoSegments {
                path: path.to_path_buf(),
            });
        }
        // Prefer a global definition when a name appears more than once (local statics).
        let mut symbols = BTreeMap::new();
        for symbol in file.symbols() {
            let Ok(name) = symbol.name() else { continue };
            if name.is_empty() || symbol.is_undefined() {
                continue;
            }
            let entry = Symbol {
                address: symbol.address(),
                size: symbol.size(),
            };
            if symbol.is_global() {
                symbols.insert(name.to_string(), entry);
            } else {
                symbols.entry(name.to_string()).or_insert(entry);
            }
        }
        Ok(Self {
            path: path.to_path_buf(),
            entry: file.entry(),
            segments,
            symbols,
        })
    }

    /// Refuses segments that overlap or (when `page_granular`) share a 4 KiB page: each page of
    /// a PD gets exactly one set of rights.
    pub(crate) fn check_disjoint(&self, page_granular: bool) -> Result<(), ImageError> {
        for pair in self.segments.windows(2) {
            let [first, second] = pair else { continue };
            let clash = if page_granular {
                first.page_end().is_none_or(|end| end > second.page_start())
            } else {
                ranges_overlap(first.paddr, first.mem_size, second.paddr, second.mem_size)
            };
            if clash {
                return Err(ImageError::ElfSegmentsOverlap {
                    path: self.path.clone(),
                    first: first.vaddr,
                    second: second.vaddr,
                });
            }
        }
        Ok(())
    }

    /// Takes its symbol table from `other` (Microkit `path_for_symbols`: a stripped image
    /// loaded, an unstripped one read for symbol addresses).
    pub(crate) fn use_symbols_of(&mut self, other: ElfImage) {
        self.symbols = other.symbols;
    }

    /// The symbol `name`, if the ELF defines it.
    pub(crate) fn symbol(&self, name: &str) -> Option<Symbol> {
        self.symbols.get(name).copied()
    }

    /// Writes `value` at symbol `name`. Returns `Ok(false)` if there is no such symbol; refuses
    /// a symbol smaller than `value` or outside every loadable segment.
    pub(crate) fn patch(&mut self, name: &str, value: &[u8]) -> Result<bool, ImageError> {
        let Some(symbol) = self.symbol(name) else {
            return Ok(false);
        };
        let need = value.len() as u64;
        if symbol.size != 0 && symbol.size < need {
            return Err(ImageError::SymbolTooSmall {
                path: self.path.clone(),
                symbol: name.to_string(),
                size: symbol.size,
                need,
            });
        }
        let outside = || ImageError::SymbolOutsideSegments {
            path: self.path.clone(),
            symbol: name.to_string(),
            address: symbol.address,
        };
        let segment = self
            .segments
            .iter_mut()
            .find(|segment| {
                symbol.address >= segment.vaddr
                    && symbol.address.saturating_add(need) <= segment.vaddr + segment.mem_size
            })
            .ok_or_else(outside)?;
        let start = usize::try_from(symbol.address - segment.vaddr).map_err(|_| outside())?;
        let end = start + value.len();
        // A `.bss` symbol would be patched only to be cleared by the runtime's start-up code
        // (which zeroes `.bss`): refuse it at build time instead of booting with a zero.
        let Some(target) = segment.data.get_mut(start..end) else {
            return Err(ImageError::SymbolInBss {
                path: self.path.clone(),
                symbol: name.to_string(),
                address: symbol.address,
            });
        };
        target.copy_from_slice(value);
        Ok(true)
    }
}
