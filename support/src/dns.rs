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

/// What one lookup gave, and how long it took: dig's own query time (from its question sent to
/// the answer), or, for the system resolver, the `getent` command timed inside the host (its
/// start-up included, so an upper bound). dig's start-up is not a lookup: under TCG, loading
/// it takes 0.5–1.6 s of an emulated CPU where its query takes milliseconds.
#[derive(Debug, Clone)]
pub struct Answer {
    pub addresses: Vec<String>,
    pub nxdomain: bool,
    pub took: Duration,
}

/// Look `name` up (IPv4) from `host`.
pub fn lookup(host: &dyn Host, resolver: Resolver, name: &str) -> Result<Answer> {
    lookup_as(host, resolver, name, "A")
}

/// Look `name` up from `host` as a record of `kind`: `A` (IPv4) or `AAAA` (IPv6).
pub fn lookup_as(host: &dyn Host, resolver: Resolver, name: &str, kind: &str) -> Result<Answer> {
    let database = match kind {
        "A" => "ahostsv4",
        "AAAA" => "ahostsv6",
        other => bail!("a lookup of a {other} record: only A and AAAA are looked up"),
    };
    match resolver {
        Resolver::System => {
            let (out, took) = host.run_timed(&["getent", database, name])?;
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
            let time = format!("+time={}", crate::budget::whole_seconds(crate::budget::dns_query()));
            let argv = ["dig", &server, "+search", &time, "+tries=1", "+noall", "+answer", "+comments", "+stats", name, kind];
            let (out, around) = host.run_timed(&argv)?;
            let out = out.check()?;
            let took = query_time(&out.stdout).unwrap_or(around);
            let nxdomain = out.stdout.contains("status: NXDOMAIN");
            let addresses = unique(out.stdout.lines().filter(|l| !l.starts_with(';')).filter_map(|l| {
                let fields: Vec<&str> = l.split_whitespace().collect();
                (fields.len() >= 5 && fields[3] == kind).then(|| fields[4])
            }));
            Ok(Answer { addresses, nxdomain, took })
        }
    }
}

/// dig's `;; Query time: 3 msec`.
fn query_time(dig_output: &str) -> Option<Duration> {
    let line = dig_output.lines().find_map(|l| l.strip_prefix(";; Query time: "))?;
    line.strip_suffix(" msec")?.trim().parse().ok().map(Duration::from_millis)
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
    let clients = lab.client_names();
    poll::until(&format!("every client resolving {name} to {want:?}"), budget, || {
        // Every client asked at once: the figure is when the last one agrees, not the sum.
        crate::fanout::all("lookup", &clients, |from| {
            let answer = lookup(lab.host(from)?, Resolver::MagicDns, name)?;
            let ok = match want {
                Some(ip) => answer.addresses == [ip.to_string()],
                None => answer.addresses.is_empty(),
            };
            if !ok {
                bail!("{from} resolves {name} to {answer:?}");
            }
            Ok(())
        })
        .map(|_| ())
    })?;
    Ok(started.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dig_says_how_long_its_query_took() {
        let out = ";; ANSWER SECTION:\nclient-2.mesh.test.\t600\tIN\tA\t100.64.0.2\n\n;; Query time: 3 msec\n;; SERVER: 100.100.100.100#53(100.100.100.100) (UDP)\n";
        assert_eq!(query_time(out), Some(Duration::from_millis(3)));
        assert_eq!(query_time(";; ANSWER SECTION:\n"), None);
    }
}
