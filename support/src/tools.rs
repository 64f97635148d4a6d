//! The systems under test: the one place that names their pinned versions, and how the
//! harness gets each program: a binary named by an environment variable, one on PATH, the
//! per-version cache under `target/`, or a `go install` of that release into the cache. A run
//! may ask for another release by number (`MESH_HEADSCALE_VERSION`, `MESH_TAILSCALE_VERSION`):
//! it is built the same way, into its own cache folder.

use crate::releases::{self, HeadscaleRelease};
use crate::version::Version;
use crate::{budget, exec, paths};
use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// A Go module and the commands it provides.
pub struct Module {
    /// What users call it: `headscale`, `tailscale`.
    pub name: &'static str,
    pub module: &'static str,
    /// The release a run uses unless it asks for another.
    pub pin: Version,
    pub commands: &'static [&'static str],
    /// Linker flags a release build of this module sets, with `{v}` for the bare version.
    pub ldflags: &'static str,
    /// The variable that asks for another release: `MESH_HEADSCALE_VERSION`.
    pub version_var: &'static str,
}

/// headscale: the newest release the Go module proxy serves here (2026-11).
/// Its version comes from the module version `go install` records.
pub const HEADSCALE: Module = Module {
    name: "headscale",
    module: "github.com/juanfont/headscale",
    pin: Version::new(0, 29, 3),
    commands: &["headscale"],
    ldflags: "",
    version_var: "MESH_HEADSCALE_VERSION",
};

/// tailscale: the newest v1.98 patch release. v1.98 is the newest client headscale v0.29.3's
/// capability table names (hscontrol/capver), so it sits inside its supported window.
/// Its version is stamped by the linker, as tailscale's own build_dist.sh does; without the
/// stamp it reports `1.98.10-ERR-BuildInfo`. (Every release from 1.80 to 1.104 has the same
/// two stamps in `tailscale.com/version`.)
pub const TAILSCALE: Module = Module {
    name: "tailscale",
    module: "tailscale.com",
    pin: Version::new(1, 98, 10),
    commands: &["tailscale", "tailscaled"],
    ldflags: "-X tailscale.com/version.longStamp={v} -X tailscale.com/version.shortStamp={v}",
    version_var: "MESH_TAILSCALE_VERSION",
};

/// One release of a module: what a run uses, and what is built.
#[derive(Clone, Copy)]
pub struct Release {
    pub module: &'static Module,
    pub version: Version,
}

impl Module {
    /// The release this run asks for: its variable (`--headscale-version` sets it), or the pin.
    pub fn wanted(&'static self) -> Result<Release> {
        let version = crate::settings::version(self.version_var)?.unwrap_or(self.pin);
        Ok(Release { module: self, version })
    }
}

impl Release {
    /// `headscale 0.27.1`.
    pub fn describe(&self) -> String {
        format!("{} {}", self.module.name, self.version)
    }

    fn is_pin(&self) -> bool {
        self.version == self.module.pin
    }
}

/// The programs one run uses, and the versions they report themselves.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Tools {
    pub headscale: PathBuf,
    /// The clients' tailscale and tailscaled, but for those that run their own.
    pub tailscale: PathBuf,
    pub tailscaled: PathBuf,
    /// Clients that run a release of their own (`MESH_CLIENT_VERSIONS`), by host.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub clients: BTreeMap<String, ClientTools>,
    /// The headscale the server starts at, to be upgraded to `headscale` in place (the upgrade
    /// rehearsal's lab).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgrade_from: Option<UpgradeFrom>,
    pub versions: Versions,
}

/// The older headscale an upgrade rehearsal's server starts at.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UpgradeFrom {
    pub headscale: PathBuf,
    /// As it reports itself.
    pub version: String,
    /// The server has been upgraded: it runs `Tools::headscale` now.
    pub upgraded: bool,
}

/// One client's own tailscale and tailscaled.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClientTools {
    pub tailscale: PathBuf,
    pub tailscaled: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Versions {
    pub headscale: String,
    pub tailscale: String,
    pub tailscaled: String,
    /// The tailscaled each client of its own release reports, by host.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub clients: BTreeMap<String, String>,
    /// The headscale the server ran before it was upgraded to `headscale` (P6's lab).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgraded_from: Option<String>,
}

impl Versions {
    /// What the headscale that runs can do, by the version it reports (the release table).
    pub fn headscale_release(&self) -> Result<&'static HeadscaleRelease> {
        releases::headscale(reported("headscale", &self.headscale)?)
    }

    /// The running headscale lets every running tailscale in (its supported client window).
    pub fn check_window(&self) -> Result<()> {
        let server = reported("headscale", &self.headscale)?;
        let row = releases::headscale(server)?;
        row.check_client(server, reported("tailscale", &self.tailscale)?, "")?;
        for (host, version) in &self.clients {
            row.check_client(server, reported("tailscale", version)?, &format!("{host}'s "))?;
        }
        Ok(())
    }

    /// The tailscale release `client` runs.
    pub fn client(&self, client: &str) -> &str {
        self.clients.get(client).unwrap_or(&self.tailscale)
    }

    /// `tailscale 1.98.10`, or with clients of their own: `tailscale 1.98.10 (client-1 1.80.3,
    /// client-3 1.90.9)`.
    pub fn describe_tailscale(&self) -> String {
        if self.clients.is_empty() {
            return format!("tailscale {}", self.tailscale);
        }
        let own: Vec<String> = self.clients.iter().map(|(host, v)| format!("{host} {v}")).collect();
        format!("tailscale {} ({})", self.tailscale, own.join(", "))
    }
}

/// A version a program reported, as a release number.
fn reported(program: &str, version: &str) -> Result<Version> {
    version.parse().map_err(|_| {
        anyhow!(
            "{program} reports its version as {version:?}, which is not a release number: the harness reads what a \
             release can do from its number (support/src/releases.rs); use a release build"
        )
    })
}

impl Tools {
    /// Find or build each program, at the release the run asks for (the pins by default).
    /// A headscale the harness has no row for, or a client outside its window, is refused
    /// before anything is built.
    pub fn resolve() -> Result<Tools> {
        let (headscale, tailscale) = (HEADSCALE.wanted()?, TAILSCALE.wanted()?);
        let own: BTreeMap<String, Release> = crate::settings::client_versions()?
            .into_iter()
            .map(|(host, version)| (host, Release { module: &TAILSCALE, version }))
            .collect();
        let row = releases::headscale(headscale.version)?;
        row.check_client(headscale.version, tailscale.version, "")?;
        for (host, release) in &own {
            row.check_client(headscale.version, release.version, &format!("{host}'s "))?;
        }
        let hs = locate("headscale", &headscale)?;
        let ts = locate("tailscale", &tailscale)?;
        let tsd = locate("tailscaled", &tailscale)?;
        let mut tools = Tools {
            versions: Versions {
                headscale: hs.1,
                tailscale: ts.1,
                tailscaled: tsd.1,
                clients: BTreeMap::new(),
                upgraded_from: None,
            },
            headscale: hs.0,
            tailscale: ts.0,
            tailscaled: tsd.0,
            clients: BTreeMap::new(),
            upgrade_from: None,
        };
        // A client's own release is always the harness's build of it (MESH_*_BIN and PATH name
        // the lab's tailscale, not a client's).
        for (host, release) in &own {
            let (tailscale, version) = cached_or_built("tailscale", release)?;
            let (tailscaled, _) = cached_or_built("tailscaled", release)?;
            tools.clients.insert(host.clone(), ClientTools { tailscale, tailscaled });
            tools.versions.clients.insert(host.clone(), version);
        }
        // Binaries given by path may be of other versions (MESH_ALLOW_VERSION_MISMATCH): what
        // they report is what runs, so the table and the window are asked again of that.
        tools.versions.check_window()?;
        let server = reported("headscale", &tools.versions.headscale)?;
        let row = tools.versions.headscale_release()?;
        let mut clients: Vec<Version> = vec![reported("tailscale", &tools.versions.tailscale)?];
        for v in tools.versions.clients.values() {
            clients.push(reported("tailscale", v)?);
        }
        clients.sort();
        clients.dedup();
        for client in clients.into_iter().filter(|c| row.newer_than_named(*c)) {
            crate::say!(
                "note: tailscale {client} is newer than any client headscale {server}'s capability table names (up to {}.{}); \
                 headscale lets newer clients in",
                row.newest_client_named.major,
                row.newest_client_named.minor
            );
        }
        Ok(tools)
    }

    /// Add the older headscale an upgrade rehearsal's server starts at (always the harness's
    /// build of it: `MESH_HEADSCALE_BIN` and PATH name the run's headscale). It must let every
    /// client in too.
    pub fn add_upgrade_from(&mut self, from: Version) -> Result<()> {
        let (headscale, version) = cached_or_built("headscale", &Release { module: &HEADSCALE, version: from })?;
        let reported_from = reported("headscale", &version)?;
        let row = releases::headscale(reported_from)?;
        row.check_client(reported_from, reported("tailscale", &self.versions.tailscale)?, "")?;
        for (host, v) in &self.versions.clients {
            row.check_client(reported_from, reported("tailscale", v)?, &format!("{host}'s "))?;
        }
        self.versions.upgraded_from = Some(version.clone());
        self.upgrade_from = Some(UpgradeFrom { headscale, version, upgraded: false });
        Ok(())
    }

    /// `client`'s tailscale and tailscaled: its own release's, or the lab's.
    pub fn client_programs(&self, client: &str) -> (&Path, &Path) {
        match self.clients.get(client) {
            Some(own) => (&own.tailscale, &own.tailscaled),
            None => (&self.tailscale, &self.tailscaled),
        }
    }
}

/// `MESH_HEADSCALE_BIN`, `MESH_TAILSCALE_BIN`, `MESH_TAILSCALED_BIN`.
pub fn env_var(program: &str) -> String {
    format!("MESH_{}_BIN", program.to_uppercase())
}

fn locate(program: &str, release: &Release) -> Result<(PathBuf, String)> {
    let want = release.version.to_string();
    let var = env_var(program);
    // What a mismatch is measured against: the release asked for by number, or the pin.
    let asked = if release.is_pin() {
        format!("this suite pins {want}")
    } else {
        format!("{}={want} asks for {want}", release.module.version_var)
    };
    if let Ok(given) = std::env::var(&var) {
        let path = PathBuf::from(&given);
        if !path.is_file() {
            bail!("{var}={given}: no such file; point it at a {program} {want} binary, or unset it to let the harness build one");
        }
        let have = version_of(program, &path).with_context(|| format!("{var}={given}"))?;
        if have != want && !crate::settings::on("MESH_ALLOW_VERSION_MISMATCH") {
            bail!(
                "{var}={given} is {program} {have}, but {asked}: unset {var} to let the harness build {want}, or set MESH_ALLOW_VERSION_MISMATCH=1 to test {have} anyway"
            );
        }
        return Ok((path, have));
    }
    if let Some(path) = on_path(program) {
        match version_of(program, &path) {
            Ok(have) if have == want => return Ok((path, have)),
            Ok(have) => crate::say!(
                "warning: {} is {program} {have}, not the {want} this run asks for; building or reusing {want} instead",
                path.display()
            ),
            Err(e) => crate::say!("warning: {} does not report its version ({e:#}); ignoring it", path.display()),
        }
    }
    cached_or_built(program, release)
}

/// Every program of `release` from the tools' cache, built into it first if it is not there;
/// the version they report. (`cargo mesh matrix` builds each release it needs this way before
/// its first lab starts.)
pub fn ensure_built(release: &Release) -> Result<String> {
    let mut reported = String::new();
    for program in release.module.commands {
        reported = cached_or_built(program, release)?.1;
    }
    Ok(reported)
}

/// `program` of `release` from the tools' cache, built into it first if it is not there.
fn cached_or_built(program: &str, release: &Release) -> Result<(PathBuf, String)> {
    let want = release.version.to_string();
    let cached = cache_dir(release).join(program);
    if !cached.exists() {
        // Test processes start side by side (nextest): one builds, the others wait for it.
        let lock = BuildLock::take(release)?;
        if !cached.exists() {
            if let Err(e) = go_install(release) {
                if e.is::<NotServed>() {
                    lock.discard();
                }
                return Err(e);
            }
        }
    }
    let have = version_of(program, &cached)?;
    if have != want {
        bail!(
            "the cached {} reports {have}, not {want}: delete {} and run again",
            cached.display(),
            cache_dir(release).display()
        );
    }
    Ok((cached, have))
}

/// `v1.98.10` and `1.98.10` are the same version.
fn bare(v: &str) -> &str {
    v.trim().trim_start_matches('v')
}

fn on_path(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| std::env::split_paths(&p).map(|d| d.join(program)).find(|f| f.is_file()))
}

/// The version a program reports itself, from the first line of its own output.
/// headscale says `headscale version v0.29.3`; tailscale and tailscaled say `1.98.10`.
pub fn version_of(program: &str, path: &Path) -> Result<String> {
    let flag = if program == "tailscaled" { "--version" } else { "version" };
    let shown = path.display().to_string();
    let out = exec::local(&[&shown, flag], budget::command())?.check()?;
    let first = out.stdout.lines().next().unwrap_or_default();
    let word = first.split_whitespace().last().unwrap_or_default();
    if word.is_empty() {
        bail!("`{shown} {flag}` printed no version");
    }
    Ok(bare(word).to_string())
}

/// The programs of `release` the tools' cache does not hold yet, and its folder there: what a
/// run would build first (looked at, never built).
pub fn not_in_cache(release: &Release) -> (PathBuf, Vec<&'static str>) {
    let dir = cache_dir(release);
    let missing = release.module.commands.iter().copied().filter(|program| !dir.join(program).exists()).collect();
    (dir, missing)
}

/// The oldest Go that builds the systems under test: from 1.21 on, go fetches the toolchain a
/// module asks for (`GOTOOLCHAIN`) from the Go module proxy.
pub const MIN_GO: Version = Version::new(1, 21, 0);

/// The Go on PATH and its version (`go env GOVERSION`), `None` without one.
pub fn local_go() -> Option<(PathBuf, Result<Version>)> {
    let go = on_path("go")?;
    let shown = go.display().to_string();
    let version = exec::local(&[&shown, "env", "GOVERSION"], budget::command())
        .and_then(|out| out.check())
        .and_then(|out| go_version(&out.stdout));
    Some((go, version))
}

/// The release in Go's `GOVERSION`: `go1.26.8`, `go1.22rc1` (1.22.0), `go1.20` (1.20.0).
pub fn go_version(text: &str) -> Result<Version> {
    let word = text.trim();
    word.strip_prefix("go")
        .and_then(crate::version::leading)
        .ok_or_else(|| anyhow::anyhow!("`go env GOVERSION` printed {word:?}, which names no Go release"))
}

/// One folder a release: `tailscale.com@v1.90.9`.
fn cache_dir(release: &Release) -> PathBuf {
    paths::tools_dir().join(format!("{}@{}", release.module.module.replace('/', "_"), release.version.tag()))
}

/// A file or folder beside a release's cache folder: `tailscale.com@v1.90.9.lock`.
fn beside(release: &Release, suffix: &str) -> PathBuf {
    let dir = cache_dir(release);
    let name = format!("{}.{suffix}", dir.file_name().unwrap_or_default().to_string_lossy());
    dir.with_file_name(name)
}

/// An exclusive lock on building one release (flock: released when the process ends,
/// however it ends).
struct BuildLock {
    /// Held, not read: the lock lives as long as the open file.
    _file: std::fs::File,
    path: PathBuf,
}

impl BuildLock {
    fn take(release: &Release) -> Result<BuildLock> {
        std::fs::create_dir_all(paths::tools_dir())?;
        let path = beside(release, "lock");
        let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path)?;
        // std's file locks are flock(2) on Linux.
        if file.try_lock().is_err() {
            crate::say!("another run is building {}; waiting for it", release.describe());
            let _live = crate::progress::Phase::start(format!("waiting for another run's build of {}", release.describe()));
            if let Err(e) = file.lock() {
                bail!("locking {}: {e}", path.display());
            }
        }
        Ok(BuildLock { _file: file, path })
    }

    /// Remove the lock file of a release that can never be built (a run waiting on it finds
    /// the same answer from go).
    fn discard(self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The go command, and the toolchain it is told to use once a module asked for a newer Go.
struct GoCommand {
    go: String,
    /// `go1.27.1`: set when the module (or a dependency) says it requires a newer Go.
    toolchain: Option<String>,
    /// Every go command's output so far; written to `log` when a failure refers to it.
    output: String,
    log: PathBuf,
}

/// go said the module proxy does not serve the release at all: nothing of it can ever be
/// built, so nothing of the attempt is kept (not even its lock file).
#[derive(Debug)]
struct NotServed(String);

impl std::fmt::Display for NotServed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NotServed {}

impl GoCommand {
    /// Run one go command. If go answers that the module requires a newer Go than this one
    /// (`requires go >= 1.27.1 (running go 1.26.8; GOTOOLCHAIN=local)`), run it again once
    /// with that toolchain (`GOTOOLCHAIN=go1.27.1`, which the go command fetches from the
    /// module proxy), and say so.
    fn run(&mut self, release: &Release, args: &[&str], setup: impl Fn(&mut std::process::Command)) -> Result<exec::Output> {
        loop {
            let mut cmd = std::process::Command::new(&self.go);
            cmd.args(args);
            setup(&mut cmd);
            if let Some(t) = &self.toolchain {
                cmd.env("GOTOOLCHAIN", t);
            }
            let shown = format!(
                "{}go {}",
                self.toolchain.as_ref().map(|t| format!("GOTOOLCHAIN={t} ")).unwrap_or_default(),
                args.join(" ")
            );
            let out = exec::run("this machine", &shown, cmd, None, budget::go_build())?;
            self.journal(&out);
            if out.success() {
                return Ok(out);
            }
            match (required_go(&out.stderr), &self.toolchain) {
                (Some(needed), None) => {
                    crate::say!(
                        "{} requires Go {needed}, newer than this machine's {}: building it with GOTOOLCHAIN=go{needed} \
                         (the go command fetches that toolchain from the Go module proxy)",
                        release.describe(),
                        local_go_version(&self.go)
                    );
                    self.toolchain = Some(format!("go{needed}"));
                }
                _ => return Err(self.failure(release, &out)),
            }
        }
    }

    fn journal(&mut self, out: &exec::Output) {
        self.output +=
            &format!("--- {} → {} after {:.1?}\n{}{}\n", out.command, out.ending(), out.elapsed, out.stdout, out.stderr);
    }

    /// Write go's whole output beside the cache and name the file.
    fn save_log(&self) -> String {
        match std::fs::write(&self.log, &self.output) {
            Ok(()) => format!("go's output: {}", self.log.display()),
            Err(e) => format!("go's output could not be saved to {}: {e}", self.log.display()),
        }
    }

    /// One line for what go said: the release not served, the toolchain it needs, or the
    /// dependency that cannot be had, each with its fix.
    fn failure(&self, release: &Release, out: &exec::Output) -> anyhow::Error {
        let what = release.describe();
        let cause = go_cause(&out.stderr).unwrap_or_else(|| format!("`{}` {}", out.command, out.ending()));
        let main = format!("{}@{}", release.module.module, release.version.tag());
        if out.timed_out {
            let log = self.save_log();
            return anyhow!("building {what} took longer than its budget ({:.0?}): {cause} ({log})", budget::go_build());
        }
        if let Some(needed) = required_go(&out.stderr) {
            let log = self.save_log();
            return anyhow!(
                "{what} requires Go {needed}, and even with GOTOOLCHAIN={} go says: {cause}; pick another release ({log})",
                self.toolchain.as_deref().unwrap_or("local")
            );
        }
        if out.stderr.contains("toolchain not available") || cause.contains("golang.org/toolchain") {
            let log = self.save_log();
            return anyhow!(
                "{what} requires the Go toolchain {}, which the Go module proxy does not serve here: {cause}; pick another release \
                 ({log})",
                self.toolchain.as_deref().unwrap_or("it names")
            );
        }
        match failing_module(&cause) {
            Some(m) if m == main => anyhow::Error::new(NotServed(format!(
                "{what} is not served by the Go module proxy ({}): pick a release it serves (the pin is {}; see README, Versions)",
                cause.split_once(": ").map(|(_, c)| c).unwrap_or(&cause),
                release.module.pin
            ))),
            Some(dep) => {
                let log = self.save_log();
                anyhow!(
                    "{what} cannot be built here: its dependency {dep} cannot be had — the Go module proxy does not serve {} ({}); \
                     pick another release ({log})",
                    if cause.contains("verifying module") { "its checksum" } else { "it" },
                    proxy_answer(&cause)
                )
            }
            None => {
                let log = self.save_log();
                anyhow!("building {what} failed: {cause} ({log})")
            }
        }
    }
}

/// `1.27.1` from go's `… requires go >= 1.27.1 (running go 1.26.8; GOTOOLCHAIN=local)`.
fn required_go(stderr: &str) -> Option<String> {
    let (_, rest) = stderr.split_once("requires go >= ")?;
    let version: String = rest.chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
    (!version.is_empty()).then_some(version)
}

/// The machine's own Go: `go1.26.8`.
fn local_go_version(go: &str) -> String {
    exec::local(&[go, "env", "GOVERSION"], budget::command())
        .ok()
        .filter(|o| o.success())
        .map(|o| o.stdout.trim().to_string())
        .unwrap_or_else(|| "Go".into())
}

/// go's error, as one line: its last line that is not progress (`go: downloading …`), with
/// the proxy's own explanation (`server response: …`) after it.
fn go_cause(stderr: &str) -> Option<String> {
    let lines: Vec<&str> = stderr.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let response = lines.iter().find_map(|l| l.strip_prefix("server response: ")).map(str::to_string);
    let last = lines
        .iter()
        .rev()
        .find(|l| !l.starts_with("go: downloading ") && !l.starts_with("go: finding ") && !l.starts_with("server response: "))?;
    let last = last.strip_prefix("go: ").unwrap_or(last);
    Some(match response {
        Some(r) if !last.contains(&r) => format!("{last}: {r}"),
        _ => last.to_string(),
    })
}

/// What the proxy answered, from go's `… reading https://…/v1.info: 403 Forbidden: …`.
fn proxy_answer(cause: &str) -> &str {
    match cause.rsplit_once(": reading ").and_then(|(_, url)| url.split_once(": ")) {
        Some((_, answer)) => answer,
        None => cause,
    }
}

/// The module whose fetch failed, from go's error line: the `path@version` that a
/// `reading https://…` or `verifying …` is about.
fn failing_module(cause: &str) -> Option<String> {
    let about = cause.split(": reading ").next().unwrap_or(cause);
    let about = about.split(": verifying").next().unwrap_or(about);
    about.split([' ', ':']).rev().find(|w| w.contains('@') && !w.starts_with("http")).map(str::to_string)
}

/// `go install module/cmd/X@version` for every command of the module, into the cache.
fn go_install(release: &Release) -> Result<()> {
    let go = on_path("go").with_context(|| {
        format!(
            "Go is needed to build the systems under test: install Go {}.{} or newer (it fetches the toolchain the \
             modules ask for from the Go module proxy), or point MESH_HEADSCALE_BIN, MESH_TAILSCALE_BIN and \
             MESH_TAILSCALED_BIN at binaries of the versions to test",
            MIN_GO.major, MIN_GO.minor
        )
    })?;
    let module = release.module;
    let tag = release.version.tag();
    let dir = cache_dir(release);
    let partial = beside(release, "partial");
    let log = beside(release, "build.log");
    let _ = std::fs::remove_file(&log);
    let started = Instant::now();
    let targets: Vec<String> = module.commands.iter().map(|c| format!("{}/cmd/{c}@{tag}", module.module)).collect();
    crate::say!("building {} with `go install` into {} (once; later runs reuse it) …", targets.join(" "), dir.display());
    let _live = crate::progress::Phase::start(format!("building {} with go install", release.describe()));
    let mut go = GoCommand { go: go.display().to_string(), toolchain: None, output: String::new(), log };
    // The module proxy here refuses a module's version list, which `go install pkg@v` reads for
    // deprecation notices. Downloading the exact version first, then serving the module cache
    // as the first proxy, answers that read locally; everything else still comes from the proxy.
    // The download is also where a release the proxy does not serve, or one that requires a
    // newer Go, shows itself: within a second.
    let download = format!("{}@{tag}", module.module);
    go.run(release, &["mod", "download", &download], |_| {})?;
    let modcache = go.run(release, &["env", "GOMODCACHE"], |_| {})?.stdout.trim().to_string();
    let upstream = go.run(release, &["env", "GOPROXY"], |_| {})?.stdout.trim().to_string();
    let _ = std::fs::remove_dir_all(&partial);
    std::fs::create_dir_all(&partial)?;
    let mut args = vec!["install".to_string()];
    if !module.ldflags.is_empty() {
        args.push(format!("-ldflags={}", module.ldflags.replace("{v}", &release.version.to_string())));
    }
    args.extend(targets.iter().cloned());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let installed = go.run(release, &args, |cmd| {
        cmd.current_dir(&partial).env("GOBIN", &partial).env("GOPROXY", format!("file://{modcache}/cache/download,{upstream}"));
    });
    if let Err(e) = installed {
        let _ = std::fs::remove_dir_all(&partial);
        return Err(e);
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(&partial, &dir)?;
    crate::say!(
        "built {} in {:.0?}{}",
        release.describe(),
        started.elapsed(),
        go.toolchain.map(|t| format!(" with GOTOOLCHAIN={t}")).unwrap_or_default()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gos_version_is_read_from_goversion() {
        for (printed, version) in [
            ("go1.26.8\n", Version::new(1, 26, 8)),
            ("go1.22rc1", Version::new(1, 22, 0)),
            ("go1.20", Version::new(1, 20, 0)),
            ("go1.19.8", Version::new(1, 19, 8)),
        ] {
            assert_eq!(go_version(printed).unwrap(), version, "{printed:?}");
        }
        for bad in ["", "devel go1.23-abc", "1.26.8", "go"] {
            assert!(go_version(bad).is_err(), "{bad:?} parsed");
        }
        assert!(go_version("go1.19.8").unwrap() < MIN_GO && go_version("go1.21.0").unwrap() >= MIN_GO);
    }

    #[test]
    fn versions_compare_without_their_v() {
        assert_eq!(bare("v1.98.10"), bare("1.98.10"));
        assert_eq!(env_var("tailscaled"), "MESH_TAILSCALED_BIN");
    }

    /// go's own words, as it printed them here (2026-12-01).
    #[test]
    fn what_go_says_is_read_as_its_cause() {
        let not_served = "go: github.com/juanfont/headscale@v0.30.0: reading https://proxy.golang.org/github.com/juanfont/headscale/@v/v0.30.0.info: 403 Forbidden\n\tserver response: This module version is not available.\n";
        let cause = go_cause(not_served).unwrap();
        assert!(cause.ends_with("403 Forbidden: This module version is not available."), "{cause}");
        assert_eq!(failing_module(&cause).as_deref(), Some("github.com/juanfont/headscale@v0.30.0"));
        assert_eq!(proxy_answer(&cause), "403 Forbidden: This module version is not available.");

        let toolchain = "go: tailscale.com@v1.104.0 requires go >= 1.27.1 (running go 1.26.8; GOTOOLCHAIN=local)\n";
        assert_eq!(required_go(toolchain).as_deref(), Some("1.27.1"));
        assert_eq!(required_go(not_served), None);

        let dependency = "go: downloading github.com/pelletier/go-toml/v2 v2.2.4\n/root/go/pkg/mod/github.com/juanfont/headscale@v0.28.0/hscontrol/tailsql.go:10:2: github.com/tailscale/tailsql@v0.0.0-20260105194658-001575c3ca09: verifying module: github.com/tailscale/tailsql@v0.0.0-20260105194658-001575c3ca09: reading https://proxy.golang.org/sumdb/sum.golang.org/lookup/github.com/tailscale/tailsql@v0.0.0-20260105194658-001575c3ca09: 404 Not Found\n";
        let cause = go_cause(dependency).unwrap();
        assert_eq!(failing_module(&cause).as_deref(), Some("github.com/tailscale/tailsql@v0.0.0-20260105194658-001575c3ca09"));
        assert_eq!(proxy_answer(&cause), "404 Not Found");
    }
}
