//! The VM backend: each host is a libvirt domain (QEMU, KVM where it truly works, TCG
//! otherwise) booted from a cached image with its own qcow2 overlay, reached over SSH.
//!
//! The subnets are libvirt networks from `networks/subnet-{a,b}.xml`: bare bridges with no
//! address of this machine on them and no forwarding. The router between them is the same
//! router namespace the netns backend builds ([`netns::create_router`]), plugged into each
//! bridge by an uplink: one firewall, one NAT, one capture point for both backends, no router
//! VM to boot under TCG. The harness reaches the VMs' SSH from inside that namespace, the only
//! place with an address on the lab's subnets.

mod daemon;
mod domain;
mod host;
mod underlay;

pub use host::VmHost;
pub use underlay::VmUnderlay;

use crate::backend::netns;
use crate::images::{seed::Seed, ImagesKind};
use crate::spec::{LabSpec, Role};
use crate::tools::{Tools, Versions};
use crate::{budget, exec, poll, say};
use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Where libvirt is, unless `MESH_LIBVIRT_URI` says otherwise.
pub const DEFAULT_URI: &str = "qemu:///system";
/// Memory of one VM: the five of a lab stay within 3 GiB of this machine's memory.
pub const VM_MEMORY_MIB: u64 = 512;

/// The names and paths of one VM lab, enough to find and remove all of it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LibvirtRecord {
    pub uri: String,
    pub images: ImagesKind,
    /// The router namespace (named like every namespace of this tool: `mesh-<run id>-router`).
    pub router: String,
    /// LAN host name → its network namespace beside the router's, on the router's bridge (no VM).
    /// None in the records of labs made before they existed.
    #[serde(default)]
    pub lan: BTreeMap<String, String>,
    /// Subnet name → its libvirt network.
    pub networks: BTreeMap<String, VirtNetwork>,
    /// Host role name → its domain.
    pub domains: BTreeMap<String, VirtDomain>,
    /// The run's SSH key (private; the public half is in every VM's authorized_keys).
    pub ssh_key: PathBuf,
    /// The hosts' pinned keys, in OpenSSH's known_hosts format.
    pub known_hosts: PathBuf,
    /// `kvm` or `qemu` (TCG), as libvirt's domain type.
    pub accel: String,
    /// Where the lab's programs are inside the VMs.
    pub programs_dir: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VirtNetwork {
    pub name: String,
    pub bridge: String,
    /// The uplink's end on the bridge; its other end is in the router namespace.
    pub uplink: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VirtDomain {
    pub name: String,
    pub addr: std::net::Ipv4Addr,
    pub mac: String,
    pub network: String,
    pub console_log: PathBuf,
}

/// The uplink's end inside the router namespace, enslaved to the subnet's bridge there.
fn router_uplink(subnet: &str) -> String {
    format!("up-{subnet}")
}

/// The uplink's end on this machine, on the libvirt network's bridge. Interface names have 15
/// characters at most.
fn host_uplink(run_id: &str, subnet: &str) -> String {
    format!("mu-{run_id}-{subnet}")
}

/// The libvirt name of a run's network (`subnet`) or domain (`host`): `mesh-<run id>-<what>`,
/// as every namespace of this tool is named.
fn virt_name(run_id: &str, what: &str) -> String {
    format!("{}{run_id}-{what}", netns::NS_PREFIX)
}

impl LibvirtRecord {
    /// The router namespace and its LAN hosts, as the netns backend's code knows them.
    pub fn router_record(&self) -> netns::NetnsRecord {
        netns::NetnsRecord::router_only(&self.router, &self.lan)
    }

    pub fn plan(run_id: &str, lab_dir: &Path, spec: &LabSpec, images: ImagesKind) -> LibvirtRecord {
        let networks: BTreeMap<String, VirtNetwork> = spec
            .subnets
            .iter()
            .map(|s| {
                let net = VirtNetwork {
                    name: virt_name(run_id, &s.name),
                    bridge: format!("mb-{run_id}-{}", s.name),
                    uplink: host_uplink(run_id, &s.name),
                };
                (s.name.clone(), net)
            })
            .collect();
        let domains = spec
            .hosts
            .iter()
            .map(|h| {
                let d = VirtDomain {
                    name: virt_name(run_id, &h.name),
                    addr: h.addr,
                    // The topology's MAC; each lab's subnets are L2 segments of their own, so
                    // two labs at once may use the same ones.
                    mac: h.mac.clone(),
                    network: networks[&h.subnet].name.clone(),
                    console_log: lab_dir.join("hosts").join(&h.name).join("console.log"),
                };
                (h.name.clone(), d)
            })
            .collect();
        LibvirtRecord {
            uri: std::env::var("MESH_LIBVIRT_URI").unwrap_or_else(|_| DEFAULT_URI.into()),
            images,
            router: virt_name(run_id, "router"),
            lan: netns::NetnsRecord::plan_lan(run_id, spec),
            networks,
            domains,
            ssh_key: lab_dir.join("ssh").join("id_ed25519"),
            known_hosts: lab_dir.join("ssh").join("known_hosts"),
            accel: "qemu".into(),
            programs_dir: "/usr/local/bin".into(),
        }
    }
}

/// Reach the libvirt this run is to use (`MESH_LIBVIRT_URI`), starting it if it is this
/// machine's and not running.
pub fn connect_configured() -> Result<()> {
    daemon::connect(&std::env::var("MESH_LIBVIRT_URI").unwrap_or_else(|_| DEFAULT_URI.into()))?;
    Ok(())
}

/// Suspend every VM of the lab, or resume them.
pub fn set_suspended(record: &LibvirtRecord, suspended: bool) -> Result<()> {
    let conn = daemon::connect(&record.uri)?;
    for d in record.domains.values() {
        let dom = virt::domain::Domain::lookup_by_name(&conn, &d.name)?;
        let result = if suspended { dom.suspend() } else { dom.resume() };
        result.map(|_| ()).with_context(|| format!("{} VM {}", if suspended { "suspending" } else { "resuming" }, d.name))?;
    }
    say!("lab VMs {}", if suspended { "suspended" } else { "resumed" });
    Ok(())
}

fn ssh_keygen(path: &Path, comment: &str) -> Result<(String, String)> {
    let _ = std::fs::remove_file(path);
    let shown = path.display().to_string();
    exec::local(&["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", &shown], budget::command())?.check()?;
    Ok((std::fs::read_to_string(path)?, std::fs::read_to_string(format!("{shown}.pub"))?))
}

/// Build the VM lab of `spec`: the router, the networks and their uplinks, a seed disk and an
/// overlay a host, the domains; returns once every VM answers SSH with its pinned key.
/// Returns the versions of the systems under test inside the VMs, and how long preparing
/// their images took (a first run builds them: minutes that are not the lab's).
pub fn create(
    record: &mut LibvirtRecord,
    spec: &LabSpec,
    lab_dir: &Path,
    tools: &Tools,
    etc_files: &[(&str, String)],
) -> Result<(Versions, Duration)> {
    let conn = daemon::connect(&record.uri)?;
    let (accel, why) = crate::backend::hypervisor::acceleration();
    record.accel = accel.into();
    say!("VMs run under {}: {why}", if accel == "kvm" { "KVM" } else { "QEMU's TCG emulation (slow, but works everywhere)" });

    let phase = Instant::now();
    let images = crate::images::prepare(record.images, spec, tools)?;
    let prepared = phase.elapsed();
    say!("{} images ready in {:.1}s", record.images.name(), prepared.as_secs_f64());
    if record.images == ImagesKind::Nix {
        record.programs_dir = "/run/current-system/sw/bin".into();
    }
    let versions = images.values().next().map(|i| i.versions.clone()).ok_or_else(|| anyhow!("a lab has hosts"))?;

    netns::create_router(&record.router_record(), spec)?;
    for (subnet, net) in &record.networks {
        let template = match subnet.as_str() {
            "a" => include_str!("../../../../networks/subnet-a.xml"),
            "b" => include_str!("../../../../networks/subnet-b.xml"),
            other => bail!("no network definition for subnet {other:?} in networks/"),
        };
        let xml = template.replace("{name}", &net.name).replace("{bridge}", &net.bridge);
        virt::network::Network::create_xml(&conn, &xml).with_context(|| format!("starting libvirt network {}", net.name))?;
        plug_uplink(&record.router, subnet, net)?;
    }

    let ssh_dir = record.ssh_key.parent().expect("the key is in a folder").to_path_buf();
    std::fs::create_dir_all(&ssh_dir)?;
    let (_, user_pub) = ssh_keygen(&record.ssh_key, "mesh-lab-harness")?;
    let mut known_hosts = String::new();
    for h in &spec.hosts {
        let d = &record.domains[&h.name];
        let dir = lab_dir.join("hosts").join(&h.name);
        std::fs::create_dir_all(dir.join("logs"))?;
        let (host_key, host_pub) = ssh_keygen(&dir.join("ssh_host_ed25519_key"), &h.name)?;
        known_hosts += &format!("{} {}", d.addr, host_pub);
        let subnet = spec.subnet(&h.subnet);
        let seed = Seed {
            hostname: h.name.clone(),
            role: match h.role {
                Role::Server => "server".into(),
                Role::Client => "client".into(),
            },
            mac: d.mac.clone(),
            address: format!("{}/{}", h.addr, subnet.net.prefix_len()),
            routes: spec
                .subnets
                .iter()
                .filter(|o| o.name != subnet.name)
                .map(|o| (o.net.to_string(), subnet.router.to_string()))
                .collect(),
            hosts: etc_file(etc_files, "hosts"),
            resolv_conf: etc_file(etc_files, "resolv.conf"),
            authorized_keys: user_pub.clone(),
            host_key,
            host_key_pub: host_pub,
        };
        let seed_disk = dir.join("seed.img");
        seed.write_disk(&dir.join("seed"), &seed_disk)?;
        let image = &images[&h.name];
        let overlay = dir.join("root.qcow2");
        let (base, shown) = (image.disk.display().to_string(), overlay.display().to_string());
        exec::local(
            &["qemu-img", "create", "-q", "-f", "qcow2", "-b", &base, "-F", &image.disk_format, &shown],
            budget::command(),
        )?
        .check()?;
        let xml = domain::xml(record, d, image, &overlay, &seed_disk);
        std::fs::write(dir.join("domain.xml"), &xml)?;
        let starting = Instant::now();
        virt::domain::Domain::create_xml(&conn, &xml, 0)
            .with_context(|| format!("starting VM {} (its definition: {})", d.name, dir.join("domain.xml").display()))?;
        say!("{}: VM {} started in {:.1}s", h.name, d.name, starting.elapsed().as_secs_f64());
    }
    std::fs::write(&record.known_hosts, known_hosts)?;
    say!("{} VMs started; waiting for SSH (consoles: {}/hosts/*/console.log)", spec.hosts.len(), lab_dir.display());
    await_ssh(record)?;
    Ok((versions, prepared))
}

fn etc_file(files: &[(&str, String)], name: &str) -> String {
    files.iter().find(|(n, _)| *n == name).map(|(_, c)| c.clone()).unwrap_or_default()
}

/// A veth from the libvirt network's bridge into the router namespace, where it joins the
/// subnet's bridge. IPv6 is off on this machine's end: it must have no address on the lab.
fn plug_uplink(router: &str, subnet: &str, net: &VirtNetwork) -> Result<()> {
    let here = netns::NetnsRecord::router_only(router, &BTreeMap::new());
    let ip = |args: &[&str]| netns::ip(&here, args);
    let inner = router_uplink(subnet);
    ip(&["link", "add", &net.uplink, "type", "veth", "peer", "name", &inner, "netns", router])?;
    exec::local(&["sysctl", "-qw", &format!("net.ipv6.conf.{}.disable_ipv6=1", net.uplink)], budget::command())?.check()?;
    ip(&["link", "set", &net.uplink, "master", &net.bridge, "up"])?;
    ip(&["-n", router, "link", "set", &inner, "master", &format!("br-{subnet}"), "up"])?;
    Ok(())
}

/// Every VM answering SSH with its pinned host key, in parallel, each one said as it happens.
/// The first has a budget worked out from the machine ([`budget::vm_boot`]); once it answers,
/// the others have a budget from how long it took ([`budget::vm_boot_rest`]).
fn await_ssh(record: &LibvirtRecord) -> Result<()> {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let clock = BootClock {
        started: Instant::now(),
        first_budget: budget::vm_boot(record.domains.len(), cores, record.accel == "kvm"),
        first: OnceLock::new(),
    };
    say!(
        "budget for the first VM to answer SSH: {:.0?} ({} VMs on {cores} cores under {})",
        clock.first_budget,
        record.domains.len(),
        if record.accel == "kvm" { "KVM" } else { "TCG" }
    );
    let clock = &clock;
    let names: Vec<&String> = record.domains.keys().collect();
    let _live = crate::progress::Phase::start(format!("{} VMs booting, until each answers SSH", names.len()));
    let results = crate::fanout::each("SSH wait", &names, |name| {
        crate::panics::inject("vm-boot");
        let host = VmHost::new(record, name)?;
        // The longest it could be given; the clock says when it is really over.
        let most = budget::vm_boot_rest(clock.first_budget);
        poll::until(&format!("{name} answering SSH"), most, || {
            let seen = host.probe();
            match (&seen, clock.over()) {
                (Err(e), Some(why)) => Err(poll::Hopeless(format!("{why}; last seen: {e:#}")).into()),
                _ => seen,
            }
        })?;
        let at = clock.answered();
        say!("{name} answers SSH after {:.1}s", at.as_secs_f64());
        Ok(())
    });
    let failed: Vec<String> = names
        .into_iter()
        .zip(results)
        .filter_map(|(name, r)| r.err().map(|e| (name, e)))
        .map(|(name, e)| format!("{name}: {e:#}\n    its console log: {}", record.domains[name].console_log.display()))
        .collect();
    if !failed.is_empty() {
        bail!(
            "VMs did not answer SSH ({}; MESH_TIME_SCALE multiplies these budgets):\n  {}",
            clock.describe(),
            failed.join("\n  ")
        );
    }
    Ok(())
}

/// When a lab's VMs must have answered SSH by: the first within its budget, the rest within a
/// budget set by how long the first took.
struct BootClock {
    started: Instant,
    first_budget: Duration,
    /// When the first VM answered, from `started`.
    first: OnceLock<Duration>,
}

impl BootClock {
    /// A VM answered: the time since the start (the first to answer sets the rest's budget).
    fn answered(&self) -> Duration {
        let at = self.started.elapsed();
        let _ = self.first.set(at);
        at
    }

    /// The deadline for VMs that have not answered yet.
    fn deadline(&self) -> Duration {
        match self.first.get() {
            Some(first) => budget::vm_boot_rest(*first),
            None => self.first_budget,
        }
    }

    /// Why a VM that has not answered yet should be given up on, once its time is over.
    fn over(&self) -> Option<String> {
        (self.started.elapsed() >= self.deadline()).then(|| format!("not answering SSH after {}", self.describe()))
    }

    fn describe(&self) -> String {
        match self.first.get() {
            Some(first) => {
                format!("{:.0?}: the first VM answered after {:.0?}, the rest get twice that and 20 s", self.deadline(), first)
            }
            None => format!("{:.0?}, the budget for the first VM to answer", self.first_budget),
        }
    }
}

/// Remove everything of a VM lab from its record: domains, networks, uplinks, the router.
/// Missing pieces are fine; the domains and networks are transient, so destroyed is gone.
/// It runs [`removal_script`], the watchdog's own removal, and then looks for what is left.
pub fn teardown(record: &LibvirtRecord) -> Result<()> {
    let script = removal_script(record);
    let out = exec::local(&["sh", "-c", &script], removal_budget(record))?;
    let mut problems = Vec::new();
    // SIGKILL is quick but not instant: a QEMU process may take a moment to go.
    let gone = poll::until("the lab's QEMU processes gone", budget::stop(), || match qemu_processes(record).as_slice() {
        [] => Ok(()),
        left => bail!("still running: {}", left.iter().map(u32::to_string).collect::<Vec<_>>().join(" ")),
    });
    if let Err(e) = gone {
        problems.push(format!("{e:#}"));
    }
    for n in record.networks.values() {
        for link in [&n.bridge, &n.uplink] {
            if Path::new("/sys/class/net").join(link).exists() {
                problems.push(format!("interface {link} is still there"));
            }
        }
    }
    for ns in std::iter::once(&record.router).chain(record.lan.values()) {
        if Path::new("/run/netns").join(ns).exists() {
            problems.push(format!("namespace {ns} is still there"));
        }
    }
    if let Ok(conn) = daemon::connect_if_running(&record.uri) {
        for d in record.domains.values() {
            if virt::domain::Domain::lookup_by_name(&conn, &d.name).is_ok() {
                problems.push(format!("libvirt still has VM {}", d.name));
            }
        }
        for n in record.networks.values() {
            if virt::network::Network::lookup_by_name(&conn, &n.name).is_ok() {
                problems.push(format!("libvirt still has network {}", n.name));
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        bail!(
            "tearing down the VM lab left pieces behind:\n  {}\n  the removal said: {}",
            problems.join("\n  "),
            exec::tail(&format!("{}{}", out.stdout, out.stderr), 10)
        )
    }
}

/// Delete an interface of this machine's, if it is there (its veth peer goes with it).
fn delete_link(name: &str) {
    if Path::new("/sys/class/net").join(name).exists() {
        let _ = exec::local(&["ip", "link", "del", name], budget::command());
    }
}

/// The longest [`removal_script`] may take: one libvirt call a domain and a network, each
/// within the time libvirt has to answer, and the rest.
fn removal_budget(record: &LibvirtRecord) -> Duration {
    budget::libvirt_connect() * (1 + record.domains.len() + record.networks.len()) as u32 + budget::command()
}

/// The QEMU processes of the lab's VMs, found by their run-unique names (libvirt starts each as
/// `qemu-system-… -name guest=<domain>,…`).
fn qemu_processes(record: &LibvirtRecord) -> Vec<u32> {
    crate::process::all_pids()
        .into_iter()
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let mut args = cmdline.split(|b| *b == 0).map(String::from_utf8_lossy);
            let program = args.next().unwrap_or_default();
            let named = args.skip_while(|a| a != "-name").nth(1).unwrap_or_default();
            program.contains("qemu-system-") && record.domains.values().any(|d| named.starts_with(&format!("guest={},", d.name)))
        })
        .collect()
}

/// Everything of a VM lab removed, as a shell script: what [`teardown`] runs, and what the
/// watchdog runs once the lab's owner is gone. Written once, so the two cannot drift; every
/// name in it is this run's own. libvirt destroys the domains and networks; where it is down
/// or hung, the lab's QEMU processes are killed by their run-unique names and the bridges
/// libvirt made are deleted by theirs, so nothing of the lab runs on without libvirt either.
/// What could not be removed is said on stderr.
///
/// Unlike the netns backend's it is not a list of steps with a Rust side: every step here is
/// a command for which a shell is the natural runner (`virsh` under `timeout`, for a libvirt
/// that may hang; `pkill` by name), so [`teardown`] runs this very script and then checks, and
/// steps would only wrap these lines. The router's namespace, the one piece the two backends
/// share (with its LAN hosts), is removed by the netns backend's steps, rendered
/// ([`netns::router_removal_script`]).
pub fn removal_script(record: &LibvirtRecord) -> String {
    let quote = |s: &str| exec::display_argv(&[s]);
    let list = |names: Vec<&String>| names.into_iter().map(|n| quote(n)).collect::<Vec<_>>().join(" ");
    let domains = list(record.domains.values().map(|d| &d.name).collect());
    let networks = list(record.networks.values().map(|n| &n.name).collect());
    let links = list(record.networks.values().flat_map(|n| [&n.bridge, &n.uplink]).collect());
    format!(
        "virsh() {{ timeout {limit} virsh -q -c {uri} \"$@\" >/dev/null 2>&1; }}\n\
         if virsh uri; then\n\
         \x20 for d in {domains}; do virsh domid \"$d\" && {{ virsh destroy \"$d\" || echo \"libvirt could not destroy VM $d\" >&2; }}; done\n\
         \x20 for n in {networks}; do virsh net-uuid \"$n\" && {{ virsh net-destroy \"$n\" || echo \"libvirt could not destroy network $n\" >&2; }}; done\n\
         else\n\
         \x20 echo \"libvirt at {uri} does not answer: killing the lab's QEMU processes by name\"\n\
         fi\n\
         for d in {domains}; do pkill -KILL -f \"^[^ ]*qemu-system-[^ ]* -name guest=$d,\" && echo \"killed the QEMU process of $d\"; done\n\
         for l in {links}; do [ -e \"/sys/class/net/$l\" ] && ip link del \"$l\"; done\n\
         {router}\
         exit 0\n",
        limit = budget::libvirt_connect().as_secs().max(1),
        uri = quote(&record.uri),
        router = netns::router_removal_script(&record.router_record()),
    )
}

/// Domains and networks of this tool that libvirt still has, whose run no record accounts for.
pub fn remove_unrecorded(known: &[String]) -> Vec<String> {
    let Ok(conn) = daemon::connect_if_running(DEFAULT_URI) else { return Vec::new() };
    // The run id of a name of ours whose run is not known.
    let stray = |name: &str| netns::run_id_of_namespace(name).filter(|id| !known.iter().any(|k| k == id)).map(str::to_string);
    let mut removed = Vec::new();
    for dom in conn.list_all_domains(0).unwrap_or_default() {
        let Ok(name) = dom.get_name() else { continue };
        if let Some(id) = stray(&name) {
            say!("destroying VM {name}, which no record accounts for");
            if dom.destroy().is_ok() {
                removed.push(id);
            }
        }
    }
    for net in conn.list_all_networks(0).unwrap_or_default() {
        let Ok(name) = net.get_name() else { continue };
        if let Some(id) = stray(&name) {
            say!("destroying network {name}, which no record accounts for");
            let _ = net.destroy();
            delete_link(&host_uplink(&id, name.rsplit('-').next().unwrap_or("")));
        }
    }
    removed
}

impl super::seam::LabBackend for LibvirtRecord {
    fn create(
        &mut self,
        spec: &LabSpec,
        lab_dir: &Path,
        tools: &Tools,
        etc_files: &[(&str, String)],
        _lifetime: crate::process::Lifetime,
    ) -> Result<super::seam::Created> {
        let (versions, images) = create(self, spec, lab_dir, tools, etc_files)?;
        Ok(super::seam::Created { versions: Some(versions), images })
    }

    fn hosts(&self, spec: &LabSpec, _lab_dir: &Path, _lifetime: crate::process::Lifetime) -> Result<Vec<Box<dyn super::Host>>> {
        spec.hosts.iter().map(|h| Ok(Box::new(VmHost::new(self, &h.name)?) as Box<dyn super::Host>)).collect()
    }

    fn underlay(&self, spec: &LabSpec, lab_dir: &Path) -> Box<dyn super::Underlay> {
        Box::new(VmUnderlay::new(self, spec, lab_dir))
    }

    fn set_paused(&self, paused: bool) -> Result<()> {
        set_suspended(self, paused)
    }

    /// Under TCG every packet's encryption runs on an emulated CPU, so a round trip measures
    /// the emulator rather than the mesh (5–25 ms on a quiet machine, past 50 ms on a busy one).
    fn emulated(&self) -> Option<String> {
        (self.accel != "kvm").then(|| "the hosts are VMs under QEMU's TCG emulation".into())
    }

    /// VMs have the programs under test installed in their image.
    fn program_path(&self, path: &Path) -> String {
        match path.file_name() {
            Some(file) => format!("{}/{}", self.programs_dir, file.to_string_lossy()),
            None => path.display().to_string(),
        }
    }

    fn teardown(&self, _lab_dir: &Path) -> Result<()> {
        teardown(self)
    }

    fn removal_script(&self, _lab_dir: &Path) -> String {
        removal_script(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_removal_script_is_valid_sh_and_removes_the_router_by_the_netns_steps() {
        let network = |s: &str| VirtNetwork {
            name: format!("mesh-0a1b2c-{s}"),
            bridge: format!("mb-0a1b2c-{s}"),
            uplink: format!("mu-0a1b2c-{s}"),
        };
        let record = LibvirtRecord {
            uri: DEFAULT_URI.into(),
            images: ImagesKind::Debian,
            router: "mesh-0a1b2c-router".into(),
            lan: [("lan-1".to_string(), "mesh-0a1b2c-lan-1".to_string())].into(),
            networks: [("a".to_string(), network("a")), ("b".to_string(), network("b"))].into(),
            domains: BTreeMap::new(),
            ssh_key: PathBuf::from("/nonexistent/key"),
            known_hosts: PathBuf::from("/nonexistent/known_hosts"),
            accel: "qemu".into(),
            programs_dir: "/opt/mesh".into(),
        };
        let script = removal_script(&record);
        assert!(script.contains(&netns::router_removal_script(&record.router_record())), "{script}");
        assert!(script.contains("mesh-0a1b2c-lan-1"), "the LAN host's namespace goes with the router:\n{script}");
        assert!(script.ends_with("exit 0\n"), "{script}");
        let syntax = std::process::Command::new("sh").args(["-n", "-c", &script]).output().unwrap();
        assert!(syntax.status.success(), "{}\n{script}", String::from_utf8_lossy(&syntax.stderr));
    }
}
