//! The control server under test: its generated configuration, its service, and its CLI.

use crate::backend::Host;
use crate::database::Database;
use crate::exec::Output;
use crate::releases::HeadscaleRelease;
use crate::spec::{LabSpec, BASE_DOMAIN, USER};
use crate::userconfig::{self, Effective, UserConfig};
use crate::{budget, poll};
use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;
use serde_json::json;
use std::net::SocketAddr;

pub const SERVICE: &str = "headscale";
/// headscale serves HTTPS (API, Noise, embedded DERP) here, and STUN on udp/3478.
pub const HTTPS_PORT: u16 = 443;
pub const STUN_PORT: u16 = 3478;

/// headscale on the lab's server host.
pub struct Headscale<'a> {
    pub host: &'a dyn Host,
    pub program: String,
    /// What this release can do (its configuration keys, its CLI's flags).
    pub release: &'static HeadscaleRelease,
    /// The file-mode ACL policy it runs with, if any (in its state folder).
    pub policy_path: Option<String>,
    /// The user's own configuration (`MESH_HEADSCALE_CONFIG`), laid over the lab's.
    pub user_config: Option<&'a UserConfig>,
    /// The database it keeps its state in.
    pub database: Database,
    /// `node.ephemeral.inactivity_timeout` of the lab's configuration (the lifecycle lab's
    /// short one); `None`: [`EPHEMERAL_INACTIVITY_TIMEOUT`]. A user's configuration is laid
    /// over it as over every lab setting.
    pub ephemeral_inactivity_timeout: Option<std::time::Duration>,
}

/// The lab's ephemeral inactivity timeout unless a lab asks for another: an ephemeral node
/// that vanished stays listed this long (long enough that no scenario meets it by chance).
pub const EPHEMERAL_INACTIVITY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30 * 60);
/// The shortest ephemeral inactivity timeout headscale accepts: 0.27 and 0.29 refuse to start
/// on 65 s or less ("Minimum inactivity time out is keepalive timeout (60s) plus a few
/// seconds", `hscontrol/types/config.go`: `… is set too low, must be more than 65s`).
pub const MIN_EPHEMERAL_INACTIVITY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(66);

/// A node as `headscale nodes list -o json` shows it (protobuf JSON: false and empty are omitted).
#[derive(Debug, Clone, Deserialize)]
pub struct Node {
    pub id: u64,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub given_name: String,
    #[serde(default)]
    pub ip_addresses: Vec<String>,
    #[serde(default)]
    pub online: bool,
    /// When the node's key expires(d), if ever: `tailscale logout` sets it to the logout time.
    #[serde(default)]
    pub expiry: Option<Timestamp>,
    /// Its tags (0.29: a tagged node is owned by its tags).
    #[serde(default)]
    pub tags: Vec<String>,
    /// The tags its pre-auth key forced on it (0.27, 0.28; 0.29 has `tags` alone).
    #[serde(default)]
    pub forced_tags: Vec<String>,
    /// The routes it advertises (`--advertise-routes`), approved or not (0.26 and later).
    #[serde(default)]
    pub available_routes: Vec<String>,
    /// The routes an admin (or the policy's `autoApprovers`) approved.
    #[serde(default)]
    pub approved_routes: Vec<String>,
    /// The routes it serves now: advertised, approved, and it is the primary for them.
    #[serde(default)]
    pub subnet_routes: Vec<String>,
}

/// A node's id, hostname, given name and tailnet addresses.
pub type Identity = (u64, String, String, Vec<String>);

/// A pre-auth key as headscale lists it (protobuf JSON: false is omitted).
#[derive(Debug, Clone, Deserialize)]
pub struct PreAuthKey {
    pub id: u64,
    #[serde(default)]
    pub reusable: bool,
    #[serde(default)]
    pub used: bool,
    pub expiration: Option<Timestamp>,
    pub created_at: Option<Timestamp>,
}

/// A protobuf timestamp as headscale's JSON shows it.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct Timestamp {
    #[serde(default)]
    pub seconds: i64,
}

impl Node {
    /// The tags headscale gives the node, whichever field its release lists them in.
    pub fn all_tags(&self) -> Vec<String> {
        let mut all: Vec<String> = self.tags.iter().chain(&self.forced_tags).cloned().collect();
        all.sort();
        all.dedup();
        all
    }

    /// The key has expired: the node is out of the mesh until it logs in again.
    pub fn expired(&self) -> bool {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
        self.expiry.is_some_and(|t| t.seconds > 0 && t.seconds <= now)
    }
}

impl<'a> Headscale<'a> {
    /// Where a real deployment keeps it, in the host's own /etc: `headscale` in a shell on
    /// the server finds it without `-c`.
    pub fn config_path(&self) -> String {
        "/etc/headscale/config.yaml".into()
    }

    /// The configuration headscale runs with: the lab's own ([`Headscale::lab_config`]), or
    /// the user's laid over it with what the lab owns put back (`userconfig`).
    /// JSON is YAML, so it is written as JSON.
    pub fn config(&self, spec: &LabSpec) -> serde_json::Value {
        self.effective(spec).config
    }

    /// The effective configuration and what of the user's was replaced or not honoured.
    pub fn effective(&self, spec: &LabSpec) -> Effective {
        userconfig::apply(&self.lab_config(spec), self.user_config, self.policy_path.is_some())
    }

    /// The lab's configuration: its database (SQLite, or the lab's PostgreSQL), a noise key, MagicDNS, the embedded DERP and STUN on
    /// the server's own address, no public DERP map, no update checks, TLS from the lab's CA.
    /// Keys a release does not have are left out (the release table says which): each
    /// release is configured with its own keys.
    pub fn lab_config(&self, spec: &LabSpec) -> serde_json::Value {
        let mut config = self.common_config(spec);
        let keys = config.as_object_mut().expect("the configuration is an object");
        let timeout = format!("{}s", self.ephemeral_inactivity_timeout.unwrap_or(EPHEMERAL_INACTIVITY_TIMEOUT).as_secs());
        if self.release.node_settings {
            keys.insert("node".into(), json!({ "expiry": "0s", "ephemeral": { "inactivity_timeout": timeout } }));
        } else {
            keys.insert("ephemeral_node_inactivity_timeout".into(), json!(timeout));
        }
        if self.release.taildrop_setting {
            keys.insert("taildrop".into(), json!({ "enabled": false }));
        }
        config
    }

    /// What every release reads alike.
    fn common_config(&self, spec: &LabSpec) -> serde_json::Value {
        let dir = self.host.state_dir();
        let addr = spec.server().addr;
        json!({
            "server_url": spec.server_url(),
            "listen_addr": format!("{addr}:{HTTPS_PORT}"),
            // Inside the server's own namespace only.
            "metrics_listen_addr": "127.0.0.1:9090",
            "grpc_listen_addr": "127.0.0.1:50443",
            "grpc_allow_insecure": false,
            "tls_cert_path": format!("{dir}/tls/server.crt"),
            "tls_key_path": format!("{dir}/tls/server.key"),
            "tls_letsencrypt_hostname": "",
            "noise": { "private_key_path": format!("{dir}/noise_private.key") },
            "prefixes": { "v4": "100.64.0.0/10", "v6": "fd7a:115c:a1e0::/48", "allocation": "sequential" },
            "derp": {
                "server": {
                    "enabled": true,
                    "region_id": 999,
                    "region_code": "lab",
                    "region_name": "Mesh lab embedded DERP",
                    "verify_clients": true,
                    "stun_listen_addr": format!("{addr}:{STUN_PORT}"),
                    "private_key_path": format!("{dir}/derp_server_private.key"),
                    "automatically_add_embedded_derp_region": true,
                    "ipv4": addr.to_string(),
                    "ipv6": ""
                },
                // No public DERP map: the lab has no way out, and fetching one would hang.
                "urls": [],
                "paths": [],
                "auto_update_enabled": false,
                "update_frequency": "24h"
            },
            "disable_check_updates": true,
            "database": self.database.config(&dir),
            "log": { "level": "info", "format": "text" },
            "policy": { "mode": "file", "path": self.policy_path.clone().unwrap_or_default() },
            "dns": {
                "magic_dns": true,
                "base_domain": BASE_DOMAIN,
                // No upstream resolvers exist in the lab; keep the hosts' own for other names.
                "override_local_dns": false,
                "nameservers": { "global": [], "split": {} },
                "search_domains": [],
                "extra_records": []
            },
            // The CLI's own deadline for the server's answer (10 s by default): within the
            // harness's limit on the command, and scaled as it is (a busy TCG machine starved
            // the server VM past 10 s while three clients' tailscaled started).
            "cli": { "timeout": format!("{}s", (budget::command().as_secs_f64() * 0.75).ceil()) },
            "unix_socket": format!("{dir}/headscale.sock"),
            "unix_socket_permission": "0770",
            "logtail": { "enabled": false }
        })
    }

    /// Write config and certificates, start the service, wait until it answers its CLI and
    /// its TLS port.
    pub fn start(&self, spec: &LabSpec, cert_pem: &str, key_pem: &str) -> Result<()> {
        let dir = self.host.state_dir();
        self.host.write_file(&format!("{dir}/tls/server.crt"), cert_pem.as_bytes())?;
        self.host.write_file(&format!("{dir}/tls/server.key"), key_pem.as_bytes())?;
        self.host.write_file(&self.config_path(), serde_json::to_string_pretty(&self.config(spec))?.as_bytes())?;
        self.start_service()?;
        self.await_ready(spec)
    }

    /// Start the service on the configuration already written (also after a stop).
    pub fn start_service(&self) -> Result<()> {
        self.host.start_service(SERVICE, &[self.program.clone(), "-c".into(), self.config_path(), "serve".into()], &[])
    }

    pub fn await_ready(&self, spec: &LabSpec) -> Result<()> {
        let https = SocketAddr::from((spec.server().addr, HTTPS_PORT));
        poll::until("headscale answers its CLI and its HTTPS port", budget::headscale_ready(), || {
            self.host.ensure_running(SERVICE)?;
            self.cli(&["health"])?.check()?;
            self.host.tcp_connect(https, budget::poll_interval() * 10)
        })
    }

    /// `headscale -c CONFIG ARGS…` on the server, once.
    pub fn cli(&self, args: &[&str]) -> Result<Output> {
        let config = self.config_path();
        let mut argv = vec![self.program.as_str(), "-c", config.as_str()];
        argv.extend_from_slice(args);
        self.host.run(&argv)
    }

    fn cli_json(&self, args: &[&str]) -> Result<serde_json::Value> {
        let mut argv = args.to_vec();
        argv.extend_from_slice(&["-o", "json"]);
        let out = self.cli(&argv)?.check()?;
        serde_json::from_str(&out.stdout)
            .with_context(|| format!("`headscale {}` printed no JSON: {}", argv.join(" "), out.stdout.trim()))
    }

    /// Create the user and return its numeric id (recent releases take `--user <id>`).
    pub fn create_user(&self, name: &str) -> Result<u64> {
        self.cli(&["users", "create", name])?.check()?;
        self.user_id(name)
    }

    pub fn user_id(&self, name: &str) -> Result<u64> {
        let users = self.cli_json(&["users", "list"])?;
        users
            .as_array()
            .and_then(|list| list.iter().find(|u| u["name"] == name))
            .and_then(|u| u["id"].as_u64())
            .ok_or_else(|| anyhow!("user {name} is missing from `headscale users list`: {users}"))
    }

    /// A single-use pre-auth key that expires after `expiration` (e.g. "10m").
    pub fn preauth_key(&self, user_id: u64, expiration: &str) -> Result<String> {
        let key = self.cli_json(&["preauthkeys", "create", "--user", &user_id.to_string(), "--expiration", expiration])?;
        match key["key"].as_str() {
            Some(k) if !k.is_empty() => Ok(k.to_string()),
            _ => bail!("`headscale preauthkeys create` returned no key: {key}"),
        }
    }

    /// A single-use pre-auth key of an ephemeral node (`--ephemeral`: headscale deletes the node
    /// when it logs out, or once it has been offline for the inactivity timeout).
    pub fn ephemeral_preauth_key(&self, user_id: u64, expiration: &str) -> Result<String> {
        let user = user_id.to_string();
        let args = ["preauthkeys", "create", "--user", &user, "--ephemeral", "--expiration", expiration];
        let key = self.cli_json(&args)?;
        match key["key"].as_str() {
            Some(k) if !k.is_empty() => Ok(k.to_string()),
            _ => bail!("`headscale {}` returned no key: {key}", args.join(" ")),
        }
    }

    /// A single-use pre-auth key whose node is tagged `tag`. Where the release requires a user
    /// for it (0.27, 0.28), `user_id` (the lab's user); 0.29 makes a key owned by its tag.
    pub fn tagged_preauth_key(&self, user_id: u64, tag: &str, expiration: &str) -> Result<String> {
        let user = user_id.to_string();
        let mut args = vec!["preauthkeys", "create", "--tags", tag, "--expiration", expiration];
        if self.release.tagged_key_needs_user {
            args.extend(["--user", user.as_str()]);
        }
        let key = self.cli_json(&args)?;
        match key["key"].as_str() {
            Some(k) if !k.is_empty() => Ok(k.to_string()),
            _ => bail!("`headscale {}` returned no key: {key}", args.join(" ")),
        }
    }

    /// Every pre-auth key of the lab, as `headscale preauthkeys list -o json` shows it (every
    /// client's key is the lab user's: where the release lists one user's keys, that user's).
    pub fn preauth_keys(&self) -> Result<Vec<PreAuthKey>> {
        let user = if self.release.preauth_list_needs_user { Some(self.user_id(USER)?.to_string()) } else { None };
        let mut args = vec!["preauthkeys", "list"];
        if let Some(id) = &user {
            args.extend(["--user", id.as_str()]);
        }
        let keys = self.cli_json(&args)?;
        if keys.is_null() {
            return Ok(Vec::new());
        }
        serde_json::from_value(keys.clone()).with_context(|| format!("reading `headscale preauthkeys list -o json`: {keys}"))
    }

    pub fn nodes(&self) -> Result<Vec<Node>> {
        let nodes = self.cli_json(&["nodes", "list"])?;
        if nodes.is_null() {
            return Ok(Vec::new());
        }
        serde_json::from_value(nodes.clone()).with_context(|| format!("reading `headscale nodes list -o json`: {nodes}"))
    }

    /// Remove a node from the server, as an admin would (`headscale nodes delete`).
    pub fn delete_node(&self, name: &str) -> Result<()> {
        let node = self.node(name)?;
        self.cli(&["nodes", "delete", "--identifier", &node.id.to_string(), "--force"])?.check()?;
        Ok(())
    }

    /// Expire a node's key now, as an admin would (`headscale nodes expire --identifier ID`, the
    /// same in 0.27 and 0.29): it stays listed and must log in again.
    pub fn expire_node(&self, name: &str) -> Result<()> {
        let node = self.node(name)?;
        self.cli(&["nodes", "expire", "--identifier", &node.id.to_string()])?.check()?;
        Ok(())
    }

    /// Approve exactly `routes` of a node's advertised ones, as an admin would (`headscale
    /// nodes approve-routes --identifier ID --routes R,…`, 0.26 and later); none withdraws them.
    pub fn approve_routes(&self, name: &str, routes: &[String]) -> Result<()> {
        let node = self.node(name)?;
        let routes = routes.join(",");
        self.cli(&["nodes", "approve-routes", "--identifier", &node.id.to_string(), "--routes", &routes])?.check()?;
        Ok(())
    }

    /// Every node as (id, name, given name, addresses), by id: what must outlive an upgrade.
    pub fn identities(&self) -> Result<Vec<Identity>> {
        let mut all: Vec<_> = self.nodes()?.into_iter().map(|n| (n.id, n.name, n.given_name, n.ip_addresses)).collect();
        all.sort();
        Ok(all)
    }

    /// The version this headscale reports: `0.29.3`.
    pub fn version(&self) -> Result<String> {
        let out = self.cli(&["version"])?.check()?;
        // `headscale version v0.29.3`, then its commit and build lines.
        let word = out.stdout.lines().next().and_then(|l| l.split_whitespace().last()).unwrap_or_default();
        Ok(word.trim_start_matches('v').to_string())
    }

    pub fn node(&self, name: &str) -> Result<Node> {
        let nodes = self.nodes()?;
        let names: Vec<_> = nodes.iter().map(|n| n.given_name.clone()).collect();
        nodes
            .into_iter()
            .find(|n| n.given_name == name || n.name == name)
            .ok_or_else(|| anyhow!("headscale lists no node {name}; it lists {names:?}"))
    }
}
