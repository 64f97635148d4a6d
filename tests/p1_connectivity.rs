//! P1 — basic mesh connectivity. Three clients registered with pre-auth keys are online in
//! headscale and to each other, and every client reaches every other over the tailnet.
//! SC-001 (connected within 2 min of registration) and SC-002 (ping under 50 ms) are
//! measured here.

use anyhow::{ensure, Result};
use meshlab::criteria::{SC001, SC002};
use meshlab::lab;
use meshlab::ping::ping;
use meshlab::report::{PairFigure, Reach};
use meshlab::tailscale::BackendState;
use rstest::rstest;
use serial_test::serial;

#[test]
#[serial]
fn headscale_lists_every_client_online() -> Result<()> {
    let lab = lab();
    let nodes = lab.headscale().nodes()?;
    for client in lab.client_names() {
        let node = nodes.iter().find(|n| n.given_name == client);
        ensure!(node.is_some_and(|n| n.online), "expected {client} online in `headscale nodes list`; it lists {nodes:#?}");
    }
    ensure!(nodes.len() == 3, "expected exactly the 3 clients in `headscale nodes list`, saw {}: {nodes:#?}", nodes.len());
    Ok(())
}

#[rstest]
#[case::client_1("client-1")]
#[case::client_2("client-2")]
#[case::client_3("client-3")]
#[serial]
fn client_sees_both_peers_online(#[case] client: &str) -> Result<()> {
    let lab = lab();
    let status = lab.client(client)?.status()?;
    ensure!(
        status.backend_state == BackendState::Running,
        "{client}: expected BackendState Running, saw {}",
        status.backend_state
    );
    for peer in lab.client_names().iter().filter(|p| *p != client) {
        let seen = status.peer(peer);
        ensure!(
            seen.is_some_and(|p| p.online),
            "{client}: expected peer {peer} online in `tailscale status --json`, saw {seen:#?}"
        );
        let ips = lab.tailnet_ips(peer)?;
        ensure!(
            seen.unwrap().ips() == ips,
            "{client}: {peer}'s addresses are {:?} here but {ips:?} on {peer} itself",
            seen.unwrap().ips()
        );
    }
    Ok(())
}

/// Every client's tailnet addresses come from the prefixes of the configuration headscale runs
/// with (`prefixes.v4`, `prefixes.v6`: the user's, with `MESH_HEADSCALE_CONFIG`), one of each
/// configured family, and each client's peers see the same addresses for it.
#[test]
#[serial]
fn every_tailnet_address_is_from_the_configured_prefixes() -> Result<()> {
    let lab = lab();
    let settings = lab.settings();
    for client in lab.client_names() {
        settings.check_addresses(&client, &lab.client(&client)?.ips()?)?;
    }
    Ok(())
}

#[test]
#[serial]
fn all_clients_connected_within_two_minutes_of_registration() -> Result<()> {
    let seconds = lab().record.timings.converged_after_registration;
    SC001.measured(seconds).check()?;
    Ok(())
}

#[rstest]
#[case::client_1_to_client_2("client-1", "client-2")]
#[case::client_1_to_client_3("client-1", "client-3")]
#[case::client_2_to_client_1("client-2", "client-1")]
#[case::client_2_to_client_3("client-2", "client-3")]
#[case::client_3_to_client_1("client-3", "client-1")]
#[case::client_3_to_client_2("client-3", "client-2")]
#[serial]
fn pings_peer_over_the_tailnet(#[case] from: &str, #[case] to: &str) -> Result<()> {
    let lab = lab();
    let ips = lab.tailnet_ips(to)?;
    ensure!(ips.iter().any(|ip| !ip.contains(':')), "{to} has no tailnet IPv4: {ips:?}");
    // Every address the tailnet assigned: IPv4, and IPv6 where headscale gave one.
    for ip in ips {
        let stats = ping(lab.host(from)?, ip, 5).map_err(|e| e.context(format!("{from} pinging {to} at {ip}")))?;
        let family = if ip.contains(':') { "IPv6" } else { "IPv4" };
        PairFigure::new(from, to, Reach::Reached, &format!("ping (ICMP, {family}), mean of 5")).rtt(stats.avg).record();
        // Latency as ping reports it: the mean round trip. A single late reply is the host's
        // scheduler (five VMs emulated on two cores), not the mesh; every reply must still come.
        // On emulated hosts it is measured but not held to the limit (the reason says why).
        SC002
            .measured(stats.avg.as_secs_f64() * 1e3)
            .unless(lab.emulated().map(|why| format!("{why}: a round trip measures the emulated CPU")))
            .check()
            .map_err(|e| e.context(format!("{from} → {to} at {ip}")))?;
    }
    Ok(())
}

#[rstest]
#[case::client_1_to_client_2("client-1", "client-2")]
#[case::client_1_to_client_3("client-1", "client-3")]
#[case::client_2_to_client_1("client-2", "client-1")]
#[case::client_2_to_client_3("client-2", "client-3")]
#[case::client_3_to_client_1("client-3", "client-1")]
#[case::client_3_to_client_2("client-3", "client-2")]
#[serial]
fn tailscale_ping_reaches_peer(#[case] from: &str, #[case] to: &str) -> Result<()> {
    let lab = lab();
    let ip = lab.tailnet_ipv4(to)?;
    let pong = lab.client(from)?.ping(&ip)?;
    meshlab::say!("tailscale ping {from} → {to}: {:?} in {:.1?}", pong.path, pong.latency);
    pong.figure(from, to).record();
    SC002
        .measured(pong.latency.as_secs_f64() * 1e3)
        .unless(lab.emulated().map(|why| format!("{why}: a round trip measures the emulated CPU")))
        .check()
        .map_err(|e| e.context(format!("tailscale ping {from} → {to} via {:?}", pong.path)))?;
    Ok(())
}
