//! The stated input limits (docs/SDF.md, "Input limits"), checked before roxmltree builds a tree.
//!
//! Every check after them is linear or `n log n` in the size of the file, but two costs are not
//! ours to bound: roxmltree compares every attribute of an element with every other one (to refuse
//! duplicates), and copies the namespaces in scope into every element that declares one. So one
//! linear pass over the text counts what those costs grow with and refuses a file over a limit,
//! with a message that names the limit. The limits are far above any real system (a Microkit
//! element has at most 12 attributes, and a system at most 63 protection domains).
//!
//! The pass only counts; it does not validate. On well-formed text its counts are exact; where the
//! text is malformed roxmltree refuses it at that point anyway, with its own message.

use super::error::{SdfError, SdfErrorKind, SdfResult};
use super::xml::SdfFile;

/// Largest system description, in bytes (16 MiB).
pub const MAX_FILE_BYTES: usize = 16 << 20;
/// Most elements in one file.
pub const MAX_ELEMENTS: usize = 500_000;
/// Most attributes on one element.
pub const MAX_ATTRIBUTES: usize = 64;
/// Most namespace declarations (`xmlns` and `xmlns:*` attributes) in one file. The SDF uses no
/// namespaces; the bound keeps roxmltree's per-element copy of the namespaces in scope constant.
pub const MAX_NAMESPACE_DECLARATIONS: usize = 64;

fn refuse(message: String) -> SdfError {
    SdfError::new(SdfErrorKind::Limit, message)
}

/// Refuses a file of `len` bytes over [`MAX_FILE_BYTES`] (checked before it is even read, when
/// its length is known).
pub(crate) fn check_size(file_name: &str, len: u64) -> SdfResult<()> {
    if len > MAX_FILE_BYTES as u64 {
        return Err(refuse(format!(
            "Error: system description '{file_name}' is {len} bytes, more than the limit of {MAX_FILE_BYTES} bytes (16 MiB)"
        )));
    }
    Ok(())
}

/// What the pass counted (for the tests).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) elements: usize,
    pub(crate) most_attributes: usize,
    pub(crate) namespace_declarations: usize,
}

/// Index of the first occurrence of `needle` in `bytes` at or after `from`, if any.
fn find(bytes: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    bytes
        .get(from..)?
        .windows(needle.len())
        .position(|window| window == needle)
        .map(|at| from + at)
}

/// The offset just past the first `needle` at or after `from`, or the end of the text.
fn skip_past(bytes: &[u8], from: usize, needle: &[u8]) -> usize {
    find(bytes, from, needle).map_or(bytes.len(), |at| at + needle.len())
}

/// Whether `byte` ends an XML name (the tag or attribute names the pass has to delimit).
fn ends_name(byte: u8) -> bool {
    matches!(
        byte,
        b' ' | b'\t' | b'\r' | b'\n' | b'/' | b'>' | b'=' | b'<'
    )
}

/// Checks the size, element, attribute and namespace limits of `file`'s `text`, in one pass.
pub(crate) fn check(file: &SdfFile<'_>, text: &str) -> SdfResult<Counts> {
    check_size(file.name, text.len() as u64)?;
    let bytes = text.as_bytes();
    let mut counts = Counts::default();
    let mut at = 0;
    while let Some(offset) = bytes
        .get(at..)
        .and_then(|rest| rest.iter().position(|b| *b == b'<'))
    {
        let open = at + offset;
        let rest = bytes.get(open + 1..).unwrap_or_default();
        if rest.starts_with(b"!--") {
            at = skip_past(bytes, open + 4, b"-->");
        } else if rest.starts_with(b"![CDATA[") {
            at = skip_past(bytes, open + 9, b"]]>");
        } else if rest.starts_with(b"?") {
            at = skip_past(bytes, open + 2, b"?>");
        } else if rest.starts_with(b"!") || rest.starts_with(b"/") {
            // A DTD (which roxmltree refuses) or an end tag.
            at = skip_past(bytes, open + 1, b">");
        } else {
            counts.elements += 1;
            if counts.elements > MAX_ELEMENTS {
                return Err(refuse(format!(
                    "Error: more than {MAX_ELEMENTS} elements, the limit for a system description: {}",
                    file.loc(file.pos_at(open))
                )));
            }
            at = start_tag(file, bytes, open, &mut counts)?;
        }
    }
    Ok(counts)
}

/// Counts the attributes of the start tag at `open` (one `=` outside quotes each); returns the
/// offset after the tag.
fn start_tag(
    file: &SdfFile<'_>,
    bytes: &[u8],
    open: usize,
    counts: &mut Counts,
) -> SdfResult<usize> {
    let name_end = (open + 1..bytes.len())
        .find(|&index| bytes.get(index).is_some_and(|b| ends_name(*b)))
        .unwrap_or(bytes.len());
    let tag = bytes.get(open + 1..name_end).unwrap_or_default();
    let mut attributes = 0;
    let mut index = name_end;
    while let Some(&byte) = bytes.get(index) {
        match byte {
            b'>' => return Ok(index + 1),
            // Malformed; roxmltree stops here, and the pass goes on from this tag.
            b'<' => return Ok(index),
            b'"' | b'\'' => {
                index = bytes
                    .get(index + 1..)
                    .and_then(|rest| rest.iter().position(|b| *b == byte))
                    .map_or(bytes.len(), |close| index + 1 + close + 1);
                continue;
            }
            b'=' => {
                attributes += 1;
                if attributes > MAX_ATTRIBUTES {
                    return Err(refuse(format!(
                        "Error: element '{}' has more than {MAX_ATTRIBUTES} attributes, the limit for one element: {}",
                        String::from_utf8_lossy(tag),
                        file.loc(file.pos_at(open))
                    )));
                }
                counts.most_attributes = counts.most_attributes.max(attributes);
                let name = attribute_name_before(bytes, index);
                if name == b"xmlns" || name.starts_with(b"xmlns:") {
                    counts.namespace_declarations += 1;
                    if counts.namespace_declarations > MAX_NAMESPACE_DECLARATIONS {
                        return Err(refuse(format!(
                            "Error: more than {MAX_NAMESPACE_DECLARATIONS} namespace declarations, the limit for a system description, on element '{}': {}",
                            String::from_utf8_lossy(tag),
                            file.loc(file.pos_at(open))
                        )));
                    }
                }
            }
            _ => {}
        }
        index += 1;
    }
    Ok(bytes.len())
}

/// The attribute name that ends before the `=` at `equals` (skipping white space).
fn attribute_name_before(bytes: &[u8], equals: usize) -> &[u8] {
    let before = bytes.get(..equals).unwrap_or_default();
    let end = before
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(0, |last| last + 1);
    let start = before
        .get(..end)
        .unwrap_or_default()
        .iter()
        .rposition(|b| ends_name(*b))
        .map_or(0, |delimiter| delimiter + 1);
    before.get(start..end).unwrap_or_default()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn counts(text: &str) -> SdfResult<Counts> {
        check(&SdfFile::new("t.system", text), text)
    }

    #[test]
    fn counts_elements_attributes_and_namespaces_exactly() {
        let text = r#"<?xml version="1.0"?>
<!-- a comment with <fake a="1" b="2"> markup -->
<system xmlns="urn:x" xmlns:a='urn:a'>
  <memory_region name="a>b" size='0x1000' />
  <![CDATA[ <not an="element"> ]]>
  <protection_domain name = "p" priority="1" budget="2"><program_image path="x" /></protection_domain>
</system>
"#;
        assert_eq!(
            counts(text).unwrap(),
            Counts {
                elements: 4,
                most_attributes: 3,
                namespace_declarations: 2,
            }
        );
    }

    #[test]
    fn limits_are_refused_with_the_limit_and_the_position() {
        let many_attributes: String = (0..=MAX_ATTRIBUTES)
            .map(|i| format!(" a{i}=\"\""))
            .collect();
        let text = format!("<system>\n  <memory_region{many_attributes} />\n</system>");
        let error = counts(&text).unwrap_err();
        assert_eq!(error.kind(), SdfErrorKind::Limit);
        assert_eq!(
            error.message(),
            "Error: element 'memory_region' has more than 64 attributes, the limit for one element: t.system:2:3"
        );

        let namespaces: String = (0..=MAX_NAMESPACE_DECLARATIONS)
            .map(|i| format!("<e xmlns:n{i}=\"urn:{i}\"/>"))
            .collect();
        let error = counts(&format!("<system>{namespaces}</system>")).unwrap_err();
        assert!(
            error
                .message()
                .starts_with("Error: more than 64 namespace declarations"),
            "{error}"
        );

        let elements = "<e/>".repeat(MAX_ELEMENTS);
        let error = counts(&format!("<system>{elements}</system>")).unwrap_err();
        assert_eq!(
            error.message(),
            format!(
                "Error: more than 500000 elements, the limit for a system description: t.system:1:{}",
                9 + 4 * (MAX_ELEMENTS - 1)
            )
        );
        assert!(counts(&format!(
            "<system>{}</system>",
            "<e/>".repeat(MAX_ELEMENTS - 1)
        ))
        .is_ok());

        let error = check_size("big.system", MAX_FILE_BYTES as u64 + 1).unwrap_err();
        assert_eq!(
            error.message(),
            "Error: system description 'big.system' is 16777217 bytes, more than the limit of 16777216 bytes (16 MiB)"
        );
        assert!(check_size("big.system", MAX_FILE_BYTES as u64).is_ok());
    }

    #[test]
    fn malformed_text_never_panics_the_pass() {
        for text in [
            "<",
            "<a",
            "<a b=\"",
            "<!--",
            "<![CDATA[",
            "<?",
            "<a b='x' c",
            "<<<>>>",
            "<a =>",
        ] {
            assert!(counts(text).is_ok(), "{text}");
        }
    }
}
