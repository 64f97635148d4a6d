//! What tests of the harness itself share: finding what a lab left on the machine.

use std::path::Path;

/// Everything of run `run_id` still on this machine: namespaces, mounts under its folder,
/// live processes in its namespaces or recorded as its services, its index entry.
pub fn leftovers(run_id: &str, lab_dir: &Path) -> Vec<String> {
    let mut left = Vec::new();
    let prefix = format!("mesh-{run_id}-");
    if let Ok(entries) = std::fs::read_dir("/run/netns") {
        left.extend(entries.flatten().filter_map(|e| e.file_name().into_string().ok()).filter(|n| n.starts_with(&prefix)));
    }
    let dir = lab_dir.display().to_string();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    left.extend(mounts.lines().filter(|l| l.contains(&dir)).map(|l| format!("mount {l}")));
    for services in std::fs::read_dir(lab_dir.join("hosts")).into_iter().flatten().flatten().map(|h| h.path().join("services")) {
        for entry in std::fs::read_dir(services).into_iter().flatten().flatten() {
            if let Ok(id) =
                serde_json::from_slice::<meshlab::process::ProcessId>(&std::fs::read(entry.path()).unwrap_or_default())
            {
                if id.alive() {
                    left.push(format!("process {} ({})", id.pid, entry.path().display()));
                }
            }
        }
    }
    if Path::new("/run/mesh-lab").join(run_id).exists() {
        left.push("index entry".into());
    }
    left
}
