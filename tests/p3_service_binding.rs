//! P3 — service binding. nginx on client-1 listens on its tailnet addresses alone: every mesh
//! peer gets the page (by address and by MagicDNS name), nothing gets it through the underlay,
//! and the binding survives the mesh going down and coming back.

use anyhow::{ensure, Context, Result};
use meshlab::guards::Undo;
use meshlab::web::{self, ensure_serving, fetch, url};
use meshlab::{budget, lab, poll};
use rstest::rstest;
use serial_test::serial;

const SERVER: &str = "client-1";

#[test]
#[serial]
fn nginx_listens_only_on_the_tailnet_addresses() -> Result<()> {
    let lab = lab();
    ensure_serving(lab, SERVER)?;
    let listening = web::listening_addresses(lab.host(SERVER)?)?;
    let tailnet = lab.tailnet_ips(SERVER)?;
    let mut sorted = listening.clone();
    sorted.sort();
    let mut want = tailnet.to_vec();
    want.sort();
    ensure!(sorted == want, "expected port {} to listen on exactly {want:?} (`ss -ltn`), it listens on {listening:?}", web::PORT);
    Ok(())
}

#[rstest]
#[case::client_2("client-2")]
#[case::client_3("client-3")]
#[serial]
fn peer_gets_the_page_over_the_mesh(#[case] peer: &str) -> Result<()> {
    let lab = lab();
    ensure_serving(lab, SERVER)?;
    for ip in lab.tailnet_ips(SERVER)? {
        let out = fetch(lab.host(peer)?, &url(ip), budget::command())?
            .check()
            .with_context(|| format!("{peer} fetching {}", url(ip)))?;
        ensure!(
            out.stdout.trim() == web::page(lab, SERVER),
            "{peer} got {:?} from {}, expected the page of {SERVER}",
            out.stdout.trim(),
            url(ip)
        );
    }
    Ok(())
}

/// By its short name, and by its full name under the configuration's base domain.
#[rstest]
#[case::short_name(false)]
#[case::fully_qualified(true)]
#[serial]
fn peer_gets_the_page_by_name(#[case] full: bool) -> Result<()> {
    let lab = lab();
    if let Some(reason) = lab.magic_dns_off() {
        meshlab::report::skip(&reason);
        return Ok(());
    }
    let name = if full { lab.settings().fqdn(SERVER) } else { SERVER.to_string() };
    let name = name.as_str();
    ensure_serving(lab, SERVER)?;
    let out = fetch(lab.host("client-2")?, &url(name), budget::command())?
        .check()
        .with_context(|| format!("client-2 fetching {}", url(name)))?;
    ensure!(out.stdout.trim() == web::page(lab, SERVER), "client-2 got {:?} from {}", out.stdout.trim(), url(name));
    Ok(())
}

/// The same port on client-1's underlay address gives nothing: refused (the server on the
/// same subnet, the NATed clients through the router) or, at worst, a bounded time-out.
#[rstest]
#[case::server("headscale")]
#[case::client_2("client-2")]
#[case::client_3("client-3")]
#[serial]
fn underlay_address_gives_nothing(#[case] from: &str) -> Result<()> {
    let lab = lab();
    ensure_serving(lab, SERVER)?;
    let underlay = lab.record.spec.host(SERVER)?.addr.to_string();
    let out = fetch(lab.host(from)?, &url(&underlay), budget::refused())?;
    // curl: 7 = connection refused, 28 = timed out.
    ensure!(
        matches!(out.code, Some(7) | Some(28)),
        "{from} fetching {} should be refused or time out, but: {}",
        url(&underlay),
        if out.success() { format!("got the page {:?}", out.stdout.trim()) } else { out.describe_failure() }
    );
    Ok(())
}

/// nginx starts while the mesh is down (its addresses do not exist yet) and serves once the
/// mesh is back; a running nginx keeps serving across a tailscaled restart.
#[test]
#[serial]
fn binds_before_the_mesh_is_up_and_serves_across_a_mesh_restart() -> Result<()> {
    let lab = lab();
    ensure_serving(lab, SERVER)?;
    let (host, client) = (lab.host(SERVER)?, lab.client(SERVER)?);
    let ip = lab.tailnet_ipv4(SERVER)?;
    let page_from_client_2 = || -> Result<()> {
        let out = fetch(lab.host("client-2")?, &url(&ip), budget::command())?.check()?;
        ensure!(out.stdout.trim() == web::page(lab, SERVER), "got {:?}", out.stdout.trim());
        Ok(())
    };

    // Whatever happens below, client-1 ends with its mesh up and its page served.
    let restore = Undo::new("client-1's tailscaled and nginx", || {
        if !host.service_running(meshlab::tailscale::SERVICE) {
            client.start_daemon()?;
            client.await_daemon()?;
        }
        ensure_serving(lab, SERVER)
    });

    // The mesh goes down under a running nginx, and comes back.
    host.stop_service(meshlab::tailscale::SERVICE)?;
    client.start_daemon()?;
    client.await_daemon()?;
    lab.await_mesh(budget::converge())?;
    poll::until("client-2 gets the page after client-1's mesh restarted", budget::path_change(), page_from_client_2)?;

    // nginx starts while the mesh is down.
    host.stop_service(meshlab::tailscale::SERVICE)?;
    host.stop_service(web::SERVICE)?;
    web::start(host)?;
    web::await_listening(host, lab.tailnet_ips(SERVER)?).context("nginx binding tailnet addresses that do not exist yet")?;
    client.start_daemon()?;
    client.await_daemon()?;
    lab.await_mesh(budget::converge())?;
    poll::until("client-2 gets the page from an nginx started before the mesh", budget::path_change(), page_from_client_2)?;
    restore.done();
    Ok(())
}
