//! Name resolution inside a host, two ways: through the system resolver (glibc, as every
//! program on the host resolves, via the resolv.conf tailscale manages) and straight at
//! MagicDNS's 100.100.100.100.

use crate::backend::Host;
use crate::lab::Lab;
use crate::poll;
use anyhow::{bail, Result};
use std::time::{Duration, Instant};

/// tailscale's MagicDNS resolver, on every node.
pub const MAGICDNS: &str = "100.100.100.100";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolver {
    /// `getent ahostsv4`: glibc with the host's resolv.conf and search domains.
    System,
    /// `dig +search @100.100.100.100`.
    MagicDns,
}

/// What one lookup gave, and how long it took (measured around the command, so an upper bound).
#[derive(Debug, Clone)]
pub struct Answer {
    pub addresses: Vec<String>,
    pub nxdomain: bool,
    pub took: Duration,
}

/// Look `name` up (IPv4) from `host`.
pub fn lookup(host: &dyn Host, resolver: Resolver, name: &str) -> Result<Answer> {
    match resolver {
        Resolver::System => {
            let (out, took) = host.run_timed(&["getent", "ahostsv4", name])?;
            // getent: 0 found, 2 not found; anything else is a failure of the lookup itself.
            let addresses = unique(out.stdout.lines().filter_map(|l| l.split_whitespace().next()));
            match out.code {
                Some(0) | Some(2) => Ok(Answer { nxdomain: out.code == Some(2), addresses, took }),
                _ => bail!("{}", out.describe_failure()),
            }
        }
        Resolver::MagicDns => {
            let server = format!("@{MAGICDNS}");
            // +search: a short name gets the host's search domain, as every resolver applies it.
            let argv = ["dig", &server, "+search", "+time=1", "+tries=1", "+noall", "+answer", "+comments", name, "A"];
            let (out, took) = host.run_timed(&argv)?;
            let out = out.check()?;
            let nxdomain = out.stdout.contains("status: NXDOMAIN");
            let addresses = unique(out.stdout.lines().filter(|l| !l.starts_with(';')).filter_map(|l| {
                let fields: Vec<&str> = l.split_whitespace().collect();
                (fields.len() >= 5 && fields[3] == "A").then(|| fields[4])
            }));
            Ok(Answer { addresses, nxdomain, took })
        }
    }
}

fn unique<'a>(items: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    for i in items {
        if !v.iter().any(|x| x == i) {
            v.push(i.to_string());
        }
    }
    v
}

/// Wait until every client of the mesh resolves `name` (through MagicDNS) to `want`, or to
/// nothing when `want` is `None`; how long that took.
pub fn await_everywhere(lab: &Lab, name: &str, want: Option<&str>, budget: Duration) -> Result<Duration> {
    let started = Instant::now();
    poll::until(&format!("every client resolving {name} to {want:?}"), budget, || {
        for from in lab.client_names() {
            let answer = lookup(lab.host(&from)?, Resolver::MagicDns, name)?;
            let ok = match want {
                Some(ip) => answer.addresses == [ip.to_string()],
                None => answer.addresses.is_empty(),
            };
            if !ok {
                bail!("{from} resolves {name} to {answer:?}");
            }
        }
        Ok(())
    })?;
    Ok(started.elapsed())
}
