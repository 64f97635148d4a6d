//! `cargo mesh bench`: build and check a lab N times and report the median of each phase,
//! the pass count (SC-008) and the lab's memory peak: `bench.json` and `report.html` in
//! `target/mesh/bench/<date>/`, each run's own report.json and report.html in its lab's folder.

use crate::{check, table};
use anyhow::Result;
use meshlab::criteria::{SC007, SC008};
use meshlab::lab::{Lab, LabOptions};
use meshlab::report::BenchFigures;
use meshlab::{runner, say};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

pub fn run(runs: u32, json: Option<PathBuf>, from_scratch: bool) -> Result<ExitCode> {
    let options = LabOptions::from_env()?;
    let binaries = runner::build_test_binaries()?;
    let mut samples: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut criteria = Vec::new();
    if from_scratch {
        let seconds = deploy_from_scratch(&options)?;
        samples.insert("0 deployed from scratch (s)".into(), vec![seconds]);
        criteria.push(SC007.measured(seconds));
    }
    let mut passed = 0;
    let mut reports = Vec::new();
    for i in 1..=runs.max(1) {
        say!("bench run {i} of {runs}");
        let started = Instant::now();
        let lab = match Lab::build(options.clone()) {
            Ok(lab) => lab,
            Err(e) => {
                say!("run {i}: the lab did not build: {e:#}");
                continue;
            }
        };
        let t = lab.record.timings.clone();
        let outcome = check::run_all(&lab, &options, &binaries)?;
        let scenarios_s: f64 = outcome.scenarios.iter().map(|s| s.seconds).sum();
        let mut add = |k: &str, v: f64| samples.entry(k.to_string()).or_default().push(v);
        add("1 lab network up (s)", t.network);
        add("2 headscale ready (s)", t.headscale_ready);
        for (client, s) in &t.registered {
            add(&format!("3 {client} registered after registration start (s)"), *s);
        }
        add("4 mesh converged since lab start (s)", t.converged_since_start);
        add("5 scenarios (s)", scenarios_s);
        add("6 lab memory peak (MiB)", lab.peak_rss_mib());
        check::write_report(&lab, &check::report(&lab, &outcome, started), None)?;
        reports.push(lab.record.dir.join("report.json"));
        lab.teardown()?;
        add("7 whole check: lab start to teardown (s)", started.elapsed().as_secs_f64());
        if outcome.passed {
            passed += 1;
        } else {
            say!("run {i} failed; its logs: {}", lab.record.dir.display());
        }
    }
    let medians: BTreeMap<String, f64> = samples.iter().map(|(k, v)| (k.clone(), median(v))).collect();
    let mut rows = vec![vec!["phase".to_string(), "median".into(), "min".into(), "max".into()]];
    for (k, v) in &samples {
        let (min, max) = v.iter().fold((f64::MAX, f64::MIN), |(a, b), x| (a.min(*x), b.max(*x)));
        rows.push(vec![k[2..].to_string(), format!("{:.2}", medians[k]), format!("{min:.2}"), format!("{max:.2}")]);
    }
    println!("\n{}", table::render(&rows));
    let rate = 100.0 * f64::from(passed) / f64::from(runs.max(1));
    criteria.push(SC008.measured(rate));
    for c in &criteria {
        println!("{} {}: {:.1} {} (limit {} {}) {}", c.id, c.name, c.measured, c.unit, c.limit, c.unit, c.verdict());
    }
    println!("{passed}/{runs} runs passed first time");
    let ok = criteria.iter().all(|c| c.ok || c.skipped.is_some());
    let date = check::now_utc();
    let figures = BenchFigures { date: date.clone(), machine: machine(), runs, passed, medians, samples, criteria, reports };
    let text = serde_json::to_string_pretty(&figures)?;
    let dir = meshlab::paths::target_dir().join("mesh").join("bench").join(date.replace(':', ""));
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("bench.json"), &text)?;
    let page = dir.join("report.html");
    meshlab::html::write(&page, &meshlab::html::bench::page(&figures, &dir))?;
    println!("figures: {}\npage:    {}", dir.join("bench.json").display(), page.display());
    if let Some(path) = json {
        meshlab::paths::write_named_file(&path, &text)?;
        let page = meshlab::html::beside(&path);
        meshlab::html::write(&page, &meshlab::html::bench::page(&figures, &meshlab::html::folder_of(&page)))?;
        println!("figures: {}\npage:    {}", path.display(), page.display());
    }
    Ok(if ok && passed == runs { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Time a deployment from nothing: fresh Go caches, tool and VM image caches in a scratch folder (the
/// modules come again from the Go module proxy), the tools built, a lab built to a converged
/// mesh. The scratch folder is removed afterwards.
fn deploy_from_scratch(options: &LabOptions) -> Result<f64> {
    let scratch = meshlab::paths::target_dir().join("mesh").join("from-scratch");
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch)?;
    let fresh =
        [("MESH_TOOLS_DIR", "tools"), ("MESH_IMAGES_DIR", "images"), ("GOCACHE", "gocache"), ("GOMODCACHE", "gomodcache")];
    for (var, dir) in fresh {
        std::env::set_var(var, scratch.join(dir));
    }
    say!(
        "deploying from scratch: Go caches and tools in {} (this downloads and compiles headscale and tailscale)",
        scratch.display()
    );
    let started = Instant::now();
    let lab = Lab::build(options.clone());
    let seconds = started.elapsed().as_secs_f64();
    if let Ok(lab) = &lab {
        lab.teardown()?;
    }
    // The module cache is read-only by design; `go clean -modcache` is the way to remove it.
    let _ = std::process::Command::new("go").args(["clean", "-modcache"]).status();
    let _ = std::fs::remove_dir_all(&scratch);
    for (var, _) in fresh {
        std::env::remove_var(var);
    }
    lab?;
    say!("deployed from scratch in {seconds:.0}s");
    Ok(seconds)
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    match s.len() {
        0 => 0.0,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

fn machine() -> String {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().next().and_then(|l| l.split_whitespace().nth(1)).and_then(|k| k.parse::<f64>().ok()))
        .map(|kib| kib / 1024.0 / 1024.0)
        .unwrap_or(0.0);
    format!("{cores} cores, {mem:.0} GiB")
}
