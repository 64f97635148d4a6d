//! The embedded backend: each host is a network namespace on this machine, with a mount and
//! UTS namespace of its own (its own /etc through an overlay, its own /sys and hostname), so
//! a host's resolver, hosts file and hostname are its own, as on a real machine.
//!
//! The subnets are bridges inside a router namespace; nothing is added to the machine's own
//! namespace, the router has no interface that leaves the lab, and no namespace has a
//! default route.

use super::{Capture, Captured, Host, Underlay};
use crate::exec::{self, Output};
use crate::process::{self, Lifetime, ProcessId};
use crate::spec::LabSpec;
use crate::{budget, say};
use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::ffi::CString;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

/// The names and paths of one netns lab, enough to find and remove all of it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NetnsRecord {
    pub router: String,
    /// Host role name → its network namespace.
    pub hosts: BTreeMap<String, String>,
    /// Where the hosts' mount and UTS namespaces are pinned (a private bind mount).
    pub ns_dir: PathBuf,
}

/// Every namespace this tool creates is named `mesh-<run id>-<host>`.
pub const NS_PREFIX: &str = "mesh-";

impl NetnsRecord {
    pub fn plan(run_id: &str, lab_dir: &Path, spec: &LabSpec) -> NetnsRecord {
        NetnsRecord {
            router: format!("{NS_PREFIX}{run_id}-router"),
            hosts: spec.hosts.iter().map(|h| (h.name.clone(), format!("{NS_PREFIX}{run_id}-{}", h.name))).collect(),
            ns_dir: lab_dir.join("ns"),
        }
    }

    fn all_namespaces(&self) -> impl Iterator<Item = &String> {
        std::iter::once(&self.router).chain(self.hosts.values())
    }
}

/// Whether `name` is a namespace of this tool, and of which run.
pub fn run_id_of_namespace(name: &str) -> Option<&str> {
    let rest = name.strip_prefix(NS_PREFIX)?;
    let (id, _) = rest.split_once('-')?;
    (id.len() == crate::lab::RUN_ID_LEN && id.chars().all(|c| c.is_ascii_hexdigit())).then_some(id)
}

fn ip(args: &[&str]) -> Result<Output> {
    let mut argv = vec!["ip"];
    argv.extend_from_slice(args);
    exec::local(&argv, budget::command())?.check()
}

/// Build the network of `spec`: namespaces, bridges, links, addresses, routes, NAT, and each
/// host's own /etc. `etc_files` are written into every host's /etc (hosts, resolv.conf …).
pub fn create(record: &NetnsRecord, spec: &LabSpec, lab_dir: &Path, etc_files: &[(&str, String)]) -> Result<()> {
    let r = record.router.as_str();
    for ns in record.all_namespaces() {
        ip(&["netns", "add", ns])?;
    }
    ip(&["-n", r, "link", "set", "lo", "up"])?;
    for s in &spec.subnets {
        let br = format!("br-{}", s.name);
        ip(&["-n", r, "link", "add", &br, "type", "bridge"])?;
        ip(&["-n", r, "addr", "add", &format!("{}/{}", s.router, s.net.prefix_len()), "dev", &br])?;
        ip(&["-n", r, "link", "set", &br, "up"])?;
    }
    in_namespace(r, &["sysctl", "-qw", "net.ipv4.ip_forward=1"], None)?;
    in_namespace(r, &["nft", "-f", "-"], Some(router_ruleset(spec).as_bytes()))?;

    std::fs::create_dir_all(&record.ns_dir)?;
    // The pinned namespaces must live on a private mount, or the kernel refuses to pin them.
    let ns_dir = record.ns_dir.display().to_string();
    exec::local(&["mount", "--bind", &ns_dir, &ns_dir], budget::command())?.check()?;
    exec::local(&["mount", "--make-private", &ns_dir], budget::command())?.check()?;

    for h in &spec.hosts {
        let ns = &record.hosts[&h.name];
        let subnet = spec.subnet(&h.subnet);
        let peer = format!("v-{}", h.name);
        ip(&["-n", r, "link", "add", &peer, "type", "veth", "peer", "name", "eth0", "netns", ns])?;
        ip(&["-n", r, "link", "set", &peer, "master", &format!("br-{}", subnet.name), "up"])?;
        ip(&["-n", ns, "link", "set", "lo", "up"])?;
        ip(&["-n", ns, "addr", "add", &format!("{}/{}", h.addr, subnet.net.prefix_len()), "dev", "eth0"])?;
        ip(&["-n", ns, "link", "set", "eth0", "up"])?;
        // No default route: a host reaches only the lab's subnets, so anything aimed elsewhere
        // (tailscale's bootstrap DNS tries public DERP servers when a dial fails) fails at
        // once with "network unreachable", before a packet exists.
        for other in spec.subnets.iter().filter(|o| o.name != subnet.name) {
            ip(&["-n", ns, "route", "add", &other.net.to_string(), "via", &subnet.router.to_string()])?;
        }
        make_host_filesystem(record, &h.name, lab_dir, etc_files)?;
    }
    Ok(())
}

/// The router: forwards B → A (masqueraded) and replies; nothing starts from A into B.
fn router_ruleset(spec: &LabSpec) -> String {
    let mut rules = String::from(
        "table ip mesh_lab {\n  chain forward {\n    type filter hook forward priority 0; policy drop;\n    \
         ct state established,related accept\n",
    );
    // Hosts on one subnet talk across its bridge. Where br_netfilter is loaded (Docker loads
    // it), bridged frames pass this chain too, so they are accepted by name.
    for s in &spec.subnets {
        rules += &format!("    iifname \"br-{0}\" oifname \"br-{0}\" accept\n", s.name);
    }
    let mut nat = String::new();
    for inner in spec.subnets.iter().filter(|s| s.masqueraded) {
        for outer in spec.subnets.iter().filter(|s| !s.masqueraded) {
            rules += &format!("    iifname \"br-{}\" oifname \"br-{}\" accept\n", inner.name, outer.name);
            nat += &format!("    ip saddr {} oifname \"br-{}\" masquerade\n", inner.net, outer.name);
        }
    }
    rules += "  }\n  chain postrouting {\n    type nat hook postrouting priority srcnat; policy accept;\n";
    rules += &nat;
    rules += "  }\n}\n";
    rules
}

/// UDP between the subnets dropped, STUN to and from the server kept: a firewall that forces
/// DERP. A table of its own, ahead of the router's, so removing it restores the router as it was.
const BLOCK_TABLE: &str = "mesh_block";

fn block_ruleset(spec: &LabSpec) -> String {
    let server = spec.server().addr;
    let stun = crate::headscale::STUN_PORT;
    let mut rules = format!(
        "table ip {BLOCK_TABLE} {{\n  chain forward {{\n    type filter hook forward priority -10; policy accept;\n    \
         ip daddr {server} udp dport {stun} accept\n    ip saddr {server} udp sport {stun} accept\n"
    );
    for from in &spec.subnets {
        for to in spec.subnets.iter().filter(|t| t.name != from.name) {
            rules += &format!("    iifname \"br-{}\" oifname \"br-{}\" meta l4proto udp drop\n", from.name, to.name);
        }
    }
    rules + "  }\n}\n"
}

/// The router and links of a netns lab.
pub struct NetnsUnderlay {
    router: String,
    spec: LabSpec,
    captures: PathBuf,
}

impl NetnsUnderlay {
    pub fn new(record: &NetnsRecord, spec: &LabSpec, lab_dir: &Path) -> NetnsUnderlay {
        NetnsUnderlay { router: record.router.clone(), spec: spec.clone(), captures: lab_dir.join("captures") }
    }
}

impl Underlay for NetnsUnderlay {
    fn block_udp_between_subnets(&self, blocked: bool) -> Result<()> {
        let tables = in_namespace(&self.router, &["nft", "list", "tables"], None)?.stdout;
        let present = tables.lines().any(|l| l.trim() == format!("table ip {BLOCK_TABLE}"));
        match (blocked, present) {
            (true, false) => in_namespace(&self.router, &["nft", "-f", "-"], Some(block_ruleset(&self.spec).as_bytes()))?,
            (false, true) => in_namespace(&self.router, &["nft", "delete", "table", "ip", BLOCK_TABLE], None)?,
            _ => return Ok(()),
        };
        say!("router: UDP between the subnets {}", if blocked { "blocked (STUN to the server kept)" } else { "allowed again" });
        Ok(())
    }

    fn set_link(&self, host: &str, up: bool) -> Result<()> {
        self.spec.host(host)?;
        ip(&["-n", &self.router, "link", "set", &format!("v-{host}"), if up { "up" } else { "down" }])?;
        say!("{host}: underlay link {}", if up { "up" } else { "down" });
        Ok(())
    }

    fn capture(&self, filter: &str) -> Result<Box<dyn Capture>> {
        std::fs::create_dir_all(&self.captures)?;
        let n = std::fs::read_dir(&self.captures)?.count();
        let path = self.captures.join(format!("capture-{n}.pcap"));
        let log = self.captures.join(format!("capture-{n}.log"));
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/run/netns/{}", self.router))
            // Immediate mode: packets still in the kernel's ring when tcpdump is stopped would be lost.
            .args(["tcpdump", "-i", "any", "--immediate-mode", "-U", "-nn", "-Z", "root", "-w"])
            .arg(&path)
            .arg(filter)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?);
        let child = process::spawn_service(cmd, Lifetime::WithOwner)?;
        let id = ProcessId::of(child.id()).ok_or_else(|| anyhow!("tcpdump exited at once; see {}", log.display()))?;
        let capture = NetnsCapture { child, id, path, log };
        crate::poll::until("tcpdump listening in the router", budget::command(), || {
            let text = std::fs::read_to_string(&capture.log).unwrap_or_default();
            if text.contains("listening on") {
                Ok(())
            } else if !capture.id.alive() {
                Err(anyhow!("tcpdump exited: {}", text.trim()))
            } else {
                Err(anyhow!("not yet: {}", text.trim()))
            }
        })?;
        Ok(Box::new(capture))
    }

    fn ruleset(&self) -> Result<String> {
        Ok(in_namespace(&self.router, &["nft", "list", "ruleset"], None)?.stdout)
    }

    fn router_route_to(&self, address: &str) -> Result<Output> {
        let mut cmd = Command::new("ip");
        cmd.args(["-n", &self.router, "route", "get", address]);
        exec::run("router", &format!("ip route get {address}"), cmd, None, budget::command())
    }
}

struct NetnsCapture {
    child: Child,
    id: ProcessId,
    path: PathBuf,
    log: PathBuf,
}

impl Capture for NetnsCapture {
    fn so_far(&self) -> Result<Vec<u8>> {
        std::fs::read(&self.path).with_context(|| format!("reading {}", self.path.display()))
    }

    fn stop(mut self: Box<Self>) -> Result<Captured> {
        // SIGTERM: tcpdump flushes its file and exits.
        self.id.terminate(budget::stop());
        let _ = self.child.wait();
        let raw = std::fs::read(&self.path).with_context(|| format!("reading {}", self.path.display()))?;
        let shown = self.path.display().to_string();
        let listing = exec::local(&["tcpdump", "-nn", "-r", &shown], budget::command())?.check()?;
        Ok(Captured { raw, packets: listing.stdout.lines().map(str::to_string).collect(), path: self.path.clone() })
    }
}

fn host_dir(lab_dir: &Path, host: &str) -> PathBuf {
    lab_dir.join("hosts").join(host)
}

/// Pin a mount and a UTS namespace for the host: /etc becomes an overlay whose writes land in
/// the host's folder, /run is its own (sockets, pid files at their usual paths), /sys shows
/// the host's own interfaces, the hostname is the host's name.
fn make_host_filesystem(record: &NetnsRecord, host: &str, lab_dir: &Path, etc_files: &[(&str, String)]) -> Result<()> {
    let dir = host_dir(lab_dir, host);
    let upper = dir.join("etc");
    let work = dir.join("etc-work");
    for d in [&upper, &work, &dir.join("state"), &dir.join("logs"), &dir.join("services")] {
        std::fs::create_dir_all(d)?;
    }
    for (name, contents) in etc_files {
        std::fs::write(upper.join(name), contents)?;
    }
    std::fs::write(upper.join("hostname"), format!("{host}\n"))?;
    let (mnt, uts) = (record.ns_dir.join(format!("{host}.mnt")), record.ns_dir.join(format!("{host}.uts")));
    std::fs::write(&mnt, "")?;
    std::fs::write(&uts, "")?;
    let setup = format!(
        "hostname {host} && mount -t sysfs sysfs /sys && mount -t tmpfs -o mode=755 tmpfs /run && \
         mount -t overlay overlay -o lowerdir=/etc,upperdir={},workdir={} /etc",
        upper.display(),
        work.display()
    );
    let argv = [
        "nsenter",
        &format!("--net=/run/netns/{}", record.hosts[host]),
        "unshare",
        &format!("--mount={}", mnt.display()),
        &format!("--uts={}", uts.display()),
        "--propagation",
        "private",
        "sh",
        "-c",
        &setup,
    ];
    exec::local(&argv, budget::command())?.check().with_context(|| format!("giving {host} its own /etc, /sys and hostname"))?;
    Ok(())
}

fn in_namespace(ns: &str, argv: &[&str], stdin: Option<&[u8]>) -> Result<Output> {
    let net = format!("--net=/run/netns/{ns}");
    let mut full = vec!["nsenter", net.as_str(), "--"];
    full.extend_from_slice(argv);
    let mut cmd = Command::new(full[0]);
    cmd.args(&full[1..]);
    exec::run(ns, &exec::display_argv(argv), cmd, stdin, budget::command())?.check()
}

/// Remove everything of a lab from its record, whoever made it and whatever state it is in:
/// its processes, pinned namespaces, mounts and network namespaces. Missing pieces are fine.
pub fn teardown(record: &NetnsRecord, lab_dir: &Path) -> Result<()> {
    let mut problems = Vec::new();
    for host in record.hosts.keys() {
        for (_, id) in recorded_services(&host_dir(lab_dir, host)) {
            id.terminate(budget::stop());
        }
    }
    // Anything else still running inside the lab's namespaces (a command cut off by its time
    // limit, a shell) is ours by construction: it lives in a namespace of this run.
    let inodes: Vec<u64> = record
        .all_namespaces()
        .filter_map(|ns| std::fs::metadata(format!("/run/netns/{ns}")).ok().map(|m| m.ino()))
        .collect();
    for id in processes_in_namespaces(&inodes) {
        id.terminate(budget::stop());
    }
    for host in record.hosts.keys() {
        for kind in ["mnt", "uts"] {
            let pinned = record.ns_dir.join(format!("{host}.{kind}"));
            if pinned.exists() {
                unmount(&pinned);
            }
        }
    }
    if record.ns_dir.exists() {
        while is_mount_point(&record.ns_dir) {
            if !unmount(&record.ns_dir) {
                problems.push(format!("could not unmount {}", record.ns_dir.display()));
                break;
            }
        }
    }
    for ns in record.all_namespaces() {
        if Path::new("/run/netns").join(ns).exists() {
            if let Err(e) = ip(&["netns", "del", ns]) {
                problems.push(format!("{e:#}"));
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        bail!("tearing down the lab left pieces behind:\n  {}", problems.join("\n  "))
    }
}

fn unmount(path: &Path) -> bool {
    let c = CString::new(path.as_os_str().as_encoded_bytes()).expect("paths have no NUL");
    unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) == 0 }
}

fn is_mount_point(path: &Path) -> bool {
    let Ok(canon) = path.canonicalize() else { return false };
    let target = canon.display().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|info| info.lines().any(|l| l.split(' ').nth(4) == Some(target.as_str())))
        .unwrap_or(false)
}

fn processes_in_namespaces(inodes: &[u64]) -> Vec<ProcessId> {
    if inodes.is_empty() {
        return Vec::new();
    }
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::metadata(format!("/proc/{pid}/ns/net")).map(|m| inodes.contains(&m.ino())).unwrap_or(false))
        .filter_map(ProcessId::of)
        .collect()
}

fn recorded_services(dir: &Path) -> Vec<(String, ProcessId)> {
    let Ok(entries) = std::fs::read_dir(dir.join("services")) else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|e| {
            let name = e.path().file_stem()?.to_str()?.to_string();
            let id = serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok()?;
            Some((name, id))
        })
        .collect()
}

/// The namespaces on this machine that carry this tool's naming, grouped by run id.
pub fn namespaces_of_this_tool() -> BTreeMap<String, Vec<String>> {
    let mut runs: BTreeMap<String, Vec<String>> = BTreeMap::new();
    if let Ok(entries) = std::fs::read_dir("/run/netns") {
        for name in entries.flatten().filter_map(|e| e.file_name().into_string().ok()) {
            if let Some(id) = run_id_of_namespace(&name) {
                runs.entry(id.to_string()).or_default().push(name);
            }
        }
    }
    runs
}

/// A host of a netns lab.
pub struct NetnsHost {
    name: String,
    netns: String,
    dir: PathBuf,
    ns_dir: PathBuf,
    lifetime: Lifetime,
    children: Mutex<HashMap<String, Child>>,
    /// Every command run in the lab's hosts, with its output (`commands.log` in the lab's folder).
    journal: PathBuf,
}

impl NetnsHost {
    pub fn new(record: &NetnsRecord, lab_dir: &Path, name: &str, lifetime: Lifetime) -> Result<NetnsHost> {
        let netns = record.hosts.get(name).ok_or_else(|| anyhow!("no host {name} in this lab"))?.clone();
        Ok(NetnsHost {
            name: name.to_string(),
            netns,
            dir: host_dir(lab_dir, name),
            ns_dir: record.ns_dir.clone(),
            lifetime,
            children: Mutex::new(HashMap::new()),
            journal: lab_dir.join("commands.log"),
        })
    }

    /// `nsenter` into all of the host's namespaces.
    fn enter(&self) -> Vec<String> {
        vec![
            "nsenter".into(),
            format!("--net=/run/netns/{}", self.netns),
            format!("--mount={}", self.ns_dir.join(format!("{}.mnt", self.name)).display()),
            format!("--uts={}", self.ns_dir.join(format!("{}.uts", self.name)).display()),
            "--".into(),
        ]
    }

    fn service_file(&self, service: &str) -> PathBuf {
        self.dir.join("services").join(format!("{service}.json"))
    }

    fn recorded(&self, service: &str) -> Option<ProcessId> {
        serde_json::from_slice(&std::fs::read(self.service_file(service)).ok()?).ok()
    }
}

impl Host for NetnsHost {
    fn name(&self) -> &str {
        &self.name
    }

    fn exec(&self, argv: &[&str], stdin: Option<&[u8]>, limit: Duration) -> Result<Output> {
        let full = self.enter();
        let mut cmd = Command::new(&full[0]);
        cmd.args(&full[1..]).args(argv);
        let out = exec::run(&self.name, &exec::display_argv(argv), cmd, stdin, limit)?;
        exec::journal(&self.journal, &out);
        Ok(out)
    }

    fn start_service(&self, service: &str, argv: &[String], env: &[(String, String)]) -> Result<()> {
        if self.service_running(service) {
            bail!("on {}: {service} is already running", self.name);
        }
        let log_path = self.log_path(service);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path)?;
        let full = self.enter();
        let mut cmd = Command::new(&full[0]);
        cmd.args(&full[1..])
            .args(argv)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let child = process::spawn_service(cmd, self.lifetime)
            .with_context(|| format!("on {}: starting {service}: `{}`", self.name, exec::display_argv(argv)))?;
        let id = ProcessId::of(child.id()).ok_or_else(|| anyhow!("on {}: {service} exited at once; see {}", self.name, log_path.display()))?;
        std::fs::write(self.service_file(service), serde_json::to_vec(&id)?)?;
        self.children.lock().unwrap().insert(service.to_string(), child);
        say!("{}: started {service} (pid {}), log {}", self.name, id.pid, log_path.display());
        Ok(())
    }

    fn stop_service(&self, service: &str) -> Result<()> {
        if let Some(id) = self.recorded(service) {
            id.terminate(budget::stop());
            if id.alive() {
                bail!("on {}: {service} (pid {}) survived SIGKILL", self.name, id.pid);
            }
        }
        if let Some(mut child) = self.children.lock().unwrap().remove(service) {
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(self.service_file(service));
        Ok(())
    }

    fn service_running(&self, service: &str) -> bool {
        self.recorded(service).is_some_and(|id| id.alive())
    }

    fn tcp_connect(&self, addr: SocketAddr, limit: Duration) -> Result<()> {
        let netns = format!("/run/netns/{}", self.netns);
        // setns() changes only the calling thread: a short-lived thread enters, connects, ends.
        std::thread::spawn(move || -> Result<()> {
            let ns = std::fs::File::open(&netns).with_context(|| format!("opening {netns}"))?;
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                bail!("entering {netns}: {}", std::io::Error::last_os_error());
            }
            TcpStream::connect_timeout(&addr, limit)?;
            Ok(())
        })
        .join()
        .map_err(|_| anyhow!("the probe thread panicked"))?
        .with_context(|| format!("from {}: TCP connect to {addr}", self.name))
    }

    fn log_path(&self, service: &str) -> PathBuf {
        self.dir.join("logs").join(format!("{service}.log"))
    }

    fn state_dir(&self) -> String {
        self.dir.join("state").display().to_string()
    }

    fn shell_argv(&self, path_prefix: &str) -> Vec<String> {
        let mut argv = self.enter();
        let path = format!("PATH={path_prefix}:{}", std::env::var("PATH").unwrap_or_default());
        argv.extend(["env".into(), path, format!("PS1=[{}] \\w\\$ ", self.name), "bash".into(), "--norc".into(), "-i".into()]);
        argv
    }

    fn services_peak_rss_kib(&self) -> u64 {
        let Ok(entries) = std::fs::read_dir(self.dir.join("services")) else { return 0 };
        entries
            .flatten()
            .filter_map(|e| serde_json::from_slice::<ProcessId>(&std::fs::read(e.path()).ok()?).ok())
            .filter(|id| id.alive())
            .filter_map(|id| {
                let status = std::fs::read_to_string(format!("/proc/{}/status", id.pid)).ok()?;
                let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
                line.split_whitespace().nth(1)?.parse::<u64>().ok()
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_firewall_drops_udp_across_the_router_but_keeps_stun() {
        let spec = LabSpec::new("192.168.1.0/24", "10.0.0.0/24").unwrap();
        let rules = block_ruleset(&spec);
        assert!(rules.contains("ip daddr 192.168.1.5 udp dport 3478 accept"), "{rules}");
        assert!(rules.contains(r#"iifname "br-a" oifname "br-b" meta l4proto udp drop"#), "{rules}");
        assert!(rules.contains(r#"iifname "br-b" oifname "br-a" meta l4proto udp drop"#), "{rules}");
        assert!(rules.find("accept").unwrap() < rules.find("drop").unwrap(), "STUN is accepted before UDP is dropped");
    }

    #[test]
    fn namespaces_are_recognised_by_their_run_unique_names_only() {
        assert_eq!(run_id_of_namespace("mesh-0a1b2c-client-1"), Some("0a1b2c"));
        assert_eq!(run_id_of_namespace("mesh-0a1b2c-router"), Some("0a1b2c"));
        assert_eq!(run_id_of_namespace("mesh-other-thing"), None);
        assert_eq!(run_id_of_namespace("meshy-0a1b2c-x"), None);
    }

    #[test]
    fn the_router_masquerades_b_and_forwards_nothing_from_a_into_b() {
        let spec = LabSpec::new("192.168.1.0/24", "10.0.0.0/24").unwrap();
        let rules = router_ruleset(&spec);
        assert!(rules.contains("policy drop"), "{rules}");
        assert!(rules.contains(r#"iifname "br-b" oifname "br-a" accept"#), "{rules}");
        assert!(!rules.contains(r#"iifname "br-a" oifname "br-b""#), "{rules}");
        assert!(rules.contains(r#"iifname "br-a" oifname "br-a" accept"#), "{rules}");
        assert!(rules.contains("ip saddr 10.0.0.0/24 oifname \"br-a\" masquerade"), "{rules}");
    }
}
