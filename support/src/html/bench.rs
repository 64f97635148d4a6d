//! The page of one `cargo mesh bench`: how many runs passed first time, each phase's spread
//! over the runs (every run a dot, the median a tick), the criteria it measures (SC-007,
//! SC-008) as bars against their limits, and a link to each run's own report.

use super::charts::{self, median};
use super::{el, link, note, number, page as frame, section, table, td, text_el, El};
use crate::criteria::{SC007, SC008};
use crate::report::BenchFigures;
use std::path::Path;

/// A phase's key without its place in the order (`1 lab network up (s)` → `lab network up (s)`),
/// and its unit from the parentheses.
fn phase_name(key: &str) -> (&str, &str) {
    let name = key.split_once(' ').filter(|(n, _)| n.chars().all(|c| c.is_ascii_digit())).map(|(_, r)| r).unwrap_or(key);
    let unit = name.rsplit_once('(').and_then(|(_, u)| u.strip_suffix(')')).unwrap_or("");
    (name, unit)
}

/// The whole page for `bench`, to be written in `page_dir`.
pub fn page(bench: &BenchFigures, page_dir: &Path) -> String {
    let passed_all = bench.passed == bench.runs && bench.criteria.iter().all(|c| c.ok || c.skipped.is_some());
    let verdict = if passed_all { "passed" } else { "failed" };
    let title = format!("mesh bench — {}/{} runs passed first time, {}", bench.passed, bench.runs, bench.date);
    let h1 = el("h1")
        .text("mesh bench ")
        .child(text_el("span", if passed_all { "PASSED" } else { "FAILED" }).class(format!("verdict {verdict}")));
    let mut dl = el("dl").class("facts");
    for (k, v) in [
        ("runs", format!("{} of {} passed first time", bench.passed, bench.runs)),
        ("machine", bench.machine.clone()),
        ("date", bench.date.clone()),
    ] {
        dl.push(text_el("dt", k));
        dl.push(text_el("dd", v));
    }
    let rows: Vec<(String, Vec<f64>, String)> = bench
        .samples
        .iter()
        .map(|(k, v)| {
            let (name, unit) = phase_name(k);
            (name.to_string(), v.clone(), unit.to_string())
        })
        .collect();
    let table_rows = bench.samples.iter().map(|(k, v)| {
        let (name, _) = phase_name(k);
        let (min, max) = v.iter().fold((f64::MAX, f64::MIN), |(a, b), x| (a.min(*x), b.max(*x)));
        let cell = |x: f64| td(if v.is_empty() { "—".into() } else { number(x) }, "num");
        el("tr")
            .child(td(name, ""))
            .child(cell(median(v)))
            .child(cell(min))
            .child(cell(max))
            .child(td(v.len().to_string(), "num"))
    });
    let spread = if rows.is_empty() {
        vec![note("No run's lab was built: no phase was measured.")]
    } else {
        vec![
            charts::spread("spread", &rows),
            note("Each row on a scale of its own, from 0: the line spans the smallest to the largest run, a dot per run, the tick at the median."),
            table(&["phase", "median", "min", "max", "runs"], table_rows.collect()),
        ]
    };
    let reports: Vec<El> = bench
        .reports
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let html = r.with_extension("html");
            el("li").child(link(format!("run {}", i + 1), &html, page_dir)).text(" ").child(link("report.json", r, page_dir))
        })
        .collect();
    let runs = if reports.is_empty() {
        vec![note("No run wrote a report (no lab was built).")]
    } else {
        vec![el("ul").children(reports)]
    };
    let sections = vec![
        el("header").child(h1).child(dl),
        section("spread", "Each phase over the runs", spread),
        section("criteria", "Success criteria", vec![charts::criteria_bars(&bench.criteria, &[SC007, SC008])]),
        section("runs", "Each run's report", runs),
    ];
    frame(&title, sections)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn every_phase_has_its_spread_and_the_criteria_their_bars() {
        let mut samples = BTreeMap::new();
        samples.insert("1 lab network up (s)".to_string(), vec![0.14, 0.12, 0.2]);
        samples.insert("6 lab memory peak (MiB)".to_string(), vec![200.0, 210.0, 190.0]);
        let bench = BenchFigures {
            date: "2026-12-02T06:00:00Z".into(),
            machine: "2 cores, 8 GiB".into(),
            runs: 3,
            passed: 3,
            medians: samples.iter().map(|(k, v)| (k.clone(), median(v))).collect(),
            samples,
            criteria: vec![SC008.measured(100.0)],
            reports: vec!["/var/mesh/labs/a1/report.json".into()],
        };
        let html = page(&bench, Path::new("/var/mesh/bench/x"));
        assert_eq!(html.matches("class=\"sample\"").count(), 6);
        assert!(html.contains("lab network up (s)") && !html.contains("1 lab network"));
        assert!(html.contains("median 200 MiB"), "{html}");
        assert_eq!(html.matches("class=\"criterion\"").count(), 2);
        assert!(html.contains("not measured in this run"), "SC-007 needs --from-scratch");
        assert!(html.contains("href=\"file:///var/mesh/labs/a1/report.html\""));
        assert_eq!(phase_name("7 whole check: lab start to teardown (s)"), ("whole check: lab start to teardown (s)", "s"));
    }
}
