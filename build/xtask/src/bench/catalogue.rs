//! Every figure `cargo xtask bench` reports (issue 11), in table order, with its seL4 + Microkit
//! anchor, and the benchmark systems that measure it.
//!
//! A figure with a [`Source`] is measured: a PD or guest of that system prints its `bench` line.
//! A figure without one says what it [`needs`](Figure::needs) and is reported as "not yet
//! measured: needs ...". The guest figures come from the bench guest (`bench_guest.bin` under
//! `bench_vmm.elf`): bench/guest.xml for the round trips alone and the conversion and bounce
//! sweep, bench/guest_round_trips.xml (the same guest with one block of RAM, which times the
//! round trips only) with [`IDLE_PDS`] idle PDs for the crowded round trips.

/// The benchmark system of the guest figures (bench/guest.xml).
pub const GUEST_SYSTEM: &str = "guest";
/// The benchmark system of the guest round trips with idle PDs (bench/guest_round_trips.xml).
pub const GUEST_ROUND_TRIP_SYSTEM: &str = "guest_round_trips";

/// Idle PDs added to a system for the "with a crowd" variant of each primitive.
pub const IDLE_PDS: u32 = 48;
/// PDs in the large boot system: the boot PD and 50 idle ones.
pub const BOOT_PDS: u32 = 51;
/// Range sizes, in 4 KiB pages, of the conversion and bounce sweep: 4 KiB to 2 MiB.
pub const SWEEP_PAGES: [u64; 10] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512];
/// The bench guest's `bench` line names of the conversion sweep, one per [`SWEEP_PAGES`] size.
const SHARE_LINES: [&str; 10] = [
    "guest_share_pages1",
    "guest_share_pages2",
    "guest_share_pages4",
    "guest_share_pages8",
    "guest_share_pages16",
    "guest_share_pages32",
    "guest_share_pages64",
    "guest_share_pages128",
    "guest_share_pages256",
    "guest_share_pages512",
];
/// The same, of the bounce sweep.
const BOUNCE_LINES: [&str; 10] = [
    "guest_bounce_pages1",
    "guest_bounce_pages2",
    "guest_bounce_pages4",
    "guest_bounce_pages8",
    "guest_bounce_pages16",
    "guest_bounce_pages32",
    "guest_bounce_pages64",
    "guest_bounce_pages128",
    "guest_bounce_pages256",
    "guest_bounce_pages512",
];
/// Measurements of each looped figure in one run (`frameshift_pd_programs::bench::REPETITIONS`);
/// a boot figure is measured once per boot, and its system is booted this many times.
pub const REPETITIONS: usize = 2;

/// seL4 16 + Microkit 2.3 in QEMU 7.2 with the same icount setting (issue 11): a PPC round trip
/// to a passive server (seL4's fastpath).
pub const ANCHOR_PPC_PASSIVE: u64 = 733;
/// The same, to an active server.
pub const ANCHOR_PPC_ACTIVE: u64 = 2_486;
/// The same, a notification ping-pong round trip.
pub const ANCHOR_NOTIFY: u64 = 2_237;
/// The same, a guest HVC to its VMM and the VMM's reply.
pub const ANCHOR_GUEST_HVC: u64 = 2_126;
/// The same, a guest stage-2 fault to its VMM's `fault()` and the reply.
pub const ANCHOR_GUEST_FAULT: u64 = 4_367;

/// What kind of figure, which decides its table section and how it is measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Group {
    /// A Microkit primitive, timed in a loop by a PD.
    Primitive,
    /// Instructions from reset to the first PD's `init`, read once per boot.
    Boot,
    /// A guest round trip through its VMM.
    Guest,
    /// A guest's share + unshare round trip of a range (converted in place).
    Conversion,
    /// A copy in and a copy out of the same range through a shared buffer (the swiotlb way).
    Bounce,
}

impl Group {
    /// The word `bench.json` uses.
    pub const fn word(self) -> &'static str {
        match self {
            Self::Primitive => "primitive",
            Self::Boot => "boot",
            Self::Guest => "guest",
            Self::Conversion => "conversion",
            Self::Bounce => "bounce",
        }
    }

    /// The table's section heading.
    pub const fn heading(self) -> &'static str {
        match self {
            Self::Primitive => "Microkit primitives (instructions per round trip or call)",
            Self::Boot => "boot (instructions from reset to the first PD's init)",
            Self::Guest => "guest round trips (instructions)",
            Self::Conversion => "conversion: guest share + unshare round trip (instructions)",
            Self::Bounce => "bounce: copy in + copy out through a shared buffer (instructions)",
        }
    }
}

/// Where a measured figure comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Source {
    /// The benchmark system, `tests/systems/bench/<system>.xml`.
    pub system: &'static str,
    /// Idle PDs added to it.
    pub idle_pds: u32,
    /// The name on the PD's `bench` line.
    pub line: &'static str,
}

/// One figure of the report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Figure {
    /// The name on the report's `bench` line and in `bench.json`.
    pub name: String,
    /// What is measured, for a reader.
    pub description: String,
    /// Its section.
    pub group: Group,
    /// The seL4 + Microkit figure it is compared with.
    pub anchor: Option<u64>,
    /// The range size in pages (conversion and bounce figures).
    pub pages: Option<u64>,
    /// Idle PDs in the system while it is measured (primitives and guest figures).
    pub idle_pds: Option<u32>,
    /// How it is measured; `None`: not yet measured.
    pub source: Option<Source>,
    /// What a figure with no source waits for ([`NEEDS_PROTECTED_VMS`]); `None` when measured.
    pub needs: Option<&'static str>,
}

/// A primitive, measured by `line` in `system`, once alone and once with [`IDLE_PDS`] idle PDs.
fn primitive(
    figures: &mut Vec<Figure>,
    line: &'static str,
    system: &'static str,
    description: &str,
    anchor: Option<u64>,
) {
    for idle_pds in [0, IDLE_PDS] {
        figures.push(Figure {
            name: idle_name(line, idle_pds),
            description: with_idle(description, idle_pds),
            group: Group::Primitive,
            anchor,
            pages: None,
            idle_pds: Some(idle_pds),
            source: Some(Source {
                system,
                idle_pds,
                line,
            }),
            needs: None,
        });
    }
}

/// A guest round trip, measured by the bench guest alone ([`GUEST_SYSTEM`]) and with
/// [`IDLE_PDS`] idle PDs ([`GUEST_ROUND_TRIP_SYSTEM`]).
fn guest(figures: &mut Vec<Figure>, line: &'static str, description: &str, anchor: u64) {
    for idle_pds in [0, IDLE_PDS] {
        let system = if idle_pds == 0 {
            GUEST_SYSTEM
        } else {
            GUEST_ROUND_TRIP_SYSTEM
        };
        figures.push(Figure {
            name: idle_name(line, idle_pds),
            description: with_idle(description, idle_pds),
            group: Group::Guest,
            anchor: Some(anchor),
            pages: None,
            idle_pds: Some(idle_pds),
            source: Some(Source {
                system,
                idle_pds,
                line,
            }),
            needs: None,
        });
    }
}

fn idle_name(name: &str, idle_pds: u32) -> String {
    if idle_pds == 0 {
        name.to_owned()
    } else {
        format!("{name}_idle{idle_pds}")
    }
}

fn with_idle(description: &str, idle_pds: u32) -> String {
    if idle_pds == 0 {
        description.to_owned()
    } else {
        format!("{description}, with {idle_pds} idle PDs")
    }
}

/// The size of `pages` 4 KiB pages, as people say it.
pub fn size_name(pages: u64) -> String {
    let kib = pages * 4;
    if kib >= 1024 && kib.is_multiple_of(1024) {
        format!("{} MiB", kib / 1024)
    } else {
        format!("{kib} KiB")
    }
}

/// Every figure, in table order. The anchors apply to the idle-PD variants too: seL4's figures
/// do not depend on the number of PDs (a priority bitmap), which is the point of measuring them.
pub fn figures() -> Vec<Figure> {
    let mut figures = Vec::new();
    primitive(
        &mut figures,
        "null_call",
        "null",
        "null call: a PD call id the hypervisor answers NOT_SUPPORTED",
        None,
    );
    primitive(
        &mut figures,
        "ppc_passive_mr0",
        "ppc_passive",
        "PPC round trip to a passive server, 0 message registers",
        Some(ANCHOR_PPC_PASSIVE),
    );
    primitive(
        &mut figures,
        "ppc_passive_mr4",
        "ppc_passive",
        "PPC round trip to a passive server, 4 message registers",
        None,
    );
    primitive(
        &mut figures,
        "ppc_active_mr0",
        "ppc_active",
        "PPC round trip to an active server, 0 message registers",
        Some(ANCHOR_PPC_ACTIVE),
    );
    primitive(
        &mut figures,
        "ppc_active_mr4",
        "ppc_active",
        "PPC round trip to an active server, 4 message registers",
        None,
    );
    primitive(
        &mut figures,
        "notify_pingpong",
        "notify",
        "notification ping-pong round trip",
        Some(ANCHOR_NOTIFY),
    );
    for (name, idle_pds) in [("boot_1pd", 0), ("boot_51pd", BOOT_PDS - 1)] {
        figures.push(Figure {
            name: name.to_owned(),
            description: format!(
                "reset to the first PD's init, {} PD{}",
                idle_pds + 1,
                if idle_pds == 0 { "" } else { "s" }
            ),
            group: Group::Boot,
            anchor: None,
            pages: None,
            idle_pds: Some(idle_pds),
            source: Some(Source {
                system: "boot",
                idle_pds,
                line: "boot",
            }),
            needs: None,
        });
    }
    guest(
        &mut figures,
        "guest_null_hvc",
        "guest null hypercall: an HVC the hypervisor forwards, VMM fault(), reply",
        ANCHOR_GUEST_HVC,
    );
    guest(
        &mut figures,
        "guest_stage2_fault",
        "guest stage-2 fault (an emulated MMIO read), VMM fault(), reply",
        ANCHOR_GUEST_FAULT,
    );
    for (group, prefix, what, lines) in [
        (
            Group::Conversion,
            "guest_share",
            "share + unshare in place",
            &SHARE_LINES,
        ),
        (
            Group::Bounce,
            "guest_bounce",
            "copy in + copy out through a shared buffer",
            &BOUNCE_LINES,
        ),
    ] {
        for (pages, line) in SWEEP_PAGES.into_iter().zip(lines.iter().copied()) {
            let shape = match pages {
                1 => " (one page)",
                16 => " (range call)",
                512 => " (one 2 MiB block)",
                _ => "",
            };
            debug_assert_eq!(line, format!("{prefix}_pages{pages}"));
            figures.push(Figure {
                name: line.to_owned(),
                description: format!("{}{shape}: {what}", size_name(pages)),
                group,
                anchor: None,
                pages: Some(pages),
                idle_pds: None,
                source: Some(Source {
                    system: GUEST_SYSTEM,
                    idle_pds: 0,
                    line,
                }),
                needs: None,
            });
        }
    }
    figures
}

/// One benchmark system to boot: `tests/systems/bench/<system>.xml` joined by `idle_pds` idle
/// PDs, and the figures its PDs print.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BenchSystem {
    /// The base system's file stem.
    pub system: &'static str,
    /// Idle PDs added.
    pub idle_pds: u32,
    /// `(line name, figure name)` of every figure it measures.
    pub figures: Vec<(&'static str, String)>,
    /// Boot figures are read once per boot, so the system boots [`REPETITIONS`] times; loop
    /// figures are printed [`REPETITIONS`] times in one boot.
    pub boots: usize,
}

impl BenchSystem {
    /// Its name: the base system's, with `_idle<n>` when idle PDs are added.
    pub fn name(&self) -> String {
        idle_name(self.system, self.idle_pds)
    }

    /// How many times one boot prints each of its lines.
    pub fn lines_per_boot(&self) -> usize {
        REPETITIONS / self.boots
    }
}

/// The systems that measure [`figures`], in the order their first figure appears.
pub fn bench_systems() -> Vec<BenchSystem> {
    let mut systems: Vec<BenchSystem> = Vec::new();
    for figure in figures() {
        let Some(source) = figure.source else {
            continue;
        };
        let boots = if figure.group == Group::Boot {
            REPETITIONS
        } else {
            1
        };
        match systems
            .iter_mut()
            .find(|s| s.system == source.system && s.idle_pds == source.idle_pds)
        {
            Some(system) => system.figures.push((source.line, figure.name)),
            None => systems.push(BenchSystem {
                system: source.system,
                idle_pds: source.idle_pds,
                figures: vec![(source.line, figure.name)],
                boots,
            }),
        }
    }
    systems
}

#[cfg(test)]
// A failed expectation in a test is the test failing, which is what panicking reports.
#[allow(clippy::expect_used, clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn every_figure_the_issue_names_is_listed_once() {
        let figures = figures();
        let names: HashSet<&str> = figures.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names.len(), figures.len(), "duplicate figure names");
        for name in [
            "null_call",
            "null_call_idle48",
            "ppc_passive_mr0",
            "ppc_passive_mr4_idle48",
            "ppc_active_mr0_idle48",
            "notify_pingpong",
            "notify_pingpong_idle48",
            "boot_1pd",
            "boot_51pd",
            "guest_null_hvc",
            "guest_stage2_fault_idle48",
            "guest_share_pages1",
            "guest_share_pages16",
            "guest_share_pages512",
            "guest_bounce_pages512",
        ] {
            assert!(names.contains(name), "{name} missing");
        }
    }

    #[test]
    fn anchors_are_the_issues() {
        let anchor = |name: &str| {
            figures()
                .into_iter()
                .find(|f| f.name == name)
                .and_then(|f| f.anchor)
        };
        assert_eq!(anchor("ppc_passive_mr0"), Some(733));
        assert_eq!(anchor("ppc_passive_mr0_idle48"), Some(733));
        assert_eq!(anchor("ppc_active_mr0"), Some(2_486));
        assert_eq!(anchor("notify_pingpong"), Some(2_237));
        assert_eq!(anchor("guest_null_hvc"), Some(2_126));
        assert_eq!(anchor("guest_stage2_fault"), Some(4_367));
        assert_eq!(anchor("null_call"), None);
        assert_eq!(anchor("guest_share_pages1"), None);
    }

    #[test]
    fn every_figure_is_measured_and_the_guests_by_the_bench_guest() {
        for figure in figures() {
            let source = figure
                .source
                .unwrap_or_else(|| panic!("{} has no source", figure.name));
            assert_eq!(figure.needs, None, "{}", figure.name);
            let guest_side = matches!(
                figure.group,
                Group::Guest | Group::Conversion | Group::Bounce
            );
            if guest_side {
                let crowded = figure.idle_pds.unwrap_or(0) > 0;
                let system = if crowded {
                    GUEST_ROUND_TRIP_SYSTEM
                } else {
                    GUEST_SYSTEM
                };
                assert_eq!(source.system, system, "{}", figure.name);
                assert_eq!(source.idle_pds, figure.idle_pds.unwrap_or(0));
                assert!(figure.name.starts_with(source.line), "{}", figure.name);
            }
        }
    }

    #[test]
    fn the_sweep_is_the_bench_guests() {
        assert_eq!(
            SWEEP_PAGES,
            frameshift_vm_protocol::bench::SWEEP_PAGES,
            "the bench guest sweeps other sizes"
        );
        for (pages, (share, bounce)) in SWEEP_PAGES.iter().zip(SHARE_LINES.iter().zip(BOUNCE_LINES))
        {
            assert_eq!(*share, format!("guest_share_pages{pages}"));
            assert_eq!(bounce, format!("guest_bounce_pages{pages}"));
        }
    }

    #[test]
    fn systems_group_figures_and_boot_systems_boot_twice() {
        let systems = bench_systems();
        let names: Vec<String> = systems.iter().map(BenchSystem::name).collect();
        assert_eq!(
            names,
            [
                "null",
                "null_idle48",
                "ppc_passive",
                "ppc_passive_idle48",
                "ppc_active",
                "ppc_active_idle48",
                "notify",
                "notify_idle48",
                "boot",
                "boot_idle50",
                "guest",
                "guest_round_trips_idle48",
            ]
        );
        let ppc = &systems[3];
        assert_eq!(
            ppc.figures,
            [
                ("ppc_passive_mr0", "ppc_passive_mr0_idle48".to_owned()),
                ("ppc_passive_mr4", "ppc_passive_mr4_idle48".to_owned()),
            ]
        );
        assert_eq!((ppc.boots, ppc.lines_per_boot()), (1, 2));
        let boot = &systems[9];
        assert_eq!(boot.figures, [("boot", "boot_51pd".to_owned())]);
        assert_eq!((boot.boots, boot.lines_per_boot()), (2, 1));
    }

    #[test]
    fn every_system_file_exists() {
        let dir = crate::firmware::workspace_root().join("tests/systems/bench");
        for system in bench_systems() {
            let file = dir.join(format!("{}.xml", system.system));
            assert!(file.is_file(), "{} missing", file.display());
        }
    }

    #[test]
    fn sizes_read_as_people_say_them() {
        assert_eq!(size_name(1), "4 KiB");
        assert_eq!(size_name(16), "64 KiB");
        assert_eq!(size_name(512), "2 MiB");
    }
}
