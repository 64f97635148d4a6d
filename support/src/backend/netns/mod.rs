//! The embedded backend: each host is a network namespace on this machine, with a mount and
//! UTS namespace of its own (its own /etc through an overlay, its own /sys and hostname), so
//! a host's resolver, hosts file and hostname are its own, as on a real machine.
//!
//! The subnets are bridges inside a router namespace; nothing is added to the machine's own
//! namespace, the router has no interface that leaves the lab, and no namespace has a
//! default route.

mod host;
mod underlay;

pub use host::NetnsHost;
pub use underlay::NetnsUnderlay;

use crate::budget;
use crate::exec::{self, Output};
use crate::process::ProcessId;
use crate::spec::LabSpec;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::ffi::CString;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

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
    (id.len() == crate::registry::RUN_ID_LEN && id.chars().all(|c| c.is_ascii_hexdigit())).then_some(id)
}

pub(crate) fn ip(args: &[&str]) -> Result<Output> {
    let mut argv = vec!["ip"];
    argv.extend_from_slice(args);
    exec::local(&argv, budget::command())?.check()
}

/// Build the network of `spec`: namespaces, bridges, links, addresses, routes, NAT, and each
/// host's own /etc. `etc_files` are written into every host's /etc (hosts, resolv.conf …).
pub fn create(record: &NetnsRecord, spec: &LabSpec, lab_dir: &Path, etc_files: &[(&str, String)]) -> Result<()> {
    let r = record.router.as_str();
    create_router(r, spec)?;
    for ns in record.hosts.values() {
        ip(&["netns", "add", ns])?;
    }

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

/// The router namespace `router`: a bridge a subnet (`br-a`, `br-b`) holding the router's
/// address on it, forwarding, and the NAT of the masqueraded subnets. Both backends use it:
/// netns hosts plug into its bridges directly, VMs through an uplink from their libvirt network.
pub fn create_router(router: &str, spec: &LabSpec) -> Result<()> {
    ip(&["netns", "add", router])?;
    ip(&["-n", router, "link", "set", "lo", "up"])?;
    for s in &spec.subnets {
        let br = format!("br-{}", s.name);
        ip(&["-n", router, "link", "add", &br, "type", "bridge"])?;
        ip(&["-n", router, "addr", "add", &format!("{}/{}", s.router, s.net.prefix_len()), "dev", &br])?;
        ip(&["-n", router, "link", "set", &br, "up"])?;
    }
    in_namespace(router, &["sysctl", "-qw", "net.ipv4.ip_forward=1"], None)?;
    in_namespace(router, &["nft", "-f", "-"], Some(router_ruleset(spec).as_bytes()))?;
    Ok(())
}

/// Delete a namespace of ours, killing whatever still runs in it first.
pub fn delete_namespace(ns: &str) -> Result<()> {
    let Ok(meta) = std::fs::metadata(format!("/run/netns/{ns}")) else { return Ok(()) };
    for id in processes_in_namespaces(&[meta.ino()]) {
        id.terminate(budget::stop());
    }
    ip(&["netns", "del", ns])?;
    Ok(())
}

/// A TCP connection made from inside the network namespace `ns`; it stays there once made.
pub fn connect_from(ns: &str, addr: std::net::SocketAddr, limit: std::time::Duration) -> Result<std::net::TcpStream> {
    use std::os::fd::AsRawFd;
    let netns = format!("/run/netns/{ns}");
    // setns() changes only the calling thread: a short-lived thread enters, connects, ends.
    std::thread::spawn(move || -> Result<std::net::TcpStream> {
        let file = std::fs::File::open(&netns).with_context(|| format!("opening {netns}"))?;
        if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            bail!("entering {netns}: {}", std::io::Error::last_os_error());
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
    let (mnt, uts) = (pinned(&record.ns_dir, host, "mnt"), pinned(&record.ns_dir, host, "uts"));
    std::fs::write(&mnt, "")?;
    std::fs::write(&uts, "")?;
    for path in [&upper, &work] {
        let shown = path.display().to_string();
        if shown.contains([',', ':', '\\']) {
            bail!("the lab folder {shown} has a ',', ':' or '\\', which overlay mount options cannot carry: set MESH_STATE_DIR to a plainer path");
        }
    }
    // The new mount namespace starts as a copy of this one, with every pinned namespace of
    // every lab on the machine (/run/netns/*, the labs' ns/ files) mounted in it: copies that
    // would keep those namespaces alive after their owners delete them. They go first.
    let setup = r#"findmnt -rn -t nsfs -o TARGET | sort -r | while read -r t; do umount -l "$(printf '%b' "$t")"; done
hostname "$1" && mount -t sysfs sysfs /sys && mount -t tmpfs -o mode=755 tmpfs /run &&
mount -t overlay overlay -o "lowerdir=/etc,upperdir=$2,workdir=$3" /etc"#;
    let (upper, work) = (upper.display().to_string(), work.display().to_string());
    let argv = [
        "nsenter",
        &format!("--net=/run/netns/{}", record.hosts[host]),
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
    exec::local(&argv, budget::command())?.check().with_context(|| format!("giving {host} its own /etc, /sys and hostname"))?;
    Ok(())
}

pub(crate) fn in_namespace(ns: &str, argv: &[&str], stdin: Option<&[u8]>) -> Result<Output> {
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
    let inodes: Vec<u64> =
        record.all_namespaces().filter_map(|ns| std::fs::metadata(format!("/run/netns/{ns}")).ok().map(|m| m.ino())).collect();
    for id in processes_in_namespaces(&inodes) {
        id.terminate(budget::stop());
    }
    for file in record.all_pinned().filter(|f| f.exists()) {
        unmount(&file);
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

/// The same removal as [`teardown`], as a shell script run by a watchdog process once `owner`
/// has exited: kill what runs in the lab's namespaces, unmount the pinned ones, delete them,
/// drop the index entry. Every name in it is this run's own.
pub fn watchdog_script(record: &NetnsRecord, owner: u32, index_entry: &Path) -> String {
    let quote = |s: &str| exec::display_argv(&[s]);
    let namespaces: Vec<String> = record.all_namespaces().map(|n| quote(n)).collect();
    let pinned: Vec<String> = record.all_pinned().map(|f| quote(&f.display().to_string())).collect();
    format!(
        "tail --pid={owner} -f /dev/null\n\
         echo \"owner {owner} gone at $(date -u +%FT%TZ): removing its lab\"\n\
         for ns in {ns}; do ip netns pids \"$ns\" 2>/dev/null | xargs -r kill -9; done\n\
         sleep 0.2\n\
         for f in {pinned}; do umount -l \"$f\" 2>/dev/null; done\n\
         umount -l {ns_dir} 2>/dev/null\n\
         for ns in {ns}; do ip netns del \"$ns\" 2>/dev/null; done\n\
         rm -f {index}\n\
         rmdir /run/mesh-lab 2>/dev/null\n\
         echo done\n",
        ns = namespaces.join(" "),
        pinned = pinned.join(" "),
        ns_dir = quote(&record.ns_dir.display().to_string()),
        index = quote(&index_entry.display().to_string()),
    )
}

fn unmount(path: &Path) -> bool {
    let c = CString::new(path.as_os_str().as_encoded_bytes()).expect("paths have no NUL");
    unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) == 0 }
}

fn is_mount_point(path: &Path) -> bool {
    let Ok(canon) = path.canonicalize() else { return false };
    let target = canon.display().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|info| info.lines().any(|l| l.split(' ').nth(4).map(unescape_mountinfo).as_deref() == Some(target.as_str())))
        .unwrap_or(false)
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

/// The services a host has recorded (`services/<name>.json`: pid and start time).
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_read_back() {
        assert_eq!(unescape_mountinfo(r"/work/my\040labs/ns"), "/work/my labs/ns");
        assert_eq!(unescape_mountinfo("/plain/path"), "/plain/path");
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
