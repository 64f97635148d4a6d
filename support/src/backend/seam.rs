//! The one seam between a lab and the backend that made it: what a lab's record keeps of the
//! backend ([`Built`]), and everything the lab and the registry ask of it ([`LabBackend`]).
//! Neither picks a backend by hand; a third backend is a folder of its own and an arm here.

#[cfg(feature = "libvirt")]
use super::libvirt::LibvirtRecord;
use super::netns::{self, NetnsRecord};
use super::{BackendKind, Host, Underlay};
use crate::images::ImagesKind;
use crate::process::Lifetime;
use crate::spec::LabSpec;
use crate::tools::{Tools, Versions};
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Duration;

/// What a backend does for a lab, from the lab's record alone (so that whoever holds the
/// record, the builder or `cargo mesh down`, can ask it).
pub trait LabBackend {
    /// Before any host exists (a normal user's netns lab starts the process that holds its
    /// user namespace). `log` is where that process writes.
    fn prepare(&mut self, _run_id: &str, _log: &Path, _lifetime: Lifetime) -> Result<()> {
        Ok(())
    }
    /// Make the network and the hosts' systems (VMs booted and answering).
    fn create(
        &mut self,
        spec: &LabSpec,
        lab_dir: &Path,
        tools: &Tools,
        etc_files: &[(&str, String)],
        lifetime: Lifetime,
    ) -> Result<Created>;
    /// The hosts, as the scenarios drive them.
    fn hosts(&self, spec: &LabSpec, lab_dir: &Path, lifetime: Lifetime) -> Result<Vec<Box<dyn Host>>>;
    /// The network under the mesh.
    fn underlay(&self, spec: &LabSpec, lab_dir: &Path) -> Box<dyn Underlay>;
    /// Pause every host or let them run again (VMs suspended: they take no CPU meanwhile).
    fn set_paused(&self, _paused: bool) -> Result<()> {
        Ok(())
    }
    /// Why the hosts do not run at native speed, if they do not.
    fn emulated(&self) -> Option<String> {
        None
    }
    /// Where a program of this machine is, as the hosts see it.
    fn program_path(&self, path: &Path) -> String {
        path.display().to_string()
    }
    /// Gone already, whatever its record says (a normal user's lab whose holder died).
    fn gone(&self) -> bool {
        false
    }
    /// Lives in a user namespace of a normal user's (shown by `cargo mesh status`).
    fn in_user_namespace(&self) -> bool {
        false
    }
    /// Remove every piece of the lab, whatever state it is in; missing pieces are fine.
    fn teardown(&self, lab_dir: &Path) -> Result<()>;
    /// The same removal, as the shell the watchdog runs once the lab's owner is gone.
    fn removal_script(&self, lab_dir: &Path) -> String;
}

/// What [`LabBackend::create`] found out.
pub struct Created {
    /// The versions of the programs under test inside the hosts, where they carry their own
    /// (VM images); `None`: this machine's.
    pub versions: Option<Versions>,
    /// Preparing the hosts' images (a first run builds them): not part of the lab's time.
    pub images: Duration,
}

/// What a lab's record keeps of the backend that built it: one of these is set. Flattened
/// into the record (`lab.json` keeps its `netns` and `libvirt` keys).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Built {
    pub netns: Option<NetnsRecord>,
    /// The VMs, networks and router of a libvirt lab.
    #[cfg(feature = "libvirt")]
    #[serde(default)]
    pub libvirt: Option<LibvirtRecord>,
}

impl Built {
    /// The names a `kind` lab of `run_id` will have, before anything of it exists.
    pub fn plan(kind: BackendKind, run_id: &str, lab_dir: &Path, spec: &LabSpec, images: ImagesKind) -> Result<Built> {
        let _ = images;
        Ok(match kind {
            #[allow(clippy::needless_update)] // the libvirt record is a field only with the feature
            BackendKind::Netns => Built { netns: Some(NetnsRecord::plan(run_id, lab_dir, spec)), ..Built::default() },
            #[cfg(feature = "libvirt")]
            BackendKind::Libvirt => {
                Built { libvirt: Some(LibvirtRecord::plan(run_id, lab_dir, spec, images)), ..Built::default() }
            }
            #[cfg(not(feature = "libvirt"))]
            BackendKind::Libvirt => bail!("{}", BackendKind::parse("libvirt").unwrap_err()),
        })
    }

    /// The backend of this record.
    pub fn get(&self) -> Result<&dyn LabBackend> {
        if let Some(n) = &self.netns {
            return Ok(n);
        }
        #[cfg(feature = "libvirt")]
        if let Some(v) = &self.libvirt {
            return Ok(v);
        }
        bail!("this lab's record names no backend that this build has (a VM lab needs `cargo mesh-vm`)")
    }

    pub fn get_mut(&mut self) -> Result<&mut dyn LabBackend> {
        if let Some(n) = &mut self.netns {
            return Ok(n);
        }
        #[cfg(feature = "libvirt")]
        if let Some(v) = &mut self.libvirt {
            return Ok(v);
        }
        bail!("this lab's record names no backend that this build has (a VM lab needs `cargo mesh-vm`)")
    }
}

/// Before a `kind` lab is built: its backend answers (libvirt reachable), and what earlier
/// runs left that no record in `known` accounts for is removed.
pub fn before_build(kind: BackendKind, known: &[String]) -> Result<()> {
    #[cfg(feature = "libvirt")]
    if kind == BackendKind::Libvirt {
        super::libvirt::connect_configured()?;
        let (images, why) = ImagesKind::from_env()?;
        crate::say!("VM images: {} ({why})", images.name());
        remove_unrecorded_vms(known);
    }
    let _ = (kind, known);
    Ok(())
}

/// VMs and libvirt networks named like ours whose run has no live record (a build killed
/// before its record knew them, a watchdog killed too). Asks libvirt only if it runs.
pub fn remove_unrecorded_vms(known: &[String]) -> Vec<String> {
    #[cfg(feature = "libvirt")]
    return super::libvirt::remove_unrecorded(known);
    #[cfg(not(feature = "libvirt"))]
    {
        let _ = known;
        Vec::new()
    }
}

impl LabBackend for NetnsRecord {
    fn prepare(&mut self, run_id: &str, log: &Path, lifetime: Lifetime) -> Result<()> {
        if !crate::prereq::is_root() {
            // A normal user's lab lives in a user namespace, held by a process that dies with
            // its owner (or, detached, lives until `cargo mesh down`).
            self.holder = Some(netns::Holder::start(run_id, log, lifetime)?);
        }
        Ok(())
    }

    fn create(
        &mut self,
        spec: &LabSpec,
        lab_dir: &Path,
        _tools: &Tools,
        etc_files: &[(&str, String)],
        lifetime: Lifetime,
    ) -> Result<Created> {
        netns::create(self, spec, lab_dir, etc_files, lifetime)?;
        Ok(Created { versions: None, images: Duration::ZERO })
    }

    fn hosts(&self, spec: &LabSpec, lab_dir: &Path, lifetime: Lifetime) -> Result<Vec<Box<dyn Host>>> {
        spec.hosts
            .iter()
            .map(|h| Ok(Box::new(netns::NetnsHost::new(self, lab_dir, &h.name, lifetime)?) as Box<dyn Host>))
            .collect()
    }

    fn underlay(&self, spec: &LabSpec, lab_dir: &Path) -> Box<dyn Underlay> {
        Box::new(netns::NetnsUnderlay::new(self, spec, lab_dir))
    }

    fn gone(&self) -> bool {
        self.holder.is_some_and(|h| !h.alive())
    }

    fn in_user_namespace(&self) -> bool {
        self.holder.is_some()
    }

    fn teardown(&self, lab_dir: &Path) -> Result<()> {
        netns::teardown(self, lab_dir)
    }

    fn removal_script(&self, lab_dir: &Path) -> String {
        netns::removal_script(self, lab_dir)
    }
}
