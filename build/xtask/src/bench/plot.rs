//! The SVG plot of conversion cost against bounce cost over the range sizes: instructions per
//! 4 KiB page (log scale) against the range size (1 to 512 pages, log scale), one line for
//! share + unshare in place and one for copy in + copy out through a shared buffer.
//!
//! It is written only when both are measured for at least two sizes (the bench guest measures
//! all ten, bench/guest.xml).

use std::fmt::Write as _;

use super::catalogue::{size_name, Group};
use super::report::{Row, TLBI_NOTE};

/// The plot's file name next to `bench.json`.
pub const FILE_NAME: &str = "conversion_vs_bounce.svg";

/// One range size with both of its figures (instructions per round trip, the whole range).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Point {
    /// Range size in pages.
    pub pages: u64,
    /// Share + unshare in place.
    pub conversion: u64,
    /// Copy in + copy out.
    pub bounce: u64,
}

/// The sizes whose conversion and bounce figures were both measured, smallest first.
pub fn points(rows: &[Row]) -> Vec<Point> {
    let mut points: Vec<Point> = rows
        .iter()
        .filter(|row| row.figure.group == Group::Conversion)
        .filter_map(|row| {
            Some(Point {
                pages: row.figure.pages?,
                conversion: row.instructions()?,
                bounce: row.bounce?,
            })
        })
        .collect();
    points.sort_by_key(|point| point.pages);
    points
}

const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 500.0;
const LEFT: f64 = 90.0;
const RIGHT: f64 = 30.0;
const TOP: f64 = 60.0;
const BOTTOM: f64 = 110.0;
const CONVERSION_COLOUR: &str = "#1f77b4";
const BOUNCE_COLOUR: &str = "#d62728";

/// The plot as an SVG document. Refused (with why) for fewer than two sizes, a size or figure
/// of zero, or a size given twice: there would be nothing, or nothing honest, to draw.
pub fn svg(points: &[Point]) -> Result<String, String> {
    if points.len() < 2 {
        return Err(format!(
            "{} sizes with both figures; a plot needs at least 2",
            points.len()
        ));
    }
    if points
        .iter()
        .any(|p| p.pages == 0 || p.conversion == 0 || p.bounce == 0)
    {
        return Err("a size or figure of zero cannot go on a log scale".to_owned());
    }
    if points.windows(2).any(|pair| pair[0].pages >= pair[1].pages) {
        return Err("sizes must be given once each, smallest first".to_owned());
    }
    let per_page = |value: u64, pages: u64| value as f64 / pages as f64;
    let values = points
        .iter()
        .flat_map(|p| [per_page(p.conversion, p.pages), per_page(p.bounce, p.pages)]);
    let (low, high) = values.fold((f64::MAX, f64::MIN), |(low, high), value| {
        (low.min(value), high.max(value))
    });
    // Whole decades around the data.
    let decade_low = low.log10().floor();
    let decade_high = high.log10().ceil().max(decade_low + 1.0);
    let pages_low = (points[0].pages as f64).log2();
    let pages_high = (points[points.len() - 1].pages as f64).log2();
    let plot_width = WIDTH - LEFT - RIGHT;
    let plot_height = HEIGHT - TOP - BOTTOM;
    let x = |pages: u64| {
        LEFT + ((pages as f64).log2() - pages_low) / (pages_high - pages_low) * plot_width
    };
    let y = |value: f64| {
        TOP + plot_height - (value.log10() - decade_low) / (decade_high - decade_low) * plot_height
    };

    let mut text = String::new();
    let _ = writeln!(
        text,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" \
         viewBox=\"0 0 {WIDTH} {HEIGHT}\" font-family=\"sans-serif\" font-size=\"12\">"
    );
    let _ = writeln!(
        text,
        "<rect width=\"{WIDTH}\" height=\"{HEIGHT}\" fill=\"white\"/>"
    );
    let _ = writeln!(
        text,
        "<text x=\"{}\" y=\"28\" text-anchor=\"middle\" font-size=\"16\">Guest memory \
         conversion in place vs bounce buffer</text>",
        WIDTH / 2.0
    );
    // Axes, decade grid lines and labels.
    let _ = writeln!(
        text,
        "<g stroke=\"black\"><line x1=\"{LEFT}\" y1=\"{0}\" x2=\"{1}\" y2=\"{0}\"/>\
         <line x1=\"{LEFT}\" y1=\"{TOP}\" x2=\"{LEFT}\" y2=\"{0}\"/></g>",
        TOP + plot_height,
        LEFT + plot_width
    );
    let mut decade = decade_low;
    while decade <= decade_high {
        let value = 10f64.powf(decade);
        let at = y(value);
        let _ = writeln!(
            text,
            "<line class=\"grid\" x1=\"{LEFT}\" y1=\"{at:.1}\" x2=\"{:.1}\" y2=\"{at:.1}\" \
             stroke=\"#dddddd\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            LEFT + plot_width,
            LEFT - 8.0,
            at + 4.0,
            decade_label(decade)
        );
        decade += 1.0;
    }
    for point in points {
        let at = x(point.pages);
        let _ = writeln!(
            text,
            "<text x=\"{at:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            TOP + plot_height + 18.0,
            size_name(point.pages)
        );
    }
    let _ = writeln!(
        text,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">range size</text>",
        LEFT + plot_width / 2.0,
        TOP + plot_height + 40.0
    );
    let _ = writeln!(
        text,
        "<text transform=\"translate(22 {:.1}) rotate(-90)\" text-anchor=\"middle\">\
         instructions per 4 KiB page (round trip)</text>",
        TOP + plot_height / 2.0
    );
    // The two series.
    for (class, colour, dash, value) in [
        (
            "conversion",
            CONVERSION_COLOUR,
            "",
            (|p: &Point| p.conversion) as fn(&Point) -> u64,
        ),
        (
            "bounce",
            BOUNCE_COLOUR,
            " stroke-dasharray=\"6 4\"",
            |p: &Point| p.bounce,
        ),
    ] {
        let coordinates: Vec<String> = points
            .iter()
            .map(|p| format!("{:.1},{:.1}", x(p.pages), y(per_page(value(p), p.pages))))
            .collect();
        let _ = writeln!(
            text,
            "<polyline class=\"{class}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\"{dash} \
             points=\"{}\"/>",
            coordinates.join(" ")
        );
        for p in points {
            let _ = writeln!(
                text,
                "<circle class=\"{class}\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{colour}\">\
                 <title>{}: {} instructions ({:.1} per page)</title></circle>",
                x(p.pages),
                y(per_page(value(p), p.pages)),
                size_name(p.pages),
                value(p),
                per_page(value(p), p.pages)
            );
        }
    }
    // Legend and the TLBI note.
    let legend_x = LEFT + plot_width - 250.0;
    let _ = writeln!(
        text,
        "<g><line x1=\"{legend_x}\" y1=\"{0}\" x2=\"{1}\" y2=\"{0}\" stroke=\"{CONVERSION_COLOUR}\" \
         stroke-width=\"2\"/><text x=\"{2}\" y=\"{3}\">share + unshare in place †</text>\
         <line x1=\"{legend_x}\" y1=\"{4}\" x2=\"{1}\" y2=\"{4}\" stroke=\"{BOUNCE_COLOUR}\" \
         stroke-width=\"2\" stroke-dasharray=\"6 4\"/><text x=\"{2}\" y=\"{5}\">copy in + copy \
         out (bounce buffer)</text></g>",
        TOP + 14.0,
        legend_x + 30.0,
        legend_x + 38.0,
        TOP + 18.0,
        TOP + 34.0,
        TOP + 38.0
    );
    let _ = writeln!(
        text,
        "<text x=\"{LEFT}\" y=\"{:.1}\" font-size=\"11\">† {TLBI_NOTE}.</text>",
        HEIGHT - 20.0
    );
    text.push_str("</svg>\n");
    Ok(text)
}

/// A decade as an axis label: 1, 10, 100, 1k, 10k, 100k, 1M, ...
fn decade_label(decade: f64) -> String {
    let power = decade as i32;
    match power {
        ..=-1 => format!("1e{power}"),
        0..=2 => format!("{}", 10u64.pow(power as u32)),
        3..=5 => format!("{}k", 10u64.pow(power as u32 - 3)),
        6..=8 => format!("{}M", 10u64.pow(power as u32 - 6)),
        _ => format!("1e{power}"),
    }
}

#[cfg(test)]
// A failed expectation in a test is the test failing, which is what panicking reports.
#[allow(clippy::expect_used, clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::bench::catalogue::{figures, SWEEP_PAGES};
    use crate::bench::collect::Measurement;
    use crate::bench::report::rows;
    use std::path::PathBuf;

    /// Synthetic data shaped like the expected result: a conversion costs a fixed trap plus a
    /// little per page, a bounce copies 8 KiB per page.
    fn synthetic() -> Vec<Point> {
        SWEEP_PAGES
            .iter()
            .map(|&pages| Point {
                pages,
                conversion: 1_500 + 40 * pages,
                bounce: 1_100 * pages,
            })
            .collect()
    }

    fn series<'a>(document: &'a roxmltree::Document<'a>, class: &str) -> Vec<(f64, f64)> {
        let line = document
            .descendants()
            .find(|node| node.has_tag_name("polyline") && node.attribute("class") == Some(class))
            .unwrap();
        line.attribute("points")
            .unwrap()
            .split(' ')
            .map(|pair| {
                let (x, y) = pair.split_once(',').unwrap();
                (x.parse().unwrap(), y.parse().unwrap())
            })
            .collect()
    }

    #[test]
    fn synthetic_data_plots_as_two_series_over_every_size() {
        let text = svg(&synthetic()).unwrap();
        let document = roxmltree::Document::parse(&text).unwrap();
        assert!(document.root_element().has_tag_name("svg"));
        let conversion = series(&document, "conversion");
        let bounce = series(&document, "bounce");
        assert_eq!((conversion.len(), bounce.len()), (10, 10));
        // Sizes go left to right, evenly on the log scale.
        assert!(conversion.windows(2).all(|pair| pair[0].0 < pair[1].0));
        let step = conversion[1].0 - conversion[0].0;
        assert!(conversion
            .windows(2)
            .all(|pair| (pair[1].0 - pair[0].0 - step).abs() < 0.2));
        // SVG y grows downwards: a conversion's cost per page falls as the range grows, a
        // bounce's stays at 1,100 per page; at one page the bounce is the cheaper (drawn lower),
        // at 512 the conversion.
        assert!(conversion.windows(2).all(|pair| pair[0].1 < pair[1].1));
        assert!(bounce
            .windows(2)
            .all(|pair| (pair[0].1 - pair[1].1).abs() < 0.2));
        assert!(bounce[0].1 > conversion[0].1 && bounce[9].1 < conversion[9].1);
        for label in ["4 KiB", "64 KiB", "2 MiB", "1k", "range size", TLBI_NOTE] {
            assert!(text.contains(label), "{label} missing");
        }
        assert_eq!(
            document
                .descendants()
                .filter(|n| n.has_tag_name("circle"))
                .count(),
            20
        );
    }

    #[test]
    fn nothing_honest_to_draw_is_refused() {
        let mut points = synthetic();
        assert!(svg(&points[..1]).is_err());
        assert!(svg(&[]).is_err());
        points[3].conversion = 0;
        assert!(svg(&points).is_err());
        let mut points = synthetic();
        points.swap(0, 1);
        assert!(svg(&points).is_err());
    }

    #[test]
    fn points_are_the_sizes_with_both_figures() {
        let measured = |figure: String, instructions: u64| Measurement {
            figure,
            instructions,
            runs: vec![instructions; 2],
            iterations: Some(256),
            system: PathBuf::from("x.xml"),
        };
        let measurements = vec![
            measured("guest_share_pages4".to_owned(), 2_000),
            measured("guest_bounce_pages4".to_owned(), 4_400),
            measured("guest_share_pages1".to_owned(), 1_600),
            measured("guest_bounce_pages1".to_owned(), 1_100),
            // A conversion without its bounce is not a point.
            measured("guest_share_pages8".to_owned(), 2_100),
        ];
        let points = points(&rows(&figures(), &measurements));
        assert_eq!(
            points,
            [
                Point {
                    pages: 1,
                    conversion: 1_600,
                    bounce: 1_100
                },
                Point {
                    pages: 4,
                    conversion: 2_000,
                    bounce: 4_400
                },
            ]
        );
        assert!(svg(&points).is_ok());
        assert!(super::points(&rows(&figures(), &[])).is_empty());
    }

    #[test]
    fn decades_read_as_numbers() {
        assert_eq!(decade_label(0.0), "1");
        assert_eq!(decade_label(2.0), "100");
        assert_eq!(decade_label(4.0), "10k");
        assert_eq!(decade_label(6.0), "1M");
        assert_eq!(decade_label(9.0), "1e9");
    }
}
