//! Where the harness keeps things: everything under `target/`, except one small index in
//! /run so that `cargo mesh down --all` finds the labs of every checkout on this machine
//! (a normal user's own index: in its runtime directory, or a folder of its own in /tmp).

use anyhow::{bail, Result};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// A directory from the environment, made absolute: a lab's index entry and records must
/// mean the same from any working directory.
fn dir_from_env(var: &str) -> Option<PathBuf> {
    let dir = PathBuf::from(std::env::var_os(var)?);
    Some(std::path::absolute(&dir).unwrap_or(dir))
}

/// Write `text` to a file the user named (`--json PATH`), making its folder if it is missing:
/// the run it reports on took minutes, and a missing folder must not cost its report.
pub fn write_named_file(path: &Path, text: &str) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| anyhow::anyhow!("making {} for {}: {e}", parent.display(), path.display()))?;
    }
    std::fs::write(path, text).map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))
}

/// Cargo's target directory for this workspace.
pub fn target_dir() -> PathBuf {
    match dir_from_env("CARGO_TARGET_DIR") {
        Some(dir) => dir,
        None => {
            let workspace = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
            workspace.canonicalize().unwrap_or(workspace).join("target")
        }
    }
}

/// Where the built systems under test are cached, one folder a pinned release.
pub fn tools_dir() -> PathBuf {
    match dir_from_env("MESH_TOOLS_DIR") {
        Some(dir) => dir,
        None => target_dir().join("mesh-tools"),
    }
}

/// Where the VMs' boot images are cached, one folder an image.
pub fn images_dir() -> PathBuf {
    match dir_from_env("MESH_IMAGES_DIR") {
        Some(dir) => dir,
        None => target_dir().join("mesh-images"),
    }
}

/// One folder a lab: its record, its hosts' state and logs, its certificates.
pub fn labs_dir() -> PathBuf {
    match dir_from_env("MESH_STATE_DIR") {
        Some(dir) => dir,
        None => target_dir().join("mesh").join("labs"),
    }
}

/// Root's index, machine-wide.
pub const ROOT_INDEX: &str = "/run/mesh-lab";

/// The index of this user's labs: one symlink a live lab, named by its run id, to its folder.
/// Root's is /run/mesh-lab; a normal user's is `$XDG_RUNTIME_DIR/mesh-lab` (when that folder
/// is the user's own), else `/tmp/mesh-lab-<uid>`. Both are emptied at boot, as are the
/// namespaces they point at.
pub fn index_dir() -> PathBuf {
    let uid = nix::unistd::geteuid().as_raw();
    if uid == 0 {
        return PathBuf::from(ROOT_INDEX);
    }
    runtime_dir(uid).map(|d| d.join("mesh-lab")).unwrap_or_else(|| tmp_index(uid))
}

/// Every index this process looks in for its labs: its own, and for a normal user also the
/// other of its two possible places (a lab made from a login session, with a runtime
/// directory, is still found from a shell without one).
pub fn index_dirs() -> Vec<PathBuf> {
    let uid = nix::unistd::geteuid().as_raw();
    let mut dirs = vec![index_dir()];
    if uid != 0 {
        for d in [Some(tmp_index(uid)), runtime_dir(uid).map(|d| d.join("mesh-lab"))].into_iter().flatten() {
            if !dirs.contains(&d) {
                dirs.push(d);
            }
        }
        // Only folders of its own: anyone may have made one in /tmp.
        dirs.retain(|d| !d.exists() || check_own(d, uid).is_ok());
    }
    dirs
}

/// The indexes of normal users' labs on this machine (what root's `cargo mesh status` lists).
pub fn other_users_index_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    for (parent, prefix) in [("/tmp", "mesh-lab-"), ("/run/user", "")] {
        for entry in std::fs::read_dir(parent).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(prefix) && (!prefix.is_empty() || name.parse::<u32>().is_ok()) {
                let dir = if prefix.is_empty() { entry.path().join("mesh-lab") } else { entry.path() };
                if dir.is_dir() {
                    dirs.push(dir);
                }
            }
        }
    }
    dirs
}

fn tmp_index(uid: u32) -> PathBuf {
    PathBuf::from(format!("/tmp/mesh-lab-{uid}"))
}

fn runtime_dir(uid: u32) -> Option<PathBuf> {
    let dir = PathBuf::from(std::env::var_os("XDG_RUNTIME_DIR")?);
    let meta = std::fs::symlink_metadata(&dir).ok()?;
    (dir.is_absolute() && meta.is_dir() && meta.uid() == uid).then_some(dir)
}

/// Make this user's index folder, or check the one there: a normal user's must be its own,
/// not a symlink, and closed to others (in /tmp anyone could have made it first).
pub fn ensure_index_dir() -> Result<PathBuf> {
    let dir = index_dir();
    let uid = nix::unistd::geteuid().as_raw();
    if uid == 0 {
        std::fs::create_dir_all(&dir)?;
        return Ok(dir);
    }
    if let Err(e) = std::fs::create_dir(&dir) {
        if e.kind() != std::io::ErrorKind::AlreadyExists {
            bail!("creating the index of your labs {}: {e}", dir.display());
        }
    } else {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
    }
    check_own(&dir, uid)?;
    Ok(dir)
}

fn check_own(dir: &Path, uid: u32) -> Result<()> {
    let meta = std::fs::symlink_metadata(dir)?;
    if !meta.is_dir() || meta.uid() != uid || meta.mode() & 0o077 != 0 {
        bail!(
            "{} is not a folder of yours closed to others (owner uid {}, mode {:o}): remove it and retry",
            dir.display(),
            meta.uid(),
            meta.mode() & 0o7777
        );
    }
    Ok(())
}

#[cfg(test)]
mod named_file_tests {
    #[test]
    fn a_named_file_gets_its_missing_folder() {
        let dir = std::env::temp_dir().join(format!("mesh-named-{}", std::process::id()));
        let path = dir.join("a/b/report.json");
        super::write_named_file(&path, "{}").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
