//! The netns backend for a normal user: the whole lab inside one user namespace.
//!
//! A "holder" process, started by the harness, owns a user namespace (the user mapped to its
//! root), a mount namespace (with its own /run, so /run/netns is the lab's alone, and slave
//! propagation, so that it never keeps a copy of another lab's namespaces), an empty network
//! namespace (so `ip netns add` can come back to it) and a PID namespace (with a /proc of its
//! own). Every command of the lab enters these through `nsenter`, and then the host's
//! namespaces as a root lab does.
//!
//! The holder's first process is the PID namespace's init: when it dies, the kernel kills
//! every process of the lab, and the namespaces die with their last process. It dies with the
//! lab's owner (`unshare --kill-child` under a parent-death signal), or lives on for a
//! detached lab until `cargo mesh down` kills it.

use crate::process::{self, Lifetime, ProcessId};
use crate::{budget, poll};
use anyhow::{anyhow, bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The processes that hold a lab's user namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// `unshare`, outside the lab's PID namespace: its death (with the lab's owner) kills `init`.
    pub unshare: ProcessId,
    /// The PID namespace's first process, whose namespaces every command of the lab enters.
    pub init: ProcessId,
}

/// What the holder runs: a /proc of the lab's PID namespace (programs in it find themselves
/// there by their own pid), the lab's own /run, then nothing, for as long as it lives.
const HOLDER_SCRIPT: &str = "mount -t proc proc /proc && mount -t tmpfs -o mode=755 tmpfs /run && mkdir /run/netns || exit 1
echo ready
while :; do sleep 3600; done";

/// The last argument of a holder's command line: names it by run, for finding holders whose
/// record is lost.
pub fn marker(run_id: &str) -> String {
    format!("mesh-lab-{run_id}")
}

impl Holder {
    /// Start the holder of lab `run_id`; its messages go to `log`.
    pub fn start(run_id: &str, log: &Path, lifetime: Lifetime) -> Result<Holder> {
        let log_file = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let mut cmd = Command::new("unshare");
        cmd.args(["--user", "--map-root-user", "--mount", "--net", "--pid", "--fork", "--kill-child"])
            .args(["--propagation", "slave", "sh", "-c", HOLDER_SCRIPT, "sh"])
            .arg(marker(run_id))
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file);
        let child = process::spawn_service(cmd, lifetime).context("starting the lab's user namespace (unshare)")?;
        let unshare = ProcessId::of(child.id()).ok_or_else(|| holder_failed(log, "unshare exited at once"))?;
        // Its own /run is mounted once it says so (before, /run is the machine's).
        let found = process::until_logged("the lab's user namespace ready", &unshare, log, budget::command(), |l| l == "ready")
            .map_err(|e| if unshare.alive() { e } else { holder_failed(log, "unshare exited") })
            .and_then(|()| {
                process::children_of(unshare.pid).into_iter().next().ok_or_else(|| holder_failed(log, "its init is gone"))
            });
        match found {
            Ok(init) => Ok(Holder { unshare, init }),
            Err(e) => {
                unshare.terminate(budget::stop());
                Err(e)
            }
        }
    }

    /// The lab's namespaces are still there: its init is the same process it was.
    pub fn alive(&self) -> bool {
        self.init.alive()
    }

    /// `argv` as a command inside the lab's user, mount, network and PID namespaces (see
    /// [`enter`]).
    pub fn command<S: AsRef<std::ffi::OsStr>>(&self, argv: &[S]) -> Result<Command> {
        enter(&self.init, LAB_NAMESPACES, argv).with_context(|| "the lab's namespaces are gone: start a new lab")
    }

    /// A network namespace of the lab as this process can open it (through the holder's root).
    pub fn netns_file(&self, name: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root/run/netns/{name}", self.init.pid))
    }

    /// Its user namespace's inode, while it lives.
    pub fn user_ns_inode(&self) -> Option<u64> {
        let ino = std::fs::metadata(format!("/proc/{}/ns/user", self.init.pid)).ok()?.ino();
        self.alive().then_some(ino)
    }

    /// End the lab: SIGKILL to its init ends every process in its PID namespace, and the
    /// namespaces go with their last process. Returns once `unshare` has seen it die.
    pub fn stop(&self) -> Result<()> {
        if self.init.alive() {
            let _ = kill(Pid::from_raw(self.init.pid as i32), Signal::SIGKILL);
        }
        let _ = self.init.gone_within(budget::stop() * 2);
        self.unshare.terminate(budget::stop());
        if self.init.alive() || self.unshare.alive() {
            bail!("the lab's holder (pid {}, unshare {}) survived SIGKILL", self.init.pid, self.unshare.pid);
        }
        Ok(())
    }
}

/// The holder's namespaces, as `nsenter` flags: user, mount, network, PID.
const LAB_NAMESPACES: &[&str] = &["-U", "-m", "-n", "-p"];
/// A host's: the same and its UTS namespace (its own mount and network namespaces are the
/// ones its holding process is in).
pub const HOST_NAMESPACES: &[&str] = &["-U", "-m", "-u", "-n", "-p"];

/// `nsenter` into the `namespaces` of `target` (a process of the lab), up to `--`.
pub fn enter_prefix(target: &ProcessId, namespaces: &[&str]) -> Vec<String> {
    let mut argv = vec!["nsenter".to_string(), "-t".into(), target.pid.to_string()];
    argv.extend(namespaces.iter().map(|n| n.to_string()));
    argv.extend(["--preserve-credentials".into(), "--".into()]);
    argv
}

/// `argv` as a command inside `target`'s namespaces, as the namespace's root (this user). The
/// system directories are on its PATH, and `setgroups()` succeeds doing nothing (see
/// [`fake_setgroups`]). Refused once `target` is gone, so a reused pid is never entered.
pub fn enter<S: AsRef<std::ffi::OsStr>>(target: &ProcessId, namespaces: &[&str], argv: &[S]) -> Result<Command> {
    if !target.alive() {
        bail!("the process holding them ({}) has exited", target.pid);
    }
    let prefix = enter_prefix(target, namespaces);
    let mut cmd = Command::new(&prefix[0]);
    cmd.args(&prefix[1..]).args(argv).env("PATH", crate::prereq::search_path());
    // SAFETY: `fake_setgroups` builds its filter on the stack and makes two prctl syscalls:
    // no allocation, no lock, safe between fork and exec.
    unsafe { cmd.pre_exec(fake_setgroups) };
    Ok(cmd)
}

/// The program a command from [`enter`] runs, given the pid of its `nsenter`: `nsenter` forks
/// to enter the PID namespace, so the program is its child.
pub fn program_of(nsenter: u32) -> Result<ProcessId> {
    poll::until("the program nsenter started", budget::command(), || match process::children_of(nsenter).into_iter().next() {
        Some(p) => Ok(p),
        None if ProcessId::of(nsenter).is_some_and(|n| n.alive()) => bail!("not forked yet"),
        None => Err(poll::Hopeless("it exited at once".into()).into()),
    })
}

/// `nsenter`s of long-lived programs nobody else waits for (the hosts' holding processes):
/// kept so that once they end they are reaped, not left as zombies.
static KEPT: std::sync::Mutex<Vec<std::process::Child>> = std::sync::Mutex::new(Vec::new());

pub fn keep(child: std::process::Child) {
    KEPT.lock().unwrap().push(child);
}

/// Reap the kept ones that have ended.
pub fn reap_kept() {
    KEPT.lock().unwrap().retain_mut(|c| matches!(c.try_wait(), Ok(None)));
}

fn holder_failed(log: &Path, what: &str) -> anyhow::Error {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    anyhow!(
        "could not make the lab's user namespace: {what}: {}\n(the netns backend as a normal user needs unprivileged user namespaces; see {})",
        text.trim(),
        log.display()
    )
}

/// Holders on this machine (of `uid`, or of anyone if `None`) whose run is not in `known`:
/// labs whose record is lost. Found by their run-unique command line alone.
pub fn unrecorded(known: &[String], uid: Option<u32>) -> Vec<(String, Holder)> {
    let mut found = Vec::new();
    for pid in process::all_pids() {
        let argv = process::cmdline_of(pid);
        if argv.first().map(String::as_str) != Some("unshare") || !argv.iter().any(|a| a == HOLDER_SCRIPT) {
            continue;
        }
        let Some(run_id) = argv.last().and_then(|m| m.strip_prefix("mesh-lab-")) else { continue };
        if known.iter().any(|k| k == run_id) || uid.is_some_and(|u| process::uid_of(pid) != Some(u)) {
            continue;
        }
        let Some(unshare) = ProcessId::of(pid) else { continue };
        // Without its init the namespaces are already gone; `stop` then ends unshare alone.
        let init = process::children_of(pid).into_iter().next().unwrap_or(ProcessId { pid: 0, start: 0 });
        found.push((run_id.to_string(), Holder { unshare, init }));
    }
    found
}

/// Installed in every process that enters a lab (before `nsenter` runs): `setgroups()`
/// returns success without doing anything.
///
/// A user namespace made by a normal user maps that one user to root and must deny
/// `setgroups()` (the kernel's rule, so no one can drop a group that guards a file against
/// them). nginx's workers and tcpdump (`-Z root`) call `initgroups()` as they switch users and
/// stop when it fails. In this namespace the call could change nothing anyway: there is one
/// user and one group. A seccomp filter answers it with success instead (it needs
/// `no_new_privs`, which nothing in a lab misses: it is root in its namespace already).
fn fake_setgroups() -> std::io::Result<()> {
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    {
        #[cfg(target_arch = "x86_64")]
        const AUDIT_ARCH: u32 = 0xC000_003E;
        #[cfg(target_arch = "aarch64")]
        const AUDIT_ARCH: u32 = 0xC000_00B7;
        let stmt = |code: u32, k: u32| libc::sock_filter { code: code as u16, jt: 0, jf: 0, k };
        let jump = |code: u32, k: u32, jt: u8, jf: u8| libc::sock_filter { code: code as u16, jt, jf, k };
        let filter = [
            // seccomp_data.arch: another ABI's calls are let through untouched.
            stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 4),
            jump(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K, AUDIT_ARCH, 0, 3),
            // seccomp_data.nr
            stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0),
            jump(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K, libc::SYS_setgroups as u32, 0, 1),
            stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ERRNO), // errno 0: success
            stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW),
        ];
        let program = libc::sock_fprog { len: filter.len() as u16, filter: filter.as_ptr() as *mut libc::sock_filter };
        nix::sys::prctl::set_no_new_privs().map_err(std::io::Error::from)?;
        // nix has no wrapper for installing a seccomp filter (nor a crate here that would).
        // SAFETY: `program` points at `filter`, both on this stack frame and alive across the
        // call, which copies the filter into the kernel; one syscall, async-signal-safe.
        if unsafe { libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &program as *const libc::sock_fprog) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setgroups_succeeds_doing_nothing_under_the_filter() {
        // `setpriv --clear-groups` calls setgroups(0, NULL): refused to a normal user, done by
        // root. Under the filter it succeeds for either, and the groups stay as they were.
        let mut cmd = Command::new("setpriv");
        cmd.args(["--clear-groups", "id", "-G"]);
        // SAFETY: as in `enter`: stack only, two prctl syscalls.
        unsafe { cmd.pre_exec(fake_setgroups) };
        let out = cmd.output().expect("setpriv runs");
        assert!(out.status.success(), "{out:?}");
        let own = Command::new("id").arg("-G").output().unwrap().stdout;
        assert_eq!(String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&own), "the groups did not change");
    }

    #[test]
    fn holders_are_named_by_run() {
        assert_eq!(marker("0a1b2c"), "mesh-lab-0a1b2c");
    }
}
