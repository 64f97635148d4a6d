//! A netns lab's removal, declared once: [`steps`] lists what removes a lab, from its record
//! alone; [`run`] does the steps from Rust (teardown, `cargo mesh down`, reclaim) and [`script`]
//! renders the same steps as the shell the watchdog runs once the lab's owner is gone. Where the
//! two do a step differently on purpose, the step's own doc says so.
//!
//! Every name a step carries is this run's own (`mesh-<run id>-…`, the lab's own folder), and
//! every process it signals is found by pid and start time, or inside the lab's namespaces:
//! nothing of another lab or of the machine is touched. A piece already gone is fine.

use super::{
    data_dir, host_dir, ip, is_mount_point, processes_in_namespaces, recorded_services, unmount, user_ns_of, Holder, NetnsRecord,
};
use crate::budget;
use crate::exec::display_argv;
use crate::process::ProcessId;
use anyhow::{bail, Result};
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// One step of removing a netns lab.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The services a host recorded (`services/<name>.json` in `host_dir`), by pid and start
    /// time: SIGTERM, and SIGKILL after [`budget::stop`], so that tailscaled logs off cleanly.
    /// With `within` (a normal user's lab) only those in that holder's user namespace, and none
    /// once the holder is gone.
    ///
    /// The script has nothing of its own for this step, on purpose: it is written when the lab
    /// is indexed, before any service starts, so it cannot name them; they are in the lab's
    /// namespaces and die by SIGKILL in the steps that follow ([`Step::StopProcessesIn`], or
    /// with the holder), since with the owner gone nobody waits for a clean log-off.
    StopServices { host_dir: PathBuf, within: Option<Holder> },
    /// Every process in these network namespaces of the lab (a command cut off by its time
    /// limit, a shell): ours by construction, as the namespaces are this run's.
    ///
    /// Rust gives each SIGTERM and the grace of [`budget::stop`] before SIGKILL; the script, whose
    /// owner is gone, sends SIGKILL to all at once (`ip netns pids`) and pauses 0.2 s for them.
    StopProcessesIn { namespaces: Vec<String> },
    /// Every mount stacked on this path, detached (a pinned namespace file; the folder they are
    /// pinned in, a private bind mount of itself). Nothing mounted there is fine; a mount that
    /// cannot be detached is a problem (the script says so on stderr, into the watchdog's log).
    Unmount(PathBuf),
    /// `ip netns del` of a network namespace of the lab on this machine (root's), if it is there.
    DeleteNetns(String),
    /// A normal user's lab: its holder killed, SIGKILL to its PID namespace's init and then
    /// `unshare`, each by pid and start time (a pid reused since is never touched); every process
    /// and namespace of the lab goes with the init. Rust waits for each to go and names a survivor
    /// ([`Holder::stop`]); the script pauses 0.2 s between the two.
    StopHolder(Holder),
    /// A normal user's lab: wait, within [`budget::stop`], until the kernel has ended every
    /// process in the lab's network namespaces (as they were when the removal began), and name
    /// those left. The script has nothing to wait for: it is the last thing its owner's lab does.
    AwaitProcessesGone { namespaces: Vec<String> },
    /// A host's data folder ([`data_dir`]: a database server's cluster), removed once nothing
    /// runs in the lab; the rest of its folder (logs, configuration) is kept for diagnostics.
    RemoveData(PathBuf),
}

/// What removes `record`'s lab, in order; its hosts' folders are under `lab_dir`.
pub fn steps(record: &NetnsRecord, lab_dir: &Path) -> Vec<Step> {
    let namespaces: Vec<String> = record.all_namespaces().cloned().collect();
    let mut steps: Vec<Step> =
        record.hosts.keys().map(|h| Step::StopServices { host_dir: host_dir(lab_dir, h), within: record.holder }).collect();
    match record.holder {
        Some(holder) => {
            steps.push(Step::StopHolder(holder));
            steps.push(Step::AwaitProcessesGone { namespaces });
        }
        None => {
            steps.push(Step::StopProcessesIn { namespaces: namespaces.clone() });
            steps.extend(record.all_pinned().map(Step::Unmount));
            steps.push(Step::Unmount(record.ns_dir.clone()));
            steps.extend(namespaces.into_iter().map(Step::DeleteNetns));
        }
    }
    steps.extend(record.hosts.keys().map(|h| Step::RemoveData(data_dir(&host_dir(lab_dir, h)))));
    steps
}

/// Run `steps` for `record`'s lab, every one of them whatever the others did; the error lists
/// every problem.
pub fn run(record: &NetnsRecord, steps: &[Step]) -> Result<()> {
    // The namespaces' inodes as the removal begins: a normal user's can no longer be opened
    // once its holder is gone, and their processes are still found by them.
    let inodes: BTreeMap<&str, u64> = record
        .all_namespaces()
        .filter_map(|ns| Some((ns.as_str(), std::fs::metadata(record.netns_file(ns)).ok()?.ino())))
        .collect();
    let inodes_of =
        |namespaces: &[String]| -> Vec<u64> { namespaces.iter().filter_map(|n| inodes.get(n.as_str()).copied()).collect() };
    let mut problems = Vec::new();
    for step in steps {
        match step {
            Step::StopServices { host_dir, within } => {
                let user_ns = match within {
                    None => None,
                    Some(holder) => match holder.user_ns_inode() {
                        Some(ino) => Some(ino),
                        None => continue, // the holder is gone, and its services with it
                    },
                };
                for (_, id) in recorded_services(host_dir) {
                    if user_ns.is_none() || user_ns_of(id.pid) == user_ns {
                        id.terminate(budget::stop());
                    }
                }
            }
            Step::StopProcessesIn { namespaces } => {
                for id in processes_in_namespaces(&inodes_of(namespaces)) {
                    id.terminate(budget::stop());
                }
            }
            Step::Unmount(path) => {
                while is_mount_point(path) {
                    if !unmount(path) {
                        problems.push(format!("could not unmount {}", path.display()));
                        break;
                    }
                }
            }
            Step::DeleteNetns(ns) => {
                if Path::new("/run/netns").join(ns).exists() {
                    if let Err(e) = ip(record, &["netns", "del", ns]) {
                        problems.push(format!("{e:#}"));
                    }
                }
            }
            Step::StopHolder(holder) => {
                if let Err(e) = holder.stop() {
                    problems.push(format!("{e:#}"));
                }
                super::userns::reap_kept();
            }
            Step::AwaitProcessesGone { namespaces } => {
                let inodes = inodes_of(namespaces);
                let gone =
                    crate::poll::until_every("the lab's namespaces empty", budget::stop(), budget::exit_poll_interval(), || {
                        match processes_in_namespaces(&inodes).as_slice() {
                            [] => Ok(()),
                            left => bail!("processes still in them: {}", pids(left)),
                        }
                    });
                if let Err(e) = gone {
                    problems.push(format!("{e:#}"));
                }
            }
            Step::RemoveData(dir) => match std::fs::remove_dir_all(dir) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    problems.push(format!("could not remove {}: {e}", dir.display()))
                }
                _ => {}
            },
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        bail!("tearing down the lab left pieces behind:\n  {}", problems.join("\n  "))
    }
}

fn pids(ids: &[ProcessId]) -> String {
    ids.iter().map(|p| p.pid.to_string()).collect::<Vec<_>>().join(" ")
}

/// `steps` as a shell script (POSIX sh), a line or a few a step; every step runs whatever the
/// ones before it did.
pub fn script(steps: &[Step]) -> String {
    let quote = |s: &str| display_argv(&[s]);
    let path = |p: &Path| quote(&p.display().to_string());
    // SIGKILL to a process if it is still the one recorded (its start time, field 22 of its stat).
    let kill = |id: &ProcessId| {
        format!(
            "[ \"$(sed 's/.*) //' /proc/{pid}/stat 2>/dev/null | cut -d' ' -f20)\" = {start} ] && kill -9 {pid}\n",
            pid = id.pid,
            start = id.start
        )
    };
    let mut out = String::new();
    for step in steps {
        match step {
            Step::StopServices { host_dir, .. } => {
                out += &format!("# the services recorded in {}: killed with the lab's processes\n", path(host_dir));
            }
            Step::StopProcessesIn { namespaces } => {
                let list: Vec<String> = namespaces.iter().map(|n| quote(n)).collect();
                out += &format!(
                    "for ns in {}; do ip netns pids \"$ns\" 2>/dev/null | xargs -r kill -9; done\nsleep 0.2\n",
                    list.join(" ")
                );
            }
            Step::Unmount(p) => {
                out += &format!("while mountpoint -q {p}; do umount -l {p} || break; done\n", p = path(p));
            }
            Step::DeleteNetns(ns) => {
                out += &format!("[ -e {} ] && ip netns del {}\n", quote(&format!("/run/netns/{ns}")), quote(ns));
            }
            Step::StopHolder(holder) => {
                out += &kill(&holder.init);
                out += "sleep 0.2\n";
                out += &kill(&holder.unshare);
            }
            Step::AwaitProcessesGone { namespaces } => {
                out += &format!("# the processes of {}: ended by the kernel with the holder\n", namespaces.join(" "));
            }
            Step::RemoveData(dir) => {
                out += &format!("rm -rf -- {}\n", path(dir));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::LabSpec;

    fn planned() -> (NetnsRecord, PathBuf) {
        let spec = LabSpec::new("192.168.1.0/24", "10.0.0.0/24").unwrap();
        let lab_dir = PathBuf::from("/work/target/mesh/labs/0a1b2c");
        (NetnsRecord::plan("0a1b2c", &lab_dir, &spec), lab_dir)
    }

    fn assert_valid_sh(script: &str) {
        let syntax = std::process::Command::new("sh").args(["-n", "-c", script]).output().unwrap();
        assert!(syntax.status.success(), "{}\n{script}", String::from_utf8_lossy(&syntax.stderr));
    }

    #[test]
    fn a_root_lab_run_and_rendered_removes_every_namespace_and_pinned_file() {
        let (record, lab_dir) = planned();
        assert!(record.hosts.len() >= 4, "{record:?}");
        let steps = steps(&record, &lab_dir);
        let shell = script(&steps);
        assert_valid_sh(&shell);
        for ns in record.all_namespaces() {
            assert!(steps.contains(&Step::DeleteNetns(ns.clone())), "{ns} is not deleted by {steps:?}");
            assert!(
                steps.iter().any(|s| matches!(s, Step::StopProcessesIn { namespaces } if namespaces.contains(ns))),
                "the processes in {ns} are not stopped by {steps:?}"
            );
            assert!(shell.contains(&format!("ip netns del {ns}\n")), "{ns} is not deleted by the script:\n{shell}");
            assert!(shell.contains(&format!(" {ns} ")) || shell.contains(&format!(" {ns};")), "{ns}'s processes:\n{shell}");
        }
        let mounts: Vec<PathBuf> = record.all_pinned().chain([record.ns_dir.clone()]).collect();
        assert_eq!(mounts.len(), record.hosts.len() * 2 + 1);
        for p in &mounts {
            assert!(steps.contains(&Step::Unmount(p.clone())), "{} is not unmounted by {steps:?}", p.display());
            assert!(
                shell.contains(&format!("umount -l {} ", p.display())),
                "{} is not unmounted by the script:\n{shell}",
                p.display()
            );
        }
        // Processes are stopped before what they run in is unmounted, and that before the
        // namespaces go.
        let first = |f: &dyn Fn(&Step) -> bool| steps.iter().position(f).unwrap();
        assert!(first(&|s| matches!(s, Step::StopProcessesIn { .. })) < first(&|s| matches!(s, Step::Unmount(_))));
        assert!(first(&|s| matches!(s, Step::Unmount(_))) < first(&|s| matches!(s, Step::DeleteNetns(_))));
        let (ns_at, umount_at, del_at) =
            (shell.find("ip netns pids").unwrap(), shell.find("umount").unwrap(), shell.find("ip netns del").unwrap());
        assert!(ns_at < umount_at && umount_at < del_at, "{shell}");
        // Every host's data goes, after everything that ran in the lab.
        for h in record.hosts.keys() {
            let data = data_dir(&host_dir(&lab_dir, h));
            assert!(steps.contains(&Step::RemoveData(data.clone())), "{} stays: {steps:?}", data.display());
            assert!(shell.contains(&format!("rm -rf -- {}\n", data.display())), "{}:\n{shell}", data.display());
        }
        assert!(first(&|s| matches!(s, Step::DeleteNetns(_))) < first(&|s| matches!(s, Step::RemoveData(_))));
        assert!(shell.find("ip netns del").unwrap() < shell.find("rm -rf").unwrap(), "{shell}");
        // Only this run's names.
        for word in shell.split_whitespace().filter(|w| w.contains("mesh-")) {
            assert!(word.contains("0a1b2c"), "{word} is not of run 0a1b2c:\n{shell}");
        }
    }

    #[test]
    fn a_normal_users_lab_run_and_rendered_kills_its_holder_by_pid_and_start_time() {
        let (mut record, lab_dir) = planned();
        let holder = Holder { unshare: ProcessId { pid: 4_000_001, start: 123 }, init: ProcessId { pid: 4_000_002, start: 124 } };
        record.holder = Some(holder);
        let steps = steps(&record, &lab_dir);
        let shell = script(&steps);
        assert_valid_sh(&shell);
        assert!(steps.contains(&Step::StopHolder(holder)), "{steps:?}");
        assert!(steps
            .iter()
            .any(|s| matches!(s, Step::AwaitProcessesGone { namespaces } if namespaces.len() == record.hosts.len() + record.lan.len() + 1)));
        assert!(
            !steps.iter().any(|s| matches!(s, Step::DeleteNetns(_) | Step::Unmount(_))),
            "nothing is named on the machine: {steps:?}"
        );
        for id in [holder.init, holder.unshare] {
            assert!(
                shell.contains(&format!("/proc/{}/stat", id.pid))
                    && shell.contains(&format!("= {} ] && kill -9 {}\n", id.start, id.pid)),
                "{shell}"
            );
        }
        assert!(shell.find("kill -9 4000002").unwrap() < shell.find("kill -9 4000001").unwrap(), "init first:\n{shell}");
        assert!(!shell.contains("ip netns") && !shell.contains("umount"), "{shell}");
        let removed = |s: &Step| matches!(s, Step::RemoveData(_));
        assert!(steps.iter().rposition(|s| !removed(s)) < steps.iter().position(removed), "data last: {steps:?}");
    }

    #[test]
    fn the_scripts_start_time_is_the_one_rust_reads() {
        // The script's field of /proc/PID/stat is the start time ProcessId records: rendered for
        // this process, it kills nothing, but its test compares equal.
        let me = ProcessId::current();
        let line = script(&[Step::StopHolder(Holder { unshare: me, init: me })]);
        let test = line.lines().next().unwrap().replace(&format!(" && kill -9 {}", me.pid), "");
        let out = std::process::Command::new("sh").args(["-c", &test]).status().unwrap();
        assert!(out.success(), "{test}");
    }
}
