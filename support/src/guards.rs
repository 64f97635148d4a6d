//! Changes a scenario makes to a shared lab, undone when the guard goes out of scope — on
//! success, on `?` and on panic alike — so the next scenario finds the lab as it was.

use crate::backend::{Host, Underlay};
use anyhow::Result;

/// UDP between the subnets blocked at the router until dropped.
pub struct UdpBlocked<'a>(&'a dyn Underlay);

impl<'a> UdpBlocked<'a> {
    pub fn new(underlay: &'a dyn Underlay) -> Result<UdpBlocked<'a>> {
        underlay.block_udp_between_subnets(true)?;
        Ok(UdpBlocked(underlay))
    }

    /// Lift the block now, reporting failure (dropping it would only log).
    pub fn lift(self) -> Result<()> {
        let underlay = self.0;
        std::mem::forget(self);
        underlay.block_udp_between_subnets(false)
    }
}

impl Drop for UdpBlocked<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.0.block_udp_between_subnets(false) {
            crate::say!("could not lift the UDP block: {e:#}");
        }
    }
}

/// A service started for one scenario, stopped when dropped.
pub struct Running<'a> {
    host: &'a dyn Host,
    service: String,
}

impl<'a> Running<'a> {
    pub fn start(host: &'a dyn Host, service: &str, argv: &[&str]) -> Result<Running<'a>> {
        let argv: Vec<String> = argv.iter().map(|a| a.to_string()).collect();
        host.start_service(service, &argv, &[])?;
        Ok(Running { host, service: service.to_string() })
    }

    /// What the service has printed so far (its log).
    pub fn output(&self) -> String {
        self.host.service_log(&self.service)
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.host.stop_service(&self.service) {
            crate::say!("could not stop {} on {}: {e:#}", self.service, self.host.name());
        }
    }
}

/// A way back from a change a scenario made on purpose (a service stopped, a link cut): run on
/// drop unless the scenario put things back itself and called [`Undo::done`]. So a scenario
/// that fails halfway still leaves the shared lab as it found it.
pub struct Undo<'a> {
    what: String,
    undo: Option<Box<dyn FnOnce() -> Result<()> + 'a>>,
}

impl<'a> Undo<'a> {
    pub fn new(what: &str, undo: impl FnOnce() -> Result<()> + 'a) -> Undo<'a> {
        Undo { what: what.to_string(), undo: Some(Box::new(undo)) }
    }

    /// The scenario restored things itself.
    pub fn done(mut self) {
        self.undo = None;
    }
}

impl Drop for Undo<'_> {
    fn drop(&mut self) {
        if let Some(undo) = self.undo.take() {
            crate::say!("putting back: {}", self.what);
            if let Err(e) = undo() {
                crate::say!("could not put back {}: {e:#}", self.what);
            }
        }
    }
}

/// A string that appears nowhere by chance: run id, pid and time.
pub fn unique_marker(what: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{what}-{}-{nanos}", std::process::id())
}
