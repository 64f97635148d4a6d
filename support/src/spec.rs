//! The lab, declared once as data: its subnets, its hosts by role and address, and the
//! names of the mesh. Backends build exactly this; scenarios name hosts by their role name.
//!
//! The data lives in `topology.json` at the repository's root, the one source of truth that
//! `nix/` reads too (`builtins.fromJSON`), so the backends cannot drift apart. Addresses there
//! are host numbers within a subnet: `MESH_SUBNET_A` / `MESH_SUBNET_B` move a whole subnet and
//! every host keeps its place in it.

use anyhow::{anyhow, bail, Context, Result};
use ipnet::Ipv4Net;
use once_cell::sync::Lazy;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::net::Ipv4Addr;

/// The topology file, compiled in: a harness always carries the topology it was built with.
pub const TOPOLOGY_JSON: &str = include_str!("../../topology.json");

/// The control server's name: the host part of headscale's `server_url`, covered by the lab's
/// own certificate. `.test` is reserved (RFC 2606) and never resolves outside the lab.
/// `server_name` in `topology.json`; loading the file checks they are the same.
pub const SERVER_NAME: &str = "headscale.lab.test";
/// MagicDNS base domain. It must differ from the server's domain (headscale refuses otherwise).
/// `base_domain` in `topology.json`; loading the file checks they are the same.
pub const BASE_DOMAIN: &str = "mesh.test";
/// The headscale user every client registers under. `user` in `topology.json`.
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
    /// The MAC address of its lab NIC, from `topology.json` (`52:54:00:…`, unique per host).
    /// Empty in the records of labs made before the topology file had MACs.
    #[serde(default)]
    pub mac: String,
    /// A client that exists from the start but joins the mesh only when a scenario says so.
    #[serde(default)]
    pub joins_later: bool,
}

/// A plain host on a subnet: no tailscale, no service, nothing but its kernel (which answers
/// pings). It stands for a machine on a LAN behind a subnet router (P8). Both backends make it
/// the same way, a network namespace on the router's bridge of its subnet
/// ([`crate::backend::netns::create_router`]), so it costs no VM.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LanHost {
    pub name: String,
    pub subnet: String,
    pub addr: Ipv4Addr,
}

/// `topology.json` as written: subnets by default CIDR, hosts by their number within a subnet.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    /// What the file is, for its readers.
    #[serde(default)]
    pub about: String,
    pub server_name: String,
    pub base_domain: String,
    pub user: String,
    pub subnets: Vec<TopologySubnet>,
    pub hosts: Vec<TopologyHost>,
    /// Plain hosts ([`LanHost`]); none is fine.
    #[serde(default)]
    pub lan_hosts: Vec<TopologyLanHost>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopologyLanHost {
    pub name: String,
    pub subnet: String,
    pub host_number: u32,
    /// What the host stands for, for the file's readers.
    #[serde(default)]
    pub about: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopologySubnet {
    /// `a` or `b`: `MESH_SUBNET_A` / `MESH_SUBNET_B` override its CIDR.
    pub name: String,
    pub default_cidr: String,
    pub masqueraded: bool,
    /// The router's host number within the subnet.
    pub router_host: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopologyHost {
    pub name: String,
    pub role: Role,
    pub subnet: String,
    /// The host's number within its subnet: its address is the subnet's network address plus this.
    pub host_number: u32,
    pub mac: String,
    #[serde(default)]
    pub joins_later: bool,
}

static TOPOLOGY: Lazy<Result<Topology, String>> = Lazy::new(|| Topology::parse(TOPOLOGY_JSON).map_err(|e| format!("{e:#}")));

/// The topology this harness was built with, parsed and checked once.
pub fn topology() -> Result<&'static Topology> {
    TOPOLOGY.as_ref().map_err(|e| anyhow!("{e}"))
}

impl Topology {
    /// Parse and check a topology file's text.
    pub fn parse(text: &str) -> Result<Topology> {
        let topology: Topology = serde_json::from_str(text).context("topology.json is not a valid topology")?;
        topology.check().context("topology.json")?;
        Ok(topology)
    }

    fn check(&self) -> Result<()> {
        for (field, in_file, in_harness) in [
            ("server_name", &self.server_name, SERVER_NAME),
            ("base_domain", &self.base_domain, BASE_DOMAIN),
            ("user", &self.user, USER),
        ] {
            if in_file != in_harness {
                bail!("{field} is {in_file:?} but the harness is built with {in_harness:?}: change both (support/src/spec.rs)");
            }
        }
        let names: Vec<&str> = self.subnets.iter().map(|s| s.name.as_str()).collect();
        if names != ["a", "b"] {
            bail!("its subnets are {names:?}: the lab has exactly two, \"a\" and then \"b\" (MESH_SUBNET_A, MESH_SUBNET_B)");
        }
        for s in &self.subnets {
            if s.router_host == 0 {
                bail!("subnet {}: router_host 0 is the network address itself", s.name);
            }
        }
        let (mut hosts, mut macs) = (BTreeSet::new(), BTreeSet::new());
        for h in &self.hosts {
            if !hosts.insert(h.name.as_str()) {
                bail!("host {:?} is listed twice", h.name);
            }
            // It becomes the host's hostname and a Nix attribute name (nix/flake.nix).
            let label = h.name.len() <= 63
                && h.name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !h.name.starts_with('-')
                && !h.name.ends_with('-');
            if !label {
                bail!("host name {:?} is not a hostname: use lowercase letters, digits and inner dashes", h.name);
            }
            let Some(subnet) = self.subnets.iter().find(|s| s.name == h.subnet) else {
                bail!("host {} is on subnet {:?}, which is not one of the lab's", h.name, h.subnet);
            };
            if h.host_number == 0 || h.host_number == subnet.router_host {
                bail!("host {} has host number {}, the subnet's network address or its router's", h.name, h.host_number);
            }
            if !is_unicast_mac(&h.mac) {
                bail!(
                    "host {} has MAC {:?}: write a unicast MAC as six lowercase hex pairs, e.g. 52:54:00:4d:0a:05",
                    h.name,
                    h.mac
                );
            }
            if !macs.insert(h.mac.as_str()) {
                bail!("host {} has MAC {}, which another host has too", h.name, h.mac);
            }
        }
        for l in &self.lan_hosts {
            if !hosts.insert(l.name.as_str()) {
                bail!("host {:?} is listed twice", l.name);
            }
            let Some(subnet) = self.subnets.iter().find(|s| s.name == l.subnet) else {
                bail!("LAN host {} is on subnet {:?}, which is not one of the lab's", l.name, l.subnet);
            };
            let taken = self.hosts.iter().any(|h| h.subnet == l.subnet && h.host_number == l.host_number);
            if l.host_number == 0 || l.host_number == subnet.router_host || taken {
                bail!("LAN host {} has host number {}, which is taken on subnet {}", l.name, l.host_number, l.subnet);
            }
        }
        let servers = self.hosts.iter().filter(|h| h.role == Role::Server).count();
        if servers != 1 {
            bail!("it has {servers} hosts with role \"server\": a lab has exactly one");
        }
        Ok(())
    }
}

/// Six lowercase hex pairs separated by colons, the group bit clear.
fn is_unicast_mac(mac: &str) -> bool {
    let pairs: Vec<&str> = mac.split(':').collect();
    pairs.len() == 6
        && pairs.iter().all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)))
        && u8::from_str_radix(pairs[0], 16).is_ok_and(|b| b & 1 == 0)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabSpec {
    pub subnets: Vec<Subnet>,
    pub hosts: Vec<HostSpec>,
    /// Plain hosts on the subnets; none in the records of labs made before they existed.
    #[serde(default)]
    pub lan_hosts: Vec<LanHost>,
}

/// `default_cidr` of subnet `a` in `topology.json` (a unit test checks they are the same).
pub const DEFAULT_SUBNET_A: &str = "192.168.1.0/24";
/// `default_cidr` of subnet `b` in `topology.json` (a unit test checks they are the same).
pub const DEFAULT_SUBNET_B: &str = "10.0.0.0/24";

impl LabSpec {
    /// The plan's lab, from `topology.json`: subnet A holds the server (.5) and client-1 (.10);
    /// subnet B, behind NAT, holds client-2 (.10), client-3 (.11) and client-4 (.12), which
    /// joins at run time (P4). The router is .1 on both. Host numbers are offsets into
    /// whatever subnets are given here.
    pub fn new(subnet_a: &str, subnet_b: &str) -> Result<LabSpec> {
        let topology = topology()?;
        let a = parse_subnet("subnet A", "MESH_SUBNET_A", subnet_a)?;
        let b = parse_subnet("subnet B", "MESH_SUBNET_B", subnet_b)?;
        if a.contains(&b.network()) || b.contains(&a.network()) {
            bail!("subnet A {a} and subnet B {b} overlap: choose two disjoint subnets (MESH_SUBNET_A, MESH_SUBNET_B)");
        }
        let net_of = |name: &str| if name == "a" { a } else { b };
        let at = |what: &str, subnet: &str, n: u32| -> Result<Ipv4Addr> {
            let net = net_of(subnet);
            // Neither the network address nor the broadcast address.
            if n == 0 || u64::from(n) + 1 >= 1u64 << (32 - net.prefix_len()) {
                let var = format!("MESH_SUBNET_{}", subnet.to_uppercase());
                bail!(
                    "{what} is host {n} of subnet {}, which {net} does not have: choose a larger subnet ({var})",
                    subnet.to_uppercase()
                );
            }
            Ok(Ipv4Addr::from(u32::from(net.network()) + n))
        };
        let subnets = topology
            .subnets
            .iter()
            .map(|s| {
                let router = at("the router", &s.name, s.router_host)?;
                Ok(Subnet { name: s.name.clone(), net: net_of(&s.name), router, masqueraded: s.masqueraded })
            })
            .collect::<Result<_>>()?;
        let hosts = topology
            .hosts
            .iter()
            .map(|h| {
                Ok(HostSpec {
                    name: h.name.clone(),
                    role: h.role,
                    subnet: h.subnet.clone(),
                    addr: at(&h.name, &h.subnet, h.host_number)?,
                    mac: h.mac.clone(),
                    joins_later: h.joins_later,
                })
            })
            .collect::<Result<_>>()?;
        let lan_hosts = topology
            .lan_hosts
            .iter()
            .map(|l| Ok(LanHost { name: l.name.clone(), subnet: l.subnet.clone(), addr: at(&l.name, &l.subnet, l.host_number)? }))
            .collect::<Result<_>>()?;
        Ok(LabSpec { subnets, hosts, lan_hosts })
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

    /// A plain host on a subnet ([`LanHost`]), by name.
    pub fn lan_host(&self, name: &str) -> Result<&LanHost> {
        self.lan_hosts.iter().find(|h| h.name == name).with_context(|| {
            let names: Vec<_> = self.lan_hosts.iter().map(|h| h.name.as_str()).collect();
            format!("no LAN host named {name:?} in this lab; its LAN hosts are [{}] (topology.json, lan_hosts)", names.join(", "))
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
        assert_eq!(spec.lan_host("lan-1").unwrap().addr.to_string(), "10.0.0.13");
        assert_eq!(spec.lan_host("lan-1").unwrap().subnet, "b");
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

    /// Address `n` of `cidr`, worked out here from the text alone, not by the code under test.
    fn nth(cidr: &str, n: u64) -> String {
        let base = cidr.split('/').next().unwrap();
        let value = base.split('.').fold(0u64, |acc, octet| acc * 256 + octet.parse::<u64>().unwrap()) + n;
        format!("{}.{}.{}.{}", value >> 24 & 255, value >> 16 & 255, value >> 8 & 255, value & 255)
    }

    /// topology.json read as plain JSON (as Nix reads it) against the Rust topology: every
    /// subnet, host, address, MAC and name, in order.
    #[test]
    fn the_topology_file_and_the_rust_topology_agree() {
        let file: serde_json::Value = serde_json::from_str(TOPOLOGY_JSON).unwrap();
        assert_eq!(file["server_name"], SERVER_NAME);
        assert_eq!(file["base_domain"], BASE_DOMAIN);
        assert_eq!(file["user"], USER);
        let spec = LabSpec::new(DEFAULT_SUBNET_A, DEFAULT_SUBNET_B).unwrap();
        assert_eq!(spec.server_url(), format!("https://{}", file["server_name"].as_str().unwrap()));

        let subnets = file["subnets"].as_array().unwrap();
        assert_eq!(subnets.len(), spec.subnets.len());
        for (json, rust) in subnets.iter().zip(&spec.subnets) {
            let cidr = json["default_cidr"].as_str().unwrap();
            assert_eq!(json["name"], rust.name.as_str());
            assert_eq!(cidr, rust.net.to_string());
            assert_eq!(json["masqueraded"], rust.masqueraded);
            assert_eq!(nth(cidr, json["router_host"].as_u64().unwrap()), rust.router.to_string());
        }
        assert_eq!(subnets[0]["default_cidr"], DEFAULT_SUBNET_A);
        assert_eq!(subnets[1]["default_cidr"], DEFAULT_SUBNET_B);

        let hosts = file["hosts"].as_array().unwrap();
        assert_eq!(hosts.len(), spec.hosts.len());
        for (json, rust) in hosts.iter().zip(&spec.hosts) {
            let subnet = subnets.iter().find(|s| s["name"] == json["subnet"]).unwrap();
            let cidr = subnet["default_cidr"].as_str().unwrap();
            assert_eq!(json["name"], rust.name.as_str());
            assert_eq!(json["role"], serde_json::to_value(rust.role).unwrap());
            assert_eq!(json["subnet"], rust.subnet.as_str());
            assert_eq!(nth(cidr, json["host_number"].as_u64().unwrap()), rust.addr.to_string(), "{}", rust.name);
            assert_eq!(json["mac"], rust.mac.as_str());
            assert_eq!(json["joins_later"].as_bool().unwrap_or(false), rust.joins_later);
        }

        // The plan's five hosts, as the README's table gives them.
        let rows: Vec<(String, String, String, bool)> =
            spec.hosts.iter().map(|h| (h.name.clone(), h.subnet.clone(), h.addr.to_string(), h.joins_later)).collect();
        let want = [
            ("headscale", "a", "192.168.1.5", false),
            ("client-1", "a", "192.168.1.10", false),
            ("client-2", "b", "10.0.0.10", false),
            ("client-3", "b", "10.0.0.11", false),
            ("client-4", "b", "10.0.0.12", true),
        ];
        let want: Vec<(String, String, String, bool)> =
            want.iter().map(|(n, s, a, l)| (n.to_string(), s.to_string(), a.to_string(), *l)).collect();
        assert_eq!(rows, want);
        assert_eq!(spec.server().name, "headscale");
    }

    /// nix/lib/topology.nix, which the NixOS hosts are built from, reads the file the same way:
    /// evaluated by Nix itself. Needs `nix-instantiate` (CI installs it for .ci/nix-parse);
    /// without it the test says it is skipped.
    #[test]
    fn nix_reads_the_same_topology() {
        let on_path =
            std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("nix-instantiate").is_file()));
        if !on_path {
            eprintln!("skipped: nix-instantiate is not installed (.ci/nix-parse installs it)");
            return;
        }
        let file = concat!(env!("CARGO_MANIFEST_DIR"), "/../nix/lib/topology.nix");
        let mut cmd = std::process::Command::new("nix-instantiate");
        cmd.args(["--eval", "--strict", "--json", file]).env("NIX_CONFIG", "build-users-group =");
        let out = crate::exec::run("this machine", "nix-instantiate --eval", cmd, None, std::time::Duration::from_secs(60))
            .unwrap()
            .check()
            .unwrap();
        let nix: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        let spec = LabSpec::new(DEFAULT_SUBNET_A, DEFAULT_SUBNET_B).unwrap();
        assert_eq!(nix["server_name"], SERVER_NAME);
        assert_eq!(nix["base_domain"], BASE_DOMAIN);
        assert_eq!(nix["user"], USER);
        assert_eq!(nix["serverUrl"], spec.server_url());
        assert_eq!(nix["server"]["name"], spec.server().name.as_str());
        for s in &spec.subnets {
            let n = &nix["subnets"][&s.name];
            assert_eq!(n["router"], s.router.to_string());
            assert_eq!(n["prefixLength"], s.net.prefix_len());
            assert_eq!(n["masqueraded"], s.masqueraded);
        }
        let hosts = nix["hosts"].as_array().unwrap();
        assert_eq!(hosts.len(), spec.hosts.len());
        for (n, h) in hosts.iter().zip(&spec.hosts) {
            assert_eq!(n["name"], h.name.as_str());
            assert_eq!(n["address"], h.addr.to_string(), "{}", h.name);
            assert_eq!(n["mac"], h.mac.as_str());
            assert_eq!(n["role"], serde_json::to_value(h.role).unwrap());
            assert_eq!(n["subnet"], h.subnet.as_str());
            assert_eq!(n["joins_later"], h.joins_later);
        }
    }

    #[test]
    fn every_host_has_its_own_qemu_mac() {
        let spec = LabSpec::new(DEFAULT_SUBNET_A, DEFAULT_SUBNET_B).unwrap();
        let macs: BTreeSet<&str> = spec.hosts.iter().map(|h| h.mac.as_str()).collect();
        assert_eq!(macs.len(), spec.hosts.len(), "{macs:?}");
        for h in &spec.hosts {
            assert!(h.mac.starts_with("52:54:00:") && is_unicast_mac(&h.mac), "{}: {}", h.name, h.mac);
        }
    }

    #[test]
    fn host_numbers_are_offsets_into_the_configured_subnets() {
        let spec = LabSpec::new("172.30.1.0/24", "172.30.2.16/28").unwrap();
        let addr = |n| spec.host(n).unwrap().addr.to_string();
        assert_eq!(addr("headscale"), "172.30.1.5");
        assert_eq!(addr("client-1"), "172.30.1.10");
        assert_eq!(addr("client-2"), "172.30.2.26");
        assert_eq!(addr("client-4"), "172.30.2.28");
        assert_eq!(spec.subnet("b").router.to_string(), "172.30.2.17");
        assert_eq!(spec.host("client-3").unwrap().mac, "52:54:00:4d:0b:0b", "MACs do not depend on the subnets");
    }

    #[test]
    fn a_bad_topology_file_is_refused_with_the_reason() {
        use serde_json::Value;
        let good: Value = serde_json::from_str(TOPOLOGY_JSON).unwrap();
        let refused = |edit: &dyn Fn(&mut Value), says: &str| {
            let mut t = good.clone();
            edit(&mut t);
            let err = format!("{:#}", Topology::parse(&t.to_string()).unwrap_err());
            assert!(err.contains(says), "expected {says:?} in: {err}");
        };
        refused(&|t| t["hosts"][1]["mac"] = t["hosts"][0]["mac"].clone(), "another host has too");
        refused(&|t| t["hosts"][1]["mac"] = "52:54:00:4D:0A:0A".into(), "lowercase");
        refused(&|t| t["hosts"][1]["name"] = "headscale".into(), "listed twice");
        refused(&|t| t["hosts"][1]["name"] = "Client_1".into(), "not a hostname");
        refused(&|t| t["hosts"][1]["subnet"] = "c".into(), "not one of the lab's");
        refused(&|t| t["lan_hosts"][0]["name"] = "client-1".into(), "listed twice");
        refused(&|t| t["lan_hosts"][0]["host_number"] = 10.into(), "taken on subnet b");
        refused(&|t| t["lan_hosts"][0]["subnet"] = "c".into(), "not one of the lab's");
        refused(&|t| t["base_domain"] = "lab.test".into(), "harness is built with");
        refused(&|t| t["hosts"][0]["color"] = "blue".into(), "unknown field");
        assert!(Topology::parse(TOPOLOGY_JSON).is_ok());
    }
}
