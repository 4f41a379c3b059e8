//! Parsing the hypervisor's dump (hypervisor/core/src/dump.rs, docs/ISOLATION.md "The auditor's
//! view") from a console transcript: every `FS|hypervisor|dump ...` line, grouped into one
//! [`Dump`] per `begin`..`end`.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::console;

/// One domain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DomainRecord {
    /// Its id.
    pub id: u8,
    /// Its name.
    pub name: String,
    /// `pd` or `vm`.
    pub kind: String,
    /// A protected VM.
    pub protected: bool,
}

/// A run of frames with the same record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FrameRun {
    /// First frame.
    pub pa: u64,
    /// Frames.
    pub count: u64,
    /// `free`, `owned`, `shared`, `lent`.
    pub state: String,
    /// The owner (the original capability), if any.
    pub owner: Option<u8>,
    /// The owner's rights (`rwx` letters, `-` for none).
    pub rights: String,
    /// Borrowers (derived capabilities) and their rights.
    pub borrowers: Vec<(u8, String)>,
}

/// A run of one domain's stage-2 leaves.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MapRun {
    /// The domain.
    pub domain: u8,
    /// First IPA.
    pub ipa: u64,
    /// First frame.
    pub pa: u64,
    /// Pages.
    pub pages: u64,
    /// `owned`, `shared-owned`, `shared-borrowed`, `passthrough`, `lent-away`.
    pub state: String,
    /// Rights letters.
    pub rights: String,
    /// `normal` or `device`.
    pub memory: String,
}

/// One logged conversion.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Conversion {
    /// Its number since boot.
    pub seq: u64,
    /// Counter value (62.5 MHz; 16 instructions per tick with `-icount shift=0`).
    pub time: u64,
    /// Who asked.
    pub by: u8,
    /// The VM.
    pub vm: u8,
    /// The operation.
    pub op: String,
    /// First guest page.
    pub ipa: u64,
    /// Pages.
    pub pages: u64,
    /// The frame behind the first page after the request (`None`: mapped nowhere).
    pub pa: Option<u64>,
    /// 0 accepted, else the refusal's code.
    pub code: i64,
}

/// One dump.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Dump {
    /// `call` or `halt`.
    pub at: String,
    /// Counter value when it was written.
    pub time: u64,
    /// The frame table's first frame.
    pub base: u64,
    /// Frames the frame table tracks.
    pub frames: u64,
    /// Conversions requested since boot.
    pub conversions: u64,
    /// Domains.
    pub domains: Vec<DomainRecord>,
    /// The frame table as runs.
    pub frame_runs: Vec<FrameRun>,
    /// Every domain's mappings as runs.
    pub maps: Vec<MapRun>,
    /// The conversion log (the most recent ones).
    pub log: Vec<Conversion>,
}

/// A line that does not parse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DumpError(pub String);

impl std::fmt::Display for DumpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "dump: {}", self.0)
    }
}

fn fields(text: &str) -> BTreeMap<&str, &str> {
    text.split(' ')
        .filter_map(|part| part.split_once('='))
        .collect()
}

fn number(fields: &BTreeMap<&str, &str>, key: &str, line: &str) -> Result<u64, DumpError> {
    let value = fields
        .get(key)
        .ok_or_else(|| DumpError(format!("no {key}= in {line:?}")))?;
    let parsed = match value.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => value.parse(),
    };
    parsed.map_err(|_| DumpError(format!("{key}={value} is not a number in {line:?}")))
}

fn text(fields: &BTreeMap<&str, &str>, key: &str, line: &str) -> Result<String, DumpError> {
    fields
        .get(key)
        .map(|value| (*value).to_owned())
        .ok_or_else(|| DumpError(format!("no {key}= in {line:?}")))
}

fn domain_id(value: u64, line: &str) -> Result<u8, DumpError> {
    u8::try_from(value).map_err(|_| DumpError(format!("domain id {value} in {line:?}")))
}

/// Every complete dump in `console`, in order.
pub fn parse(console: &str) -> Result<Vec<Dump>, DumpError> {
    let mut dumps = Vec::new();
    let mut current: Option<(Dump, u64)> = None;
    for line in console::lines_of(console, "hypervisor") {
        let Some(rest) = line.strip_prefix("dump ") else {
            continue;
        };
        let (kind, _) = rest.split_once(' ').unwrap_or((rest, ""));
        let f = fields(rest);
        if kind == "begin" {
            let dump = Dump {
                at: text(&f, "at", line)?,
                time: number(&f, "time", line)?,
                base: number(&f, "base", line)?,
                frames: number(&f, "frames", line)?,
                conversions: number(&f, "conversions", line)?,
                ..Dump::default()
            };
            current = Some((dump, 0));
            continue;
        }
        let Some((dump, lines)) = current.as_mut() else {
            return Err(DumpError(format!("{line:?} outside a dump")));
        };
        match kind {
            "domain" => dump.domains.push(DomainRecord {
                id: domain_id(number(&f, "id", line)?, line)?,
                name: text(&f, "name", line)?,
                kind: text(&f, "kind", line)?,
                protected: number(&f, "protected", line)? != 0,
            }),
            "frames" => {
                let owner = match f.get("owner") {
                    Some(&"-") => None,
                    _ => Some(domain_id(number(&f, "owner", line)?, line)?),
                };
                let borrowers = match text(&f, "borrowers", line)?.as_str() {
                    "-" => Vec::new(),
                    list => list
                        .split(',')
                        .map(|entry| {
                            let (id, rights) = entry
                                .split_once(':')
                                .ok_or_else(|| DumpError(format!("borrower {entry:?}")))?;
                            let id = id
                                .parse::<u64>()
                                .map_err(|_| DumpError(format!("borrower {entry:?}")))?;
                            Ok((domain_id(id, line)?, rights.to_owned()))
                        })
                        .collect::<Result<_, DumpError>>()?,
                };
                dump.frame_runs.push(FrameRun {
                    pa: number(&f, "pa", line)?,
                    count: number(&f, "count", line)?,
                    state: text(&f, "state", line)?,
                    owner,
                    rights: text(&f, "rights", line)?,
                    borrowers,
                });
            }
            "map" => dump.maps.push(MapRun {
                domain: domain_id(number(&f, "domain", line)?, line)?,
                ipa: number(&f, "ipa", line)?,
                pa: number(&f, "pa", line)?,
                pages: number(&f, "pages", line)?,
                state: text(&f, "state", line)?,
                rights: text(&f, "rights", line)?,
                memory: text(&f, "memory", line)?,
            }),
            "conversion" => {
                let pa = Some(number(&f, "pa", line)?).filter(|&pa| pa != u64::MAX);
                dump.log.push(Conversion {
                    seq: number(&f, "seq", line)?,
                    time: number(&f, "time", line)?,
                    by: domain_id(number(&f, "by", line)?, line)?,
                    vm: domain_id(number(&f, "vm", line)?, line)?,
                    op: text(&f, "op", line)?,
                    ipa: number(&f, "ipa", line)?,
                    pages: number(&f, "pages", line)?,
                    pa,
                    code: text(&f, "code", line)?
                        .parse()
                        .map_err(|_| DumpError(format!("code in {line:?}")))?,
                });
            }
            "end" => {
                let expected = number(&f, "lines", line)?;
                if expected != *lines {
                    return Err(DumpError(format!(
                        "the dump says {expected} lines, {lines} arrived"
                    )));
                }
                if let Some((dump, _)) = current.take() {
                    dumps.push(dump);
                }
                continue;
            }
            other => return Err(DumpError(format!("unknown dump line kind {other:?}"))),
        }
        *lines += 1;
    }
    Ok(dumps)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use super::*;

    /// A small clean dump: a VMM (0) that shares one page with its VM (1), which owns two.
    pub(crate) const CLEAN: &str = "\
FS|hypervisor|dump begin at=call time=100 base=0x42000000 frames=16 domains=2 conversions=2 logged=2
FS|hypervisor|dump domain id=0 name=vmm kind=pd protected=0
FS|hypervisor|dump domain id=1 name=guest kind=vm protected=1
FS|hypervisor|dump frames pa=0x42000000 count=2 state=owned owner=1 rights=rwx borrowers=-
FS|hypervisor|dump frames pa=0x42002000 count=1 state=shared owner=1 rights=rwx borrowers=0:rw
FS|hypervisor|dump frames pa=0x42003000 count=1 state=owned owner=0 rights=rw borrowers=-
FS|hypervisor|dump frames pa=0x42004000 count=12 state=free owner=- rights=- borrowers=-
FS|hypervisor|dump map domain=0 ipa=0x20002000 pa=0x42002000 pages=1 state=shared-borrowed rights=rw memory=normal
FS|hypervisor|dump map domain=0 ipa=0x200000 pa=0x42003000 pages=1 state=owned rights=rw memory=normal
FS|hypervisor|dump map domain=0 ipa=0x9000000 pa=0x9000000 pages=1 state=passthrough rights=rw memory=device
FS|hypervisor|dump map domain=1 ipa=0x40000000 pa=0x42000000 pages=2 state=owned rights=rwx memory=normal
FS|hypervisor|dump map domain=1 ipa=0x40002000 pa=0x42002000 pages=1 state=shared-owned rights=rwx memory=normal
FS|hypervisor|dump conversion seq=1 time=50 by=0 vm=1 op=donate ipa=0x40000000 pages=3 pa=0x42000000 code=0
FS|hypervisor|dump conversion seq=2 time=90 by=1 vm=1 op=share ipa=0x40002000 pages=1 pa=0x42002000 code=0
FS|hypervisor|dump end lines=13
";

    #[test]
    fn a_dump_parses_line_by_line() {
        let dumps = parse(CLEAN).unwrap();
        assert_eq!(dumps.len(), 1);
        let dump = &dumps[0];
        assert_eq!(
            (dump.base, dump.frames, dump.conversions),
            (0x4200_0000, 16, 2)
        );
        assert_eq!(dump.domains.len(), 2);
        assert_eq!(dump.frame_runs.len(), 4);
        assert_eq!(dump.frame_runs[1].borrowers, vec![(0, "rw".to_owned())]);
        assert_eq!(dump.maps.len(), 5);
        assert_eq!(dump.log.len(), 2);
        assert_eq!(dump.log[1].op, "share");
    }

    #[test]
    fn a_truncated_or_garbled_dump_is_refused() {
        let short = CLEAN.replace("lines=13", "lines=14");
        assert!(parse(&short).is_err());
        let garbled = CLEAN.replace("pages=2 state=owned", "pages=x state=owned");
        assert!(parse(&garbled).is_err());
        let unfinished: String = CLEAN.lines().take(5).map(|l| format!("{l}\n")).collect();
        assert_eq!(parse(&unfinished).unwrap(), Vec::new());
    }
}
