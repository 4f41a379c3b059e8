//! `<cspace>` and its `cap_*` children: checked as Microkit checks them, then refused by
//! Frameshift, which does not hand PDs extra capabilities (docs/SDF.md, "Not supported").

use roxmltree::Node;

use super::error::{SdfError, SdfResult};
use super::platform::CAP_MAP_MAX_SLOT;
use super::xml::{elements, Pos, SdfFile};

/// The kind of capability a cap map copies (Microkit's names, printed with `{:?}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CapMapType {
    Tcb,
    Sc,
    VSpace,
}

/// One `cap_*` element.
#[derive(Clone, Debug)]
pub(crate) struct RawCapMap {
    pub(crate) cap_type: CapMapType,
    pub(crate) pd: String,
    pub(crate) slot: u64,
    pub(crate) pos: Pos,
}

/// The cap maps of a `<cspace>` element.
pub(crate) fn from_xml(file: &SdfFile<'_>, node: Node<'_, '_>) -> SdfResult<Vec<RawCapMap>> {
    file.check_attributes(node, &[])?;
    let mut cap_maps = Vec::new();
    for child in elements(node) {
        let cap_type = match child.tag_name().name() {
            "cap_tcb" => CapMapType::Tcb,
            "cap_sc" => CapMapType::Sc,
            "cap_vspace" => CapMapType::VSpace,
            other => {
                // Microkit words these two without its usual "Error: " prefix.
                let location = file.loc(file.pos(child));
                return Err(SdfError::microkit(match other.strip_prefix("cap_") {
                    Some(type_name) => {
                        format!("Cap type: '{type_name}' is not supported at '{location}'")
                    }
                    None => format!(
                        "Element '{other}' is not supported in a <cspace> element at '{location}'"
                    ),
                }));
            }
        };
        file.check_attributes(child, &["slot", "pd"])?;
        let pd = file.required(child, "pd")?.to_string();
        let slot = file.required_number(child, "slot")?;
        if slot == 0 {
            return Err(file.value_error(
                child,
                "The destination slot 0 has been reserved for Microkit CNode",
            ));
        }
        if slot >= CAP_MAP_MAX_SLOT {
            return Err(file.value_error(
                child,
                format_args!(
                    "There are only {CAP_MAP_MAX_SLOT} destination cspace slots available."
                ),
            ));
        }
        cap_maps.push(RawCapMap {
            cap_type,
            pd,
            slot,
            pos: file.pos(child),
        });
    }
    Ok(cap_maps)
}
