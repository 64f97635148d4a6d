//! Tailscale SSH (P9): tailscaled's own SSH server on a client (`tailscale set --ssh`), and a
//! command run on it from another client with the system `ssh`, its connection carried by
//! `tailscale nc` (what `tailscale ssh` itself sets up), so no sshd is involved at either end
//! and no file of this machine's `~/.ssh` is read or written.

use crate::exec::Output;
use crate::lab::Lab;
use crate::{budget, policy};
use anyhow::{Context, Result};
use serde_json::Value;

/// How tailscaled's SSH server names itself in its version banner (`SSH-2.0-Tailscale`):
/// `ssh -v` prints it as the remote software version. An sshd would say `OpenSSH_…`.
pub const BANNER: &str = "remote software version Tailscale";

/// The policy's `ssh` section, if it has one with at least one rule.
pub fn rules(setup: &policy::PolicySetup) -> Option<Vec<Value>> {
    match setup.value().get("ssh") {
        Some(Value::Array(rules)) if !rules.is_empty() => Some(rules.clone()),
        _ => None,
    }
}

/// tailscaled's SSH server on `host`, on until dropped (or [`SshServer::off`]).
pub struct SshServer<'a> {
    lab: &'a Lab,
    host: String,
}

impl<'a> SshServer<'a> {
    /// `tailscale set --ssh` on `host`, once.
    pub fn on(lab: &'a Lab, host: &str) -> Result<SshServer<'a>> {
        lab.client(host)?.cli(&["set", "--ssh"])?.check().with_context(|| format!("turning on Tailscale SSH on {host}"))?;
        Ok(SshServer { lab, host: host.to_string() })
    }

    fn set_off(&self) -> Result<()> {
        self.lab.client(&self.host)?.cli(&["set", "--ssh=false"])?.check()?;
        Ok(())
    }

    /// Turn it off now, reporting failure (dropping it would only log).
    pub fn off(self) -> Result<()> {
        let r = self.set_off();
        std::mem::forget(self);
        r
    }
}

impl Drop for SshServer<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.set_off() {
            crate::say!("could not turn Tailscale SSH off on {}: {e:#}", self.host);
        }
    }
}

/// Run `command` (a shell line) on `to` as `user`, from `from`, through Tailscale SSH, once,
/// within [`budget::ssh_session`]: its output whatever its exit status (255: ssh's own
/// failure, such as a refusal). `-v`, so its stderr shows the server's banner ([`BANNER`]).
pub fn run(lab: &Lab, from: &str, user: &str, to: &str, command: &str) -> Result<Output> {
    let client = lab.client(from)?;
    let address = lab.tailnet_ipv4(to)?;
    let proxy = format!("ProxyCommand={} --socket={} nc %h %p", client.tailscale, client.socket());
    let connect = format!("ConnectTimeout={}", budget::whole_seconds(budget::ssh_session()));
    let argv = [
        "ssh",
        "-v",
        // No configuration, no keys, no known hosts of this machine: tailscaled's SSH server
        // authenticates by the tailnet identity alone, and its host key is the lab's.
        "-F",
        "/dev/null",
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "GlobalKnownHostsFile=/dev/null",
        "-o",
        &connect,
        "-o",
        &proxy,
        "-l",
        user,
        &address,
        "--",
        command,
    ];
    lab.host(from)?.exec(&argv, None, budget::ssh_session())
}

/// The lines of `ssh -v`'s stderr that are not its debug chatter: what a refusal says.
pub fn message(out: &Output) -> String {
    out.stderr.lines().filter(|l| !l.starts_with("debug") && !l.trim().is_empty()).collect::<Vec<_>>().join(" | ")
}
