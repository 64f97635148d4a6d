//! The systems under test, pinned: the one place that names their versions, and how the
//! harness gets each program: a binary named by an environment variable, one on PATH, the
//! cache under `target/`, or a `go install` into that cache.

use crate::{budget, exec, paths};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// A Go module release and the commands it provides.
pub struct Pinned {
    pub module: &'static str,
    pub version: &'static str,
    pub commands: &'static [&'static str],
    /// Linker flags a release build of this module sets, with `{v}` for the bare version.
    pub ldflags: &'static str,
}

/// headscale: the newest release the Go module proxy serves here (2026-11).
/// Its version comes from the module version `go install` records.
pub const HEADSCALE: Pinned =
    Pinned { module: "github.com/juanfont/headscale", version: "v0.29.3", commands: &["headscale"], ldflags: "" };

/// tailscale: the newest v1.98 patch release. v1.98 is the newest client headscale v0.29.3's
/// capability table names (hscontrol/capver), so it sits inside its supported window.
/// Its version is stamped by the linker, as tailscale's own build_dist.sh does; without the
/// stamp it reports `1.98.10-ERR-BuildInfo`.
pub const TAILSCALE: Pinned = Pinned {
    module: "tailscale.com",
    version: "v1.98.10",
    commands: &["tailscale", "tailscaled"],
    ldflags: "-X tailscale.com/version.longStamp={v} -X tailscale.com/version.shortStamp={v}",
};

/// The programs one run uses, and the versions they report themselves.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Tools {
    pub headscale: PathBuf,
    pub tailscale: PathBuf,
    pub tailscaled: PathBuf,
    pub versions: Versions,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Versions {
    pub headscale: String,
    pub tailscale: String,
    pub tailscaled: String,
}

impl Tools {
    /// Find or build each program, at its pinned version.
    pub fn resolve() -> Result<Tools> {
        let headscale = locate("headscale", &HEADSCALE)?;
        let tailscale = locate("tailscale", &TAILSCALE)?;
        let tailscaled = locate("tailscaled", &TAILSCALE)?;
        Ok(Tools {
            versions: Versions { headscale: headscale.1, tailscale: tailscale.1, tailscaled: tailscaled.1 },
            headscale: headscale.0,
            tailscale: tailscale.0,
            tailscaled: tailscaled.0,
        })
    }
}

/// `MESH_HEADSCALE_BIN`, `MESH_TAILSCALE_BIN`, `MESH_TAILSCALED_BIN`.
pub fn env_var(program: &str) -> String {
    format!("MESH_{}_BIN", program.to_uppercase())
}

fn locate(program: &str, pin: &Pinned) -> Result<(PathBuf, String)> {
    let want = bare(pin.version);
    let var = env_var(program);
    if let Ok(given) = std::env::var(&var) {
        let path = PathBuf::from(&given);
        if !path.is_file() {
            bail!("{var}={given}: no such file; point it at a {program} {want} binary, or unset it to let the harness build one");
        }
        let have = version_of(program, &path).with_context(|| format!("{var}={given}"))?;
        if have != want && !crate::settings::on("MESH_ALLOW_VERSION_MISMATCH") {
            bail!(
                "{var}={given} is {program} {have}, but this suite pins {want}: unset {var} to let the harness build {want}, \
                 or set MESH_ALLOW_VERSION_MISMATCH=1 to test {have} anyway"
            );
        }
        return Ok((path, have));
    }
    if let Some(path) = on_path(program) {
        match version_of(program, &path) {
            Ok(have) if have == want => return Ok((path, have)),
            Ok(have) => crate::say!(
                "warning: {} is {program} {have}, not the pinned {want}; using the pinned build instead",
                path.display()
            ),
            Err(e) => crate::say!("warning: {} does not report its version ({e:#}); ignoring it", path.display()),
        }
    }
    let cached = cache_dir(pin).join(program);
    if !cached.exists() {
        // Test processes start side by side (nextest): one builds, the others wait for it.
        let _lock = BuildLock::take(pin)?;
        if !cached.exists() {
            go_install(pin)?;
        }
    }
    let have = version_of(program, &cached)?;
    if have != want {
        bail!("the cached {} reports {have}, not {want}: delete {} and run again", cached.display(), cache_dir(pin).display());
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

fn cache_dir(pin: &Pinned) -> PathBuf {
    paths::tools_dir().join(format!("{}@{}", pin.module.replace('/', "_"), pin.version))
}

/// An exclusive lock on building one pinned module (flock: released when the process ends,
/// however it ends).
struct BuildLock {
    /// Held, not read: the lock lives as long as the open file.
    _file: std::fs::File,
}

impl BuildLock {
    fn take(pin: &Pinned) -> Result<BuildLock> {
        use std::os::fd::AsRawFd;
        std::fs::create_dir_all(paths::tools_dir())?;
        let path = cache_dir(pin).with_extension("lock");
        let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path)?;
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            crate::say!("another run is building {} {}; waiting for it", pin.module, pin.version);
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
                bail!("locking {}: {}", path.display(), std::io::Error::last_os_error());
            }
        }
        Ok(BuildLock { _file: file })
    }
}

/// `go install module/cmd/X@version` for every command of the module, into the cache.
fn go_install(pin: &Pinned) -> Result<()> {
    let go = on_path("go").context(
        "Go is needed to build the systems under test: install Go 1.21 or newer (it fetches the toolchain the \
         modules ask for from the Go module proxy), or point MESH_HEADSCALE_BIN, MESH_TAILSCALE_BIN and \
         MESH_TAILSCALED_BIN at binaries of the pinned versions",
    )?;
    let dir = cache_dir(pin);
    let partial = dir.with_extension("partial");
    let _ = std::fs::remove_dir_all(&partial);
    std::fs::create_dir_all(&partial)?;
    let started = Instant::now();
    let targets: Vec<String> = pin.commands.iter().map(|c| format!("{}/cmd/{c}@{}", pin.module, pin.version)).collect();
    crate::say!("building {} with `go install` into {} (once; later runs reuse it) …", targets.join(" "), dir.display());
    let go = go.display().to_string();
    // The module proxy here refuses a module's version list, which `go install pkg@v` reads for
    // deprecation notices. Downloading the exact version first, then serving the module cache
    // as the first proxy, answers that read locally; everything else still comes from the proxy.
    let download = format!("{}@{}", pin.module, pin.version);
    exec::local(&[&go, "mod", "download", &download], budget::go_build())?
        .check()
        .context("fetching the module from the Go module proxy")?;
    let modcache = exec::local(&[&go, "env", "GOMODCACHE"], budget::command())?.check()?.stdout.trim().to_string();
    let upstream = exec::local(&[&go, "env", "GOPROXY"], budget::command())?.check()?.stdout.trim().to_string();
    let mut cmd = std::process::Command::new(&go);
    cmd.arg("install");
    if !pin.ldflags.is_empty() {
        cmd.arg(format!("-ldflags={}", pin.ldflags.replace("{v}", bare(pin.version))));
    }
    cmd.args(&targets)
        .current_dir(&partial)
        .env("GOBIN", &partial)
        .env("GOPROXY", format!("file://{modcache}/cache/download,{upstream}"));
    let shown = format!("go install {}", targets.join(" "));
    exec::run("this machine", &shown, cmd, None, budget::go_build())?.check().context("building the systems under test")?;
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(&partial, &dir)?;
    crate::say!("built {} {} in {:.0?}", pin.module, pin.version, started.elapsed());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_without_their_v() {
        assert_eq!(bare("v1.98.10"), bare("1.98.10"));
        assert_eq!(env_var("tailscaled"), "MESH_TAILSCALED_BIN");
    }
}
