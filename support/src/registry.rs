//! Where labs are written down, so that anyone can find and remove one: its record
//! (`lab.json` in its folder), the index (root's machine-wide in /run, a normal user's own),
//! removal from a record alone, reclaiming labs whose owner died, and removal on Ctrl-C or
//! SIGTERM.

use crate::backend::netns;
use crate::backend::{BackendKind, Built, LabBackend};
use crate::process::{Lifetime, ProcessId};
use crate::spec::LabSpec;
use crate::tools::Tools;
use crate::{paths, say};
use anyhow::{Context, Result};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub use crate::backend::RUN_ID_LEN;
/// How many finished labs' folders (logs, configs) are kept under target/.
const KEEP_FINISHED: usize = 10;
pub(crate) const RECORD: &str = "lab.json";
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
    /// The ACL policy the lab runs with and each client's user or tag (P7's lab).
    #[serde(default)]
    pub policy: Option<crate::policy::PolicySetup>,
    /// The user's headscale configuration (`MESH_HEADSCALE_CONFIG`) the lab runs with.
    #[serde(default)]
    pub headscale_config: Option<crate::userconfig::UserConfig>,
    /// The database headscale runs on.
    #[serde(default)]
    pub database: crate::database::Database,
    /// Its server's programs, found as the lab was built (PostgreSQL's; `None` for SQLite).
    #[serde(default)]
    pub database_server: Option<crate::database::Programs>,
    /// The ephemeral inactivity timeout of the lab's configuration, when not the default
    /// (the lifecycle lab's short one).
    #[serde(default)]
    pub ephemeral_inactivity_timeout: Option<std::time::Duration>,
    /// What the backend built (its namespaces, or VMs and networks): flattened, so `lab.json`
    /// has a `netns` or a `libvirt` key.
    #[serde(flatten)]
    pub built: Built,
    /// Client name → its tailnet addresses, IPv4 first.
    pub tailnet_ips: BTreeMap<String, Vec<String>>,
    pub timings: Timings,
    pub torn_down: bool,
    /// The process that removes the lab if its owner dies without doing so.
    #[serde(default)]
    pub watchdog: Option<ProcessId>,
    /// The index folder the lab is listed in (`None` in records older than normal-user labs:
    /// root's, /run/mesh-lab).
    #[serde(default)]
    pub index: Option<PathBuf>,
}

/// How long each phase of building the lab took, in seconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Timings {
    /// Preparing the VMs' images (a first run builds them); not counted in the lab's times.
    #[serde(default)]
    pub images: f64,
    pub network: f64,
    pub headscale_ready: f64,
    /// Client → seconds from the start of registration until its `tailscale up` returned.
    pub registered: BTreeMap<String, f64>,
    /// From the start of registration until every client reaches every other (SC-001).
    pub converged_after_registration: f64,
    /// From the lab's start (its programs and images ready) until the mesh converged.
    pub converged_since_start: f64,
}

impl LabRecord {
    /// The backend that built this lab, to ask it for anything.
    pub fn backend(&self) -> Result<&dyn LabBackend> {
        self.built.get().with_context(|| format!("lab {}", self.run_id))
    }

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

    /// Its entry in the index: a symlink named by its run id, to its folder.
    pub fn index_entry(&self) -> PathBuf {
        self.index.clone().unwrap_or_else(|| PathBuf::from(paths::ROOT_INDEX)).join(&self.run_id)
    }

    /// Nobody will remove this lab if we don't: its owner is gone, and the lab was to go with
    /// it (built to die with its builder, or to live until another process exits).
    fn abandoned(&self) -> bool {
        !self.torn_down && (self.lifetime == Lifetime::WithOwner || self.watchdog.is_some()) && !self.owner.alive()
    }
}

/// A run id no lab on this machine has, with its new, empty folder: made by creating the
/// folder, which fails if it exists, and checked against the namespaces present.
pub(crate) fn claim_run_id() -> Result<(String, PathBuf)> {
    let labs = ensure_labs_dir()?;
    // Ids in use: root's namespaces, the labs in user namespaces on this machine, the index.
    let mut in_use: Vec<String> = netns::namespaces_of_this_tool().into_keys().collect();
    in_use.extend(netns::userns::unrecorded(&[], None).into_iter().map(|(id, _)| id));
    in_use.extend(indexed().into_iter().map(|r| r.run_id));
    for _ in 0..16 {
        let id = new_run_id()?;
        let taken = in_use.contains(&id);
        let dir = labs.join(&id);
        if !taken && std::fs::create_dir(&dir).is_ok() {
            return Ok((id, dir));
        }
    }
    anyhow::bail!("could not find a free run id in {}: remove old labs' folders", labs.display())
}

/// The folder labs are kept in, made if need be and checked writable.
pub(crate) fn ensure_labs_dir() -> Result<PathBuf> {
    let labs = paths::labs_dir();
    std::fs::create_dir_all(&labs).and_then(|_| tempfile_probe(&labs)).with_context(|| {
        format!("the labs' folder {} is not writable: set MESH_STATE_DIR to a folder you can write", labs.display())
    })?;
    Ok(labs)
}

/// Whether files can be made in `dir` (a folder may exist and still be someone else's).
fn tempfile_probe(dir: &Path) -> std::io::Result<()> {
    // Unique to the call: two threads of one process probe at once (tests in parallel).
    static PROBES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = PROBES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let probe = dir.join(format!(".probe-{}-{n}", std::process::id()));
    std::fs::write(&probe, b"")?;
    std::fs::remove_file(probe)
}

fn new_run_id() -> Result<String> {
    let mut bytes = [0u8; RUN_ID_LEN / 2];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Add the lab to its index (the folder its record names).
pub(crate) fn index(record: &LabRecord) -> Result<()> {
    let dir = paths::ensure_index_dir()?;
    let link = record.index_entry();
    if link.parent() != Some(dir.as_path()) {
        anyhow::bail!("lab {} names the index {}, not this user's {}", record.run_id, link.display(), dir.display());
    }
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&record.dir, &link).with_context(|| format!("indexing the lab at {}", link.display()))
}

/// Labs this process is building or owns: what Ctrl-C or SIGTERM must remove before exiting.
static OWNED: Mutex<Vec<LabRecord>> = Mutex::new(Vec::new());

pub(crate) fn remove_on_interrupt(record: &LabRecord) {
    static HANDLER: std::sync::Once = std::sync::Once::new();
    OWNED.lock().unwrap().push(record.clone());
    HANDLER.call_once(|| {
        let installed = ctrlc::set_handler(|| {
            let owned: Vec<LabRecord> = OWNED.lock().map(|o| o.clone()).unwrap_or_default();
            for record in owned {
                say!("interrupted: removing lab {}", record.run_id);
                if let Err(e) = remove_all_but_watchdog(&record) {
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

/// Start the lab's watchdog: a small process outside ours that waits for the owner to exit
/// and then removes what is left (after SIGKILL nothing in-process runs). A complete teardown
/// stops it. Its output goes to `watchdog.log` in the lab's folder.
pub(crate) fn spawn_watchdog(record: &LabRecord) -> Result<ProcessId> {
    let script = watchdog_script(record)?;
    let log = std::fs::File::create(record.dir.join("watchdog.log"))?;
    let mut cmd = std::process::Command::new("sh");
    cmd.args(["-c", &script]).stdin(std::process::Stdio::null()).stdout(log.try_clone()?).stderr(log);
    let child = crate::process::spawn_service(cmd, Lifetime::Detached)?;
    ProcessId::of(child.id()).context("the watchdog exited at once")
}

/// Wait for the owner to exit, then remove the lab by its backend's removal script (run in a
/// subshell of its own) and drop its index entry.
fn watchdog_script(record: &LabRecord) -> Result<String> {
    let quote = |p: &Path| crate::exec::display_argv(&[&p.display().to_string()]);
    let owner = record.owner.pid;
    let entry = record.index_entry();
    Ok(format!(
        "tail --pid={owner} -f /dev/null\n\
         echo \"owner {owner} gone at $(date -u +%FT%TZ): removing its lab\"\n\
         (\n{removal})\n\
         rm -f {entry}\n\
         rmdir {index_dir} 2>/dev/null\n\
         echo done\n",
        removal = removal_script(record)?,
        entry = quote(&entry),
        index_dir = quote(entry.parent().unwrap_or(Path::new("/"))),
    ))
}

/// The backend's removal of the lab, as a shell script.
fn removal_script(record: &LabRecord) -> Result<String> {
    Ok(record.backend()?.removal_script(&record.dir))
}

fn stop_watchdog(record: &LabRecord) {
    if let Some(w) = record.watchdog.filter(ProcessId::alive) {
        // It leads a process group of its own (its `tail` included): end all of it.
        let _ = killpg(Pid::from_raw(w.pid as i32), Signal::SIGKILL);
        w.terminate(crate::budget::stop());
    }
}

/// This process no longer removes the lab on an interrupt (it was handed over, or removed).
pub(crate) fn forget_on_interrupt(record: &LabRecord) {
    if let Ok(mut owned) = OWNED.lock() {
        owned.retain(|r| r.run_id != record.run_id);
    }
}

/// Remove a lab's every piece, from its record alone, and drop it from the index.
pub fn remove(record: &LabRecord) -> Result<()> {
    remove_all_but_watchdog(record)?;
    // Only once all is gone: while anything is left, the watchdog is what would remove it.
    stop_watchdog(record);
    Ok(())
}

/// [`remove`], leaving the watchdog to run its own sweep once the owner has exited: what an
/// interrupted owner does, since its other threads may still be making pieces meanwhile.
fn remove_all_but_watchdog(record: &LabRecord) -> Result<()> {
    forget_on_interrupt(record);
    record.backend()?.teardown(&record.dir)?;
    let mut done = record.clone();
    done.torn_down = true;
    let _ = done.save();
    let entry = record.index_entry();
    let _ = std::fs::remove_file(&entry);
    if let Some(dir) = entry.parent() {
        let _ = std::fs::remove_dir(dir); // only if empty: nothing of ours stays in /run or /tmp
    }
    prune_finished();
    Ok(())
}

/// Every lab in this user's index, by record.
pub fn indexed() -> Vec<LabRecord> {
    paths::index_dirs().iter().flat_map(|d| records_in(d)).collect()
}

/// Labs of normal users on this machine (for root's `cargo mesh status`): read, never acted on
/// from their records, which are theirs to write.
pub fn indexed_by_other_users() -> Vec<LabRecord> {
    if !crate::prereq::is_root() {
        return Vec::new();
    }
    paths::other_users_index_dirs().iter().flat_map(|d| records_in(d)).collect()
}

fn records_in(index: &Path) -> Vec<LabRecord> {
    let Ok(entries) = std::fs::read_dir(index) else { return Vec::new() };
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
    // Every run the index lists, also one whose record this version cannot read (a lab of
    // another version of the tool, running at the same time): its namespaces are not unrecorded.
    let known: Vec<String> = paths::index_dirs()
        .iter()
        .flat_map(|d| std::fs::read_dir(d).into_iter().flatten().flatten())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    removed.extend(remove_unrecorded_namespaces(&known));
    // A normal user's own holders only: another user's lab is listed in that user's index.
    removed.extend(remove_unrecorded_holders(&known, Some(nix::unistd::geteuid().as_raw())));
    removed
}

/// Labs in user namespaces whose run has no live record (of `uid`, or of every user when
/// `None`, for root's `cargo mesh down --all`): kill their holders, and every process and
/// namespace of theirs goes with them. Root also drops them from their users' indexes.
pub fn remove_unrecorded_holders(known: &[String], uid: Option<u32>) -> Vec<String> {
    let mut removed = Vec::new();
    for (run_id, holder) in netns::userns::unrecorded(known, uid) {
        say!("removing lab {run_id} in a user namespace (holder {}), which no record of yours accounts for", holder.unshare.pid);
        match holder.stop() {
            Ok(()) => removed.push(run_id.clone()),
            Err(e) => say!("could not remove lab {run_id}: {e:#}"),
        }
        if uid.is_none() {
            for dir in paths::other_users_index_dirs() {
                if std::fs::remove_file(dir.join(&run_id)).is_ok() {
                    let _ = std::fs::remove_dir(&dir); // only if empty
                }
            }
        }
    }
    removed
}

pub use crate::backend::seam::remove_unrecorded_vms;

/// Namespaces named like ours whose run has no live record: remove them with whatever runs in
/// them. Root's alone (a normal user's labs have no names on the machine).
pub fn remove_unrecorded_namespaces(known: &[String]) -> Vec<String> {
    let mut removed = Vec::new();
    if !crate::prereq::is_root() {
        return removed;
    }
    for (run_id, namespaces) in netns::namespaces_of_this_tool() {
        if known.contains(&run_id) {
            continue;
        }
        let record = netns::NetnsRecord {
            router: namespaces.iter().find(|n| n.ends_with("-router")).cloned().unwrap_or_default(),
            hosts: namespaces
                .iter()
                .filter(|n| !n.ends_with("-router"))
                .map(|n| (n.trim_start_matches(&format!("{}{run_id}-", netns::NS_PREFIX)).to_string(), n.clone()))
                .collect(),
            // A LAN host's namespace is removed as a host's would be (it has no pinned mounts).
            lan: Default::default(),
            ns_dir: paths::labs_dir().join(&run_id).join("ns"),
            holder: None,
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
        // Finished: torn down, or no longer indexed (its watchdog removed it).
        .filter(|p| LabRecord::load(p).map(|r| r.torn_down || !r.index_entry().exists()).unwrap_or(false))
        .filter_map(|p| Some((std::fs::metadata(p.join(RECORD)).ok()?.modified().ok()?, p)))
        .collect();
    finished.sort();
    let excess = finished.len().saturating_sub(KEEP_FINISHED);
    for (_, dir) in finished.into_iter().take(excess) {
        remove_tree(&dir);
    }
}

/// Delete a folder and everything in it. A normal user's lab leaves overlayfs work folders
/// of mode 000 (made by its root in the user namespace, which is this user): opened up first.
fn remove_tree(dir: &Path) {
    if std::fs::remove_dir_all(dir).is_ok() {
        return;
    }
    fn open_up(dir: &Path) {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                open_up(&entry.path());
            }
        }
    }
    open_up(dir);
    let _ = std::fs::remove_dir_all(dir);
}
