//! Every time budget of the harness, in one place, each with the reason for its size.
//! Scenarios never write a duration literal: they name one of these.
//!
//! All budgets are multiplied by one scale factor: the backend's own (netns 1, a VM
//! under TCG much more) times `MESH_TIME_SCALE` (default 1) for a slow machine. The VMs'
//! boot is the exception: its budget is worked out from the machine itself ([`vm_boot`]).

use once_cell::sync::OnceCell;
use std::time::Duration;

static SCALE: OnceCell<f64> = OnceCell::new();

/// Fix the scale factor for this process. Called once by the lab as it picks its backend.
pub fn set_backend_scale(backend_factor: f64) {
    let _ = SCALE.set(backend_factor * user_scale());
}

/// `MESH_TIME_SCALE` (validated before any lab is built; 1 where it is not a valid factor).
fn user_scale() -> f64 {
    crate::settings::time_scale().unwrap_or(1.0)
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
/// The first VM of a lab from start to answering SSH, worked out from this machine rather
/// than a fixed factor: one VM's boot costs about [`VM_BOOT_CPU_SECONDS`] of one core (TCG) or
/// a few seconds (KVM); `vms` of them share `cores`, and a machine may well be a few times
/// slower than the one measured. Times `MESH_TIME_SCALE`.
pub fn vm_boot(vms: usize, cores: usize, kvm: bool) -> Duration {
    let one = if kvm { VM_BOOT_CPU_SECONDS_KVM } else { VM_BOOT_CPU_SECONDS };
    let sharing = (vms as f64 / cores.max(1) as f64).max(1.0);
    Duration::from_secs_f64(one * sharing * VM_BOOT_HEADROOM * user_scale())
}

/// When the rest of a lab's VMs must answer, from their start, once the first answered after
/// `first`: they boot the same image on the same machine at the same time, so they answer
/// within about 1.6 times that (measured: 40–64 s for five here, 106–116 s on a slower machine
/// of this kind); twice it, and a little more for a VM that lost the race for a core.
pub fn vm_boot_rest(first: Duration) -> Duration {
    first * 2 + Duration::from_secs_f64(20.0 * user_scale())
}

/// One VM's boot to SSH under TCG in seconds of one core: five on two cores answered in
/// 40–64 s here (2026-11-26, Intel Xeon, 2 cores), about 26 s each.
pub const VM_BOOT_CPU_SECONDS: f64 = 30.0;
/// The same under KVM: the kernel and systemd at native speed.
pub const VM_BOOT_CPU_SECONDS_KVM: f64 = 8.0;
/// How much slower than the measured machine one may be before its VMs are called hung: a
/// machine of this project's kind took 106–116 s where this one took 40–64 s.
const VM_BOOT_HEADROOM: f64 = 3.0;
/// headscale from start to answering its CLI and its TLS port: opens SQLite, writes keys.
pub fn headscale_ready() -> Duration {
    scaled(30.0)
}
/// PostgreSQL (`MESH_DATABASE=postgres`) from its start to accepting connections: under a
/// second measured here, after an initdb of about two.
pub fn database_ready() -> Duration {
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
/// One ping's answer inside a poll that tries again ("does it reach yet"): a live path answers
/// in milliseconds; a miss is simply the next attempt.
pub fn reach() -> Duration {
    scaled(1.0)
}
/// One MagicDNS query inside a poll that tries again: 100.100.100.100 answers from memory.
pub fn dns_query() -> Duration {
    scaled(1.0)
}
/// One pong over a live path, when waiting for the path to change: it answers in milliseconds.
pub fn pong() -> Duration {
    scaled(2.0)
}
/// A rewritten ACL policy reaching every client after headscale is told to reload it: it
/// sends the new filter and peers with the next map update (about a second here); SC-005's
/// 30 s, the limit on the mesh coming back after an interruption.
pub fn policy_propagation() -> Duration {
    scaled(30.0)
}
/// A node the admin expired (`headscale nodes expire`) shown expired by every peer: headscale
/// sends the change to every peer with its next map update (about a second here, as a policy
/// change); SC-005's 30 s.
pub fn expiry_propagation() -> Duration {
    scaled(30.0)
}
/// An ephemeral node gone from `headscale nodes list` once it is due: headscale deletes it in
/// the logout's own request, or the moment its inactivity timer fires; the rest is a CLI call
/// or two on a busy machine.
pub fn ephemeral_removal() -> Duration {
    scaled(15.0)
}
/// A node whose map session ended (its tailscaled killed) listed offline: headscale 0.29 waits
/// up to 10 s, a look a second, for it to reconnect before it marks it offline — and only then
/// starts an ephemeral node's inactivity timer (`hscontrol/poll.go`); then a CLI call or two.
pub fn reconnect_grace() -> Duration {
    scaled(10.0) + ephemeral_removal()
}
/// How long before an ephemeral node's inactivity timeout elapses it is checked to be still
/// listed: a CLI call takes well under a second here and a few on a VM, so the answer is of
/// before the deadline.
pub fn before_deadline() -> Duration {
    scaled(5.0)
}
/// The longest ephemeral inactivity timeout (`node.ephemeral.inactivity_timeout`) a scenario
/// waits out: each such test waits it once, plus a removal budget, within [`scenario`]'s 600 s.
/// A longer one (the lab's default is 30 min) is skipped with the reason, never waited.
pub fn longest_inactivity_waited() -> Duration {
    scaled(300.0)
}
/// The pause between two looks at a condition that must hold throughout a span (a node still
/// listed): each look is a CLI call, and the span is a minute or more.
pub fn hold_interval() -> Duration {
    Duration::from_secs(1)
}
/// An approved (or withdrawn) subnet route taking effect on a client that accepts routes:
/// headscale sends the change with its next map update (about a second here, as a policy
/// change); SC-005's 30 s.
pub fn route_propagation() -> Duration {
    scaled(30.0)
}
/// A subnet route moving to its other router once its primary is cut off: headscale must see
/// the primary's map session end first, then hand the route on with a map update.
pub fn route_failover() -> Duration {
    scaled(90.0)
}
/// How long a route is watched for flapping: several of headscale's map updates and
/// tailscale's pings.
pub fn route_watch() -> Duration {
    scaled(10.0)
}
/// How long a returning router is watched for taking its route back: headscale 0.29 probes
/// its HA routers every 10 s (a 5 s timeout), so two of its probes.
pub fn route_settle() -> Duration {
    scaled(20.0)
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
/// Whole seconds, at least one, for a command's own limit (`dig +time`, `nc -w`, `ping -w`).
pub fn whole_seconds(limit: Duration) -> String {
    limit.as_secs_f64().ceil().max(1.0).to_string()
}
/// A service such as nginx from start to listening.
pub fn service_ready() -> Duration {
    scaled(10.0)
}
/// One command through Tailscale SSH (P9): the SSH handshake over the tailnet, tailscaled's
/// check of the policy's `ssh` rules, the session and its exit; a second or less here, a
/// refusal at once. A silent drop (no path to port 22) waits this long.
pub fn ssh_session() -> Duration {
    scaled(15.0)
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
/// Headless Chromium loading one local report.html and printing its DOM or a screenshot (the
/// page's browser test): about 3 s measured here on 2 busy cores, most of it the browser's own
/// start; a browser that has not finished in a minute is hung.
pub fn browser() -> Duration {
    scaled(60.0)
}
/// Installing missing Debian packages.
pub fn apt() -> Duration {
    scaled(600.0)
}
/// The pause between two attempts of a poll: short, the conditions change within milliseconds.
pub fn poll_interval() -> Duration {
    Duration::from_millis(100)
}
/// The pause between two looks at a process expected to exit (signalled in teardown, or a
/// scenario run to its end): a signalled process goes within milliseconds, teardown waits on
/// many in turn, and a scenario's time is reported to a tenth of a second.
pub fn exit_poll_interval() -> Duration {
    Duration::from_millis(10)
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
