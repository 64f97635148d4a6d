//! The user's own headscale configuration (`MESH_HEADSCALE_CONFIG`): a `config.yaml` (JSON is
//! YAML too, so a NixOS `services.headscale.settings` export works as it is), run in the lab
//! with every setting of theirs kept but what the lab must own.
//!
//! The effective configuration is the lab's own ([`crate::headscale::Headscale::config`]) with
//! theirs laid over it, key by key (a key they leave out keeps the lab's value), and then the
//! lab-owned keys ([`OWNED`]) set back to the lab's: where the server listens and is reached,
//! its TLS files, database and keys, the embedded DERP and STUN, no public DERP map, no update
//! checks, the policy file of P7's lab. Each key whose value of theirs differed is a
//! [`Replacement`], printed and listed in the report. What the lab cannot honour at all (an
//! OIDC issuer or a DERP map outside the lab, global nameservers it has no route to, files of
//! their machine) is an [`Effective::unhonoured`] line each, never dropped silently.
//!
//! What scenarios depend on — the base domain, the prefixes, MagicDNS on or off, extra records,
//! nameservers — is read from the effective configuration ([`Settings`]), never from constants.

use anyhow::{anyhow, bail, Context, Result};
use ipnet::{Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// The variable (and `--headscale-config`) that names the file.
pub const VAR: &str = "MESH_HEADSCALE_CONFIG";

/// The user's configuration as read: where from, and its settings (as JSON values).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserConfig {
    pub path: String,
    pub settings: Value,
}

/// One key the lab set to its own value where theirs differed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replacement {
    pub key: String,
    pub theirs: String,
    pub lab: String,
}

impl std::fmt::Display for Replacement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {} → {}", self.key, self.theirs, self.lab)
    }
}

/// The configuration headscale runs with, and what of theirs was changed or not honoured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Effective {
    #[serde(skip)]
    pub config: Value,
    /// The user's file, if any.
    pub path: Option<String>,
    pub replacements: Vec<Replacement>,
    pub unhonoured: Vec<String>,
}

/// The keys the lab owns, as dotted paths into the configuration. Each is set to the lab's
/// value whatever theirs says: the lab's server is reached at its own name and address, with
/// its own CA's certificate, keeps its state in the lab's folder, relays through its own
/// embedded DERP and has no way out.
pub const OWNED: &[&str] = &[
    "server_url",
    "listen_addr",
    "metrics_listen_addr",
    "grpc_listen_addr",
    "tls_cert_path",
    "tls_key_path",
    "tls_letsencrypt_hostname",
    "noise.private_key_path",
    "database.type",
    "database.sqlite.path",
    "database.postgres.host",
    "database.postgres.port",
    "database.postgres.name",
    "database.postgres.user",
    "database.postgres.pass",
    "database.postgres.ssl",
    "derp.server.enabled",
    "derp.server.stun_listen_addr",
    "derp.server.private_key_path",
    "derp.server.automatically_add_embedded_derp_region",
    "derp.server.ipv4",
    "derp.server.ipv6",
    "derp.urls",
    "derp.paths",
    "derp.auto_update_enabled",
    "disable_check_updates",
    "unix_socket",
    "logtail.enabled",
    "dns.nameservers.global",
];

/// Owned keys whose values are never printed (nor written into the report).
const SECRET: &[&str] = &["database.postgres.pass"];
const HIDDEN: &str = "(hidden)";

impl UserConfig {
    /// `MESH_HEADSCALE_CONFIG`, read and checked; `None` when unset or empty.
    pub fn from_env() -> Result<Option<UserConfig>> {
        match std::env::var(VAR) {
            Ok(path) if !path.trim().is_empty() => UserConfig::load(path.trim()).map(Some),
            _ => Ok(None),
        }
    }

    /// Read a configuration file and check what the lab needs of it.
    pub fn load(path: &str) -> Result<UserConfig> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow!("{VAR}={path} cannot be read: {e}; give the path of a headscale config.yaml (or JSON)"))?;
        UserConfig::parse(path, &text)
    }

    pub fn parse(path: &str, text: &str) -> Result<UserConfig> {
        let settings: Value = serde_yaml_ng::from_str(text).map_err(|e| {
            anyhow!("{VAR}={path} is not a YAML (or JSON) headscale configuration: {e}; fix the file, or unset {VAR}")
        })?;
        let settings = if settings.is_null() { json!({}) } else { settings };
        if !settings.is_object() {
            bail!("{VAR}={path} is not a headscale configuration: its top level is not a mapping of keys (config.yaml's form)");
        }
        let config = UserConfig { path: path.to_string(), settings };
        config.check()?;
        Ok(config)
    }

    /// `database.type` as their file gives it, if it does.
    pub fn database_type(&self) -> Option<&str> {
        get(&self.settings, "database.type").and_then(Value::as_str)
    }

    fn check(&self) -> Result<()> {
        let path = &self.path;
        let s = &self.settings;
        if let Some(kind) = get(s, "database.type").and_then(Value::as_str) {
            if !matches!(kind, "sqlite" | "sqlite3" | "postgres") {
                bail!(
                    "{VAR}={path}: database.type is {kind:?}, which headscale does not know: use sqlite, or postgres \
                     (the lab then runs a PostgreSQL server of its own)"
                );
            }
        }
        for (key, v6) in [("prefixes.v4", false), ("prefixes.v6", true)] {
            let Some(value) = get(s, key).filter(|v| !v.is_null()) else { continue };
            let text = value.as_str().unwrap_or_default();
            if text.is_empty() && value.is_string() {
                continue;
            }
            let (ok, family) = if v6 {
                (text.parse::<Ipv6Net>().is_ok_and(|n| n.trunc() == n), "an IPv6 prefix such as fd7a:115c:a1e0::/48")
            } else {
                (text.parse::<Ipv4Net>().is_ok_and(|n| n.trunc() == n), "an IPv4 prefix such as 100.64.0.0/10")
            };
            if !ok {
                bail!("{VAR}={path}: {key} is {value}, which is not {family} (its network address, then /length): fix it");
            }
        }
        let settings = Settings::of(s);
        if settings.v4.is_none() && settings.v6.is_none() && get(s, "prefixes").is_some() {
            bail!("{VAR}={path}: prefixes gives neither v4 nor v6; headscale needs at least one: give prefixes.v4, e.g. 100.64.0.0/10");
        }
        if let Some(domain) = get(s, "dns.base_domain").and_then(Value::as_str) {
            let server = crate::spec::SERVER_NAME;
            if !domain.is_empty() && (server == domain || server.ends_with(&format!(".{domain}"))) {
                bail!(
                    "{VAR}={path}: dns.base_domain {domain:?} contains the lab's server name {server}, which headscale \
                     refuses (its own name would become a MagicDNS name): use another base domain"
                );
            }
        }
        for (i, r) in settings.extra_records.iter().enumerate() {
            if r.name.is_empty() || r.value.is_empty() {
                bail!("{VAR}={path}: dns.extra_records[{i}] needs a name and a value: {r:?}");
            }
        }
        Ok(())
    }
}

/// Lay `user` over the lab's configuration `lab`, then give the lab back what it owns.
/// `policy_owned`: the lab runs an ACL policy of its own (P7), whose mode and path it owns too.
pub fn apply(lab: &Value, user: Option<&UserConfig>, policy_owned: bool) -> Effective {
    let Some(user) = user else {
        return Effective { config: lab.clone(), ..Effective::default() };
    };
    let theirs = &user.settings;
    let mut config = lab.clone();
    overlay(&mut config, theirs);
    let mut replacements = Vec::new();
    let mut unhonoured = Vec::new();

    let list = |key: &str| -> Vec<String> {
        get(theirs, key).and_then(Value::as_array).map(|a| a.iter().map(show).collect()).unwrap_or_default()
    };
    if let Some(issuer) = get(theirs, "oidc.issuer").and_then(Value::as_str).filter(|i| !i.is_empty()) {
        unhonoured.push(format!(
            "oidc.issuer {issuer}: an OIDC provider outside the lab, which has no route out; the lab runs without OIDC \
             (its clients register with pre-auth keys)"
        ));
        replacements.push(Replacement {
            key: "oidc.issuer".into(),
            theirs: issuer.into(),
            lab: "(none: no oidc section)".into(),
        });
        config.as_object_mut().expect("an object").remove("oidc");
    }
    let urls = list("derp.urls");
    if !urls.is_empty() {
        unhonoured.push(format!(
            "derp.urls {}: a DERP map outside the lab; the lab's clients relay through its embedded DERP alone",
            urls.join(", ")
        ));
    }
    let paths = list("derp.paths");
    if !paths.is_empty() {
        unhonoured.push(format!(
            "derp.paths {}: DERP maps in files of your machine, not in the lab; the lab's clients relay through its embedded \
             DERP alone",
            paths.join(", ")
        ));
    }
    let global = list("dns.nameservers.global");
    if !global.is_empty() {
        unhonoured.push(format!(
            "dns.nameservers.global {}: the lab has no route to them and runs no resolver; dropped, so the clients resolve \
             the tailnet's names (MagicDNS, extra records) and nothing else",
            global.join(", ")
        ));
    }
    if let Some(split) = get(theirs, "dns.nameservers.split").and_then(Value::as_object) {
        for (domain, servers) in split {
            let servers = servers.as_array().map(|a| a.iter().map(show).collect::<Vec<_>>().join(", ")).unwrap_or_default();
            unhonoured.push(format!(
                "dns.nameservers.split {domain} → {servers}: kept and sent to the clients, but no resolver answers there \
                 in the lab, so names under {domain} do not resolve (the scenarios ask none)"
            ));
        }
    }
    if let Some(file) = get(theirs, "dns.extra_records_path").and_then(Value::as_str).filter(|p| !p.is_empty()) {
        unhonoured.push(format!(
            "dns.extra_records_path {file}: a file of your machine, not the lab's; give the records in dns.extra_records"
        ));
        replacements.push(Replacement { key: "dns.extra_records_path".into(), theirs: file.into(), lab: "(none)".into() });
    }
    // headscale refuses extra_records beside extra_records_path, even an empty one.
    if let Some(dns) = config.get_mut("dns").and_then(Value::as_object_mut) {
        dns.remove("extra_records_path");
    }
    if let Some(domain) = get(theirs, "tls_letsencrypt_hostname").and_then(Value::as_str).filter(|d| !d.is_empty()) {
        unhonoured.push(format!(
            "tls_letsencrypt_hostname {domain}: Let's Encrypt is outside the lab; the lab's own CA issues the server's \
             certificate"
        ));
    }
    let mut owned: Vec<&str> = OWNED.to_vec();
    let their_policy = get(theirs, "policy.path").and_then(Value::as_str).filter(|p| !p.is_empty());
    if policy_owned {
        owned.extend(["policy.mode", "policy.path"]);
    } else if let Some(file) = their_policy {
        unhonoured.push(format!(
            "policy.path {file}: a file of your machine; this lab runs without an ACL policy (give yours to P7 with \
             MESH_POLICY)"
        ));
        owned.push("policy.path");
    }
    for key in owned {
        let Some(ours) = get(lab, key).cloned() else { continue };
        if let Some(value) = get(theirs, key).filter(|v| !v.is_null()) {
            if *value != ours && !(is_empty(value) && is_empty(&ours)) {
                let (theirs, lab) =
                    if SECRET.contains(&key) { (HIDDEN.into(), HIDDEN.into()) } else { (show(value), show(&ours)) };
                replacements.push(Replacement { key: key.into(), theirs, lab });
            }
        }
        set(&mut config, key, ours);
    }
    // headscale refuses override_local_dns without global nameservers, and the lab has none.
    if get(&config, "dns.override_local_dns") == Some(&Value::Bool(true)) {
        replacements.push(Replacement { key: "dns.override_local_dns".into(), theirs: "true".into(), lab: "false".into() });
        set(&mut config, "dns.override_local_dns", Value::Bool(false));
    }
    Effective { config, path: Some(user.path.clone()), replacements, unhonoured }
}

/// headscale itself judges the effective configuration before any lab exists: `headscale
/// configtest` (every release has it; it reads the file, opens the database and makes the
/// keys) on this machine, with the lab-owned keys pointing into a throwaway folder. A
/// configuration it refuses stops the run here, with headscale's error in one line.
pub fn precheck(user: &UserConfig, headscale: &std::path::Path, version: &str) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("mesh-config-check-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let d = dir.display();
    let throwaway = json!({
        "server_url": "https://headscale.lab.test",
        "listen_addr": "127.0.0.1:0",
        "metrics_listen_addr": "127.0.0.1:0",
        "grpc_listen_addr": "127.0.0.1:0",
        "tls_cert_path": "", "tls_key_path": "", "tls_letsencrypt_hostname": "",
        "noise": { "private_key_path": format!("{d}/noise.key") },
        "prefixes": { "v4": "100.64.0.0/10", "v6": "fd7a:115c:a1e0::/48" },
        "database": { "type": "sqlite", "sqlite": { "path": format!("{d}/db.sqlite") } },
        "derp": {
            "server": { "enabled": true, "region_id": 999, "region_code": "lab", "region_name": "lab",
                        "stun_listen_addr": "127.0.0.1:0", "private_key_path": format!("{d}/derp.key"),
                        "automatically_add_embedded_derp_region": true, "ipv4": "127.0.0.1", "ipv6": "" },
            "urls": [], "paths": [], "auto_update_enabled": false
        },
        "disable_check_updates": true,
        "unix_socket": format!("{d}/headscale.sock"),
        "logtail": { "enabled": false },
        "policy": { "mode": "file", "path": "" },
        "dns": { "magic_dns": true, "base_domain": "mesh.test", "override_local_dns": false,
                 "nameservers": { "global": [], "split": {} } }
    });
    let result = (|| -> Result<crate::exec::Output> {
        let config = dir.join("config.json");
        std::fs::write(&config, serde_json::to_string_pretty(&apply(&throwaway, Some(user), false).config)?)?;
        let mut cmd = std::process::Command::new(headscale);
        cmd.arg("configtest").env("HEADSCALE_CONFIG", &config);
        crate::exec::run("this machine", "headscale configtest", cmd, None, crate::budget::command())
    })();
    let _ = std::fs::remove_dir_all(&dir);
    let out = result?;
    if out.success() {
        return Ok(());
    }
    bail!("headscale {version} refuses {VAR}={}: {}: fix the file, or unset {VAR}", user.path, refusal_line(&out))
}

/// headscale's refusal in one line: its output without the time stamps, levels and warnings.
fn refusal_line(out: &crate::exec::Output) -> String {
    let text = format!("{}\n{}", out.stdout, out.stderr);
    let words: Vec<String> = text
        .lines()
        .map(|l| {
            let l = l.trim();
            // `2026-12-02T00:58:29Z FTL message`
            let mut parts = l.splitn(3, ' ');
            match (parts.next(), parts.next(), parts.next()) {
                (Some(t), Some(level), rest) if t.ends_with('Z') && level.len() == 3 => {
                    // 0.27: `… FTL path/configtest.go:19 > Error initializing error="…"`
                    let rest = rest.unwrap_or_default();
                    rest.split_once(" > ").map_or(rest, |(_, after)| after).trim().to_string()
                }
                _ => l.to_string(),
            }
        })
        .filter(|l| !l.is_empty() && !l.starts_with("WARN"))
        .collect();
    if words.is_empty() {
        return format!("it exited with {:?} and printed nothing", out.code);
    }
    words.join(" ").trim_end_matches('.').to_string()
}

/// One of `dns.extra_records`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtraRecord {
    pub name: String,
    #[serde(rename = "type", default)]
    pub kind: String,
    pub value: String,
}

/// What scenarios depend on, as the effective configuration says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub magic_dns: bool,
    pub base_domain: String,
    pub v4: Option<Ipv4Net>,
    pub v6: Option<Ipv6Net>,
    pub extra_records: Vec<ExtraRecord>,
    pub global_nameservers: Vec<String>,
    /// Split DNS: domain → its nameservers.
    pub split_nameservers: Vec<(String, Vec<String>)>,
    /// How long an ephemeral node may be offline before headscale deletes it, as headscale
    /// resolves it ([`ephemeral_inactivity_timeout`]); `None` where the value is not a Go
    /// duration this harness reads.
    pub ephemeral_inactivity_timeout: Option<std::time::Duration>,
}

/// headscale's default ephemeral inactivity timeout (0.27 and 0.29: `120s`).
pub const DEFAULT_EPHEMERAL_INACTIVITY_TIMEOUT: &str = "120s";

/// The ephemeral inactivity timeout `config` gives, resolved as headscale does: 0.29
/// (`node_settings`) reads `node.ephemeral.inactivity_timeout` when it is set and not empty,
/// then 0.27's top-level `ephemeral_node_inactivity_timeout`, then its default
/// (`resolveEphemeralInactivityTimeout`); 0.27 reads its own key alone. The text it found.
pub fn ephemeral_inactivity_timeout(config: &Value, node_settings: bool) -> String {
    let text = |key: &str| match get(config, key) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => Some(other.to_string()),
    };
    let new = if node_settings { text("node.ephemeral.inactivity_timeout") } else { None };
    new.or_else(|| text("ephemeral_node_inactivity_timeout")).unwrap_or_else(|| DEFAULT_EPHEMERAL_INACTIVITY_TIMEOUT.into())
}

/// A Go `time.Duration` string (`66s`, `30m`, `1h30m`, `1.5s`, `0`), as headscale's
/// configuration takes it; `None` if it is not one.
pub fn parse_go_duration(text: &str) -> Option<std::time::Duration> {
    let text = text.trim();
    if text == "0" {
        return Some(std::time::Duration::ZERO);
    }
    let mut rest = text;
    let mut total = 0.0f64;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).filter(|&i| i > 0)?;
        let n: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += n * factor;
        rest = &rest[unit_len..];
    }
    Some(std::time::Duration::from_secs_f64(total))
}

impl Settings {
    /// As headscale 0.29 reads `config` (see [`Settings::of_release`]).
    pub fn of(config: &Value) -> Settings {
        Settings::of_release(config, true)
    }

    /// What `config` says, read as a release does that has (`node_settings`, 0.29) or has not
    /// (0.27) the `node:` section.
    pub fn of_release(config: &Value, node_settings: bool) -> Settings {
        let text = |key: &str| get(config, key).and_then(Value::as_str).unwrap_or_default().to_string();
        let strings = |v: &Value| v.as_array().map(|a| a.iter().map(show).collect()).unwrap_or_default();
        Settings {
            // headscale's default is on.
            magic_dns: get(config, "dns.magic_dns").and_then(Value::as_bool).unwrap_or(true),
            base_domain: text("dns.base_domain"),
            v4: text("prefixes.v4").parse().ok(),
            v6: text("prefixes.v6").parse().ok(),
            extra_records: get(config, "dns.extra_records")
                .and_then(|v| serde_json::from_value(v.clone()).ok())
                .unwrap_or_default(),
            global_nameservers: get(config, "dns.nameservers.global").map(strings).unwrap_or_default(),
            split_nameservers: get(config, "dns.nameservers.split")
                .and_then(Value::as_object)
                .map(|m| m.iter().map(|(d, ns)| (d.clone(), strings(ns))).collect())
                .unwrap_or_default(),
            ephemeral_inactivity_timeout: parse_go_duration(&ephemeral_inactivity_timeout(config, node_settings)),
        }
    }

    /// Why MagicDNS names cannot be checked here, if they cannot.
    pub fn magic_dns_off(&self, path: Option<&str>) -> Option<String> {
        (!self.magic_dns).then(|| {
            format!(
                "MagicDNS is off in the configuration ({}dns.magic_dns: false): no names to resolve",
                path.map(|p| format!("{p}: ")).unwrap_or_default()
            )
        })
    }

    /// `peer`'s full MagicDNS name.
    pub fn fqdn(&self, peer: &str) -> String {
        format!("{peer}.{}", self.base_domain)
    }

    /// Every address is inside a configured prefix, and every configured family has one.
    pub fn check_addresses(&self, who: &str, ips: &[String]) -> Result<()> {
        for ip in ips {
            let addr: std::net::IpAddr = ip.parse().with_context(|| format!("{who}'s tailnet address {ip:?}"))?;
            let inside = match addr {
                std::net::IpAddr::V4(a) => self.v4.is_some_and(|n| n.contains(&a)),
                std::net::IpAddr::V6(a) => self.v6.is_some_and(|n| n.contains(&a)),
            };
            if !inside {
                bail!("{who}'s tailnet address {ip} is outside the configured prefixes (v4 {:?}, v6 {:?})", self.v4, self.v6);
            }
        }
        for (family, configured, has) in [
            ("IPv4", self.v4.is_some(), ips.iter().any(|i| !i.contains(':'))),
            ("IPv6", self.v6.is_some(), ips.iter().any(|i| i.contains(':'))),
        ] {
            if configured && !has {
                bail!("{who} has no tailnet {family} address though prefixes gives one: it has {ips:?}");
            }
        }
        Ok(())
    }
}

/// `a.b.c` in a JSON value.
pub fn get<'v>(value: &'v Value, key: &str) -> Option<&'v Value> {
    key.split('.').try_fold(value, |v, k| v.get(k))
}

/// Set `a.b.c`, making the objects on the way (a non-object on the way is replaced).
fn set(value: &mut Value, key: &str, new: Value) {
    let mut at = value;
    let parts: Vec<&str> = key.split('.').collect();
    for part in &parts[..parts.len() - 1] {
        if !at.get(*part).is_some_and(Value::is_object) {
            at.as_object_mut().expect("an object").insert(part.to_string(), json!({}));
        }
        at = at.get_mut(*part).expect("just made");
    }
    at.as_object_mut().expect("an object").insert(parts[parts.len() - 1].to_string(), new);
}

/// Theirs over ours: objects merge key by key, anything else of theirs replaces ours; a null
/// of theirs (YAML's `key:` with nothing) leaves ours.
fn overlay(ours: &mut Value, theirs: &Value) {
    match (ours, theirs) {
        (Value::Object(o), Value::Object(t)) => {
            for (k, v) in t {
                if v.is_null() {
                    continue;
                }
                match o.get_mut(k) {
                    Some(slot) if slot.is_object() && v.is_object() => overlay(slot, v),
                    _ => {
                        o.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (slot, t) => *slot = t.clone(),
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

/// A value as one line: strings bare, the rest as JSON.
fn show(v: &Value) -> String {
    match v {
        Value::String(s) if s.is_empty() => "\"\"".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lab() -> Value {
        json!({
            "server_url": "https://headscale.lab.test",
            "listen_addr": "192.168.1.5:443",
            "prefixes": { "v4": "100.64.0.0/10", "v6": "fd7a:115c:a1e0::/48", "allocation": "sequential" },
            "derp": { "server": { "enabled": true, "region_code": "lab", "ipv4": "192.168.1.5" }, "urls": [], "paths": [] },
            "database": { "type": "sqlite", "sqlite": { "path": "/lab/db.sqlite", "write_ahead_log": true } },
            "policy": { "mode": "file", "path": "" },
            "dns": { "magic_dns": true, "base_domain": "mesh.test", "override_local_dns": false,
                     "nameservers": { "global": [], "split": {} }, "extra_records": [] },
            "disable_check_updates": true
        })
    }

    fn theirs(yaml: &str) -> UserConfig {
        UserConfig::parse("mine.yaml", yaml).unwrap()
    }

    #[test]
    fn theirs_is_kept_and_only_what_the_lab_owns_is_replaced() {
        let user = theirs(
            "server_url: https://hs.example.com\nlisten_addr: 0.0.0.0:8080\n\
             prefixes: { v4: 100.80.0.0/16, v6: 'fd7a:115c:a1e0:80::/64', allocation: random }\n\
             database: { type: sqlite, sqlite: { path: /var/lib/headscale/db.sqlite, write_ahead_log: false } }\n\
             derp: { urls: [https://controlplane.tailscale.com/derpmap/default], server: { region_code: home } }\n\
             dns: { base_domain: tail.example.internal, override_local_dns: true, nameservers: { global: [1.1.1.1] } }\n\
             oidc: { issuer: https://sso.example.com }\n\
             disable_check_updates: true\n",
        );
        let e = apply(&lab(), Some(&user), false);
        let c = &e.config;
        assert_eq!(c["server_url"], "https://headscale.lab.test");
        assert_eq!(c["listen_addr"], "192.168.1.5:443");
        assert_eq!(c["prefixes"]["v4"], "100.80.0.0/16");
        assert_eq!(c["prefixes"]["allocation"], "random");
        assert_eq!(c["database"]["sqlite"]["path"], "/lab/db.sqlite");
        assert_eq!(c["database"]["sqlite"]["write_ahead_log"], false, "theirs kept");
        assert_eq!(c["derp"]["urls"], json!([]));
        assert_eq!(c["derp"]["server"]["region_code"], "home", "theirs kept");
        assert_eq!(c["derp"]["server"]["ipv4"], "192.168.1.5");
        assert_eq!(c["dns"]["base_domain"], "tail.example.internal");
        assert_eq!(c["dns"]["nameservers"]["global"], json!([]));
        assert_eq!(c["dns"]["override_local_dns"], false);
        assert!(c.get("oidc").is_none());
        let keys: Vec<&str> = e.replacements.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "oidc.issuer",
                "server_url",
                "listen_addr",
                "database.sqlite.path",
                "derp.urls",
                "dns.nameservers.global",
                "dns.override_local_dns"
            ],
            "{:#?}",
            e.replacements
        );
        assert_eq!(e.replacements[1].to_string(), "server_url: https://hs.example.com → https://headscale.lab.test");
        // An equal value of theirs (disable_check_updates) is no replacement.
        assert_eq!(e.unhonoured.len(), 3, "{:#?}", e.unhonoured);
        assert!(e.unhonoured[0].contains("oidc.issuer https://sso.example.com"));
        assert!(e.unhonoured[1].contains("derp.urls https://controlplane"));
        assert!(e.unhonoured[2].contains("dns.nameservers.global 1.1.1.1"));
        let s = Settings::of(c);
        assert_eq!(s.base_domain, "tail.example.internal");
        assert_eq!(s.v4, Some("100.80.0.0/16".parse().unwrap()));
    }

    #[test]
    fn the_labs_policy_replaces_theirs_and_theirs_alone_is_named() {
        let user = theirs("policy: { mode: file, path: /etc/headscale/acl.hujson }\n");
        let e = apply(&lab(), Some(&user), false);
        assert_eq!(e.config["policy"]["path"], "");
        assert!(e.unhonoured[0].contains("MESH_POLICY"));
        let mut with_policy = lab();
        with_policy["policy"]["path"] = json!("/lab/policy.hujson");
        let e = apply(&with_policy, Some(&user), true);
        assert_eq!(e.config["policy"]["path"], "/lab/policy.hujson");
        assert!(e.unhonoured.is_empty());
        assert_eq!(e.replacements[0].to_string(), "policy.path: /etc/headscale/acl.hujson → /lab/policy.hujson");
    }

    #[test]
    fn no_config_is_the_labs_own() {
        let e = apply(&lab(), None, false);
        assert_eq!(e.config, lab());
        assert!(e.replacements.is_empty() && e.path.is_none());
    }

    #[test]
    fn the_ephemeral_timeout_is_read_as_headscale_reads_it() {
        let secs = std::time::Duration::from_secs;
        let mut short = lab();
        short["node"] = json!({ "ephemeral": { "inactivity_timeout": "66s" } });
        let user = theirs("node: { expiry: 0s }\n");
        assert_eq!(Settings::of(&apply(&short, Some(&user), false).config).ephemeral_inactivity_timeout, Some(secs(66)));
        // 0.29: the new key first, then 0.27's, then the default; 0.27 reads its own alone.
        let both = json!({ "node": { "ephemeral": { "inactivity_timeout": "66s" } }, "ephemeral_node_inactivity_timeout": "5m" });
        assert_eq!(Settings::of_release(&both, true).ephemeral_inactivity_timeout, Some(secs(66)));
        assert_eq!(Settings::of_release(&both, false).ephemeral_inactivity_timeout, Some(secs(300)));
        let old = json!({ "node": { "ephemeral": { "inactivity_timeout": "" } }, "ephemeral_node_inactivity_timeout": "1h30m" });
        assert_eq!(Settings::of(&old).ephemeral_inactivity_timeout, Some(secs(5400)));
        assert_eq!(Settings::of(&json!({})).ephemeral_inactivity_timeout, Some(secs(120)));
        assert_eq!(parse_go_duration("1.5s"), Some(std::time::Duration::from_millis(1500)));
        assert_eq!(parse_go_duration("1m5s"), Some(secs(65)));
        assert_eq!(parse_go_duration("0"), Some(secs(0)));
        assert_eq!(parse_go_duration("66"), None);
        assert_eq!(parse_go_duration("5 minutes"), None);
    }

    #[test]
    fn json_is_yaml_too() {
        let user = theirs(r#"{"dns": {"magic_dns": false, "base_domain": "x.internal"}, "prefixes": {"v4": "100.90.0.0/16"}}"#);
        let s = Settings::of(&apply(&lab(), Some(&user), false).config);
        assert!(!s.magic_dns);
        assert!(s.magic_dns_off(Some("mine.json")).unwrap().contains("mine.json: dns.magic_dns: false"));
        assert_eq!(s.v6, Some("fd7a:115c:a1e0::/48".parse().unwrap()), "a key they leave out keeps the lab's");
    }

    #[test]
    fn their_postgres_server_is_replaced_by_the_labs_and_its_password_never_shown() {
        let user = theirs("database: { type: postgres, postgres: { host: db.internal, port: 5433, name: hs, user: hs, pass: s3cret, max_open_conns: 25 } }");
        let lab_pg = {
            let mut c = lab();
            c["database"] = crate::database::Database::Postgres.config("/lab");
            c
        };
        let e = apply(&lab_pg, Some(&user), false);
        assert_eq!(e.config["database"]["postgres"]["host"], crate::database::HOST);
        assert_eq!(e.config["database"]["postgres"]["max_open_conns"], 25, "theirs kept");
        let pass = e.replacements.iter().find(|r| r.key == "database.postgres.pass").expect("the password is replaced");
        assert_eq!((pass.theirs.as_str(), pass.lab.as_str()), (HIDDEN, HIDDEN));
        let shown = serde_json::to_string(&e).unwrap() + &e.replacements.iter().map(|r| r.to_string()).collect::<String>();
        assert!(!shown.contains("s3cret") && !shown.contains("mesh-lab-only"), "{shown}");
        assert!(e.replacements.iter().any(|r| r.key == "database.postgres.host" && r.theirs == "db.internal"));
    }

    #[test]
    fn bad_configurations_are_refused_with_the_fix() {
        for (yaml, says) in [
            ("server_url: [unclosed", "is not a YAML (or JSON) headscale configuration"),
            ("- a\n- b\n", "its top level is not a mapping"),
            ("prefixes: { v4: 100.64.0.0/33 }", "prefixes.v4 is \"100.64.0.0/33\", which is not an IPv4 prefix"),
            ("prefixes: { v6: banana }", "prefixes.v6 is \"banana\", which is not an IPv6 prefix"),
            ("prefixes: { v4: 100.80.0.1/16 }", "its network address"),
            ("database: { type: mysql }", "database.type is \"mysql\", which headscale does not know"),
            ("dns: { base_domain: lab.test }", "contains the lab's server name"),
        ] {
            let err = UserConfig::parse("mine.yaml", yaml).unwrap_err().to_string();
            assert!(err.contains(says) && err.contains("MESH_HEADSCALE_CONFIG=mine.yaml"), "{yaml}: {err}");
        }
    }

    #[test]
    fn headscales_refusal_is_one_line_in_either_releases_form() {
        let out = |stderr: &str| crate::exec::Output {
            host: "this machine".into(),
            command: "headscale configtest".into(),
            code: Some(1),
            stdout: String::new(),
            stderr: stderr.into(),
            elapsed: std::time::Duration::ZERO,
            timed_out: false,
        };
        // 0.29.3
        let line = refusal_line(&out(
            "2026-12-02T00:58:29Z FTL \nWARN: The \"ephemeral_node_inactivity_timeout\" configuration key is deprecated.\nFATAL: The \"randomize_client_port\" configuration key has been removed. See CHANGELOG.md.\n",
        ));
        assert_eq!(line, "FATAL: The \"randomize_client_port\" configuration key has been removed. See CHANGELOG.md");
        // 0.27.1
        let line = refusal_line(&out(
            "2026-12-02T01:02:05Z FTL ../../root/go/pkg/mod/github.com/juanfont/headscale@v0.27.1/cmd/headscale/cli/configtest.go:19 > Error initializing error=\"loading configuration: Fatal config error: dns.nameservers.global must be set\"\n",
        ));
        assert_eq!(
            line,
            "Error initializing error=\"loading configuration: Fatal config error: dns.nameservers.global must be set\""
        );
        assert!(refusal_line(&out("")).contains("printed nothing"));
    }

    #[test]
    fn addresses_outside_the_prefixes_are_named() {
        let s = Settings::of(&json!({ "prefixes": { "v4": "100.80.0.0/16", "v6": "fd7a:115c:a1e0:80::/64" } }));
        s.check_addresses("client-1", &["100.80.0.1".into(), "fd7a:115c:a1e0:80::1".into()]).unwrap();
        let err = s.check_addresses("client-1", &["100.64.0.1".into(), "fd7a:115c:a1e0:80::1".into()]).unwrap_err();
        assert!(err.to_string().contains("100.64.0.1 is outside"), "{err}");
        let err = s.check_addresses("client-1", &["100.80.0.1".into()]).unwrap_err();
        assert!(err.to_string().contains("no tailnet IPv6"), "{err}");
    }
}

#[cfg(test)]
mod fixture {
    use super::*;

    /// The README's realistic configuration parses, and what it asks that the lab cannot give
    /// is named: OIDC, the public DERP map, global nameservers, split DNS, the policy file.
    #[test]
    fn the_realistic_fixture_is_read_and_its_outside_settings_named() {
        let text = include_str!("../../tests/configs/realistic.yaml");
        let user = UserConfig::parse("tests/configs/realistic.yaml", text).unwrap();
        let lab = json!({ "server_url": "https://headscale.lab.test", "derp": { "urls": [] }, "dns": { "nameservers": { "global": [] } } });
        let e = apply(&lab, Some(&user), false);
        let named: Vec<&str> = e.unhonoured.iter().map(|l| l.split_whitespace().next().unwrap()).collect();
        assert_eq!(
            named,
            ["oidc.issuer", "derp.urls", "dns.nameservers.global", "dns.nameservers.split", "policy.path"],
            "{e:#?}"
        );
        let s = Settings::of(&e.config);
        assert_eq!(s.base_domain, "tail.example.internal");
        assert_eq!(s.extra_records.len(), 3);
        assert_eq!(e.config["dns"]["override_local_dns"], false);
    }
}
