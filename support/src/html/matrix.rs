//! The page of one `cargo mesh matrix`: the grid of its combinations (headscale by row, the
//! clients' tailscale by column) coloured by how each ended, each one's time as a bar, and every
//! combination's row with its versions, scenarios, first failure, time, report and log.

use super::charts::{self, Span};
use super::{el, link, note, number, page as frame, section, table, td, text_el, El};
use crate::report::MatrixRow;
use std::path::Path;

/// `0.29.3/1.80.3+1.98.10` → (`0.29.3`, `1.80.3+1.98.10`).
fn split(combination: &str) -> (&str, &str) {
    combination.split_once('/').unwrap_or((combination, "—"))
}

fn class(verdict: &str) -> &'static str {
    match verdict {
        "passed" => "passed",
        "failed" => "failed",
        _ => "skipped",
    }
}

/// The whole page for the matrix's `rows`, to be written in `page_dir`; `seconds` the whole
/// matrix took.
pub fn page(rows: &[MatrixRow], seconds: f64, page_dir: &Path) -> String {
    let passed = rows.iter().filter(|r| r.verdict == "passed").count();
    let all = passed == rows.len();
    let title = format!("mesh matrix — {passed}/{} combinations passed", rows.len());
    let h1 = el("h1").text("mesh matrix ").child(
        text_el("span", if all { "PASSED" } else { "FAILED" })
            .class(format!("verdict {}", if all { "passed" } else { "failed" })),
    );
    let summary = note(format!("{passed} of {} combinations passed in {} s.", rows.len(), number(seconds)));

    // The grid: a row per headscale, a column per clients' tailscale.
    let mut servers: Vec<&str> = Vec::new();
    let mut clients: Vec<&str> = Vec::new();
    for r in rows {
        let (s, c) = split(&r.combination);
        if !servers.contains(&s) {
            servers.push(s);
        }
        if !clients.contains(&c) {
            clients.push(c);
        }
    }
    let head = el("tr").child(text_el("th", "headscale ↓ tailscale →")).children(clients.iter().map(|c| text_el("th", *c)));
    let grid_rows = servers.iter().map(|s| {
        let mut tr = el("tr").child(text_el("th", *s));
        for c in &clients {
            match rows.iter().find(|r| split(&r.combination) == (*s, *c)) {
                None => tr.push(td("not in this matrix", "missing")),
                Some(r) => {
                    let target = r.report.as_ref().map(|p| p.with_extension("html")).unwrap_or_else(|| r.log.clone());
                    let cell = el("td")
                        .class(format!("combo {}", class(&r.verdict)))
                        .attr("data-verdict", &r.verdict)
                        .child(link(format!("{} {}", r.verdict, r.scenarios), &target, page_dir));
                    tr.push(cell);
                }
            }
        }
        tr
    });
    let grid = el("table").class("matrix").child(el("thead").child(head)).child(el("tbody").children(grid_rows));

    let detail_rows: Vec<El> = rows
        .iter()
        .map(|r| {
            let (hs, ts) = match &r.versions {
                Some(v) => (v.headscale.clone(), v.describe_tailscale().trim_start_matches("tailscale ").to_string()),
                None => ("—".into(), "—".into()),
            };
            let failure = r.first_failure.as_ref().map(|f| format!("{}: {}", f.scenario, f.cause)).unwrap_or_else(|| "—".into());
            let mut files = el("td");
            if let Some(report) = &r.report {
                files.push(link("report", &report.with_extension("html"), page_dir));
                files.push_text(" · ");
            }
            files.push(link("output", &r.log, page_dir));
            el("tr")
                .child(td(&r.combination, "mono"))
                .child(td(hs, "mono"))
                .child(td(ts, "mono"))
                .child(td(&r.verdict, class(&r.verdict)))
                .child(td(&r.scenarios, "num"))
                .child(td(failure, ""))
                .child(td(format!("{} s", number(r.seconds)), "num"))
                .child(files)
        })
        .collect();
    let time_rows: Vec<(String, String)> =
        rows.iter().map(|r| (r.combination.clone(), format!("{} s", number(r.seconds)))).collect();
    let time_spans: Vec<Span> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| Span {
            row: i,
            start: 0.0,
            end: r.seconds,
            class: class(&r.verdict),
            tooltip: format!("{}: {} in {} s", r.combination, r.verdict, number(r.seconds)),
        })
        .collect();
    let sections = vec![
        el("header").child(h1).child(summary),
        section(
            "grid",
            "The grid",
            vec![grid, note("Each cell links to that combination's report (or, where it got no lab, its output).")],
        ),
        section(
            "times",
            "Each combination's time",
            vec![
                charts::timeline("times", &time_rows, &time_spans),
                note("Each combination's check from its start (combinations run side by side with --jobs)."),
            ],
        ),
        section(
            "combinations",
            "Every combination",
            vec![table(
                &[
                    "combination",
                    "headscale",
                    "tailscale (as reported)",
                    "verdict",
                    "scenarios",
                    "first failure",
                    "time",
                    "files",
                ],
                detail_rows,
            )],
        ),
    ];
    frame(&title, sections)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::MatrixFailure;

    #[test]
    fn every_combination_is_a_cell_of_the_grid_and_a_row() {
        let row = |combination: &str, verdict: &str, report: bool| MatrixRow {
            combination: combination.into(),
            versions: None,
            verdict: verdict.into(),
            scenarios: "61/61".into(),
            first_failure: (verdict != "passed")
                .then(|| MatrixFailure { scenario: "P2 relays".into(), cause: "no pong <from> client-2".into() }),
            seconds: 90.0,
            report: report.then(|| format!("/var/mesh/labs/{}/report.json", combination.len()).into()),
            log: format!("/var/mesh/matrix/x/{}.log", combination.len()).into(),
        };
        let rows = vec![
            row("0.29.3/1.98.10", "passed", true),
            row("0.27.1/1.90.9", "failed", true),
            row("0.29.3/1.80.3+1.98.10+1.102.5", "not built", false),
        ];
        let html = page(&rows, 300.0, Path::new("/var/mesh/matrix/x"));
        assert_eq!(html.matches("class=\"combo ").count(), 3);
        assert_eq!(html.matches("not in this matrix").count(), 3, "2 servers × 3 client columns, 3 run");
        assert!(html.contains("data-verdict=\"not built\""));
        assert!(html.contains("P2 relays: no pong &lt;from&gt; client-2"));
        assert!(html.contains("href=\"29.log\""), "a log under the page's folder is linked relatively: {html}");
        assert!(html.contains("href=\"file:///var/mesh/labs/14/report.html\""));
    }
}
