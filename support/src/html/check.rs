//! The page of one `cargo mesh check` (its `report.html`): the verdict and versions; the lab
//! drawn, once as built and once for each condition a scenario measured client pairs under;
//! the round trips as a grid of pairs; every pair measurement; the criteria as bars against
//! their limits; the run's timeline; every scenario with its status and log; every figure.

use super::charts::{self, mini_bar, Span};
use super::lab::{drawing, Direction};
use super::{el, link, note, number, page as frame, round_trip, section, table, td, text_el, with_unit, El};
use crate::criteria;
use crate::report::{PairFigure, Report, Scenario, Status};
use crate::spec::Role;
use std::path::Path;

/// The whole page for `report`, to be written in `page_dir` (links to the run's logs are
/// relative where they lie under it).
pub fn page(report: &Report, page_dir: &Path) -> String {
    let title = format!(
        "mesh check {} — lab {} on the {} backend, {}",
        if report.passed { "PASSED" } else { "FAILED" },
        report.lab,
        report.backend,
        report.date
    );
    let mut sections = vec![header(report, page_dir), versions(report), lab(report)];
    sections.push(criteria_section(report));
    sections.push(timeline(report));
    sections.push(latency(report));
    sections.push(pairs(report));
    if let Some(conditions) = conditioned(report) {
        sections.push(conditions);
    }
    sections.push(scenarios(report, page_dir));
    sections.push(figures(report));
    if let Some(config) = &report.headscale_config {
        let rows =
            config.replacements.iter().map(|r| el("tr").child(td(&r.key, "mono")).child(td(&r.theirs, "")).child(td(&r.lab, "")));
        let mut body = vec![
            note(format!(
                "headscale ran with {} laid over the lab's configuration; these keys were set back to the lab's:",
                config.path.as_deref().unwrap_or("the user's configuration")
            )),
            table(&["key", "theirs", "the lab's"], rows.collect()),
        ];
        if !config.unhonoured.is_empty() {
            body.push(text_el("h3", "not honoured"));
            body.push(el("ul").children(config.unhonoured.iter().map(|l| text_el("li", l))));
        }
        sections.push(section("headscale-config", "Your headscale configuration", body));
    }
    frame(&title, sections)
}

fn header(report: &Report, page_dir: &Path) -> El {
    let count = |s: Status| report.scenarios.iter().filter(|x| x.status == s).count();
    let verdict = if report.passed { "passed" } else { "failed" };
    let h1 = el("h1")
        .text("mesh check ")
        .child(text_el("span", if report.passed { "PASSED" } else { "FAILED" }).class(format!("verdict {verdict}")));
    let facts = [
        (
            "scenarios",
            format!(
                "{} passed, {} failed, {} skipped, {} not run, of {}",
                count(Status::Passed),
                count(Status::Failed),
                count(Status::Skipped),
                count(Status::NotRun),
                report.scenarios.len()
            ),
        ),
        ("run time", format!("{} s", number(report.seconds))),
        ("backend", report.backend.clone()),
        ("lab", report.lab.clone()),
        ("date", report.date.clone()),
        ("lab memory peak", format!("{} MiB", number(report.peak_rss_mib))),
    ];
    let mut dl = el("dl").class("facts");
    for (k, v) in facts {
        dl.push(text_el("dt", k));
        dl.push(text_el("dd", v));
    }
    dl.push(text_el("dt", "artifacts"));
    let artifacts = Path::new(&report.artifacts);
    dl.push(el("dd").child(link(&report.artifacts, artifacts, page_dir)).text(" (logs, report.json, diagnostics)"));
    el("header").child(h1).child(dl)
}

fn versions(report: &Report) -> El {
    let v = &report.versions;
    let mut rows = vec![
        el("tr").child(td("headscale", "")).child(td(&v.headscale, "mono")),
        el("tr").child(td("tailscale (CLI)", "")).child(td(&v.tailscale, "mono")),
        el("tr").child(td("tailscaled", "")).child(td(&v.tailscaled, "mono")),
    ];
    for (host, version) in &v.clients {
        rows.push(el("tr").child(td(format!("tailscaled on {host}"), "")).child(td(version, "mono")));
    }
    if let Some(from) = &v.upgraded_from {
        rows.push(el("tr").child(td("headscale before P6's upgrade", "")).child(td(from, "mono")));
    }
    if !report.database.is_empty() {
        rows.push(el("tr").child(td("headscale's database", "")).child(td(&report.database, "mono")));
    }
    let mut body = vec![table(&["program", "version (as it reports itself)"], rows)];
    body.push(note(if v.clients.is_empty() {
        "Every client runs the same tailscaled.".to_string()
    } else {
        "A mixed lab: the clients named run releases of their own; the others the one above.".to_string()
    }));
    section("versions", "Versions", body)
}

/// The conditions pairs were measured under, the lab as built first (drawn even when no pair
/// was measured: every edge then says so).
fn conditions(report: &Report) -> Vec<Option<String>> {
    let mut all: Vec<Option<String>> = vec![None];
    for p in &report.pairs {
        if !all.contains(&p.condition) {
            all.push(p.condition.clone());
        }
    }
    all
}

fn under<'a>(report: &'a Report, condition: &Option<String>) -> Vec<&'a PairFigure> {
    report.pairs.iter().filter(|p| &p.condition == condition).collect()
}

fn condition_title(condition: &Option<String>) -> String {
    match condition {
        None => "The lab as built".into(),
        Some(c) => format!("With {c}"),
    }
}

/// The clients, in the lab's order: from its layout, else from the pairs measured.
fn clients(report: &Report) -> Vec<String> {
    if let Some(spec) = &report.spec {
        return spec.hosts.iter().filter(|h| h.role == Role::Client).map(|h| h.name.clone()).collect();
    }
    let mut names: Vec<String> = Vec::new();
    for p in &report.pairs {
        for n in [&p.from, &p.to] {
            if !names.contains(n) {
                names.push(n.clone());
            }
        }
    }
    names.sort();
    names
}

fn lab(report: &Report) -> El {
    let mut body = Vec::new();
    let Some(spec) = &report.spec else {
        body.push(note("This report does not carry the lab's layout (a report from before it did): no drawing."));
        return section("lab", "The lab as built", body);
    };
    if report.pairs.is_empty() {
        body.push(note("No scenario recorded a client pair in this run: every pair is drawn \"not measured\"."));
    }
    body.push(drawing(spec, &under(report, &None), "lab-as-built"));
    body.push(note(
        "Each direction of a pair shows the last measurement that saw its path (tailscale ping); without one, \
         whether the probes that do not see the path reached it. Every measurement is in the table further down; \
         the lab under the conditions scenarios put it in is drawn after it.",
    ));
    section("lab", "The lab as built", body)
}

/// The lab drawn again for each condition a scenario measured pairs under (P2's UDP block,
/// P7's policy), if any.
fn conditioned(report: &Report) -> Option<El> {
    let spec = report.spec.as_ref()?;
    let conditions: Vec<Option<String>> = conditions(report).into_iter().skip(1).collect();
    if conditions.is_empty() {
        return None;
    }
    let mut body = Vec::new();
    for (i, condition) in conditions.iter().enumerate() {
        body.push(text_el("h3", condition_title(condition)));
        body.push(drawing(spec, &under(report, condition), &format!("lab-{}", i + 1)));
    }
    Some(section("conditions", "The lab under the scenarios' conditions", body))
}

/// One grid per condition and probe with round trips: a row per client it was sent from, a
/// column per client it went to.
fn latency(report: &Report) -> El {
    let clients = clients(report);
    let mut body = Vec::new();
    for condition in conditions(report) {
        let pairs = under(report, &condition);
        let mut probes: Vec<&str> = Vec::new();
        for p in pairs.iter().filter(|p| p.rtt_ms.is_some()) {
            if !probes.contains(&p.probe.as_str()) {
                probes.push(&p.probe);
            }
        }
        for probe in probes {
            body.push(text_el("h3", format!("{} — {probe}, round trip in ms", condition_title(&condition))));
            let head = el("tr").child(text_el("th", "from ↓ to →")).children(clients.iter().map(|c| text_el("th", c)));
            let rows = clients.iter().map(|from| {
                let mut tr = el("tr").child(text_el("th", from));
                for to in &clients {
                    if from == to {
                        tr.push(td("—", "grid-self"));
                        continue;
                    }
                    let found: Vec<&&PairFigure> = pairs
                        .iter()
                        .filter(|p| &p.from == from && &p.to == to && p.probe == probe && p.rtt_ms.is_some())
                        .collect();
                    match found.last() {
                        Some(p) => {
                            let shown = round_trip(p.rtt_ms, p.resolution_ms);
                            let all: Vec<String> = found.iter().map(|p| round_trip(p.rtt_ms, p.resolution_ms)).collect();
                            tr.push(td(shown.trim_end_matches(" ms"), "grid-cell measured").attr(
                                "title",
                                format!("{from} → {to}: {shown} ({}; every measurement: {})", p.reach.word(), all.join(", ")),
                            ));
                        }
                        None => tr.push(td("not measured", "grid-cell missing")),
                    }
                }
                tr
            });
            body.push(el("table").class("latency").child(el("thead").child(head.clone())).child(el("tbody").children(rows)));
        }
    }
    if body.is_empty() {
        body.push(note("No round trip between clients was recorded in this run."));
    } else {
        body.push(note(format!(
            "SC-002 holds every such round trip to {}; a cell shows the last measurement of its pair (its tooltip lists all). \
             tailscale ping prints whole milliseconds: \"< 0.5\" is a pong it printed as 0.",
            with_unit(criteria::SC002.limit, criteria::SC002.unit)
        )));
    }
    section("latency", "Round trips between clients", body)
}

fn pairs(report: &Report) -> El {
    let rows: Vec<El> = report
        .pairs
        .iter()
        .map(|p| {
            let d = Direction::of(&p.from, &p.to, &[p]);
            el("tr")
                .child(td(&p.from, ""))
                .child(td(&p.to, ""))
                .child(td(p.reach.word(), d.class()))
                .child(td(p.via.as_deref().unwrap_or("—"), "mono"))
                .child(td(round_trip(p.rtt_ms, p.resolution_ms), "num"))
                .child(td(&p.probe, ""))
                .child(td(p.condition.as_deref().unwrap_or("as built"), ""))
        })
        .collect();
    let body = if rows.is_empty() {
        vec![note("No client pair was measured in this run.")]
    } else {
        vec![table(&["from", "to", "found", "via", "round trip", "probe", "lab"], rows)]
    };
    section("pairs", "Every client pair measurement", body)
}

fn criteria_section(report: &Report) -> El {
    let rows = criteria::ALL.iter().map(|sc| match report.criteria.iter().find(|c| c.id == sc.id) {
        Some(c) => el("tr")
            .child(td(&c.id, ""))
            .child(td(&c.name, ""))
            .child(td(with_unit(c.measured, &c.unit), "num"))
            .child(td(with_unit(c.limit, &c.unit), "num"))
            .child(td(c.verdict(), c.verdict()))
            .child(td(c.skipped.as_deref().unwrap_or(""), "")),
        None => el("tr")
            .child(td(sc.id, ""))
            .child(td(sc.name, ""))
            .child(td("not measured", "missing"))
            .child(td(with_unit(sc.limit, sc.unit), "num"))
            .child(td("—", "missing"))
            .child(td(if matches!(sc.id, "SC-007" | "SC-008") { "measured by cargo mesh bench" } else { "" }, "")),
    });
    let body = vec![
        charts::criteria_bars(&report.criteria, &criteria::ALL),
        table(&["criterion", "what", "measured", "limit", "verdict", "why skipped / where measured"], rows.collect()),
        note("A criterion's figure is the worst of every measurement of it in the run."),
    ];
    section("criteria", "Success criteria", body)
}

/// The lab's phases where they happened (from the lab's start: its images, network, headscale,
/// the clients' daemons, each registration, convergence), then each scenario file's
/// scenarios back to back, each a segment of its row.
fn timeline(report: &Report) -> El {
    let t = &report.timings;
    let mut rows: Vec<(String, String)> = Vec::new();
    let mut spans: Vec<Span> = Vec::new();
    let mut add = |rows: &mut Vec<(String, String)>, label: String, start: f64, end: f64, class: &'static str| {
        let row = rows.len();
        rows.push((label.clone(), format!("{} s", number(end - start))));
        spans.push(Span { row, start, end, class, tooltip: format!("{label}: {} s", number(end - start)) });
    };
    let images_end = t.images;
    add(&mut rows, "images (VM images; none on netns)".into(), 0.0, images_end, "phase");
    let net_end = images_end + t.network;
    add(&mut rows, "lab network up".into(), images_end, net_end, "phase");
    let hs_end = net_end + t.headscale_ready;
    add(&mut rows, "headscale ready".into(), net_end, hs_end, "phase");
    let registration = images_end + t.converged_since_start - t.converged_after_registration;
    if registration > hs_end {
        add(&mut rows, "tailscaled started, keys made".into(), hs_end, registration, "derived");
    }
    for (client, s) in &t.registered {
        add(&mut rows, format!("{client} registered"), registration, registration + s, "phase");
    }
    let last = t.registered.values().copied().fold(0.0, f64::max);
    let converged = images_end + t.converged_since_start;
    add(&mut rows, "mesh converged (after the last registration)".into(), registration + last, converged, "phase");
    // The scenario files, back to back from the convergence.
    let mut at = converged;
    let mut files: Vec<(&str, Vec<&Scenario>)> = Vec::new();
    for s in &report.scenarios {
        let file = s.id.split("::").next().unwrap_or(&s.id);
        match files.iter_mut().find(|(f, _)| *f == file) {
            Some((_, list)) => list.push(s),
            None => files.push((file, vec![s])),
        }
    }
    for (file, list) in &files {
        let row = rows.len();
        let total: f64 = list.iter().map(|s| s.seconds).sum();
        let priority = list[0].name.split_whitespace().next().unwrap_or("");
        let ran = list.iter().filter(|s| s.status != Status::NotRun).count();
        rows.push((format!("{priority} {file} ({ran} of {} ran)", list.len()), format!("{} s", number(total))));
        for s in list {
            let class = status_class(s.status);
            spans.push(Span {
                row,
                start: at,
                end: at + s.seconds,
                class,
                tooltip: format!("{}: {} ({} s)", s.name, s.status, number(s.seconds)),
            });
            at += s.seconds;
        }
    }
    let scenarios: f64 = report.scenarios.iter().map(|s| s.seconds).sum();
    let body = vec![
        charts::timeline("timeline", &rows, &spans),
        note(format!(
            "Seconds from the lab's start (its images first). The lab's phases are where they happened; the scenario files are \
             drawn back to back from the mesh's convergence, each scenario a segment (green passed, red failed, amber skipped). \
             What lies between them — P5–P7's own labs being built and removed — and what came before the lab (prechecks, the \
             tests' build, the Go tools) is not timed separately: the whole run took {} s, the lab to convergence {} s and the \
             scenarios {} s of it.",
            number(report.seconds),
            number(t.images + t.converged_since_start),
            number(scenarios)
        )),
    ];
    section("timeline", "Where the time went", body)
}

fn status_class(status: Status) -> &'static str {
    match status {
        Status::Passed => "passed",
        Status::Failed => "failed",
        Status::Skipped => "skipped",
        Status::NotRun => "notrun",
    }
}

fn scenarios(report: &Report, page_dir: &Path) -> El {
    let longest = report.scenarios.iter().map(|s| s.seconds).fold(0.0, f64::max);
    let artifacts = Path::new(&report.artifacts);
    let rows = report.scenarios.iter().enumerate().map(|(i, s)| {
        let class = status_class(s.status);
        let log = match s.status {
            Status::NotRun => td("no log (not run)", "missing"),
            _ => el("td").child(link("log", &s.log_path(artifacts), page_dir)),
        };
        let mut tr = el("tr")
            .attr("data-status", s.status.to_string())
            .child(td((i + 1).to_string(), "num"))
            .child(td(&s.name, ""))
            .child(td(s.status.to_string(), class))
            .child(td(format!("{:.1} s", s.seconds), "num"))
            .child(el("td").child(mini_bar(s.seconds, longest, class)))
            .child(log)
            .child(td(s.reason.as_deref().unwrap_or(""), ""));
        if s.status == Status::Failed {
            tr = tr.class("failed");
        }
        tr
    });
    let body = vec![table(&["#", "scenario", "status", "time", "", "log", "why skipped"], rows.collect())];
    section("scenarios", "Scenarios", body)
}

fn figures(report: &Report) -> El {
    let rows: Vec<El> = report
        .figures
        .iter()
        .map(|f| el("tr").child(td(&f.id, "")).child(td(&f.name, "")).child(td(with_unit(f.measured, &f.unit), "num")))
        .collect();
    let body = if rows.is_empty() {
        vec![note("No other figure was recorded in this run.")]
    } else {
        vec![table(&["figure", "what", "measured"], rows)]
    };
    section("figures", "Every figure", body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Criterion, Figure, Reach, Scenario};
    use crate::spec::LabSpec;

    /// A report as a check writes it, with something of everything in it.
    pub(crate) fn sample() -> Report {
        let scenario = |id: &str, status: Status, seconds: f64, reason: Option<&str>| Scenario {
            id: id.into(),
            name: format!(
                "{} {}",
                id.split('_').next().unwrap().to_uppercase(),
                id.split("::").nth(1).unwrap().replace('_', " ")
            ),
            status,
            seconds,
            reason: reason.map(String::from),
        };
        let mut timings = crate::registry::Timings {
            network: 0.14,
            headscale_ready: 1.09,
            converged_after_registration: 3.55,
            converged_since_start: 5.18,
            ..Default::default()
        };
        timings.registered.insert("client-1".into(), 1.9);
        timings.registered.insert("client-2".into(), 2.1);
        Report {
            backend: "netns".into(),
            lab: "01b964".into(),
            date: "2026-12-02T06:00:00Z".into(),
            database: "PostgreSQL 15.18 (Debian 15.18-0+deb12u1)".into(),
            versions: crate::tools::Versions {
                headscale: "0.29.3".into(),
                tailscale: "1.98.10".into(),
                tailscaled: "1.98.10".into(),
                clients: [("client-3".to_string(), "1.80.3".to_string())].into(),
                upgraded_from: None,
            },
            passed: false,
            seconds: 87.5,
            timings,
            peak_rss_mib: 202.0,
            scenarios: vec![
                scenario("p0_lab_isolation::host_has_no_route", Status::Passed, 0.1, None),
                scenario("p1_connectivity::pings_peer <b>&</b>", Status::Passed, 1.4, None),
                scenario("p2_cross_network::relays_through_derp", Status::Failed, 12.0, None),
                scenario("p6_upgrade::upgrade_keeps_nodes", Status::Skipped, 0.0, Some("no older release <here>")),
                scenario("p7_policy::denied_pairs", Status::NotRun, 0.0, None),
            ],
            criteria: vec![
                crate::criteria::SC001.measured(3.55),
                Criterion::at_most("SC-002", "ping round trip between clients", 0.777, 50.0, "ms"),
            ],
            figures: vec![Figure::new("P2-direct-restored", "direct path back <after> the block", 0.014, "s")],
            pairs: vec![
                PairFigure::new("client-1", "client-2", Reach::Direct, "tailscale ping")
                    .via("192.168.1.1:41641")
                    .rtt(std::time::Duration::from_micros(410)),
                PairFigure::new("client-2", "client-1", Reach::Reached, "ping (ICMP, IPv4), mean of 5")
                    .rtt(std::time::Duration::from_micros(780)),
                PairFigure::new("client-1", "client-2", Reach::Derp, "tailscale ping")
                    .via("lab")
                    .rtt(std::time::Duration::from_millis(1))
                    .under("UDP between the subnets blocked (P2)"),
            ],
            spec: Some(LabSpec::new("192.168.1.0/24", "10.0.0.0/24").unwrap()),
            artifacts: "/var/mesh/labs/01b964".into(),
            headscale_config: None,
        }
    }

    #[test]
    fn every_scenario_is_listed_with_its_status_and_its_log() {
        let report = sample();
        let html = page(&report, Path::new("/var/mesh/labs/01b964"));
        for s in &report.scenarios {
            let name = super::super::escape(&s.name);
            assert!(html.contains(&format!("<td>{name}</td>")), "{} listed", s.name);
        }
        assert_eq!(html.matches("data-status=\"passed\"").count(), 2);
        assert_eq!(html.matches("data-status=\"failed\"").count(), 1);
        assert_eq!(html.matches("data-status=\"skipped\"").count(), 1);
        assert_eq!(html.matches("data-status=\"not run\"").count(), 1);
        assert!(html.contains("href=\"scenarios/p2_cross_network__relays_through_derp.log\""), "a relative log link");
        assert!(html.contains("no log (not run)"));
        // Elsewhere, the logs are linked by their absolute path.
        let html = page(&report, Path::new("/tmp/elsewhere"));
        assert!(html.contains("href=\"file:///var/mesh/labs/01b964/scenarios/p0_lab_isolation__host_has_no_route.log\""));
    }

    #[test]
    fn text_from_the_report_is_escaped() {
        let html = page(&sample(), Path::new("/x"));
        assert!(html.contains("P1 pings peer &lt;b&gt;&amp;&lt;/b&gt;"), "a scenario's name");
        assert!(html.contains("no older release &lt;here&gt;"), "a skip's reason");
        assert!(html.contains("direct path back &lt;after&gt; the block"), "a figure's name");
        assert!(!html.contains("<b>&") && !html.contains("<here>") && !html.contains("<after>"));
    }

    #[test]
    fn criteria_are_bars_against_their_limits_and_the_unmeasured_say_so() {
        let html = page(&sample(), Path::new("/x"));
        assert!(html.contains("id=\"criteria-bars\""));
        assert_eq!(html.matches("class=\"bar ok\"").count(), 2, "SC-001 and SC-002 measured, both under their limits");
        assert_eq!(html.matches("class=\"limit\"").count(), 2);
        assert_eq!(html.matches("not measured in this run").count(), 6, "SC-003 … SC-008 were not measured");
        assert!(html.contains("id=\"timeline\"") && html.matches("class=\"span ").count() >= 8, "phases and scenarios");
    }

    #[test]
    fn pairs_not_measured_are_drawn_and_gridded_as_such() {
        let html = page(&sample(), Path::new("/x"));
        // As built and under P2's block: two drawings, each of every client pair.
        assert!(html.matches("<svg").count() >= 4, "two drawings, the criteria, the timeline");
        assert_eq!(html.matches("class=\"lab\"").count(), 2);
        assert!(html.contains("client-1 → client-2: direct 0.41 ms"));
        assert!(html.contains("client-2 → client-1: reached 0.78 ms"));
        assert!(html.contains("client-1 → client-3: not measured"), "no scenario measured it: not invented");
        assert!(html.contains("client-1 → client-2: DERP lab 1 ms"));
        // The grid: client-1 → client-3 was not measured by tailscale ping.
        assert!(html.contains("tailscale ping, round trip in ms"));
        assert!(html.contains("<td class=\"grid-cell missing\">not measured</td>"));
        assert!(html.contains(">0.41</td>"));
    }

    #[test]
    fn a_report_without_pairs_or_layout_shows_what_is_missing() {
        let mut report = sample();
        report.pairs.clear();
        let html = page(&report, Path::new("/x"));
        assert!(html.contains("No scenario recorded a client pair"));
        assert!(html.contains("No round trip between clients was recorded"));
        assert!(!html.contains("class=\"direction direct\""));
        report.spec = None;
        let html = page(&report, Path::new("/x"));
        assert!(html.contains("does not carry the lab&#39;s layout"));
    }

    #[test]
    fn versions_are_listed_per_client_when_mixed_with_the_database() {
        let html = page(&sample(), Path::new("/x"));
        assert!(html.contains("<td>tailscaled on client-3</td><td class=\"mono\">1.80.3</td>"), "{html}");
        assert!(html.contains("<td>headscale&#39;s database</td><td class=\"mono\">PostgreSQL 15.18"), "{html}");
    }
}
