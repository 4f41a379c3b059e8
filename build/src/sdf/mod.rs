//! Microkit 2.3 System Description File support: parsing, validation, and the parsed model.
//!
//! [`parse_file`] reads a `system.xml` and returns the [`SystemDescription`] only when every
//! Microkit check, the not-supported check and the Frameshift `protected` rules pass; otherwise
//! an [`SdfError`] whose `Display` is the message Microkit prints, word for word (docs/SDF.md).
//! The check order is tabled in `system.rs`.

mod channel;
mod cspace;
pub mod devices;
mod domains;
mod error;
mod frameshift;
pub mod limits;
mod lower;
mod memory_region;
pub mod model;
mod platform;
mod protected;
mod protection_domain;
mod system;
mod xml;

use std::path::{Path, PathBuf};

pub use error::{SdfError, SdfErrorKind};
pub(crate) use memory_region::DisjointRanges;
pub use model::SystemDescription;

/// Parses and validates the system description at `path`; `prefill_path` files are looked up
/// in `search_paths`, in order. Messages name the file as `path` is written.
pub fn parse_file(path: &Path, search_paths: &[PathBuf]) -> Result<SystemDescription, SdfError> {
    let name = path.display().to_string();
    let cannot_read = |error: std::io::Error| {
        SdfError::new(
            SdfErrorKind::Input,
            format!("Error: cannot read system description '{name}': {error}"),
        )
    };
    // Refuse an oversized file before reading it into memory.
    let len = std::fs::metadata(path).map_err(cannot_read)?.len();
    limits::check_size(&name, len)?;
    match std::fs::read(path) {
        Ok(bytes) => parse_bytes(&name, &bytes, search_paths),
        Err(error) => Err(cannot_read(error)),
    }
}

/// [`parse_str`] for raw file contents, which must be UTF-8.
pub fn parse_bytes(
    file_name: &str,
    bytes: &[u8],
    search_paths: &[PathBuf],
) -> Result<SystemDescription, SdfError> {
    limits::check_size(file_name, bytes.len() as u64)?;
    match std::str::from_utf8(bytes) {
        Ok(xml) => parse_str(file_name, xml, search_paths),
        Err(error) => {
            // Report the row and column of the first bad byte, like every other message.
            let valid = bytes.get(..error.valid_up_to()).unwrap_or_default();
            let row = valid.iter().filter(|byte| **byte == b'\n').count() + 1;
            let line_start = valid
                .iter()
                .rposition(|byte| *byte == b'\n')
                .map_or(0, |newline| newline + 1);
            let col = String::from_utf8_lossy(valid.get(line_start..).unwrap_or_default())
                .chars()
                .count()
                + 1;
            Err(SdfError::new(
                SdfErrorKind::Input,
                format!("Error: system description is not valid UTF-8: {file_name}:{row}:{col}"),
            ))
        }
    }
}

/// Parses and validates the system description text `xml`; `file_name` is how messages name it.
pub fn parse_str(
    file_name: &str,
    xml: &str,
    search_paths: &[PathBuf],
) -> Result<SystemDescription, SdfError> {
    let file = xml::SdfFile::new(file_name, xml);
    limits::check(&file, xml)?;
    let options = roxmltree::ParsingOptions {
        // Microkit's parser is built with roxmltree's defaults, which refuse a DTD; so do we, and
        // with it every entity-expansion trick.
        allow_dtd: false,
        ..roxmltree::ParsingOptions::default()
    };
    let document = roxmltree::Document::parse_with_options(xml, options).map_err(|error| {
        // Microkit words this one without its usual "Error: " prefix.
        SdfError::new(
            SdfErrorKind::Xml,
            format!("Could not parse '{file_name}': {error}"),
        )
    })?;
    let root = document.root_element();
    if root.tag_name().name() != "system" {
        return Err(SdfError::new(
            SdfErrorKind::Xml,
            format!(
                "Error: the root element must be 'system', not '{}': {}",
                root.tag_name().name(),
                file.loc(file.pos(root))
            ),
        ));
    }

    let raw = system::parse_system(&file, root, search_paths)
        .map_err(|(error, warnings)| error.with_warnings(warnings))?;
    let warnings = raw.warnings.clone();
    let with_warnings = |error: SdfError| error.with_warnings(warnings.clone());

    if let Some((pos, what)) = raw.unsupported.first() {
        return Err(with_warnings(SdfError::new(
            SdfErrorKind::NotSupported,
            format!(
                "Error: {what} is not supported by Frameshift: {}",
                file.loc(*pos)
            ),
        )));
    }
    frameshift::check(&file, &raw).map_err(with_warnings)?;
    protected::check(&file, &raw).map_err(with_warnings)?;
    lower::lower(&file, raw).map_err(with_warnings)
}
