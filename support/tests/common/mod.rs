//! What tests of the harness itself share: taking stock of a live lab, then finding what of it
//! is still on the machine after it should be gone. Labs of root and of a normal user (in a
//! user namespace) alike.

// Each test file uses part of this module.
#![allow(dead_code)]

use meshlab::backend::netns::Holder;
use meshlab::process::ProcessId;
use meshlab::registry::LabRecord;
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What a live lab is made of, taken while it is up.
pub struct Snapshot {
    pub run_id: String,
    pub dir: PathBuf,
    /// An open handle on each of its network namespaces: it keeps the namespace's number from
    /// being reused, so a process found in it later is surely one the lab left.
    namespaces: Vec<(String, File, u64)>,
    watchdog: Option<ProcessId>,
    /// A normal user's lab: the holder of its user namespace.
    holder: Option<Holder>,
    /// A normal user's lab: the processes holding its hosts' namespaces.
    host_holders: Vec<(String, ProcessId)>,
    index_entry: PathBuf,
}

impl Snapshot {
    pub fn take(run_id: &str, dir: &Path) -> Snapshot {
        let record = LabRecord::load(dir).ok();
        let holder = record.as_ref().and_then(|r| r.netns.as_ref()?.holder);
        // Where the lab's namespaces are named: the machine's /run/netns, or its holder's.
        let netns_dir = match &holder {
            Some(h) => h.netns_file(""),
            None => PathBuf::from("/run/netns"),
        };
        let prefix = format!("mesh-{run_id}-");
        let namespaces = std::fs::read_dir(&netns_dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok().filter(|n| n.starts_with(&prefix)).map(|n| (n, e.path())))
            .filter_map(|(n, p)| {
                let f = File::open(&p).ok()?;
                let ino = f.metadata().ok()?.ino();
                Some((n, f, ino))
            })
            .collect();
        let host_holders = std::fs::read_dir(dir.join("hosts"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|h| {
                let id = serde_json::from_slice(&std::fs::read(h.path().join("namespaces.json")).ok()?).ok()?;
                Some((h.file_name().to_string_lossy().into_owned(), id))
            })
            .collect();
        Snapshot {
            run_id: run_id.into(),
            dir: dir.into(),
            namespaces,
            watchdog: record.as_ref().and_then(|r| r.watchdog),
            holder,
            host_holders,
            index_entry: record.map(|r| r.index_entry()).unwrap_or_else(|| Path::new("/run/mesh-lab").join(run_id)),
        }
    }

    /// Every piece of the lab still on this machine: namespaces by name, mounts under its
    /// folder, processes in its namespaces or recorded as its services, its watchdog, the
    /// holders of its user namespace, its index entry.
    pub fn leftovers(&self) -> Vec<String> {
        let mut left = Vec::new();
        let prefix = format!("mesh-{}-", self.run_id);
        if let Ok(entries) = std::fs::read_dir("/run/netns") {
            left.extend(entries.flatten().filter_map(|e| e.file_name().into_string().ok()).filter(|n| n.starts_with(&prefix)));
        }
        let dir = self.dir.display().to_string();
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        left.extend(mounts.lines().filter(|l| l.contains(&dir)).map(|l| format!("mount {l}")));
        let inodes: Vec<u64> = self.namespaces.iter().map(|(_, _, ino)| *ino).collect();
        for pid in meshlab::process::all_pids() {
            let in_lab = std::fs::metadata(format!("/proc/{pid}/ns/net")).map(|m| inodes.contains(&m.ino())).unwrap_or(false);
            if in_lab && ProcessId::of(pid).is_some_and(|p| p.alive()) {
                left.push(format!("process {pid} in a namespace of the lab"));
            }
        }
        for services in
            std::fs::read_dir(self.dir.join("hosts")).into_iter().flatten().flatten().map(|h| h.path().join("services"))
        {
            for entry in std::fs::read_dir(services).into_iter().flatten().flatten() {
                if let Ok(id) = serde_json::from_slice::<ProcessId>(&std::fs::read(entry.path()).unwrap_or_default()) {
                    if id.alive() {
                        left.push(format!("process {} ({})", id.pid, entry.path().display()));
                    }
                }
            }
        }
        if let Some(w) = self.watchdog.filter(ProcessId::alive) {
            left.push(format!("watchdog {}", w.pid));
        }
        if let Some(h) = &self.holder {
            for (what, id) in [("init", h.init), ("unshare", h.unshare)] {
                if id.alive() {
                    left.push(format!("holder of the user namespace: {what} {}", id.pid));
                }
            }
        }
        for (host, id) in self.host_holders.iter().filter(|(_, id)| id.alive()) {
            left.push(format!("holder of {host}'s namespaces: {}", id.pid));
        }
        if self.index_entry.exists() {
            left.push(format!("index entry {}", self.index_entry.display()));
        }
        left.extend(vm_leftovers(&prefix));
        left
    }

    /// Wait up to `within` for every piece to be gone; what is left then.
    pub fn await_gone(&self, within: Duration) -> Vec<String> {
        let deadline = Instant::now() + within;
        loop {
            let left = self.leftovers();
            if left.is_empty() || Instant::now() > deadline {
                return left;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// VMs, libvirt networks and QEMU processes named for the run (`mesh-<run id>-…`). Asks
/// libvirt only where it runs, with `virsh`, the tool a user would check with.
fn vm_leftovers(prefix: &str) -> Vec<String> {
    let mut left = Vec::new();
    if std::os::unix::net::UnixStream::connect("/run/libvirt/libvirt-sock").is_ok() {
        for (what, list) in [("VM", "list"), ("libvirt network", "net-list")] {
            let out = std::process::Command::new("virsh").args(["-q", "-c", "qemu:///system", list, "--all", "--name"]).output();
            if let Ok(out) = out {
                let names = String::from_utf8_lossy(&out.stdout).to_string();
                left.extend(names.lines().map(str::trim).filter(|n| n.starts_with(prefix)).map(|n| format!("{what} {n}")));
            }
        }
    }
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.starts_with("/usr/bin/qemu-system") && cmdline.contains(&format!("guest={prefix}")) {
            left.push(format!("QEMU process {}", entry.file_name().to_string_lossy()));
        }
    }
    left
}
