//! P9 — Tailscale SSH. With the built-in policy's `ssh` rule (group:admins → tag:server as
//! root) and tailscaled's SSH server on client-3 (`tailscale set --ssh`, off again at the end):
//! client-1 (alice, an admin) runs a command on client-3 as root through tailscaled's own SSH
//! server — its banner is Tailscale's, not an sshd's, and what the command wrote is read back on
//! client-3; client-2 (bob, no admin) is refused; alice as a login the rule does not list is
//! refused. Each refusal is checked by its exit status and message, within its budget.
//! `cargo mesh check` gives it a policy lab of its own, as P7's.

use anyhow::{bail, ensure, Result};
use meshlab::guards::Undo;
use meshlab::lab::Lab;
use meshlab::policy::live;
use meshlab::policy::{self, PolicySetup};
use meshlab::report::{skip, Figure};
use meshlab::ssh::{self, Netmap, SshServer};
use meshlab::{budget, fixture, poll, say};
use std::time::Instant;

const ADMIN: &str = "client-1";
const OUTSIDER: &str = "client-2";
const SERVER: &str = "client-3";

/// The built-in policy and mapping, whose `ssh` rule the checks are written against; another
/// policy or mapping says why it is skipped.
fn builtin(lab: &Lab) -> Option<&PolicySetup> {
    let setup = lab.record.policy.as_ref().expect("the policy lab has a policy");
    if ssh::rules(setup).is_none() {
        skip(&format!("{} has no `ssh` section: no rule lets anyone use Tailscale SSH", setup.name()));
        return None;
    }
    if !setup.builtin() {
        skip(&format!(
            "P9's checks are the built-in policy's ssh rule (group:admins → tag:server as root); {} has its own",
            setup.name()
        ));
        return None;
    }
    if !setup.has_default_nodes() {
        skip(&format!(
            "the built-in ssh rule's checks assume its mapping {:?}; {} gives another",
            policy::DEFAULT_NODES,
            policy::NODES_VAR
        ));
        return None;
    }
    Some(setup)
}

/// The SSH server on client-3, and the admin's first command through it: the path works, so a
/// refusal afterwards is the policy's. Records the time from `tailscale set --ssh` to it.
fn server_answering(lab: &Lab) -> Result<SshServer<'_>> {
    let started = Instant::now();
    let server = SshServer::on(lab, SERVER)?;
    let what = format!("{ADMIN} running `true` on {SERVER} as {} through Tailscale SSH", policy::SSH_USER);
    poll::until(&what, budget::policy_propagation(), || ssh::run(lab, ADMIN, policy::SSH_USER, SERVER, "true")?.check())?;
    let took = started.elapsed().as_secs_f64();
    say!("{what}: the first success {took:.2}s after `tailscale set --ssh`");
    Figure::new("P9-ssh-first-command", "tailscale set --ssh until the admin's first command ran", took, "s").record();
    Ok(server)
}

#[test]
fn an_admin_runs_a_command_on_the_server_as_root_through_tailscaled() -> Result<()> {
    let (lab, _one) = fixture::policy_lab();
    if builtin(lab).is_none() {
        return Ok(());
    }
    let server = server_answering(lab)?;
    let target = lab.host(SERVER)?;
    let nonce = format!("p9-{}-{}", std::process::id(), lab.record.run_id);
    let file = format!("{}/p9-ssh-nonce", target.state_dir());
    let command = format!("id -un; hostname; echo {nonce} > {file}");
    let out = ssh::run(lab, ADMIN, policy::SSH_USER, SERVER, &command)?.check()?;
    say!("{ADMIN} → {SERVER} as {}: {:?} in {:.2?}", policy::SSH_USER, out.stdout.trim(), out.elapsed);
    ensure!(
        out.stderr.contains(ssh::BANNER),
        "the SSH server is not tailscaled's (no `{}` in ssh -v): {}",
        ssh::BANNER,
        ssh::message(&out)
    );
    let lines: Vec<&str> = out.stdout.lines().collect();
    let hostname = target.succeed(&["hostname"])?;
    ensure!(
        lines.first() == Some(&policy::SSH_USER) && lines.get(1) == Some(&hostname.trim()),
        "the command ran as {:?} on {:?}; wanted {} on {SERVER} ({})",
        lines.first(),
        lines.get(1),
        policy::SSH_USER,
        hostname.trim()
    );
    let written = target.succeed(&["cat", &file])?;
    target.succeed(&["rm", "-f", &file])?;
    ensure!(written.trim() == nonce, "{file} on {SERVER} holds {written:?}, not the nonce {nonce}");
    // No sshd on the target's tailnet addresses' port 22 (a VM's sshd listens on its lab
    // address alone, for the harness): what answered was tailscaled.
    let listening = target.succeed(&["ss", "-Hltnp", "sport = :22"])?;
    let tailnet = lab.tailnet_ips(SERVER)?;
    let on_tailnet: Vec<&str> = listening
        .lines()
        .filter(|l| {
            let local = l.split_whitespace().nth(3).unwrap_or("");
            let host = local.rsplit_once(':').map_or(local, |(h, _)| h).trim_matches(|c| c == '[' || c == ']');
            ["0.0.0.0", "::", "*"].contains(&host) || tailnet.iter().any(|ip| ip == host)
        })
        .collect();
    ensure!(on_tailnet.is_empty(), "something listens on {SERVER}'s tailnet port 22: {on_tailnet:?}");
    server.off()
}

/// A refusal's evidence: ssh's own failure (exit 255) with the reason printed, within budget.
fn refused(lab: &Lab, from: &str, user: &str, expected: &[&str]) -> Result<()> {
    let out = ssh::run(lab, from, user, SERVER, "echo p9-ran")?;
    let message = ssh::message(&out);
    say!("{from} → {SERVER} as {user}: exit {:?} in {:.2?}: {message}", out.code, out.elapsed);
    ensure!(
        !out.stdout.contains("p9-ran"),
        "{from} ran a command on {SERVER} as {user}, which the ssh rule does not allow: {}",
        out.stdout.trim()
    );
    ensure!(
        !out.timed_out,
        "{from} → {SERVER} as {user}: no answer within {:?} (a hang, not a refusal): {message}",
        budget::ssh_session()
    );
    ensure!(out.code == Some(255), "{from} → {SERVER} as {user}: exit {:?}, not ssh's refusal (255): {message}", out.code);
    ensure!(
        expected.iter().any(|e| out.stderr.contains(e)),
        "{from} → {SERVER} as {user}: refused, but not with any of {expected:?}: {message}"
    );
    Ok(())
}

#[test]
fn a_node_the_ssh_rule_does_not_name_is_refused() -> Result<()> {
    let (lab, _one) = fixture::policy_lab();
    if builtin(lab).is_none() {
        return Ok(());
    }
    let server = server_answering(lab)?;
    // bob has no relationship with the server at all, so it is not even his peer: the refusal
    // comes from his own tailscaled, which has no route to the address (1.90.9, 1.98.10).
    ensure!(
        lab.client(OUTSIDER)?.status()?.peer(SERVER).is_none(),
        "{OUTSIDER} lists {SERVER} as a peer, which the policy hides"
    );
    refused(lab, OUTSIDER, policy::SSH_USER, &["connect: no route to host"])?;
    server.off()
}

#[test]
fn a_login_the_ssh_rule_does_not_list_is_refused() -> Result<()> {
    let (lab, _one) = fixture::policy_lab();
    if builtin(lab).is_none() {
        return Ok(());
    }
    let server = server_answering(lab)?;
    // The handshake completes; tailscaled's SSH server refuses the login by the policy.
    let said = format!("tailnet policy does not permit you to SSH as user \"{}\"", policy::SSH_OTHER_USER);
    refused(lab, ADMIN, policy::SSH_OTHER_USER, &[&said])?;
    server.off()
}

/// The grant client-3 holds must be exactly the rule's: alice's node addresses, as root only.
fn grants_the_admin_root(map: &Netmap, lab: &Lab) -> Result<()> {
    let admin: std::collections::BTreeSet<String> = lab.tailnet_ips(ADMIN)?.iter().cloned().collect();
    let root = serde_json::Map::from_iter([(policy::SSH_USER.to_string(), serde_json::Value::from(policy::SSH_USER))]);
    let grants = map.ssh_grants();
    ensure!(
        grants == vec![(admin.clone(), root.clone())],
        "{SERVER}'s SSH policy grants {grants:?}; the built-in rule means exactly {admin:?} as {root:?}"
    );
    Ok(())
}

/// Named so that it runs last of P9's: it rewrites the policy, and puts it back.
#[test]
fn the_ssh_rule_reaches_the_server_and_opens_no_port_of_its_own() -> Result<()> {
    let (lab, _one) = fixture::policy_lab();
    let Some(setup) = builtin(lab) else { return Ok(()) };
    let map = Netmap::of(lab, SERVER)?;
    grants_the_admin_root(&map, lab)?;
    ensure!(
        map.opens_tcp_port(policy::SSH_PORT),
        "{SERVER}'s packet filter does not open port {}, which the acls allow",
        policy::SSH_PORT
    );
    // The same policy without its acls rule for port 22: the ssh rule alone.
    let port_rule = format!("tag:server:{}", policy::SSH_PORT);
    let original = setup.text.clone();
    let without: String = original.lines().filter(|l| !l.contains(&port_rule)).map(|l| format!("{l}\n")).collect();
    ensure!(without.lines().count() + 1 == original.lines().count(), "the built-in policy has one line for {port_rule}");
    let restore = Undo::new("the lab's policy", || live::rewrite(lab, &original));
    live::rewrite(lab, &without)?;
    let map = poll::until(
        &format!("{SERVER}'s packet filter without port {}", policy::SSH_PORT),
        budget::policy_propagation(),
        || {
            let map = Netmap::of(lab, SERVER)?;
            if map.opens_tcp_port(policy::SSH_PORT) {
                bail!("port {} still open: {:?}", policy::SSH_PORT, map.filter);
            }
            Ok(map)
        },
    )?;
    // Still granted, yet no port: the finding, per version, in the README.
    grants_the_admin_root(&map, lab)?;
    say!(
        "headscale {}: the ssh rule reaches {SERVER} as its SSH policy, and its packet filter opens no port {} for it: {:?}",
        lab.record.tools.versions.headscale,
        policy::SSH_PORT,
        serde_json::to_string(&map.filter)?
    );
    live::rewrite(lab, &original)?;
    restore.done();
    poll::until(&format!("{SERVER}'s packet filter with port {} again", policy::SSH_PORT), budget::policy_propagation(), || {
        if !Netmap::of(lab, SERVER)?.opens_tcp_port(policy::SSH_PORT) {
            bail!("port {} not open yet", policy::SSH_PORT);
        }
        Ok(())
    })?;
    Ok(())
}
