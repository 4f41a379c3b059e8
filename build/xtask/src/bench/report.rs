//! The results of `cargo xtask bench`: the table, one script-readable line per measured figure,
//! and `bench.json` (its schema is in the README, "Benchmarks").
//!
//! Ratios are Frameshift's figure divided by the anchor (or, in the conversion column, a
//! conversion's figure divided by the bounce figure of the same size): below 1 is cheaper.

use std::fmt::Write as _;

use serde::Serialize;

use super::catalogue::{Figure, Group};
use super::collect::Measurement;

/// `bench.json`'s `schema` value; bump it when a field changes meaning.
pub const SCHEMA: &str = "frameshift-bench/1";

/// Printed beside every conversion figure (issue 11's rule).
pub const TLBI_NOTE: &str = "icount counts a TLBI as one instruction; on hardware the broadcast \
                             invalidation makes a conversion relatively dearer";

/// How figures are counted, for the record.
pub const COUNTING_NOTE: &str = "instructions under QEMU -icount shift=0,sleep=off (one \
                                 instruction per virtual nanosecond); loop figures are \
                                 per operation, rounded to an integer, over 256..4096 \
                                 operations (a guest's: 1..4096, each loop starting on a \
                                 counter edge; under 4 M instructions a loop); boot figures are counter values since reset, \
                                 multiples of the 16-instruction tick";

/// One figure with what was measured for it.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// The figure.
    pub figure: Figure,
    /// Its measurement, if it was measured.
    pub measured: Option<Measurement>,
    /// For a conversion figure: the bounce figure of the same size, if measured.
    pub bounce: Option<u64>,
}

impl Row {
    /// Instructions, if measured.
    pub fn instructions(&self) -> Option<u64> {
        self.measured.as_ref().map(|m| m.instructions)
    }

    /// Frameshift / anchor.
    pub fn ratio(&self) -> Option<f64> {
        ratio(self.instructions()?, self.figure.anchor?)
    }

    /// Conversion / bounce of the same size.
    pub fn conversion_vs_bounce(&self) -> Option<f64> {
        ratio(self.instructions()?, self.bounce?)
    }
}

/// `value / base`, `None` for a zero base.
pub fn ratio(value: u64, base: u64) -> Option<f64> {
    (base != 0).then(|| value as f64 / base as f64)
}

/// A ratio as printed: two decimals, or more for a small one (0.0021).
pub fn format_ratio(ratio: f64) -> String {
    if ratio != 0.0 && ratio.abs() < 0.1 {
        format!("{ratio:.2e}")
    } else {
        format!("{ratio:.2}")
    }
}

/// Pairs every figure with its measurement and, for a conversion, the bounce of its size.
pub fn rows(figures: &[Figure], measurements: &[Measurement]) -> Vec<Row> {
    let measured = |name: &str| measurements.iter().find(|m| m.figure == name).cloned();
    let bounce_of = |pages: u64| {
        figures
            .iter()
            .find(|f| f.group == Group::Bounce && f.pages == Some(pages))
            .and_then(|f| measured(&f.name))
            .map(|m| m.instructions)
    };
    figures
        .iter()
        .map(|figure| Row {
            figure: figure.clone(),
            measured: measured(&figure.name),
            bounce: match (figure.group, figure.pages) {
                (Group::Conversion, Some(pages)) => bounce_of(pages),
                _ => None,
            },
        })
        .collect()
}

/// One line per figure: `bench <name> instructions=<n>`, then ` anchor=<a> ratio=<r>` where
/// there is an anchor, and ` bounce=<b> vs_bounce=<r>` for a conversion whose bounce was
/// measured; `bench <name> not yet measured: needs <what>` for a figure that waits for
/// something ([`Figure::needs`]).
pub fn script_lines(rows: &[Row]) -> Vec<String> {
    rows.iter()
        .filter_map(|row| {
            let Some(instructions) = row.instructions() else {
                return row
                    .figure
                    .needs
                    .map(|needs| format!("bench {} {}", row.figure.name, not_yet_measured(needs)));
            };
            let mut line = format!("bench {} instructions={instructions}", row.figure.name);
            if let (Some(anchor), Some(ratio)) = (row.figure.anchor, row.ratio()) {
                let _ = write!(line, " anchor={anchor} ratio={}", format_ratio(ratio));
            }
            if let (Some(bounce), Some(ratio)) = (row.bounce, row.conversion_vs_bounce()) {
                let _ = write!(line, " bounce={bounce} vs_bounce={}", format_ratio(ratio));
            }
            Some(line)
        })
        .collect()
}

/// What is printed for a figure that waits for `needs`.
pub fn not_yet_measured(needs: &str) -> String {
    format!("not yet measured: needs {needs}")
}

/// A whole number with thousands separators: 43,893.
pub fn thousands(value: u64) -> String {
    let digits = value.to_string();
    let mut text = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            text.push(',');
        }
        text.push(digit);
    }
    text
}

/// The table: a section per group, a row per figure; conversion rows are marked `†` and the
/// TLBI note follows.
pub fn table(rows: &[Row]) -> String {
    let mut text = String::new();
    let _ = writeln!(
        text,
        "{:<28} {:>16} {:>7} {:>7} {:>11}  what",
        "figure", "Frameshift", "anchor", "ratio", "conv/bounce"
    );
    let mut group = None;
    for row in rows {
        if group != Some(row.figure.group) {
            group = Some(row.figure.group);
            let _ = writeln!(text, "-- {} --", row.figure.group.heading());
        }
        let mut name = row.figure.name.clone();
        if row.figure.group == Group::Conversion {
            name.push_str(" †");
        }
        let frameshift = row
            .instructions()
            .map_or_else(|| "not yet measured".to_owned(), thousands);
        let dash = || "-".to_owned();
        let anchor = row.figure.anchor.map_or_else(dash, thousands);
        let ratio = row.ratio().map_or_else(dash, format_ratio);
        let versus = row.conversion_vs_bounce().map_or_else(dash, format_ratio);
        let waits = match (row.instructions(), row.figure.needs) {
            (None, Some(needs)) => format!(" ({})", not_yet_measured(needs)),
            _ => String::new(),
        };
        let _ = writeln!(
            text,
            "{name:<28} {frameshift:>16} {anchor:>7} {ratio:>7} {versus:>11}  {}{waits}",
            row.figure.description
        );
    }
    let _ = writeln!(text, "† {TLBI_NOTE}.");
    let _ = writeln!(
        text,
        "anchor: seL4 16 + Microkit 2.3 measured the same way (issue 11); ratio = Frameshift / anchor."
    );
    let _ = write!(text, "Counting: {COUNTING_NOTE}.");
    text
}

/// How the figures were taken, for `bench.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Setup {
    /// `qemu-system-aarch64 --version`'s number.
    pub qemu: String,
    /// The `-machine` argument.
    pub machine: String,
    /// The `-cpu` argument.
    pub cpu: String,
    /// The `-m` argument.
    pub memory: String,
    /// The `-icount` argument.
    pub icount: String,
}

#[derive(Serialize)]
struct JsonReport<'a> {
    schema: &'static str,
    unit: &'static str,
    setup: &'a Setup,
    notes: [&'static str; 2],
    plot: Option<&'a str>,
    figures: Vec<JsonFigure<'a>>,
}

#[derive(Serialize)]
struct JsonFigure<'a> {
    name: &'a str,
    description: &'a str,
    group: &'static str,
    status: &'static str,
    instructions: Option<u64>,
    runs: Vec<u64>,
    iterations: Option<u64>,
    /// What a figure not measured waits for.
    needs: Option<&'static str>,
    system: Option<String>,
    idle_pds: Option<u32>,
    pages: Option<u64>,
    anchor: Option<u64>,
    ratio: Option<f64>,
    bounce: Option<u64>,
    conversion_vs_bounce: Option<f64>,
}

/// Rounded to 4 decimals, so the file does not pretend to 17 digits.
fn rounded(value: Option<f64>) -> Option<f64> {
    value.map(|value| (value * 10_000.0).round() / 10_000.0)
}

/// `bench.json`: every figure, measured or not; `plot` is the SVG file's name if one was
/// written.
pub fn json(rows: &[Row], setup: &Setup, plot: Option<&str>) -> String {
    let figures = rows
        .iter()
        .map(|row| JsonFigure {
            name: &row.figure.name,
            description: &row.figure.description,
            group: row.figure.group.word(),
            status: if row.measured.is_some() {
                "measured"
            } else {
                "not-measured"
            },
            needs: row.figure.needs.filter(|_| row.measured.is_none()),
            instructions: row.instructions(),
            runs: row
                .measured
                .as_ref()
                .map(|m| m.runs.clone())
                .unwrap_or_default(),
            iterations: row.measured.as_ref().and_then(|m| m.iterations),
            system: row
                .measured
                .as_ref()
                .map(|m| m.system.display().to_string()),
            idle_pds: row.figure.idle_pds,
            pages: row.figure.pages,
            anchor: row.figure.anchor,
            ratio: rounded(row.ratio()),
            bounce: row.bounce,
            conversion_vs_bounce: rounded(row.conversion_vs_bounce()),
        })
        .collect();
    let report = JsonReport {
        schema: SCHEMA,
        unit: "instructions",
        setup,
        notes: [COUNTING_NOTE, TLBI_NOTE],
        plot,
        figures,
    };
    // Serialising plain structs of strings and numbers cannot fail.
    serde_json::to_string_pretty(&report).unwrap_or_default() + "\n"
}

#[cfg(test)]
// A failed expectation in a test is the test failing, which is what panicking reports.
#[allow(clippy::expect_used, clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::bench::catalogue::figures;
    use std::path::PathBuf;

    fn measurement(figure: &str, instructions: u64) -> Measurement {
        Measurement {
            figure: figure.to_owned(),
            instructions,
            runs: vec![instructions, instructions],
            iterations: Some(1024),
            system: PathBuf::from("tests/systems/bench/x.xml"),
        }
    }

    fn sample() -> Vec<Row> {
        rows(
            &figures(),
            &[
                measurement("ppc_passive_mr0", 2381),
                measurement("null_call", 695),
                measurement("guest_share_pages16", 3000),
                measurement("guest_bounce_pages16", 30_000),
            ],
        )
    }

    #[test]
    fn lines_carry_the_anchor_and_ratio_where_there_is_one() {
        let (lines, waiting): (Vec<String>, Vec<String>) = script_lines(&sample())
            .into_iter()
            .partition(|line| line.contains(" instructions="));
        // Every figure has a source now: none waits for anything.
        assert_eq!(waiting, Vec::<String>::new());
        assert_eq!(
            lines,
            [
                "bench null_call instructions=695",
                "bench ppc_passive_mr0 instructions=2381 anchor=733 ratio=3.25",
                "bench guest_share_pages16 instructions=3000 bounce=30000 vs_bounce=0.10",
                "bench guest_bounce_pages16 instructions=30000",
            ]
        );
    }

    #[test]
    fn the_table_lists_every_figure_and_marks_conversions() {
        let table = table(&sample());
        let line = |name: &str| {
            table
                .lines()
                .find(|line| line.starts_with(&format!("{name} ")))
                .unwrap_or_else(|| panic!("{name} missing from\n{table}"))
                .to_owned()
        };
        assert!(
            line("ppc_passive_mr0").contains("2,381     733    3.25"),
            "{table}"
        );
        assert!(
            line("ppc_active_mr0").contains("not yet measured   2,486"),
            "{table}"
        );
        assert!(
            line("guest_null_hvc").contains("not yet measured   2,126")
                && !line("guest_null_hvc").contains("needs"),
            "{table}"
        );
        assert!(
            line("guest_null_hvc_idle48").contains("not yet measured   2,126"),
            "{table}"
        );
        assert!(line("guest_share_pages16 †").contains("0.10"), "{table}");
        assert!(
            line("guest_share_pages1 †").contains("not yet measured"),
            "{table}"
        );
        assert!(table.contains(&format!("† {TLBI_NOTE}")), "{table}");
        assert_eq!(table.matches("-- ").count(), 5, "{table}");
        for figure in figures() {
            assert!(
                table.contains(&format!("{} ", figure.name)),
                "{}",
                figure.name
            );
        }
    }

    #[test]
    fn ratios_and_numbers_print_readably() {
        assert_eq!(format_ratio(3.248), "3.25");
        assert_eq!(format_ratio(0.0021), "2.10e-3");
        assert_eq!(format_ratio(0.0), "0.00");
        assert_eq!(thousands(43_893), "43,893");
        assert_eq!(thousands(219_000_000), "219,000,000");
        assert_eq!(thousands(733), "733");
        assert_eq!(ratio(1, 0), None);
    }

    #[test]
    fn json_has_every_figure_with_its_status() {
        let setup = Setup {
            qemu: "7.2.22".to_owned(),
            machine: "virt".to_owned(),
            cpu: "cortex-a57".to_owned(),
            memory: "512M".to_owned(),
            icount: "shift=0,sleep=off".to_owned(),
        };
        let text = json(&sample(), &setup, None);
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["schema"], SCHEMA);
        assert_eq!(value["unit"], "instructions");
        assert_eq!(value["setup"]["icount"], "shift=0,sleep=off");
        assert!(value["plot"].is_null());
        let figures = value["figures"].as_array().unwrap();
        assert_eq!(figures.len(), crate::bench::figures().len());
        let find = |name: &str| figures.iter().find(|f| f["name"] == name).unwrap();
        let ppc = find("ppc_passive_mr0");
        assert_eq!(ppc["status"], "measured");
        assert_eq!(ppc["instructions"], 2381);
        assert_eq!(ppc["runs"], serde_json::json!([2381, 2381]));
        assert_eq!(ppc["anchor"], 733);
        assert_eq!(ppc["ratio"], 3.2483);
        assert_eq!(ppc["idle_pds"], 0);
        assert_eq!(ppc["group"], "primitive");
        let guest = find("guest_stage2_fault_idle48");
        assert_eq!(guest["status"], "not-measured");
        assert!(guest["instructions"].is_null());
        assert_eq!(guest["anchor"], 4367);
        assert_eq!(guest["idle_pds"], 48);
        let share = find("guest_share_pages16");
        assert_eq!(share["pages"], 16);
        assert_eq!(share["bounce"], 30000);
        assert_eq!(share["conversion_vs_bounce"], 0.1);
    }
}
