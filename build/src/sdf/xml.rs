//! Reading elements and attributes, with Microkit's error wording and `file:row:column` positions.

use std::fmt::Display;
use std::num::ParseIntError;

use roxmltree::Node;

use super::error::{SdfError, SdfResult};

/// Where an element's start tag begins: its byte offset in the file. Rows and columns are worked
/// out only when a message is printed ([`SdfFile::loc`]), so checking a valid file never pays for
/// them, and ordering positions is ordering offsets (the same as ordering rows, then columns).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Pos(usize);

/// An integer attribute that may be negative (Microkit reads ids with `i64` so that `-1` gets
/// its own message). Magnitudes fit in `u64`, so `i128` never overflows.
pub(crate) type SignedValue = i128;

/// Bytes between two saved character counts (see [`SdfFile::row_col`]).
const CHAR_STRIDE: usize = 256;

/// The file being parsed: its name (as it appears in messages), its text, and an index of its
/// lines and characters, so that a position becomes a row and a column without rescanning the
/// file (an error can list many positions: Microkit's overlapping cap-map message lists all).
#[derive(Clone, Debug)]
pub(crate) struct SdfFile<'f> {
    pub(crate) name: &'f str,
    text: &'f str,
    /// Byte offset of the first byte of every line, ascending (the first line starts at 0).
    line_starts: Vec<usize>,
    /// `char_counts[i]`: characters in the first `i * CHAR_STRIDE` bytes.
    char_counts: Vec<usize>,
    /// Bytes the position lookups have scanned (tests check that a lookup does not rescan).
    #[cfg(test)]
    scanned: std::cell::Cell<usize>,
}

/// Whether `byte` starts a character (is not a UTF-8 continuation byte).
fn starts_char(byte: u8) -> bool {
    byte & 0xC0 != 0x80
}

impl<'f> SdfFile<'f> {
    /// Indexes the lines and characters of `text`, which messages call `name`: one pass.
    pub(crate) fn new(name: &'f str, text: &'f str) -> Self {
        let mut line_starts = vec![0];
        let mut char_counts = Vec::with_capacity(text.len() / CHAR_STRIDE + 1);
        let mut chars = 0;
        for (offset, byte) in text.bytes().enumerate() {
            if offset.is_multiple_of(CHAR_STRIDE) {
                char_counts.push(chars);
            }
            chars += usize::from(starts_char(byte));
            if byte == b'\n' {
                line_starts.push(offset + 1);
            }
        }
        if text.len().is_multiple_of(CHAR_STRIDE) {
            char_counts.push(chars);
        }
        Self {
            name,
            text,
            line_starts,
            char_counts,
            #[cfg(test)]
            scanned: std::cell::Cell::new(0),
        }
    }

    /// Position of `node`'s start tag.
    pub(crate) fn pos(&self, node: Node<'_, '_>) -> Pos {
        Pos(node.range().start)
    }

    /// The position of byte `offset` (for the input limits, which are checked before there is a
    /// tree).
    pub(crate) fn pos_at(&self, offset: usize) -> Pos {
        Pos(offset)
    }

    /// Characters in the first `offset` bytes: a saved count plus at most `CHAR_STRIDE` bytes.
    fn chars_before(&self, offset: usize) -> usize {
        let block = offset / CHAR_STRIDE;
        let saved = self.char_counts.get(block).copied().unwrap_or(0);
        let tail = self
            .text
            .as_bytes()
            .get(block * CHAR_STRIDE..offset)
            .unwrap_or_default();
        #[cfg(test)]
        self.scanned.set(self.scanned.get() + tail.len());
        saved + tail.iter().filter(|byte| starts_char(**byte)).count()
    }

    /// 1-based row and column of `pos`, as roxmltree and Microkit count them: rows are separated
    /// by `\n`, and columns count characters (not bytes) from the start of the row. A binary
    /// search for the row, and two character counts of at most `CHAR_STRIDE` bytes each.
    pub(crate) fn row_col(&self, pos: Pos) -> (usize, usize) {
        let offset = pos.0.min(self.text.len());
        // `line_starts[0]` is 0, so at least one line starts at or before `offset`.
        let row = self
            .line_starts
            .partition_point(|&start| start <= offset)
            .max(1);
        let line_start = self.line_starts.get(row - 1).copied().unwrap_or(0);
        let col = self.chars_before(offset) - self.chars_before(line_start) + 1;
        (row, col)
    }

    /// `file:row:col`.
    pub(crate) fn loc(&self, pos: Pos) -> String {
        let (row, col) = self.row_col(pos);
        format!("{}:{row}:{col}", self.name)
    }

    /// Microkit's "value error": `Error: {message} on element '{tag}': {file}:{row}:{col}`.
    pub(crate) fn value_error(&self, node: Node<'_, '_>, message: impl Display) -> SdfError {
        SdfError::microkit(format!(
            "Error: {message} on element '{}': {}",
            node.tag_name().name(),
            self.loc(self.pos(node))
        ))
    }

    /// Refuses any attribute of `node` not in `allowed`.
    pub(crate) fn check_attributes(&self, node: Node<'_, '_>, allowed: &[&str]) -> SdfResult<()> {
        match node
            .attributes()
            .find(|attribute| !allowed.contains(&attribute.name()))
        {
            Some(attribute) => Err(self.value_error(
                node,
                format_args!("invalid attribute '{}'", attribute.name()),
            )),
            None => Ok(()),
        }
    }

    /// A required attribute.
    pub(crate) fn required<'a>(&self, node: Node<'a, '_>, attribute: &str) -> SdfResult<&'a str> {
        node.attribute(attribute).ok_or_else(|| {
            SdfError::microkit(format!(
                "Error: Missing required attribute '{attribute}' on element '{}': {}",
                node.tag_name().name(),
                self.loc(self.pos(node))
            ))
        })
    }

    /// Microkit's integer error (it carries no position).
    fn integer_error(&self, node: Node<'_, '_>, text: &str, error: &ParseIntError) -> SdfError {
        SdfError::microkit(format!(
            "Error: failed to parse integer '{text}' on element '{}': {error}",
            node.tag_name().name()
        ))
    }

    /// `text` as an unsigned integer: decimal or `0x` hex, `_` separators ignored.
    pub(crate) fn number(&self, node: Node<'_, '_>, text: &str) -> SdfResult<u64> {
        parse_u64(text).map_err(|error| self.integer_error(node, text, &error))
    }

    /// `text` as a `u8` (Microkit parses a VM's `priority` this way, so 256 is a parse error).
    pub(crate) fn number_u8(&self, node: Node<'_, '_>, text: &str) -> SdfResult<u8> {
        parse_u8(text).map_err(|error| self.integer_error(node, text, &error))
    }

    /// `text` as an integer that may carry a leading `-`.
    pub(crate) fn signed_number(&self, node: Node<'_, '_>, text: &str) -> SdfResult<SignedValue> {
        match text.strip_prefix('-') {
            Some(magnitude) => parse_u64(magnitude)
                .map(|value| -SignedValue::from(value))
                .map_err(|error| self.integer_error(node, text, &error)),
            None => self.number(node, text).map(SignedValue::from),
        }
    }

    /// An optional integer attribute.
    pub(crate) fn opt_number(&self, node: Node<'_, '_>, attribute: &str) -> SdfResult<Option<u64>> {
        node.attribute(attribute)
            .map(|text| self.number(node, text))
            .transpose()
    }

    /// A required integer attribute.
    pub(crate) fn required_number(&self, node: Node<'_, '_>, attribute: &str) -> SdfResult<u64> {
        let text = self.required(node, attribute)?;
        self.number(node, text)
    }

    /// An optional boolean attribute, exactly `true` or `false`.
    pub(crate) fn opt_bool(
        &self,
        node: Node<'_, '_>,
        attribute: &str,
        default: bool,
    ) -> SdfResult<bool> {
        match node.attribute(attribute) {
            None => Ok(default),
            Some("true") => Ok(true),
            Some("false") => Ok(false),
            Some(_) => {
                Err(self.value_error(node, format_args!("{attribute} must be 'true' or 'false'")))
            }
        }
    }
}

/// Element children of `node` (Microkit ignores comments, and text is checked separately).
pub(crate) fn elements<'a, 'i>(node: Node<'a, 'i>) -> impl Iterator<Item = Node<'a, 'i>> {
    node.children().filter(|child| child.is_element())
}

/// The SDF integer syntax: decimal, or hexadecimal after `0x`; `_` may appear anywhere.
/// Errors are Rust's own `ParseIntError` texts, which is what Microkit prints.
pub(crate) fn parse_u64(text: &str) -> Result<u64, ParseIntError> {
    let digits: String = text.chars().filter(|c| *c != '_').collect();
    match digits.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => digits.parse::<u64>(),
    }
}

/// [`parse_u64`] for a `u8`.
pub(crate) fn parse_u8(text: &str) -> Result<u8, ParseIntError> {
    let digits: String = text.chars().filter(|c| *c != '_').collect();
    match digits.strip_prefix("0x") {
        Some(hex) => u8::from_str_radix(hex, 16),
        None => digits.parse::<u8>(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Rows and columns as roxmltree computes them (by rescanning the text).
    fn reference(text: &str, offset: usize) -> (usize, usize) {
        let before = &text[..offset];
        let row = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().unwrap().chars().count() + 1;
        (row, col)
    }

    #[test]
    fn rows_and_columns_match_a_rescan_at_every_character() {
        // Multi-byte characters, CR LF, empty lines and a line longer than the stride.
        let long = "é".repeat(CHAR_STRIDE) + "x";
        let text = format!("<a>\r\n\n  <b c=\"ü\"/>{long}<d/>\n<e/>\n</a>");
        let file = SdfFile::new("t", &text);
        for (offset, _) in text.char_indices().chain([(text.len(), ' ')]) {
            assert_eq!(
                file.row_col(Pos(offset)),
                reference(&text, offset),
                "{offset}"
            );
        }
        let document = roxmltree::Document::parse(&text).unwrap();
        for node in document.descendants().filter(|node| node.is_element()) {
            let expected = document.text_pos_at(node.range().start);
            let (row, col) = file.row_col(file.pos(node));
            assert_eq!((row, col), (expected.row as usize, expected.col as usize));
        }
    }

    #[test]
    fn a_lookup_does_not_rescan_the_file() {
        // One 1 MiB line: a rescan would read up to the offset for every lookup.
        let text = "<a/>".repeat(1 << 18);
        let file = SdfFile::new("t", &text);
        let lookups = 1000;
        for lookup in 0..lookups {
            let offset = text.len() - 4 * (lookup + 1);
            assert_eq!(file.row_col(Pos(offset)), (1, offset + 1));
        }
        // Two counts of less than one stride each per lookup.
        assert!(
            file.scanned.get() <= lookups * 2 * CHAR_STRIDE,
            "{} bytes scanned for {lookups} lookups",
            file.scanned.get()
        );
    }

    #[test]
    fn integers_accept_decimal_hex_and_separators() {
        assert_eq!(parse_u64("4096"), Ok(4096));
        assert_eq!(parse_u64("0x1_000"), Ok(0x1000));
        assert_eq!(parse_u64("1_000_000"), Ok(1_000_000));
        assert_eq!(parse_u64("0xffff_ffff_ffff_ffff"), Ok(u64::MAX));
    }

    #[test]
    fn integer_errors_are_rust_texts() {
        let text = |s: &str| parse_u64(s).err().map(|e| e.to_string());
        assert_eq!(
            text("0x200_000sd").as_deref(),
            Some("invalid digit found in string")
        );
        assert_eq!(
            text("0x1_0000_0000_0000_0000").as_deref(),
            Some("number too large to fit in target type")
        );
        assert_eq!(
            text("0x").as_deref(),
            Some("cannot parse integer from empty string")
        );
        assert_eq!(
            parse_u8("256").err().map(|e| e.to_string()).as_deref(),
            Some("number too large to fit in target type")
        );
    }
}
