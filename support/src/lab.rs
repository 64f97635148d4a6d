//! A lab: the hosts of a [`LabSpec`] made by a backend, headscale and tailscaled running on
//! them for real, and the record that lets anyone (this process, `cargo mesh down`, the
//! next run) find and remove every piece of it.

use crate::backend::netns::{self, NetnsHost, NetnsRecord, NetnsUnderlay};
use crate::backend::{BackendKind, Host, Underlay};
use crate::headscale::Headscale;
use crate::process::{Lifetime, ProcessId};
use crate::spec::{LabSpec, Role, SERVER_NAME, USER};
use crate::tailscale::Tailscale;
use crate::tools::Tools;
use crate::{budget, paths, pki, poll, prereq, say};
use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const RUN_ID_LEN: usize = 6;
/// How many finished labs' folders (logs, configs) are kept under target/.
const KEEP_FINISHED: usize = 10;
const RECORD: &str = "lab.json";
/// The lab CA's certificate, in the lab's folder.
const CA_FILE: &str = "lab-ca.pem";

/// Everything needed to use, attach to, or remove a lab. Saved as `lab.json` in its folder.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabRecord {
    pub run_id: String,
    pub backend: BackendKind,
    pub dir: PathBuf,
    pub owner: ProcessId,
    pub lifetime: Lifetime,
    pub spec: LabSpec,
    pub tools: Tools,
    pub netns: Option<NetnsRecord>,
    /// Client name → its tailnet addresses, IPv4 first.
    pub tailnet_ips: BTreeMap<String, Vec<String>>,
    pub timings: Timings,
    pub torn_down: bool,
}

/// How long each phase of building the lab took, in seconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Timings {
    pub network: f64,
    pub headscale_ready: f64,
    /// Client → seconds from the start of registration until its `tailscale up` returned.
    pub registered: BTreeMap<String, f64>,
    /// From the start of registration until every client reaches every other (SC-001).
    pub converged_after_registration: f64,
    /// From the lab's start until the mesh converged.
    pub converged_since_start: f64,
}

/// How a lab is to be built.
#[derive(Clone)]
pub struct LabOptions {
    pub backend: BackendKind,
    pub spec: LabSpec,
    pub lifetime: Lifetime,
}

impl LabOptions {
    /// Backend and subnets from the environment, dying with this process.
    pub fn from_env() -> Result<LabOptions> {
        Ok(LabOptions { backend: BackendKind::from_env()?, spec: LabSpec::from_env()?, lifetime: Lifetime::WithOwner })
    }
}

pub struct Lab {
    pub record: LabRecord,
    hosts: Vec<Box<dyn Host>>,
    underlay: Box<dyn Underlay>,
    /// Built by this process (removed by it) rather than attached to.
    owned: bool,
    torn_down: Mutex<bool>,
}

impl Lab {
    /// Build a lab from nothing. On any failure, everything already made is removed before
    /// the error returns.
    pub fn build(options: LabOptions) -> Result<Lab> {
        let started = Instant::now();
        budget::set_backend_scale(options.backend.time_scale());
        prereq::ensure(options.backend)?;
        let tools = Tools::resolve()?;
        reclaim_abandoned();
        let run_id = new_run_id()?;
        let dir = paths::labs_dir().join(&run_id);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        say!("building lab {run_id} on the {} backend (headscale {}, tailscale {}); its files: {}",
            options.backend.name(), tools.versions.headscale, tools.versions.tailscale, dir.display());
        let record = LabRecord {
            netns: Some(NetnsRecord::plan(&run_id, &dir, &options.spec)),
            run_id,
            backend: options.backend,
            dir,
            owner: ProcessId::current(),
            lifetime: options.lifetime,
            spec: options.spec,
            tools,
            tailnet_ips: BTreeMap::new(),
            timings: Timings::default(),
            torn_down: false,
        };
        // The record and the index entry exist before the first namespace does, so that from
        // here on a crash leaves something the next run can find and remove.
        record.save()?;
        index(&record)?;
        remove_on_interrupt(&record);
        let mut lab = Lab {
            hosts: make_hosts(&record, record.lifetime)?,
            underlay: make_underlay(&record)?,
            record,
            owned: true,
            torn_down: Mutex::new(false),
        };
        // From here the Lab value owns every piece: an error drops it, and Drop tears down.
        let (timings, ips) = lab.provision(started)?;
        lab.record.timings = timings;
        lab.record.tailnet_ips = ips;
        lab.record.save()?;
        Ok(lab)
    }

    /// Use a lab another process built (`cargo mesh up`); leave it running afterwards.
    pub fn attach(dir_or_id: &str) -> Result<Lab> {
        let dir = if Path::new(dir_or_id).join(RECORD).exists() {
            PathBuf::from(dir_or_id)
        } else {
            paths::labs_dir().join(dir_or_id)
        };
        let record = LabRecord::load(&dir).with_context(|| {
            format!("MESH_LAB={dir_or_id} names no lab: give the folder or run id that `cargo mesh up` printed (see `cargo mesh status`)")
        })?;
        if record.torn_down {
            bail!("lab {} was torn down: start a new one with `cargo mesh up`", record.run_id);
        }
        budget::set_backend_scale(record.backend.time_scale());
        // A service this process (re)starts belongs to the lab, not to this process: it must
        // outlive us, and is stopped with the lab, by its recorded pid.
        Ok(Lab {
            hosts: make_hosts(&record, Lifetime::Detached)?,
            underlay: make_underlay(&record)?,
            record,
            owned: false,
            torn_down: Mutex::new(false),
        })
    }

    /// Make the network, start headscale, start and register every client, and wait for the
    /// mesh to converge. Returns each phase's time and the clients' tailnet addresses.
    fn provision(&self, started: Instant) -> Result<(Timings, BTreeMap<String, Vec<String>>)> {
        let record = &self.record;
        let spec = &record.spec;
        let mut timings = Timings::default();
        let phase = Instant::now();
        match &record.netns {
            Some(n) => netns::create(n, spec, &record.dir, &etc_files(spec))?,
            None => bail!("this lab has no network record"),
        }
        timings.network = phase.elapsed().as_secs_f64();
        say!("lab network up in {:.2}s: subnet A {}, subnet B {} behind NAT", timings.network, spec.subnet("a").net, spec.subnet("b").net);

        let phase = Instant::now();
        let pki = pki::issue(&record.run_id, SERVER_NAME, spec.server().addr)?;
        // Kept for clients that join later; only the CA's certificate, never a key.
        std::fs::write(record.dir.join(CA_FILE), &pki.ca_pem)?;
        let headscale = self.headscale();
        headscale.start(spec, &pki.server_cert_pem, &pki.server_key_pem)?;
        let user = headscale.create_user(USER)?;
        timings.headscale_ready = phase.elapsed().as_secs_f64();
        say!("headscale ready in {:.2}s at {}", timings.headscale_ready, spec.server_url());

        let clients = self.client_names();
        for name in &clients {
            self.client(name)?.start(&pki.ca_pem)?;
        }
        // One single-use key per client, expiring in minutes: a leaked key is worth nothing.
        // Made while the daemons start up.
        let keys: Vec<String> = clients.iter().map(|_| headscale.preauth_key(user, "10m")).collect::<Result<_>>()?;
        for name in &clients {
            self.client(name)?.await_daemon()?;
        }

        let registration = Instant::now();
        let login_server = spec.server_url();
        let registered: Vec<Result<f64>> = std::thread::scope(|scope| {
            let handles: Vec<_> = clients
                .iter()
                .zip(&keys)
                .map(|(name, key)| {
                    let login_server = &login_server;
                    scope.spawn(move || -> Result<f64> {
                        self.client(name)?.up(login_server, key, name)?;
                        Ok(registration.elapsed().as_secs_f64())
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err(anyhow!("a registration thread panicked")))).collect()
        });
        for (name, result) in clients.iter().zip(registered) {
            let seconds = result?;
            say!("{name} registered after {seconds:.2}s");
            timings.registered.insert(name.clone(), seconds);
        }
        let mut ips = BTreeMap::new();
        for name in &clients {
            ips.insert(name.clone(), self.client(name)?.ips()?);
        }
        self.await_mesh_of(&ips, budget::converge())?;
        timings.converged_after_registration = registration.elapsed().as_secs_f64();
        timings.converged_since_start = started.elapsed().as_secs_f64();
        say!("mesh converged {:.2}s after registration ({:.2}s since the lab's start)",
            timings.converged_after_registration, timings.converged_since_start);
        Ok((timings, ips))
    }

    /// Wait until the mesh is whole: headscale lists every client online, every client sees
    /// every other online, and every client reaches every other's tailnet IPv4.
    pub fn await_mesh(&self, budget: Duration) -> Result<()> {
        self.await_mesh_of(&self.record.tailnet_ips, budget)
    }

    fn await_mesh_of(&self, ips: &BTreeMap<String, Vec<String>>, budget: Duration) -> Result<()> {
        let clients = self.client_names();
        poll::until("every client online and reaching every other", budget, || {
            let nodes = self.headscale().nodes()?;
            for name in &clients {
                match nodes.iter().find(|n| &n.given_name == name) {
                    Some(n) if n.online => {}
                    Some(_) => bail!("headscale lists {name} as offline"),
                    None => bail!("headscale does not list {name}"),
                }
            }
            for name in &clients {
                let status = self.client(name)?.status()?;
                for peer in clients.iter().filter(|p| *p != name) {
                    // A packet sent before the peer's home DERP is known fails its WireGuard
                    // handshake and waits out the 5 s retry: ping only once it is known.
                    match status.peer(peer) {
                        Some(p) if p.online && !p.relay.is_empty() => {}
                        Some(p) if p.online => bail!("{name} does not know {peer}'s home DERP yet"),
                        Some(_) => bail!("{name} sees {peer} offline"),
                        None => bail!("{name} does not see {peer} at all"),
                    }
                    let ip = ips.get(peer).and_then(|v| v.iter().find(|ip| !ip.contains(':'))).ok_or_else(|| anyhow!("{peer} has no tailnet IPv4"))?;
                    self.host(name)?
                        .succeed(&["ping", "-n", "-c", "1", "-W", "1", ip])
                        .map_err(|e| anyhow!("{name} cannot ping {peer} at {ip}: {e:#}"))?;
                }
            }
            Ok(())
        })
    }

    /// Bring a client that joins later into the mesh: start tailscaled, register it with a
    /// fresh single-use key. Returns once it is Running; a [`Joined`] guard makes it leave.
    pub fn join(&self, name: &str) -> Result<Joined<'_>> {
        if !self.record.spec.host(name)?.joins_later {
            bail!("{name} is part of the mesh from the start; only a late client joins");
        }
        let client = self.client(name)?;
        let ca = std::fs::read_to_string(self.record.dir.join(CA_FILE))?;
        let headscale = self.headscale();
        let user = headscale.user_id(USER)?;
        let key = headscale.preauth_key(user, "10m")?;
        let joined = Joined { lab: self, name: name.to_string() };
        client.start(&ca)?;
        client.await_daemon()?;
        client.up(&self.record.spec.server_url(), &key, name)?;
        say!("{name} joined the mesh as {:?}", client.ips()?);
        Ok(joined)
    }

    pub fn host(&self, name: &str) -> Result<&dyn Host> {
        self.record.spec.host(name)?;
        Ok(self.hosts.iter().find(|h| h.name() == name).expect("every spec host is made").as_ref())
    }

    /// The router and the hosts' links: firewalls, link cuts, captures.
    pub fn underlay(&self) -> &dyn Underlay {
        self.underlay.as_ref()
    }

    pub fn hosts(&self) -> impl Iterator<Item = &dyn Host> {
        self.hosts.iter().map(|h| h.as_ref())
    }

    pub fn headscale(&self) -> Headscale<'_> {
        let server = self.record.spec.server().name.clone();
        Headscale { host: self.host(&server).expect("the server is a host"), program: self.program(&self.record.tools.headscale) }
    }

    pub fn client(&self, name: &str) -> Result<Tailscale<'_>> {
        if self.record.spec.host(name)?.role != Role::Client {
            bail!("{name} is not a client of this lab");
        }
        Ok(Tailscale {
            host: self.host(name)?,
            tailscale: self.program(&self.record.tools.tailscale),
            tailscaled: self.program(&self.record.tools.tailscaled),
        })
    }

    pub fn client_names(&self) -> Vec<String> {
        self.record.spec.clients().map(|c| c.name.clone()).collect()
    }

    /// A client's tailnet IPv4 address.
    pub fn tailnet_ipv4(&self, client: &str) -> Result<String> {
        self.tailnet_ips(client)?.iter().find(|ip| !ip.contains(':')).cloned().ok_or_else(|| anyhow!("{client} has no tailnet IPv4"))
    }

    pub fn tailnet_ips(&self, client: &str) -> Result<&[String]> {
        self.record.tailnet_ips.get(client).map(|v| v.as_slice()).ok_or_else(|| anyhow!("{client} has no tailnet addresses recorded"))
    }

    /// The argv of an interactive shell in `host`, with the lab's programs on its PATH.
    pub fn shell_argv(&self, host: &str) -> Result<Vec<String>> {
        let tools = &self.record.tools;
        let dirs: Vec<String> = [&tools.headscale, &tools.tailscale, &tools.tailscaled]
            .iter()
            .filter_map(|p| p.parent().map(|d| d.display().to_string()))
            .collect();
        Ok(self.host(host)?.shell_argv(&dirs.join(":")))
    }

    /// Where a program is, as the hosts see it. netns hosts share this machine's files.
    fn program(&self, path: &Path) -> String {
        path.display().to_string()
    }

    /// Peak resident memory of every service in the lab, in MiB.
    pub fn peak_rss_mib(&self) -> f64 {
        self.hosts().map(|h| h.services_peak_rss_kib()).sum::<u64>() as f64 / 1024.0
    }

    /// Save what explains a failure into the lab's folder: headscale's view of the nodes,
    /// each client's status, each host's addresses and routes. Returns the folder.
    pub fn save_diagnostics(&self) -> PathBuf {
        let dir = self.record.dir.join("diagnostics");
        let _ = std::fs::create_dir_all(&dir);
        let save = |name: &str, out: Result<crate::exec::Output>| {
            let text = match out {
                Ok(o) => format!("$ {}  (exit {:?})\n{}{}", o.command, o.code, o.stdout, o.stderr),
                Err(e) => format!("{e:#}\n"),
            };
            let _ = std::fs::write(dir.join(name), text);
        };
        save("headscale-nodes.json", self.headscale().cli(&["nodes", "list", "-o", "json"]));
        for name in self.client_names() {
            if let Ok(client) = self.client(&name) {
                save(&format!("{name}-status.json"), client.cli(&["status", "--json"]));
            }
        }
        for host in self.hosts() {
            save(&format!("{}-ip.txt", host.name()), host.run(&["sh", "-c", "ip addr; ip route; ip -6 route"]));
        }
        let _ = std::fs::write(dir.join("router-nft.txt"), self.underlay.ruleset().unwrap_or_else(|e| format!("{e:#}")));
        dir
    }

    /// Remove the lab: services, namespaces, mounts, its index entry. Its folder (logs,
    /// configs) stays under target/ for reading afterwards.
    pub fn teardown(&self) -> Result<()> {
        let mut done = self.torn_down.lock().unwrap();
        if *done {
            return Ok(());
        }
        *done = true;
        // Clients first, so none logs a storm of errors about a vanished server.
        for host in self.hosts.iter().rev() {
            let _ = host.stop_service(crate::tailscale::SERVICE);
            let _ = host.stop_service(crate::headscale::SERVICE);
        }
        remove(&self.record)?;
        say!("lab {} torn down; its logs stay in {}", self.record.run_id, self.record.dir.display());
        Ok(())
    }

    pub fn owned(&self) -> bool {
        self.owned
    }

    /// Let the lab outlive this value (`cargo mesh up`): it is now `cargo mesh down`'s to remove.
    pub fn release(mut self) -> LabRecord {
        self.owned = false;
        if let Ok(mut owned) = OWNED.lock() {
            owned.retain(|r| r.run_id != self.record.run_id);
        }
        self.record.clone()
    }
}

/// A late client in the mesh; dropping it takes it out again: logged out, its tailscaled
/// stopped and its state wiped, its node deleted from headscale if still listed.
pub struct Joined<'a> {
    lab: &'a Lab,
    name: String,
}

impl Joined<'_> {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Deregister cleanly from the client's side (`tailscale logout`).
    pub fn logout(&self) -> Result<()> {
        self.lab.client(&self.name)?.cli(&["logout"])?.check()?;
        Ok(())
    }

    fn leave(&self) -> Result<()> {
        let client = self.lab.client(&self.name)?;
        let _ = client.cli(&["logout"]);
        client.host.stop_service(crate::tailscale::SERVICE)?;
        client.host.succeed(&["rm", "-rf", &client.state_path()])?;
        let headscale = self.lab.headscale();
        for node in headscale.nodes()?.iter().filter(|n| n.name == self.name || n.given_name.starts_with(&self.name)) {
            headscale.cli(&["nodes", "delete", "--identifier", &node.id.to_string(), "--force"])?.check()?;
        }
        say!("{} left the mesh", self.name);
        Ok(())
    }
}

impl Drop for Joined<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.leave() {
            say!("{} could not leave the mesh cleanly: {e:#}", self.name);
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if self.owned {
            if let Err(e) = self.teardown() {
                say!("teardown of lab {} failed: {e:#}", self.record.run_id);
            }
        }
    }
}

impl LabRecord {
    pub fn save(&self) -> Result<()> {
        let path = self.dir.join(RECORD);
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?)?;
        std::fs::rename(&tmp, &path)?;
        Ok(())
    }

    pub fn load(dir: &Path) -> Result<LabRecord> {
        let path = dir.join(RECORD);
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_slice(&bytes).with_context(|| format!("reading {}", path.display()))
    }

    /// Nobody will remove this lab if we don't: its owner is gone and it was not detached.
    fn abandoned(&self) -> bool {
        !self.torn_down && self.lifetime == Lifetime::WithOwner && !self.owner.alive()
    }
}

fn make_underlay(record: &LabRecord) -> Result<Box<dyn Underlay>> {
    let n = record.netns.as_ref().ok_or_else(|| anyhow!("lab {} has no network record", record.run_id))?;
    Ok(Box::new(NetnsUnderlay::new(n, &record.spec, &record.dir)))
}

fn make_hosts(record: &LabRecord, lifetime: Lifetime) -> Result<Vec<Box<dyn Host>>> {
    let n = record.netns.as_ref().ok_or_else(|| anyhow!("lab {} has no network record", record.run_id))?;
    record
        .spec
        .hosts
        .iter()
        .map(|h| Ok(Box::new(NetnsHost::new(n, &record.dir, &h.name, lifetime)?) as Box<dyn Host>))
        .collect()
}

/// The files every host's /etc starts with: the server's name resolves by the hosts file, and
/// there is no resolver until tailscale's MagicDNS takes over resolv.conf.
fn etc_files(spec: &LabSpec) -> Vec<(&'static str, String)> {
    let server = spec.server();
    let mut hosts = String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    hosts += &format!("{}\t{SERVER_NAME}\n", server.addr);
    vec![
        ("hosts", hosts),
        ("resolv.conf", "# mesh lab host: no upstream resolver; tailscale's MagicDNS manages this file\nnameserver 127.0.0.1\n".into()),
    ]
}

fn new_run_id() -> Result<String> {
    let mut bytes = [0u8; RUN_ID_LEN / 2];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Add the lab to the machine-wide index.
fn index(record: &LabRecord) -> Result<()> {
    std::fs::create_dir_all(paths::index_dir())?;
    let link = paths::index_dir().join(&record.run_id);
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&record.dir, &link).with_context(|| format!("indexing the lab at {}", link.display()))
}

/// Labs this process is building or owns: what Ctrl-C or SIGTERM must remove before exiting.
static OWNED: Mutex<Vec<LabRecord>> = Mutex::new(Vec::new());

fn remove_on_interrupt(record: &LabRecord) {
    static HANDLER: std::sync::Once = std::sync::Once::new();
    OWNED.lock().unwrap().push(record.clone());
    HANDLER.call_once(|| {
        let installed = ctrlc::set_handler(|| {
            let owned: Vec<LabRecord> = OWNED.lock().map(|o| o.clone()).unwrap_or_default();
            for record in owned {
                say!("interrupted: removing lab {}", record.run_id);
                if let Err(e) = remove(&record) {
                    say!("removing lab {} failed: {e:#}", record.run_id);
                }
            }
            std::process::exit(130);
        });
        if let Err(e) = installed {
            say!("no interrupt handler ({e}); an interrupted lab is removed by the next run");
        }
    });
}

/// Remove a lab's every piece, from its record alone, and drop it from the index.
pub fn remove(record: &LabRecord) -> Result<()> {
    if let Ok(mut owned) = OWNED.lock() {
        owned.retain(|r| r.run_id != record.run_id);
    }
    if let Some(n) = &record.netns {
        netns::teardown(n, &record.dir)?;
    }
    let mut done = record.clone();
    done.torn_down = true;
    let _ = done.save();
    let _ = std::fs::remove_file(paths::index_dir().join(&record.run_id));
    let _ = std::fs::remove_dir(paths::index_dir()); // only if empty: nothing of ours stays in /run
    prune_finished();
    Ok(())
}

/// Every lab in the index, by record.
pub fn indexed() -> Vec<LabRecord> {
    let Ok(entries) = std::fs::read_dir(paths::index_dir()) else { return Vec::new() };
    entries.flatten().filter_map(|e| std::fs::read_link(e.path()).ok()).filter_map(|dir| LabRecord::load(&dir).ok()).collect()
}

/// Remove labs whose owner died without removing them (killed, crashed), and namespaces of
/// this tool that no record accounts for. Returns the run ids removed.
pub fn reclaim_abandoned() -> Vec<String> {
    let mut removed = Vec::new();
    for record in indexed().into_iter().filter(LabRecord::abandoned) {
        say!("removing lab {} left behind by process {} (gone)", record.run_id, record.owner.pid);
        match remove(&record) {
            Ok(()) => removed.push(record.run_id),
            Err(e) => say!("could not remove lab {}: {e:#}", record.run_id),
        }
    }
    removed.extend(remove_unrecorded_namespaces(&indexed().iter().map(|r| r.run_id.clone()).collect::<Vec<_>>()));
    removed
}

/// Namespaces named like ours whose run has no live record: remove them with whatever runs in them.
pub fn remove_unrecorded_namespaces(known: &[String]) -> Vec<String> {
    let mut removed = Vec::new();
    for (run_id, namespaces) in netns::namespaces_of_this_tool() {
        if known.contains(&run_id) {
            continue;
        }
        let record = NetnsRecord {
            router: namespaces.iter().find(|n| n.ends_with("-router")).cloned().unwrap_or_default(),
            hosts: namespaces
                .iter()
                .filter(|n| !n.ends_with("-router"))
                .map(|n| (n.trim_start_matches(&format!("{}{run_id}-", netns::NS_PREFIX)).to_string(), n.clone()))
                .collect(),
            ns_dir: paths::labs_dir().join(&run_id).join("ns"),
        };
        say!("removing namespaces of run {run_id}, which no record accounts for: {}", namespaces.join(" "));
        if netns::teardown(&record, &paths::labs_dir().join(&run_id)).is_ok() {
            removed.push(run_id);
        }
    }
    removed
}

/// Keep the folders of the last few finished labs (their logs), delete older ones.
fn prune_finished() {
    let Ok(entries) = std::fs::read_dir(paths::labs_dir()) else { return };
    let mut finished: Vec<(std::time::SystemTime, PathBuf)> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| LabRecord::load(p).map(|r| r.torn_down).unwrap_or(false))
        .filter_map(|p| Some((std::fs::metadata(p.join(RECORD)).ok()?.modified().ok()?, p)))
        .collect();
    finished.sort();
    let excess = finished.len().saturating_sub(KEEP_FINISHED);
    for (_, dir) in finished.into_iter().take(excess) {
        let _ = std::fs::remove_dir_all(dir);
    }
}
