//! The pages' charts, as inline SVG: measured values against their limits as horizontal
//! bars, a timeline of spans on one time axis, each figure's spread over several runs, and a
//! small bar for a table cell.

use super::{coord, el, number, text_el, with_unit, El};
use crate::criteria::{Bound, Sc};
use crate::report::Criterion;

/// Colours by verdict and status (the same as the stylesheet's).
pub fn colour(class: &str) -> &'static str {
    match class {
        "ok" | "passed" => "#2e7d32",
        "FAILED" | "failed" => "#c62828",
        "skipped" => "#c09000",
        "phase" => "#1565c0",
        "derived" => "#90a4ae",
        _ => "#9e9e9e",
    }
}

const LABEL_W: f64 = 330.0;
const BAR_W: f64 = 430.0;
const VALUE_W: f64 = 280.0;

/// Every criterion of `catalogue`, in its order: the measured value as a bar against its limit
/// (a line), coloured by its verdict; a criterion this run did not measure says so, with no bar.
pub fn criteria_bars(measured: &[Criterion], catalogue: &[Sc]) -> El {
    const ROW: f64 = 40.0;
    let height = 10.0 + ROW * catalogue.len() as f64;
    let width = LABEL_W + BAR_W + VALUE_W;
    let mut svg = svg(width, height).attr("id", "criteria-bars").attr("role", "img");
    svg.push(text_el("desc", "Each success criterion: the measured value as a bar, its limit as a dark line."));
    for (i, sc) in catalogue.iter().enumerate() {
        let y = 10.0 + ROW * i as f64;
        let mut row = el("g").class("criterion").attr("data-id", sc.id);
        let label = format!("{} {}", sc.id, sc.name);
        row.push(text(6.0, y + 14.0, &shorten(&label, 42), "start", 12.0).attr("font-weight", "600").tooltip(label.clone()));
        let side = match sc.bound {
            Bound::AtMost => "at most",
            Bound::AtLeast => "at least",
        };
        row.push(
            text(6.0, y + 29.0, &format!("limit: {side} {}", with_unit(sc.limit, sc.unit)), "start", 11.0).attr("fill", "#555"),
        );
        let x0 = LABEL_W;
        match measured.iter().find(|c| c.id == sc.id) {
            None => {
                row.push(
                    rect(x0, y + 6.0, BAR_W, 18.0, "none").attr("stroke", "#bbb").attr("stroke-dasharray", "4 3").class("no-bar"),
                );
                row.push(
                    text(x0 + BAR_W / 2.0, y + 19.0, "not measured in this run", "middle", 12.0)
                        .attr("fill", "#757575")
                        .attr("font-style", "italic"),
                );
            }
            Some(c) => {
                let top = c.limit.max(c.measured).max(0.0);
                let scale = if top > 0.0 { BAR_W / (top * 1.15) } else { 0.0 };
                let verdict = c.verdict();
                row.push(rect(x0, y + 6.0, BAR_W, 18.0, "#f1f1f1"));
                let w = (c.measured.max(0.0) * scale).max(if c.measured > 0.0 { 1.5 } else { 0.0 });
                row.push(rect(x0, y + 6.0, w, 18.0, colour(verdict)).class(format!("bar {verdict}")).tooltip(format!(
                    "{} measured {}",
                    c.id,
                    with_unit(c.measured, &c.unit)
                )));
                let lx = x0 + c.limit.max(0.0) * scale;
                row.push(line(lx, y + 2.0, lx, y + 28.0, "#222", 2.0).class("limit").tooltip(format!(
                    "{} limit {}",
                    c.id,
                    with_unit(c.limit, &c.unit)
                )));
                let said = match &c.skipped {
                    Some(_) => "skipped".to_string(),
                    None => verdict.to_string(),
                };
                let value = format!("{} — {said}", with_unit(c.measured, &c.unit));
                row.push(
                    text(x0 + BAR_W + 10.0, y + 19.0, &value, "start", 12.5)
                        .attr("fill", colour(verdict))
                        .attr("font-weight", "600"),
                );
                if let Some(reason) = &c.skipped {
                    row.push(
                        text(x0 + BAR_W + 10.0, y + 33.0, &shorten(reason, 44), "start", 10.5)
                            .attr("fill", "#555")
                            .tooltip(reason.clone()),
                    );
                }
            }
        }
        svg.push(row);
    }
    svg
}

/// One bar of a timeline: from `start` to `end` seconds, in its row.
#[derive(Debug, Clone)]
pub struct Span {
    pub row: usize,
    pub start: f64,
    pub end: f64,
    /// A class of [`colour`]: `phase`, `derived`, `passed`, `failed`, `skipped`.
    pub class: &'static str,
    pub tooltip: String,
}

/// A timeline: one labelled row each of `rows`, the spans on one axis of seconds from 0; each
/// row's text after its last span (its duration, by default the sum of its spans).
pub fn timeline(id: &str, rows: &[(String, String)], spans: &[Span]) -> El {
    const ROW: f64 = 22.0;
    const AXIS: f64 = 26.0;
    let end = spans.iter().map(|s| s.end).fold(0.0, f64::max);
    // The axis ends just past the last span (a round end could leave half of it empty).
    let top = if end > 0.0 { end * 1.03 } else { 1.0 };
    let scale = if top > 0.0 { BAR_W / top } else { 0.0 };
    let height = AXIS + ROW * rows.len() as f64 + 8.0;
    let width = LABEL_W + BAR_W + VALUE_W;
    let mut svg = svg(width, height).attr("id", id).attr("role", "img");
    svg.push(text_el("desc", "The run's timeline: each phase and scenario file as bars on one axis of seconds."));
    // The axis: ticks at round seconds.
    let step = tick_step(top);
    let mut t = 0.0;
    while t <= top + 1e-9 && step > 0.0 {
        let x = LABEL_W + t * scale;
        svg.push(line(x, AXIS - 6.0, x, height - 4.0, "#e0e0e0", 1.0));
        svg.push(text(x, AXIS - 10.0, &format!("{} s", number(t)), "middle", 10.5).attr("fill", "#555"));
        t += step;
    }
    for (i, (label, value)) in rows.iter().enumerate() {
        let y = AXIS + ROW * i as f64;
        svg.push(text(LABEL_W - 8.0, y + 15.0, &shorten(label, 46), "end", 12.0).tooltip(label.clone()));
        let last = spans.iter().filter(|s| s.row == i).map(|s| s.end).fold(0.0, f64::max);
        svg.push(text(LABEL_W + last * scale + 6.0, y + 15.0, value, "start", 11.5).attr("fill", "#333"));
    }
    for s in spans {
        let y = AXIS + ROW * s.row as f64;
        let w = ((s.end - s.start).max(0.0) * scale).max(1.0);
        svg.push(
            rect(LABEL_W + s.start * scale, y + 3.0, w, ROW - 7.0, colour(s.class))
                .class(format!("span {}", s.class))
                .attr("stroke", "#fff")
                .attr("stroke-width", "0.6")
                .tooltip(s.tooltip.clone()),
        );
    }
    svg
}

/// Every row's samples on a scale of its own (from 0 to a little over its largest): a line from
/// the smallest to the largest, a dot for each run, a tick at the median.
pub fn spread(id: &str, rows: &[(String, Vec<f64>, String)]) -> El {
    const ROW: f64 = 30.0;
    let height = 8.0 + ROW * rows.len() as f64;
    let width = LABEL_W + BAR_W + VALUE_W;
    let mut svg = svg(width, height).attr("id", id).attr("role", "img");
    svg.push(text_el("desc", "Each phase over the runs: the range, every run as a dot, the median as a tick."));
    for (i, (label, samples, unit)) in rows.iter().enumerate() {
        let y = 8.0 + ROW * i as f64;
        let mid = y + 12.0;
        let mut row = el("g").class("spread");
        row.push(text(LABEL_W - 8.0, mid + 4.0, &shorten(label, 46), "end", 12.0).tooltip(label.clone()));
        row.push(line(LABEL_W, mid, LABEL_W + BAR_W, mid, "#eeeeee", 1.0));
        let finite: Vec<f64> = samples.iter().copied().filter(|v| v.is_finite()).collect();
        if finite.is_empty() {
            row.push(
                text(LABEL_W + 4.0, mid + 4.0, "not measured", "start", 11.5)
                    .attr("fill", "#757575")
                    .attr("font-style", "italic"),
            );
            svg.push(row);
            continue;
        }
        let (min, max) = finite.iter().fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(*v), b.max(*v)));
        let med = median(&finite);
        let scale = if max > 0.0 { BAR_W / (max * 1.1) } else { 0.0 };
        let x = |v: f64| LABEL_W + v.max(0.0) * scale;
        row.push(line(x(min), mid, x(max), mid, "#1565c0", 3.0).class("range"));
        for v in &finite {
            row.push(
                el("circle")
                    .num("cx", x(*v))
                    .num("cy", mid)
                    .attr("r", "4")
                    .attr("fill", "#1565c0")
                    .attr("fill-opacity", "0.55")
                    .class("sample")
                    .tooltip(with_unit(*v, unit)),
            );
        }
        row.push(line(x(med), mid - 9.0, x(med), mid + 9.0, "#111", 2.5).class("median"));
        let value = format!("median {} (min {}, max {}; {} runs)", with_unit(med, unit), number(min), number(max), finite.len());
        row.push(text(LABEL_W + BAR_W + 10.0, mid + 4.0, &value, "start", 11.5));
        svg.push(row);
    }
    svg
}

/// A small bar for a table cell: `value` of `max`.
pub fn mini_bar(value: f64, max: f64, class: &'static str) -> El {
    const W: f64 = 120.0;
    let w =
        if max > 0.0 && value.is_finite() { (value.max(0.0) / max * W).max(if value > 0.0 { 1.0 } else { 0.0 }) } else { 0.0 };
    svg(W, 10.0)
        .class("mini")
        .child(rect(0.0, 1.0, W, 8.0, "#f1f1f1"))
        .child(rect(0.0, 1.0, w, 8.0, colour(class)).class(format!("bar {class}")))
}

/// The median of some numbers (the mean of the middle two for an even count).
pub fn median(values: &[f64]) -> f64 {
    let mut s = values.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

/// An `<svg>` of this size, scaling with the page.
pub fn svg(width: f64, height: f64) -> El {
    el("svg").attr("viewBox", format!("0 0 {} {}", coord(width), coord(height))).num("width", width).num("height", height)
}

pub fn rect(x: f64, y: f64, w: f64, h: f64, fill: &str) -> El {
    el("rect").num("x", x).num("y", y).num("width", w.max(0.0)).num("height", h.max(0.0)).attr("fill", fill)
}

pub fn line(x1: f64, y1: f64, x2: f64, y2: f64, stroke: &str, width: f64) -> El {
    el("line").num("x1", x1).num("y1", y1).num("x2", x2).num("y2", y2).attr("stroke", stroke).num("stroke-width", width)
}

/// SVG text at (x, y), anchored `start`, `middle` or `end`, of `size` px.
pub fn text(x: f64, y: f64, text: &str, anchor: &str, size: f64) -> El {
    el("text").num("x", x).num("y", y).attr("text-anchor", anchor).num("font-size", size).text(text)
}

/// At most `max` characters, an ellipsis where cut (the whole text goes in a tooltip).
pub fn shorten(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

/// A tick interval giving four to ten ticks up to `top`.
fn tick_step(top: f64) -> f64 {
    let p = 10f64.powf((top / 5.0).log10().floor());
    [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * p).find(|s| top / s <= 10.0).unwrap_or(10.0 * p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::criteria::{ALL, SC001, SC002};

    #[test]
    fn every_criterion_gets_a_row_and_a_measured_one_a_bar_and_its_limit() {
        let measured = vec![SC001.measured(3.5), SC002.measured(61.0)];
        let svg = criteria_bars(&measured, &ALL).render();
        assert_eq!(svg.matches("class=\"criterion\"").count(), 8);
        assert_eq!(svg.matches("class=\"bar ok\"").count(), 1, "{svg}");
        assert_eq!(svg.matches("class=\"bar FAILED\"").count(), 1);
        assert_eq!(svg.matches("class=\"limit\"").count(), 2);
        assert_eq!(svg.matches("not measured in this run").count(), 6);
    }

    #[test]
    fn a_timeline_spans_its_axis() {
        let spans = vec![
            Span { row: 0, start: 0.0, end: 0.5, class: "phase", tooltip: "network".into() },
            Span { row: 1, start: 0.5, end: 42.0, class: "passed", tooltip: "P1".into() },
        ];
        let svg = timeline("t", &[("network".into(), "0.5 s".into()), ("P1".into(), "41.5 s".into())], &spans).render();
        assert_eq!(svg.matches("class=\"span ").count(), 2);
        assert!(svg.contains(">40 s<") && !svg.contains(">45 s<"), "ticks every 5 s up to the last span's end: {svg}");
        assert_eq!(tick_step(43.26), 5.0);
        assert_eq!(tick_step(0.2), 0.02);
    }

    #[test]
    fn a_spread_has_a_dot_per_run_and_its_median() {
        let svg =
            spread("s", &[("network".into(), vec![0.1, 0.3, 0.2], "s".into()), ("none".into(), vec![], "s".into())]).render();
        assert_eq!(svg.matches("class=\"sample\"").count(), 3);
        assert!(svg.contains("median 0.2 s"), "{svg}");
        assert!(svg.contains("not measured"));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
    }
}
