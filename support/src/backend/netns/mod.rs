//! The embedded backend: each host is a network namespace on this machine, with a mount and
//! UTS namespace of its own (its own /etc through an overlay, its own /sys and hostname), so
//! a host's resolver, hosts file and hostname are its own, as on a real machine.
//!
//! The subnets are bridges inside a router namespace; nothing is added to the machine's own
//! namespace, the router has no interface that leaves the lab, and no namespace has a
//! default route that leads anywhere: a host's is `unreachable` (see [`create`]).
//!
//! As root the namespaces are made on the machine itself; as a normal user, inside a user
//! namespace held for the lab ([`userns`]). Either way the same commands build the lab: as a
//! normal user each is entered into the holder's namespaces first.

mod host;
pub mod removal;
mod underlay;
pub mod userns;

pub use host::NetnsHost;
pub use underlay::NetnsUnderlay;
pub use userns::Holder;

use crate::budget;
use crate::exec::{self, Output};
use crate::process::{self, Lifetime, ProcessId};
use crate::spec::LabSpec;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

/// The names and paths of one netns lab, enough to find and remove all of it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NetnsRecord {
    pub router: String,
    /// Host role name → its network namespace.
    pub hosts: BTreeMap<String, String>,
    /// LAN host name ([`crate::spec::LanHost`]) → its network namespace, on the router's bridge.
    /// None in the records of labs made before they existed.
    #[serde(default)]
    pub lan: BTreeMap<String, String>,
    /// Where the hosts' mount and UTS namespaces are pinned (a private bind mount).
    pub ns_dir: PathBuf,
    /// Built by a normal user: the processes holding the user namespace the lab lives in.
    /// `None`: built by root, on the machine itself.
    #[serde(default)]
    pub holder: Option<Holder>,
}

/// Every namespace this tool creates is named `mesh-<run id>-<host>`.
pub const NS_PREFIX: &str = "mesh-";

impl NetnsRecord {
    /// Only a router namespace and its LAN hosts, on this machine: the VM backend's, whose
    /// hosts are VMs.
    pub fn router_only(router: &str, lan: &BTreeMap<String, String>) -> NetnsRecord {
        NetnsRecord { router: router.to_string(), hosts: BTreeMap::new(), lan: lan.clone(), ns_dir: PathBuf::new(), holder: None }
    }

    /// The network namespace of each LAN host of `spec`, named as every namespace of this tool.
    pub fn plan_lan(run_id: &str, spec: &LabSpec) -> BTreeMap<String, String> {
        spec.lan_hosts.iter().map(|h| (h.name.clone(), format!("{NS_PREFIX}{run_id}-{}", h.name))).collect()
    }

    pub fn plan(run_id: &str, lab_dir: &Path, spec: &LabSpec) -> NetnsRecord {
        NetnsRecord {
            router: format!("{NS_PREFIX}{run_id}-router"),
            hosts: spec.hosts.iter().map(|h| (h.name.clone(), format!("{NS_PREFIX}{run_id}-{}", h.name))).collect(),
            lan: NetnsRecord::plan_lan(run_id, spec),
            ns_dir: lab_dir.join("ns"),
            holder: None,
        }
    }

    /// `argv` as a command of the lab's own: as root, as it is; as a normal user, entered into
    /// the lab's user namespace (where /run/netns and the pinned namespaces are).
    pub(crate) fn command<S: AsRef<OsStr>>(&self, argv: &[S]) -> Result<Command> {
        match &self.holder {
            Some(h) => h.command(argv),
            None => {
                let (program, args) = argv.split_first().ok_or_else(|| anyhow::anyhow!("empty command"))?;
                let mut cmd = Command::new(program);
                cmd.args(args);
                Ok(cmd)
            }
        }
    }

    /// Start a long-running program made by [`NetnsRecord::command`]; the program's own
    /// identity (not `nsenter`'s, as a normal user) and the child to wait for.
    pub(crate) fn spawn(&self, cmd: Command, lifetime: Lifetime) -> Result<(Child, Option<ProcessId>)> {
        let child = process::spawn_service(cmd, lifetime)?;
        let id = match &self.holder {
            Some(_) => userns::program_of(child.id()).ok(),
            None => ProcessId::of(child.id()),
        };
        Ok((child, id))
    }

    /// A network namespace of the lab, as this process can open it.
    pub(crate) fn netns_file(&self, ns: &str) -> PathBuf {
        match &self.holder {
            Some(h) => h.netns_file(ns),
            None => Path::new("/run/netns").join(ns),
        }
    }

    fn all_namespaces(&self) -> impl Iterator<Item = &String> {
        std::iter::once(&self.router).chain(self.hosts.values()).chain(self.lan.values())
    }

    /// Every pinned namespace file of every host.
    fn all_pinned(&self) -> impl Iterator<Item = PathBuf> + '_ {
        self.hosts.keys().flat_map(|h| PINNED.map(|kind| pinned(&self.ns_dir, h, kind)))
    }
}

/// The namespaces of a host pinned as files besides its network namespace.
const PINNED: [&str; 2] = ["mnt", "uts"];

/// Where a host's `kind` (`mnt`, `uts`) namespace is pinned.
fn pinned(ns_dir: &Path, host: &str, kind: &str) -> PathBuf {
    ns_dir.join(format!("{host}.{kind}"))
}

/// Whether `name` is a namespace of this tool, and of which run.
pub fn run_id_of_namespace(name: &str) -> Option<&str> {
    let rest = name.strip_prefix(NS_PREFIX)?;
    let (id, _) = rest.split_once('-')?;
    (id.len() == super::RUN_ID_LEN && id.chars().all(|c| c.is_ascii_hexdigit())).then_some(id)
}

/// Run a command of the lab's own (not in a host) and require success.
fn lab_command(record: &NetnsRecord, argv: &[&str]) -> Result<Output> {
    exec::run("this machine", &exec::display_argv(argv), record.command(argv)?, None, budget::command())?.check()
}

/// `ip` and `nft` run as commands, not netlink crates, on purpose: a failure shows the command; nsenter takes it to a lab.
pub(crate) fn ip(record: &NetnsRecord, args: &[&str]) -> Result<Output> {
    let mut argv = vec!["ip"];
    argv.extend_from_slice(args);
    lab_command(record, &argv)
}

/// Build the network of `spec`: namespaces, bridges, links, addresses, routes, NAT, and each
/// host's own /etc. `etc_files` are written into every host's /etc (hosts, resolv.conf …).
/// `lifetime` is the lab's: as a normal user, the processes that hold each host's mount and UTS
/// namespaces live as long as the lab does.
pub fn create(
    record: &NetnsRecord,
    spec: &LabSpec,
    lab_dir: &Path,
    etc_files: &[(&str, String)],
    lifetime: Lifetime,
) -> Result<()> {
    create_router(record, spec)?;
    for ns in record.hosts.values() {
        ip(record, &["netns", "add", ns])?;
    }

    if record.holder.is_none() {
        std::fs::create_dir_all(&record.ns_dir)?;
        // The pinned namespaces must live on a private mount, or the kernel refuses to pin them.
        let ns_dir = record.ns_dir.display().to_string();
        lab_command(record, &["mount", "--bind", &ns_dir, &ns_dir])?;
        lab_command(record, &["mount", "--make-private", &ns_dir])?;
    }

    for h in &spec.hosts {
        let ns = &record.hosts[&h.name];
        plug_in(record, spec, ns, &h.name, &h.subnet, h.addr)?;
        make_host_filesystem(record, &h.name, lab_dir, etc_files, lifetime)?;
    }
    Ok(())
}

/// The router namespace `router`: a bridge a subnet (`br-a`, `br-b`) holding the router's
/// address on it, forwarding, and the NAT of the masqueraded subnets. Both backends use it:
/// netns hosts plug into its bridges directly, VMs through an uplink from their libvirt network.
pub fn create_router(record: &NetnsRecord, spec: &LabSpec) -> Result<()> {
    let router = record.router.as_str();
    ip(record, &["netns", "add", router])?;
    ip(record, &["-n", router, "link", "set", "lo", "up"])?;
    for s in &spec.subnets {
        let br = format!("br-{}", s.name);
        ip(record, &["-n", router, "link", "add", &br, "type", "bridge"])?;
        ip(record, &["-n", router, "addr", "add", &format!("{}/{}", s.router, s.net.prefix_len()), "dev", &br])?;
        ip(record, &["-n", router, "link", "set", &br, "up"])?;
    }
    in_namespace(record, router, &["sysctl", "-qw", "net.ipv4.ip_forward=1"], None)?;
    in_namespace(record, router, &["nft", "-f", "-"], Some(router_ruleset(spec).as_bytes()))?;
    for h in &spec.lan_hosts {
        let ns = record
            .lan
            .get(&h.name)
            .ok_or_else(|| anyhow::anyhow!("the lab's record has no namespace for LAN host {}", h.name))?;
        ip(record, &["netns", "add", ns])?;
        plug_in(record, spec, ns, &h.name, &h.subnet, h.addr)?;
    }
    Ok(())
}

/// Plug the network namespace `ns` of host `name` into the router's bridge of `subnet` at `addr`:
/// a veth whose inner end is its `eth0`, a route to each other subnet through the router, and
/// nothing else.
fn plug_in(record: &NetnsRecord, spec: &LabSpec, ns: &str, name: &str, subnet: &str, addr: std::net::Ipv4Addr) -> Result<()> {
    let r = record.router.as_str();
    let subnet = spec.subnet(subnet);
    let peer = format!("v-{name}");
    ip(record, &["-n", r, "link", "add", &peer, "type", "veth", "peer", "name", "eth0", "netns", ns])?;
    ip(record, &["-n", r, "link", "set", &peer, "master", &format!("br-{}", subnet.name), "up"])?;
    ip(record, &["-n", ns, "link", "set", "lo", "up"])?;
    ip(record, &["-n", ns, "addr", "add", &format!("{addr}/{}", subnet.net.prefix_len()), "dev", "eth0"])?;
    ip(record, &["-n", ns, "link", "set", "eth0", "up"])?;
    // A host reaches only the lab's subnets, so anything aimed elsewhere (tailscale's
    // bootstrap DNS tries public DERP servers when a dial fails) fails at once, before a
    // packet exists. The IPv4 default route is of type `unreachable` rather than missing:
    // a real host has a default route, and tailscaled behaves differently without one —
    // with no default route interface its dialer takes every change of the interfaces
    // (its own tailscale0 losing its addresses included) for one that breaks every
    // connection, and closes them all, so `tailscale logout` (1.90.9) loses its own
    // register request about half the time (README, "What the real programs do").
    // tailscaled reads the default route from /proc/net/route, where this one is `*`.
    for other in spec.subnets.iter().filter(|o| o.name != subnet.name) {
        ip(record, &["-n", ns, "route", "add", &other.net.to_string(), "via", &subnet.router.to_string()])?;
    }
    ip(record, &["-n", ns, "route", "add", "unreachable", "default"])?;
    Ok(())
}

/// A TCP connection made from inside the network namespace `ns`; it stays there once made.
pub fn connect_from(ns: &str, addr: std::net::SocketAddr, limit: std::time::Duration) -> Result<std::net::TcpStream> {
    let netns = format!("/run/netns/{ns}");
    // setns() changes only the calling thread: a short-lived thread enters, connects, ends.
    std::thread::spawn(move || -> Result<std::net::TcpStream> {
        let file = std::fs::File::open(&netns).with_context(|| format!("opening {netns}"))?;
        if let Err(e) = nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET) {
            bail!("entering {netns}: {}", std::io::Error::from(e));
        }
        Ok(std::net::TcpStream::connect_timeout(&addr, limit)?)
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the connecting thread panicked"))?
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

fn host_dir(lab_dir: &Path, host: &str) -> PathBuf {
    lab_dir.join("hosts").join(host)
}

/// A host's data that goes with the lab ([`crate::backend::Host::data_dir`]), in its folder.
fn data_dir(host_dir: &Path) -> PathBuf {
    host_dir.join("data")
}

/// Pin a mount and a UTS namespace for the host: /etc becomes an overlay whose writes land in
/// the host's folder, /run is its own (sockets, pid files at their usual paths), /sys shows
/// the host's own interfaces, the hostname is the host's name.
fn make_host_filesystem(
    record: &NetnsRecord,
    host: &str,
    lab_dir: &Path,
    etc_files: &[(&str, String)],
    lifetime: Lifetime,
) -> Result<()> {
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
    for path in [&upper, &work] {
        let shown = path.display().to_string();
        if shown.contains([',', ':', '\\']) {
            bail!("the lab folder {shown} has a ',', ':' or '\\', which overlay mount options cannot carry: set MESH_STATE_DIR to a plainer path");
        }
    }
    // The new mount namespace starts as a copy of this one, with every pinned namespace of
    // every lab on the machine (/run/netns/*, the labs' ns/ files) mounted in it: copies that
    // would keep those namespaces alive after their owners delete them. They go first.
    // (In a user namespace the copies of root's labs are locked and stay; they follow root's
    // deletions instead, by slave propagation.)
    let setup = r#"findmnt -rn -t nsfs -o TARGET | sort -r | while read -r t; do umount -l "$(printf '%b' "$t")"; done
hostname "$1" && mount -t sysfs sysfs /sys && mount -t tmpfs -o mode=755 tmpfs /run &&
mount -t overlay overlay -o "lowerdir=/etc,upperdir=$2,workdir=$3" /etc"#;
    let (upper, work) = (upper.display().to_string(), work.display().to_string());
    let net = format!("--net=/run/netns/{}", record.hosts[host]);
    let context = || format!("giving {host} its own /etc, /sys and hostname");
    if record.holder.is_some() {
        // The machine's /etc belongs to a user the lab's namespace does not know, and the
        // namespace's root may not write into a folder of such a user (as nginx's config is
        // written into /etc/nginx): each first-level folder gets its copy in the host's own
        // layer, which the overlay merges with the machine's, and which is the host's root's.
        own_first_level_folders(Path::new("/etc"), Path::new(&upper))?;
        // As a normal user a process holds them: the kernel may refuse to pin a mount
        // namespace in one made after it (it compares their ids, which are not made in order
        // across CPUs), and a user namespace's oldest mount namespace is the holder's own.
        let script = format!("{setup} || exit 1\necho ready\nexec sleep infinity");
        let argv = [
            "nsenter",
            &net,
            "unshare",
            "--mount",
            "--uts",
            "--propagation",
            "slave",
            "bash",
            "-c",
            &script,
            "bash",
            host,
            &upper,
            &work,
        ];
        let log = dir.join("logs").join("namespaces.log");
        let log_file = std::fs::File::create(&log)?;
        let mut cmd = record.command(&argv)?;
        cmd.stdin(std::process::Stdio::null()).stdout(log_file.try_clone()?).stderr(log_file);
        let (child, id) = record.spawn(cmd, lifetime).with_context(context)?;
        userns::keep(child);
        let id = id.ok_or_else(|| anyhow::anyhow!("it exited at once: {}", std::fs::read_to_string(&log).unwrap_or_default()));
        let id = id.with_context(context)?;
        process::until_logged(&format!("{host}'s namespaces"), &id, &log, budget::command(), |l| l == "ready")
            .with_context(context)?;
        std::fs::write(host_namespaces_file(&dir), serde_json::to_vec(&id)?)?;
        return Ok(());
    }
    let (mnt, uts) = (pinned(&record.ns_dir, host, "mnt"), pinned(&record.ns_dir, host, "uts"));
    std::fs::write(&mnt, "")?;
    std::fs::write(&uts, "")?;
    let argv = [
        "nsenter",
        &net,
        "unshare",
        &format!("--mount={}", mnt.display()),
        &format!("--uts={}", uts.display()),
        "--propagation",
        "private",
        "bash",
        "-c",
        setup,
        "bash",
        host,
        &upper,
        &work,
    ];
    lab_command(record, &argv).with_context(context)?;
    Ok(())
}

/// A folder in `upper` for each folder directly in `lower`, with its mode, where none is yet.
fn own_first_level_folders(lower: &Path, upper: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for entry in std::fs::read_dir(lower)?.flatten() {
        let Ok(meta) = std::fs::symlink_metadata(entry.path()) else { continue };
        let copy = upper.join(entry.file_name());
        if meta.is_dir() && !copy.exists() {
            std::fs::create_dir(&copy)?;
            std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(meta.mode() & 0o7777))?;
        }
    }
    Ok(())
}

/// As a normal user: the process holding a host's namespaces (`namespaces.json` in its folder).
fn host_namespaces_file(host_dir: &Path) -> PathBuf {
    host_dir.join("namespaces.json")
}

pub(crate) fn in_namespace(record: &NetnsRecord, ns: &str, argv: &[&str], stdin: Option<&[u8]>) -> Result<Output> {
    let net = format!("--net=/run/netns/{ns}");
    let mut full = vec!["nsenter", net.as_str(), "--"];
    full.extend_from_slice(argv);
    exec::run(ns, &exec::display_argv(argv), record.command(&full)?, stdin, budget::command())?.check()
}

/// Remove everything of a lab from its record, whoever made it and whatever state it is in:
/// its processes, pinned namespaces, mounts and network namespaces (or, a normal user's, its
/// holder). Missing pieces are fine; what is left is listed in the error. The steps are
/// [`removal::steps`], the same the watchdog's [`removal_script`] renders.
pub fn teardown(record: &NetnsRecord, lab_dir: &Path) -> Result<()> {
    removal::run(record, &removal::steps(record, lab_dir))
}

fn user_ns_of(pid: u32) -> Option<u64> {
    std::fs::metadata(format!("/proc/{pid}/ns/user")).ok().map(|m| m.ino())
}

/// The same removal as [`teardown`] — the same [`removal::steps`] — as a shell script for the
/// watchdog process to run once the lab's owner has exited. Every name in it is this run's own.
pub fn removal_script(record: &NetnsRecord, lab_dir: &Path) -> String {
    removal::script(&removal::steps(record, lab_dir))
}

/// The removal of a router namespace of ours on this machine (root's, as the VM backend's)
/// and its LAN hosts' namespaces: what runs in them killed, then the namespaces deleted; as a
/// shell script.
pub fn router_removal_script(record: &NetnsRecord) -> String {
    let namespaces: Vec<String> = record.all_namespaces().cloned().collect();
    let mut steps = vec![removal::Step::StopProcessesIn { namespaces: namespaces.clone() }];
    steps.extend(namespaces.into_iter().map(removal::Step::DeleteNetns));
    removal::script(&steps)
}

fn unmount(path: &Path) -> bool {
    nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH).is_ok()
}

fn is_mount_point(path: &Path) -> bool {
    let Ok(canon) = path.canonicalize() else { return false };
    let target = canon.display().to_string();
    process::mount_points().contains(&target)
}

fn processes_in_namespaces(inodes: &[u64]) -> Vec<ProcessId> {
    if inodes.is_empty() {
        return Vec::new();
    }
    process::all_pids()
        .into_iter()
        .filter(|pid| std::fs::metadata(format!("/proc/{pid}/ns/net")).map(|m| inodes.contains(&m.ino())).unwrap_or(false))
        .filter_map(ProcessId::of)
        .filter(ProcessId::alive)
        .collect()
}

/// The services a host has recorded (`services/<name>.json`: pid and start time), newest first.
fn recorded_services(dir: &Path) -> Vec<(String, ProcessId)> {
    let Ok(entries) = std::fs::read_dir(dir.join("services")) else { return Vec::new() };
    let mut services: Vec<(String, ProcessId)> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.path().file_stem()?.to_str()?.to_string();
            let id = serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok()?;
            Some((name, id))
        })
        .collect();
    // The last started first, as they are stopped in that order: a service goes before the
    // one it depends on (headscale before its PostgreSQL, which on SIGTERM waits for its
    // clients to leave).
    services.sort_by_key(|(_, id)| std::cmp::Reverse(id.start));
    services
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

#[cfg(test)]
mod tests {
    use super::*;

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
