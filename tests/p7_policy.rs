//! P7 — the user's ACL policy. The server runs `MESH_POLICY` (the built-in policy when unset)
//! in file mode, each client registered as its `MESH_NODES` user or tag (tagged through a
//! tagged pre-auth key). Allowed pairs connect and denied pairs do not, per pair and direction;
//! a peer the policy hides is absent from the other's status; the policy's own `tests` block
//! holds on live traffic, beside what `headscale policy check` says; a rewritten policy reaches
//! every client without a restart; a policy headscale rejects is refused before any lab.
//! `cargo mesh check` gives it a lab of its own, so P1–P6 never run under the policy.

use anyhow::{bail, ensure, Context, Result};
use meshlab::guards::Undo;
use meshlab::lab::Lab;
use meshlab::policy::{self, live, PolicySetup, Proto};
use meshlab::report::{skip, Figure, PairFigure, Reach};
use meshlab::{budget, fixture, poll, say};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

fn setup(lab: &Lab) -> &PolicySetup {
    lab.record.policy.as_ref().expect("the policy lab has a policy")
}

/// The built-in policy's pairs need the built-in mapping; a user's policy is checked through
/// its own `tests` block.
fn builtin(lab: &Lab) -> Option<&PolicySetup> {
    let setup = setup(lab);
    let defaults = setup.has_default_nodes();
    if !setup.builtin() {
        skip(&format!("the pairs are the built-in policy's; {} is checked through its own tests block", setup.name()));
        return None;
    }
    if !defaults {
        skip(&format!(
            "the built-in policy's pairs assume its mapping {:?}; {} gives another",
            policy::DEFAULT_NODES,
            policy::NODES_VAR
        ));
        return None;
    }
    Some(setup)
}

/// Every probe the built-in policy allows, tried (each within the ping budget), with its attempt.
fn allowed_attempts(lab: &Lab) -> Result<Vec<(policy::Expectation, policy::Attempt)>> {
    policy::builtin_expectations()
        .into_iter()
        .filter(|e| e.allowed)
        .map(|e| Ok((e, live::connects(lab, e.from, e.to, e.proto)?)))
        .collect()
}

/// An attempt as a measurement of its pair for the run's report: reached or refused, by its
/// protocol (a bounded attempt measures no round trip), under the policy.
fn record(e: &policy::Expectation, a: &policy::Attempt) {
    let reach = if a.connected { Reach::Reached } else { Reach::Refused };
    PairFigure::new(e.from, e.to, reach, &e.proto.to_string()).under(policy::CONDITION).record();
}

fn service_ports() -> BTreeSet<u16> {
    [policy::SERVICE_PORT, policy::OTHER_PORT].into()
}

#[test]
fn allowed_pairs_connect_on_the_allowed_port_and_by_icmp() -> Result<()> {
    let (lab, _one) = fixture::policy_lab();
    if builtin(lab).is_none() {
        return Ok(());
    }
    let _sinks = live::sinks(lab, &service_ports())?;
    for (e, a) in allowed_attempts(lab)? {
        ensure!(
            a.connected,
            "the policy allows {} → {} by {}, and it did not connect within {:?}: {}",
            e.from,
            e.to,
            e.proto,
            budget::ping(),
            a.evidence
        );
        say!("allowed, and connected: {}", a.evidence);
        record(&e, &a);
    }
    Ok(())
}

#[test]
fn denied_pairs_do_not_connect_in_either_direction() -> Result<()> {
    let (lab, _one) = fixture::policy_lab();
    if builtin(lab).is_none() {
        return Ok(());
    }
    let _sinks = live::sinks(lab, &service_ports())?;
    // The denials mean something only where the path works: the allowed probes first.
    for (e, a) in allowed_attempts(lab)? {
        ensure!(
            a.connected,
            "the allowed {} → {} by {} did not connect, so no denial could be told apart: {}",
            e.from,
            e.to,
            e.proto,
            a.evidence
        );
    }
    // Every denial at once: each waits out its whole bounded attempt, and they are independent.
    let denied: Vec<_> = policy::builtin_expectations().into_iter().filter(|e| !e.allowed).collect();
    let attempts = meshlab::fanout::all("denied probe", &denied, |e| live::blocked(lab, e.from, e.to, e.proto))?;
    let mut connected = Vec::new();
    for (e, a) in denied.iter().zip(attempts) {
        say!("denied, {}: {}", if a.connected { "but CONNECTED" } else { "and did not connect" }, a.evidence);
        record(e, &a);
        if a.connected {
            connected.push(a.evidence);
        }
    }
    ensure!(connected.is_empty(), "the policy denies these, and they connected:\n  {}", connected.join("\n  "));
    Ok(())
}

#[test]
fn a_peer_the_policy_hides_is_absent_from_the_others_status() -> Result<()> {
    let (lab, _one) = fixture::policy_lab();
    let setup = setup(lab);
    let clients = lab.client_names();
    let mut hidden = Vec::new();
    for a in &clients {
        let status = lab.client(a)?.status()?;
        for b in clients.iter().filter(|b| *b != a) {
            if status.peer(b).is_none() {
                hidden.push((a.clone(), b.clone()));
            }
        }
    }
    // Every client is online for the server all the same: hidden is not offline.
    for node in lab.headscale().nodes()? {
        ensure!(node.online || !clients.contains(&node.given_name), "headscale lists {} offline", node.given_name);
    }
    say!("hidden from each other's status: {hidden:?}");
    if setup.builtin() && setup.has_default_nodes() {
        let want: Vec<(String, String)> = policy::BUILTIN_HIDDEN.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
        ensure!(hidden == want, "the built-in policy hides exactly {want:?} (no allowed relationship either way); the clients' status hides {hidden:?}");
    } else if hidden.is_empty() {
        skip(&format!("{} hides no client from another", setup.name()));
        return Ok(());
    }
    // A hidden peer is not reachable either, by TCP or ICMP.
    let _sinks = live::sinks(lab, &[policy::SERVICE_PORT].into())?;
    for (a, b) in &hidden {
        for proto in [Proto::Tcp(policy::SERVICE_PORT), Proto::Icmp] {
            let attempt = live::blocked(lab, a, b, proto)?;
            ensure!(!attempt.connected, "{b} is hidden from {a}'s status, yet {a} reached it: {}", attempt.evidence);
        }
    }
    Ok(())
}

#[test]
fn the_policys_own_tests_hold_on_live_traffic() -> Result<()> {
    let (lab, _one) = fixture::policy_lab();
    let setup = setup(lab);
    if setup.tests.is_empty() {
        skip(&format!("{} has no tests block", setup.name()));
        return Ok(());
    }
    let _sinks = live::sinks(lab, &policy::test_ports(setup))?;
    let whole = live::headscale_check_whole(lab)?;
    match &whole {
        Some(Ok(())) => say!("headscale policy check of {} against the live server: Policy is valid", setup.name()),
        Some(Err(e)) => say!("headscale policy check of {} against the live server: {e}", setup.name()),
        None => {}
    }
    let rows = live::run_tests(lab, setup)?;
    println!("\nthe tests block of {} on live traffic:\n{}", setup.name(), policy::table(&rows));
    for r in &rows {
        println!("  entry {} {}: {}", r.entry, r.dst, r.evidence);
    }
    policy::judge(&rows).with_context(|| format!("{}'s tests block on live traffic", setup.name()))?;
    if let Some(Err(e)) = whole {
        bail!("headscale policy check rejects {} against the live server, while every destination agreed: {e}", setup.name());
    }
    let release = lab.headscale().release;
    if !release.policy_check_live {
        skip(&format!(
            "headscale {} has no tests block and no live policy check: the claims held on live traffic ({} destinations), \
             headscale's verdict could not be had",
            lab.record.tools.versions.headscale,
            rows.len()
        ));
    }
    Ok(())
}

/// What headscale (0.27 and 0.29) logs on a SIGHUP that reloads its file-mode policy.
const RELOAD_LINE: &str = "reloading ACL policy";

/// Each client's peers, as its status lists them.
fn visible(lab: &Lab) -> Result<BTreeMap<String, BTreeSet<String>>> {
    let mut seen = BTreeMap::new();
    for c in lab.client_names() {
        seen.insert(c.clone(), lab.client(&c)?.status()?.peers().map(|p| p.host_name.clone()).collect());
    }
    Ok(seen)
}

/// Named so that it runs last: should the policy fail to come back, no other test sees it.
#[test]
fn when_the_policy_file_changes_every_client_gets_it_without_a_restart() -> Result<()> {
    let (lab, _one) = fixture::policy_lab();
    let setup = setup(lab);
    let clients = lab.client_names();
    let before = visible(lab)?;
    let everyone = |seen: &BTreeMap<String, BTreeSet<String>>| {
        clients.iter().all(|c| clients.iter().filter(|p| *p != c).all(|p| seen[c].contains(p)))
    };
    if everyone(&before) {
        skip(&format!(
            "{} already shows every client to every other: opening it up would change nothing to observe",
            setup.name()
        ));
        return Ok(());
    }
    // Reloads counted, not a byte offset: a VM's copy of the log ends with what systemd said,
    // so what headscale writes later lands before that tail.
    let reloads = |log: &str| log.matches(RELOAD_LINE).count();
    let reloads_before = reloads(&lab.host(&lab.record.spec.server().name)?.service_log(meshlab::headscale::SERVICE));
    let original = setup.text.clone();
    let restore = Undo::new("the lab's policy", || live::rewrite(lab, &original));
    // The change: every node may reach every other. Each client must see it: every other
    // client in its status and answering its ping.
    let open = serde_json::to_string_pretty(&policy::allow_all(setup))?;
    let changed = Instant::now();
    live::rewrite(lab, &open)?;
    poll::until("the opened policy on every client: every peer listed and answering", budget::policy_propagation(), || {
        let seen = visible(lab)?;
        for c in &clients {
            for p in clients.iter().filter(|p| *p != c) {
                if !seen[c].contains(p) {
                    bail!("{c} does not list {p} yet (it lists {:?})", seen[c]);
                }
                meshlab::ping::answers(lab.host(c)?, &lab.tailnet_ipv4(p)?).with_context(|| format!("{c} → {p}"))?;
            }
        }
        Ok(())
    })?;
    let reached = changed.elapsed().as_secs_f64();
    Figure::new("P7-policy-reached", "a rewritten policy on every client (SIGHUP, no restart)", reached, "s").record();
    // No restart: the same headscale process, which logged the reload.
    let server = lab.host(&lab.record.spec.server().name)?;
    ensure!(server.service_running(meshlab::headscale::SERVICE), "headscale is not running after the reload");
    let log = server.service_log(meshlab::headscale::SERVICE);
    ensure!(
        reloads(&log) > reloads_before,
        "headscale's log shows no new reload (`Received SIGHUP, {RELOAD_LINE}`): {} before the change, {} after",
        reloads_before,
        reloads(&log)
    );
    for c in &clients {
        let status = lab.client(c)?.status()?;
        ensure!(status.me.is_some(), "{c} has no Self in its status");
    }
    // And back: the original policy, every client's peers as they were.
    live::rewrite(lab, &original)?;
    restore.done();
    poll::until("the original policy back on every client: its peers as before", budget::policy_propagation(), || {
        let seen = visible(lab)?;
        if seen != before {
            bail!("peers {seen:?}, before the change {before:?}");
        }
        Ok(())
    })?;
    say!("the original policy is back on every client {:.2}s after the change", changed.elapsed().as_secs_f64());
    Ok(())
}

#[test]
fn a_policy_headscale_rejects_is_refused_before_any_lab_exists() -> Result<()> {
    let (lab, _one) = fixture::policy_lab();
    // The lab's own headscale, on this machine, as `cargo mesh check` runs it before building.
    let tools = &lab.record.tools;
    let release = lab.headscale().release;
    let clients = lab.client_names();
    let broken = policy::builtin_text(release).replace("\"action\": \"accept\"", "\"action\": \"accpt\"");
    let setup = PolicySetup::new(Some("typo.hujson".into()), broken, "", &clients)?;
    let labs_before = meshlab::registry::indexed().len();
    let err = match policy::precheck(&setup, &tools.headscale, release, &tools.versions.headscale) {
        Ok(()) => bail!("headscale {} accepted a policy whose action is \"accpt\"", tools.versions.headscale),
        Err(e) => format!("{e:#}"),
    };
    say!("refused: {err}");
    ensure!(!err.contains('\n'), "the refusal is more than one line: {err}");
    ensure!(err.contains("accpt") && err.contains("typo.hujson"), "the refusal does not carry headscale's error: {err}");
    ensure!(meshlab::registry::indexed().len() <= labs_before, "the check began a lab");
    Ok(())
}
