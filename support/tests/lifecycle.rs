//! A lab's life: after teardown nothing of it remains — no namespace, no process, no mount,
//! no index entry — and a lab whose owner died is removed by the next run.

mod common;

use common::Snapshot;
use meshlab::lab::{Lab, LabOptions};
use meshlab::process::ProcessId;
use meshlab::registry;

#[test]
fn a_torn_down_lab_leaves_nothing_behind() {
    let lab = Lab::build(LabOptions::from_env().unwrap()).expect("a lab builds");
    let snapshot = Snapshot::take(&lab.record.run_id, &lab.record.dir);
    assert!(snapshot.leftovers().len() > 5, "a live lab has namespaces, mounts, services and a watchdog");
    lab.teardown().expect("teardown succeeds");
    assert_eq!(snapshot.leftovers(), Vec::<String>::new());
    assert!(lab.record.dir.join("hosts/headscale/logs/headscale.log").exists(), "logs are kept after teardown");
}

#[test]
fn a_lab_whose_owner_died_is_removed_by_the_next_run() {
    // A stand-in owner that is gone: the record says a dead process owns the lab.
    let lab = Lab::build(LabOptions::from_env().unwrap()).expect("a lab builds");
    let snapshot = Snapshot::take(&lab.record.run_id, &lab.record.dir);
    let mut record = lab.release();
    let mut dead = std::process::Command::new("true").spawn().unwrap();
    let pid = dead.id();
    dead.wait().unwrap();
    record.owner = ProcessId { pid, start: 0 };
    record.save().unwrap();
    // Any run's start sweeps (another test process may get there first): the lab must be gone.
    registry::reclaim_abandoned();
    assert!(registry::indexed().iter().all(|r| r.run_id != record.run_id), "lab {} is still indexed", record.run_id);
    assert_eq!(snapshot.leftovers(), Vec::<String>::new());
}
