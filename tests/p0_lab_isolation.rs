//! P0 — the lab itself is sound before anything is proven in it: it has no way out, its
//! control server listens on lab addresses alone, and its pre-auth keys are worth little if
//! they leak. Routes are read from the routing tables (`ip route get`): nothing is sent.

use anyhow::{ensure, Result};
use meshlab::lab;
use rstest::rstest;
use serial_test::serial;
use std::time::Duration;

/// Addresses outside any lab (documentation ranges, RFC 5737 and RFC 3849): only looked up.
const OUTSIDE: [&str; 2] = ["198.51.100.7", "2001:db8::7"];
/// What the kernel says when it has no way to send to an address.
const REFUSED: [&str; 2] = ["Network is unreachable", "No route to host"];
/// The longest a pre-auth key may live.
const KEY_LIFETIME_LIMIT: Duration = Duration::from_secs(15 * 60);

#[rstest]
#[case::server("headscale")]
#[case::client_1("client-1")]
#[case::client_2("client-2")]
#[case::client_3("client-3")]
#[case::client_4_that_joins_later("client-4")]
#[serial]
fn host_has_no_route_out_of_the_lab(#[case] host: &str) -> Result<()> {
    let h = lab().host(host)?;
    for address in OUTSIDE {
        let out = h.run(&["ip", "route", "get", address])?;
        ensure!(!out.success(), "{host} has a route to {address}: {}", out.stdout.trim());
        // No route at all (`Network is unreachable`), or the default route of type
        // `unreachable` a netns host has (`No route to host`): the kernel refuses either way.
        ensure!(
            REFUSED.iter().any(|r| out.stderr.contains(r)),
            "{host}: expected {REFUSED:?} for {address}, got {}",
            out.stderr.trim()
        );
    }
    Ok(())
}

#[test]
#[serial]
fn the_router_has_no_route_out_of_the_lab() -> Result<()> {
    for address in OUTSIDE {
        let out = lab().underlay().router_route_to(address)?;
        ensure!(!out.success(), "the router has a route to {address}: {}", out.stdout.trim());
    }
    Ok(())
}

#[test]
#[serial]
fn headscale_listens_on_lab_addresses_alone() -> Result<()> {
    let lab = lab();
    let server = lab.record.spec.server().addr.to_string();
    let listening = lab.host("headscale")?.succeed(&["ss", "-Hltun"])?;
    for port in [":443 ", ":3478 "] {
        ensure!(listening.contains(&format!("{server}{port}")), "headscale should listen on {server}{port}:\n{listening}");
    }
    for line in listening.lines() {
        let local = line.split_whitespace().nth(4).unwrap_or_default();
        let address = local.rsplit_once(':').map(|(a, _)| a).unwrap_or_default();
        ensure!(
            address == server || address == "127.0.0.1" || address == "[::1]",
            "the server listens on {local}, which is neither its lab address {server} nor loopback:\n{listening}"
        );
    }
    Ok(())
}

#[test]
#[serial]
fn pre_auth_keys_are_single_use_and_expire_within_minutes() -> Result<()> {
    let keys = lab().headscale().preauth_keys()?;
    ensure!(keys.len() >= 3, "expected a key per client, headscale lists {keys:?}");
    for key in &keys {
        ensure!(!key.reusable, "pre-auth key {} is reusable", key.id);
        let (created, expires) = (key.created_at.map(|t| t.seconds), key.expiration.map(|t| t.seconds));
        let lifetime = match (created, expires) {
            (Some(c), Some(e)) => Duration::from_secs((e - c).max(0) as u64),
            _ => anyhow::bail!("pre-auth key {} has no expiry: {key:?}", key.id),
        };
        ensure!(lifetime <= KEY_LIFETIME_LIMIT, "pre-auth key {} lives {lifetime:?}, over {KEY_LIFETIME_LIMIT:?}", key.id);
    }
    Ok(())
}
