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
        lab.client(host)?.set(&["--ssh"]).with_context(|| format!("turning on Tailscale SSH on {host}"))?;
        Ok(SshServer { lab, host: host.to_string() })
    }

    fn set_off(&self) -> Result<()> {
        self.lab.client(&self.host)?.set(&["--ssh=false"])
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

/// What tailscaled on a client holds from the control server for Tailscale SSH and its packet
/// filter (`tailscale debug netmap`: `SSHPolicy` and `PacketFilterRules`, the same fields in
/// 1.90.9 and 1.98.10).
pub struct Netmap {
    pub ssh_rules: Vec<Value>,
    pub filter: Vec<Value>,
}

impl Netmap {
    /// `tailscale debug netmap` on `host`, once.
    pub fn of(lab: &Lab, host: &str) -> Result<Netmap> {
        let out = lab.client(host)?.cli(&["debug", "netmap"])?.check()?;
        let map: Value = serde_json::from_str(&out.stdout).with_context(|| format!("{host}'s netmap is not JSON"))?;
        let list = |v: Option<&Value>| v.and_then(Value::as_array).cloned().unwrap_or_default();
        Ok(Netmap { ssh_rules: list(map.pointer("/SSHPolicy/rules")), filter: list(map.get("PacketFilterRules")) })
    }

    /// Whether any rule of the packet filter lets some source reach `port` over TCP (or any
    /// protocol, where a rule names none).
    pub fn opens_tcp_port(&self, port: u16) -> bool {
        self.filter.iter().any(|rule| {
            let protos = rule.get("IPProto").and_then(Value::as_array);
            let tcp = protos.is_none_or(|p| p.is_empty() || p.iter().any(|n| n.as_u64() == Some(6)));
            let ports = rule.get("DstPorts").and_then(Value::as_array).cloned().unwrap_or_default();
            tcp && ports.iter().any(|d| {
                let first = d.pointer("/Ports/First").and_then(Value::as_u64).unwrap_or(0);
                let last = d.pointer("/Ports/Last").and_then(Value::as_u64).unwrap_or(0);
                (first..=last).contains(&u64::from(port))
            })
        })
    }

    /// Every SSH rule's principals (node IPs, without a prefix length) and its logins (local
    /// user → the user it runs as), in order.
    pub fn ssh_grants(&self) -> Vec<(std::collections::BTreeSet<String>, serde_json::Map<String, Value>)> {
        self.ssh_rules
            .iter()
            .map(|r| {
                let principals = r
                    .get("principals")
                    .and_then(Value::as_array)
                    .map(|ps| {
                        ps.iter()
                            .filter_map(|p| p.get("nodeIP").and_then(Value::as_str))
                            .map(|ip| ip.split('/').next().unwrap_or(ip).to_string())
                            .collect()
                    })
                    .unwrap_or_default();
                let users = r.get("sshUsers").and_then(Value::as_object).cloned().unwrap_or_default();
                (principals, users)
            })
            .collect()
    }
}
