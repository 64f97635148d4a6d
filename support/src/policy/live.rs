//! The policy on live traffic: sinks on the clients, bounded connection attempts from one
//! client to another, the `tests` block's destinations judged by the mesh and by the running
//! headscale, and the policy file rewritten and reloaded.

use super::{rejection_line, split_destination, Attempt, PolicySetup, PolicyTest, Proto, Row, Verdict, FILE, NODES_VAR};
use crate::lab::Lab;
use crate::{budget, poll};
use anyhow::{anyhow, Context, Result};
use std::collections::BTreeSet;
use std::time::Duration;

/// One attempt from `from` to client `to`'s tailnet IPv4 by `proto`, given up after `limit`:
/// `nc -z` (a completed TCP handshake) or one `ping`.
pub fn attempt(lab: &Lab, from: &str, to: &str, proto: Proto, limit: Duration) -> Result<Attempt> {
    let ip = lab.tailnet_ipv4(to)?;
    let secs = limit.as_secs().max(1).to_string();
    let argv: Vec<String> = match proto {
        Proto::Tcp(port) => ["nc", "-z", "-w", &secs, &ip, &port.to_string()].iter().map(|s| s.to_string()).collect(),
        Proto::Icmp => ["ping", "-n", "-c", "1", "-W", &secs, &ip].iter().map(|s| s.to_string()).collect(),
    };
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let out = lab.host(from)?.exec(&argv, None, limit + budget::command())?;
    let said = format!("{} {}", out.stdout.trim(), out.stderr.trim()).trim().replace('\n', " / ");
    let evidence = format!(
        "{from} → {to} ({ip}) {proto}: `{}` {} after {:.1}s{}",
        out.command,
        out.ending(),
        out.elapsed.as_secs_f64(),
        if said.is_empty() { String::new() } else { format!(": {said}") }
    );
    Ok(Attempt { connected: out.success(), evidence })
}

/// An allowed probe connects within the ping budget (its first packets may wait for the
/// WireGuard handshake): the attempt that connected, or the last one that did not.
pub fn connects(lab: &Lab, from: &str, to: &str, proto: Proto) -> Result<Attempt> {
    let mut last = None;
    let found = poll::until(&format!("{from} → {to} by {proto}"), budget::ping(), || {
        let a = attempt(lab, from, to, proto, budget::refused())?;
        if a.connected {
            Ok(a)
        } else {
            let e = anyhow!("{}", a.evidence);
            last = Some(a);
            Err(e)
        }
    });
    match found {
        Ok(a) => Ok(a),
        Err(e) => Ok(last.unwrap_or(Attempt { connected: false, evidence: format!("{e:#}") })),
    }
}

/// A denied probe gets one bounded attempt (`budget::refused`): it must not connect.
pub fn blocked(lab: &Lab, from: &str, to: &str, proto: Proto) -> Result<Attempt> {
    attempt(lab, from, to, proto, budget::refused())
}

/// A TCP sink on `port` on every client, bound to its tailnet IPv4 (`nc -lk`), stopped when
/// dropped.
pub fn sinks<'a>(lab: &'a Lab, ports: &BTreeSet<u16>) -> Result<Vec<crate::guards::Running<'a>>> {
    let mut running = Vec::new();
    for client in lab.client_names() {
        let host = lab.host(&client)?;
        let ip = lab.tailnet_ipv4(&client)?;
        for port in ports {
            let service = format!("sink-{port}");
            if host.service_running(&service) {
                host.stop_service(&service)?;
            }
            running.push(crate::guards::Running::start(host, &service, &["nc", "-lk", &ip, &port.to_string()])?);
            crate::sockets::await_listening(host, &service, *port, std::slice::from_ref(&ip))?;
        }
    }
    Ok(running)
}

/// headscale's verdict on one destination of an entry: `headscale policy check` of the lab's
/// policy with that entry's one destination as its only test, asked of the running server
/// (which evaluates it against its live users and nodes). `Policy is valid` → allowed;
/// `expected ALLOWED, got DENIED` → denied.
pub fn headscale_verdict(lab: &Lab, setup: &PolicySetup, test: &PolicyTest, dst: &str) -> Result<Verdict> {
    let headscale = lab.headscale();
    if !headscale.release.policy_check_live {
        return Ok(Verdict::NotJudged(format!("headscale {} has no tests block", lab.record.tools.versions.headscale)));
    }
    let mut policy = setup.without_tests();
    let one = PolicyTest { src: test.src.clone(), proto: test.proto.clone(), accept: vec![dst.into()], deny: vec![] };
    policy["tests"] = serde_json::to_value(vec![one])?;
    let path = format!("{}/policy-check.json", headscale.host.state_dir());
    headscale.host.write_file(&path, serde_json::to_string_pretty(&policy)?.as_bytes())?;
    let out = headscale.cli(&["policy", "check", "--file", &path])?;
    let text = format!("{}\n{}", out.stdout, out.stderr);
    Ok(if out.success() && text.contains("Policy is valid") {
        Verdict::Allowed
    } else if text.contains("expected ALLOWED, got DENIED") {
        Verdict::Denied
    } else {
        Verdict::Error(rejection_line(&out))
    })
}

/// headscale's verdict on the whole policy, tests and all, against the running server: `None`
/// where the release cannot evaluate a `tests` block.
pub fn headscale_check_whole(lab: &Lab) -> Result<Option<Result<(), String>>> {
    let headscale = lab.headscale();
    if !headscale.release.policy_check_live {
        return Ok(None);
    }
    let path = format!("{}/{FILE}", headscale.host.state_dir());
    let out = headscale.cli(&["policy", "check", "--file", &path])?;
    Ok(Some(if out.success() { Ok(()) } else { Err(format!("{}{}", out.stdout, out.stderr).trim().to_string()) }))
}

/// The mesh's verdict on one destination: every client of `src` reaches some client of the
/// destination (Tailscale's semantics: every source address must be allowed). A claimed accept
/// gets the ping budget to connect, a claimed deny one bounded attempt. An empty `proto` is
/// TCP to the port, or else ICMP (headscale then accepts a rule of TCP, UDP or ICMP).
pub fn mesh_verdict(
    lab: &Lab,
    setup: &PolicySetup,
    test: &PolicyTest,
    dst: &str,
    claims_allowed: bool,
) -> Result<(Verdict, String)> {
    let ips = &lab.record.tailnet_ips;
    let sources = match setup.resolve(&test.src, ips) {
        Ok(s) if s.is_empty() => {
            return Ok((Verdict::Error(format!("no lab client is {}: give one in {NODES_VAR}", test.src)), String::new()))
        }
        Ok(s) => s,
        Err(e) => return Ok((Verdict::Error(format!("{e:#}")), String::new())),
    };
    let (alias, port) = match split_destination(dst) {
        Ok(d) => d,
        Err(e) => return Ok((Verdict::Error(format!("{e:#}")), String::new())),
    };
    let targets = match setup.resolve(&alias, ips) {
        Ok(t) if t.is_empty() => {
            return Ok((Verdict::Error(format!("no lab client is {alias}: give one in {NODES_VAR}")), String::new()))
        }
        Ok(t) => t,
        Err(e) => return Ok((Verdict::Error(format!("{e:#}")), String::new())),
    };
    let protos = match test.proto.to_ascii_lowercase().as_str() {
        "tcp" | "6" => vec![Proto::Tcp(port)],
        "icmp" | "1" => vec![Proto::Icmp],
        "" => vec![Proto::Tcp(port), Proto::Icmp],
        other => return Ok((Verdict::NotJudged(format!("the harness does not probe {other}")), String::new())),
    };
    let mut evidence = Vec::new();
    let mut all_reach = true;
    for src in &sources {
        let mut reached = false;
        for to in targets.iter().filter(|t| *t != src) {
            for proto in &protos {
                let a = if claims_allowed { connects(lab, src, to, *proto)? } else { blocked(lab, src, to, *proto)? };
                evidence.push(a.evidence.clone());
                if a.connected {
                    reached = true;
                    break;
                }
            }
            if reached {
                break;
            }
        }
        all_reach &= reached;
    }
    Ok((if all_reach { Verdict::Allowed } else { Verdict::Denied }, evidence.join("; ")))
}

/// The policy's `tests` block on live traffic: a row for every destination of every entry.
pub fn run_tests(lab: &Lab, setup: &PolicySetup) -> Result<Vec<Row>> {
    let mut claims = Vec::new();
    for (i, test) in setup.tests.iter().enumerate() {
        for (dst, claims_allowed) in test.accept.iter().map(|d| (d, true)).chain(test.deny.iter().map(|d| (d, false))) {
            claims.push((i, test, dst, claims_allowed));
        }
    }
    // headscale's verdicts one after another (each writes the same check file, and takes
    // milliseconds); the mesh's at once: a denied attempt waits out its whole budget.
    let verdicts: Vec<Verdict> =
        claims.iter().map(|&(_, test, dst, _)| headscale_verdict(lab, setup, test, dst)).collect::<Result<_>>()?;
    let work: Vec<_> = claims.into_iter().zip(verdicts).collect();
    crate::fanout::all("policy test", &work, |((i, test, dst, claims_allowed), headscale)| {
        let (i, test, dst, claims_allowed, headscale) = (*i, *test, *dst, *claims_allowed, headscale.clone());
        let (mesh, evidence) = mesh_verdict(lab, setup, test, dst, claims_allowed)?;
        Ok(Row {
            entry: i + 1,
            src: test.src.clone(),
            proto: test.proto.clone(),
            dst: dst.clone(),
            claims_allowed,
            headscale,
            mesh,
            evidence,
        })
    })
}

/// The policy file, in the server's state folder (inside the lab's folder).
pub fn server_path(lab: &Lab) -> Result<String> {
    Ok(format!("{}/{FILE}", lab.host(&lab.record.spec.server().name)?.state_dir()))
}

/// Write `text` as the server's policy file and tell headscale to read it again (SIGHUP: both
/// 0.27 and 0.29 reload a file-mode policy on it; neither watches the file).
pub fn rewrite(lab: &Lab, text: &str) -> Result<()> {
    let server = lab.host(&lab.record.spec.server().name)?;
    server.write_file(&server_path(lab)?, text.as_bytes())?;
    server.reload_service(crate::headscale::SERVICE).context("telling headscale to reload its policy")
}
