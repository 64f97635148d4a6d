//! `cargo mesh matrix`: the check for several version combinations, each in a lab of its own,
//! and a grid of how each ended.
//!
//! Each combination is run as a child `mesh check` with its versions in its environment,
//! rather than by calling `check::run_all` in this process: what a check resolves once a
//! process (the tools, the budgets' backend scale, the progress clock, interrupt handlers that
//! remove its lab) stays that combination's alone, two combinations run side by side
//! (`--jobs 2`) without sharing any of it, and a combination is exactly what a user gets from
//! `MESH_HEADSCALE_VERSION=… cargo mesh check`: the same run_all, summary and report.json.

use crate::{check, table};
use anyhow::{bail, Context, Result};
use meshlab::combos::{self, Combo};
use meshlab::lab::LabOptions;
use meshlab::report::{MatrixFailure as Failure, MatrixRow as Row, Report, Status};
use meshlab::tools;
use meshlab::{runner, say, upgrade};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

pub fn run(combos: Option<String>, jobs: usize, json: Option<PathBuf>) -> Result<ExitCode> {
    let started = Instant::now();
    // Bad input first: nothing is built for a typo.
    let options = LabOptions::from_env()?;
    for program in ["headscale", "tailscale", "tailscaled"] {
        let var = tools::env_var(program);
        if std::env::var_os(&var).is_some() {
            bail!("{var} is set, but the matrix builds each combination's releases by number: unset {var}");
        }
    }
    let clients: Vec<String> = options.spec.clients().chain(options.spec.late_clients()).map(|c| c.name.clone()).collect();
    let netns = options.backend == meshlab::backend::BackendKind::Netns;
    let combos = match &combos {
        Some(text) => combos::parse(text, &clients)?,
        None if netns => combos::defaults(),
        None => {
            say!("the default mixed lab is left out: it works on the netns backend only (a VM image carries one tailscale)");
            combos::defaults().into_iter().filter(|c| !c.is_mixed()).collect()
        }
    };
    // Each combination's check rehearses an upgrade from MESH_UPGRADE_FROM to its headscale.
    if let Some(from) = meshlab::settings::version(upgrade::FROM_VAR)? {
        if let Some(c) = combos.iter().find(|c| from >= c.headscale) {
            bail!(
                "{}={from} is not older than {}'s headscale, which its upgrade rehearsal would upgrade to: drop that \
                 combination, or unset {} (each check then upgrades from {} where its headscale is newer)",
                upgrade::FROM_VAR,
                c.label(),
                upgrade::FROM_VAR,
                upgrade::DEFAULT_FROM
            );
        }
    }
    if !netns {
        if let Some(mixed) = combos.iter().find(|c| c.is_mixed()) {
            bail!(
                "--combos: {} is a mixed lab, which works on the netns backend only (a VM image carries one tailscale): \
                 drop it, or use MESH_BACKEND=netns",
                mixed.label()
            );
        }
    }
    let dir = meshlab::paths::target_dir().join("mesh").join("matrix").join(check::now_utc().replace(':', ""));
    std::fs::create_dir_all(&dir).with_context(|| format!("making {}", dir.display()))?;
    say!("matrix of {} combinations, {jobs} at a time; its files: {}", combos.len(), dir.display());

    // Every release, once, before the first lab: a build takes minutes and would otherwise
    // be timed as part of a combination (and two checks would wait on one build's lock).
    let not_built = build_releases(&combos);
    runner::build_test_binaries()?;

    let rows: Mutex<BTreeMap<usize, Row>> = Mutex::new(BTreeMap::new());
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..jobs.min(combos.len()) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(combo) = combos.get(i) else { break };
                let log = dir.join(format!("{}-{}.log", i + 1, combo.label().replace(['/', '+'], "_")));
                let row = match not_built.get(&combo.label()) {
                    Some(cause) => Row {
                        combination: combo.label(),
                        versions: None,
                        verdict: "not built".into(),
                        scenarios: "0/0".into(),
                        first_failure: Some(Failure { scenario: "—".into(), cause: cause.clone() }),
                        seconds: 0.0,
                        report: None,
                        log,
                    },
                    None => {
                        say!("{} ({} of {}) starts; its output: {}", combo.label(), i + 1, combos.len(), log.display());
                        let row = run_one(combo, &clients, &dir.join(format!("{}-report.json", i + 1)), log);
                        say!("{} {} in {:.1}s", row.combination, row.verdict, row.seconds);
                        row
                    }
                };
                rows.lock().unwrap().insert(i, row);
            });
        }
    });
    let rows: Vec<Row> = rows.into_inner().unwrap().into_values().collect();
    print_grid(&rows, started);
    let text = serde_json::to_string_pretty(&rows)?;
    let seconds = started.elapsed().as_secs_f64();
    let in_dir = dir.join("matrix.json");
    std::fs::write(&in_dir, &text)?;
    let page = dir.join("report.html");
    meshlab::html::write(&page, &meshlab::html::matrix::page(&rows, seconds, &dir))?;
    println!("grid: {}\npage: {}", in_dir.display(), page.display());
    if let Some(path) = json {
        meshlab::paths::write_named_file(&path, &text)?;
        let page = meshlab::html::beside(&path);
        meshlab::html::write(&page, &meshlab::html::matrix::page(&rows, seconds, &meshlab::html::folder_of(&page)))?;
        println!("grid: {}\npage: {}", path.display(), page.display());
    }
    Ok(if rows.iter().all(|r| r.verdict == "passed") { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Build every release the combinations run, in order, once each, with progress. A release
/// that cannot be built marks its combinations `not built` (with go's cause); the rest run.
fn build_releases(combos: &[Combo]) -> BTreeMap<String, String> {
    let mut releases: Vec<tools::Release> = Vec::new();
    for release in combos.iter().flat_map(needed) {
        if !releases.iter().any(|r| r.module.name == release.module.name && r.version == release.version) {
            releases.push(release);
        }
    }
    let mut failed: Vec<(tools::Release, String)> = Vec::new();
    for (i, release) in releases.iter().enumerate() {
        let started = Instant::now();
        match tools::ensure_built(release) {
            Ok(reported) => say!(
                "release {} of {}: {} ready (reports {reported}) in {:.1}s",
                i + 1,
                releases.len(),
                release.describe(),
                started.elapsed().as_secs_f64()
            ),
            Err(e) => {
                say!("release {} of {}: {} cannot be had: {e:#}", i + 1, releases.len(), release.describe());
                failed.push((*release, format!("{e:#}")));
            }
        }
    }
    let mut not_built = BTreeMap::new();
    for combo in combos {
        let releases = needed(combo);
        let failure =
            failed.iter().find(|(f, _)| releases.iter().any(|r| r.module.name == f.module.name && r.version == f.version));
        if let Some((_, cause)) = failure {
            not_built.insert(combo.label(), cause.clone());
        }
    }
    not_built
}

/// Every release a combination's check runs: its own, and the older headscale its upgrade
/// rehearsal (P6) starts at.
fn needed(combo: &Combo) -> Vec<tools::Release> {
    let mut all = combo.releases();
    if let Ok(Some(from)) = meshlab::upgrade::from_for(combo.headscale) {
        all.push(tools::Release { module: &tools::HEADSCALE, version: from });
    }
    all
}

/// One combination: a child `mesh check` with its versions set, its output in `log`.
fn run_one(combo: &Combo, clients: &[String], report_path: &Path, log: PathBuf) -> Row {
    let started = Instant::now();
    let mut row = Row {
        combination: combo.label(),
        versions: None,
        verdict: "failed".into(),
        scenarios: "0/0".into(),
        first_failure: None,
        seconds: 0.0,
        report: None,
        log: log.clone(),
    };
    let status = (|| -> Result<std::process::ExitStatus> {
        let out = std::fs::File::create(&log)?;
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.args(["check", "--json"]).arg(report_path).envs(combo.env(clients));
        Ok(cmd.stdin(Stdio::null()).stdout(out.try_clone()?).stderr(out).status()?)
    })();
    row.seconds = started.elapsed().as_secs_f64();
    let output = std::fs::read_to_string(&log).unwrap_or_default();
    let report: Option<Report> = std::fs::read(report_path).ok().and_then(|b| serde_json::from_slice(&b).ok());
    match (&status, report) {
        (Ok(status), Some(report)) => {
            let count = |status: Status| report.scenarios.iter().filter(|s| s.status == status).count();
            let skipped = match count(Status::Skipped) {
                0 => String::new(),
                n => format!(" ({n} skipped)"),
            };
            row.scenarios = format!("{}/{}{skipped}", count(Status::Passed), report.scenarios.len());
            row.verdict = if status.success() && report.passed { "passed" } else { "failed" }.into();
            let removed = output.lines().find(|l| l.contains(check::REMOVED_FROM_OUTSIDE));
            row.first_failure = report.scenarios.iter().find(|s| s.status == Status::Failed).map(|s| Failure {
                scenario: s.name.clone(),
                cause: match removed {
                    Some(line) => one_line(line),
                    None => cause_in(&s.log_path(Path::new(&report.artifacts))),
                },
            });
            row.report = Some(Path::new(&report.artifacts).join("report.json"));
            row.versions = Some(report.versions);
        }
        // No report: it stopped before it had a lab (its own error says why).
        (Ok(_), None) => {
            let cause = output.lines().rev().find(|l| l.contains("mesh: error:")).unwrap_or("it wrote no report");
            row.first_failure = Some(Failure {
                scenario: "before any scenario".into(),
                cause: one_line(cause.trim_start_matches("mesh: error: ")),
            });
        }
        (Err(e), _) => row.first_failure = Some(Failure { scenario: "—".into(), cause: format!("could not run: {e:#}") }),
    }
    row
}

/// The one line that says why a scenario failed, from its log: the test's `Error: …` with its
/// causes (anyhow's `Caused by:` lines, empty output left out), a panic's message, or the time
/// limit.
fn cause_in(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    if let Some(at) = lines.iter().position(|l| l.contains("Error: ")) {
        let mut parts = vec![lines[at].split_once("Error: ").map(|(_, e)| e.trim()).unwrap_or_default()];
        let causes = lines[at + 1..].iter().skip_while(|l| l.trim().is_empty() || l.trim() == "Caused by:");
        parts.extend(causes.take_while(|l| !l.trim().is_empty()).map(|l| l.trim()).filter(|l| !l.ends_with("(empty)")));
        return one_line(&parts.join(": "));
    }
    let found = lines
        .iter()
        .position(|l| l.contains("panicked at"))
        .and_then(|i| lines.get(i + 1).copied())
        .or_else(|| lines.iter().find(|l| l.contains("killed after its time limit")).copied())
        .unwrap_or("see its log");
    one_line(found)
}

fn one_line(text: &str) -> String {
    const MAX: usize = 240;
    let text = text.trim();
    match text.char_indices().nth(MAX) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

fn print_grid(rows: &[Row], started: Instant) {
    let mut grid = vec![["combination", "headscale", "tailscale", "verdict", "scenarios", "first failure", "time"]
        .map(String::from)
        .to_vec()];
    for r in rows {
        let (hs, ts) = match &r.versions {
            Some(v) => (v.headscale.clone(), v.describe_tailscale().trim_start_matches("tailscale ").to_string()),
            None => ("—".into(), "—".into()),
        };
        let failure = r.first_failure.as_ref().map(|f| format!("{}: {}", f.scenario, f.cause)).unwrap_or_else(|| "—".into());
        grid.push(vec![
            r.combination.clone(),
            hs,
            ts,
            r.verdict.clone(),
            r.scenarios.clone(),
            failure,
            format!("{:.0}s", r.seconds),
        ]);
    }
    println!("\n{}", table::render(&grid));
    let passed = rows.iter().filter(|r| r.verdict == "passed").count();
    println!(
        "{} — {passed}/{} combinations passed in {:.0}s",
        if passed == rows.len() { "PASSED" } else { "FAILED" },
        rows.len(),
        started.elapsed().as_secs_f64()
    );
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_failures_cause_is_its_error_and_what_caused_it() {
        let dir = std::env::temp_dir().join(format!("mesh-matrix-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("p2.log");
        let text = "\nrunning 1 test\ntest relays ... Error: client-1 pinging client-2 through DERP\n\nCaused by:\n    on \
                    client-1: `ping` exited 2\n      stdout: (empty)\n      stderr: ping: connect: No route to host\n\nStack \
                    backtrace:\n   0: x\n";
        std::fs::write(&log, text).unwrap();
        let cause = super::cause_in(&log);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            cause,
            "client-1 pinging client-2 through DERP: on client-1: `ping` exited 2: stderr: ping: connect: No route to host"
        );
    }
}
