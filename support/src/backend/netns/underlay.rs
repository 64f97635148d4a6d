//! The router and links of a netns lab: the firewall that forces DERP, link cuts, captures.

use super::{in_namespace, ip, NetnsRecord};
use crate::backend::{Capture, Captured, Underlay};
use crate::exec::{self, Output};
use crate::process::{Lifetime, ProcessId};
use crate::spec::LabSpec;
use crate::{budget, say};
use anyhow::{anyhow, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

/// UDP between the subnets dropped, STUN to and from the server kept: a firewall that forces
/// DERP. A table of its own, ahead of the router's, so removing it restores the router as it was.
const BLOCK_TABLE: &str = "mesh_block";

fn block_ruleset(spec: &LabSpec) -> String {
    let server = spec.server().addr;
    let stun = crate::headscale::STUN_PORT;
    let mut rules = format!(
        "table ip {BLOCK_TABLE} {{\n  chain forward {{\n    type filter hook forward priority -10; policy accept;\n    \
         ip daddr {server} udp dport {stun} accept\n    ip saddr {server} udp sport {stun} accept\n"
    );
    for from in &spec.subnets {
        for to in spec.subnets.iter().filter(|t| t.name != from.name) {
            rules += &format!("    iifname \"br-{}\" oifname \"br-{}\" meta l4proto udp drop\n", from.name, to.name);
        }
    }
    rules + "  }\n}\n"
}

/// The router and links of a netns lab.
pub struct NetnsUnderlay {
    record: NetnsRecord,
    router: String,
    spec: LabSpec,
    captures: PathBuf,
}

impl NetnsUnderlay {
    pub fn new(record: &NetnsRecord, spec: &LabSpec, lab_dir: &Path) -> NetnsUnderlay {
        NetnsUnderlay {
            record: record.clone(),
            router: record.router.clone(),
            spec: spec.clone(),
            captures: lab_dir.join("captures"),
        }
    }
}

impl Underlay for NetnsUnderlay {
    fn block_udp_between_subnets(&self, blocked: bool) -> Result<()> {
        let tables = in_namespace(&self.record, &self.router, &["nft", "list", "tables"], None)?.stdout;
        let present = tables.lines().any(|l| l.trim() == format!("table ip {BLOCK_TABLE}"));
        match (blocked, present) {
            (true, false) => {
                in_namespace(&self.record, &self.router, &["nft", "-f", "-"], Some(block_ruleset(&self.spec).as_bytes()))?
            }
            (false, true) => in_namespace(&self.record, &self.router, &["nft", "delete", "table", "ip", BLOCK_TABLE], None)?,
            _ => return Ok(()),
        };
        say!("router: UDP between the subnets {}", if blocked { "blocked (STUN to the server kept)" } else { "allowed again" });
        Ok(())
    }

    fn set_link(&self, host: &str, up: bool) -> Result<()> {
        self.spec.host(host)?;
        ip(&self.record, &["-n", &self.router, "link", "set", &format!("v-{host}"), if up { "up" } else { "down" }])?;
        say!("{host}: underlay link {}", if up { "up" } else { "down" });
        Ok(())
    }

    fn capture(&self, filter: &str) -> Result<Box<dyn Capture>> {
        std::fs::create_dir_all(&self.captures)?;
        let n = std::fs::read_dir(&self.captures)?.count();
        let path = self.captures.join(format!("capture-{n}.pcap"));
        let log = self.captures.join(format!("capture-{n}.log"));
        let net = format!("--net=/run/netns/{}", self.router);
        let shown = path.display().to_string();
        // Immediate mode: packets still in the kernel's ring when tcpdump is stopped would be
        // lost. Its ring has a slot per packet sized by the snap length: the default 256 KiB
        // leaves a handful of slots, and a busy CPU overflows them. 2 KiB holds any packet
        // of this lab (MTU 1500) whole; 32 MiB of buffer holds thousands.
        let argv = [
            "nsenter",
            &net,
            "tcpdump",
            "-i",
            "any",
            "--immediate-mode",
            "-s",
            "2048",
            "-B",
            "32768",
            "-U",
            "-nn",
            "-Z",
            "root",
            "-w",
            &shown,
            filter,
        ];
        let mut cmd = self.record.command(&argv)?;
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(std::fs::File::create(&log)?);
        let (child, id) = self.record.spawn(cmd, Lifetime::WithOwner)?;
        let id = id.ok_or_else(|| anyhow!("tcpdump exited at once; see {}", log.display()))?;
        let capture = NetnsCapture { child, id, path, log };
        crate::process::until_logged("tcpdump listening in the router", &capture.id, &capture.log, budget::command(), |l| {
            l.contains("listening on")
        })?;
        Ok(Box::new(capture))
    }

    fn ruleset(&self) -> Result<String> {
        Ok(in_namespace(&self.record, &self.router, &["nft", "list", "ruleset"], None)?.stdout)
    }

    fn router_route_to(&self, address: &str) -> Result<Output> {
        let cmd = self.record.command(&["ip", "-n", &self.router, "route", "get", address])?;
        exec::run("router", &format!("ip route get {address}"), cmd, None, budget::command())
    }
}

struct NetnsCapture {
    child: Child,
    id: ProcessId,
    path: PathBuf,
    log: PathBuf,
}

impl NetnsCapture {
    /// SIGTERM: tcpdump flushes its file and exits.
    fn end(&mut self) {
        self.id.terminate(budget::stop());
        let _ = self.child.try_wait();
    }
}

/// A capture dropped without `stop` (a scenario failed midway) ends with it.
impl Drop for NetnsCapture {
    fn drop(&mut self) {
        self.end();
    }
}

impl Capture for NetnsCapture {
    fn so_far(&self) -> Result<Vec<u8>> {
        std::fs::read(&self.path).with_context(|| format!("reading {}", self.path.display()))
    }

    fn stop(mut self: Box<Self>) -> Result<Captured> {
        self.end();
        let raw = std::fs::read(&self.path).with_context(|| format!("reading {}", self.path.display()))?;
        let shown = self.path.display().to_string();
        let listing = exec::local(&["tcpdump", "-nn", "-r", &shown], budget::command())?.check()?;
        Ok(Captured { raw, packets: listing.stdout.lines().map(str::to_string).collect(), path: self.path.clone() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_firewall_drops_udp_across_the_router_but_keeps_stun() {
        let spec = LabSpec::new("192.168.1.0/24", "10.0.0.0/24").unwrap();
        let rules = block_ruleset(&spec);
        assert!(rules.contains("ip daddr 192.168.1.5 udp dport 3478 accept"), "{rules}");
        assert!(rules.contains(r#"iifname "br-a" oifname "br-b" meta l4proto udp drop"#), "{rules}");
        assert!(rules.contains(r#"iifname "br-b" oifname "br-a" meta l4proto udp drop"#), "{rules}");
        let stun = rules.find("udp dport 3478 accept").unwrap();
        assert!(stun < rules.find(" drop").unwrap(), "STUN is accepted before UDP is dropped:\n{rules}");
    }
}
