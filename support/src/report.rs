//! What a run measured and how each scenario ended: the success criteria (SC-001…) with
//! their limits and verdicts, the figures, what each measured client pair found (its path and
//! round trip), and the JSON reports `cargo mesh check`, `bench` and `matrix` write.

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

/// Where tests append the criteria they measure, one JSON object a line, when a
/// `cargo mesh check` runs them (it sets this variable).
pub const CRITERIA_FILE_VAR: &str = "MESH_CRITERIA_FILE";

/// One success criterion as measured: a figure against its limit.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Criterion {
    pub id: String,
    pub name: String,
    pub measured: f64,
    pub limit: f64,
    pub unit: String,
    pub ok: bool,
    /// Why the limit is not asserted on this run (the figure is still measured and reported):
    /// where the criterion does not apply, e.g. a latency limit on emulated hosts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}

impl Criterion {
    /// A figure that must stay at or under its limit (times, latencies).
    pub fn at_most(id: &str, name: &str, measured: f64, limit: f64, unit: &str) -> Criterion {
        Criterion { id: id.into(), name: name.into(), measured, limit, unit: unit.into(), ok: measured <= limit, skipped: None }
    }

    /// A figure that must reach its limit (uptime, success rates).
    pub fn at_least(id: &str, name: &str, measured: f64, limit: f64, unit: &str) -> Criterion {
        Criterion { id: id.into(), name: name.into(), measured, limit, unit: unit.into(), ok: measured >= limit, skipped: None }
    }

    /// Measured, but its limit not asserted where `reason` says it does not apply: the report
    /// shows it as skipped, with the reason, never as passed.
    pub fn unless(mut self, reason: Option<String>) -> Criterion {
        self.skipped = reason;
        self
    }

    /// `ok`, `FAILED`, or `skipped` where the limit does not apply.
    pub fn verdict(&self) -> &'static str {
        match (&self.skipped, self.ok) {
            (Some(_), _) => "skipped",
            (None, true) => "ok",
            (None, false) => "FAILED",
        }
    }

    /// Record the measurement for the run's report, then require it to pass (unless skipped).
    pub fn check(self) -> Result<Criterion> {
        record(&self);
        if let Some(reason) = &self.skipped {
            crate::say!("{} measured {:.3} {}, limit {} not asserted: {reason}", self.id, self.measured, self.unit, self.limit);
            return Ok(self);
        }
        if !self.ok {
            bail!(
                "{} failed: {} measured {:.3} {}, limit {} {}",
                self.id,
                self.name,
                self.measured,
                self.unit,
                self.limit,
                self.unit
            );
        }
        Ok(self)
    }
}

/// A measured figure with no pass mark of its own (its test bounds it by a budget).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Figure {
    pub id: String,
    pub name: String,
    pub measured: f64,
    pub unit: String,
}

impl Figure {
    pub fn new(id: &str, name: &str, measured: f64, unit: &str) -> Figure {
        Figure { id: id.into(), name: name.into(), measured, unit: unit.into() }
    }

    /// Note it for the run's report, and in the progress lines.
    pub fn record(self) -> Figure {
        crate::say!("{}: {} = {:.3} {}", self.id, self.name, self.measured, self.unit);
        append(&Measurement::Figure(self.clone()));
        self
    }
}

/// How (and whether) one client reached another in one measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reach {
    /// `tailscale ping` answered over a direct path (`via` its endpoint).
    Direct,
    /// Relayed by a DERP server (`via` its region).
    Derp,
    /// Relayed by a peer relay (`via` the relay).
    PeerRelay,
    /// It answered, by a probe that does not say the path (ICMP `ping`, `nc -z`).
    Reached,
    /// A bounded attempt that did not connect (a policy's denial).
    Refused,
}

impl Reach {
    /// `direct`, `DERP`, `peer relay`, `reached`, `refused`.
    pub fn word(self) -> &'static str {
        match self {
            Reach::Direct => "direct",
            Reach::Derp => "DERP",
            Reach::PeerRelay => "peer relay",
            Reach::Reached => "reached",
            Reach::Refused => "refused",
        }
    }

    /// The path itself was seen (not only that something answered).
    pub fn is_path(self) -> bool {
        matches!(self, Reach::Direct | Reach::Derp | Reach::PeerRelay)
    }
}

/// One measurement of one ordered client pair: what `from` found trying `to`, by which probe,
/// with its round trip where the probe has one, and the lab's condition if not as built.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairFigure {
    pub from: String,
    pub to: String,
    pub reach: Reach,
    /// The direct path's endpoint (`ip:port`), the DERP region, the relay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
    /// The round trip in milliseconds, where the probe measures one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtt_ms: Option<f64>,
    /// What the round trip is rounded to, where its probe rounds it (`tailscale ping` prints
    /// whole milliseconds: `0` is under half of one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution_ms: Option<f64>,
    /// What measured it: `tailscale ping`, `ping (ICMP, IPv4)`, `TCP 8080` …
    pub probe: String,
    /// The condition a scenario had put the lab in (`UDP between the subnets blocked`, `the
    /// ACL policy`); none: the lab as built.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
}

impl PairFigure {
    pub fn new(from: &str, to: &str, reach: Reach, probe: &str) -> PairFigure {
        PairFigure {
            from: from.into(),
            to: to.into(),
            reach,
            via: None,
            rtt_ms: None,
            resolution_ms: None,
            probe: probe.into(),
            condition: None,
        }
    }

    pub fn via(mut self, via: &str) -> PairFigure {
        self.via = Some(via.into());
        self
    }

    /// Its round trip.
    pub fn rtt(mut self, rtt: std::time::Duration) -> PairFigure {
        self.rtt_ms = Some(rtt.as_secs_f64() * 1e3);
        self
    }

    /// Its probe gives the round trip rounded to `resolution`.
    pub fn rounded_to(mut self, resolution: std::time::Duration) -> PairFigure {
        self.resolution_ms = Some(resolution.as_secs_f64() * 1e3);
        self
    }

    /// Measured with the lab in `condition` (not as built).
    pub fn under(mut self, condition: &str) -> PairFigure {
        self.condition = Some(condition.into());
        self
    }

    /// Note it for the run's report (with `cargo mesh check`; elsewhere nothing is written).
    pub fn record(self) -> PairFigure {
        append(&Measurement::Pair(self.clone()));
        self
    }
}

/// What a scenario prints when it does not apply to this run: `cargo mesh check` reads it
/// from its output and reports the scenario `skipped` with the reason.
pub const SKIPPED_MARK: &str = "[mesh] skipped: ";

/// Say that the calling scenario does not apply here, and why; it then returns without
/// asserting anything. Never a silent pass: the report says `skipped` and the reason.
pub fn skip(reason: &str) {
    // On a line of its own: libtest has printed `test <name> ... ` before it.
    println!("\n{SKIPPED_MARK}{reason}");
    crate::say!("skipped: {reason}");
}

/// The reason a scenario's output gives for skipping, if it skipped.
pub fn skipped_in(output: &str) -> Option<String> {
    output.lines().find_map(|l| l.split_once(SKIPPED_MARK)).map(|(_, r)| r.trim().to_string())
}

/// One line of the measurements file.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Measurement {
    Criterion(Criterion),
    Figure(Figure),
    Pair(PairFigure),
}

fn record(c: &Criterion) {
    append(&Measurement::Criterion(c.clone()));
}

fn append(m: &Measurement) {
    let Ok(path) = std::env::var(CRITERIA_FILE_VAR) else { return };
    let line = serde_json::to_string(m).expect("a measurement serializes");
    if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
        let _ = writeln!(f, "{line}");
    }
}

fn read_measurements(path: &std::path::Path) -> Vec<Measurement> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

/// Every figure recorded, in order.
pub fn read_figures(path: &std::path::Path) -> Vec<Figure> {
    read_measurements(path).into_iter().filter_map(|m| if let Measurement::Figure(f) = m { Some(f) } else { None }).collect()
}

/// Every client pair's measurement recorded, in order.
pub fn read_pairs(path: &std::path::Path) -> Vec<PairFigure> {
    read_measurements(path).into_iter().filter_map(|m| if let Measurement::Pair(p) = m { Some(p) } else { None }).collect()
}

/// Read back what tests recorded; for one id measured several times, the worst figure wins
/// (an asserted measurement over a skipped one).
pub fn read_criteria(path: &std::path::Path) -> Vec<Criterion> {
    let mut worst: Vec<Criterion> = Vec::new();
    let all = read_measurements(path).into_iter().filter_map(|m| if let Measurement::Criterion(c) = m { Some(c) } else { None });
    for c in all {
        match worst.iter_mut().find(|w| w.id == c.id) {
            Some(w) => {
                let worse = if w.skipped.is_some() != c.skipped.is_some() {
                    w.skipped.is_some()
                } else if w.ok != c.ok {
                    !c.ok
                } else if c.measured <= c.limit {
                    c.measured > w.measured
                } else {
                    c.measured < w.measured
                };
                if worse {
                    *w = c;
                }
            }
            None => worst.push(c),
        }
    }
    worst.sort_by(|a, b| a.id.cmp(&b.id));
    worst
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Scenario {
    pub id: String,
    pub name: String,
    pub status: Status,
    pub seconds: f64,
    /// Why it was skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The folder of a run's artifacts that holds each scenario's log.
pub const SCENARIO_LOGS: &str = "scenarios";

impl Scenario {
    /// Its log among a run's `artifacts` (written once it ran; a scenario not run has none).
    pub fn log_path(&self, artifacts: &std::path::Path) -> PathBuf {
        artifacts.join(SCENARIO_LOGS).join(log_file_name(&self.id))
    }
}

/// The log file of the scenario `id` (`p1_connectivity::pings…` → `p1_connectivity__pings….log`).
pub fn log_file_name(id: &str) -> String {
    format!("{}.log", id.replace("::", "__"))
}

/// What became of a scenario in a run (in the JSON: `passed`, `failed`, `skipped`, `not run`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Passed,
    Failed,
    /// It ran and found it does not apply; the scenario's `reason` says why.
    Skipped,
    /// An earlier failure (or a lab that could not be built) stopped the run before it.
    #[serde(rename = "not run")]
    NotRun,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Passed => "passed",
            Status::Failed => "failed",
            Status::Skipped => "skipped",
            Status::NotRun => "not run",
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub backend: String,
    pub lab: String,
    pub date: String,
    /// The systems under test, as they report their own versions (and each client that runs
    /// a release of its own, `clients`).
    pub versions: crate::tools::Versions,
    /// The database headscale ran on: `SQLite`, or the lab's server (`PostgreSQL 15.18 …`).
    #[serde(default)]
    pub database: String,
    pub passed: bool,
    pub seconds: f64,
    pub timings: crate::registry::Timings,
    pub peak_rss_mib: f64,
    pub scenarios: Vec<Scenario>,
    pub criteria: Vec<Criterion>,
    /// Other measured figures (path restore times, DNS latencies …).
    pub figures: Vec<Figure>,
    /// What each measured client pair found: its path and round trip, by probe and condition
    /// (a pair no scenario measured is absent).
    #[serde(default)]
    pub pairs: Vec<PairFigure>,
    /// The lab as built: its subnets, router addresses and hosts (for report.html's drawing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<crate::spec::LabSpec>,
    /// Where logs and outputs of this run stay.
    pub artifacts: String,
    /// The user's headscale configuration (`MESH_HEADSCALE_CONFIG`), if one was given: its
    /// path, every key the lab replaced (theirs → the lab's) and what it could not honour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headscale_config: Option<crate::userconfig::Effective>,
}

/// What `cargo mesh bench` measured over its runs (`--json`, and `bench.json` beside its
/// report.html).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BenchFigures {
    pub date: String,
    pub machine: String,
    pub runs: u32,
    pub passed: u32,
    /// Phase → median seconds (memory in MiB). A phase's key starts with its place in the
    /// order and a space (`1 lab network up (s)`).
    pub medians: BTreeMap<String, f64>,
    /// Phase → every run's figure.
    pub samples: BTreeMap<String, Vec<f64>>,
    pub criteria: Vec<Criterion>,
    /// Each run's own report.json, in its lab's folder (a run whose lab did not build has none).
    #[serde(default)]
    pub reports: Vec<PathBuf>,
}

/// One combination's row of `cargo mesh matrix`'s grid, and of its JSON.
#[derive(Debug, Serialize, Deserialize, Clone)]
pub struct MatrixRow {
    pub combination: String,
    /// As the binaries report themselves (from its report; none if it never got a lab).
    pub versions: Option<crate::tools::Versions>,
    /// `passed`, `failed`, or `not built` (a release of it could not be built here).
    pub verdict: String,
    /// `61/61`.
    pub scenarios: String,
    pub first_failure: Option<MatrixFailure>,
    pub seconds: f64,
    /// Its report.json, if it got as far as a lab.
    pub report: Option<PathBuf>,
    /// Its whole output.
    pub log: PathBuf,
}

#[derive(Debug, Serialize, Deserialize, Clone)]
pub struct MatrixFailure {
    pub scenario: String,
    pub cause: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_criterion_over_its_limit_fails_with_the_figure() {
        let err = Criterion::at_most("SC-002", "ping", 61.5, 50.0, "ms").check().unwrap_err().to_string();
        assert!(err.contains("SC-002") && err.contains("61.5") && err.contains("50"), "{err}");
        assert!(Criterion::at_least("SC-003", "uptime", 99.5, 99.0, "%").check().is_ok());
    }

    #[test]
    fn a_skip_is_read_back_from_the_scenarios_output() {
        let output = "running 1 test\ntest p6 ... \n[mesh] skipped: no older release\nok\n";
        assert_eq!(skipped_in(output).as_deref(), Some("no older release"));
        let output = "test p6 ... [mesh] skipped: inline\nok\n";
        assert_eq!(skipped_in(output).as_deref(), Some("inline"));
        assert_eq!(skipped_in("test p1 ... ok\n"), None);
    }

    #[test]
    fn the_worst_measurement_of_a_criterion_is_reported() {
        let dir = std::env::temp_dir().join(format!("mesh-report-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.jsonl");
        let lines: Vec<String> = [3.0, 9.0, 4.0]
            .iter()
            .map(|m| {
                serde_json::to_string(&Measurement::Criterion(Criterion::at_most("SC-002", "ping", *m, 50.0, "ms"))).unwrap()
            })
            .collect();
        std::fs::write(&path, lines.join("\n")).unwrap();
        let got = read_criteria(&path);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].measured, 9.0);
    }

    #[test]
    fn pair_measurements_are_read_back_in_order_beside_the_figures() {
        let dir = std::env::temp_dir().join(format!("mesh-report-pairs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.jsonl");
        let direct = PairFigure::new("client-1", "client-2", Reach::Direct, "tailscale ping")
            .via("192.168.1.1:41641")
            .rtt(std::time::Duration::from_micros(410));
        let refused = PairFigure::new("client-2", "client-1", Reach::Refused, "TCP 8080").under("the built-in ACL policy (P7)");
        let lines = [
            Measurement::Pair(direct.clone()),
            Measurement::Figure(Figure::new("P2-direct-restored", "direct path back", 0.014, "s")),
            Measurement::Pair(refused.clone()),
        ]
        .map(|m| serde_json::to_string(&m).unwrap());
        std::fs::write(&path, lines.join("\n")).unwrap();
        let (pairs, figures) = (read_pairs(&path), read_figures(&path));
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(pairs, vec![direct, refused]);
        assert_eq!(figures.len(), 1);
        assert!(lines[0].contains("\"reach\":\"direct\"") && !lines[0].contains("condition"), "{}", lines[0]);
        assert!((pairs[0].rtt_ms.unwrap() - 0.41).abs() < 1e-9);
    }

    #[test]
    fn a_report_from_before_pairs_reads_with_none() {
        let old = r#"{"backend":"netns","lab":"x","date":"d","versions":{"headscale":"0.29.3","tailscale":"1.98.10","tailscaled":"1.98.10"},
            "passed":true,"seconds":1.0,"timings":{"network":0.1,"headscale_ready":1.0,"registered":{},"converged_after_registration":1.0,
            "converged_since_start":2.0},"peak_rss_mib":1.0,"scenarios":[],"criteria":[],"figures":[],"artifacts":"/x"}"#;
        let report: Report = serde_json::from_str(old).unwrap();
        assert!(report.pairs.is_empty() && report.spec.is_none());
    }

    #[test]
    fn a_skipped_criterion_is_measured_but_neither_passed_nor_failed() {
        let c = Criterion::at_most("SC-002", "ping", 61.5, 50.0, "ms").unless(Some("emulated hosts".into()));
        assert_eq!(c.verdict(), "skipped");
        assert!(c.check().is_ok());
        assert_eq!(Criterion::at_most("SC-002", "ping", 61.5, 50.0, "ms").verdict(), "FAILED");
    }
}
