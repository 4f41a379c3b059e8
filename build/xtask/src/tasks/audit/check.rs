//! The host's own I1-I4 audit of a dump, written from docs/ISOLATION.md without the kernel's
//! code: the frame table's runs say who holds each frame; the map runs say who maps it, where
//! and how. Every disagreement is one [`Finding`].

use std::collections::BTreeMap;

use serde::Serialize;

use super::dump::Dump;
use frameshift_abi::layout::{HYPERVISOR_BASE, HYPERVISOR_END};

/// One violation the host found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// `I1` .. `I4`.
    pub invariant: &'static str,
    /// The frame.
    pub pa: u64,
    /// The domain whose mapping shows it, if one does.
    pub domain: Option<u8>,
    /// What is wrong.
    pub what: String,
}

/// One mapping of one frame.
#[derive(Clone, Debug)]
struct Mapping {
    domain: u8,
    state: String,
    rights: String,
}

/// Whether every letter of `rights` is in `granted`.
fn within(rights: &str, granted: &str) -> bool {
    rights == "-" || rights.chars().all(|letter| granted.contains(letter))
}

const PAGE: u64 = 4096;

/// Audits `dump`; returns every finding (none for a clean dump).
pub fn audit(dump: &Dump) -> Vec<Finding> {
    let mut findings = Vec::new();
    let mut report = |invariant: &'static str, pa: u64, domain: Option<u8>, what: String| {
        findings.push(Finding {
            invariant,
            pa,
            domain,
            what,
        });
    };
    let table_end = dump.base + dump.frames * PAGE;
    // Who maps each tracked frame (and lent-away annotations, by owner).
    let mut mapped: BTreeMap<u64, Vec<Mapping>> = BTreeMap::new();
    for run in &dump.maps {
        for page in 0..run.pages {
            let pa = run.pa + page * PAGE;
            if pa < HYPERVISOR_END.0 && pa + PAGE > HYPERVISOR_BASE.0 {
                report(
                    "I4",
                    pa,
                    Some(run.domain),
                    "hypervisor memory mapped".to_owned(),
                );
                continue;
            }
            if run.state == "passthrough" {
                if pa >= dump.base && pa < table_end {
                    report(
                        "I3",
                        pa,
                        Some(run.domain),
                        "a passthrough mapping of RAM the frame table tracks".to_owned(),
                    );
                }
                continue;
            }
            if pa < dump.base || pa >= table_end {
                report(
                    "I3",
                    pa,
                    Some(run.domain),
                    "a mapping of a frame the frame table does not track".to_owned(),
                );
                continue;
            }
            mapped.entry(pa).or_default().push(Mapping {
                domain: run.domain,
                state: run.state.clone(),
                rights: run.rights.clone(),
            });
        }
    }
    let mut covered = 0u64;
    for run in &dump.frame_runs {
        covered += run.count;
        for frame in 0..run.count {
            let pa = run.pa + frame * PAGE;
            let maps = mapped.remove(&pa).unwrap_or_default();
            let count = |domain: u8, state: &str| {
                maps.iter()
                    .filter(|m| m.domain == domain && m.state == state)
                    .count()
            };
            let borrower = |domain: u8| run.borrowers.iter().find(|(id, _)| *id == domain);
            for mapping in &maps {
                let is_owner = run.owner == Some(mapping.domain);
                let holder = is_owner || borrower(mapping.domain).is_some();
                if !holder {
                    let invariant = if run.state == "owned" || run.state == "lent" {
                        "I1"
                    } else if run.state == "shared" {
                        "I2"
                    } else {
                        "I3"
                    };
                    report(
                        invariant,
                        pa,
                        Some(mapping.domain),
                        format!(
                            "mapped ({}) by a domain holding no capability for a {} frame",
                            mapping.state, run.state
                        ),
                    );
                    continue;
                }
                let granted = if is_owner {
                    run.rights.as_str()
                } else {
                    borrower(mapping.domain).map_or("-", |(_, rights)| rights.as_str())
                };
                if mapping.state != "lent-away" && !within(&mapping.rights, granted) {
                    report(
                        "I2",
                        pa,
                        Some(mapping.domain),
                        format!("rights {} wider than granted {granted}", mapping.rights),
                    );
                }
            }
            match (run.state.as_str(), run.owner) {
                ("free", _) => {
                    if !maps.is_empty() {
                        // Reported above as a mapping without a holder.
                    }
                }
                ("owned", Some(owner)) => {
                    if count(owner, "owned") != 1 || maps.len() != 1 {
                        report(
                            if maps.len() > 1 { "I1" } else { "I3" },
                            pa,
                            Some(owner),
                            format!(
                                "an owned frame mapped {} times, {} by its owner as owned",
                                maps.len(),
                                count(owner, "owned")
                            ),
                        );
                    }
                }
                ("shared", Some(owner)) => {
                    if count(owner, "shared-owned") != 1 {
                        report(
                            "I2",
                            pa,
                            Some(owner),
                            "a shared frame its owner does not map exactly once as shared-owned"
                                .to_owned(),
                        );
                    }
                    for (id, _) in &run.borrowers {
                        if count(*id, "shared-borrowed") != 1 {
                            report(
                                "I2",
                                pa,
                                Some(*id),
                                "a listed borrower that does not map the shared frame exactly once"
                                    .to_owned(),
                            );
                        }
                    }
                    if maps.len() != 1 + run.borrowers.len() {
                        report(
                            "I2",
                            pa,
                            None,
                            format!(
                                "a shared frame mapped {} times for {} holders",
                                maps.len(),
                                1 + run.borrowers.len()
                            ),
                        );
                    }
                }
                ("lent", Some(owner)) => {
                    if count(owner, "lent-away") != 1 {
                        report(
                            "I3",
                            pa,
                            Some(owner),
                            "a lent frame without its owner's lent-away annotation".to_owned(),
                        );
                    }
                    let borrowed = maps.iter().filter(|m| m.state == "shared-borrowed").count();
                    if borrowed != 1 || run.borrowers.len() != 1 {
                        report(
                            "I1",
                            pa,
                            None,
                            format!("a lent frame mapped by {borrowed} borrowers"),
                        );
                    }
                }
                (state, owner) => report(
                    "I3",
                    pa,
                    None,
                    format!("frame state {state} with owner {owner:?}"),
                ),
            }
        }
    }
    if covered != dump.frames {
        report(
            "I3",
            dump.base,
            None,
            format!(
                "the frame runs cover {covered} frames, the table has {}",
                dump.frames
            ),
        );
    }
    for (pa, maps) in mapped {
        for mapping in maps {
            report(
                "I3",
                pa,
                Some(mapping.domain),
                "a mapping of a frame no run lists".to_owned(),
            );
        }
    }
    findings
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::dump::{parse, tests::CLEAN};
    use super::*;

    fn findings(console: &str) -> Vec<Finding> {
        audit(&parse(console).unwrap()[0])
    }

    #[test]
    fn a_clean_dump_has_no_finding() {
        assert_eq!(findings(CLEAN), Vec::new());
    }

    #[test]
    fn each_planted_violation_is_reported_with_its_invariant() {
        let cases = [
            // The VMM maps the guest's private frame (I1).
            (
                "FS|hypervisor|dump map domain=0 ipa=0x200000 pa=0x42003000",
                "FS|hypervisor|dump map domain=0 ipa=0x200000 pa=0x42000000",
                "I1",
            ),
            // The borrower maps the shared frame with execute (I2).
            (
                "pages=1 state=shared-borrowed rights=rw",
                "pages=1 state=shared-borrowed rights=rwx",
                "I2",
            ),
            // The frame table says the VMM's page is free (I3).
            (
                "pa=0x42003000 count=1 state=owned owner=0 rights=rw",
                "pa=0x42003000 count=1 state=free owner=- rights=-",
                "I3",
            ),
            // A domain maps hypervisor memory (I4).
            (
                "ipa=0x200000 pa=0x42003000 pages=1 state=owned",
                "ipa=0x200000 pa=0x40100000 pages=1 state=owned",
                "I4",
            ),
        ];
        for (from, to, invariant) in cases {
            let planted = CLEAN.replace(from, to);
            assert_ne!(planted, CLEAN, "{from}");
            let found = findings(&planted);
            assert!(
                found.iter().any(|finding| finding.invariant == invariant),
                "{invariant} not found for {to}: {found:#?}"
            );
        }
    }
}
