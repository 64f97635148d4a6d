//! The lab scenarios share: built once per test process on first use, or attached to when
//! `MESH_LAB` names a running one (`cargo mesh up`), and removed when the process exits.
//!
//! A `static`'s Drop never runs, so removal is an `atexit` hook: libtest returns from main
//! (or calls `exit`) after passing and failing tests alike, and both run it. Services die
//! with the process anyway (parent-death signal); a lab left by a killed process is
//! reclaimed by the next run.

use crate::lab::{Lab, LabOptions};
use once_cell::sync::OnceCell;

static LAB: OnceCell<Result<&'static Lab, String>> = OnceCell::new();

/// The shared lab. Panics with the build error in every test that asks, if building failed
/// (or panicked): the build happens once a process, never again per test.
pub fn lab() -> &'static Lab {
    let lab = LAB.get_or_init(|| {
        // A panic while building is kept like an error: left to unwind out of `get_or_init`, it
        // would leave the cell empty, and the next test would build again.
        let built = std::panic::catch_unwind(|| match std::env::var("MESH_LAB") {
            Ok(name) if !name.is_empty() => Lab::attach(&name),
            _ => LabOptions::from_env().and_then(Lab::build),
        });
        let built = built.unwrap_or_else(|p| Err(anyhow::anyhow!("building it panicked: {}", crate::panics::message(&*p))));
        match built {
            Ok(lab) => {
                let lab: &'static Lab = Box::leak(Box::new(lab));
                if lab.owned() {
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
