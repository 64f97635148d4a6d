//! Boot images for the VM backend: what a lab VM boots, per host. Debian images are built here
//! with mmdebstrap ([`debian`]); NixOS images come from `nix/` through `nix build` ([`nix`]).
//! Both boot the same way and take their per-run data from the same seed disk ([`seed`]).

pub mod debian;
pub mod nix;
pub mod seed;

use crate::spec::{HostSpec, LabSpec};
use crate::tools::Tools;
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Where lab VMs' images come from (`MESH_IMAGES`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImagesKind {
    Debian,
    Nix,
}

impl ImagesKind {
    pub const NAMES: &'static [&'static str] = &["debian", "nix"];

    /// `MESH_IMAGES`, or the default for this machine with the reason for it.
    pub fn from_env() -> Result<(ImagesKind, &'static str)> {
        match std::env::var("MESH_IMAGES").unwrap_or_default().trim() {
            "debian" => Ok((ImagesKind::Debian, "MESH_IMAGES=debian")),
            "nix" => Ok((ImagesKind::Nix, "MESH_IMAGES=nix")),
            "" if std::path::Path::new("/etc/NIXOS").exists() => {
                Ok((ImagesKind::Nix, "the default on NixOS (/etc/NIXOS exists)"))
            }
            "" => Ok((ImagesKind::Debian, "the default off NixOS")),
            other => bail!("unknown image source {other:?}: MESH_IMAGES takes one of: {}", Self::NAMES.join(", ")),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            ImagesKind::Debian => "debian",
            ImagesKind::Nix => "nix",
        }
    }
}

/// What one VM boots: a kernel and initrd booted directly, a root disk the VM's own qcow2
/// overlay is layered on (never written to), and the kernel command line.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BootImage {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    /// The read-only base disk (qcow2 or raw) the VM's overlay backs onto.
    pub disk: PathBuf,
    /// Its format for qemu: `qcow2` or `raw`.
    pub disk_format: String,
    /// Kernel arguments; the backend adds the serial console.
    pub cmdline: String,
    /// The versions of the systems under test inside it, as they report themselves.
    pub versions: crate::tools::Versions,
}

/// The image each host of `spec` boots, built or taken from the cache.
pub fn prepare(kind: ImagesKind, spec: &LabSpec, tools: &Tools) -> Result<BTreeMap<String, BootImage>> {
    match kind {
        ImagesKind::Debian => {
            let image = debian::image(tools)?;
            Ok(spec.hosts.iter().map(|h| (h.name.clone(), image.clone())).collect())
        }
        ImagesKind::Nix => spec.hosts.iter().map(|h: &HostSpec| Ok((h.name.clone(), nix::image(spec, h)?))).collect(),
    }
}
