//! Where the harness keeps things: everything under `target/`, except one small index in
//! /run so that `cargo mesh down --all` finds the labs of every checkout on this machine.

use std::path::PathBuf;

/// A directory from the environment, made absolute: a lab's index entry and records must
/// mean the same from any working directory.
fn dir_from_env(var: &str) -> Option<PathBuf> {
    let dir = PathBuf::from(std::env::var_os(var)?);
    Some(std::path::absolute(&dir).unwrap_or(dir))
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

/// One folder a lab: its record, its hosts' state and logs, its certificates.
pub fn labs_dir() -> PathBuf {
    match dir_from_env("MESH_STATE_DIR") {
        Some(dir) => dir,
        None => target_dir().join("mesh").join("labs"),
    }
}

/// The machine-wide index: one symlink a live lab, named by its run id, to its folder.
/// /run is emptied at boot, as are the namespaces it points at.
pub fn index_dir() -> PathBuf {
    PathBuf::from("/run/mesh-lab")
}
