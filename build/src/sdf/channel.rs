//! `<channel>` and its two `<end>`s. Parsed after every PD, since an end names a PD.

use roxmltree::Node;

use super::error::{SdfError, SdfResult};
use super::protection_domain::{checked_channel_id, RawPd};
use super::xml::{elements, Pos, SdfFile};

/// One `<end>`, with the index of its PD in the flattened list.
#[derive(Clone, Debug)]
pub(crate) struct RawEnd {
    pub(crate) pd: usize,
    pub(crate) id: u64,
    pub(crate) notify: bool,
    pub(crate) pp: bool,
    pub(crate) setvar_id: Option<String>,
}

/// A `<channel>`.
#[derive(Clone, Debug)]
pub(crate) struct RawChannel {
    pub(crate) ends: [RawEnd; 2],
    pub(crate) pos: Pos,
}

fn end_from_xml(file: &SdfFile<'_>, node: Node<'_, '_>, pds: &[RawPd]) -> SdfResult<RawEnd> {
    let tag = node.tag_name().name();
    if tag != "end" {
        return Err(SdfError::microkit(format!(
            "Error: invalid XML element '{tag}': {}",
            file.loc(file.pos(node))
        )));
    }
    file.check_attributes(node, &["pd", "id", "pp", "notify", "setvar_id"])?;
    let pd_name = file.required(node, "pd")?;
    let id_text = file.required(node, "id")?;
    let id = checked_channel_id(file, node, file.signed_number(node, id_text)?)?;
    let notify = file.opt_bool(node, "notify", true)?;
    let pp = file.opt_bool(node, "pp", false)?;
    let Some(pd) = pds.iter().position(|pd| pd.name == pd_name) else {
        return Err(file.value_error(node, format_args!("invalid PD name '{pd_name}'")));
    };
    Ok(RawEnd {
        pd,
        id,
        notify,
        pp,
        setvar_id: node.attribute("setvar_id").map(str::to_string),
    })
}

impl RawChannel {
    /// A channel; every end is checked before the number of ends, as Microkit does.
    pub(crate) fn from_xml(
        file: &SdfFile<'_>,
        node: Node<'_, '_>,
        pds: &[RawPd],
    ) -> SdfResult<Self> {
        file.check_attributes(node, &[])?;
        let ends = elements(node)
            .map(|end| end_from_xml(file, end, pds))
            .collect::<SdfResult<Vec<_>>>()?;
        let Ok([end_a, end_b]) = <[RawEnd; 2]>::try_from(ends) else {
            return Err(file.value_error(node, "exactly two end elements must be specified"));
        };
        if end_a.pp && end_b.pp {
            return Err(file.value_error(node, "cannot ppc bidirectionally"));
        }
        Ok(Self {
            ends: [end_a, end_b],
            pos: file.pos(node),
        })
    }
}
