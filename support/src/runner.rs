//! Running the scenario tests from outside, as `cargo mesh check` does: build the test
//! binaries once, list their tests in priority order, run each alone against one lab
//! (`MESH_LAB`), and stop at the first failure. The tests stay the only place scenarios are
//! written; `cargo test` and `cargo mesh check` run the same code.

use crate::exec::tail;
use crate::report::{log_file_name, Scenario, Status, CRITERIA_FILE_VAR};
use crate::{budget, say};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// One `tests/pN_….rs` binary.
#[derive(Debug, Clone)]
pub struct TestBinary {
    /// `p1_connectivity`
    pub name: String,
    pub path: PathBuf,
}

impl TestBinary {
    /// `P1` from `p1_connectivity`.
    pub fn priority(&self) -> String {
        self.name.split('_').next().unwrap_or_default().to_uppercase()
    }

    /// `10` from `p10_node_lifecycle`: the order priorities run in.
    pub fn priority_number(&self) -> u32 {
        self.name.split('_').next().and_then(|p| p.strip_prefix('p')).and_then(|n| n.parse().ok()).unwrap_or(u32::MAX)
    }
}

fn workspace_root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// Build the scenario test binaries (`tests/p*_*.rs`) and return them in priority order.
pub fn build_test_binaries() -> Result<Vec<TestBinary>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    say!("building the scenario tests (cargo test --no-run) …");
    // The tests get the backends this harness was built with.
    let features = crate::backend::CARGO_FEATURES;
    let out = Command::new(&cargo)
        .args(["test", "--no-run", "--tests", "--package", "headscale-mesh-suite", "--message-format=json-render-diagnostics"])
        .args(features)
        .current_dir(workspace_root())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {cargo} test --no-run"))?;
    if !out.status.success() {
        bail!("the scenario tests do not build: see the compiler's messages above");
    }
    let mut binaries: Vec<TestBinary> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| {
            m["reason"] == "compiler-artifact" && m["target"]["kind"].as_array().is_some_and(|k| k.iter().any(|k| k == "test"))
        })
        .filter_map(|m| {
            Some(TestBinary { name: m["target"]["name"].as_str()?.to_string(), path: m["executable"].as_str()?.into() })
        })
        .filter(|b| is_scenario_binary(&b.name))
        .collect();
    // By priority number, then name: p10 after p9, not between p0 and p1.
    binaries.sort_by_key(|b| (b.priority_number(), b.name.clone()));
    binaries.dedup_by_key(|b| b.name.clone());
    if binaries.is_empty() {
        bail!("no scenario tests found (tests/p<N>_<name>.rs)");
    }
    Ok(binaries)
}

/// `p1_connectivity`, `p2_cross_network` …: a priority file.
fn is_scenario_binary(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next() == Some('p') && chars.next().is_some_and(|c| c.is_ascii_digit()) && name.contains('_')
}

/// The tests of one binary, in the order libtest lists them.
pub fn list_tests(binary: &TestBinary) -> Result<Vec<String>> {
    let out = Command::new(&binary.path).args(["--list", "--format", "terse"]).output()?;
    if !out.status.success() {
        bail!("listing the tests of {}: {}", binary.name, String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| l.strip_suffix(": test")).map(str::to_string).collect())
}

/// The outcome of running scenarios: each one's status, and where their output is.
pub struct RunOutcome {
    pub scenarios: Vec<Scenario>,
    pub passed: bool,
}

/// Wait for a scenario process within `limit`; past it, kill it and say so in its log.
fn wait_within(child: &mut std::process::Child, limit: std::time::Duration, log: &Path) -> Result<bool> {
    // The poll ends with its status, or with an error of waiting for it (returned as such);
    // only running out of `limit` is an error of the poll.
    let ended = crate::poll::until_every("the scenario's process to exit", limit, budget::exit_poll_interval(), || {
        match child.try_wait() {
            Ok(Some(status)) => Ok(Ok(status)),
            Ok(None) => anyhow::bail!("still running"),
            Err(e) => Ok(Err(e)),
        }
    });
    match ended {
        Ok(status) => Ok(status?.success()),
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            let note = format!("\n[mesh] killed after its time limit of {limit:.0?}\n");
            let _ = std::fs::OpenOptions::new()
                .append(true)
                .open(log)
                .and_then(|mut f| std::io::Write::write_all(&mut f, note.as_bytes()));
            Ok(false)
        }
    }
}

/// Scenarios that break the mesh on purpose (`*_resilience`), rebuild its server
/// (`*_upgrade`), run it under an ACL policy (`*_policy`, and Tailscale SSH's `*_ssh`, whose
/// rule is the policy's) or expire and remove its nodes with
/// a short ephemeral timeout (`*_lifecycle`) get a lab of their own, so the shared lab's other
/// scenarios never see the damage, the policy or the settings.
pub fn needs_own_lab(binary: &TestBinary) -> bool {
    binary.name.ends_with("_resilience") || rehearses_upgrade(binary) || runs_policy(binary) || runs_lifecycle(binary)
}

/// The node lifecycle's scenarios (`*_lifecycle`): their own lab's server has the shortest
/// ephemeral inactivity timeout headscale accepts.
pub fn runs_lifecycle(binary: &TestBinary) -> bool {
    binary.name.ends_with("_lifecycle")
}

/// The ACL policy's scenarios (`*_policy`) and Tailscale SSH's (`*_ssh`, whose rule is the
/// policy's `ssh` section): their own lab's server runs the policy.
pub fn runs_policy(binary: &TestBinary) -> bool {
    binary.name.ends_with("_policy") || runs_ssh(binary)
}

/// Tailscale SSH's scenarios (`*_ssh`): a policy lab of their own, as P7's, since they turn on
/// a client's SSH server and run commands through it.
pub fn runs_ssh(binary: &TestBinary) -> bool {
    binary.name.ends_with("_ssh")
}

/// The upgrade rehearsal (`*_upgrade`): its own lab's server starts at an older headscale.
pub fn rehearses_upgrade(binary: &TestBinary) -> bool {
    binary.name.ends_with("_upgrade")
}

/// Run every test of `binaries` alone, in order, against the lab in `lab_dir`; after the
/// first failure (or from the start, if `skip` says an earlier one failed) the rest are
/// marked `not run`. Each test's output goes to `logs_dir`.
/// The scenarios of `binaries`, every one reported skipped for `reason` and none run.
pub fn skip_scenarios(binaries: &[TestBinary], reason: &str) -> Result<RunOutcome> {
    let mut scenarios = Vec::new();
    for binary in binaries {
        for test in list_tests(binary)? {
            let id = format!("{}::{test}", binary.name);
            let name = format!("{} {}", binary.priority(), test.replace("::", " ").replace('_', " "));
            scenarios.push(Scenario { id, name, status: Status::Skipped, seconds: 0.0, reason: Some(reason.to_string()) });
        }
    }
    Ok(RunOutcome { passed: true, scenarios })
}

pub fn run_scenarios(
    binaries: &[TestBinary],
    lab_dir: &Path,
    logs_dir: &Path,
    criteria_file: &Path,
    skip: bool,
) -> Result<RunOutcome> {
    std::fs::create_dir_all(logs_dir)?;
    let mut scenarios = Vec::new();
    let mut failed = skip;
    for binary in binaries {
        for test in list_tests(binary)? {
            let id = format!("{}::{test}", binary.name);
            let name = format!("{} {}", binary.priority(), test.replace("::", " ").replace('_', " "));
            if failed {
                scenarios.push(Scenario { id, name, status: Status::NotRun, seconds: 0.0, reason: None });
                continue;
            }
            let log_path = logs_dir.join(log_file_name(&id));
            let log = std::fs::File::create(&log_path)?;
            let started = Instant::now();
            let mut child = Command::new(&binary.path)
                .args(["--exact", &test, "--test-threads=1", "--nocapture"])
                .env("MESH_LAB", lab_dir)
                .env(CRITERIA_FILE_VAR, criteria_file)
                .env("MESH_QUIET", "1")
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .with_context(|| format!("running {}", binary.path.display()))?;
            let passed = wait_within(&mut child, budget::scenario(), &log_path)?;
            let seconds = started.elapsed().as_secs_f64();
            let output = std::fs::read_to_string(&log_path).unwrap_or_default();
            let reason = if passed { crate::report::skipped_in(&output) } else { None };
            let status = match (passed, &reason) {
                (true, Some(_)) => Status::Skipped,
                (true, None) => Status::Passed,
                (false, _) => Status::Failed,
            };
            say!(
                "{:<70} {} ({seconds:.1}s){}",
                name,
                if passed { status.to_string() } else { "FAILED".into() },
                reason.as_ref().map(|r| format!(": {r}")).unwrap_or_default()
            );
            if !passed {
                eprintln!(
                    "\n{name} failed; its output ({}):\n    {}\n",
                    log_path.display(),
                    tail(&without_backtraces(&output), 30)
                );
                failed = true;
            }
            scenarios.push(Scenario { id, name, status, seconds, reason });
        }
    }
    Ok(RunOutcome { passed: !failed, scenarios })
}

/// A failed test's output with its backtraces cut to one line each (`RUST_BACKTRACE=1` is
/// common among Rust users, and 30 lines of frames would push the error itself out of the
/// excerpt); the log keeps them whole.
pub fn without_backtraces(output: &str) -> String {
    let mut kept = Vec::new();
    let mut frames = None::<usize>;
    for line in output.lines() {
        let trimmed = line.trim_start();
        let is_header = trimmed.eq_ignore_ascii_case("stack backtrace:");
        let in_trace = frames.is_some()
            && (trimmed.split_once(": ").is_some_and(|(n, _)| n.parse::<u32>().is_ok())
                || trimmed.starts_with("at ")
                || trimmed.starts_with("note: Some details are omitted"));
        match (is_header, in_trace, frames) {
            (true, _, _) => frames = Some(0),
            (false, true, Some(n)) => frames = Some(n + 1),
            (false, _, Some(n)) => {
                kept.push(format!("[backtrace of {n} lines left out; the log has it]"));
                frames = None;
                if !trimmed.is_empty() {
                    kept.push(line.to_string());
                }
            }
            (false, _, None) => kept.push(line.to_string()),
        }
    }
    if let Some(n) = frames {
        kept.push(format!("[backtrace of {n} lines left out; the log has it]"));
    }
    kept.join("\n")
}

impl Default for RunOutcome {
    fn default() -> RunOutcome {
        RunOutcome::new()
    }
}

impl RunOutcome {
    pub fn new() -> RunOutcome {
        RunOutcome { scenarios: Vec::new(), passed: true }
    }

    pub fn extend(&mut self, more: RunOutcome) {
        self.scenarios.extend(more.scenarios);
        self.passed &= more.passed;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_resilience_upgrade_policy_ssh_and_lifecycle_scenarios_get_a_lab_of_their_own() {
        let b = |n: &str| super::TestBinary { name: n.into(), path: "/x".into() };
        assert!(super::needs_own_lab(&b("p5_resilience")));
        assert!(super::needs_own_lab(&b("p6_upgrade")) && super::rehearses_upgrade(&b("p6_upgrade")));
        assert!(!super::rehearses_upgrade(&b("p5_resilience")));
        assert!(!super::needs_own_lab(&b("p2_cross_network")));
        assert!(super::needs_own_lab(&b("p7_policy")) && super::runs_policy(&b("p7_policy")));
        assert!(!super::runs_policy(&b("p6_upgrade")));
        assert!(super::needs_own_lab(&b("p10_node_lifecycle")) && super::runs_lifecycle(&b("p10_node_lifecycle")));
        assert!(!super::runs_lifecycle(&b("p7_policy")) && !super::runs_policy(&b("p10_node_lifecycle")));
        assert!(super::needs_own_lab(&b("p9_ssh")) && super::runs_policy(&b("p9_ssh")) && super::runs_ssh(&b("p9_ssh")));
        assert!(
            !super::runs_ssh(&b("p7_policy")) && !super::runs_lifecycle(&b("p9_ssh")) && !super::rehearses_upgrade(&b("p9_ssh"))
        );
        assert!(!super::needs_own_lab(&b("p9_sshd_banner")) && !super::runs_ssh(&b("p9_sshd_banner")));
    }

    #[test]
    fn priorities_run_in_the_order_of_their_numbers() {
        let mut names: Vec<super::TestBinary> = ["p10_node_lifecycle", "p1_connectivity", "p0_lab_isolation", "p7_policy"]
            .iter()
            .map(|n| super::TestBinary { name: n.to_string(), path: "/x".into() })
            .collect();
        names.sort_by_key(|b| (b.priority_number(), b.name.clone()));
        let order: Vec<&str> = names.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(order, ["p0_lab_isolation", "p1_connectivity", "p7_policy", "p10_node_lifecycle"]);
    }

    #[test]
    fn scenario_binaries_are_the_priority_files() {
        assert!(super::is_scenario_binary("p1_connectivity"));
        assert!(super::is_scenario_binary("p5_resilience"));
        assert!(!super::is_scenario_binary("harness_teardown"));
        assert!(!super::is_scenario_binary("perf"));
    }

    #[test]
    fn a_failure_excerpt_keeps_the_error_and_its_causes_and_leaves_backtraces_out() {
        let output = "test x ... Error: client-2 pinging client-1\n\nCaused by:\n    0: 3 of 5 pings answered\n    1: late\n\n\
                      Stack backtrace:\n   0: anyhow::error::<impl anyhow::Error>::msg\n             at /cargo/anyhow/src/error.rs:83:36\n\
                      \x20  1: p1::pings\n             at ./tests/p1.rs:78:21\nFAILED\n\nfailures:\n";
        let cut = super::without_backtraces(output);
        assert!(cut.contains("Caused by:\n    0: 3 of 5 pings answered\n    1: late"), "{cut}");
        assert!(cut.contains("[backtrace of 4 lines left out; the log has it]\nFAILED"), "{cut}");
        assert!(!cut.contains("anyhow::error"), "{cut}");
        let panic = "thread 'x' panicked at src/lib.rs:3:5:\nboom\nstack backtrace:\n   0: rust_begin_unwind\n\
                     note: Some details are omitted, run with `RUST_BACKTRACE=full` for a verbose backtrace.\n";
        assert_eq!(
            super::without_backtraces(panic),
            "thread 'x' panicked at src/lib.rs:3:5:\nboom\n[backtrace of 2 lines left out; the log has it]"
        );
    }

    /// nextest's config names the files that build labs of their own in its filters (the
    /// shared lab's setup script and test group leave them out): the same files as here.
    #[test]
    fn nextest_leaves_the_same_files_out_of_the_shared_lab() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let config = std::fs::read_to_string(root.join(".config/nextest.toml")).unwrap();
        let excluded: Vec<&str> = config
            .lines()
            .filter(|l| l.starts_with("filter = ") && l.contains("!binary(/_("))
            .map(|l| l.split("!binary(/_(").nth(1).unwrap().split(")$/)").next().unwrap())
            .collect();
        assert!(excluded.len() >= 2, "the shared lab's script and test group filter files out: {excluded:?}");
        let mut files = 0;
        for entry in std::fs::read_dir(root.join("tests")).unwrap().flatten() {
            let name = entry.file_name().to_string_lossy().trim_end_matches(".rs").to_string();
            if !super::is_scenario_binary(&name) {
                continue;
            }
            files += 1;
            let own = super::needs_own_lab(&super::TestBinary { name: name.clone(), path: "/x".into() });
            for alternatives in &excluded {
                let left_out = alternatives.split('|').any(|suffix| name.ends_with(&format!("_{suffix}")));
                assert_eq!(left_out, own, "{name}: nextest's filter and runner::needs_own_lab disagree");
            }
        }
        assert!(files >= 8, "the scenario files are found: {files}");
    }
}
