//! What each release of the control server can do, in one table. The harness asks the table
//! (`release.preauth_list_needs_user`) where it writes headscale's configuration and drives its
//! CLI; no other place compares version numbers.
//!
//! Each row was read from that release's own source at its tag (`cmd/headscale/cli`,
//! `hscontrol/types/config.go`, `config-example.yaml`, `proto/headscale/v1`, `hscontrol/capver`)
//! and, where `run_here` says so, run through every scenario on this project's machine.
//!
//! What is the same in every row, so not a column: the JSON that `nodes list`, `users list` and
//! `preauthkeys list` print (`-o json` is Go's encoding of the same protobuf messages: `id`,
//! `name`, `given_name`, `ip_addresses`, `online`, `expiry`; `reusable`, `used`, `expiration`,
//! `created_at`; false and empty fields left out). A node's tags differ: 0.27 and 0.28 list
//! its `forced_tags`/`valid_tags`/`invalid_tags`, 0.29 its `tags` (`Node::all_tags` reads
//! either). `preauthkeys create --user <id> --expiration` (and its `--ephemeral`), `users
//! create`, `nodes delete --identifier <id> --force`, `nodes expire --identifier <id>`,
//! `health`, `metrics_listen_addr` and `grpc_listen_addr` are alike; so is the shortest
//! ephemeral inactivity timeout either accepts (more than 65 s).

use crate::version::Version;
use anyhow::{bail, Result};

/// One headscale series (every patch release of a major.minor) and what it can do.
#[derive(Debug, PartialEq, Eq)]
pub struct HeadscaleRelease {
    /// The major.minor series: `Version::new(0, 27, 0)` stands for every 0.27.x.
    pub series: Version,
    /// `headscale preauthkeys list` needs `--user <id>` and lists that user's keys (0.27: the
    /// flag is required on every `preauthkeys` command). From 0.28 `--user` is a flag of
    /// `create` alone, and `list` lists every key and refuses the flag.
    pub preauth_list_needs_user: bool,
    /// Node settings live under `node:` — `node.expiry` (the default key expiry) and
    /// `node.ephemeral.inactivity_timeout` (0.29). Before, the timeout is the top-level
    /// `ephemeral_node_inactivity_timeout` and there is no default key expiry to set (nodes
    /// registered with a pre-auth key do not expire unless the client asks). 0.29 still reads
    /// the old key, with a deprecation warning; 0.27 ignores `node:` silently.
    pub node_settings: bool,
    /// `taildrop.enabled` exists (0.28 and later); 0.27 has no Taildrop setting.
    pub taildrop_setting: bool,
    /// The oldest client it lets in: its `capver.MinSupportedCapabilityVersion` (the Noise
    /// handshake refuses any client below it) and the tailscale release that first had it.
    pub min_client_capver: u32,
    pub min_client: Version,
    /// The newest tailscale series its capability table names. Newer clients are let in
    /// (nothing refuses them); this is how far upstream tested it.
    pub newest_client_named: Version,
    /// A policy may carry a `tests` block (`src`, `proto`, `accept`, `deny`), which
    /// `headscale policy check` evaluates against the live users and nodes (0.29). Before,
    /// the policy is parsed with unknown fields rejected, and a `tests` block is an error
    /// (`unknown field "tests"`).
    pub policy_tests: bool,
    /// `headscale policy check` without a running server: its arguments before the file.
    /// 0.27 and 0.28 parse the file alone (users and nodes empty) and have no `-c` flag on
    /// that command (the configuration comes from `HEADSCALE_CONFIG`); 0.29 asks a running
    /// server over gRPC unless told to open the database itself (`--bypass-…`, with `--force`
    /// to answer its prompt), which also runs the `tests` block against that database.
    pub policy_check_offline: &'static [&'static str],
    /// `policy check` accepts the root's `-c CONFIG` (0.29); 0.27.1 refuses it ("unknown
    /// shorthand flag: 'c' in -c") and reads `HEADSCALE_CONFIG` instead (0.28 not run here:
    /// given the environment too, which every release reads).
    pub policy_check_takes_config_flag: bool,
    /// `headscale policy check --file` asks the running server (gRPC), which runs the `tests`
    /// block against its live users and nodes (0.29).
    pub policy_check_live: bool,
    /// headscale probes the routers of a route two or more serve (`node.routes.ha`, every 10 s,
    /// a 5 s timeout) and moves the route away from a primary that does not answer, though its
    /// map session still looks open (0.28 and later). 0.27 moves a route only when its
    /// primary's map session ends: a router cut off without a clean close keeps it until TCP
    /// gives up on the session (P8: not within 90 s).
    pub ha_probe: bool,
    /// A tagged pre-auth key (`preauthkeys create --tags tag:x`) needs `--user <id>` (0.27,
    /// 0.28: the flag is required, and the node keeps that user besides its forced tags); 0.29
    /// makes a key owned by its tags when no user is given, and the node belongs to its tags.
    pub tagged_key_needs_user: bool,
    /// Which releases of this series passed every scenario here (empty: known from its
    /// source only).
    pub run_here: &'static str,
}

/// Every headscale series the harness speaks, oldest first.
pub const HEADSCALE: &[HeadscaleRelease] = &[
    HeadscaleRelease {
        series: Version::new(0, 27, 0),
        preauth_list_needs_user: true,
        node_settings: false,
        taildrop_setting: false,
        min_client_capver: 90,
        min_client: Version::new(1, 64, 0),
        newest_client_named: Version::new(1, 84, 0),
        policy_tests: false,
        policy_check_offline: &["policy", "check", "--file"],
        policy_check_takes_config_flag: false,
        policy_check_live: false,
        ha_probe: false,
        tagged_key_needs_user: true,
        run_here: "0.27.1 with tailscale 1.90.9 (NixOS 25.11's pair), 61/61, 2026-12-01",
    },
    HeadscaleRelease {
        series: Version::new(0, 28, 0),
        preauth_list_needs_user: false,
        node_settings: false,
        taildrop_setting: true,
        min_client_capver: 106,
        min_client: Version::new(1, 74, 0),
        newest_client_named: Version::new(1, 92, 0),
        // 0.28.0 builds here since 2026-12-02 (the checksum of its dependency
        // github.com/tailscale/tailsql, refused before, is served); not run through the scenarios.
        policy_tests: false,
        policy_check_offline: &["policy", "check", "--file"],
        policy_check_takes_config_flag: false,
        policy_check_live: false,
        ha_probe: true,
        tagged_key_needs_user: true,
        run_here: "",
    },
    HeadscaleRelease {
        series: Version::new(0, 29, 0),
        preauth_list_needs_user: false,
        node_settings: true,
        taildrop_setting: true,
        min_client_capver: 113,
        min_client: Version::new(1, 80, 0),
        newest_client_named: Version::new(1, 98, 0),
        policy_tests: true,
        policy_check_offline: &["policy", "check", "--bypass-grpc-and-access-database-directly", "--force", "--file"],
        policy_check_takes_config_flag: true,
        policy_check_live: true,
        ha_probe: true,
        tagged_key_needs_user: false,
        run_here: "0.29.3 with tailscale 1.98.10 (the pins), 61/61, 2026-12-01",
    },
];

/// The row of headscale `version`, or an error naming the series the harness knows.
pub fn headscale(version: Version) -> Result<&'static HeadscaleRelease> {
    match HEADSCALE.iter().find(|r| r.series.same_series(&version)) {
        Some(row) => Ok(row),
        None => {
            let known: Vec<String> = HEADSCALE.iter().map(|r| format!("{}.{}.x", r.series.major, r.series.minor)).collect();
            bail!(
                "headscale {version} is of a series this harness does not know how to drive (it knows {}): pick a release \
                 of one of those, or add a row for it to support/src/releases.rs from that release's source",
                known.join(", ")
            )
        }
    }
}

impl HeadscaleRelease {
    /// A client of `client`'s version may register with this server (`server` is its exact
    /// version, for the message; `what` names the client, `client-2: `, or is empty); the
    /// error names the window and the fix.
    pub fn check_client(&self, server: Version, client: Version, what: &str) -> Result<()> {
        if client < self.min_client {
            bail!(
                "{what}tailscale {client} is older than headscale {server} supports (tailscale {}.{} and newer, \
                 capability {}; its Noise handshake refuses older clients): set MESH_TAILSCALE_VERSION to {} or newer, \
                 or test an older headscale with MESH_HEADSCALE_VERSION",
                self.min_client.major,
                self.min_client.minor,
                self.min_client_capver,
                self.min_client
            );
        }
        Ok(())
    }

    /// The client is newer than any this server's capability table names (it is let in).
    pub fn newer_than_named(&self, client: Version) -> bool {
        (client.major, client.minor) > (self.newest_client_named.major, self.newest_client_named.minor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_patch_release_of_a_series_has_its_row() {
        assert!(headscale(Version::new(0, 27, 1)).unwrap().preauth_list_needs_user);
        assert!(!headscale(Version::new(0, 29, 3)).unwrap().preauth_list_needs_user);
        assert!(headscale(Version::new(0, 29, 0)).unwrap().node_settings);
        let err = headscale(Version::new(0, 26, 1)).unwrap_err().to_string();
        assert!(err.contains("0.26.1") && err.contains("0.27.x, 0.28.x, 0.29.x"), "{err}");
    }

    #[test]
    fn the_client_window_is_the_servers_minimum_and_up() {
        let row = headscale(Version::new(0, 29, 3)).unwrap();
        assert!(row.check_client(Version::new(0, 29, 3), Version::new(1, 80, 3), "").is_ok());
        assert!(row.check_client(Version::new(0, 29, 3), Version::new(1, 102, 5), "").is_ok());
        let err = row.check_client(Version::new(0, 29, 3), Version::new(1, 78, 1), "").unwrap_err().to_string();
        assert!(err.contains("1.78.1") && err.contains("1.80 and newer") && err.contains("MESH_TAILSCALE_VERSION"), "{err}");
        let old = headscale(Version::new(0, 27, 1)).unwrap();
        assert!(old.check_client(Version::new(0, 27, 1), Version::new(1, 64, 0), "").is_ok());
        assert!(old.newer_than_named(Version::new(1, 90, 9)) && !row.newer_than_named(Version::new(1, 98, 10)));
    }

    #[test]
    fn rows_are_in_order_one_a_series() {
        for pair in HEADSCALE.windows(2) {
            assert!(pair[0].series < pair[1].series && !pair[0].series.same_series(&pair[1].series));
        }
    }
}
