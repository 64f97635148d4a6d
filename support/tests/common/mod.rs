//! What tests of the harness itself share: taking stock of a live lab, then finding what of it
//! is still on the machine after it should be gone. Labs of root and of a normal user (in a
//! user namespace) alike.

// Each test file uses part of this module.
#![allow(dead_code)]

use meshlab::backend::netns::Holder;
use meshlab::process::ProcessId;
use meshlab::registry::LabRecord;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
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
        let holder = record.as_ref().and_then(|r| r.built.netns.as_ref()?.holder);
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

/// VMs, libvirt networks, QEMU processes and interfaces named for the run (`mesh-<run id>-…`,
/// bridges `mb-<run id>-…`, uplinks `mu-<run id>-…`). Asks libvirt only where it runs, with
/// `virsh`, the tool a user would check with.
fn vm_leftovers(prefix: &str) -> Vec<String> {
    let mut left = Vec::new();
    let run_id = prefix.trim_start_matches("mesh-");
    for entry in std::fs::read_dir("/sys/class/net").into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if [format!("mb-{run_id}"), format!("mu-{run_id}")].iter().any(|p| name.starts_with(p.as_str())) {
            left.push(format!("interface {name}"));
        }
    }
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

/// This machine's libvirtd, where it was started by hand (no service manager runs it): a test
/// may stop it for a while, to see what a lab does without it, and start it again.
pub struct Libvirtd {
    pid: i32,
}

/// Starts libvirtd again when dropped (a failed assertion included), unless already started.
pub struct LibvirtdStopped {
    started: bool,
}

const LIBVIRT_SOCKET: &str = "/run/libvirt/libvirt-sock";

impl Libvirtd {
    pub fn ours_to_stop() -> Option<Libvirtd> {
        let init = std::fs::read_to_string("/proc/1/comm").unwrap_or_default();
        if init.trim() == "systemd" {
            return None;
        }
        let pid: i32 = std::fs::read_to_string("/run/libvirtd.pid").ok()?.trim().parse().ok()?;
        Path::new(&format!("/proc/{pid}")).exists().then_some(Libvirtd { pid })
    }

    /// SIGTERM, and wait for it to be gone.
    pub fn stop(self) -> LibvirtdStopped {
        let _ = kill(Pid::from_raw(self.pid), Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Path::new(&format!("/proc/{}", self.pid)).exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(!Path::new(&format!("/proc/{}", self.pid)).exists(), "libvirtd {} did not stop within 30 s", self.pid);
        LibvirtdStopped { started: false }
    }
}

impl LibvirtdStopped {
    pub fn start(mut self) {
        self.start_again();
    }

    fn start_again(&mut self) {
        if self.started {
            return;
        }
        self.started = true;
        let ok = std::process::Command::new("libvirtd").arg("-d").status().is_ok_and(|s| s.success());
        assert!(ok, "libvirtd -d failed: start it by hand");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::os::unix::net::UnixStream::connect(LIBVIRT_SOCKET).is_err() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for LibvirtdStopped {
    fn drop(&mut self) {
        self.start_again();
    }
}
