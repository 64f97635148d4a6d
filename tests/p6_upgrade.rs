//! P6 — the upgrade path. The server runs headscale N-1 (`MESH_UPGRADE_FROM`, 0.27.1 by
//! default) and the clients register and talk; then it is upgraded in place to the run's
//! headscale N, on the same database (SQLite, or the lab's PostgreSQL) and keys with N's
//! configuration keys. Every node keeps its id, name and addresses, no client gets a new
//! key, and the mesh is whole again within SC-005's 30 s. `cargo mesh check` gives it a lab of its own.

use anyhow::{ensure, Result};
use meshlab::criteria::SC005;
use meshlab::report::Figure;
use meshlab::{budget, fixture, upgrade};
use std::time::Instant;

#[test]
fn the_server_upgrades_in_place_and_every_node_stays_itself() -> Result<()> {
    let Some(lab) = fixture::upgrade_lab() else { return Ok(()) };
    let (from, to) = (lab.record.tools.versions.upgraded_from.clone().unwrap_or_default(), &lab.record.tools.versions.headscale);
    ensure!(lab.headscale().version()? == from, "the server does not run {from} before the upgrade");
    for (a, b) in lab.client_pairs() {
        lab.reaches(&a, &b)?;
    }
    let nodes_before = lab.headscale().identities()?;
    let keys_before = lab.node_keys()?;

    // The interruption runs from the old server's stop, through the migration, to every
    // client online and reaching every other.
    let stopped = Instant::now();
    let upgraded = upgrade::in_place::upgrade_server(lab)?;
    Figure::new("P6-upgrade-ready", "upgraded headscale answering on the old database", upgraded.ready.as_secs_f64(), "s")
        .record();
    lab.await_mesh(budget::converge())?;
    let outage = stopped.elapsed().as_secs_f64();
    Figure::new("P6-upgrade-whole", "mesh whole again from the old server's stop", outage, "s").record();
    SC005.measured(outage).check()?;

    ensure!(lab.headscale().version()? == *to, "the server does not run {to} after the upgrade");
    let nodes_after = lab.headscale().identities()?;
    ensure!(nodes_after == nodes_before, "nodes changed across the upgrade {from} → {to}: {nodes_before:?} → {nodes_after:?}");
    let keys_after = lab.node_keys()?;
    ensure!(
        keys_after == keys_before,
        "node keys changed across the upgrade (a client re-registered): {keys_before:?} → {keys_after:?}"
    );
    Ok(())
}
