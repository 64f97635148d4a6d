//! The user's ACL policy under test (P7): `MESH_POLICY` (a HuJSON file; the built-in policy
//! when unset), which user or tag each lab client registers as (`MESH_NODES`), headscale's own
//! verdict on it before any lab exists (`headscale policy check`), and the live side: sinks on
//! the clients, bounded connection attempts from one client to another, and the policy's
//! `tests` block turned into real traffic with a verdict table beside headscale's.

pub mod live;

use crate::exec::Output;

use crate::budget;
use crate::releases::HeadscaleRelease;
use anyhow::{anyhow, bail, Result};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

pub const POLICY_VAR: &str = "MESH_POLICY";
pub const NODES_VAR: &str = "MESH_NODES";
/// The service port the built-in policy allows (and the port a `*` destination is probed on).
pub const SERVICE_PORT: u16 = 8080;
/// A port of the same host the built-in policy does not allow.
pub const OTHER_PORT: u16 = 8081;
/// The policy file's name in the server's state folder (in the lab's folder).
pub const FILE: &str = "policy.hujson";

/// What a client registers as: a user (its own pre-auth key of that user) or a tag (a tagged
/// pre-auth key).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Owner {
    User(String),
    Tag(String),
}

impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Owner::User(u) => write!(f, "{u}"),
            Owner::Tag(t) => write!(f, "{t}"),
        }
    }
}

/// One entry of a policy's `tests` block (Tailscale's form, which headscale 0.29 reads).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyTest {
    pub src: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub proto: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accept: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<String>,
}

/// The policy a lab runs with, and who its clients are.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PolicySetup {
    /// The user's file; `None`: the built-in policy.
    pub source: Option<PathBuf>,
    /// The text headscale runs with (HuJSON as given).
    pub text: String,
    /// Client → what it registers as.
    pub nodes: BTreeMap<String, Owner>,
    /// The policy's claims: its `tests` block (the built-in's also where the release has no
    /// `tests` block, so they are checked on live traffic all the same).
    pub tests: Vec<PolicyTest>,
}

/// Tailscale SSH's port on a node's tailnet address, which tailscaled's SSH server takes.
pub const SSH_PORT: u16 = 22;
/// The one login the built-in policy's `ssh` rule lets its admins use on the servers (P9).
pub const SSH_USER: &str = "root";
/// A login the built-in `ssh` rule does not list (it exists on every host, so a refusal is the
/// policy's, not a missing account's).
pub const SSH_OTHER_USER: &str = "nobody";

/// The built-in mapping, which fits the built-in policy.
pub const DEFAULT_NODES: &[(&str, &str)] = &[("client-1", "alice"), ("client-2", "bob"), ("client-3", "tag:server")];

/// The built-in policy: two users, a group, a tag, an allow rule on one TCP port, ICMP for one
/// pair, everything else denied (the implied deny), and one `ssh` rule: admins → the servers
/// as root.
pub fn builtin_text(release: &HeadscaleRelease) -> String {
    let tests = serde_json::to_string_pretty(&builtin_tests()).expect("tests serialize");
    let tests = if release.policy_tests {
        format!("  // What the policy claims; `headscale policy check` evaluates it, and P7 checks it on live traffic.\n  \"tests\": {},\n", tests.replace('\n', "\n  "))
    } else {
        "  // No `tests` block: this headscale rejects one as an unknown field (P7 checks the claims on live traffic alone).\n"
            .into()
    };
    format!(
        r#"// The mesh suite's built-in ACL policy (MESH_POLICY unset).
{{
  "groups": {{ "group:admins": ["alice@"] }},
  "tagOwners": {{ "tag:server": ["group:admins"] }},
  "acls": [
    // Admins reach the servers' service port over TCP, and nothing else of theirs.
    {{ "action": "accept", "src": ["group:admins"], "proto": "tcp", "dst": ["tag:server:{SERVICE_PORT}"] }},
    // alice may ping bob. Nothing lets bob or the server start anything: the implied deny.
    {{ "action": "accept", "src": ["alice@"], "proto": "icmp", "dst": ["bob@:*"] }},
    // ... and their port 22, for Tailscale SSH: headscale's packet filter opens nothing for an
    // `ssh` rule (0.27.1 and 0.29.3), so without this the SSH handshake is dropped.
    {{ "action": "accept", "src": ["group:admins"], "proto": "tcp", "dst": ["tag:server:{SSH_PORT}"] }},
  ],
  // Tailscale SSH (P9): admins may run commands on the servers as root, and as no one else;
  // nobody else may at all.
  "ssh": [
    {{ "action": "accept", "src": ["group:admins"], "dst": ["tag:server"], "users": ["{SSH_USER}"] }},
  ],
{tests}}}
"#
    )
}

pub fn builtin_tests() -> Vec<PolicyTest> {
    let t = |src: &str, proto: &str, accept: &[&str], deny: &[&str]| PolicyTest {
        src: src.into(),
        proto: proto.into(),
        accept: accept.iter().map(|s| s.to_string()).collect(),
        deny: deny.iter().map(|s| s.to_string()).collect(),
    };
    vec![
        t("alice@", "tcp", &["tag:server:8080"], &["tag:server:8081", "bob@:8080"]),
        // No proto: any of TCP, UDP and ICMP counts, and alice's ICMP to bob (any port) does.
        t("alice@", "", &["bob@:8080"], &[]),
        t("bob@", "", &[], &["alice@:8080", "tag:server:8080"]),
        t("tag:server", "", &[], &["alice@:8080", "bob@:8080"]),
    ]
}

/// A probe of the built-in policy: `from` → `to` by `proto`, and whether the policy allows it.
#[derive(Debug, Clone, Copy)]
pub struct Expectation {
    pub from: &'static str,
    pub to: &'static str,
    pub proto: Proto,
    pub allowed: bool,
}

/// Every pair and direction the built-in policy decides, with the default mapping.
pub fn builtin_expectations() -> Vec<Expectation> {
    let e = |from, to, proto, allowed| Expectation { from, to, proto, allowed };
    let (tcp, other, icmp) = (Proto::Tcp(SERVICE_PORT), Proto::Tcp(OTHER_PORT), Proto::Icmp);
    vec![
        e("client-1", "client-3", tcp, true),
        e("client-1", "client-2", icmp, true),
        // The rule is TCP only, yet tailscale's own filter lets an echo request through to any
        // address that has any port open to its source, whatever the rule's protocol
        // (wgengine/filter: "If any port is open to an IP, allow ICMP to it"; 1.98.10).
        e("client-1", "client-3", icmp, true),
        e("client-1", "client-3", other, false),
        e("client-1", "client-2", tcp, false),
        e("client-2", "client-1", tcp, false),
        e("client-2", "client-1", icmp, false),
        e("client-2", "client-3", tcp, false),
        e("client-2", "client-3", icmp, false),
        e("client-3", "client-1", tcp, false),
        e("client-3", "client-1", icmp, false),
        e("client-3", "client-2", tcp, false),
        e("client-3", "client-2", icmp, false),
    ]
}

/// The pairs of the built-in policy that have no allowed relationship either way: each is
/// absent from the other's netmap.
pub const BUILTIN_HIDDEN: &[(&str, &str)] = &[("client-2", "client-3"), ("client-3", "client-2")];

impl PolicySetup {
    /// From `MESH_POLICY` and `MESH_NODES` (either may be unset), for a server of `release`;
    /// `clients` are the lab's clients that are in the mesh from the start. Every error is one
    /// line with its cause and fix.
    pub fn from_env(release: &HeadscaleRelease, clients: &[String]) -> Result<PolicySetup> {
        let source = std::env::var_os(POLICY_VAR).filter(|v| !v.is_empty()).map(PathBuf::from);
        let text = match &source {
            Some(path) => std::fs::read_to_string(path).map_err(|e| {
                anyhow!("{POLICY_VAR}={} cannot be read: {e}: give the path of a HuJSON ACL policy file", path.display())
            })?,
            None => builtin_text(release),
        };
        let nodes = std::env::var(NODES_VAR).unwrap_or_default();
        PolicySetup::new(source, text, &nodes, clients)
    }

    pub fn new(source: Option<PathBuf>, text: String, nodes: &str, clients: &[String]) -> Result<PolicySetup> {
        let name =
            source.as_ref().map(|p| format!("{POLICY_VAR}={}", p.display())).unwrap_or_else(|| "the built-in policy".into());
        let value = parse_hujson(&text).map_err(|e| anyhow!("{name} is not a HuJSON policy: {e:#}: fix the file (headscale reads HuJSON: JSON with comments and trailing commas)"))?;
        if !value.is_object() {
            bail!("{name} is not a policy: its top level is not an object ({{ \"acls\": [...] }}): fix the file");
        }
        let tests = match value.get("tests") {
            None => {
                if source.is_none() {
                    builtin_tests()
                } else {
                    Vec::new()
                }
            }
            Some(t) => serde_json::from_value(t.clone()).map_err(|e| {
                anyhow!("{name}: its \"tests\" block is not a list of {{src, proto, accept, deny}}: {e}: fix the file")
            })?,
        };
        let nodes = parse_nodes(nodes, clients)?;
        check_nodes(&nodes, &value, &name)?;
        Ok(PolicySetup { source, text, nodes, tests })
    }

    /// The policy as JSON (comments and trailing commas gone).
    pub fn value(&self) -> Value {
        parse_hujson(&self.text).expect("checked when the setup was made")
    }

    /// What to call it in messages.
    pub fn name(&self) -> String {
        match &self.source {
            Some(p) => p.display().to_string(),
            None => "the built-in policy".into(),
        }
    }

    pub fn builtin(&self) -> bool {
        self.source.is_none()
    }

    /// Every client registers as [`DEFAULT_NODES`] says: the mapping the built-in policy's
    /// checks are written against.
    pub fn has_default_nodes(&self) -> bool {
        DEFAULT_NODES.iter().all(|(c, o)| self.nodes.get(*c).is_some_and(|n| n.to_string() == *o))
    }

    /// Which clients are `owner`'s.
    pub fn clients_of(&self, owner: &Owner) -> Vec<String> {
        self.nodes.iter().filter(|(_, o)| *o == owner).map(|(c, _)| c.clone()).collect()
    }

    /// The users to create, each once.
    pub fn users(&self) -> BTreeSet<String> {
        self.nodes.values().filter_map(|o| if let Owner::User(u) = o { Some(u.clone()) } else { None }).collect()
    }

    /// The same policy with its `tests` removed, as JSON: what headscale can judge with no
    /// nodes (a test's source resolves to no address until nodes exist).
    pub fn without_tests(&self) -> Value {
        let mut v = self.value();
        v.as_object_mut().expect("an object").remove("tests");
        v
    }

    /// The lab's clients an alias (`alice@`, `group:x`, `tag:x`, `autogroup:member`, `*`, a
    /// tailnet IP, a `hosts` name) stands for.
    pub fn resolve(&self, alias: &str, tailnet_ips: &BTreeMap<String, Vec<String>>) -> Result<Vec<String>> {
        let policy = self.value();
        let by_ip = |ip: &str| -> Vec<String> {
            let ip = ip.split('/').next().unwrap_or(ip);
            tailnet_ips.iter().filter(|(_, ips)| ips.iter().any(|i| i == ip)).map(|(c, _)| c.clone()).collect()
        };
        let users_of = |alias: &str| -> Vec<String> { self.clients_of(&Owner::User(user_of(alias))) };
        Ok(match alias {
            "*" => self.nodes.keys().cloned().collect(),
            "autogroup:member" => self.nodes.iter().filter(|(_, o)| matches!(o, Owner::User(_))).map(|(c, _)| c.clone()).collect(),
            "autogroup:tagged" => self.nodes.iter().filter(|(_, o)| matches!(o, Owner::Tag(_))).map(|(c, _)| c.clone()).collect(),
            a if a.starts_with("tag:") => self.clients_of(&Owner::Tag(a.into())),
            a if a.starts_with("group:") => {
                let members = policy["groups"][a].as_array().ok_or_else(|| anyhow!("the policy has no group {a}"))?;
                let mut all: Vec<String> = members.iter().filter_map(|m| m.as_str()).flat_map(users_of).collect();
                all.sort();
                all.dedup();
                all
            }
            a if a.contains('@') => users_of(a),
            a if a.parse::<std::net::IpAddr>().is_ok() || a.contains('/') => by_ip(a),
            a => match policy["hosts"][a].as_str() {
                Some(ip) => by_ip(ip),
                None => bail!("the harness cannot tell which lab client {a:?} stands for (it knows users, groups, tags, autogroup:member, autogroup:tagged, *, tailnet IPs and hosts)"),
            },
        })
    }
}

/// `alice@` → `alice`; `alice@example.com` stays itself.
fn user_of(alias: &str) -> String {
    alias.strip_suffix('@').unwrap_or(alias).to_string()
}

/// `client-1=alice,client-3=tag:server`; clients not named get the built-in mapping's entry.
fn parse_nodes(text: &str, clients: &[String]) -> Result<BTreeMap<String, Owner>> {
    const EXAMPLE: &str = "client-1=alice,client-2=bob,client-3=tag:server";
    let mut nodes = BTreeMap::new();
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let Some((host, owner)) = entry.split_once('=') else {
            bail!("{NODES_VAR}={text:?}: {entry:?} has no '=': give host=user or host=tag:NAME pairs, e.g. {EXAMPLE}");
        };
        let (host, owner) = (host.trim(), owner.trim());
        if !clients.iter().any(|c| c == host) {
            bail!(
                "{NODES_VAR}={text:?} names {host:?}, which is not a client of the lab: its clients are {} (client-4 joins later and gets no user)",
                clients.join(", ")
            );
        }
        let owner = match owner {
            "" => bail!("{NODES_VAR}={text:?}: {entry:?} gives {host} no user: give host=user or host=tag:NAME, e.g. {EXAMPLE}"),
            t if t.starts_with("tag:") && t.len() > 4 => Owner::Tag(t.into()),
            t if t.contains(':') || t.contains(' ') => {
                bail!("{NODES_VAR}={text:?}: {t:?} is neither a user name nor tag:NAME: e.g. {EXAMPLE}")
            }
            u => Owner::User(u.strip_suffix('@').unwrap_or(u).into()),
        };
        if nodes.insert(host.to_string(), owner).is_some() {
            bail!("{NODES_VAR}={text:?} names {host} twice: give each client one user or tag");
        }
    }
    for client in clients {
        if !nodes.contains_key(client) {
            let default = DEFAULT_NODES.iter().find(|(c, _)| c == client).map(|(_, o)| *o).unwrap_or("alice");
            let owner = if default.starts_with("tag:") { Owner::Tag(default.into()) } else { Owner::User(default.into()) };
            nodes.insert(client.clone(), owner);
        }
    }
    Ok(nodes)
}

/// Every user a client is given is one the policy names, every tag one its `tagOwners` lists.
fn check_nodes(nodes: &BTreeMap<String, Owner>, policy: &Value, name: &str) -> Result<()> {
    let users = users_named(policy);
    let tags: Vec<String> = policy["tagOwners"].as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default();
    let given = |client: &str| {
        if std::env::var(NODES_VAR).is_ok_and(|v| v.contains(&format!("{client}="))) {
            format!("{NODES_VAR} gives {client}")
        } else {
            format!("{client} (not in {NODES_VAR}, so the built-in mapping) gets")
        }
    };
    for (client, owner) in nodes {
        match owner {
            Owner::User(u) if !users.contains(u) => bail!(
                "{} the user {u}, whom {name} does not name (it names {}): give {client} a user the policy names in {NODES_VAR}, e.g. {NODES_VAR}={client}=USER, or add {u}@ to the policy",
                given(client),
                if users.is_empty() { "no user".into() } else { users.iter().cloned().collect::<Vec<_>>().join(", ") }
            ),
            Owner::Tag(t) if !tags.contains(t) => bail!(
                "{} the tag {t}, which {name}'s tagOwners does not list (it lists {}): give {client} a listed tag in {NODES_VAR}, or add {t} to tagOwners",
                given(client),
                if tags.is_empty() { "none".into() } else { tags.join(", ") }
            ),
            _ => {}
        }
    }
    Ok(())
}

/// The users a policy names anywhere (`alice@` → `alice`; `alice@example.com` as it is).
pub fn users_named(policy: &Value) -> BTreeSet<String> {
    let mut users = BTreeSet::new();
    fn walk(v: &Value, users: &mut BTreeSet<String>) {
        match v {
            Value::String(s) => {
                let Some(at) = s.find('@') else { return };
                if s.starts_with("tag:") || s.starts_with("group:") || s.starts_with("autogroup:") {
                    return;
                }
                // `alice@:8080`, `alice@example.com:22`: the alias ends at the port's colon.
                let alias = match s[at..].find(':') {
                    Some(colon) => &s[..at + colon],
                    None => s.as_str(),
                };
                users.insert(user_of(alias));
            }
            Value::Array(a) => a.iter().for_each(|v| walk(v, users)),
            Value::Object(o) => o.values().for_each(|v| walk(v, users)),
            _ => {}
        }
    }
    walk(policy, &mut users);
    users
}

/// HuJSON (JSON with `//` and `/* */` comments and trailing commas, as headscale and Tailscale
/// read policies) to a JSON value; errors say the line and column.
pub fn parse_hujson(text: &str) -> Result<Value> {
    Ok(serde_json::from_str(&standardize(text)?)?)
}

/// Comments become spaces (newlines kept, so positions stay), trailing commas are dropped.
fn standardize(text: &str) -> Result<String> {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                out.push(c);
                while let Some(c) = chars.next() {
                    out.push(c);
                    match c {
                        '\\' => out.extend(chars.next()),
                        '"' => break,
                        _ => {}
                    }
                }
            }
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                    out.push(' ');
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                out.push_str("  ");
                let mut closed = false;
                while let Some(c) = chars.next() {
                    if c == '*' && chars.peek() == Some(&'/') {
                        chars.next();
                        out.push_str("  ");
                        closed = true;
                        break;
                    }
                    out.push(if c == '\n' { '\n' } else { ' ' });
                }
                if !closed {
                    bail!("a /* comment is never closed");
                }
            }
            '}' | ']' => {
                let trimmed = out.trim_end_matches(char::is_whitespace).len();
                if out[..trimmed].ends_with(',') {
                    out.replace_range(trimmed - 1..trimmed, " ");
                }
                out.push(c);
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

/// headscale's verdict on the policy before any lab exists: `headscale policy check` of the
/// file on this machine, against a throwaway configuration and empty database. headscale 0.29
/// validates a `tests` block's form when it parses the policy (and refuses to start on a bad
/// one), then evaluates the tests against the database's users and nodes, of which there are
/// none yet: that second step (`test(s) failed: … user not found`) is not a rejection — the
/// tests are evaluated in the lab, against live nodes. A rejection is one line with
/// headscale's own error.
pub fn precheck(setup: &PolicySetup, headscale: &Path, release: &HeadscaleRelease, version: &str) -> Result<()> {
    let dir = std::env::temp_dir().join(format!(
        "mesh-policy-check-{}-{}",
        std::process::id(),
        std::thread::current().name().unwrap_or("main").len()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let result = (|| -> Result<Output> {
        let file = dir.join("policy.json");
        std::fs::write(&file, serde_json::to_string_pretty(&setup.value())?)?;
        let d = dir.display();
        let config = json!({
            "server_url": "https://headscale.lab.test",
            "listen_addr": "127.0.0.1:0",
            "noise": { "private_key_path": format!("{d}/noise.key") },
            "prefixes": { "v4": "100.64.0.0/10", "v6": "fd7a:115c:a1e0::/48" },
            "database": { "type": "sqlite", "sqlite": { "path": format!("{d}/db.sqlite") } },
            "dns": { "magic_dns": false, "base_domain": "mesh.test", "override_local_dns": false },
            "derp": { "urls": [], "server": { "enabled": false } },
            "disable_check_updates": true,
            "unix_socket": format!("{d}/headscale.sock"),
            "policy": { "mode": "file", "path": "" },
            "log": { "level": "warn" }
        });
        let config_path = dir.join("config.json");
        std::fs::write(&config_path, serde_json::to_string(&config)?)?;
        let mut cmd = std::process::Command::new(headscale);
        cmd.args(release.policy_check_offline).arg(&file).env("HEADSCALE_CONFIG", &config_path);
        let shown = format!("headscale {} {}", release.policy_check_offline.join(" "), file.display());
        crate::exec::run("this machine", &shown, cmd, None, budget::command())
    })();
    let _ = std::fs::remove_dir_all(&dir);
    let out = result?;
    if out.success() {
        return Ok(());
    }
    if release.policy_tests && rejection_line(&out).starts_with("test(s) failed") {
        // The form was accepted; only the evaluation against an empty database failed.
        return Ok(());
    }
    bail!(
        "headscale {version} rejects {}: {}: fix the policy (check it with `headscale policy check --file FILE`), or unset {POLICY_VAR} for the built-in one",
        setup.name(),
        rejection_line(&out)
    )
}

/// headscale's error in one line: from its `Error…` line on (0.29 prints `Error: …` on stderr,
/// its details on the lines after; 0.27 `Error parsing the policy file: …` on stdout), joined,
/// else the last line it printed.
pub fn rejection_line(out: &Output) -> String {
    let text = format!("{}\n{}", out.stdout, out.stderr);
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let line = match lines.iter().position(|l| l.starts_with("Error")) {
        Some(i) => lines[i..].join(" "),
        None => lines.last().map(|l| l.to_string()).unwrap_or_else(|| "it printed nothing".into()),
    };
    line.trim_start_matches("Error: ").to_string()
}

/// How a probe reaches its destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Tcp(u16),
    Icmp,
}

impl std::fmt::Display for Proto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Proto::Tcp(p) => write!(f, "TCP {p}"),
            Proto::Icmp => write!(f, "ICMP"),
        }
    }
}

/// One bounded connection attempt: did it connect, and what showed it.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub connected: bool,
    pub evidence: String,
}

/// The lab's condition while P7 probes the built-in policy's pairs, as the report names it
/// (`report::PairFigure::condition`).
pub const CONDITION: &str = "the built-in ACL policy (P7)";

/// `host:port` → (`host`, the port to probe: the first of a list or range, `*` the service port).
pub fn split_destination(dst: &str) -> Result<(String, u16)> {
    let (alias, ports) = dst.rsplit_once(':').ok_or_else(|| anyhow!("destination {dst:?} is not host:port"))?;
    let first = ports.split([',', '-']).next().unwrap_or(ports);
    let port = if first == "*" {
        SERVICE_PORT
    } else {
        first.parse().map_err(|_| anyhow!("destination {dst:?}: {ports:?} is not a port, a range, a list or *"))?
    };
    Ok((alias.to_string(), port))
}

/// A verdict on one destination of a test entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    Denied,
    /// Not judged, for this reason (headscale without a `tests` block; a protocol the harness
    /// does not probe).
    NotJudged(String),
    /// The judge could not say (headscale's own error, a source with no lab client).
    Error(String),
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Verdict::Allowed => f.write_str("allowed"),
            Verdict::Denied => f.write_str("denied"),
            Verdict::NotJudged(why) => write!(f, "— ({why})"),
            Verdict::Error(e) => write!(f, "error: {e}"),
        }
    }
}

/// One row of the verdict table: a destination of a test entry, what the entry claims, what
/// headscale says and what the mesh did.
#[derive(Debug, Clone)]
pub struct Row {
    /// 1-based, in the order of the `tests` block.
    pub entry: usize,
    pub src: String,
    pub proto: String,
    pub dst: String,
    /// `accept` (true) or `deny`.
    pub claims_allowed: bool,
    pub headscale: Verdict,
    pub mesh: Verdict,
    pub evidence: String,
}

impl Row {
    fn claim(&self) -> Verdict {
        if self.claims_allowed {
            Verdict::Allowed
        } else {
            Verdict::Denied
        }
    }

    /// Why this row fails, if it does: the mesh did other than the entry claims, or headscale
    /// says other than the mesh did.
    pub fn disagreement(&self) -> Option<String> {
        let what = format!(
            "tests entry {} ({} {}{} → {})",
            self.entry,
            if self.claims_allowed { "accept" } else { "deny" },
            self.src,
            if self.proto.is_empty() { String::new() } else { format!(" {}", self.proto) },
            self.dst
        );
        let verdicts = format!(
            "the entry claims {}, headscale says {}, the mesh: {}; evidence: {}",
            self.claim(),
            self.headscale,
            self.mesh,
            self.evidence
        );
        match (&self.mesh, &self.headscale) {
            (Verdict::NotJudged(_), _) => None,
            (Verdict::Error(_), _) => Some(format!("{what}: the mesh could not be judged: {verdicts}")),
            (mesh, _) if *mesh != self.claim() => Some(format!("{what}: the mesh disagrees with the entry: {verdicts}")),
            (_, Verdict::Error(_)) => Some(format!("{what}: headscale's verdict is an error: {verdicts}")),
            (mesh, hs @ (Verdict::Allowed | Verdict::Denied)) if hs != mesh => {
                Some(format!("{what}: headscale and the mesh disagree: {verdicts}"))
            }
            _ => None,
        }
    }
}

/// The verdict table, one row a destination.
pub fn table(rows: &[Row]) -> String {
    let mut lines = vec![vec![
        "entry".to_string(),
        "src".into(),
        "proto".into(),
        "claim".into(),
        "destination".into(),
        "headscale policy check".into(),
        "mesh".into(),
        "agree".into(),
    ]];
    for r in rows {
        lines.push(vec![
            r.entry.to_string(),
            r.src.clone(),
            if r.proto.is_empty() { "any".into() } else { r.proto.clone() },
            if r.claims_allowed { "accept".into() } else { "deny".into() },
            r.dst.clone(),
            r.headscale.to_string(),
            r.mesh.to_string(),
            match (&r.mesh, r.disagreement()) {
                (Verdict::NotJudged(_), _) => "not judged".into(),
                (_, None) => "yes".into(),
                (_, Some(_)) => "NO".into(),
            },
        ]);
    }
    let widths: Vec<usize> = (0..lines[0].len()).map(|i| lines.iter().map(|l| l[i].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for (n, l) in lines.iter().enumerate() {
        let cells: Vec<String> = l.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        out += cells.join("  ").trim_end();
        out.push('\n');
        if n == 0 {
            out += &widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>().join("  ");
            out.push('\n');
        }
    }
    out
}

/// Every row agrees, or an error naming each entry that does not, with both verdicts and the
/// evidence.
pub fn judge(rows: &[Row]) -> Result<()> {
    let failures: Vec<String> = rows.iter().filter_map(Row::disagreement).collect();
    if failures.is_empty() {
        return Ok(());
    }
    bail!("{} of {} destinations disagree:\n  {}", failures.len(), rows.len(), failures.join("\n  "))
}

/// The ports the tests block's destinations are probed on.
pub fn test_ports(setup: &PolicySetup) -> BTreeSet<u16> {
    setup
        .tests
        .iter()
        .flat_map(|t| t.accept.iter().chain(&t.deny))
        .filter_map(|d| split_destination(d).ok())
        .map(|(_, p)| p)
        .collect()
}

/// A policy that lets every node reach every other, keeping the rest of `setup`'s (its
/// groups, hosts and tagOwners, so tagged nodes stay valid) and dropping its tests.
pub fn allow_all(setup: &PolicySetup) -> Value {
    let mut v = setup.without_tests();
    let o = v.as_object_mut().expect("an object");
    o.remove("grants");
    o.insert("acls".into(), json!([{ "action": "accept", "src": ["*"], "dst": ["*:*"] }]));
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::version::Version;

    fn release(v: Version) -> &'static HeadscaleRelease {
        crate::releases::headscale(v).unwrap()
    }

    fn clients() -> Vec<String> {
        vec!["client-1".into(), "client-2".into(), "client-3".into()]
    }

    #[test]
    fn hujson_comments_and_trailing_commas_are_read_as_headscale_reads_them() {
        let v = parse_hujson("// top\n{ \"a\": [1, 2,], /* x */ \"b\": \"//not a comment\", }\n").unwrap();
        assert_eq!(v, json!({"a": [1, 2], "b": "//not a comment"}));
        let err = parse_hujson("{\n  \"a\": [1 2]\n}").unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn the_builtin_policy_carries_its_tests_where_the_release_reads_them() {
        let new = builtin_text(release(Version::new(0, 29, 3)));
        let old = builtin_text(release(Version::new(0, 27, 1)));
        assert!(parse_hujson(&new).unwrap().get("tests").is_some());
        assert!(parse_hujson(&old).unwrap().get("tests").is_none());
        let setup = PolicySetup::new(None, old, "", &clients()).unwrap();
        assert_eq!(setup.tests, builtin_tests(), "the claims are checked on live traffic on 0.27 too");
        assert_eq!(setup.nodes["client-3"], Owner::Tag("tag:server".into()));
        let ips: BTreeMap<String, Vec<String>> = [("client-3".to_string(), vec!["100.64.0.3".to_string()])].into();
        assert_eq!(setup.resolve("group:admins", &ips).unwrap(), vec!["client-1"]);
        assert_eq!(setup.resolve("100.64.0.3", &ips).unwrap(), vec!["client-3"]);
    }

    #[test]
    fn mesh_nodes_must_name_lab_clients_and_what_the_policy_names() {
        let r = release(Version::new(0, 29, 3));
        let text = builtin_text(r);
        for (nodes, says) in [
            ("client-9=alice", "not a client of the lab"),
            ("client-1:alice", "has no '='"),
            ("client-2=carol", "the user carol"),
            ("client-3=tag:db", "the tag tag:db"),
            ("client-1=alice,client-1=bob", "twice"),
        ] {
            let err = PolicySetup::new(None, text.clone(), nodes, &clients()).unwrap_err().to_string();
            assert!(err.contains(says) && !err.contains('\n'), "{nodes}: {err}");
        }
        let ok = PolicySetup::new(None, text, "client-1=bob@,client-2=alice", &clients()).unwrap();
        assert_eq!(ok.nodes["client-1"], Owner::User("bob".into()));
    }

    #[test]
    fn users_named_are_found_in_every_part_of_the_policy() {
        let v = json!({"groups": {"group:a": ["alice@", "carol@example.com"]}, "acls": [{"dst": ["bob@:22", "tag:x:*"]}]});
        let users: Vec<String> = users_named(&v).into_iter().collect();
        assert_eq!(users, vec!["alice", "bob", "carol@example.com"]);
    }

    /// The comparison on its own: a policy whose tests claim what the mesh does not do fails,
    /// naming the entry, both verdicts and the evidence; one whose claims hold passes.
    #[test]
    fn a_test_entry_the_mesh_does_not_honour_fails_naming_the_entry() {
        let row = |claims_allowed, headscale, mesh| Row {
            entry: 2,
            src: "bob@".into(),
            proto: "tcp".into(),
            dst: "tag:server:8080".into(),
            claims_allowed,
            headscale,
            mesh,
            evidence: "client-2 → client-3 (100.64.0.3) TCP 8080: `nc -z -w 3 100.64.0.3 8080` exit 1".into(),
        };
        // The claim holds and both judges agree.
        assert!(judge(&[row(false, Verdict::Denied, Verdict::Denied)]).is_ok());
        // The entry claims accept; headscale agrees with the mesh, which did not connect.
        let err = judge(&[row(true, Verdict::Denied, Verdict::Denied)]).unwrap_err().to_string();
        assert!(err.contains("tests entry 2") && err.contains("claims allowed") && err.contains("the mesh: denied"), "{err}");
        assert!(err.contains("nc -z"), "the evidence is named: {err}");
        // headscale says one thing, the mesh another.
        let err = judge(&[row(false, Verdict::Allowed, Verdict::Denied)]).unwrap_err().to_string();
        assert!(err.contains("headscale and the mesh disagree") && err.contains("headscale says allowed"), "{err}");
        // A release without a tests block: the mesh alone is held to the claim.
        assert!(judge(&[row(false, Verdict::NotJudged("0.27".into()), Verdict::Denied)]).is_ok());
        assert!(table(&[row(true, Verdict::Denied, Verdict::Denied)]).contains("NO"));
    }

    #[test]
    fn destinations_are_host_and_port() {
        assert_eq!(split_destination("tag:server:8080").unwrap(), ("tag:server".into(), 8080));
        assert_eq!(split_destination("bob@:*").unwrap(), ("bob@".into(), SERVICE_PORT));
        assert_eq!(split_destination("100.64.0.1:80-90").unwrap(), ("100.64.0.1".into(), 80));
        assert!(split_destination("bob@").is_err());
    }
}
