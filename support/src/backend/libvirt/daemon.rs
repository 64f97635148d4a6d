//! Reaching libvirt: one connection a process, within a bounded time; where no daemon runs
//! (CI machines without systemd), starting `virtlogd` and `libvirtd` ourselves. (Choosing KVM
//! or TCG is [`hypervisor`]'s: a build without this backend can tell too.)

use crate::backend::hypervisor::{self, LIBVIRT_SOCKET};
use crate::{budget, exec, say};
use anyhow::{anyhow, bail, Context, Result};
use once_cell::sync::OnceCell;
use std::path::Path;
use std::sync::mpsc;
use virt::connect::Connect;

static CONNECTION: OnceCell<(String, Connect)> = OnceCell::new();

/// A connection to libvirt at `uri`, made once a process. Starts the daemons if this is the
/// machine's own libvirt and none runs.
pub fn connect(uri: &str) -> Result<Connect> {
    if let Some((u, c)) = CONNECTION.get() {
        if u == uri {
            return Ok(c.clone());
        }
    }
    if uri == super::DEFAULT_URI {
        kvm_device_as_udev_sets_it();
    }
    let conn = match open(uri) {
        Ok(c) => c,
        Err(first) if uri == super::DEFAULT_URI && !hypervisor::libvirt_answers() => {
            start_daemons().with_context(|| format!("libvirt is not running ({first:#})"))?;
            open(uri)?
        }
        Err(e) => return Err(e),
    };
    let _ = CONNECTION.set((uri.to_string(), conn.clone()));
    Ok(conn)
}

/// A connection only if the daemon already runs: for sweeping, never to start one.
pub fn connect_if_running(uri: &str) -> Result<Connect> {
    if !hypervisor::libvirt_answers() {
        bail!("libvirt is not running");
    }
    connect(uri)
}

/// Open within the time limit: a wedged daemon must not hang the run.
fn open(uri: &str) -> Result<Connect> {
    // libvirt prints every error to stderr by default, expected ones too ("no domain"):
    // errors reach us as values, and we say what they mean.
    virt::error::clear_error_callback();
    let (tx, rx) = mpsc::channel();
    let target = uri.to_string();
    std::thread::spawn(move || {
        let _ = tx.send(Connect::open(Some(&target)));
    });
    match rx.recv_timeout(budget::libvirt_connect()) {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(anyhow!(
            "cannot connect to libvirt at {uri}: {e}\n  start it (`systemctl start libvirtd`, or `virtlogd -d && libvirtd -d`), \
             or point MESH_LIBVIRT_URI at a running one"
        )),
        Err(_) => Err(anyhow!(
            "libvirt at {uri} did not answer within {:?}: is libvirtd hung? (`virsh -c {uri} version` shows the same)",
            budget::libvirt_connect()
        )),
    }
}

/// Start `virtlogd`, `virtlockd` and `libvirtd` as daemons, as a system without systemd needs. They are the
/// machine's services from then on (other runs share them); `.ci/run` stops the ones it started.
fn start_daemons() -> Result<()> {
    say!("libvirtd is not running: starting virtlogd, virtlockd and libvirtd (no service manager here to do it)");
    // virtlockd too: libvirt locks the files whose owner it remembers through it, and without
    // it each VM's start waits out a 60 s time-out.
    for daemon in ["virtlogd", "virtlockd", "libvirtd"] {
        let running = std::fs::read_to_string(format!("/run/{daemon}.pid"))
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok())
            .is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
        if !running {
            exec::local(&[daemon, "-d"], budget::command())?
                .check()
                .with_context(|| format!("starting {daemon}: is libvirt-daemon-system installed?"))?;
        }
    }
    crate::poll::until("libvirtd's socket answering", budget::command(), || {
        if hypervisor::libvirt_answers() {
            Ok(())
        } else {
            bail!("{LIBVIRT_SOCKET} does not accept connections yet")
        }
    })
}

/// Debian's udev gives /dev/kvm to group `kvm`, mode 0660 (libvirt's QEMU user is in it). A
/// machine without udev leaves it root's alone, 0600: libvirt then finds KVM usable when it
/// probes QEMU as root but not for its QEMU user, calls its cache of QEMU's capabilities stale
/// on every look-up and probes again, some twenty times a VM start: a minute each (measured).
/// So the device gets the permissions udev would have given it.
fn kvm_device_as_udev_sets_it() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let path = Path::new("/dev/kvm");
    let Ok(meta) = std::fs::metadata(path) else { return };
    let Some(kvm_gid) = group_id("kvm") else { return };
    if meta.gid() == kvm_gid && meta.mode() & 0o060 == 0o060 {
        return;
    }
    say!(
        "/dev/kvm is {:o} root:{}; giving it to group kvm, mode 0660, as Debian's udev rule does",
        meta.mode() & 0o777,
        meta.gid()
    );
    let _ = std::os::unix::fs::chown(path, None, Some(kvm_gid));
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660));
}

fn group_id(name: &str) -> Option<u32> {
    let groups = std::fs::read_to_string("/etc/group").ok()?;
    groups.lines().map(|l| l.split(':').collect::<Vec<_>>()).find(|f| f.first() == Some(&name))?.get(2)?.parse().ok()
}
