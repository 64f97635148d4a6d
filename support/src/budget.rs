//! Every time budget of the harness, in one place, each with the reason for its size.
//! Scenarios never write a duration literal: they name one of these.
//!
//! All budgets are multiplied by one scale factor: the backend's own (netns 1, a VM
//! under TCG much more) times `MESH_TIME_SCALE` (default 1) for a slow machine.

use once_cell::sync::OnceCell;
use std::time::Duration;

static SCALE: OnceCell<f64> = OnceCell::new();

/// Fix the scale factor for this process. Called once by the lab as it picks its backend.
pub fn set_backend_scale(backend_factor: f64) {
    let user = std::env::var("MESH_TIME_SCALE").ok().and_then(|v| v.parse::<f64>().ok()).filter(|f| *f > 0.0);
    let _ = SCALE.set(backend_factor * user.unwrap_or(1.0));
}

fn scaled(secs: f64) -> Duration {
    Duration::from_secs_f64(secs * SCALE.get().copied().unwrap_or(1.0))
}

/// One command inside a host: status queries, CLI calls. Anything slower is hung.
pub fn command() -> Duration {
    scaled(20.0)
}
/// Building the lab's network (namespaces, links, firewall): 0.1 s measured; generous.
pub fn network() -> Duration {
    scaled(30.0)
}
/// libvirt answering a first connection: it probes QEMU's capabilities (~11 s measured).
pub fn libvirt_connect() -> Duration {
    scaled(15.0)
}
/// Every VM of a lab from start to answering SSH: ~40 s measured for four under TCG on two
/// cores (scaled 4× for VMs: 2 minutes).
pub fn vm_boot() -> Duration {
    scaled(30.0)
}
/// headscale from start to answering its CLI and its TLS port: opens SQLite, writes keys.
pub fn headscale_ready() -> Duration {
    scaled(30.0)
}
/// tailscaled from start to answering on its socket.
pub fn tailscaled_ready() -> Duration {
    scaled(20.0)
}
/// `tailscale up` with a pre-auth key until the node is Running.
pub fn register() -> Duration {
    scaled(60.0)
}
/// All clients online everywhere after registration. Above SC-001's 2 minutes, so that a
/// slow mesh fails SC-001 with its figure rather than the build with a time-out.
pub fn converge() -> Duration {
    scaled(180.0)
}
/// One ping exchange across the mesh, direct or relayed, including path discovery.
pub fn ping() -> Duration {
    scaled(15.0)
}
/// One pong over a live path, when waiting for the path to change: it answers in milliseconds.
pub fn pong() -> Duration {
    scaled(2.0)
}
/// A path change: a dead direct path is trusted for 6.5 s before magicsock falls back to
/// DERP; a new one takes a few disco rounds.
pub fn path_change() -> Duration {
    scaled(30.0)
}
/// A marker to cross the mesh and show up at its receiver.
pub fn delivery() -> Duration {
    scaled(10.0)
}
/// A service such as nginx from start to listening.
pub fn service_ready() -> Duration {
    scaled(10.0)
}
/// A request that should be refused: a refusal is immediate, a silent drop waits this long.
pub fn refused() -> Duration {
    scaled(3.0)
}
/// One scenario test, as `cargo mesh check` runs it: a hung one is killed, and counts as failed.
/// Its soak, if it has one, comes on top.
pub fn scenario() -> Duration {
    scaled(600.0) + soak().unwrap_or_default()
}
/// A service's grace to exit on SIGTERM before it gets SIGKILL.
pub fn stop() -> Duration {
    scaled(10.0)
}
/// `go install` of one pinned program, cold module and build caches on 2 cores.
pub fn go_build() -> Duration {
    scaled(1800.0)
}
/// Installing missing Debian packages.
pub fn apt() -> Duration {
    scaled(600.0)
}
/// The pause between two attempts of a poll: short, the conditions change within milliseconds.
pub fn poll_interval() -> Duration {
    Duration::from_millis(100)
}

/// The soak's length (SC-003): `MESH_SOAK` (e.g. `10s`, `15m`, `1h`, the plan's hour), 10 s by
/// default so that a check stays quick. Not scaled: it is a duration asked for, not a limit.
pub fn soak() -> anyhow::Result<Duration> {
    match std::env::var("MESH_SOAK") {
        Ok(v) => humantime::parse_duration(v.trim())
            .map_err(|_| anyhow::anyhow!("MESH_SOAK={v:?} is not a duration: give one such as 10s, 15m or 1h")),
        Err(_) => Ok(Duration::from_secs(10)),
    }
}
