//! `cargo mesh check`: one lab, every scenario in priority order, a summary and a report.

use crate::table;
use anyhow::Result;
use meshlab::lab::{Lab, LabOptions};
use meshlab::process::Lifetime;
use meshlab::report::{read_criteria, read_figures, read_pairs, Report, Status};
use meshlab::runner::{self, RunOutcome};
use meshlab::say;
use meshlab::upgrade::Plan;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

pub fn run(json: Option<PathBuf>, keep: bool) -> Result<ExitCode> {
    let started = Instant::now();
    // Bad input first, then the tests: neither a typo nor a compile error should cost a lab.
    let mut options = LabOptions::from_env()?;
    if keep {
        options.lifetime = Lifetime::Detached;
    }
    // P7's policy, judged by headscale on this machine before any lab exists: a policy it
    // rejects stops the run here, with headscale's error.
    let policy = options.policy_from_env()?;
    let tools = meshlab::tools::Tools::resolve()?;
    meshlab::policy::precheck(&policy, &tools.headscale, tools.versions.headscale_release()?, &tools.versions.headscale)?;
    if let Some(user) = &options.headscale_config {
        meshlab::userconfig::precheck(user, &tools.headscale, &tools.versions.headscale)?;
    }
    let binaries = runner::build_test_binaries()?;
    let lab = Lab::build(options.clone())?;
    let outcome = run_all(&lab, &options, &binaries)?;
    let report = report(&lab, &outcome, started);
    print_summary(&report);
    write_report(&lab, &report, json.as_ref())?;
    if !outcome.passed {
        say_if_removed_from_outside(&lab);
        let diagnostics = lab.save_diagnostics();
        say!("diagnostics saved in {}", diagnostics.display());
    }
    if !outcome.passed && keep {
        let record = lab.release();
        println!(
            "\nThe lab is kept for you to look around:\n  {mesh} shell client-1 --lab {id}\n  MESH_LAB={id} {test} --test p1_connectivity\n  {mesh} down {id}",
            id = record.run_id,
            mesh = record.backend.commands().0,
            test = record.backend.commands().1,
        );
    } else {
        lab.teardown()?;
    }
    Ok(if outcome.passed { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Every scenario binary in priority order: against `lab`, or against a lab of its own for the
/// disruptive ones. Measurements all go to `lab`'s criteria file.
pub fn run_all(lab: &Lab, options: &LabOptions, binaries: &[runner::TestBinary]) -> Result<RunOutcome> {
    let dir = &lab.record.dir;
    let (logs, criteria) = (dir.join(meshlab::report::SCENARIO_LOGS), dir.join("criteria.jsonl"));
    let mut outcome = RunOutcome::new();
    let asked = meshlab::settings::priorities()?;
    for binary in binaries {
        let group = std::slice::from_ref(binary);
        if let Some(ranges) = &asked {
            if !ranges.iter().any(|r| r.contains(&binary.priority_number())) {
                let var = meshlab::settings::PRIORITIES_VAR;
                let reason = format!("not asked for in this run ({var}={})", std::env::var(var).unwrap_or_default());
                say!("{} skipped: {reason}", binary.priority());
                outcome.extend(runner::skip_scenarios(group, &reason)?);
                continue;
            }
        }
        let own_options = own_lab_options(binary, options)?;
        if let (Some(own_options), true) = (own_options, outcome.passed) {
            if runner::runs_ssh(binary) {
                say!(
                    "{} runs commands through Tailscale SSH under the ACL policy's ssh rule: it gets a policy lab of its own",
                    binary.priority()
                );
            } else if runner::runs_policy(binary) {
                say!("{} runs the mesh under an ACL policy: it gets a lab of its own", binary.priority());
            } else if runner::runs_lifecycle(binary) {
                say!("{} expires and removes nodes, with a short ephemeral timeout: it gets a lab of its own", binary.priority());
            } else {
                say!("{} breaks the mesh or its server on purpose: it gets a lab of its own", binary.priority());
            }
            lab.set_paused(true)?;
            let result = (|| -> Result<RunOutcome> {
                let own = Lab::build(own_options)?;
                let result = runner::run_scenarios(group, &own.record.dir, &logs, &criteria, false)?;
                if !result.passed {
                    say_if_removed_from_outside(&own);
                    say!("diagnostics saved in {}", own.save_diagnostics().display());
                }
                own.teardown()?;
                Ok(result)
            })();
            lab.set_paused(false)?;
            match result {
                Ok(result) => outcome.extend(result),
                Err(e) => {
                    // Its lab is gone already (a failed build removes itself): its scenarios are
                    // not run, the run has failed, and the summary and report still follow.
                    eprintln!("\n{} could not get a lab of its own: {e:#}\n", binary.priority());
                    outcome.extend(runner::run_scenarios(group, dir, &logs, &criteria, true)?);
                }
            }
        } else {
            let skip = !outcome.passed;
            outcome.extend(runner::run_scenarios(group, dir, &logs, &criteria, skip)?);
        }
    }
    Ok(outcome)
}

/// The lab of its own a binary gets (`runner::needs_own_lab`): the upgrade rehearsal's server
/// starts at the older headscale. `None`: it runs against the shared lab — it needs no lab of
/// its own, or it is the rehearsal and this run cannot rehearse (it says why, skipped, before
/// touching any lab).
fn own_lab_options(binary: &runner::TestBinary, options: &LabOptions) -> Result<Option<LabOptions>> {
    if !runner::needs_own_lab(binary) {
        return Ok(None);
    }
    let own = LabOptions { lifetime: Lifetime::WithOwner, ..options.clone() };
    if runner::runs_policy(binary) {
        return Ok(Some(own.under_policy()?));
    }
    if runner::runs_lifecycle(binary) {
        return Ok(Some(own.for_lifecycle()));
    }
    if !runner::rehearses_upgrade(binary) {
        return Ok(Some(own));
    }
    Ok(match Plan::from_env(options.backend)? {
        Plan::Rehearse { from, .. } => Some(LabOptions { server_from: Some(from), ..own }),
        Plan::Skip(_) => None,
    })
}

/// What `cargo mesh matrix` looks for in a check's output: the lab was removed by someone else.
pub const REMOVED_FROM_OUTSIDE: &str = "was removed by another process while its scenarios ran";

/// A lab whose index entry is gone while this process still owns it was removed by another
/// process (a `cargo mesh down --all`, another checkout's CI cleaning the machine): a scenario
/// that failed then failed for that, not for the mesh. Say so.
fn say_if_removed_from_outside(lab: &Lab) {
    if !lab.record.index_entry().exists() {
        let id = &lab.record.run_id;
        eprintln!(
            "\nlab {id} {REMOVED_FROM_OUTSIDE} (its index entry {} is gone): the failure is that removal's, not the \
             mesh's; look for a `mesh down --all` run on this machine at that time\n",
            lab.record.index_entry().display()
        );
    }
}

pub fn report(lab: &Lab, outcome: &RunOutcome, started: Instant) -> Report {
    let r = &lab.record;
    Report {
        backend: r.backend.name().into(),
        lab: r.run_id.clone(),
        date: now_utc(),
        versions: r.tools.versions.clone(),
        database: lab.database_description(),
        passed: outcome.passed,
        seconds: started.elapsed().as_secs_f64(),
        timings: r.timings.clone(),
        peak_rss_mib: lab.peak_rss_mib(),
        scenarios: outcome.scenarios.clone(),
        criteria: read_criteria(&r.dir.join("criteria.jsonl")),
        figures: read_figures(&r.dir.join("criteria.jsonl")),
        pairs: read_pairs(&r.dir.join("criteria.jsonl")),
        spec: Some(r.spec.clone()),
        artifacts: r.dir.display().to_string(),
        headscale_config: r.headscale_config.is_some().then(|| lab.effective_config()),
    }
}

fn print_summary(report: &Report) {
    let mut rows = vec![vec!["scenario".to_string(), "status".into(), "seconds".into()]];
    rows.extend(report.scenarios.iter().map(|s| vec![s.name.clone(), s.status.to_string(), format!("{:.1}", s.seconds)]));
    println!("\n{}", table::render(&rows));
    let mut rows = vec![vec!["criterion".to_string(), "what".into(), "measured".into(), "limit".into(), "verdict".into()]];
    rows.extend(report.criteria.iter().map(|c| {
        vec![
            c.id.clone(),
            c.name.clone(),
            format!("{:.3} {}", c.measured, c.unit),
            format!("{} {}", c.limit, c.unit),
            c.verdict().into(),
        ]
    }));
    println!("{}", table::render(&rows));
    for c in report.criteria.iter() {
        if let Some(reason) = &c.skipped {
            println!("{} skipped: {reason}", c.id);
        }
    }
    if !report.figures.is_empty() {
        let mut rows = vec![vec!["figure".to_string(), "what".into(), "measured".into()]];
        rows.extend(report.figures.iter().map(|f| vec![f.id.clone(), f.name.clone(), format!("{:.3} {}", f.measured, f.unit)]));
        println!("{}", table::render(&rows));
    }
    if let Some(config) = &report.headscale_config {
        let path = config.path.as_deref().unwrap_or_default();
        println!("headscale configuration {path}: {} settings replaced by the lab's", config.replacements.len());
        for r in &config.replacements {
            println!("  {r}");
        }
        for line in &config.unhonoured {
            println!("  not honoured: {line}");
        }
    }
    for s in report.scenarios.iter().filter(|s| s.status == Status::Skipped) {
        println!("skipped: {} — {}", s.name, s.reason.as_deref().unwrap_or("no reason given"));
    }
    let passed = report.scenarios.iter().filter(|s| s.status == Status::Passed).count();
    let skipped = report.scenarios.iter().filter(|s| s.status == Status::Skipped).count();
    let skipped = if skipped > 0 { format!(" ({skipped} skipped)") } else { String::new() };
    println!(
        "{} — {passed}/{}{skipped} scenarios passed in {:.1}s on the {} backend; headscale {} on {}, {}; lab memory peak {:.0} MiB",
        if report.passed { "PASSED" } else { "FAILED" },
        report.scenarios.len(),
        report.seconds,
        report.backend,
        report.versions.headscale,
        report.database,
        report.versions.describe_tailscale(),
        report.peak_rss_mib
    );
}

/// `report.json` and `report.html` in the lab's folder, and at `extra` (`--json`) with its
/// page beside it (`x.json` → `x.html`).
pub fn write_report(lab: &Lab, report: &Report, extra: Option<&PathBuf>) -> Result<()> {
    let text = serde_json::to_string_pretty(report)?;
    let in_lab = lab.record.dir.join("report.json");
    std::fs::write(&in_lab, &text)?;
    let page = meshlab::html::beside(&in_lab);
    meshlab::html::write(&page, &meshlab::html::check::page(report, &lab.record.dir))?;
    println!("report: {}\npage:   {}", in_lab.display(), page.display());
    if let Some(path) = extra {
        meshlab::paths::write_named_file(path, &text)?;
        let page = meshlab::html::beside(path);
        meshlab::html::write(&page, &meshlab::html::check::page(report, &meshlab::html::folder_of(&page)))?;
        println!("report: {}\npage:   {}", path.display(), page.display());
    }
    Ok(())
}

/// `2026-11-26T15:30:00Z`, from the system clock.
pub fn now_utc() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}
