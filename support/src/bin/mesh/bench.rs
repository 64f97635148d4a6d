//! `cargo mesh bench`: build and check a lab N times and report the median of each phase,
//! the pass count (SC-008) and the lab's memory peak.

use crate::{check, table};
use anyhow::Result;
use meshlab::lab::{Lab, LabOptions};
use meshlab::{runner, say};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

#[derive(Serialize)]
struct Figures {
    date: String,
    machine: String,
    runs: u32,
    passed: u32,
    /// Phase → median seconds (memory in MiB).
    medians: BTreeMap<String, f64>,
    /// Phase → every run's figure.
    samples: BTreeMap<String, Vec<f64>>,
}

pub fn run(runs: u32, json: Option<PathBuf>) -> Result<ExitCode> {
    let options = LabOptions::from_env()?;
    let binaries = runner::build_test_binaries()?;
    let mut samples: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut passed = 0;
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
    println!("SC-008 first-attempt success: {passed}/{runs} runs passed");
    let figures = Figures { date: check::now_utc(), machine: machine(), runs, passed, medians, samples };
    if let Some(path) = json {
        std::fs::write(&path, serde_json::to_string_pretty(&figures)?)?;
        println!("figures: {}", path.display());
    }
    Ok(if passed == runs { ExitCode::SUCCESS } else { ExitCode::FAILURE })
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
