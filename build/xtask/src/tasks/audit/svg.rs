//! The auditor's two pictures of a dump, as plain SVG text:
//!
//! - [`holdings`]: who holds which frame. One row per domain; one column per run of frames
//!   that are not free (gaps between runs are marked). A solid box is the original capability
//!   (the owner), a hatched box a derived one (a borrower); the colour is the frame's state and
//!   the letters its rights. Below the chart, every domain's stage-2 mappings as ranges.
//! - [`timeline`]: the logged conversions, frames against time. One row per range of frames a
//!   conversion named; each accepted conversion starts a band coloured by the state it leaves
//!   the frames in; a refused one is a red cross on its row.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::dump::{Dump, FrameRun};

const PAGE: u64 = 4096;
/// The counter's frequency on QEMU `virt` (DESIGN.md 9).
const COUNTER_HZ: f64 = 62_500_000.0;
const FONT: &str = "font-family=\"DejaVu Sans, Arial, sans-serif\"";

/// The colour and legend text of a frame state.
fn state_colour(state: &str) -> (&'static str, &'static str) {
    match state {
        "owned" => ("#4e79a7", "owned (exclusive)"),
        "shared" => ("#59a14f", "shared"),
        "lent" => ("#f28e2b", "lent"),
        _ => ("#bab0ac", "free"),
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn header(out: &mut String, width: u64, height: u64, title: &str) {
    let _ = writeln!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" {FONT} font-size=\"12\">"
    );
    let _ = writeln!(
        out,
        "<rect width=\"{width}\" height=\"{height}\" fill=\"white\"/>"
    );
    let _ = writeln!(
        out,
        "<text x=\"16\" y=\"26\" font-size=\"17\" font-weight=\"bold\">{}</text>",
        escape(title)
    );
}

/// The "who holds which frame" picture.
pub fn holdings(dump: &Dump) -> String {
    let runs: Vec<&FrameRun> = dump
        .frame_runs
        .iter()
        .filter(|run| run.state != "free")
        .collect();
    let free: u64 = dump
        .frame_runs
        .iter()
        .filter(|run| run.state == "free")
        .map(|run| run.count)
        .sum();
    let label_width = 170;
    let row_height = 46;
    let top = 92;
    // Column widths grow with the run's length, slowly, so one page stays readable next to 512.
    let widths: Vec<u64> = runs
        .iter()
        .map(|run| 46 + 12 * u64::from(64 - run.count.leading_zeros()))
        .collect();
    let gap = 14;
    let chart_width: u64 = widths.iter().sum::<u64>() + gap * runs.len() as u64;
    let maps_top = top + row_height * dump.domains.len() as u64 + 120;
    let width = (label_width + chart_width + 40).max(900);
    let height = maps_top + 22 * (dump.maps.len() as u64 + dump.domains.len() as u64) + 60;
    let mut out = String::new();
    header(
        &mut out,
        width,
        height,
        &format!(
            "Who holds which frame ({} dump at {:.3} s; {} frames tracked, {} of them free)",
            dump.at,
            dump.time as f64 / COUNTER_HZ,
            dump.frames,
            free
        ),
    );
    // Legend.
    let _ = writeln!(
        out,
        "<defs><pattern id=\"hatch\" width=\"8\" height=\"8\" patternUnits=\"userSpaceOnUse\" patternTransform=\"rotate(45)\"><rect width=\"8\" height=\"8\" fill=\"white\"/><rect width=\"4\" height=\"8\" fill=\"#59a14f\"/></pattern></defs>"
    );
    let mut x = 16;
    for state in ["owned", "shared", "lent"] {
        let (colour, text) = state_colour(state);
        let _ = writeln!(
            out,
            "<rect x=\"{x}\" y=\"40\" width=\"14\" height=\"14\" fill=\"{colour}\"/><text x=\"{}\" y=\"52\">{text}</text>",
            x + 20
        );
        x += 150;
    }
    let _ = writeln!(
        out,
        "<rect x=\"{x}\" y=\"40\" width=\"14\" height=\"14\" fill=\"url(#hatch)\" stroke=\"#333\"/><text x=\"{}\" y=\"52\">hatched: borrowed (derived capability); solid: owner (original capability); letters: rights</text>",
        x + 20
    );
    let _ = writeln!(
        out,
        "<text x=\"16\" y=\"74\" fill=\"#555\">Columns: runs of frames in physical-address order (free frames left out); widths grow with the run's length. \u{22ef} marks a gap in physical addresses.</text>"
    );
    // Rows.
    for (row, domain) in dump.domains.iter().enumerate() {
        let y = top + row_height * row as u64;
        let kind = if domain.kind == "vm" {
            if domain.protected {
                "protected VM"
            } else {
                "VM"
            }
        } else {
            "PD"
        };
        let _ = writeln!(
            out,
            "<g id=\"domain-{}\"><rect x=\"8\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{}\"/><text x=\"16\" y=\"{}\" font-weight=\"bold\">{}</text><text x=\"16\" y=\"{}\" fill=\"#555\">{kind}, id {}</text></g>",
            domain.id,
            y,
            label_width + chart_width,
            row_height - 4,
            if row % 2 == 0 { "#f5f5f5" } else { "#ffffff" },
            y + 18,
            escape(&domain.name),
            y + 34,
            domain.id
        );
    }
    let mut x = label_width;
    let mut previous_end = None;
    for (run, width) in runs.iter().zip(&widths) {
        if previous_end.is_some_and(|end| end != run.pa) {
            let _ = writeln!(
                out,
                "<text x=\"{}\" y=\"{}\" fill=\"#888\" font-size=\"16\">\u{22ef}</text>",
                x - gap + 1,
                top + 24
            );
        }
        previous_end = Some(run.pa + run.count * PAGE);
        let (colour, _) = state_colour(&run.state);
        for (row, domain) in dump.domains.iter().enumerate() {
            let y = top + row_height * row as u64 + 4;
            let borrowed = run.borrowers.iter().find(|(id, _)| *id == domain.id);
            let (fill, rights) = if run.owner == Some(domain.id) {
                (colour.to_owned(), run.rights.as_str())
            } else if let Some((_, rights)) = borrowed {
                ("url(#hatch)".to_owned(), rights.as_str())
            } else {
                continue;
            };
            let role = if borrowed.is_some() {
                "borrower"
            } else {
                "owner"
            };
            // Letters on stripes need a white backing to be read.
            let backing = if borrowed.is_some() {
                format!(
                    "<rect x=\"{}\" y=\"{}\" width=\"30\" height=\"16\" rx=\"3\" fill=\"white\"/>",
                    x + width / 2 - 15,
                    y + 8
                )
            } else {
                String::new()
            };
            let _ = writeln!(
                out,
                "<g class=\"hold\" data-domain=\"{}\" data-pa=\"{:#x}\" data-role=\"{role}\"><rect x=\"{x}\" y=\"{y}\" width=\"{width}\" height=\"{}\" fill=\"{fill}\" stroke=\"#333\"/>{backing}<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-weight=\"bold\" fill=\"{}\">{}</text></g>",
                domain.id,
                run.pa,
                row_height - 12,
                x + width / 2,
                y + 21,
                if borrowed.is_some() { "#000" } else { "#fff" },
                escape(rights)
            );
        }
        // The column's address and size, written downwards under the rows.
        let y = top + row_height * dump.domains.len() as u64 + 8;
        let _ = writeln!(
            out,
            "<text x=\"{}\" y=\"{y}\" transform=\"rotate(60 {} {y})\" font-size=\"11\">{:#x} \u{d7}{}</text>",
            x + 4,
            x + 4,
            run.pa,
            run.count
        );
        x += width + gap;
    }
    // Mappings, per domain.
    let _ = writeln!(
        out,
        "<text x=\"16\" y=\"{}\" font-size=\"15\" font-weight=\"bold\">Stage-2 mappings (IPA range \u{2192} frames, pages, state, rights)</text>",
        maps_top - 10
    );
    let mut y = maps_top + 10;
    for domain in &dump.domains {
        let _ = writeln!(
            out,
            "<text x=\"16\" y=\"{y}\" font-weight=\"bold\">{}</text>",
            escape(&domain.name)
        );
        y += 22;
        for map in dump.maps.iter().filter(|map| map.domain == domain.id) {
            let end = map.ipa + map.pages * PAGE;
            let _ = writeln!(
                out,
                "<text class=\"map\" data-domain=\"{}\" data-ipa=\"{:#x}\" x=\"40\" y=\"{y}\" xml:space=\"preserve\" font-family=\"DejaVu Sans Mono, monospace\">{:#012x}..{:#012x} \u{2192} {:#x}  {:>4} pages  {:<16} {:<4} {}</text>",
                map.domain, map.ipa, map.ipa, end, map.pa, map.pages, map.state, map.rights, map.memory
            );
            y += 22;
        }
    }
    out.push_str("</svg>\n");
    out
}

/// The state an accepted operation leaves its frames in, with its colour.
fn state_after(op: &str) -> (&'static str, &'static str) {
    match op {
        "donate" | "unshare" => ("guest private", "#4e79a7"),
        "share" | "share-with-guest" => ("shared", "#59a14f"),
        "lend" => ("lent to the guest", "#f28e2b"),
        "relinquish" | "teardown" => ("back to the VMM, zeroed", "#b07aa1"),
        _ => ("back to the VMM", "#9c9c9c"),
    }
}

/// The "conversions over time" picture.
pub fn timeline(dump: &Dump) -> String {
    let log = &dump.log;
    // Rows: the ranges of frames accepted conversions named, by first frame.
    let mut rows: BTreeMap<u64, u64> = BTreeMap::new();
    for entry in log.iter().filter(|entry| entry.code == 0) {
        if let Some(pa) = entry.pa {
            let pages = entry.pages.clamp(1, 512);
            let row = rows.entry(pa).or_insert(pages);
            *row = (*row).max(pages);
        }
    }
    let row_index: BTreeMap<u64, usize> = rows.keys().enumerate().map(|(i, pa)| (*pa, i)).collect();
    let left = 220;
    let top = 116;
    let row_height = 18;
    let plot_width = 900;
    let height = top + row_height * (rows.len() as u64 + 1) + 100;
    let width = left + plot_width + 40;
    let start = log.first().map_or(0, |entry| entry.time);
    let end = dump.time.max(start + 1);
    let x_of = |time: u64| left + (time.saturating_sub(start)) * plot_width / (end - start);
    let mut out = String::new();
    header(
        &mut out,
        width,
        height,
        &format!(
            "Conversions over time: the last {} of {} requests ({} dump)",
            log.len(),
            dump.conversions,
            dump.at
        ),
    );
    let mut x = 16;
    for op in ["unshare", "share", "lend", "relinquish", "reclaim"] {
        let (text, colour) = state_after(op);
        let _ = writeln!(
            out,
            "<rect x=\"{x}\" y=\"40\" width=\"14\" height=\"14\" fill=\"{colour}\"/><text x=\"{}\" y=\"52\">{text}</text>",
            x + 20
        );
        x += 190;
    }
    let _ = writeln!(
        out,
        "<text x=\"16\" y=\"76\" fill=\"#555\">Rows: the frames each accepted request named (first frame \u{d7} pages). A band starts at an accepted conversion that named the whole row</text><text x=\"16\" y=\"92\" fill=\"#555\">(or a teardown) and lasts until the next; <tspan fill=\"#d62728\" font-weight=\"bold\">\u{d7}</tspan> is a refused request, on the row of its first frame. Grey hatching: before the log.</text>"
    );
    let _ = writeln!(
        out,
        "<defs><pattern id=\"before\" width=\"6\" height=\"6\" patternUnits=\"userSpaceOnUse\" patternTransform=\"rotate(45)\"><rect width=\"6\" height=\"6\" fill=\"#fff\"/><rect width=\"2\" height=\"6\" fill=\"#ddd\"/></pattern></defs>"
    );
    for (pa, pages) in &rows {
        let row = row_index[pa];
        let y = top + row_height * row as u64;
        let _ = writeln!(
            out,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\" font-family=\"DejaVu Sans Mono, monospace\" font-size=\"11\">{pa:#x} \u{d7}{pages}</text>",
            left - 8,
            y + 13
        );
        let _ = writeln!(
            out,
            "<rect x=\"{left}\" y=\"{y}\" width=\"{plot_width}\" height=\"{}\" fill=\"url(#before)\"/>",
            row_height - 2
        );
        // Bands: each accepted conversion on this row (or a teardown of its VM) until the next.
        let row_end = pa + pages * PAGE;
        // A conversion changes this row when it named all of the row's frames.
        let covers = |entry: &&super::dump::Conversion| {
            entry.pa.is_some_and(|first| {
                first <= *pa && first + entry.pages.clamp(1, 512) * PAGE >= row_end
            })
        };
        let changes: Vec<(u64, &str)> = log
            .iter()
            .filter(|entry| entry.code == 0)
            .filter(|entry| covers(entry) || entry.op == "teardown")
            .map(|entry| (entry.time, entry.op.as_str()))
            .collect();
        for (index, (time, op)) in changes.iter().enumerate() {
            let until = changes.get(index + 1).map_or(end, |(next, _)| *next);
            let (_, colour) = state_after(op);
            let x0 = x_of(*time);
            let x1 = x_of(until).max(x0 + 2);
            let _ = writeln!(
                out,
                "<rect x=\"{x0}\" y=\"{y}\" width=\"{}\" height=\"{}\" fill=\"{colour}\"/>",
                x1 - x0,
                row_height - 2
            );
        }
    }
    // Refused requests: a cross on their row, or on the last row when they named no frame.
    let refused_row = rows.len();
    let y_refused = top + row_height * refused_row as u64;
    let _ = writeln!(
        out,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"end\" font-size=\"11\">refused, on no row</text>",
        left - 8,
        y_refused + 13
    );
    for entry in log.iter().filter(|entry| entry.code != 0) {
        // The row whose frames include the request's first frame.
        let row = entry
            .pa
            .and_then(|pa| {
                rows.iter()
                    .find(|(first, pages)| **first <= pa && pa < **first + **pages * PAGE)
                    .map(|(first, _)| row_index[first])
            })
            .unwrap_or(refused_row);
        let y = top + row_height * row as u64 + 12;
        let _ = writeln!(
            out,
            "<text class=\"refused\" x=\"{}\" y=\"{y}\" text-anchor=\"middle\" fill=\"#d62728\" font-weight=\"bold\">\u{d7}</text>",
            x_of(entry.time)
        );
    }
    // Time axis: counter ticks, and instructions under -icount shift=0 (16 per tick).
    let axis = top + row_height * (rows.len() as u64 + 1) + 10;
    let _ = writeln!(
        out,
        "<line x1=\"{left}\" y1=\"{axis}\" x2=\"{}\" y2=\"{axis}\" stroke=\"#333\"/>",
        left + plot_width
    );
    for step in 0..=4 {
        let time = start + (end - start) * step / 4;
        let x = x_of(time);
        let _ = writeln!(
            out,
            "<line x1=\"{x}\" y1=\"{axis}\" x2=\"{x}\" y2=\"{}\" stroke=\"#333\"/><text x=\"{x}\" y=\"{}\" text-anchor=\"middle\" font-size=\"11\">{:.3} s</text><text x=\"{x}\" y=\"{}\" text-anchor=\"middle\" font-size=\"10\" fill=\"#777\">{time}</text>",
            axis + 5,
            axis + 18,
            time as f64 / COUNTER_HZ,
            axis + 31
        );
    }
    let _ = writeln!(
        out,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"#555\">time since boot (grey: the counter at 62.5 MHz; \u{d7}16 = instructions under -icount shift=0)</text>",
        left + plot_width / 2,
        axis + 52
    );
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::dump::{parse, tests::CLEAN};
    use super::*;

    #[test]
    fn every_domain_and_every_mapped_range_appears_in_the_holdings() {
        let dump = &parse(CLEAN).unwrap()[0];
        let svg = holdings(dump);
        for domain in &dump.domains {
            assert!(
                svg.contains(&format!("id=\"domain-{}\"", domain.id)),
                "{}",
                domain.name
            );
            assert!(svg.contains(&format!(">{}</text>", domain.name)));
        }
        for map in &dump.maps {
            assert!(
                svg.contains(&format!(
                    "data-domain=\"{}\" data-ipa=\"{:#x}\"",
                    map.domain, map.ipa
                )),
                "{map:?}"
            );
        }
        // The VMM borrows the shared frame (hatched); the guest owns it (solid).
        assert!(svg.contains("data-domain=\"0\" data-pa=\"0x42002000\" data-role=\"borrower\""));
        assert!(svg.contains("data-domain=\"1\" data-pa=\"0x42002000\" data-role=\"owner\""));
        assert_eq!(svg.matches("<svg").count(), 1);
        assert!(svg.ends_with("</svg>\n"));
    }

    #[test]
    fn the_timeline_has_a_row_per_accepted_range_and_marks_refusals() {
        let refused = CLEAN.replace("pa=0x42002000 code=0", "pa=0x42002000 code=-3");
        let dump = &parse(&refused).unwrap()[0];
        let svg = timeline(dump);
        assert!(svg.contains("0x42000000 \u{d7}3"));
        // The refused share makes no row of its own: its cross is on the donated range's row.
        assert!(!svg.contains("0x42002000 \u{d7}1"));
        assert_eq!(svg.matches("class=\"refused\"").count(), 1);
    }
}
