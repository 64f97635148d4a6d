//! The lab scenarios share: built once per test process on first use, or attached to when
//! `MESH_LAB` names a running one (`cargo mesh up`), and removed when the process exits.
//!
//! A `static`'s Drop never runs, so removal is an `atexit` hook: libtest returns from main
//! (or calls `exit`) after passing and failing tests alike, and both run it. Services die
//! with the process anyway (parent-death signal); a lab left by a killed process is
//! reclaimed by the next run.

use crate::lab::{Lab, LabOptions};
use crate::upgrade::Plan;
use anyhow::bail;
use once_cell::sync::OnceCell;

/// A process has one lab: the shared one, or the upgrade rehearsal's.
static LAB: OnceCell<Result<&'static Lab, String>> = OnceCell::new();

/// The shared lab. Panics with the build error in every test that asks, if building failed
/// (or panicked): the build happens once a process, never again per test.
pub fn lab() -> &'static Lab {
    once(|| LabOptions::from_env().and_then(Lab::build), |_| Ok(()))
}

/// The upgrade rehearsal's lab (P6), its server started at the older headscale; `None` when
/// this run cannot rehearse an upgrade (the backend, the versions), after saying why
/// (`report::skip`). Attached to when `MESH_LAB` names one that `cargo mesh check` built for it.
pub fn upgrade_lab() -> Option<&'static Lab> {
    let backend = crate::backend::BackendKind::from_env().expect("MESH_BACKEND names a backend");
    let from = match Plan::from_env(backend) {
        Ok(Plan::Rehearse { from, .. }) => from,
        Ok(Plan::Skip(reason)) => {
            crate::report::skip(&reason);
            return None;
        }
        Err(e) => panic!("{e:#}"),
    };
    let build = || LabOptions::from_env().and_then(|o| Lab::build(LabOptions { server_from: Some(from), ..o }));
    Some(once(build, |lab| {
        if lab.record.tools.upgrade_from.is_none() {
            bail!(
                "MESH_LAB names lab {}, whose server did not start at an older headscale: unset MESH_LAB (the test builds \
                 its own), or let `cargo mesh check` build one",
                lab.record.run_id
            );
        }
        Ok(())
    }))
}

/// P7's lab: its server runs the ACL policy (`MESH_POLICY`, or the built-in one) and each
/// client registers as its `MESH_NODES` user or tag. Attached to when `MESH_LAB` names one
/// built with a policy. The guard serializes P7's tests within a process: one of them rewrites
/// the policy, and the others must not see it meanwhile.
pub fn policy_lab() -> (&'static Lab, std::sync::MutexGuard<'static, ()>) {
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let guard = ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let build = || LabOptions::from_env().and_then(LabOptions::under_policy).and_then(Lab::build);
    let lab = once(build, |lab| {
        if lab.record.policy.is_none() {
            bail!(
                "MESH_LAB names lab {}, which runs without an ACL policy: unset MESH_LAB (the test builds its own), or start \
                 one with `cargo mesh up --policy FILE` (or MESH_NODES set)",
                lab.record.run_id
            );
        }
        Ok(())
    });
    (lab, guard)
}

/// P10's lab: node lifecycle. Its headscale runs with the shortest ephemeral inactivity
/// timeout it accepts (`LabOptions::for_lifecycle`), and its late client, client-4, is the one
/// the scenarios register, expire, log out and kill. The guard serializes P10's tests within a
/// process: they take turns with client-4. Attached to when `MESH_LAB` names a lab with a late
/// client (a lab with the default 30 min timeout skips what would wait it out, saying so).
pub fn lifecycle_lab() -> (&'static Lab, std::sync::MutexGuard<'static, ()>) {
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let guard = ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let build = || LabOptions::from_env().map(LabOptions::for_lifecycle).and_then(Lab::build);
    let lab = once(build, |lab| {
        if lab.record.spec.late_clients().next().is_none() {
            bail!(
                "MESH_LAB names lab {}, which has no client that joins later (a policy lab has none): unset MESH_LAB \
                 (the test builds its own), or start one with `cargo mesh up`",
                lab.record.run_id
            );
        }
        Ok(())
    });
    (lab, guard)
}

/// The process's lab: attached to (`MESH_LAB`, then checked) or built, once.
fn once(build: impl FnOnce() -> anyhow::Result<Lab>, check: impl Fn(&Lab) -> anyhow::Result<()>) -> &'static Lab {
    let lab = LAB.get_or_init(|| {
        // A panic while building is kept like an error: left to unwind out of `get_or_init`, it
        // would leave the cell empty, and the next test would build again.
        let built = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match std::env::var("MESH_LAB") {
            Ok(name) if !name.is_empty() => Lab::attach(&name).and_then(|lab| check(&lab).map(|()| lab)),
            _ => build(),
        }));
        let built = built.unwrap_or_else(|p| Err(anyhow::anyhow!("building it panicked: {}", crate::panics::message(&*p))));
        match built {
            Ok(lab) => {
                let lab: &'static Lab = Box::leak(Box::new(lab));
                if lab.owned() {
                    // Neither std nor nix registers an exit handler.
                    // SAFETY: atexit only records the pointer; `teardown_at_exit` takes no
                    // arguments, uses only the leaked 'static lab, and as an `extern "C" fn` a
                    // panic in it aborts rather than unwinding into libc.
                    unsafe { libc::atexit(teardown_at_exit) };
                }
                Ok(lab)
            }
            Err(e) => Err(format!("{e:#}")),
        }
    });
    match lab {
        Ok(lab) => lab,
        Err(e) => panic!("the lab could not be built: {e}"),
    }
}

extern "C" fn teardown_at_exit() {
    if let Some(Ok(lab)) = LAB.get() {
        // Whatever the tests' verdicts, keep the lab's last state beside its logs.
        lab.save_diagnostics();
        if let Err(e) = lab.teardown() {
            crate::say!("teardown at exit failed: {e:#}");
        }
    }
}
