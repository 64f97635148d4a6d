//! P10 — node lifecycle. A node the admin expires (`headscale nodes expire`) is expired for
//! every peer and out of reach until it logs in again; an ephemeral node (an `--ephemeral`
//! pre-auth key) is removed when it logs out, and after its inactivity timeout when it
//! vanishes, never while it is online; a node of a tagged pre-auth key carries its tag and
//! keeps it across a re-login. Every scenario works on the late client, client-4, which it
//! registers itself and takes out again (the `Joined` guard), so the mesh of client-1..3 is
//! left as it was. `cargo mesh check` gives it a lab of its own, whose headscale runs with the
//! shortest ephemeral inactivity timeout headscale accepts (66 s).

use anyhow::{anyhow, bail, ensure, Context, Result};
use meshlab::headscale::Node;
use meshlab::lab::{JoinKey, Lab};
use meshlab::report::{skip, Figure};
use meshlab::tailscale::BackendState;
use meshlab::{budget, fixture, ping, poll, say};
use std::time::{Duration, Instant};

/// The client every scenario registers: it joins later, so no other scenario depends on it.
const NODE: &str = "client-4";
/// The tag of the tagged pre-auth key.
const TAG: &str = "tag:lifecycle";

/// client-4 as headscale lists it now, if it does.
fn listed(lab: &Lab) -> Result<Option<Node>> {
    Ok(lab.headscale().nodes()?.into_iter().find(|n| n.given_name == NODE || n.name == NODE))
}

/// Every peer (client-1..3) lists `NODE` online, not expired, and pings it at `ip`: one
/// observation of a wait.
fn every_peer_reaches(lab: &Lab, ip: &str) -> Result<()> {
    meshlab::fanout::all("peer probe", &lab.client_names(), |peer| {
        let status = lab.client(peer)?.status()?;
        match status.peer(NODE) {
            Some(p) if p.expired => bail!("{peer} sees {NODE} expired (KeyExpiry {:?})", p.key_expiry),
            Some(p) if !p.online => bail!("{peer} sees {NODE} offline"),
            // A packet sent before the peer's home DERP is known waits out a handshake retry.
            Some(p) if p.relay.is_empty() => bail!("{peer} does not know {NODE}'s home DERP yet"),
            Some(_) => {}
            None => bail!("{peer} does not list {NODE}"),
        }
        ping::answers(lab.host(peer)?, ip).map_err(|e| anyhow!("{peer} cannot ping {NODE} at {ip}: {e:#}"))
    })
    .map(|_| ())
}

/// The ephemeral inactivity timeout headscale runs with, read from its effective
/// configuration, if this run can wait it out; `None` after saying why not (skipped).
fn inactivity_timeout_to_wait(lab: &Lab) -> Result<Option<Duration>> {
    let settings = lab.settings();
    let timeout = settings.ephemeral_inactivity_timeout.ok_or_else(|| {
        anyhow!(
            "the effective configuration's ephemeral inactivity timeout ({:?}) is not a Go duration this harness reads",
            meshlab::userconfig::ephemeral_inactivity_timeout(&lab.effective_config().config, true)
        )
    })?;
    if timeout > budget::longest_inactivity_waited() {
        skip(&format!(
            "headscale's ephemeral inactivity timeout is {timeout:?}, longer than the {:?} a scenario waits out (the \
             lifecycle lab's own is {:?}: run it in a lab of its own, `cargo test --test p10_node_lifecycle`)",
            budget::longest_inactivity_waited(),
            meshlab::headscale::MIN_EPHEMERAL_INACTIVITY_TIMEOUT
        ));
        return Ok(None);
    }
    say!("headscale's ephemeral inactivity timeout, from its effective configuration: {timeout:?}");
    Ok(Some(timeout))
}

/// The admin expires client-4: every peer shows it expired and no longer reaches it, it sees
/// itself logged out; it logs in again with a new key and every peer reaches it again.
#[test]
fn an_expired_node_is_expired_for_every_peer_until_it_logs_in_again() -> Result<()> {
    let (lab, _one) = fixture::lifecycle_lab();
    let joined = lab.join(NODE)?;
    let client = lab.client(NODE)?;
    let ip = lab.tailnet_ipv4_of_live(NODE)?;
    poll::until(&format!("every peer reaching {NODE} before it is expired"), budget::converge(), || {
        every_peer_reaches(lab, &ip)
    })?;
    let before = listed(lab)?.ok_or_else(|| anyhow!("headscale does not list {NODE}"))?;

    let expired_at = Instant::now();
    lab.headscale().expire_node(NODE)?;
    poll::until(&format!("every peer showing {NODE} expired"), budget::expiry_propagation(), || {
        for peer in lab.client_names() {
            match lab.client(&peer)?.status()?.peer(NODE) {
                Some(p) if p.expired => {}
                Some(p) => bail!("{peer} lists {NODE} not expired (KeyExpiry {:?}, online {})", p.key_expiry, p.online),
                None => bail!("{peer} does not list {NODE} at all (neither expired nor not)"),
            }
        }
        Ok(())
    })?;
    let propagated = expired_at.elapsed();
    for peer in lab.client_names() {
        if let Some(p) = lab.client(&peer)?.status()?.peer(NODE) {
            say!("{peer} sees {NODE}: Expired {}, Online {}, KeyExpiry {:?}", p.expired, p.online, p.key_expiry);
        }
    }
    Figure::new("P10-expiry-propagated", "an expired node shown expired by every peer", propagated.as_secs_f64(), "s").record();
    let node = listed(lab)?.ok_or_else(|| anyhow!("headscale no longer lists {NODE} after `nodes expire`"))?;
    ensure!(node.expired(), "headscale lists {NODE} with expiry {:?}: not expired after `nodes expire`", node.expiry);
    poll::until(&format!("no peer reaching {NODE} any more"), budget::expiry_propagation(), || {
        let reached: Vec<String> =
            lab.client_names().into_iter().filter(|peer| lab.host(peer).is_ok_and(|h| ping::answers(h, &ip).is_ok())).collect();
        ensure!(reached.is_empty(), "{reached:?} still ping {NODE} at {ip}");
        Ok(())
    })?;
    poll::until(&format!("{NODE} seeing itself logged out"), budget::expiry_propagation(), || {
        let status = client.status()?;
        ensure!(status.backend_state == BackendState::NeedsLogin, "{NODE}'s BackendState is {}", status.backend_state);
        Ok(())
    })?;

    // It logs in again with a new key of the lab's user.
    let key = lab.preauth_key(&JoinKey::User)?;
    let relogin = Instant::now();
    client.up(&lab.record.spec.server_url(), &key, NODE).context("logging in again after the expiry")?;
    poll::until(&format!("every peer reaching {NODE} again after its new login"), budget::converge(), || {
        every_peer_reaches(lab, &ip)
    })?;
    Figure::new(
        "P10-relogin-reachable",
        "an expired node logged in again, reached by every peer",
        relogin.elapsed().as_secs_f64(),
        "s",
    )
    .record();
    let after = listed(lab)?.ok_or_else(|| anyhow!("headscale does not list {NODE} after its new login"))?;
    ensure!(!after.expired(), "headscale lists {NODE} still expired ({:?}) after its new login", after.expiry);
    ensure!(after.id == before.id, "{NODE} logged in again as node {} (was {}): a second registration", after.id, before.id);
    drop(joined);
    Ok(())
}

/// An ephemeral node online past its inactivity timeout is still listed: the timeout counts
/// from when it goes offline, never while it is connected.
#[test]
fn an_ephemeral_node_is_not_removed_while_it_is_online() -> Result<()> {
    let (lab, _one) = fixture::lifecycle_lab();
    let Some(timeout) = inactivity_timeout_to_wait(lab)? else {
        return Ok(());
    };
    let _joined = lab.join_with(NODE, &JoinKey::Ephemeral)?;
    let span = timeout + budget::ephemeral_removal();
    let looks =
        poll::holds(&format!("ephemeral {NODE} listed and online"), span, budget::hold_interval(), || match listed(lab)? {
            Some(n) if n.online => Ok(()),
            Some(_) => bail!("headscale lists {NODE} offline"),
            None => bail!("headscale no longer lists {NODE}"),
        })?;
    say!("ephemeral {NODE} listed and online throughout {span:?} ({looks} looks), past its {timeout:?} timeout");
    Ok(())
}

/// An ephemeral node that logs out is removed from headscale at once, and from every peer.
#[test]
fn an_ephemeral_node_is_removed_once_it_logs_out() -> Result<()> {
    let (lab, _one) = fixture::lifecycle_lab();
    let joined = lab.join_with(NODE, &JoinKey::Ephemeral)?;
    ensure!(listed(lab)?.is_some_and(|n| n.online), "headscale does not list the ephemeral {NODE} online: {:?}", listed(lab)?);
    let out = Instant::now();
    joined.logout()?;
    poll::until(&format!("the ephemeral {NODE} gone from headscale and every peer"), budget::ephemeral_removal(), || {
        if let Some(n) = listed(lab)? {
            bail!("headscale still lists {NODE} (node {}, online {}, expiry {:?})", n.id, n.online, n.expiry);
        }
        for peer in lab.client_names() {
            if lab.client(&peer)?.status()?.peer(NODE).is_some() {
                bail!("{peer} still lists {NODE}");
            }
        }
        Ok(())
    })?;
    Figure::new("P10-ephemeral-logout-removed", "an ephemeral node gone after it logs out", out.elapsed().as_secs_f64(), "s")
        .record();
    Ok(())
}

/// An ephemeral node that vanishes without logging out (its tailscaled killed) is still listed
/// shortly before its inactivity timeout has passed, and gone soon after.
#[test]
fn a_vanished_ephemeral_node_is_removed_after_its_inactivity_timeout_and_not_before() -> Result<()> {
    let (lab, _one) = fixture::lifecycle_lab();
    let Some(timeout) = inactivity_timeout_to_wait(lab)? else {
        return Ok(());
    };
    let _joined = lab.join_with(NODE, &JoinKey::Ephemeral)?;
    let node = listed(lab)?.ok_or_else(|| anyhow!("headscale does not list the ephemeral {NODE}"))?;
    ensure!(node.online, "headscale lists the ephemeral {NODE} offline before it vanished");

    // headscale's timer starts once it has marked the node offline, which is after this instant
    // (it first waits a few seconds for the node to reconnect).
    let vanished = Instant::now();
    lab.host(NODE)?.kill_service(meshlab::tailscale::SERVICE)?;
    let offline = poll::until(&format!("headscale listing {NODE} offline"), budget::reconnect_grace(), || match listed(lab)? {
        Some(n) if !n.online => Ok(vanished.elapsed()),
        Some(_) => bail!("headscale lists {NODE} online still"),
        None => {
            Err(poll::Hopeless(format!("headscale removed {NODE} at once, {:.1?} after it vanished", vanished.elapsed())).into())
        }
    })?;
    Figure::new("P10-vanished-offline", "a killed node listed offline by headscale", offline.as_secs_f64(), "s").record();
    let check_at = timeout.saturating_sub(budget::before_deadline());
    let looks = poll::holds(
        &format!("the vanished {NODE} still listed until {check_at:?} after it vanished"),
        check_at.saturating_sub(vanished.elapsed()),
        budget::hold_interval(),
        || match listed(lab)? {
            Some(_) => Ok(()),
            None => {
                bail!("headscale removed {NODE} {:.1?} after it vanished, before its {timeout:?} timeout", vanished.elapsed())
            }
        },
    )?;
    say!("the vanished {NODE} still listed {:.1?} after it vanished ({looks} looks)", vanished.elapsed());
    let removed = poll::until(
        &format!("the vanished {NODE} removed after its {timeout:?} inactivity timeout"),
        (offline + timeout + budget::ephemeral_removal()).saturating_sub(vanished.elapsed()),
        || match listed(lab)? {
            Some(n) => bail!(
                "headscale still lists {NODE} (node {}, online {}) {:.1?} after it vanished",
                n.id,
                n.online,
                vanished.elapsed()
            ),
            None => Ok(vanished.elapsed()),
        },
    )?;
    ensure!(removed >= timeout, "{NODE} was removed {removed:.1?} after it vanished, before its {timeout:?} timeout");
    Figure::new(
        "P10-ephemeral-vanished-removed",
        "a vanished ephemeral node gone, from its kill (timeout and reconnect wait included)",
        removed.as_secs_f64(),
        "s",
    )
    .record();
    Ok(())
}

/// A node registered with a tagged pre-auth key carries the tag — for headscale, for itself
/// and for its peers — and still carries it after it logs out and in again with a new key of
/// the same tag.
#[test]
fn a_tagged_node_carries_its_tag_and_keeps_it_across_a_re_login() -> Result<()> {
    let (lab, _one) = fixture::lifecycle_lab();
    let tagged = JoinKey::Tagged(TAG.into());
    let joined = lab.join_with(NODE, &tagged)?;
    let client = lab.client(NODE)?;
    let ip = lab.tailnet_ipv4_of_live(NODE)?;
    let carries_its_tag = |when: &str| -> Result<()> {
        let node = listed(lab)?.ok_or_else(|| anyhow!("headscale does not list {NODE} {when}"))?;
        ensure!(
            node.all_tags() == [TAG],
            "headscale lists {NODE} with tags {:?} {when}; its key's tag is {TAG}",
            node.all_tags()
        );
        let me = client.status()?.me.ok_or_else(|| anyhow!("{NODE}'s status has no Self"))?;
        ensure!(me.tags() == [TAG], "{NODE}'s own status has tags {:?} {when}, not [{TAG}]", me.tags());
        for peer in lab.client_names() {
            let status = lab.client(&peer)?.status()?;
            let seen = status.peer(NODE).ok_or_else(|| anyhow!("{peer} does not list {NODE} {when}"))?;
            ensure!(seen.tags() == [TAG], "{peer} sees {NODE} with tags {:?} {when}, not [{TAG}]", seen.tags());
        }
        Ok(())
    };
    poll::until(&format!("every peer reaching the tagged {NODE}"), budget::converge(), || every_peer_reaches(lab, &ip))?;
    carries_its_tag("after it registered")?;
    let first = listed(lab)?.map(|n| n.id);

    joined.logout()?;
    poll::until(&format!("{NODE} logged out"), budget::expiry_propagation(), || {
        let state = client.status()?.backend_state;
        ensure!(state == BackendState::NeedsLogin, "{NODE}'s BackendState is {state}");
        Ok(())
    })?;
    if let Some(n) = listed(lab)? {
        say!("after its logout headscale lists the tagged {NODE}: online {}, expired {} ({:?})", n.online, n.expired(), n.expiry);
    }
    let key = lab.preauth_key(&tagged)?;
    client.up(&lab.record.spec.server_url(), &key, NODE).context("logging in again with a new key of the same tag")?;
    let ip = lab.tailnet_ipv4_of_live(NODE)?;
    poll::until(&format!("every peer reaching the tagged {NODE} after its new login"), budget::converge(), || {
        every_peer_reaches(lab, &ip)
    })?;
    carries_its_tag("after it logged in again")?;
    let named = lab.headscale().nodes()?.into_iter().filter(|n| n.given_name.starts_with(NODE)).count();
    ensure!(named == 1, "{NODE} is listed {named} times after its new login (first as node {first:?})");
    let again = listed(lab)?.map(|n| n.id);
    ensure!(again == first, "{NODE} logged in again as node {again:?} (was {first:?}): a second registration");
    Ok(())
}
