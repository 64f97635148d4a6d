//! A lab outlives nothing that owns it. These drive the real `mesh` command as a child
//! process and stop it the hard ways: SIGINT and SIGTERM (it removes its lab before exiting)
//! and SIGKILL (its services die with it; its watchdog, or else the next run, removes the rest).

mod common;

use common::Snapshot;
use meshlab::registry;
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The watchdog notices its owner's death within a second (`tail --pid`), then removes the lab.
const WATCHDOG_BUDGET: Duration = Duration::from_secs(10);
/// Up to a lab built, on a machine with the tools already built.
const UP_BUDGET: Duration = Duration::from_secs(180);

/// `mesh up --foreground`, and the progress lines it writes, one by one. Dropped before it was
/// signalled (a failed assertion), it is killed, and its watchdog removes its lab.
struct Foreground {
    child: Child,
    lines: mpsc::Receiver<String>,
    run_id: Option<String>,
    dir: Option<PathBuf>,
    ended: bool,
}

impl Foreground {
    fn start() -> Foreground {
        Foreground::start_with(&[])
    }

    fn start_with(env: &[(&str, &str)]) -> Foreground {
        let mut child = Command::new(env!("CARGO_BIN_EXE_mesh"))
            .args(["up", "--foreground"])
            .env_remove("MESH_LAB")
            .env_remove("MESH_QUIET")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("mesh starts");
        let (tx, rx) = mpsc::channel();
        for pipe in
            [Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>, Box::new(child.stderr.take().unwrap())]
        {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
        }
        Foreground { child, lines: rx, run_id: None, dir: None, ended: false }
    }

    /// Read its output until a line contains `marker`; learn the run id and folder on the way.
    fn wait_for(&mut self, marker: &str) {
        let deadline = Instant::now() + UP_BUDGET;
        let mut seen = Vec::new();
        while Instant::now() < deadline {
            let Ok(line) = self.lines.recv_timeout(Duration::from_secs(1)) else { continue };
            if let Some(rest) = line.split("building lab ").nth(1) {
                self.run_id = rest.split_whitespace().next().map(str::to_string);
                self.dir = line.rsplit("its files: ").next().map(PathBuf::from);
            }
            let found = line.contains(marker);
            seen.push(line);
            if found {
                return;
            }
        }
        panic!("`mesh up --foreground` never printed {marker:?} within {UP_BUDGET:?}; it printed:\n{}", seen.join("\n"));
    }

    fn signal(&mut self, signal: Signal) -> std::process::ExitStatus {
        let _ = kill(Pid::from_raw(self.child.id() as i32), signal);
        self.ended = true;
        self.child.wait().unwrap()
    }

    fn snapshot(&self) -> Snapshot {
        let run_id = self.run_id.clone().expect("the run id was printed");
        Snapshot::take(&run_id, &self.dir.clone().expect("the lab folder was printed"))
    }
}

impl Drop for Foreground {
    fn drop(&mut self) {
        if !self.ended {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[test]
fn sigint_and_sigterm_remove_the_lab_before_exiting() {
    for signal in [Signal::SIGINT, Signal::SIGTERM] {
        let mut up = Foreground::start();
        up.wait_for("is up while this command runs");
        let lab = up.snapshot();
        assert!(!lab.leftovers().is_empty(), "the lab should exist while mesh runs");
        let status = up.signal(signal);
        assert_eq!(status.code(), Some(130), "mesh should exit 130 after removing its lab on signal {}", signal as i32);
        // Its watchdog sweeps once more after the exit (in case anything was still being made).
        let left: Vec<String> = lab.leftovers().into_iter().filter(|l| !l.starts_with("watchdog")).collect();
        assert_eq!(left, Vec::<String>::new(), "signal {} left pieces of lab {}", signal as i32, lab.run_id);
        assert_eq!(lab.await_gone(WATCHDOG_BUDGET), Vec::<String>::new(), "the watchdog of lab {} did not finish", lab.run_id);
    }
}

/// After SIGKILL nothing runs in the killed process: its services die with it (parent-death
/// signal) and the lab's watchdog, a process of its own, removes the rest. Killed mid-way
/// through provisioning (headscale up, clients not yet) and with the lab up.
#[test]
fn sigkill_leaves_nothing_behind() {
    for moment in ["headscale ready", "is up while this command runs"] {
        let mut up = Foreground::start();
        up.wait_for(moment);
        let lab = up.snapshot();
        up.signal(Signal::SIGKILL);
        assert_eq!(
            lab.await_gone(WATCHDOG_BUDGET),
            Vec::<String>::new(),
            "lab {} outlived its owner killed at {moment:?}",
            lab.run_id
        );
    }
}

/// A lab on PostgreSQL (`MESH_DATABASE=postgres`) killed with its server up: the watchdog
/// leaves no PostgreSQL process (they are in the server's namespace) and no cluster (the
/// host's data folder is a removal step of its own); the lab's logs stay.
#[test]
fn sigkill_of_a_lab_on_postgres_leaves_no_server_and_no_cluster() {
    let mut up = Foreground::start_with(&[("MESH_DATABASE", "postgres")]);
    up.wait_for("is up while this command runs");
    let lab = up.snapshot();
    let data = lab.dir.join("hosts/headscale/data/postgres");
    assert!(data.join("PG_VERSION").exists(), "the lab's cluster should be in {}", data.display());
    let record = registry::LabRecord::load(&lab.dir).expect("the lab's record");
    assert_eq!(record.database, meshlab::database::Database::Postgres);
    up.signal(Signal::SIGKILL);
    assert_eq!(lab.await_gone(WATCHDOG_BUDGET), Vec::<String>::new(), "lab {} outlived its owner", lab.run_id);
    assert!(!data.exists(), "the cluster {} outlived its lab", data.display());
    assert!(lab.dir.join("hosts/headscale/logs/postgres.log").exists(), "the server's log is kept for diagnostics");
}

/// Should the watchdog fail too, the next run's start removes the lab: it is indexed, and its
/// owner is gone.
#[test]
fn a_lab_whose_owner_and_watchdog_were_killed_is_removed_by_the_next_run() {
    let mut up = Foreground::start();
    up.wait_for("is up while this command runs");
    let lab = up.snapshot();
    let record = registry::LabRecord::load(&lab.dir).expect("the lab's record");
    let watchdog = record.watchdog.expect("a lab owned by a process has a watchdog");
    let _ = killpg(Pid::from_raw(watchdog.pid as i32), Signal::SIGKILL);
    up.signal(Signal::SIGKILL);
    registry::reclaim_abandoned();
    assert_eq!(lab.await_gone(Duration::from_secs(5)), Vec::<String>::new(), "lab {} was not reclaimed", lab.run_id);
}

/// A VM lab interrupted while its VMs boot: SIGTERM (it removes the lab before exiting), SIGKILL
/// (its watchdog destroys the domains and networks by their run-unique names and removes the
/// router), and SIGKILL while libvirtd is down (the watchdog kills the lab's QEMU processes by
/// those names and deletes its bridges). Nothing of the lab stays, in libvirt or outside it.
/// One case after the other: each boots five VMs.
#[cfg(feature = "libvirt")]
#[test]
fn a_vm_lab_interrupted_while_its_vms_boot_leaves_no_vm_network_or_qemu() {
    // `virsh destroy` of five VMs and two networks, one after the other, or the same by name.
    const VM_GONE: Duration = Duration::from_secs(60);
    let vm_lab = || {
        let mut up = Foreground::start_with(&[("MESH_BACKEND", "libvirt")]);
        up.wait_for("VMs started; waiting for SSH");
        let lab = up.snapshot();
        assert!(lab.leftovers().iter().any(|l| l.starts_with("VM ")), "the VMs should exist: {:?}", lab.leftovers());
        (up, lab)
    };

    let (mut up, lab) = vm_lab();
    assert_eq!(up.signal(Signal::SIGTERM).code(), Some(130), "mesh should exit 130 after removing its VM lab on SIGTERM");
    assert_eq!(lab.await_gone(VM_GONE), Vec::<String>::new(), "VM lab {} outlived its owner's SIGTERM", lab.run_id);

    let (mut up, lab) = vm_lab();
    up.signal(Signal::SIGKILL);
    assert_eq!(lab.await_gone(VM_GONE), Vec::<String>::new(), "VM lab {} outlived its owner's SIGKILL", lab.run_id);

    let Some(libvirtd) = common::Libvirtd::ours_to_stop() else {
        println!("skipped the case with libvirtd down: a service manager runs libvirtd here, and it is not ours to stop");
        return;
    };
    let (mut up, lab) = vm_lab();
    let restart = libvirtd.stop();
    up.signal(Signal::SIGKILL);
    let left = lab.await_gone(VM_GONE);
    restart.start();
    assert_eq!(left, Vec::<String>::new(), "VM lab {} outlived its owner's SIGKILL while libvirtd was down", lab.run_id);
    // Back up, libvirt finds the lab's domains and networks gone too.
    assert_eq!(lab.await_gone(VM_GONE), Vec::<String>::new(), "libvirt, started again, still has pieces of lab {}", lab.run_id);
}
