//! The evaluation picture: confusion-matrix heat map and threshold sweep, as SVG.
//!
//! [`render`] draws one self-contained SVG document (no scripts, no external references, only
//! generic font families) that travels with a registered model as `evaluation.svg`:
//!
//! * left, the confusion matrix as a heat map: rows are the actual labels, columns the
//!   predicted ones, each cell shows its count and is coloured by its share of the row (so a
//!   rare label's mistakes are as visible as a frequent one's);
//! * right, the threshold sweep: precision, recall and coverage against the confidence
//!   threshold, with the recommended threshold marked.
//!
//! Label ids are user data: every piece of text is escaped for XML, characters XML cannot carry
//! (control characters, `U+FFFE`/`U+FFFF`) and bidirectional overrides are replaced, and long
//! ids are clipped on the axes with the full id (up to [`MAX_TITLE_CHARS`]) in a `<title>`. The
//! output is deterministic and bounded: at most [`MAX_DRAWN_LABELS`] labels and
//! [`MAX_DRAWN_THRESHOLDS`] thresholds are drawn, and the picture says so when it leaves some
//! out. The function is pure and never panics, whatever the report holds (ragged matrices,
//! non-finite numbers, no examples).

use std::fmt::Write as _;

use crate::evaluation::{EvaluationReport, MAX_SWEEP_POINTS, ThresholdMetrics};
use crate::text::truncate_chars;

/// Most labels drawn in the confusion matrix (the first ones, in the report's label order).
pub const MAX_DRAWN_LABELS: usize = 50;

/// Most thresholds drawn in the sweep (the first ones, in the report's order).
pub const MAX_DRAWN_THRESHOLDS: usize = MAX_SWEEP_POINTS;

/// A label id on an axis is clipped to this many characters (plus an ellipsis).
pub const MAX_AXIS_LABEL_CHARS: usize = 16;

/// A label id in a `<title>` is clipped to this many characters (twice the longest id the
/// training-data validation accepts, so a valid id is always shown whole).
pub const MAX_TITLE_CHARS: usize = 256;

const FONT: &str = "sans-serif";
const MARGIN: f64 = 20.0;
/// Height of the header (title and notes) above both panels.
const HEADER: f64 = 64.0;
/// Room for the row labels (left of the matrix) and the column labels (above it).
const LABEL_SPACE: f64 = 130.0;
/// Room for the vertical "actual" axis title, left of the row labels.
const AXIS_TITLE_SPACE: f64 = 22.0;
/// The matrix aims at this width; cells stay between the two sizes below.
const MATRIX_TARGET: f64 = 480.0;
const MIN_CELL: f64 = 14.0;
const MAX_CELL: f64 = 56.0;
const GAP: f64 = 48.0;
/// The sweep's plot area.
const PLOT_W: f64 = 380.0;
const PLOT_H: f64 = 260.0;
/// Around the plot area: tick labels and axis titles (left, below), the legend (below).
const PLOT_LEFT: f64 = 52.0;
const PLOT_TOP: f64 = 36.0;
const PLOT_BOTTOM: f64 = 100.0;
/// Points are marked with a dot when the sweep is at most this long.
const MAX_DOTTED_POINTS: usize = 30;
/// Distance between legend entries.
const LEGEND_STEP: f64 = 95.0;

/// The heat map runs from this colour (share 0) to the next (share 1).
const COLD: (f64, f64, f64) = (247.0, 251.0, 255.0);
const HOT: (f64, f64, f64) = (8.0, 48.0, 107.0);

/// One of the sweep's curves: name, colour, dash pattern (so it reads without colour too).
struct Series {
    name: &'static str,
    colour: &'static str,
    dash: Option<&'static str>,
    value: fn(&ThresholdMetrics) -> f64,
}

impl Series {
    /// ` stroke-dasharray="…"` for a dashed series, else nothing.
    fn dash_attribute(&self) -> String {
        self.dash
            .map(|d| format!(r#" stroke-dasharray="{d}""#))
            .unwrap_or_default()
    }
}

const SERIES: [Series; 3] = [
    Series {
        name: "precision",
        colour: "#1f77b4",
        dash: None,
        value: |t| t.precision,
    },
    Series {
        name: "recall",
        colour: "#d62728",
        dash: Some("7 4"),
        value: |t| t.recall,
    },
    Series {
        name: "coverage",
        colour: "#2ca02c",
        dash: Some("2 3"),
        value: |t| t.coverage,
    },
];

const RECOMMENDED_COLOUR: &str = "#ff7f0e";

/// The evaluation picture of `report` as an SVG document. See the module documentation.
pub fn render(report: &EvaluationReport) -> String {
    let labels = &report.confusion_matrix.labels;
    let drawn_labels = labels.len().min(MAX_DRAWN_LABELS);
    let cell = if drawn_labels == 0 {
        MAX_CELL
    } else {
        (MATRIX_TARGET / drawn_labels as f64).clamp(MIN_CELL, MAX_CELL)
    };
    let matrix_x = MARGIN + AXIS_TITLE_SPACE + LABEL_SPACE;
    let matrix_y = HEADER + LABEL_SPACE;
    let matrix_side = cell * drawn_labels.max(1) as f64;
    let sweep_x = matrix_x + matrix_side.max(PLOT_W / 2.0) + GAP;
    let width = sweep_x + PLOT_LEFT + PLOT_W + MARGIN;
    let height = (matrix_y + matrix_side).max(HEADER + PLOT_TOP + PLOT_H + PLOT_BOTTOM) + MARGIN;

    let mut svg = String::with_capacity(64 * 1024);
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="{FONT}" font-size="12">"#,
        w = num(width),
        h = num(height),
    );
    svg.push_str("<title>Evaluation: confusion matrix and threshold sweep</title>");
    let _ = write!(
        svg,
        r##"<rect x="0" y="0" width="{}" height="{}" fill="#ffffff"/>"##,
        num(width),
        num(height)
    );
    header(&mut svg, report, drawn_labels);
    matrix(&mut svg, report, drawn_labels, matrix_x, matrix_y, cell);
    sweep(&mut svg, report, sweep_x + PLOT_LEFT, HEADER + PLOT_TOP);
    svg.push_str("</svg>\n");
    svg
}

fn header(svg: &mut String, report: &EvaluationReport, drawn_labels: usize) {
    let _ = write!(
        svg,
        r#"<text x="{MARGIN}" y="24" font-size="16" font-weight="bold">Evaluation on {} examples: accuracy {}, macro F1 {}</text>"#,
        report.total,
        percent(report.accuracy),
        fixed3(report.macro_average.f1),
    );
    let mut notes = Vec::new();
    let labels = report.confusion_matrix.labels.len();
    if drawn_labels < labels {
        notes.push(format!(
            "Showing the first {drawn_labels} of {labels} labels; shares are of each whole row."
        ));
    }
    if report.thresholds.len() > MAX_DRAWN_THRESHOLDS {
        notes.push(format!(
            "Showing the first {MAX_DRAWN_THRESHOLDS} of {} thresholds.",
            report.thresholds.len()
        ));
    }
    if notes.is_empty() {
        notes.push("Cells: count; colour: share of the actual label's examples.".to_string());
    }
    let _ = write!(
        svg,
        r##"<text x="{MARGIN}" y="44" fill="#444444">{}</text>"##,
        escape(&notes.join(" "))
    );
}

fn matrix(svg: &mut String, report: &EvaluationReport, n: usize, x0: f64, y0: f64, cell: f64) {
    let cm = &report.confusion_matrix;
    svg.push_str(r#"<g class="confusion-matrix">"#);
    if n == 0 {
        let _ = write!(
            svg,
            r##"<text x="{}" y="{}" fill="#444444">No labels: nothing to draw.</text></g>"##,
            num(x0),
            num(y0 + 20.0)
        );
        return;
    }
    let side = cell * n as f64;
    // Axis titles.
    let _ = write!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="middle" font-weight="bold">predicted</text>"#,
        num(x0 + side / 2.0),
        num(y0 - LABEL_SPACE + 4.0),
    );
    let ax = MARGIN + 14.0;
    let ay = y0 + side / 2.0;
    let _ = write!(
        svg,
        r#"<text x="{x}" y="{y}" text-anchor="middle" font-weight="bold" transform="rotate(-90 {x} {y})">actual</text>"#,
        x = num(ax),
        y = num(ay),
    );
    matrix_labels(svg, &cm.labels[..n], x0, y0, cell);
    matrix_cells(svg, &cm.matrix, n, x0, y0, cell);
    let _ = write!(
        svg,
        r##"<rect x="{}" y="{}" width="{s}" height="{s}" fill="none" stroke="#808080"/></g>"##,
        num(x0),
        num(y0),
        s = num(side),
    );
}

/// The row labels (left of the matrix) and the column labels (above it, rotated).
fn matrix_labels(svg: &mut String, labels: &[String], x0: f64, y0: f64, cell: f64) {
    let label_size = (cell * 0.7).min(12.0);
    for (i, id) in labels.iter().enumerate() {
        let centre = i as f64 * cell + cell / 2.0;
        // Row label, right-aligned against the matrix.
        let _ = write!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="end" dominant-baseline="middle" font-size="{}">{}</text>"#,
            num(x0 - 6.0),
            num(y0 + centre),
            num(label_size),
            label_text(id),
        );
        // Column label, rotated to read upwards from the matrix.
        let (cx, cy) = (x0 + centre, y0 - 6.0);
        let _ = write!(
            svg,
            r#"<text x="{x}" y="{y}" dominant-baseline="middle" font-size="{}" transform="rotate(-90 {x} {y})">{}</text>"#,
            num(label_size),
            label_text(id),
            x = num(cx),
            y = num(cy),
        );
    }
}

/// The cells: each count, coloured by its share of the row.
fn matrix_cells(svg: &mut String, matrix: &[Vec<u64>], n: usize, x0: f64, y0: f64, cell: f64) {
    for a in 0..n {
        let row = matrix.get(a).map(Vec::as_slice).unwrap_or_default();
        let row_total = row.iter().fold(0u64, |acc, &c| acc.saturating_add(c));
        for p in 0..n {
            let count = row.get(p).copied().unwrap_or(0);
            let share = if row_total == 0 {
                0.0
            } else {
                (count as f64 / row_total as f64).clamp(0.0, 1.0)
            };
            let (x, y) = (x0 + p as f64 * cell, y0 + a as f64 * cell);
            let _ = write!(
                svg,
                r##"<rect x="{}" y="{}" width="{c}" height="{c}" fill="{}" stroke="#d0d0d0" stroke-width="0.5"/>"##,
                num(x),
                num(y),
                heat(share),
                c = num(cell),
            );
            let digits = count.to_string();
            let size = (cell * 0.42)
                .min(cell * 0.9 / (0.62 * digits.len() as f64))
                .min(12.0);
            let ink = if share > 0.5 { "#ffffff" } else { "#222222" };
            let _ = write!(
                svg,
                r#"<text x="{}" y="{}" text-anchor="middle" dominant-baseline="central" font-size="{}" fill="{ink}">{digits}</text>"#,
                num(x + cell / 2.0),
                num(y + cell / 2.0),
                num(size),
            );
        }
    }
}

/// The sweep's plot area: its top-left corner and the thresholds' range on the x axis.
struct Plot {
    x0: f64,
    y0: f64,
    lo: f64,
    hi: f64,
}

impl Plot {
    /// The x coordinate of threshold `t`.
    fn x(&self, t: f64) -> f64 {
        self.x0 + (t.clamp(self.lo, self.hi) - self.lo) / (self.hi - self.lo) * PLOT_W
    }

    /// The y coordinate of a value in `[0, 1]`.
    fn y(&self, v: f64) -> f64 {
        self.y0 + (1.0 - v.clamp(0.0, 1.0)) * PLOT_H
    }
}

fn sweep(svg: &mut String, report: &EvaluationReport, x0: f64, y0: f64) {
    let points: Vec<&ThresholdMetrics> = report
        .thresholds
        .iter()
        .take(MAX_DRAWN_THRESHOLDS)
        .filter(|t| t.threshold.is_finite())
        .collect();
    let (lo, hi) = x_domain(&points);
    let plot = Plot { x0, y0, lo, hi };
    svg.push_str(r#"<g class="threshold-sweep">"#);
    let _ = write!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="middle" font-weight="bold">threshold sweep</text>"#,
        num(x0 + PLOT_W / 2.0),
        num(y0 - 20.0),
    );
    sweep_axes(svg, &plot);
    if points.is_empty() {
        let _ = write!(
            svg,
            r##"<text x="{}" y="{}" text-anchor="middle" fill="#444444">No thresholds in the sweep.</text>"##,
            num(x0 + PLOT_W / 2.0),
            num(y0 + PLOT_H / 2.0),
        );
    }
    sweep_curves(svg, &plot, &points);
    sweep_recommendation(svg, &plot, report);
    sweep_legend(svg, &plot);
}

/// The grid, the ticks with their labels, the axes and the x axis's title.
fn sweep_axes(svg: &mut String, plot: &Plot) {
    // Grid, ticks and tick labels.
    for i in 0..=5 {
        let v = f64::from(i) / 5.0;
        let y = plot.y(v);
        let _ = write!(
            svg,
            r##"<line x1="{}" y1="{y}" x2="{}" y2="{y}" stroke="#e6e6e6"/><line x1="{}" y1="{y}" x2="{}" y2="{y}" stroke="#404040"/><text x="{}" y="{y}" text-anchor="end" dominant-baseline="middle" font-size="11">{}</text>"##,
            num(plot.x0),
            num(plot.x0 + PLOT_W),
            num(plot.x0 - 5.0),
            num(plot.x0),
            num(plot.x0 - 8.0),
            fixed1(v),
            y = num(y),
        );
    }
    let step = if plot.hi - plot.lo > 0.2 + 1e-9 {
        0.1
    } else {
        0.05
    };
    let ticks = ((plot.hi - plot.lo) / step).round() as usize;
    for i in 0..=ticks {
        let t = plot.lo + i as f64 * step;
        let x = plot.x(t);
        let _ = write!(
            svg,
            r##"<line x1="{x}" y1="{}" x2="{x}" y2="{}" stroke="#e6e6e6"/><line x1="{x}" y1="{}" x2="{x}" y2="{}" stroke="#404040"/><text x="{x}" y="{}" text-anchor="middle" font-size="11">{}</text>"##,
            num(plot.y0),
            num(plot.y0 + PLOT_H),
            num(plot.y0 + PLOT_H),
            num(plot.y0 + PLOT_H + 5.0),
            num(plot.y0 + PLOT_H + 18.0),
            fixed2(t),
            x = num(x),
        );
    }
    // Axes and their titles.
    let _ = write!(
        svg,
        r##"<path d="M{l} {t} V{b} H{r}" fill="none" stroke="#404040"/><text x="{}" y="{}" text-anchor="middle">confidence threshold</text>"##,
        num(plot.x0 + PLOT_W / 2.0),
        num(plot.y0 + PLOT_H + 36.0),
        l = num(plot.x0),
        t = num(plot.y0),
        b = num(plot.y0 + PLOT_H),
        r = num(plot.x0 + PLOT_W),
    );
}

/// The curves: a point whose value is not a finite number is left out.
fn sweep_curves(svg: &mut String, plot: &Plot, points: &[&ThresholdMetrics]) {
    for s in &SERIES {
        let finite: Vec<(f64, f64)> = points
            .iter()
            .map(|t| (t.threshold, (s.value)(t)))
            .filter(|(_, v)| v.is_finite())
            .collect();
        if finite.is_empty() {
            continue;
        }
        let dash = s.dash_attribute();
        let _ = write!(
            svg,
            r#"<polyline class="{}" fill="none" stroke="{}" stroke-width="2"{dash} points=""#,
            s.name, s.colour
        );
        for (i, (t, v)) in finite.iter().enumerate() {
            if i > 0 {
                svg.push(' ');
            }
            let _ = write!(svg, "{},{}", num(plot.x(*t)), num(plot.y(*v)));
        }
        svg.push_str(r#""/>"#);
        if finite.len() <= MAX_DOTTED_POINTS {
            for (t, v) in &finite {
                let _ = write!(
                    svg,
                    r#"<circle cx="{}" cy="{}" r="2.5" fill="{}"/>"#,
                    num(plot.x(*t)),
                    num(plot.y(*v)),
                    s.colour
                );
            }
        }
    }
}

/// The recommended threshold, or why there is none.
fn sweep_recommendation(svg: &mut String, plot: &Plot, report: &EvaluationReport) {
    let rec_y = plot.y0 + PLOT_H + 76.0;
    match &report.recommendation {
        Some(r) if r.threshold.is_finite() => {
            let x = plot.x(r.threshold);
            // The value beside the line, on the side with more room.
            let (tx, anchor) = if x < plot.x0 + PLOT_W / 2.0 {
                (x + 4.0, "start")
            } else {
                (x - 4.0, "end")
            };
            let _ = write!(
                svg,
                r#"<line class="recommended" x1="{x}" y1="{}" x2="{x}" y2="{}" stroke="{RECOMMENDED_COLOUR}" stroke-width="2" stroke-dasharray="4 3"/><text x="{}" y="{}" text-anchor="{anchor}" font-size="11" fill="{RECOMMENDED_COLOUR}">{}</text>"#,
                num(plot.y0),
                num(plot.y0 + PLOT_H),
                num(tx),
                num(plot.y0 - 4.0),
                fixed2(r.threshold),
                x = num(x),
            );
            let _ = write!(
                svg,
                r#"<text x="{}" y="{}" font-size="11">recommended threshold {} ({})</text><text x="{}" y="{}" font-size="11">precision {}, F1 {}, coverage {}</text>"#,
                num(plot.x0),
                num(rec_y),
                fixed3(r.threshold),
                r.objective,
                num(plot.x0),
                num(rec_y + 14.0),
                fixed3(r.precision),
                fixed3(r.f1),
                fixed3(r.coverage),
            );
        }
        _ => {
            let _ = write!(
                svg,
                r##"<text x="{}" y="{}" font-size="11" fill="#444444">No recommended threshold.</text>"##,
                num(plot.x0),
                num(rec_y),
            );
        }
    }
}

/// The legend, below the axis title.
fn sweep_legend(svg: &mut String, plot: &Plot) {
    let ly = plot.y0 + PLOT_H + 56.0;
    for (i, s) in SERIES.iter().enumerate() {
        let lx = plot.x0 + i as f64 * LEGEND_STEP;
        let dash = s.dash_attribute();
        let _ = write!(
            svg,
            r#"<line x1="{}" y1="{y}" x2="{}" y2="{y}" stroke="{}" stroke-width="2"{dash}/><text x="{}" y="{y}" dominant-baseline="middle" font-size="11">{}</text>"#,
            num(lx),
            num(lx + 24.0),
            s.colour,
            num(lx + 30.0),
            s.name,
            y = num(ly),
        );
    }
    let lx = plot.x0 + 3.0 * LEGEND_STEP;
    let _ = write!(
        svg,
        r#"<line x1="{x}" y1="{}" x2="{x}" y2="{}" stroke="{RECOMMENDED_COLOUR}" stroke-width="2" stroke-dasharray="4 3"/><text x="{}" y="{}" dominant-baseline="middle" font-size="11">recommended</text></g>"#,
        num(ly - 8.0),
        num(ly + 8.0),
        num(lx + 6.0),
        num(ly),
        x = num(lx),
    );
}

/// The thresholds' range widened to tenths (at least one tenth wide), inside `[0, 1]`.
fn x_domain(points: &[&ThresholdMetrics]) -> (f64, f64) {
    let mut lo = f64::INFINITY;
    let mut hi = f64::NEG_INFINITY;
    for t in points {
        let v = t.threshold.clamp(0.0, 1.0);
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !(lo.is_finite() && hi.is_finite()) {
        return (0.0, 1.0);
    }
    // The small allowance keeps 0.3 (stored as 0.30000000000000004) at 0.3.
    let mut lo = ((lo * 10.0 + 1e-6).floor() / 10.0).max(0.0);
    let mut hi = ((hi * 10.0 - 1e-6).ceil() / 10.0).min(1.0);
    if hi - lo < 0.1 - 1e-9 {
        if hi + 0.1 <= 1.0 {
            hi = lo + 0.1;
        } else {
            lo = hi - 0.1;
        }
    }
    (lo, hi)
}

/// The heat-map colour of a row share in `[0, 1]`.
fn heat(share: f64) -> String {
    let mix = |a: f64, b: f64| (a + (b - a) * share).round().clamp(0.0, 255.0) as u8;
    format!(
        "#{:02x}{:02x}{:02x}",
        mix(COLD.0, HOT.0),
        mix(COLD.1, HOT.1),
        mix(COLD.2, HOT.2)
    )
}

/// A label id on an axis: the clipped, escaped text with the full id in a `<title>`.
fn label_text(id: &str) -> String {
    let shown = if id.is_empty() {
        "(empty)".to_string()
    } else {
        truncate_chars(id, MAX_AXIS_LABEL_CHARS)
    };
    format!(
        "<title>{}</title>{}",
        escape(&truncate_chars(id, MAX_TITLE_CHARS)),
        escape(&shown)
    )
}

/// `s` safe as XML character data and as an attribute value: markup characters become
/// references; characters XML 1.0 cannot carry (control characters, `U+FFFE`, `U+FFFF`) and
/// bidirectional controls (which could make one id read as another) become `U+FFFD`.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control()
                || matches!(c, '\u{FFFE}' | '\u{FFFF}')
                || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}') =>
            {
                out.push('\u{FFFD}')
            }
            c => out.push(c),
        }
    }
    out
}

/// A coordinate with one decimal (deterministic, no exponent); non-finite values become 0 and
/// the magnitude is capped (no coordinate of the layout comes near it).
fn num(v: f64) -> String {
    if !v.is_finite() {
        return "0".to_string();
    }
    let v = v.clamp(-1e7, 1e7);
    let s = format!("{v:.1}");
    match s.strip_suffix(".0") {
        Some(whole) if whole != "-0" => whole.to_string(),
        Some(_) => "0".to_string(),
        None => s,
    }
}

fn fixed(v: f64, decimals: usize) -> String {
    if v.is_finite() {
        format!("{v:.decimals$}")
    } else {
        "n/a".to_string()
    }
}

fn fixed1(v: f64) -> String {
    fixed(v, 1)
}

fn fixed2(v: f64) -> String {
    fixed(v, 2)
}

fn fixed3(v: f64) -> String {
    fixed(v, 3)
}

fn percent(v: f64) -> String {
    if v.is_finite() {
        format!("{:.1}%", v * 100.0)
    } else {
        "n/a".to_string()
    }
}

#[cfg(test)]
mod tests;
