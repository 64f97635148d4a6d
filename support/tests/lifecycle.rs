//! A lab's life: after teardown nothing of it remains — no namespace, no process, no mount,
//! no index entry — and a lab whose owner died is removed by the next run.

use meshlab::lab::{self, Lab, LabOptions, LabRecord};
use meshlab::process::ProcessId;
use std::path::Path;

fn leftovers(record: &LabRecord) -> Vec<String> {
    let mut left = Vec::new();
    let prefix = format!("mesh-{}-", record.run_id);
    if let Ok(entries) = std::fs::read_dir("/run/netns") {
        left.extend(entries.flatten().filter_map(|e| e.file_name().into_string().ok()).filter(|n| n.starts_with(&prefix)));
    }
    let lab_dir = record.dir.display().to_string();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    left.extend(mounts.lines().filter(|l| l.contains(&lab_dir)).map(|l| format!("mount {l}")));
    for host in record.spec.hosts.iter() {
        let services = record.dir.join("hosts").join(&host.name).join("services");
        for entry in std::fs::read_dir(services).into_iter().flatten().flatten() {
            let id: ProcessId = serde_json::from_slice(&std::fs::read(entry.path()).unwrap()).unwrap();
            if id.alive() {
                left.push(format!("process {} of {}", id.pid, host.name));
            }
        }
    }
    if Path::new("/run/mesh-lab").join(&record.run_id).exists() {
        left.push("index entry".into());
    }
    left
}

#[test]
fn a_torn_down_lab_leaves_nothing_behind() {
    let lab = Lab::build(LabOptions::from_env().unwrap()).expect("a lab builds");
    let record = lab.record.clone();
    assert!(leftovers(&record).len() > 5, "a live lab has namespaces, mounts and services");
    lab.teardown().expect("teardown succeeds");
    assert_eq!(leftovers(&record), Vec::<String>::new());
    assert!(record.dir.join("hosts/headscale/logs/headscale.log").exists(), "logs are kept after teardown");
}

#[test]
fn a_lab_whose_owner_died_is_removed_by_the_next_run() {
    // A stand-in owner that is gone: the record says a dead process owns the lab.
    let lab = Lab::build(LabOptions::from_env().unwrap()).expect("a lab builds");
    let mut record = lab.release();
    let mut dead = std::process::Command::new("true").spawn().unwrap();
    let pid = dead.id();
    dead.wait().unwrap();
    record.owner = ProcessId { pid, start: 0 };
    record.save().unwrap();
    // Services were started by this (live) process: they stay until the sweep stops them.
    // Any run's start sweeps (another test process may get there first): the lab must be gone.
    lab::reclaim_abandoned();
    assert!(lab::indexed().iter().all(|r| r.run_id != record.run_id), "lab {} is still indexed", record.run_id);
    assert_eq!(leftovers(&record), Vec::<String>::new());
}
