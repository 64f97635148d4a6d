//! A client under test: tailscaled with a real TUN device, and the tailscale CLI talking to it.

use crate::backend::Host;
use crate::exec::Output;
use crate::report::{PairFigure, Reach};
use crate::{budget, poll};
use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

pub const SERVICE: &str = "tailscaled";
/// The mesh interface: a real TUN device, so services can bind the tailnet address.
pub const TUN: &str = "tailscale0";
/// tailscaled's WireGuard UDP port, fixed so captures and firewall rules can name it.
pub const WG_PORT: u16 = 41641;

/// tailscaled and the tailscale CLI on one client host.
pub struct Tailscale<'a> {
    pub host: &'a dyn Host,
    pub tailscale: String,
    pub tailscaled: String,
}

/// `tailscale status --json`, the parts the suite reads.
#[derive(Debug, Clone, Deserialize)]
pub struct Status {
    #[serde(rename = "BackendState")]
    pub backend_state: BackendState,
    #[serde(rename = "Self")]
    pub me: Option<PeerStatus>,
    #[serde(rename = "Peer", default)]
    pub peers: Option<BTreeMap<String, PeerStatus>>,
    #[serde(rename = "Health", default)]
    pub health: Option<Vec<String>>,
}

/// tailscaled's state machine as `BackendState` names it (ipn/backend.go's `State`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "String")]
pub enum BackendState {
    NoState,
    NeedsLogin,
    NeedsMachineAuth,
    Stopped,
    Starting,
    Running,
    /// A name this suite does not know (a newer tailscale's), kept as it came.
    Other(String),
}

impl From<String> for BackendState {
    fn from(name: String) -> BackendState {
        match name.as_str() {
            "NoState" => BackendState::NoState,
            "NeedsLogin" => BackendState::NeedsLogin,
            "NeedsMachineAuth" => BackendState::NeedsMachineAuth,
            "Stopped" => BackendState::Stopped,
            "Starting" => BackendState::Starting,
            "Running" => BackendState::Running,
            _ => BackendState::Other(name),
        }
    }
}

impl std::fmt::Display for BackendState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BackendState::Other(name) => f.write_str(name),
            known => write!(f, "{known:?}"),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct PeerStatus {
    #[serde(rename = "HostName", default)]
    pub host_name: String,
    #[serde(rename = "DNSName", default)]
    pub dns_name: String,
    #[serde(rename = "TailscaleIPs", default)]
    pub tailscale_ips: Option<Vec<String>>,
    #[serde(rename = "Online", default)]
    pub online: bool,
    /// The direct endpoint in use, empty while relayed or before traffic.
    #[serde(rename = "CurAddr", default)]
    pub cur_addr: String,
    /// The peer's home DERP region: always set, says nothing about the path in use.
    #[serde(rename = "Relay", default)]
    pub relay: String,
    /// Its node key: a client that re-registers gets a new one.
    #[serde(rename = "PublicKey", default)]
    pub public_key: String,
    /// Its node key has expired (the control server says so, or its `KeyExpiry` has passed).
    #[serde(rename = "Expired", default)]
    pub expired: bool,
    /// When its node key expires or expired, if it does (RFC 3339).
    #[serde(rename = "KeyExpiry", default)]
    pub key_expiry: Option<String>,
    /// Its ACL tags.
    #[serde(rename = "Tags", default)]
    pub tags: Option<Vec<String>>,
    /// The subnet routes this peer is the primary for, as the control server says.
    #[serde(rename = "PrimaryRoutes", default)]
    pub primary_routes: Option<Vec<String>>,
}

impl Status {
    pub fn peers(&self) -> impl Iterator<Item = &PeerStatus> {
        self.peers.iter().flat_map(|p| p.values())
    }

    pub fn peer(&self, host_name: &str) -> Option<&PeerStatus> {
        self.peers().find(|p| p.host_name == host_name)
    }
}

impl PeerStatus {
    pub fn ips(&self) -> &[String] {
        self.tailscale_ips.as_deref().unwrap_or_default()
    }

    pub fn tags(&self) -> &[String] {
        self.tags.as_deref().unwrap_or_default()
    }
}

/// The path one `tailscale ping` took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Path {
    Direct(String),
    Derp(String),
    PeerRelay(String),
}

/// One pong.
#[derive(Debug, Clone)]
pub struct Pong {
    pub path: Path,
    pub latency: Duration,
}

impl<'a> Tailscale<'a> {
    /// tailscaled's state directory (node key, prefs): keep it and the node keeps its identity.
    pub fn state_path(&self) -> String {
        format!("{}/tailscale", self.host.state_dir())
    }

    /// The default path: each host has its own /run, so `tailscale` needs no flag in a shell.
    pub fn socket(&self) -> String {
        "/run/tailscale/tailscaled.sock".into()
    }

    pub fn ca_path(&self) -> String {
        format!("{}/lab-ca.pem", self.state_path())
    }

    /// Install the lab's CA for tailscaled and start it; [`Tailscale::await_daemon`] waits for it.
    pub fn start(&self, ca_pem: &str) -> Result<()> {
        self.host.write_file(&self.ca_path(), ca_pem.as_bytes())?;
        self.start_daemon()
    }

    /// Start tailscaled on the state already there (also after a stop).
    pub fn start_daemon(&self) -> Result<()> {
        let dir = self.state_path();
        let argv = [
            self.tailscaled.clone(),
            format!("--statedir={dir}"),
            format!("--state={dir}/tailscaled.state"),
            format!("--socket={}", self.socket()),
            format!("--tun={TUN}"),
            format!("--port={WG_PORT}"),
            // No log uploads: the lab has no way out, and they are not ours to send.
            "--no-logs-no-support".into(),
        ];
        let env = [
            // Trust the lab's CA and nothing else for the control server and DERP.
            ("SSL_CERT_FILE".to_string(), self.ca_path()),
            ("TS_NO_LOGS_NO_SUPPORT".to_string(), "true".to_string()),
            // Its log-policy file, which would otherwise go to the machine's /var/lib/tailscale.
            ("TS_LOGS_DIR".to_string(), self.state_path()),
        ];
        self.host.start_service(SERVICE, &argv, &env)
    }

    pub fn await_daemon(&self) -> Result<()> {
        poll::until(&format!("tailscaled on {} answers on its socket", self.host.name()), budget::tailscaled_ready(), || {
            self.host.ensure_running(SERVICE)?;
            self.status().map(|_| ())
        })
    }

    /// `tailscale set FLAGS…`, as the node's user would change a preference; it must succeed.
    pub fn set(&self, flags: &[&str]) -> Result<()> {
        let mut args = vec!["set"];
        args.extend_from_slice(flags);
        self.cli(&args)?.check().map(|_| ()).with_context(|| format!("tailscale set {}", flags.join(" ")))
    }

    /// `tailscale --socket=… ARGS…`, once.
    pub fn cli(&self, args: &[&str]) -> Result<Output> {
        let socket = format!("--socket={}", self.socket());
        let mut argv = vec![self.tailscale.as_str(), socket.as_str()];
        argv.extend_from_slice(args);
        self.host.run(&argv)
    }

    /// Register with a pre-auth key; returns once the node is Running.
    pub fn up(&self, login_server: &str, auth_key: &str, hostname: &str) -> Result<()> {
        self.up_with(login_server, auth_key, hostname, &[])
    }

    /// [`Tailscale::up`] with more of `tailscale up`'s flags (`--force-reauth`).
    pub fn up_with(&self, login_server: &str, auth_key: &str, hostname: &str, flags: &[&str]) -> Result<()> {
        let socket = format!("--socket={}", self.socket());
        let timeout = format!("--timeout={}s", budget::register().as_secs());
        let (server, key, name) =
            (format!("--login-server={login_server}"), format!("--auth-key={auth_key}"), format!("--hostname={hostname}"));
        let mut argv = vec![self.tailscale.as_str(), socket.as_str(), "up", &server, &key, &name, &timeout];
        argv.extend_from_slice(flags);
        self.host
            .exec(&argv, None, budget::register() + budget::command())?
            .check()
            .with_context(|| format!("registering {hostname}; tailscaled's log: {}", self.host.log_path(SERVICE).display()))?;
        Ok(())
    }

    pub fn status(&self) -> Result<Status> {
        let out = self.cli(&["status", "--json"])?;
        // `status` exits non-zero while logged out but still prints its JSON.
        serde_json::from_str(&out.stdout).map_err(|e| anyhow!("{}\n  (no status JSON: {e})", out.describe_failure()))
    }

    /// This node's tailnet addresses, IPv4 first.
    pub fn ips(&self) -> Result<Vec<String>> {
        let status = self.status()?;
        let me = status.me.ok_or_else(|| anyhow!("{}: status has no Self", self.host.name()))?;
        let mut ips = me.ips().to_vec();
        ips.sort_by_key(|ip| ip.contains(':'));
        Ok(ips)
    }

    /// One `tailscale ping` (disco, over whatever path magicsock uses now): its path and time.
    ///
    /// With `-c 1` the CLI exits 0 on a direct pong and 1 ("direct connection not
    /// established") on a relayed one, without the 1 s pause `--until-direct=false` adds; a
    /// pong in the output is the answer either way, and the caller judges the path.
    pub fn ping(&self, target: &str) -> Result<Pong> {
        self.ping_within(target, budget::ping())
    }

    /// As [`Tailscale::ping`], giving up on the pong after `timeout`.
    pub fn ping_within(&self, target: &str, timeout: Duration) -> Result<Pong> {
        let timeout_flag = format!("--timeout={}ms", timeout.as_millis());
        let out = self.host.exec(
            &[&self.tailscale, &format!("--socket={}", self.socket()), "ping", "-c", "1", &timeout_flag, target],
            None,
            timeout + budget::command(),
        )?;
        parse_pong(&out.stdout).ok_or_else(|| anyhow!("no pong from {target}: {}", out.describe_failure()))
    }
}

impl Pong {
    /// This pong as a measurement of the pair `from` → `to` for the run's report: its path,
    /// the endpoint or region it went by, its round trip.
    pub fn figure(&self, from: &str, to: &str) -> PairFigure {
        let (reach, via) = match &self.path {
            Path::Direct(endpoint) => (Reach::Direct, endpoint),
            Path::Derp(region) => (Reach::Derp, region),
            Path::PeerRelay(relay) => (Reach::PeerRelay, relay),
        };
        // The CLI prints the latency rounded to the millisecond (cmd/tailscale/cli/ping.go:
        // `.Round(time.Millisecond)`, 1.98.10): a pong "in 0s" took under half of one.
        PairFigure::new(from, to, reach, "tailscale ping").via(via).rtt(self.latency).rounded_to(Duration::from_millis(1))
    }
}

impl Path {
    /// The `ip:port` of a direct path, if it is one.
    pub fn direct_ip(&self) -> Option<std::net::IpAddr> {
        match self {
            Path::Direct(endpoint) => endpoint.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()),
            _ => None,
        }
    }

    pub fn is_derp(&self) -> bool {
        matches!(self, Path::Derp(_))
    }
}

impl<'a> Tailscale<'a> {
    /// Wait until pongs from `target` come over a direct path.
    pub fn await_direct(&self, target: &str) -> Result<Pong> {
        self.await_path(target, "over a direct path", budget::path_change(), |p| p.direct_ip().is_some())
    }

    /// Wait until pongs from `target` come relayed by DERP.
    pub fn await_relayed(&self, target: &str) -> Result<Pong> {
        self.await_path(target, "relayed by DERP", budget::path_change(), Path::is_derp)
    }
}

impl<'a> Tailscale<'a> {
    /// Ping `target` with `tailscale ping` until its pong comes over a path `wanted` accepts.
    /// Paths change by design (disco finds direct paths, drops dead ones), so this is a wait
    /// on a real condition, with the last path seen in the error.
    pub fn await_path(&self, target: &str, what: &str, budget: Duration, wanted: impl Fn(&Path) -> bool) -> Result<Pong> {
        poll::until(&format!("{}: a pong from {target} {what}", self.host.name()), budget, || {
            // A live path answers in milliseconds: a short wait per attempt lets a dead path
            // show as dead quickly, and leaves the budget to the path change itself.
            let pong = self.ping_within(target, budget::pong())?;
            if wanted(&pong.path) {
                Ok(pong)
            } else {
                bail!("pong via {:?}", pong.path)
            }
        })
    }
}

/// `pong from client-2 (100.64.0.2, 40531) via 192.168.1.1:41641 in 3ms` → path and latency.
pub fn parse_pong(text: &str) -> Option<Pong> {
    let line = text.lines().find(|l| l.starts_with("pong from "))?;
    let (_, rest) = line.split_once(" via ")?;
    let (via, latency) = rest.rsplit_once(" in ")?;
    let path = if let Some(region) = via.strip_prefix("DERP(").and_then(|r| r.strip_suffix(')')) {
        Path::Derp(region.to_string())
    } else if let Some(relay) = via.strip_prefix("peer-relay(").and_then(|r| r.strip_suffix(')')) {
        Path::PeerRelay(relay.to_string())
    } else {
        Path::Direct(via.to_string())
    };
    Some(Pong { path, latency: parse_go_duration(latency.trim())? })
}

/// Go's `time.Duration` text as `tailscale ping` prints it: `3ms`, `1.5s`, `800µs`, `0s`.
fn parse_go_duration(text: &str) -> Option<Duration> {
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (number, unit) = text.split_at(split);
    let n: f64 = number.parse().ok()?;
    let secs = match unit {
        "ns" => n / 1e9,
        "µs" | "us" => n / 1e6,
        "ms" => n / 1e3,
        "s" => n,
        "m" => n * 60.0,
        _ => return None,
    };
    Some(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pongs_say_their_path_and_latency() {
        let direct = parse_pong("pong from client-2 (100.64.0.2, 40531) via 192.168.1.1:41641 in 3ms\n").unwrap();
        assert_eq!(direct.path, Path::Direct("192.168.1.1:41641".into()));
        assert_eq!(direct.latency, Duration::from_millis(3));
        let relayed = parse_pong("pong from client-1 (100.64.0.1) via DERP(lab) in 12ms").unwrap();
        assert_eq!(relayed.path, Path::Derp("lab".into()));
        assert!(parse_pong("ping \"100.64.0.9\" timed out").is_none());
        assert_eq!(parse_go_duration("0s"), Some(Duration::ZERO));
        assert_eq!(parse_go_duration("1.5s"), Some(Duration::from_millis(1500)));
    }
}
