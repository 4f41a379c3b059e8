//! Errors of the system description parser, worded exactly as the Microkit tool words them.

use std::fmt;

/// Which family of rule refused the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SdfErrorKind {
    /// The file could not be read, or is not UTF-8.
    Input,
    /// The file is over one of the stated input limits (size, elements, attributes per element,
    /// namespace declarations; docs/SDF.md, "Input limits").
    Limit,
    /// The text is not well-formed XML, or its root is not `<system>`.
    Xml,
    /// A Microkit 2.3 rule; the message is Microkit's, word for word.
    Microkit,
    /// A Microkit element or attribute that Frameshift does not implement (docs/SDF.md).
    NotSupported,
    /// A rule of the Frameshift protected virtual machine extension (`protected`, `conversion`;
    /// docs/SDF.md).
    Protected,
    /// A Frameshift rule that Microkit defers to its later build stages (e.g. a `setvar`
    /// `region_paddr` naming no memory region).
    Frameshift,
}

/// A refused system description.
///
/// `Display` prints the full message (possibly several lines, as Microkit prints it); the
/// warnings printed before the refusal are kept apart in [`SdfError::warnings`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SdfError {
    kind: SdfErrorKind,
    message: String,
    warnings: Vec<String>,
}

impl SdfError {
    pub(crate) fn new(kind: SdfErrorKind, message: String) -> Self {
        Self {
            kind,
            message,
            warnings: Vec::new(),
        }
    }

    /// A Microkit rule refused the file with `message`.
    pub(crate) fn microkit(message: String) -> Self {
        Self::new(SdfErrorKind::Microkit, message)
    }

    /// The same message, attributed to another family of rule.
    pub(crate) fn with_kind(mut self, kind: SdfErrorKind) -> Self {
        self.kind = kind;
        self
    }

    pub(crate) fn with_warnings(mut self, warnings: Vec<String>) -> Self {
        self.warnings = warnings;
        self
    }

    /// Which family of rule refused the file.
    pub fn kind(&self) -> SdfErrorKind {
        self.kind
    }

    /// The full message, exactly as printed.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The first line of the message (what `cargo xtask check` prints).
    pub fn first_line(&self) -> &str {
        self.message.lines().next().unwrap_or("")
    }

    /// Warnings printed before the error (e.g. unused memory regions), one line each.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }
}

impl fmt::Display for SdfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for SdfError {}

/// Result of a parsing step.
pub(crate) type SdfResult<T> = Result<T, SdfError>;
