//! One host abstraction, several ways to make hosts. Scenarios and the mesh layer see only
//! [`Host`]; which backend made it is the lab's business.

pub mod hypervisor;
#[cfg(feature = "libvirt")]
pub mod libvirt;
pub mod netns;
pub mod seam;

pub use seam::{Built, LabBackend};

/// The cargo features this build has its backends by: scenario binaries are built with the
/// same, so that they can drive the lab this build makes.
pub const CARGO_FEATURES: &[&str] = if cfg!(feature = "libvirt") { &["--features", "libvirt"] } else { &[] };

/// A run id: this many hex digits, in every name a lab has (`mesh-<run id>-…`).
pub const RUN_ID_LEN: usize = 6;

use crate::exec::Output;
use anyhow::{bail, Result};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// A lab machine: run commands in it, start and stop its services, reach a TCP port from it.
/// Nothing here names a backend type.
pub trait Host: Send + Sync {
    /// Its role name in the lab: `headscale`, `client-1`, …
    fn name(&self) -> &str;

    /// Run `argv` once inside the host, feeding it `stdin`, killed after `limit`.
    fn exec(&self, argv: &[&str], stdin: Option<&[u8]>, limit: Duration) -> Result<Output>;

    /// Start a long-running service inside the host; its output goes to [`Host::log_path`].
    fn start_service(&self, service: &str, argv: &[String], env: &[(String, String)]) -> Result<()>;

    /// Stop a service: SIGTERM, then SIGKILL after the stop budget. Stopping a stopped one is fine.
    fn stop_service(&self, service: &str) -> Result<()>;

    /// Kill a running service at once (SIGKILL): it says nothing to anyone on its way out, as
    /// a host that crashed (its sockets are closed by the kernel). [`Host::stop_service`] still
    /// tidies up after it.
    fn kill_service(&self, service: &str) -> Result<()>;

    /// Tell a running service to reload its configuration: SIGHUP to its recorded process
    /// (headscale reads its file-mode ACL policy again on it).
    fn reload_service(&self, service: &str) -> Result<()>;

    /// The service is running (it may still be starting up).
    fn service_running(&self, service: &str) -> bool;

    /// Open (and close) a TCP connection from inside the host: a readiness probe.
    fn tcp_connect(&self, addr: SocketAddr, limit: Duration) -> Result<()>;

    /// Where a service's log is kept on this machine.
    fn log_path(&self, service: &str) -> PathBuf;

    /// What a service has printed so far; also brings [`Host::log_path`] up to date.
    fn service_log(&self, service: &str) -> String {
        std::fs::read_to_string(self.log_path(service)).unwrap_or_default()
    }

    /// The host's own system log (a VM's journal since boot), for the artifacts of a failed
    /// run; `None` where the host has none of its own (a namespace shares this machine's).
    fn system_log(&self) -> Option<String> {
        None
    }

    /// A directory inside the host for its services' state, kept across service restarts.
    fn state_dir(&self) -> String;

    /// A directory inside the host for data that goes with the lab (a database server's
    /// cluster), where [`Host::state_dir`] stays in the lab's folder for diagnostics.
    fn data_dir(&self) -> String;

    /// The command line that opens an interactive shell inside the host, with `path_prefix`
    /// (the lab's programs) first on its PATH.
    fn shell_argv(&self, path_prefix: &str) -> Vec<String>;

    /// Peak resident memory of its running services, in KiB.
    fn services_peak_rss_kib(&self) -> u64;

    /// Its root is a normal user of this machine (the lab is in a user namespace): there is no
    /// other user to switch to, so a service that would drop to one (nginx's workers) stays root.
    fn root_is_unprivileged(&self) -> bool {
        false
    }
}

impl dyn Host + '_ {
    /// Run once with the default command budget; the output whatever its exit status.
    pub fn run(&self, argv: &[&str]) -> Result<Output> {
        self.exec(argv, None, crate::budget::command())
    }

    /// Run once, timed inside the host: how long the command itself took there, without the
    /// way in (an SSH round trip to a VM is not part of a DNS lookup). Its output, and that time.
    pub fn run_timed(&self, argv: &[&str]) -> Result<(Output, Duration)> {
        const MARK: &str = "mesh-elapsed-ns ";
        let script = format!(r#"s=$(date +%s%N); "$@"; rc=$?; e=$(date +%s%N); echo "{MARK}$((e - s))" >&2; exit $rc"#);
        let mut full = vec!["sh", "-c", script.as_str(), "sh"];
        full.extend_from_slice(argv);
        let mut out = self.exec(&full, None, crate::budget::command())?;
        let nanos = out.stderr.lines().find_map(|l| l.strip_prefix(MARK)?.trim().parse::<u64>().ok());
        out.stderr = out.stderr.lines().filter(|l| !l.starts_with(MARK)).map(|l| format!("{l}\n")).collect();
        out.command = crate::exec::display_argv(argv);
        let took = nanos.map(Duration::from_nanos).unwrap_or(out.elapsed);
        Ok((out, took))
    }

    /// Run once and require success; its stdout.
    pub fn succeed(&self, argv: &[&str]) -> Result<String> {
        Ok(self.run(argv)?.check()?.stdout)
    }

    /// Run once and require failure; its output.
    pub fn fail(&self, argv: &[&str]) -> Result<Output> {
        let out = self.run(argv)?;
        if out.success() {
            bail!("on {}: `{}` succeeded but was expected to fail; stdout: {}", self.name(), out.command, out.stdout.trim());
        }
        Ok(out)
    }

    /// Fail at once, with the end of its log, if `service` has exited: a wait for it ends there.
    pub fn ensure_running(&self, service: &str) -> Result<()> {
        if self.service_running(service) {
            return Ok(());
        }
        let log = self.service_log(service);
        Err(crate::poll::Hopeless(format!(
            "{service} on {} exited; its log ({}) ends:\n    {}",
            self.name(),
            self.log_path(service).display(),
            crate::exec::tail(&log, 15)
        ))
        .into())
    }

    /// Write a file inside the host (through the host, so it lands wherever the host's
    /// filesystem really is).
    pub fn write_file(&self, path: &str, contents: &[u8]) -> Result<()> {
        let script = r#"mkdir -p "$(dirname "$1")" && cat > "$1""#;
        self.exec(&["sh", "-c", script, "sh", path], Some(contents), crate::budget::command())?.check()?;
        Ok(())
    }
}

/// The lab's underlay as a whole: the router between the subnets and each host's link.
/// What scenarios do to the network, they do through this.
pub trait Underlay: Send + Sync {
    /// Drop (or stop dropping) UDP forwarded between the subnets, except STUN to and from the
    /// server: peers across the router can then only talk through DERP.
    fn block_udp_between_subnets(&self, blocked: bool) -> Result<()>;

    /// Take a host's underlay link down, or bring it back.
    fn set_link(&self, host: &str, up: bool) -> Result<()>;

    /// Start capturing the packets crossing the router, with a pcap filter.
    fn capture(&self, filter: &str) -> Result<Box<dyn Capture>>;

    /// The router's firewall rules, for diagnostics.
    fn ruleset(&self) -> Result<String>;

    /// The router's answer to `ip route get ADDRESS`: where it would send a packet for it.
    /// Asks the routing table only; sends nothing.
    fn router_route_to(&self, address: &str) -> Result<Output>;
}

/// A running packet capture.
pub trait Capture: Send {
    /// What has been captured so far (the pcap file's bytes), while it goes on.
    fn so_far(&self) -> Result<Vec<u8>>;

    /// Stop capturing; what was captured.
    fn stop(self: Box<Self>) -> Result<Captured>;
}

pub struct Captured {
    /// The pcap file's bytes: payloads included, to search for plaintext.
    pub raw: Vec<u8>,
    /// One line a packet, as `tcpdump -nn -r` prints them.
    pub packets: Vec<String>,
    pub path: PathBuf,
}

/// The backends this harness knows, by the name a user gives (`MESH_BACKEND`, `--backend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// Network namespaces on this machine: seconds to build, the default.
    Netns,
    /// Real VMs through libvirt (built with `--features libvirt`).
    Libvirt,
}

impl BackendKind {
    pub const NAMES: &'static [&'static str] = &["netns", "libvirt"];

    pub fn parse(name: &str) -> Result<BackendKind> {
        match name.trim() {
            "netns" | "" => Ok(BackendKind::Netns),
            "libvirt" if cfg!(feature = "libvirt") => Ok(BackendKind::Libvirt),
            "libvirt" => bail!(
                "this build has no libvirt backend: build it in with the `libvirt` feature: \
                 `MESH_BACKEND=libvirt cargo test --features libvirt`, or `cargo mesh-vm check --backend libvirt` \
                 (building it needs libvirt-dev, pkg-config and libssl-dev)"
            ),
            other => bail!("unknown backend {other:?}: MESH_BACKEND (or --backend) takes one of: {}", Self::NAMES.join(", ")),
        }
    }

    pub fn from_env() -> Result<BackendKind> {
        BackendKind::parse(&std::env::var("MESH_BACKEND").unwrap_or_default())
    }

    pub fn name(&self) -> &'static str {
        match self {
            BackendKind::Netns => "netns",
            BackendKind::Libvirt => "libvirt",
        }
    }

    /// The commands that drive a lab of this backend: `cargo mesh` and `cargo test`, or their
    /// forms built with the VM backend in.
    pub fn commands(&self) -> (&'static str, &'static str) {
        match self {
            BackendKind::Netns => ("cargo mesh", "cargo test"),
            BackendKind::Libvirt => ("cargo mesh-vm", "cargo test --features libvirt"),
        }
    }

    /// How much slower than the netns baseline every budget should be: VMs emulated by TCG on
    /// two cores run every command several times slower.
    pub fn time_scale(&self) -> f64 {
        match self {
            BackendKind::Netns => 1.0,
            BackendKind::Libvirt => 4.0,
        }
    }
}
