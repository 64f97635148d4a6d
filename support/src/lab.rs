//! A lab: the hosts of a [`LabSpec`] made by a backend, with headscale and tailscaled running
//! on them for real; building it, attaching to it, the clients that join later, teardown.
//! Its record, and removal from the record alone, are the [`registry`]'s.

use crate::backend::{seam, BackendKind, Built, Host, Underlay};
use crate::headscale::Headscale;
use crate::process::{Lifetime, ProcessId};
use crate::registry::{self, LabRecord, Timings};
use crate::releases::HeadscaleRelease;
use crate::spec::{LabSpec, Role, SERVER_NAME, USER};
use crate::tailscale::Tailscale;
use crate::tools::Tools;
use crate::{budget, paths, pki, poll, prereq, say};
use anyhow::{anyhow, bail, Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a pre-auth key lives: long enough to register, short enough to be worth nothing
/// if it leaks.
const KEY_EXPIRY: &str = "10m";
/// The lab CA's certificate, in the lab's folder.
const CA_FILE: &str = "lab-ca.pem";

/// How a lab is to be built.
#[derive(Clone)]
pub struct LabOptions {
    pub backend: BackendKind,
    pub spec: LabSpec,
    pub lifetime: Lifetime,
    /// Where VMs' images come from (the libvirt backend only).
    pub images: crate::images::ImagesKind,
    /// The headscale release the server starts at, to be upgraded in place to the run's by the
    /// upgrade rehearsal (`upgrade`); `None`: it runs the run's from the start.
    pub server_from: Option<crate::version::Version>,
    /// The ACL policy the server runs with and the user or tag of each client (P7's lab);
    /// `None`: no policy, every client the lab's one user (everyone reaches everyone).
    pub policy: Option<crate::policy::PolicySetup>,
    /// The user's headscale configuration (`MESH_HEADSCALE_CONFIG`), laid over the lab's.
    pub headscale_config: Option<crate::userconfig::UserConfig>,
    /// The database headscale runs on (`MESH_DATABASE`, or the user's configuration's).
    pub database: crate::database::Database,
    /// The lab configuration's `node.ephemeral.inactivity_timeout` (the lifecycle lab's
    /// short one); `None`: the lab's default, [`crate::headscale::EPHEMERAL_INACTIVITY_TIMEOUT`].
    pub ephemeral_inactivity_timeout: Option<Duration>,
    /// Another process whose exit removes the lab (`mesh up --until-exit-of`: a test runner
    /// such as nextest); its services are detached from this one. `None`: this process.
    pub owner: Option<ProcessId>,
}

impl LabOptions {
    /// Backend and subnets from the environment, dying with this process.
    pub fn from_env() -> Result<LabOptions> {
        crate::settings::validate()?;
        crate::budget::soak()?;
        let headscale_config = crate::userconfig::UserConfig::from_env()?;
        let options = LabOptions {
            backend: BackendKind::from_env()?,
            spec: LabSpec::from_env()?,
            lifetime: Lifetime::WithOwner,
            images: crate::images::ImagesKind::from_env()?.0,
            server_from: None,
            policy: None,
            database: crate::database::Database::chosen(headscale_config.as_ref())?,
            headscale_config,
            ephemeral_inactivity_timeout: None,
            owner: None,
        };
        options.check_client_versions()?;
        options.check_database()?;
        crate::upgrade::Plan::from_env(options.backend)?;
        // A bad MESH_POLICY or MESH_NODES is refused by every command before anything is built,
        // whether or not this lab runs with the policy.
        options.policy_from_env()?;
        Ok(options)
    }

    /// These options for P7's lab: its server under the policy `MESH_POLICY` and `MESH_NODES`
    /// give, and only the clients of the mesh from the start (P7 makes none join: on VMs, one
    /// VM less to boot).
    pub fn under_policy(self) -> Result<LabOptions> {
        let policy = Some(self.policy_from_env()?);
        let mut spec = self.spec.clone();
        spec.hosts.retain(|h| !(h.role == Role::Client && h.joins_later));
        Ok(LabOptions { policy, spec, ..self })
    }

    /// These options for the lifecycle lab (P10): the shortest ephemeral inactivity timeout
    /// headscale accepts, so that a vanished ephemeral node's removal can be waited for (a
    /// user's configuration laid over it may say otherwise; the scenarios read what it says).
    pub fn for_lifecycle(self) -> LabOptions {
        LabOptions { ephemeral_inactivity_timeout: Some(crate::headscale::MIN_EPHEMERAL_INACTIVITY_TIMEOUT), ..self }
    }

    /// The policy setup `MESH_POLICY` and `MESH_NODES` give (the built-in policy and mapping
    /// when unset), for the headscale release the run asks for.
    pub fn policy_from_env(&self) -> Result<crate::policy::PolicySetup> {
        let release = crate::releases::headscale(crate::tools::HEADSCALE.wanted()?.version)?;
        let clients: Vec<String> = self.spec.clients().map(|c| c.name.clone()).collect();
        crate::policy::PolicySetup::from_env(release, &clients)
    }

    /// `MESH_POLICY` or `MESH_NODES` is set: the user asks for a lab with a policy.
    pub fn policy_asked() -> bool {
        [crate::policy::POLICY_VAR, crate::policy::NODES_VAR].iter().any(|v| std::env::var_os(v).is_some_and(|v| !v.is_empty()))
    }

    /// PostgreSQL runs inside a host of the netns backend, whose files are this machine's; a
    /// VM image carries no PostgreSQL server.
    fn check_database(&self) -> Result<()> {
        if self.database == crate::database::Database::Postgres && self.backend != BackendKind::Netns {
            bail!(
                "{}=postgres runs on the netns backend only: the VM image carries no PostgreSQL server; unset it (or set \
                 database.type: sqlite), or use MESH_BACKEND=netns",
                crate::database::VAR
            );
        }
        Ok(())
    }

    /// `MESH_CLIENT_VERSIONS` names clients of this lab, on a backend whose clients can each
    /// run their own programs.
    fn check_client_versions(&self) -> Result<()> {
        let own = crate::settings::client_versions()?;
        let clients: Vec<&str> = self.spec.clients().chain(self.spec.late_clients()).map(|c| c.name.as_str()).collect();
        for host in own.keys() {
            if !clients.contains(&host.as_str()) {
                bail!(
                    "MESH_CLIENT_VERSIONS names {host:?}, which is not a client of the lab: its clients are {}",
                    clients.join(", ")
                );
            }
        }
        if !own.is_empty() && self.backend != BackendKind::Netns {
            bail!(
                "MESH_CLIENT_VERSIONS works on the netns backend only: a VM image carries one tailscale for every \
                 client; unset it, or use MESH_BACKEND=netns"
            );
        }
        Ok(())
    }
}

pub struct Lab {
    pub record: LabRecord,
    /// What the run's headscale can do, by the version it reports.
    release: &'static HeadscaleRelease,
    /// While an upgrade rehearsal's server still runs its older release: what that one can do.
    old_server: Mutex<Option<&'static HeadscaleRelease>>,
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
        budget::set_backend_scale(options.backend.time_scale());
        prereq::ensure(options.backend)?;
        registry::ensure_labs_dir()?;
        let mut tools = Tools::resolve()?;
        if let Some(from) = options.server_from {
            if options.backend != BackendKind::Netns {
                bail!("a server that starts at an older headscale is made on the netns backend only");
            }
            tools.add_upgrade_from(from)?;
        }
        let release = tools.versions.headscale_release()?;
        let old_server = Mutex::new(old_server_release(&tools)?);
        if let Some(setup) = &options.policy {
            // A policy headscale rejects stops the build before anything of a lab exists.
            crate::policy::precheck(setup, &tools.headscale, release, &tools.versions.headscale)?;
        }
        if let Some(user) = &options.headscale_config {
            // A configuration headscale refuses stops the build before anything of a lab exists.
            crate::userconfig::precheck(user, &tools.headscale, &tools.versions.headscale)?;
        }
        // So does a database the lab cannot run.
        let database_server = match options.database {
            crate::database::Database::Postgres => Some(crate::database::Programs::ensure()?),
            crate::database::Database::Sqlite => None,
        };
        // The lab starts once its programs are there: a first build of a release (minutes) is
        // not part of the lab's time to converge.
        let started = Instant::now();
        registry::reclaim_abandoned();
        // An unreachable backend is an error before anything of a lab exists.
        seam::before_build(options.backend, &registry::indexed().iter().map(|r| r.run_id.clone()).collect::<Vec<_>>())?;
        let (run_id, dir) = registry::claim_run_id()?;
        say!(
            "building lab {run_id} on the {} backend (headscale {}{}{}, {}); its files: {}",
            options.backend.name(),
            tools.versions.headscale,
            database_server.as_ref().map(|p| format!(" on {}", p.version)).unwrap_or_default(),
            tools.versions.upgraded_from.as_ref().map(|v| format!(", the server starting at {v}")).unwrap_or_default(),
            tools.versions.describe_tailscale(),
            dir.display()
        );
        let record = LabRecord {
            built: Built::plan(options.backend, &run_id, &dir, &options.spec, options.images)?,
            run_id,
            backend: options.backend,
            dir,
            owner: options.owner.unwrap_or_else(ProcessId::current),
            lifetime: options.lifetime,
            spec: options.spec,
            policy: options.policy,
            headscale_config: options.headscale_config,
            database: options.database,
            database_server,
            ephemeral_inactivity_timeout: options.ephemeral_inactivity_timeout,
            tools,
            tailnet_ips: BTreeMap::new(),
            timings: Timings::default(),
            torn_down: false,
            watchdog: None,
            index: Some(paths::index_dir()),
        };
        let underlay = make_underlay(&record)?;
        // The record and the index entry exist before the first namespace does, so that from
        // here on a crash leaves something the next run can find and remove.
        record.save()?;
        registry::index(&record)?;
        // From here the Lab value owns every piece: an error drops it, and Drop removes all
        // there is (a panic too: the value is dropped as it unwinds).
        let mut lab = Lab { hosts: Vec::new(), underlay, record, release, old_server, owned: true, torn_down: Mutex::new(false) };
        {
            let record = &mut lab.record;
            let (run_id, log, lifetime) = (record.run_id.clone(), record.dir.join("holder.log"), record.lifetime);
            record.built.get_mut()?.prepare(&run_id, &log, lifetime)?;
            record.save()?;
        }
        if lab.record.lifetime == Lifetime::WithOwner || options.owner.is_some() {
            lab.record.watchdog = Some(registry::spawn_watchdog(&lab.record)?);
            lab.record.save()?;
        }
        registry::remove_on_interrupt(&lab.record);
        let (timings, ips) = match lab.provision(started) {
            Ok(done) => done,
            Err(e) => {
                if !lab.hosts.is_empty() {
                    say!(
                        "the build of lab {} failed; diagnostics saved in {}",
                        lab.record.run_id,
                        lab.save_diagnostics().display()
                    );
                }
                return Err(e);
            }
        };
        lab.record.timings = timings;
        lab.record.tailnet_ips = ips;
        lab.record.save()?;
        Ok(lab)
    }

    /// Use a lab another process built (`cargo mesh up`); leave it running afterwards.
    pub fn attach(dir_or_id: &str) -> Result<Lab> {
        let dir = if Path::new(dir_or_id).join(registry::RECORD).exists() {
            PathBuf::from(dir_or_id)
        } else {
            paths::labs_dir().join(dir_or_id)
        };
        let record = LabRecord::load(&dir).with_context(|| {
            format!("MESH_LAB={dir_or_id} names no lab: give the folder or run id that `cargo mesh up` printed (see `cargo mesh status`)")
        })?;
        let holder_gone = record.backend()?.gone();
        if record.torn_down || !record.index_entry().exists() || holder_gone {
            bail!("lab {} is no longer running: start a new one with `cargo mesh up`", record.run_id);
        }
        budget::set_backend_scale(record.backend.time_scale());
        let release = record.tools.versions.headscale_release()?;
        let old_server = Mutex::new(old_server_release(&record.tools)?);
        // A service this process (re)starts belongs to the lab, not to this process: it must
        // outlive us, and is stopped with the lab, by its recorded pid.
        Ok(Lab {
            release,
            old_server,
            hosts: make_hosts(&record, Lifetime::Detached)?,
            underlay: make_underlay(&record)?,
            record,
            owned: false,
            torn_down: Mutex::new(false),
        })
    }

    /// Make the network, start headscale, start and register every client, and wait for the
    /// mesh to converge. Returns each phase's time and the clients' tailnet addresses.
    fn provision(&mut self, started: Instant) -> Result<(Timings, BTreeMap<String, Vec<String>>)> {
        let mut timings = Timings::default();
        let phase = Instant::now();
        timings.images = self.make_network()?.as_secs_f64();
        self.hosts = make_hosts(&self.record, self.record.lifetime)?;
        timings.network = phase.elapsed().as_secs_f64() - timings.images;
        self.start_mesh(started, timings)
    }

    /// Start headscale, start and register every client, wait for the mesh to converge.
    fn start_mesh(&self, started: Instant, mut timings: Timings) -> Result<(Timings, BTreeMap<String, Vec<String>>)> {
        crate::panics::inject("build");
        let record = &self.record;
        let spec = &record.spec;
        say!(
            "lab hosts and network up in {:.2}s: subnet A {}, subnet B {} behind NAT",
            timings.network,
            spec.subnet("a").net,
            spec.subnet("b").net
        );

        let phase = Instant::now();
        let pki = pki::issue(&record.run_id, SERVER_NAME, spec.server().addr)?;
        // Kept for clients that join later; only the CA's certificate, never a key.
        std::fs::write(record.dir.join(CA_FILE), &pki.ca_pem)?;
        let headscale = self.headscale();
        if let Some(setup) = &record.policy {
            headscale
                .host
                .write_file(&format!("{}/{}", headscale.host.state_dir(), crate::policy::FILE), setup.text.as_bytes())?;
            say!(
                "headscale runs with {} (policy.mode file); clients: {}",
                setup.name(),
                setup.nodes.iter().map(|(c, o)| format!("{c}={o}")).collect::<Vec<_>>().join(", ")
            );
        }
        let effective = headscale.effective(spec);
        if let Some(path) = &effective.path {
            say!(
                "headscale runs with {path}, {} of its settings replaced by the lab's{}",
                effective.replacements.len(),
                if effective.replacements.is_empty() { "" } else { ":" }
            );
            for r in &effective.replacements {
                say!("  {r}");
            }
            for line in &effective.unhonoured {
                say!("  not honoured: {line}");
            }
        }
        if let Some(programs) = &record.database_server {
            crate::database::Server { host: headscale.host, programs }.start()?;
        }
        headscale.start(spec, &pki.server_cert_pem, &pki.server_key_pem)?;
        let user = headscale.create_user(USER)?;
        let mut users = BTreeMap::new();
        for name in record.policy.iter().flat_map(|p| p.users()) {
            users.insert(name.clone(), headscale.create_user(&name)?);
        }
        timings.headscale_ready = phase.elapsed().as_secs_f64();
        say!("headscale ready in {:.2}s at {}", timings.headscale_ready, spec.server_url());

        let clients = self.client_names();
        crate::fanout::all("tailscaled start", &clients, |name| self.client(name)?.start(&pki.ca_pem))?;
        // One single-use key per client, made while the daemons start up: of the lab's user, or
        // with a policy, of the client's user or tagged with its tag.
        let key_for = |name: &String| -> Result<String> {
            match record.policy.as_ref().map(|p| &p.nodes[name]) {
                None => headscale.preauth_key(user, KEY_EXPIRY),
                Some(crate::policy::Owner::User(u)) => headscale.preauth_key(users[u], KEY_EXPIRY),
                Some(crate::policy::Owner::Tag(t)) => headscale.tagged_preauth_key(user, t, KEY_EXPIRY),
            }
        };
        let keys: Vec<String> = clients.iter().map(key_for).collect::<Result<_>>()?;
        crate::fanout::all("tailscaled wait", &clients, |name| self.client(name)?.await_daemon())?;

        let registration = Instant::now();
        let login_server = spec.server_url();
        let attempts: Vec<(&String, &String)> = clients.iter().zip(&keys).collect();
        let registered = crate::fanout::each("registration", &attempts, |(name, key)| {
            crate::panics::inject("registration");
            self.client(name)?.up(&login_server, key, name)?;
            Ok(registration.elapsed().as_secs_f64())
        });
        for (name, result) in clients.iter().zip(registered) {
            let seconds = result?;
            say!("{name} registered after {seconds:.2}s");
            timings.registered.insert(name.clone(), seconds);
        }
        let addresses = crate::fanout::all("tailnet addresses", &clients, |name| self.client(name)?.ips())?;
        let ips: BTreeMap<String, Vec<String>> = clients.iter().cloned().zip(addresses).collect();
        self.await_mesh_of(&ips, budget::converge())?;
        timings.converged_after_registration = registration.elapsed().as_secs_f64();
        timings.converged_since_start = started.elapsed().as_secs_f64() - timings.images;
        say!(
            "mesh converged {:.2}s after registration ({:.2}s since the lab's start)",
            timings.converged_after_registration,
            timings.converged_since_start
        );
        Ok((timings, ips))
    }

    /// The backend makes the hosts and their network.
    /// Returns how long preparing the hosts' images took (VMs), which is not the lab's time.
    fn make_network(&mut self) -> Result<Duration> {
        let record = &mut self.record;
        let files = etc_files(&record.spec);
        let created = record.built.get_mut()?.create(&record.spec, &record.dir, &record.tools, &files, record.lifetime);
        // The record learns what the backend made (a VM's acceleration, where its programs
        // are) even when something failed, so that the report and teardown know it.
        record.save()?;
        let created = created?;
        if let Some(versions) = created.versions {
            record.tools.versions = versions;
            record.save()?;
            // The hosts' images may carry other versions than this machine's (MESH_IMAGES=nix).
            record.tools.versions.check_window()?;
            self.release = record.tools.versions.headscale_release()?;
        }
        Ok(created.images)
    }

    /// Wait until the mesh is whole: headscale lists every client online, every client sees
    /// every other online, and every client reaches every other's tailnet IPv4.
    pub fn await_mesh(&self, budget: Duration) -> Result<()> {
        self.await_mesh_of(&self.record.tailnet_ips, budget)
    }

    fn await_mesh_of(&self, ips: &BTreeMap<String, Vec<String>>, budget: Duration) -> Result<()> {
        if self.record.policy.is_some() {
            return self.await_policy_mesh(budget);
        }
        let clients = self.client_names();
        poll::until("every client online and reaching every other", budget, || {
            self.headscale_lists_online(&clients)?;
            // Each client's view at once: on VMs every command is an SSH round trip.
            crate::fanout::all("convergence probe", &clients, |name| {
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
                    let ip = ips.get(peer).and_then(|v| ipv4_of(v)).ok_or_else(|| anyhow!("{peer} has no tailnet IPv4"))?;
                    crate::ping::answers(self.host(name)?, ip)
                        .map_err(|e| anyhow!("{name} cannot ping {peer} at {ip}: {e:#}"))?;
                }
                Ok(())
            })?;
            Ok(())
        })
    }

    /// headscale lists every one of `clients`, and online: one observation of a wait.
    fn headscale_lists_online(&self, clients: &[String]) -> Result<()> {
        let nodes = self.headscale().nodes()?;
        for name in clients {
            match nodes.iter().find(|n| &n.given_name == name) {
                Some(n) if n.online => {}
                Some(_) => bail!("headscale lists {name} as offline"),
                None => bail!("headscale does not list {name}"),
            }
        }
        Ok(())
    }

    /// With a policy, who reaches whom is the policy's to say (P7 checks it): the mesh is up
    /// when headscale lists every client online and every peer a client is sent (the policy
    /// hides the others) is online there with its home DERP known.
    fn await_policy_mesh(&self, budget: Duration) -> Result<()> {
        let clients = self.client_names();
        poll::until("every client online, and every peer the policy lets it see online to it", budget, || {
            self.headscale_lists_online(&clients)?;
            crate::fanout::all("convergence probe", &clients, |name| {
                let status = self.client(name)?.status()?;
                for peer in status.peers() {
                    if !peer.online || peer.relay.is_empty() {
                        bail!("{name} sees {} offline or without its home DERP yet", peer.host_name);
                    }
                }
                Ok(())
            })
            .map(|_| ())
        })
    }

    /// Bring a client that joins later into the mesh: start tailscaled, register it with a
    /// fresh single-use key. Returns once it is Running; a [`Joined`] guard makes it leave.
    pub fn join(&self, name: &str) -> Result<Joined<'_>> {
        self.join_with(name, &JoinKey::User)
    }

    /// A fresh single-use pre-auth key of the lab's user, of the kind asked for, that expires
    /// as every client's does.
    pub fn preauth_key(&self, kind: &JoinKey) -> Result<String> {
        let headscale = self.headscale();
        let user = headscale.user_id(USER)?;
        match kind {
            JoinKey::User => headscale.preauth_key(user, KEY_EXPIRY),
            JoinKey::Ephemeral => headscale.ephemeral_preauth_key(user, KEY_EXPIRY),
            JoinKey::Tagged(tag) => headscale.tagged_preauth_key(user, tag, KEY_EXPIRY),
        }
    }

    /// [`Lab::join`] with a pre-auth key of the kind asked for (ephemeral, tagged).
    pub fn join_with(&self, name: &str, kind: &JoinKey) -> Result<Joined<'_>> {
        if !self.record.spec.host(name)?.joins_later {
            bail!("{name} is part of the mesh from the start; only a late client joins");
        }
        let client = self.client(name)?;
        let ca = std::fs::read_to_string(self.record.dir.join(CA_FILE))?;
        let key = self.preauth_key(kind)?;
        let joined = Joined { lab: self, name: name.to_string() };
        client.start(&ca)?;
        client.await_daemon()?;
        client.up(&self.record.spec.server_url(), &key, name)?;
        say!("{name} joined the mesh as {:?}", client.ips()?);
        Ok(joined)
    }

    pub fn host(&self, name: &str) -> Result<&dyn Host> {
        self.record.spec.host(name)?;
        let host = self.hosts.iter().find(|h| h.name() == name);
        host.map(|h| h.as_ref()).ok_or_else(|| anyhow!("{name} was never made: the lab's build stopped before its hosts existed"))
    }

    /// The router and the hosts' links: firewalls, link cuts, captures.
    pub fn underlay(&self) -> &dyn Underlay {
        self.underlay.as_ref()
    }

    pub fn hosts(&self) -> impl Iterator<Item = &dyn Host> {
        self.hosts.iter().map(|h| h.as_ref())
    }

    /// The headscale the server runs now: the run's, or an upgrade rehearsal's older one until
    /// [`Lab::server_upgraded`].
    pub fn headscale(&self) -> Headscale<'_> {
        let server = self.record.spec.server().name.clone();
        let tools = &self.record.tools;
        let mut old = self.old_server.lock().unwrap();
        // Another process (the rehearsal's test) may have upgraded it since: its record says so.
        if old.is_some() && LabRecord::load(&self.record.dir).is_ok_and(|r| r.tools.upgrade_from.is_some_and(|f| f.upgraded)) {
            *old = None;
        }
        let (path, release) = match (*old, &tools.upgrade_from) {
            (Some(row), Some(from)) => (&from.headscale, row),
            _ => (&tools.headscale, self.release),
        };
        let host = self.host(&server).expect("the server is a host");
        let policy_path = self.record.policy.as_ref().map(|_| format!("{}/{}", host.state_dir(), crate::policy::FILE));
        Headscale {
            host,
            program: self.program(path),
            release,
            policy_path,
            user_config: self.record.headscale_config.as_ref(),
            database: self.record.database,
            ephemeral_inactivity_timeout: self.record.ephemeral_inactivity_timeout,
        }
    }

    /// The database headscale runs on, with its server's version where it has one.
    pub fn database_description(&self) -> String {
        match &self.record.database_server {
            Some(programs) => programs.version.clone(),
            None => self.record.database.title().into(),
        }
    }

    /// What the scenarios depend on (base domain, prefixes, MagicDNS, extra records,
    /// nameservers), as the configuration headscale runs with says.
    pub fn settings(&self) -> crate::userconfig::Settings {
        let headscale = self.headscale();
        crate::userconfig::Settings::of_release(&headscale.config(&self.record.spec), headscale.release.node_settings)
    }

    /// The configuration headscale runs with, and what of the user's was replaced.
    pub fn effective_config(&self) -> crate::userconfig::Effective {
        self.headscale().effective(&self.record.spec)
    }

    /// Why a MagicDNS name check does not apply to this lab, if it does not.
    pub fn magic_dns_off(&self) -> Option<String> {
        self.settings().magic_dns_off(self.record.headscale_config.as_ref().map(|c| c.path.as_str()))
    }

    /// The server's older headscale has been replaced by the run's: from now on
    /// [`Lab::headscale`] is the run's (also for processes that attach later: the record says so).
    pub fn server_upgraded(&self) -> Result<()> {
        *self.old_server.lock().unwrap() = None;
        let mut record = self.record.clone();
        if let Some(from) = record.tools.upgrade_from.as_mut() {
            from.upgraded = true;
        }
        record.save()
    }

    pub fn client(&self, name: &str) -> Result<Tailscale<'_>> {
        if self.record.spec.host(name)?.role != Role::Client {
            bail!("{name} is not a client of this lab");
        }
        let (tailscale, tailscaled) = self.record.tools.client_programs(name);
        Ok(Tailscale { host: self.host(name)?, tailscale: self.program(tailscale), tailscaled: self.program(tailscaled) })
    }

    /// Each client's node key, as it reports it: a client that re-registers gets a new one.
    pub fn node_keys(&self) -> Result<BTreeMap<String, String>> {
        let mut keys = BTreeMap::new();
        for name in self.client_names() {
            let me = self.client(&name)?.status()?.me.ok_or_else(|| anyhow!("{name}'s status has no Self"))?;
            keys.insert(name, me.public_key);
        }
        Ok(keys)
    }

    pub fn client_names(&self) -> Vec<String> {
        self.record.spec.clients().map(|c| c.name.clone()).collect()
    }

    /// Every ordered pair of the mesh's clients.
    pub fn client_pairs(&self) -> Vec<(String, String)> {
        let clients = self.client_names();
        clients.iter().flat_map(|a| clients.iter().filter(move |b| *b != a).map(move |b| (a.clone(), b.clone()))).collect()
    }

    /// One ICMP ping from client `from` to client `to`'s tailnet IPv4, answered within a second.
    pub fn reaches(&self, from: &str, to: &str) -> Result<()> {
        let ip = self.tailnet_ipv4(to)?;
        crate::ping::answers(self.host(from)?, &ip).with_context(|| format!("{from} → {to} at {ip}"))
    }

    /// A client's tailnet IPv4 address as it reports it now (late clients are not recorded).
    pub fn tailnet_ipv4_of_live(&self, client: &str) -> Result<String> {
        let ips = self.client(client)?.ips()?;
        ipv4_of(&ips).cloned().ok_or_else(|| anyhow!("{client} reports no tailnet IPv4"))
    }

    /// A client's tailnet IPv4 address.
    pub fn tailnet_ipv4(&self, client: &str) -> Result<String> {
        ipv4_of(self.tailnet_ips(client)?).cloned().ok_or_else(|| anyhow!("{client} has no tailnet IPv4"))
    }

    pub fn tailnet_ips(&self, client: &str) -> Result<&[String]> {
        self.record
            .tailnet_ips
            .get(client)
            .map(|v| v.as_slice())
            .ok_or_else(|| anyhow!("{client} has no tailnet addresses recorded"))
    }

    /// The argv of an interactive shell in `host`, with the lab's programs on its PATH.
    pub fn shell_argv(&self, host: &str) -> Result<Vec<String>> {
        let tools = &self.record.tools;
        let (tailscale, tailscaled) = tools.client_programs(host);
        let mut dirs: Vec<String> = [tools.headscale.as_path(), tailscale, tailscaled]
            .iter()
            .filter_map(|p| p.parent().map(|d| d.display().to_string()))
            .collect();
        dirs.dedup();
        Ok(self.host(host)?.shell_argv(&dirs.join(":")))
    }

    /// Where a program is, as the hosts see it: netns hosts share this machine's files; VMs
    /// have theirs installed in their image.
    fn program(&self, path: &Path) -> String {
        match self.record.backend() {
            Ok(backend) => backend.program_path(path),
            Err(_) => path.display().to_string(),
        }
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
        if self.host(&self.record.spec.server().name).is_ok() {
            save("headscale-nodes.json", self.headscale().cli(&["nodes", "list", "-o", "json"]));
        }
        for name in self.client_names() {
            if let Ok(client) = self.client(&name) {
                save(&format!("{name}-status.json"), client.cli(&["status", "--json"]));
            }
        }
        for host in self.hosts() {
            save(&format!("{}-ip.txt", host.name()), host.run(&["sh", "-c", "ip addr; ip route; ip -6 route"]));
            if let Some(journal) = host.system_log() {
                let _ = std::fs::write(dir.join(format!("{}-journal.txt", host.name())), journal);
            }
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
        // Clients first, so none logs a storm of errors about a vanished server; each group at
        // once (a VM's stop is an SSH round trip or two, and keeps its log). Only the hosts that
        // were made (a build can fail before they are), and a stop that fails or panics is
        // passed over: the removal below takes everything, stopped or not.
        let server = &self.record.spec.server().name;
        let clients: Vec<&dyn Host> = self.hosts.iter().map(|h| h.as_ref()).filter(|h| h.name() != server).collect();
        let _ = crate::fanout::each("stop", &clients, |host| host.stop_service(crate::tailscale::SERVICE));
        if let Ok(server) = self.host(server) {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| server.stop_service(crate::headscale::SERVICE)));
        }
        registry::remove(&self.record)?;
        say!("lab {} torn down; its logs stay in {}", self.record.run_id, self.record.dir.display());
        Ok(())
    }

    /// Pause every host (a VM lab's domains are suspended) or let them run again: while a
    /// disruptive scenario has a lab of its own, the shared lab's VMs take no CPU from it.
    /// Hosts of a netns lab are processes that sleep when idle: nothing to do.
    pub fn set_paused(&self, paused: bool) -> Result<()> {
        self.record.backend()?.set_paused(paused)
    }

    /// Why a latency limit does not apply to this lab, if it does not: its hosts are VMs
    /// under QEMU's TCG emulation, where every packet's encryption runs on an emulated CPU, so
    /// a round trip measures the emulator rather than the mesh (5–25 ms on a quiet machine,
    /// past 50 ms on a busy one). `None` where hosts run at native speed (netns, KVM).
    pub fn emulated(&self) -> Option<String> {
        self.record.backend().ok()?.emulated()
    }

    pub fn owned(&self) -> bool {
        self.owned
    }

    /// Let the lab outlive this value (`cargo mesh up`): it is now `cargo mesh down`'s to remove.
    pub fn release(mut self) -> LabRecord {
        self.owned = false;
        registry::forget_on_interrupt(&self.record);
        self.record.clone()
    }
}

/// The pre-auth key a client registers with: the lab user's, an ephemeral one, or one whose
/// node is tagged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinKey {
    User,
    Ephemeral,
    Tagged(String),
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
        // Its node, under its first name or one a scenario gave it (`client-4-renamed`).
        let ours = |n: &crate::headscale::Node| {
            n.name == self.name || n.given_name == self.name || n.given_name.starts_with(&format!("{}-", self.name))
        };
        for node in headscale.nodes()?.iter().filter(|n| ours(n)) {
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

/// What the older headscale of an upgrade rehearsal's server can do, while it still runs it.
fn old_server_release(tools: &Tools) -> Result<Option<&'static HeadscaleRelease>> {
    match &tools.upgrade_from {
        Some(from) if !from.upgraded => {
            let version = from.version.parse().map_err(|_| anyhow!("headscale reports {:?}", from.version))?;
            Ok(Some(crate::releases::headscale(version)?))
        }
        _ => Ok(None),
    }
}

/// The IPv4 address among a node's tailnet addresses.
fn ipv4_of(ips: &[String]) -> Option<&String> {
    ips.iter().find(|ip| !ip.contains(':'))
}

fn make_underlay(record: &LabRecord) -> Result<Box<dyn Underlay>> {
    Ok(record.backend()?.underlay(&record.spec, &record.dir))
}

fn make_hosts(record: &LabRecord, lifetime: Lifetime) -> Result<Vec<Box<dyn Host>>> {
    record.backend()?.hosts(&record.spec, &record.dir, lifetime)
}

/// The files every host's /etc starts with: the server's name resolves by the hosts file, and
/// there is no resolver until tailscale's MagicDNS takes over resolv.conf.
fn etc_files(spec: &LabSpec) -> Vec<(&'static str, String)> {
    let server = spec.server();
    let mut hosts = String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    hosts += &format!("{}\t{SERVER_NAME}\n", server.addr);
    vec![
        ("hosts", hosts),
        (
            "resolv.conf",
            "# mesh lab host: no upstream resolver; tailscale's MagicDNS manages this file\nnameserver 127.0.0.1\n".into(),
        ),
    ]
}
