//! A writer for the `newc` cpio format (the "SVR4 with no CRC" format, magic `070701`), the one
//! format Linux unpacks an initramfs from (Documentation/driver-api/early-userspace/
//! buffer-format.rst).
//!
//! Every entry is a 110-byte ASCII header (13 eight-digit hex fields), the NUL-terminated path,
//! padding to 4 bytes, then the data, padding to 4 bytes; the archive ends with the entry
//! `TRAILER!!!`. The archive is built in memory with fixed owners (root) and modification time
//! (0), so the same inputs always give the same bytes. Writing it here, not with a `cpio`
//! program, is also what lets a user without root put device nodes such as `/dev/console` in
//! it.

/// `S_IFDIR`: a directory.
const S_IFDIR: u32 = 0o040_000;
/// `S_IFREG`: a regular file.
const S_IFREG: u32 = 0o100_000;
/// `S_IFLNK`: a symbolic link.
const S_IFLNK: u32 = 0o120_000;
/// `S_IFCHR`: a character device.
const S_IFCHR: u32 = 0o020_000;

/// The name of the entry that ends every archive.
pub const TRAILER: &str = "TRAILER!!!";

/// The magic at the start of every `newc` header.
pub const MAGIC: &str = "070701";

/// Length of a `newc` header: the magic and 13 fields of 8 hex digits.
pub const HEADER_LEN: usize = 110;

/// A `newc` archive being written.
#[derive(Clone, Debug, Default)]
pub struct Archive {
    bytes: Vec<u8>,
    next_inode: u32,
}

/// One entry's metadata, as the header carries it.
struct Entry<'a> {
    path: &'a str,
    mode: u32,
    links: u32,
    device: (u32, u32),
    data: &'a [u8],
}

impl Archive {
    /// An empty archive.
    pub fn new() -> Self {
        Self {
            bytes: Vec::new(),
            next_inode: 1,
        }
    }

    /// A directory (its parents must come first, as the kernel creates entries in order).
    pub fn directory(&mut self, path: &str, permissions: u32) {
        self.entry(Entry {
            path,
            mode: S_IFDIR | permissions,
            links: 2,
            device: (0, 0),
            data: &[],
        });
    }

    /// A regular file.
    pub fn file(&mut self, path: &str, permissions: u32, data: &[u8]) {
        self.entry(Entry {
            path,
            mode: S_IFREG | permissions,
            links: 1,
            device: (0, 0),
            data,
        });
    }

    /// A symbolic link to `target` (its data is the target's text).
    pub fn symlink(&mut self, path: &str, target: &str) {
        self.entry(Entry {
            path,
            mode: S_IFLNK | 0o777,
            links: 1,
            device: (0, 0),
            data: target.as_bytes(),
        });
    }

    /// A character device node `major:minor`.
    pub fn char_device(&mut self, path: &str, permissions: u32, major: u32, minor: u32) {
        self.entry(Entry {
            path,
            mode: S_IFCHR | permissions,
            links: 1,
            device: (major, minor),
            data: &[],
        });
    }

    /// Ends the archive with its trailer and returns its bytes.
    pub fn finish(mut self) -> Vec<u8> {
        self.entry(Entry {
            path: TRAILER,
            mode: 0,
            links: 1,
            device: (0, 0),
            data: &[],
        });
        self.bytes
    }

    fn entry(&mut self, entry: Entry<'_>) {
        let inode = if entry.path == TRAILER {
            0
        } else {
            self.next_inode += 1;
            self.next_inode - 1
        };
        // newc sizes are 32-bit fields; an initramfs member of 4 GiB is not a case this
        // tool meets, and a wrong size would only make the kernel refuse the archive.
        let size = u32::try_from(entry.data.len()).unwrap_or(u32::MAX);
        let name_size = u32::try_from(entry.path.len() + 1).unwrap_or(u32::MAX);
        let fields = [
            inode,
            entry.mode,
            0, // uid: root
            0, // gid: root
            entry.links,
            0, // mtime: fixed, for reproducible archives
            size,
            0, // devmajor of the file system
            0, // devminor
            entry.device.0,
            entry.device.1,
            name_size,
            0, // check: unused in newc
        ];
        self.bytes.extend_from_slice(MAGIC.as_bytes());
        for field in fields {
            self.bytes
                .extend_from_slice(format!("{field:08X}").as_bytes());
        }
        self.bytes.extend_from_slice(entry.path.as_bytes());
        self.bytes.push(0);
        self.pad();
        self.bytes.extend_from_slice(entry.data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.bytes.len().is_multiple_of(4) {
            self.bytes.push(0);
        }
    }
}

/// One entry read back from an archive (for tests and for checking a built initramfs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadEntry {
    /// The path.
    pub path: String,
    /// `st_mode`: type and permissions.
    pub mode: u32,
    /// `rdevmajor`, `rdevminor`.
    pub device: (u32, u32),
    /// The data.
    pub data: Vec<u8>,
}

impl ReadEntry {
    /// Whether this is a regular file.
    pub fn is_file(&self) -> bool {
        self.mode & 0o170_000 == S_IFREG
    }

    /// Whether this is a directory.
    pub fn is_directory(&self) -> bool {
        self.mode & 0o170_000 == S_IFDIR
    }

    /// Whether this is a symbolic link.
    pub fn is_symlink(&self) -> bool {
        self.mode & 0o170_000 == S_IFLNK
    }

    /// Whether this is a character device.
    pub fn is_char_device(&self) -> bool {
        self.mode & 0o170_000 == S_IFCHR
    }
}

/// Reads a `newc` archive up to its trailer; `None` if it is malformed (a bad magic or field,
/// a truncated entry, misaligned data, or no trailer).
pub fn read(bytes: &[u8]) -> Option<Vec<ReadEntry>> {
    let mut entries = Vec::new();
    let mut at = 0;
    loop {
        let header = bytes.get(at..at + HEADER_LEN)?;
        if header.get(..6)? != MAGIC.as_bytes() {
            return None;
        }
        let field = |index: usize| -> Option<u32> {
            let start = 6 + index * 8;
            let text = std::str::from_utf8(header.get(start..start + 8)?).ok()?;
            u32::from_str_radix(text, 16).ok()
        };
        let (mode, size, major, minor, name_size) =
            (field(1)?, field(6)?, field(9)?, field(10)?, field(11)?);
        let name_start = at + HEADER_LEN;
        let name_end = name_start + usize::try_from(name_size).ok()?;
        let name = bytes.get(name_start..name_end.checked_sub(1)?)?;
        if bytes.get(name_end - 1) != Some(&0) {
            return None;
        }
        let data_start = name_end.next_multiple_of(4);
        let data_end = data_start + usize::try_from(size).ok()?;
        let data = bytes.get(data_start..data_end)?;
        let path = String::from_utf8(name.to_vec()).ok()?;
        if path == TRAILER {
            return Some(entries);
        }
        entries.push(ReadEntry {
            path,
            mode,
            device: (major, minor),
            data: data.to_vec(),
        });
        at = data_end.next_multiple_of(4);
    }
}

#[cfg(test)]
// A failed expectation in a test is the test failing, which is what panicking reports.
#[allow(clippy::expect_used, clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_header_is_the_magic_and_thirteen_hex_fields_then_the_padded_name() {
        let mut archive = Archive::new();
        archive.file("init", 0o755, b"#!/bin/sh\n");
        let bytes = archive.finish();
        let header = std::str::from_utf8(&bytes[..HEADER_LEN]).unwrap();
        let fields = [
            "00000001", // ino
            "000081ED", // mode: regular file, 0755
            "00000000", // uid
            "00000000", // gid
            "00000001", // nlink
            "00000000", // mtime
            "0000000A", // filesize: 10
            "00000000", // devmajor
            "00000000", // devminor
            "00000000", // rdevmajor
            "00000000", // rdevminor
            "00000005", // namesize: "init" and its NUL
            "00000000", // check
        ];
        assert_eq!(header, format!("{MAGIC}{}", fields.concat()));
        // "init\0" ends at 115; padding to 116, then the data, padded to a multiple of 4.
        assert_eq!(&bytes[110..116], b"init\0\0");
        assert_eq!(&bytes[116..126], b"#!/bin/sh\n");
        assert_eq!(&bytes[126..128], b"\0\0");
        assert_eq!(&bytes[128..134], MAGIC.as_bytes());
        assert_eq!(bytes.len() % 4, 0);
    }

    #[test]
    fn every_kind_of_entry_reads_back() {
        let mut archive = Archive::new();
        archive.directory("bin", 0o755);
        archive.file("bin/busybox", 0o755, &[1, 2, 3, 4, 5]);
        archive.symlink("bin/sh", "busybox");
        archive.directory("dev", 0o755);
        archive.char_device("dev/console", 0o600, 5, 1);
        let entries = read(&archive.finish()).expect("a well-formed archive");
        let paths: Vec<&str> = entries.iter().map(|entry| entry.path.as_str()).collect();
        assert_eq!(
            paths,
            ["bin", "bin/busybox", "bin/sh", "dev", "dev/console"]
        );
        assert!(entries[0].is_directory() && entries[0].mode & 0o777 == 0o755);
        assert!(entries[1].is_file() && entries[1].data == [1, 2, 3, 4, 5]);
        assert!(entries[2].is_symlink() && entries[2].data == b"busybox");
        assert!(entries[4].is_char_device() && entries[4].device == (5, 1));
        assert_eq!(entries[4].mode & 0o777, 0o600);
    }

    #[test]
    fn the_same_inputs_give_the_same_bytes() {
        let build = || {
            let mut archive = Archive::new();
            archive.directory("proc", 0o755);
            archive.file("init", 0o755, b"x");
            archive.finish()
        };
        assert_eq!(build(), build());
    }

    #[test]
    fn malformed_archives_are_refused() {
        let mut archive = Archive::new();
        archive.file("a", 0o644, b"abc");
        let good = archive.finish();
        assert!(read(&good).is_some());
        let mut bad_magic = good.clone();
        bad_magic[5] = b'2';
        assert_eq!(read(&bad_magic), None);
        assert_eq!(read(&good[..good.len() - 8]), None, "no trailer");
        let mut bad_digit = good.clone();
        bad_digit[20] = b'G';
        assert_eq!(read(&bad_digit), None);
        assert_eq!(read(&[]), None);
    }
}
