//! What a host listens on, as `ss` shows it, and waiting for a service to listen.

use crate::backend::Host;
use crate::{budget, poll};
use anyhow::{bail, Result};

/// The local addresses with a TCP socket listening on `port`.
pub fn listening_addresses(h: &dyn Host, port: u16) -> Result<Vec<String>> {
    let out = h.succeed(&["ss", "-Hltn", &format!("sport = :{port}")])?;
    Ok(out
        .lines()
        .filter_map(|l| l.split_whitespace().nth(3))
        .filter_map(|local| {
            local.rsplit_once(':').map(|(addr, _)| addr.trim_start_matches('[').trim_end_matches(']').to_string())
        })
        .collect())
}

/// Wait until `service` on `h` listens on `port` at every one of `addresses`; fail at once,
/// with its log, if it exits.
pub fn await_listening(h: &dyn Host, service: &str, port: u16, addresses: &[String]) -> Result<()> {
    poll::until(&format!("{service} on {} listening on {addresses:?} port {port}", h.name()), budget::service_ready(), || {
        h.ensure_running(service)?;
        let listening = listening_addresses(h, port)?;
        if addresses.iter().all(|a| listening.contains(a)) {
            Ok(())
        } else {
            bail!("listening on {listening:?}")
        }
    })
}
