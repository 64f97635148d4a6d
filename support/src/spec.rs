//! The lab, declared once as data: its subnets, its hosts by role and address, and the
//! names of the mesh. Backends build exactly this; scenarios name hosts by their role name.

use anyhow::{bail, Context, Result};
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;

/// The control server's name: the host part of headscale's `server_url`, covered by the lab's
/// own certificate. `.test` is reserved (RFC 2606) and never resolves outside the lab.
pub const SERVER_NAME: &str = "headscale.lab.test";
/// MagicDNS base domain. It must differ from the server's domain (headscale refuses otherwise).
pub const BASE_DOMAIN: &str = "mesh.test";
/// The headscale user every client registers under.
pub const USER: &str = "lab";
/// Tailscale's CGNAT range: an underlay subnet inside it would shadow tailnet routes.
const TAILNET_V4: &str = "100.64.0.0/10";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Server,
    Client,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Subnet {
    /// `a` or `b`; also the name of its bridge (`br-a`) in the router.
    pub name: String,
    pub net: Ipv4Net,
    /// The router's own address on this subnet; hosts route through it.
    pub router: Ipv4Addr,
    /// Hidden behind the router's masquerade (a home network behind NAT).
    pub masqueraded: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostSpec {
    pub name: String,
    pub role: Role,
    pub subnet: String,
    pub addr: Ipv4Addr,
    /// A client that exists from the start but joins the mesh only when a scenario says so.
    #[serde(default)]
    pub joins_later: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabSpec {
    pub subnets: Vec<Subnet>,
    pub hosts: Vec<HostSpec>,
}

pub const DEFAULT_SUBNET_A: &str = "192.168.1.0/24";
pub const DEFAULT_SUBNET_B: &str = "10.0.0.0/24";

impl LabSpec {
    /// The plan's lab: subnet A holds the server (.5) and client-1 (.10); subnet B, behind
    /// NAT, holds client-2 (.10) and client-3 (.11). The router is .1 on both.
    pub fn new(subnet_a: &str, subnet_b: &str) -> Result<LabSpec> {
        let a = parse_subnet("subnet A", "MESH_SUBNET_A", subnet_a)?;
        let b = parse_subnet("subnet B", "MESH_SUBNET_B", subnet_b)?;
        if a.contains(&b.network()) || b.contains(&a.network()) {
            bail!("subnet A {a} and subnet B {b} overlap: choose two disjoint subnets (MESH_SUBNET_A, MESH_SUBNET_B)");
        }
        let at = |net: Ipv4Net, n: u32| Ipv4Addr::from(u32::from(net.network()) + n);
        let subnet = |name: &str, net: Ipv4Net, masqueraded| Subnet { name: name.into(), net, router: at(net, 1), masqueraded };
        let host = |name: &str, role, subnet: &str, net, n| HostSpec {
            name: name.into(),
            role,
            subnet: subnet.into(),
            addr: at(net, n),
            joins_later: false,
        };
        Ok(LabSpec {
            subnets: vec![subnet("a", a, false), subnet("b", b, true)],
            hosts: vec![
                host("headscale", Role::Server, "a", a, 5),
                host("client-1", Role::Client, "a", a, 10),
                host("client-2", Role::Client, "b", b, 10),
                host("client-3", Role::Client, "b", b, 11),
                // Joins at run time (P4): a node that arrives after the mesh formed.
                HostSpec { joins_later: true, ..host("client-4", Role::Client, "b", b, 12) },
            ],
        })
    }

    /// The spec from `MESH_SUBNET_A` / `MESH_SUBNET_B`, or the plan's defaults.
    pub fn from_env() -> Result<LabSpec> {
        let a = std::env::var("MESH_SUBNET_A").unwrap_or_else(|_| DEFAULT_SUBNET_A.into());
        let b = std::env::var("MESH_SUBNET_B").unwrap_or_else(|_| DEFAULT_SUBNET_B.into());
        LabSpec::new(&a, &b)
    }

    pub fn host(&self, name: &str) -> Result<&HostSpec> {
        self.hosts.iter().find(|h| h.name == name).with_context(|| {
            let names: Vec<_> = self.hosts.iter().map(|h| h.name.as_str()).collect();
            format!("no host named {name:?} in this lab; its hosts are {}", names.join(", "))
        })
    }

    pub fn subnet(&self, name: &str) -> &Subnet {
        self.subnets.iter().find(|s| s.name == name).expect("a host's subnet is one of the lab's")
    }

    pub fn server(&self) -> &HostSpec {
        self.hosts.iter().find(|h| h.role == Role::Server).expect("a lab has a server")
    }

    /// The clients that form the mesh from the start.
    pub fn clients(&self) -> impl Iterator<Item = &HostSpec> {
        self.hosts.iter().filter(|h| h.role == Role::Client && !h.joins_later)
    }

    /// The clients that join only when a scenario makes them.
    pub fn late_clients(&self) -> impl Iterator<Item = &HostSpec> {
        self.hosts.iter().filter(|h| h.role == Role::Client && h.joins_later)
    }

    /// The underlay address `from` should reach `to` at on a direct path: `to`'s own address
    /// on a shared subnet or when `to` is not behind NAT; the router's address on `from`'s
    /// subnet when `to` is behind the router's masquerade.
    pub fn direct_endpoint(&self, from: &str, to: &str) -> Result<Ipv4Addr> {
        let (from, to) = (self.host(from)?, self.host(to)?);
        let to_subnet = self.subnet(&to.subnet);
        if from.subnet == to.subnet || !to_subnet.masqueraded {
            Ok(to.addr)
        } else {
            Ok(self.subnet(&from.subnet).router)
        }
    }

    /// The two hosts are on different subnets: their traffic crosses the router.
    pub fn across_router(&self, a: &str, b: &str) -> Result<bool> {
        Ok(self.host(a)?.subnet != self.host(b)?.subnet)
    }

    pub fn server_url(&self) -> String {
        format!("https://{SERVER_NAME}")
    }
}

fn parse_subnet(what: &str, var: &str, text: &str) -> Result<Ipv4Net> {
    let net: Ipv4Net = text.trim().parse().map_err(|_| {
        anyhow::anyhow!("{what} {text:?} is not an IPv4 subnet: write it as address/prefix, e.g. {var}=172.30.1.0/24")
    })?;
    if !(16..=28).contains(&net.prefix_len()) {
        bail!("{what} {net} has a /{} prefix: use a prefix from /16 to /28 ({var})", net.prefix_len());
    }
    if net.addr() != net.network() {
        bail!("{what} {net} has host bits set: did you mean {}? ({var})", net.trunc());
    }
    let tailnet: Ipv4Net = TAILNET_V4.parse().unwrap();
    if tailnet.contains(&net.network()) || net.contains(&tailnet.network()) {
        bail!("{what} {net} overlaps the tailnet's own range {TAILNET_V4}: choose another ({var})");
    }
    if net.network().is_loopback() || net.network().is_multicast() || net.network().is_link_local() {
        bail!("{what} {net} is not a usable LAN range: choose a private range such as 172.30.1.0/24 ({var})");
    }
    Ok(net)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_lab_is_the_plans() {
        let spec = LabSpec::new(DEFAULT_SUBNET_A, DEFAULT_SUBNET_B).unwrap();
        let addr = |n| spec.host(n).unwrap().addr.to_string();
        assert_eq!(addr("headscale"), "192.168.1.5");
        assert_eq!(addr("client-1"), "192.168.1.10");
        assert_eq!(addr("client-2"), "10.0.0.10");
        assert_eq!(addr("client-3"), "10.0.0.11");
        assert!(spec.subnet("b").masqueraded && !spec.subnet("a").masqueraded);
        assert_eq!(spec.clients().count(), 3);
        assert_eq!(spec.late_clients().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["client-4"]);
        assert_eq!(spec.host("client-4").unwrap().addr.to_string(), "10.0.0.12");
    }

    #[test]
    fn bad_subnets_are_refused_with_the_fix() {
        for (a, b, says) in [
            ("192.168.1.0/24", "192.168.0.0/16", "overlap"),
            ("nonsense", "10.0.0.0/24", "not an IPv4 subnet"),
            ("192.168.1.7/24", "10.0.0.0/24", "did you mean 192.168.1.0/24"),
            ("100.100.0.0/24", "10.0.0.0/24", "tailnet"),
            ("10.0.0.0/30", "10.1.0.0/24", "prefix"),
        ] {
            let err = LabSpec::new(a, b).unwrap_err().to_string();
            assert!(err.contains(says), "{a} {b}: {err}");
        }
    }

    #[test]
    fn direct_paths_go_through_the_nat_only_towards_subnet_b() {
        let spec = LabSpec::new(DEFAULT_SUBNET_A, DEFAULT_SUBNET_B).unwrap();
        let at = |a, b| spec.direct_endpoint(a, b).unwrap().to_string();
        assert_eq!(at("client-2", "client-3"), "10.0.0.11");
        assert_eq!(at("client-2", "client-1"), "192.168.1.10");
        assert_eq!(at("client-1", "client-2"), "192.168.1.1", "client-2 is seen at the router's NAT address");
    }

    #[test]
    fn unknown_hosts_are_named_with_the_real_ones() {
        let spec = LabSpec::new(DEFAULT_SUBNET_A, DEFAULT_SUBNET_B).unwrap();
        assert!(spec.host("client-9").unwrap_err().to_string().contains("client-1, client-2"));
    }
}
