//! The underlay of a VM lab: the same router namespace as the netns backend's (its firewall,
//! captures and routes are that code), with links cut at the VMs' own NICs.

use super::LibvirtRecord;
use crate::backend::netns::NetnsUnderlay;
use crate::backend::{Capture, Underlay};
use crate::exec::Output;
use crate::say;
use crate::spec::LabSpec;
use anyhow::{anyhow, Context, Result};
use std::path::Path;

pub struct VmUnderlay {
    router: NetnsUnderlay,
    record: LibvirtRecord,
}

impl VmUnderlay {
    pub fn new(record: &LibvirtRecord, spec: &LabSpec, lab_dir: &Path) -> VmUnderlay {
        let router = record.router_record();
        VmUnderlay { router: NetnsUnderlay::new(&router, spec, lab_dir), record: record.clone() }
    }
}

impl Underlay for VmUnderlay {
    fn block_udp_between_subnets(&self, blocked: bool) -> Result<()> {
        self.router.block_udp_between_subnets(blocked)
    }

    /// The VM's NIC loses its carrier, as a pulled cable: libvirt's link state, the guest sees it.
    fn set_link(&self, host: &str, up: bool) -> Result<()> {
        let d = self.record.domains.get(host).ok_or_else(|| anyhow!("no host named {host:?} in this lab"))?;
        let conn = super::daemon::connect(&self.record.uri)?;
        let dom = virt::domain::Domain::lookup_by_name(&conn, &d.name)?;
        let xml = format!(
            "<interface type='network'><mac address='{}'/><source network='{}'/><model type='virtio'/><link state='{}'/></interface>",
            d.mac,
            d.network,
            if up { "up" } else { "down" }
        );
        dom.update_device_flags(&xml, virt::sys::VIR_DOMAIN_AFFECT_LIVE)
            .with_context(|| format!("setting {host}'s link {}", if up { "up" } else { "down" }))?;
        say!("{host}: underlay link {}", if up { "up" } else { "down" });
        Ok(())
    }

    /// The harness's own SSH to the VMs crosses the router's bridges too: it is left out.
    fn capture(&self, filter: &str) -> Result<Box<dyn Capture>> {
        self.router.capture(&format!("({filter}) and not tcp port 22"))
    }

    fn ruleset(&self) -> Result<String> {
        self.router.ruleset()
    }

    fn router_route_to(&self, address: &str) -> Result<Output> {
        self.router.router_route_to(address)
    }
}
