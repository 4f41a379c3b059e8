//! A writer of flattened device trees (the Devicetree Specification 0.4, chapter 5: format
//! version 17), with no heap: the blob is built in a buffer the caller gives, so a VMM PD with
//! no allocator can describe its guest. (The rust-vmm `vm-fdt` crate writes the same format but
//! needs `alloc`.)
//!
//! ```text
//! +-------------------------+ 0
//! | header (40 bytes)       | magic 0xd00dfeed, sizes and offsets, big endian
//! +-------------------------+ 40
//! | memory reservations     | one all-zero entry: none reserved
//! +-------------------------+ 56
//! | structure block         | BEGIN_NODE name / PROP len nameoff value / END_NODE ... END
//! +-------------------------+
//! | strings block           | property names, NUL terminated, each stored once
//! +-------------------------+ totalsize
//! ```
//!
//! Nodes are opened and closed in order ([`FdtWriter::begin_node`], [`FdtWriter::end_node`]),
//! properties belong to the innermost open node, and [`FdtWriter::finish`] writes the header.
//! Every method checks its room and returns an error instead of writing past the buffer.
#![no_std]
#![forbid(unsafe_code)]

#[cfg(test)]
extern crate std;

/// `FDT_MAGIC`.
pub const MAGIC: u32 = 0xd00d_feed;
/// The format version written.
pub const VERSION: u32 = 17;
/// The oldest version a reader must understand to read it.
pub const LAST_COMPATIBLE_VERSION: u32 = 16;

const HEADER_LEN: usize = 40;
const RESERVATIONS_OFFSET: usize = HEADER_LEN;
/// One terminating reservation entry (address 0, size 0).
const RESERVATIONS_LEN: usize = 16;
const STRUCTURE_OFFSET: usize = RESERVATIONS_OFFSET + RESERVATIONS_LEN;

const FDT_BEGIN_NODE: u32 = 1;
const FDT_END_NODE: u32 = 2;
const FDT_PROP: u32 = 3;
const FDT_END: u32 = 9;

/// Room for property names: the names a VMM's tree uses fit several times over.
pub const STRINGS_MAX: usize = 1024;

/// Why a tree could not be written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FdtError {
    /// The buffer is too small for the tree.
    BufferFull,
    /// The property names do not fit [`STRINGS_MAX`].
    StringsFull,
    /// `end_node` with no node open, `finish` with nodes still open, a property outside every
    /// node, or a second root.
    Unbalanced,
    /// A node or property name holds a NUL.
    BadName,
}

impl core::fmt::Display for FdtError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::BufferFull => "the device tree does not fit its buffer",
            Self::StringsFull => "the device tree's property names do not fit",
            Self::Unbalanced => "device tree nodes opened and closed out of order",
            Self::BadName => "a device tree name holds a NUL byte",
        })
    }
}

/// A device tree being written into a buffer.
#[derive(Debug)]
pub struct FdtWriter<'a> {
    buffer: &'a mut [u8],
    /// The end of the structure block written so far.
    end: usize,
    strings: [u8; STRINGS_MAX],
    strings_len: usize,
    depth: usize,
    /// The root node has been closed: nothing may follow it.
    closed: bool,
}

impl<'a> FdtWriter<'a> {
    /// A writer over `buffer` (its previous contents do not matter).
    pub fn new(buffer: &'a mut [u8]) -> Result<Self, FdtError> {
        let reservations = buffer
            .get_mut(RESERVATIONS_OFFSET..STRUCTURE_OFFSET)
            .ok_or(FdtError::BufferFull)?;
        reservations.fill(0);
        Ok(Self {
            buffer,
            end: STRUCTURE_OFFSET,
            strings: [0; STRINGS_MAX],
            strings_len: 0,
            depth: 0,
            closed: false,
        })
    }

    fn put(&mut self, bytes: &[u8]) -> Result<(), FdtError> {
        let end = self.end + bytes.len();
        self.buffer
            .get_mut(self.end..end)
            .ok_or(FdtError::BufferFull)?
            .copy_from_slice(bytes);
        self.end = end;
        Ok(())
    }

    fn put_u32(&mut self, value: u32) -> Result<(), FdtError> {
        self.put(&value.to_be_bytes())
    }

    /// Zero bytes up to the next multiple of 4 (every token is 4-byte aligned).
    fn align(&mut self) -> Result<(), FdtError> {
        let padding = self.end.next_multiple_of(4) - self.end;
        self.put(&[0; 3][..padding])
    }

    /// Opens node `name` (`""` for the root, else e.g. `"memory@40000000"`) inside the node
    /// open now.
    pub fn begin_node(&mut self, name: &str) -> Result<(), FdtError> {
        if name.as_bytes().contains(&0) {
            return Err(FdtError::BadName);
        }
        if self.closed || (self.depth == 0 && self.end != STRUCTURE_OFFSET) {
            return Err(FdtError::Unbalanced);
        }
        self.put_u32(FDT_BEGIN_NODE)?;
        self.put(name.as_bytes())?;
        self.put(&[0])?;
        self.align()?;
        self.depth += 1;
        Ok(())
    }

    /// Closes the node open now.
    pub fn end_node(&mut self) -> Result<(), FdtError> {
        if self.depth == 0 {
            return Err(FdtError::Unbalanced);
        }
        self.put_u32(FDT_END_NODE)?;
        self.depth -= 1;
        self.closed = self.depth == 0;
        Ok(())
    }

    /// The offset of `name` in the strings block, adding it if it is not there yet.
    fn string_offset(&mut self, name: &str) -> Result<u32, FdtError> {
        let bytes = name.as_bytes();
        if bytes.contains(&0) {
            return Err(FdtError::BadName);
        }
        let mut start = 0;
        while start < self.strings_len {
            let length = self.strings[start..self.strings_len]
                .iter()
                .position(|byte| *byte == 0)
                .unwrap_or(self.strings_len - start);
            if &self.strings[start..start + length] == bytes {
                return u32::try_from(start).map_err(|_| FdtError::StringsFull);
            }
            start += length + 1;
        }
        let end = self.strings_len + bytes.len() + 1;
        let slot = self
            .strings
            .get_mut(self.strings_len..end)
            .ok_or(FdtError::StringsFull)?;
        slot[..bytes.len()].copy_from_slice(bytes);
        slot[bytes.len()] = 0;
        let offset = self.strings_len;
        self.strings_len = end;
        u32::try_from(offset).map_err(|_| FdtError::StringsFull)
    }

    /// Property `name` with raw bytes `value`, in the node open now.
    pub fn property(&mut self, name: &str, value: &[u8]) -> Result<(), FdtError> {
        if self.depth == 0 {
            return Err(FdtError::Unbalanced);
        }
        let name_offset = self.string_offset(name)?;
        let length = u32::try_from(value.len()).map_err(|_| FdtError::BufferFull)?;
        self.put_u32(FDT_PROP)?;
        self.put_u32(length)?;
        self.put_u32(name_offset)?;
        self.put(value)?;
        self.align()
    }

    /// A property with no value (a flag such as `interrupt-controller`).
    pub fn property_empty(&mut self, name: &str) -> Result<(), FdtError> {
        self.property(name, &[])
    }

    /// A property of one 32-bit cell.
    pub fn property_u32(&mut self, name: &str, value: u32) -> Result<(), FdtError> {
        self.property(name, &value.to_be_bytes())
    }

    /// A property of 32-bit cells.
    pub fn property_cells(&mut self, name: &str, cells: &[u32]) -> Result<(), FdtError> {
        self.begin_property(name, cells.len() * 4)?;
        for cell in cells {
            self.put_u32(*cell)?;
        }
        self.align()
    }

    /// A property of 64-bit values, each as two cells (high first): `reg` and `ranges` with
    /// `#address-cells = #size-cells = 2`, `linux,initrd-start`.
    pub fn property_u64s(&mut self, name: &str, values: &[u64]) -> Result<(), FdtError> {
        self.begin_property(name, values.len() * 8)?;
        for value in values {
            self.put(&value.to_be_bytes())?;
        }
        self.align()
    }

    /// A string property.
    pub fn property_string(&mut self, name: &str, value: &str) -> Result<(), FdtError> {
        self.property_strings(name, &[value])
    }

    /// A string-list property (`compatible = "a", "b"`).
    pub fn property_strings(&mut self, name: &str, values: &[&str]) -> Result<(), FdtError> {
        if values.iter().any(|value| value.as_bytes().contains(&0)) {
            return Err(FdtError::BadName);
        }
        let length = values.iter().map(|value| value.len() + 1).sum();
        self.begin_property(name, length)?;
        for value in values {
            self.put(value.as_bytes())?;
            self.put(&[0])?;
        }
        self.align()
    }

    /// The token and header of a property whose value (`length` bytes) the caller writes next.
    fn begin_property(&mut self, name: &str, length: usize) -> Result<(), FdtError> {
        if self.depth == 0 {
            return Err(FdtError::Unbalanced);
        }
        let name_offset = self.string_offset(name)?;
        let length = u32::try_from(length).map_err(|_| FdtError::BufferFull)?;
        self.put_u32(FDT_PROP)?;
        self.put_u32(length)?;
        self.put_u32(name_offset)
    }

    /// Ends the tree (the root must be closed), appends the strings and writes the header;
    /// returns the blob's size. `boot_cpu` is the boot CPU's `reg` (`boot_cpuid_phys`).
    pub fn finish(mut self, boot_cpu: u32) -> Result<usize, FdtError> {
        if !self.closed {
            return Err(FdtError::Unbalanced);
        }
        self.put_u32(FDT_END)?;
        let structure_len = self.end - STRUCTURE_OFFSET;
        let strings_offset = self.end;
        let strings_len = self.strings_len;
        let strings = self.strings;
        self.put(&strings[..strings_len])?;
        let total = self.end;
        let field = |value: usize| u32::try_from(value).map_err(|_| FdtError::BufferFull);
        let header = [
            MAGIC,
            field(total)?,
            field(STRUCTURE_OFFSET)?,
            field(strings_offset)?,
            field(RESERVATIONS_OFFSET)?,
            VERSION,
            LAST_COMPATIBLE_VERSION,
            boot_cpu,
            field(strings_len)?,
            field(structure_len)?,
        ];
        for (index, value) in header.iter().enumerate() {
            let at = index * 4;
            self.buffer
                .get_mut(at..at + 4)
                .ok_or(FdtError::BufferFull)?
                .copy_from_slice(&value.to_be_bytes());
        }
        Ok(total)
    }
}

#[cfg(test)]
// A failed expectation in a test is the test failing, which is what panicking reports.
#[allow(clippy::expect_used, clippy::unwrap_used)]
mod tests {
    use super::*;

    fn small_tree(buffer: &mut [u8]) -> Result<usize, FdtError> {
        let mut tree = FdtWriter::new(buffer)?;
        tree.begin_node("")?;
        tree.property_u32("#address-cells", 2)?;
        tree.property_u32("#size-cells", 2)?;
        tree.property_strings("compatible", &["linux,dummy-virt"])?;
        tree.begin_node("memory@40000000")?;
        tree.property_string("device_type", "memory")?;
        tree.property_u64s("reg", &[0x4000_0000, 0x800_0000])?;
        tree.end_node()?;
        tree.begin_node("intc@8000000")?;
        tree.property_empty("interrupt-controller")?;
        tree.property_cells("interrupts", &[1, 9, 4])?;
        tree.property("raw", &[1, 2, 3])?;
        tree.end_node()?;
        tree.end_node()?;
        tree.finish(0)
    }

    #[test]
    fn an_independent_reader_reads_back_what_was_written() {
        let mut buffer = [0xAAu8; 1024];
        let size = small_tree(&mut buffer).unwrap();
        let blob = &buffer[..size];
        let tree = fdt::Fdt::new(blob).expect("a valid device tree");
        assert_eq!(tree.total_size(), size);
        let root = tree.find_node("/").unwrap();
        assert_eq!(
            root.property("compatible").unwrap().as_str(),
            Some("linux,dummy-virt")
        );
        let memory = tree.memory();
        let region = memory.regions().next().unwrap();
        assert_eq!(region.starting_address as usize, 0x4000_0000);
        assert_eq!(region.size, Some(0x800_0000));
        let intc = tree.find_node("/intc@8000000").unwrap();
        assert_eq!(intc.property("interrupt-controller").unwrap().value, b"");
        assert_eq!(
            intc.property("interrupts").unwrap().value,
            [0, 0, 0, 1, 0, 0, 0, 9, 0, 0, 0, 4]
        );
        assert_eq!(intc.property("raw").unwrap().value, [1, 2, 3]);
    }

    #[test]
    fn the_header_and_blocks_follow_the_specification() {
        let mut buffer = [0u8; 1024];
        let size = small_tree(&mut buffer).unwrap();
        let word = |at: usize| u32::from_be_bytes(buffer[at..at + 4].try_into().unwrap());
        assert_eq!(word(0), MAGIC);
        assert_eq!(word(4) as usize, size);
        assert_eq!(word(8), 56, "off_dt_struct");
        assert_eq!(word(16), 40, "off_mem_rsvmap");
        assert_eq!((word(20), word(24)), (17, 16), "version, last compatible");
        let (strings, strings_len, struct_len) = (word(12), word(32), word(36));
        assert_eq!(strings, 56 + struct_len, "strings follow the structure");
        assert_eq!(strings + strings_len, word(4));
        assert!(
            buffer[40..56].iter().all(|byte| *byte == 0),
            "no reservations"
        );
        assert_eq!(word(56), FDT_BEGIN_NODE);
        assert_eq!(word(56 + struct_len as usize - 4), FDT_END);
        // Each name is stored once: "#address-cells", "#size-cells", "compatible",
        // "device_type", "reg", "interrupt-controller", "interrupts", "raw".
        let names = &buffer[strings as usize..(strings + strings_len) as usize];
        assert_eq!(names.iter().filter(|byte| **byte == 0).count(), 8);
    }

    #[test]
    fn a_buffer_too_small_is_an_error_at_every_size() {
        let mut full = [0u8; 1024];
        let size = small_tree(&mut full).unwrap();
        for length in 0..size {
            let mut buffer = std::vec![0u8; length];
            assert_eq!(
                small_tree(&mut buffer),
                Err(FdtError::BufferFull),
                "{length}"
            );
        }
        let mut exact = std::vec![0u8; size];
        assert_eq!(small_tree(&mut exact), Ok(size));
        assert_eq!(&exact[..], &full[..size]);
    }

    #[test]
    fn nodes_must_balance_and_names_hold_no_nul() {
        let mut buffer = [0u8; 256];
        let mut tree = FdtWriter::new(&mut buffer).unwrap();
        assert_eq!(tree.property_u32("x", 1), Err(FdtError::Unbalanced));
        assert_eq!(tree.end_node(), Err(FdtError::Unbalanced));
        assert_eq!(tree.begin_node("a\0b"), Err(FdtError::BadName));
        tree.begin_node("").unwrap();
        assert_eq!(tree.property_u32("bad\0", 1), Err(FdtError::BadName));
        assert_eq!(tree.property_string("s", "a\0"), Err(FdtError::BadName));
        tree.begin_node("child").unwrap();
        tree.end_node().unwrap();
        tree.end_node().unwrap();
        assert_eq!(tree.begin_node("second-root"), Err(FdtError::Unbalanced));
        assert!(tree.finish(0).is_ok());

        let mut buffer = [0u8; 256];
        let mut open = FdtWriter::new(&mut buffer).unwrap();
        open.begin_node("").unwrap();
        assert_eq!(open.finish(0), Err(FdtError::Unbalanced));
    }

    #[test]
    fn too_many_property_names_is_an_error() {
        let mut buffer = std::vec![0u8; 64 * 1024];
        let mut tree = FdtWriter::new(&mut buffer).unwrap();
        tree.begin_node("").unwrap();
        let mut name = std::string::String::new();
        let mut result = Ok(());
        for index in 0..200 {
            name.clear();
            use core::fmt::Write;
            write!(name, "property-number-{index}").unwrap();
            result = tree.property_u32(&name, 1);
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result, Err(FdtError::StringsFull));
    }
}
