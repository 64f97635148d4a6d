//! Processes the harness starts and must stop: identified by pid *and* start time, so a
//! recycled pid is never mistaken for ours; spawned so that they die with their owner.

use anyhow::{Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::{setpgid, setsid, Pid};
use serde::{Deserialize, Serialize};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command};
use std::sync::mpsc;
use std::sync::Mutex;
use std::time::Duration;

/// A process by pid and the start time the kernel gave it (clock ticks since boot).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessId {
    pub pid: u32,
    pub start: u64,
}

impl ProcessId {
    pub fn of(pid: u32) -> Option<ProcessId> {
        start_time(pid).map(|start| ProcessId { pid, start })
    }

    pub fn current() -> ProcessId {
        ProcessId::of(std::process::id()).expect("/proc/self exists")
    }

    /// Still running (not a zombie) and still the same process.
    pub fn alive(&self) -> bool {
        match stat_fields(self.pid) {
            Some(f) => f.get(19).and_then(|s| s.parse().ok()) == Some(self.start) && f.first().map(String::as_str) != Some("Z"),
            None => false,
        }
    }

    /// SIGTERM, then SIGKILL after `grace`; returns once it is gone, or after a second grace
    /// if even SIGKILL has not ended it yet (check [`ProcessId::alive`]).
    pub fn terminate(&self, grace: Duration) {
        if !self.alive() {
            return;
        }
        let _ = kill(Pid::from_raw(self.pid as i32), Signal::SIGTERM);
        if self.gone_within(grace).is_err() {
            let _ = kill(Pid::from_raw(self.pid as i32), Signal::SIGKILL);
            // SIGKILL is final, but a process stuck in the kernel (D state) takes its time:
            // wait no longer than the grace, and let the caller see it still alive.
            let _ = self.gone_within(grace);
        }
        reap(self.pid);
    }

    /// Wait until it has exited (reaping it, if it is our child), for at most `budget`; the
    /// error says it is still running, with its state.
    pub fn gone_within(&self, budget: Duration) -> Result<()> {
        crate::poll::until_every(&format!("process {} gone", self.pid), budget, crate::budget::exit_poll_interval(), || {
            reap(self.pid);
            match stat_fields(self.pid).filter(|_| self.alive()) {
                Some(f) => anyhow::bail!("still running (state {})", f.first().map(String::as_str).unwrap_or("?")),
                None => Ok(()),
            }
        })
    }
}

/// Wait until `id` writes a line to `log` that `ready` accepts (a started program saying it is
/// ready), for at most `budget`. While it is not there the observation is the log's last
/// lines; if the program exits first, the wait ends at once with its log.
pub fn until_logged(what: &str, id: &ProcessId, log: &Path, budget: Duration, ready: impl Fn(&str) -> bool) -> Result<()> {
    crate::poll::until(what, budget, || {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.lines().any(&ready) {
            Ok(())
        } else if !id.alive() {
            Err(crate::poll::Hopeless(format!("it exited: {} (its log: {})", text.trim(), log.display())).into())
        } else {
            let lines: Vec<&str> = text.trim().lines().collect();
            let last = lines[lines.len().saturating_sub(3)..].join(" / ");
            anyhow::bail!("not yet; its log so far: {}", if last.is_empty() { "(empty)" } else { &last })
        }
    })
}

/// Collect our child's exit status, if it is our child, so it does not linger as a zombie.
fn reap(pid: u32) {
    let _ = waitpid(Pid::from_raw(pid as i32), Some(WaitPidFlag::WNOHANG));
}

/// Fields of /proc/PID/stat after the command name: [0] is the state, [19] the start time.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    Some(after.split_whitespace().map(str::to_string).collect())
}

fn start_time(pid: u32) -> Option<u64> {
    stat_fields(pid)?.get(19)?.parse().ok()
}

/// The mount points this process sees (`/proc/self/mountinfo`'s fifth field, unescaped); none
/// if it cannot be read.
pub fn mount_points() -> Vec<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    info.lines().filter_map(|l| l.split(' ').nth(4)).map(unescape_mountinfo).collect()
}

/// mountinfo writes space, tab, newline and backslash in paths as octal escapes (`\040`).
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| std::str::from_utf8(d).ok()).and_then(|d| u8::from_str_radix(d, 8).ok());
        match (bytes[i], octal) {
            (b'\\', Some(b)) => {
                out.push(b);
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Every process on this machine, by pid.
pub fn all_pids() -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries.flatten().filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok()).collect()
}

/// The live children of `pid` (read from every process's parent: this kernel may not list
/// a process's children itself).
pub fn children_of(pid: u32) -> Vec<ProcessId> {
    all_pids()
        .into_iter()
        .filter(|p| stat_fields(*p).and_then(|f| f.get(1)?.parse::<u32>().ok()) == Some(pid))
        .filter_map(ProcessId::of)
        .filter(ProcessId::alive)
        .collect()
}

/// The user a process runs as (its real uid).
pub fn uid_of(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("Uid:"))?.split_whitespace().next()?.parse().ok()
}

/// Its command line, one element an argument.
pub fn cmdline_of(pid: u32) -> Vec<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    raw.split(|b| *b == 0).filter(|a| !a.is_empty()).map(|a| String::from_utf8_lossy(a).into_owned()).collect()
}

/// How a service relates to the process that started it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Lifetime {
    /// Dies with the harness process (parent-death signal): tests and `cargo mesh check`.
    WithOwner,
    /// Outlives it, in a session of its own: `cargo mesh up`, stopped by `cargo mesh down`.
    Detached,
}

type Job = (Command, mpsc::Sender<std::io::Result<Child>>);

/// The parent-death signal fires when the *thread* that forked the child exits, and test
/// threads end with their test. So services are forked from one thread that lives as long
/// as the process.
fn spawner() -> &'static Mutex<mpsc::Sender<Job>> {
    static SPAWNER: once_cell::sync::OnceCell<Mutex<mpsc::Sender<Job>>> = once_cell::sync::OnceCell::new();
    SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("mesh-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("starting the spawner thread");
        Mutex::new(tx)
    })
}

/// Start a long-running process with the given lifetime.
pub fn spawn_service(mut cmd: Command, lifetime: Lifetime) -> Result<Child> {
    // SAFETY: the closure runs between fork and exec and makes only setpgid, prctl or setsid
    // syscalls: no allocation, no lock, nothing that is not async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            match lifetime {
                Lifetime::WithOwner => {
                    let _ = setpgid(Pid::from_raw(0), Pid::from_raw(0));
                    let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
                }
                Lifetime::Detached => {
                    let _ = setsid();
                }
            }
            Ok(())
        });
    }
    let (tx, rx) = mpsc::channel();
    spawner().lock().unwrap().send((cmd, tx)).context("the spawner thread is gone")?;
    rx.recv().context("the spawner thread is gone")?.context("starting a service")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_read_back() {
        assert_eq!(unescape_mountinfo(r"/work/my\040labs/ns"), "/work/my labs/ns");
        assert_eq!(unescape_mountinfo("/plain/path"), "/plain/path");
    }

    #[test]
    fn a_process_is_known_by_pid_and_start_time() {
        let me = ProcessId::current();
        assert!(me.alive());
        assert!(!ProcessId { pid: me.pid, start: me.start + 1 }.alive(), "a recycled pid must not pass for ours");
    }

    /// `sh -c script` writing to a log of its own; the log's path.
    fn logging(script: &str, name: &str) -> (Child, ProcessId, std::path::PathBuf) {
        let path = std::env::temp_dir().join(format!("meshlab-test-{}-{name}.log", std::process::id()));
        let log = std::fs::File::create(&path).unwrap();
        // Nothing of the test's own stdio goes to it: nextest would call the test leaky.
        let child = Command::new("sh")
            .args(["-c", script])
            .stdin(std::process::Stdio::null())
            .stdout(log)
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let id = ProcessId::of(child.id()).unwrap();
        (child, id, path)
    }

    #[test]
    fn a_log_line_saying_ready_ends_the_wait_and_an_exit_ends_it_at_once_with_the_log() {
        let (mut child, id, log) = logging("echo starting; sleep 0.3; echo ready; exec sleep 30", "ready");
        let ready = until_logged("sh ready", &id, &log, Duration::from_secs(10), |l| l == "ready");
        id.terminate(Duration::from_secs(2));
        let _ = child.wait();
        let _ = std::fs::remove_file(&log);
        ready.unwrap();

        let (mut child, id, log) = logging("echo cannot start; exit 1", "exits");
        let started = std::time::Instant::now();
        let waited = until_logged("sh ready", &id, &log, Duration::from_secs(30), |l| l == "ready");
        let _ = child.wait();
        let _ = std::fs::remove_file(&log);
        let err = format!("{:#}", waited.unwrap_err());
        assert!(err.contains("it exited") && err.contains("cannot start"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5), "it waited {:?} for a program that had exited", started.elapsed());
    }

    #[test]
    fn a_service_outlives_the_thread_that_started_it_and_stops_on_terminate() {
        let mut child = std::thread::spawn(|| {
            let mut cmd = Command::new("sleep");
            cmd.arg("30");
            spawn_service(cmd, Lifetime::WithOwner).unwrap()
        })
        .join()
        .unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let id = ProcessId::of(child.id()).expect("still running after its starting thread ended");
        assert!(id.alive());
        id.terminate(Duration::from_secs(2));
        assert!(!id.alive());
        let _ = child.wait();
    }
}
