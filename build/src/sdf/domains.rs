//! `<domains>` (scheduling domains and the domain schedule): checked as Microkit checks them,
//! then refused by Frameshift, which has one scheduling domain (docs/SDF.md, "Not supported").

use std::collections::BTreeMap;

use roxmltree::Node;

use super::error::{SdfError, SdfResult};
use super::platform::{NUM_CORES, NUM_DOMAINS, NUM_DOMAIN_SCHEDULES};
use super::xml::{elements, SdfFile};

/// The declared domains (name to id).
#[derive(Clone, Debug, Default)]
pub(crate) struct Domains {
    ids: BTreeMap<String, u64>,
}

impl Domains {
    /// Whether a non-empty `<domains>` was declared (then every PD must name its domain).
    pub(crate) fn has_domains(&self) -> bool {
        !self.ids.is_empty()
    }

    /// Whether `name` is a declared domain.
    pub(crate) fn contains(&self, name: &str) -> bool {
        self.ids.contains_key(name)
    }

    pub(crate) fn from_xml(file: &SdfFile<'_>, node: Node<'_, '_>) -> SdfResult<Self> {
        file.check_attributes(node, &[])?;
        if NUM_CORES != 1 {
            return Err(SdfError::microkit(
                "Error: The domain scheduler is not supported in multicore builds of seL4"
                    .to_string(),
            ));
        }

        // Name to the explicit id, if one was given; ids are then handed out in name order.
        let mut declared: BTreeMap<String, Option<u64>> = BTreeMap::new();
        let mut taken: BTreeMap<u64, String> = BTreeMap::new();
        let mut schedule_node = None;
        for child in elements(node) {
            match child.tag_name().name() {
                "domain" => {
                    file.check_attributes(child, &["name", "id"])?;
                    let name = file.required(child, "name")?.to_string();
                    let id = file.opt_number(child, "id")?;
                    if let Some(id) = id {
                        if id >= NUM_DOMAINS {
                            return Err(file.value_error(
                                child,
                                format_args!(
                                    "domain id {id} should be less than the configured KernelNumDomains value of {NUM_DOMAINS}"
                                ),
                            ));
                        }
                    }
                    if let Some(existing) = declared.insert(name.clone(), id) {
                        // Microkit prints the previous id with `{:?}` (`Some(3)` or `None`).
                        return Err(file.value_error(
                            child,
                            format_args!(
                                "Each <domain>'s name element must be unique found existing domain '{name}' with id '{existing:?}'"
                            ),
                        ));
                    }
                    if let Some(id) = id {
                        if let Some(existing) = taken.insert(id, name) {
                            return Err(file.value_error(
                                child,
                                format_args!(
                                    "Each <domain>'s id element must be unique found existing domain '{existing}' with id '{id}'"
                                ),
                            ));
                        }
                    }
                }
                "domain_schedule" => {
                    if schedule_node.is_some() {
                        return Err(file.value_error(
                            child,
                            "The <domain_schedule> element can only appear once",
                        ));
                    }
                    schedule_node = Some(child);
                }
                other => {
                    return Err(SdfError::microkit(format!(
                        "Error: invalid XML element as child of <domains> '{other}': {}",
                        file.loc(file.pos(child))
                    )));
                }
            }
        }
        let Some(schedule_node) = schedule_node else {
            return Err(file.value_error(node, "The <domain_schedule> element must appear once"));
        };

        let mut ids = BTreeMap::new();
        for (name, id) in declared {
            let id = match id {
                Some(id) => id,
                None => {
                    // Microkit searches 0..=NUM_DOMAINS (inclusive), so one more automatic id
                    // than the kernel has domains is accepted; kept for identical messages.
                    let Some(free) = (0..=NUM_DOMAINS).find(|id| !taken.contains_key(id)) else {
                        return Err(file.value_error(
                            node,
                            format_args!("Number of domains exceeds {NUM_DOMAINS}"),
                        ));
                    };
                    taken.insert(free, name.clone());
                    free
                }
            };
            ids.insert(name, id);
        }

        check_schedule(file, schedule_node, &ids)?;
        Ok(Self { ids })
    }
}

/// `<domain_schedule>` and its entries.
fn check_schedule(
    file: &SdfFile<'_>,
    node: Node<'_, '_>,
    ids: &BTreeMap<String, u64>,
) -> SdfResult<()> {
    file.check_attributes(node, &["index_shift", "start_index"])?;
    let start_index = file.opt_number(node, "start_index")?.unwrap_or(0);
    let index_shift = file.opt_number(node, "index_shift")?;

    let mut entries: u64 = 0;
    for child in elements(node) {
        match child.tag_name().name() {
            "schedule_entry" => check_entry(file, child, ids)?,
            "schedule_end_marker" => file.check_attributes(child, &[])?,
            other => {
                return Err(SdfError::microkit(format!(
                    "Error: invalid XML element as child of <domain_schedule> '{other}': {}",
                    file.loc(file.pos(child))
                )));
            }
        }
        entries += 1;
    }

    if entries >= NUM_DOMAIN_SCHEDULES {
        // Microkit words this one without its usual "Error: " prefix.
        return Err(SdfError::microkit(format!(
            "More than configured KernelNumDomainSchedules {NUM_DOMAIN_SCHEDULES} number of <schedule_entry> elements found"
        )));
    }
    if start_index >= entries {
        return Err(file.value_error(
            node,
            format_args!(
                "schedule_start_index '{start_index}' is greater than the length of the schedule '{entries}'"
            ),
        ));
    }
    if let Some(shift) = index_shift {
        if shift.saturating_add(entries) >= NUM_DOMAIN_SCHEDULES {
            // Microkit prints the start index here, not the shift; kept for identical messages.
            return Err(file.value_error(
                node,
                format_args!(
                    "schedule_index_shift '{start_index}' on top of the schedule length '{entries}' would exceed than the configured KernelNumDomainSchedules {NUM_DOMAIN_SCHEDULES}"
                ),
            ));
        }
    }
    Ok(())
}

/// One `<schedule_entry domain="…" duration="N us|ticks">`.
fn check_entry(
    file: &SdfFile<'_>,
    node: Node<'_, '_>,
    ids: &BTreeMap<String, u64>,
) -> SdfResult<()> {
    file.check_attributes(node, &["domain", "duration"])?;
    let domain = file.required(node, "domain")?;
    let duration = file.required(node, "duration")?;
    if !ids.contains_key(domain) {
        return Err(file.value_error(node, format_args!("domain '{domain}' does not exist,")));
    }
    let Some((value, unit)) = duration.split_once(' ') else {
        return Err(file.value_error(
            node,
            format_args!(
                "The duration '{duration}' must contain a value and a unit, e.g. '1000 us'"
            ),
        ));
    };
    if file.number(node, value)? == 0 {
        return Err(file.value_error(
            node,
            format_args!("The duration '{duration}' must be non-zero"),
        ));
    }
    if unit != "us" && unit != "ticks" {
        return Err(file.value_error(
            node,
            format_args!("The duration '{duration}' must be in either 'ticks' or 'us'"),
        ));
    }
    Ok(())
}
