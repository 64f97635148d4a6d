//! A lab whose build fails — a budget runs out, a helper thread panics, the building thread
//! itself panics — is built once a process: every test that asks for it fails at once with the
//! same error, and nothing of the lab is left on the machine.
//!
//! Each case runs this file's own binary again as a child process, with the fault set in its
//! environment; the child's three tests ask for the shared lab as scenarios do. They are
//! `#[ignore]`d, so that only these cases run them.

mod common;

use common::Snapshot;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// The tests of the child process: all three ask for the lab, at once.
const CHILD_TESTS: &str = "child_asks_for_the_lab_";
const CHILDREN: usize = 3;
/// A failed build's teardown is done before the child exits; its watchdog is stopped by it.
const GONE_BUDGET: Duration = Duration::from_secs(10);

#[test]
#[ignore = "a child of the failed-build cases, which run it with a fault set"]
fn child_asks_for_the_lab_1() {
    meshlab::fixture::lab();
}

#[test]
#[ignore = "a child of the failed-build cases, which run it with a fault set"]
fn child_asks_for_the_lab_2() {
    meshlab::fixture::lab();
}

#[test]
#[ignore = "a child of the failed-build cases, which run it with a fault set"]
fn child_asks_for_the_lab_3() {
    meshlab::fixture::lab();
}

/// What a child process did: the labs it began to build, and each test's error.
struct ChildRun {
    builds: Vec<(String, PathBuf)>,
    errors: Vec<String>,
    output: String,
}

fn run_child(env: &[(&str, &str)]) -> ChildRun {
    let out = Command::new(std::env::current_exe().expect("this test's binary"))
        .args(["--ignored", "--nocapture", "--test-threads", &CHILDREN.to_string(), CHILD_TESTS])
        .env_remove("MESH_LAB")
        .env_remove("MESH_QUIET")
        .env_remove("MESH_INJECT_PANIC")
        .env_remove("MESH_TIME_SCALE")
        // The errors are compared whole: no backtrace between them.
        .env("RUST_BACKTRACE", "0")
        .envs(env.iter().copied())
        .output()
        .expect("the child runs");
    let output = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "the child's tests passed with {env:?}, so no fault happened:\n{output}");
    let builds = output
        .lines()
        .filter_map(|l| l.split("building lab ").nth(1))
        .filter_map(|rest| Some((rest.split_whitespace().next()?.to_string(), PathBuf::from(rest.rsplit("its files: ").next()?))))
        .collect();
    // Each test's panic message, whole (an error may have lines of its own, one a VM), up to
    // what libtest or the harness prints next.
    let errors = output
        .split("the lab could not be built: ")
        .skip(1)
        .map(|rest| {
            let end = ["\nnote: ", "\nthread '", "\nmesh [", "\ntest ", "\n\n"].iter().filter_map(|m| rest.find(m)).min();
            rest[..end.unwrap_or(rest.len())].trim_end().to_string()
        })
        .collect();
    ChildRun { builds, errors, output }
}

/// One build, the same error in every test, saying one of `causes`; nothing of the lab left.
fn assert_one_build_one_error_nothing_left(env: &[(&str, &str)], causes: &[&str]) {
    let run = run_child(env);
    assert_eq!(run.builds.len(), 1, "with {env:?}, expected one build attempt; saw {:?}:\n{}", run.builds, run.output);
    assert_eq!(run.errors.len(), CHILDREN, "with {env:?}, expected every test to fail with the build's error:\n{}", run.output);
    assert!(run.errors.iter().all(|e| *e == run.errors[0]), "with {env:?}, the tests failed differently: {:#?}", run.errors);
    assert!(
        causes.iter().any(|c| run.errors[0].contains(c)),
        "with {env:?}, expected the error to say one of {causes:?}; it says: {}",
        run.errors[0]
    );
    let (run_id, dir) = &run.builds[0];
    let lab = Snapshot::take(run_id, dir);
    assert_eq!(lab.await_gone(GONE_BUDGET), Vec::<String>::new(), "the failed build of lab {run_id} ({env:?}) left pieces");
}

#[test]
fn a_build_out_of_budget_is_tried_once_and_leaves_nothing() {
    // Every budget a hundredth: headscale is not ready within its 0.3 s, or a client's first
    // command is killed at its 0.2 s, whichever comes first.
    assert_one_build_one_error_nothing_left(&[("MESH_TIME_SCALE", "0.01")], &["not within its budget", "at its time limit"]);
}

#[test]
fn a_build_whose_helper_thread_panics_is_tried_once_and_leaves_nothing() {
    assert_one_build_one_error_nothing_left(
        &[("MESH_INJECT_PANIC", "registration")],
        &["its registration thread panicked: MESH_INJECT_PANIC=registration"],
    );
}

#[test]
fn a_build_that_panics_is_tried_once_and_leaves_nothing() {
    assert_one_build_one_error_nothing_left(
        &[("MESH_INJECT_PANIC", "build")],
        &["building it panicked: MESH_INJECT_PANIC=build"],
    );
}

/// The same on VMs, one case after the other (each starts five VMs): VMs that cannot answer SSH
/// within their budget, and an SSH wait that panics.
#[cfg(feature = "libvirt")]
#[test]
fn a_failed_vm_build_is_tried_once_and_leaves_no_vm_network_or_qemu() {
    let vm = ("MESH_BACKEND", "libvirt");
    // A tenth of every budget: the first VM gets a few seconds where it needs most of a minute.
    assert_one_build_one_error_nothing_left(&[vm, ("MESH_TIME_SCALE", "0.1")], &["VMs did not answer SSH"]);
    assert_one_build_one_error_nothing_left(
        &[vm, ("MESH_INJECT_PANIC", "vm-boot")],
        &["its SSH wait thread panicked: MESH_INJECT_PANIC=vm-boot"],
    );
}
