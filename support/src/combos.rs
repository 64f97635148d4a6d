//! Version combinations for `cargo mesh matrix`: the syntax of `--combos`, the defaults, and
//! what each combination sets in the environment of the check that runs it.
//!
//! A combination is `HEADSCALE/TAILSCALE`: `0.27.1/1.90.9`. A mixed lab gives the clients
//! their releases in order, joined by `+`: `0.29.3/1.80.3+1.98.10+1.102.5` is client-1 on
//! 1.80.3, client-2 on 1.98.10, client-3 on 1.102.5 (a fourth would be the late client-4's;
//! clients not named run the first release). Combinations are separated by commas.

use crate::releases;
use crate::tools::{Release, HEADSCALE, TAILSCALE};
use crate::version::Version;
use anyhow::{bail, Result};

/// How `--combos` is written, for error messages.
pub const FORM: &str = "HEADSCALE/TAILSCALE, e.g. 0.27.1/1.90.9, or a mixed lab 0.29.3/1.80.3+1.98.10+1.102.5 \
                        (client-1, client-2, … in order), combinations separated by commas";

/// One combination of releases a lab runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Combo {
    pub headscale: Version,
    /// The clients' releases in order (client-1 first); one release for a lab of one release.
    pub clients: Vec<Version>,
}

impl Combo {
    /// `0.29.3/1.80.3+1.98.10+1.102.5`, as it is written.
    pub fn label(&self) -> String {
        let clients: Vec<String> = self.clients.iter().map(Version::to_string).collect();
        format!("{}/{}", self.headscale, clients.join("+"))
    }

    /// The variables that make a check run this combination: the lab's tailscale is the first
    /// client's; the others of their own (`MESH_CLIENT_VERSIONS`), or empty for none.
    pub fn env(&self, client_names: &[String]) -> Vec<(&'static str, String)> {
        let own: Vec<String> = client_names.iter().zip(&self.clients).skip(1).map(|(host, v)| format!("{host}={v}")).collect();
        vec![
            (HEADSCALE.version_var, self.headscale.to_string()),
            (TAILSCALE.version_var, self.clients[0].to_string()),
            ("MESH_CLIENT_VERSIONS", own.join(",")),
        ]
    }

    /// Every release it runs, the server's first.
    pub fn releases(&self) -> Vec<Release> {
        let mut all = vec![Release { module: &HEADSCALE, version: self.headscale }];
        all.extend(self.clients.iter().map(|&version| Release { module: &TAILSCALE, version }));
        all
    }

    pub fn is_mixed(&self) -> bool {
        self.clients.len() > 1
    }
}

/// The default grid: the pins; NixOS 25.11's pair; the oldest client the pinned server lets
/// in; the newest client that builds here; a mixed lab of those three.
pub fn defaults() -> Vec<Combo> {
    let (hs, old_hs) = (HEADSCALE.pin, Version::new(0, 27, 1));
    let (oldest, newest) = (Version::new(1, 80, 3), Version::new(1, 102, 5));
    vec![
        Combo { headscale: hs, clients: vec![TAILSCALE.pin] },
        Combo { headscale: old_hs, clients: vec![Version::new(1, 90, 9)] },
        Combo { headscale: hs, clients: vec![oldest] },
        Combo { headscale: hs, clients: vec![newest] },
        Combo { headscale: hs, clients: vec![oldest, TAILSCALE.pin, newest] },
    ]
}

/// `--combos LIST`, checked whole before anything is built: each release a number, the
/// headscale of a series the harness drives, every client inside its window, no more client
/// releases than the lab has clients (`client_names`), no combination twice.
pub fn parse(text: &str, client_names: &[String]) -> Result<Vec<Combo>> {
    let mut combos: Vec<Combo> = Vec::new();
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let what = format!("--combos {text:?}: {entry:?}");
        let Some((server, clients)) = entry.split_once('/') else {
            bail!("{what} has no '/': give {FORM}");
        };
        let number = |v: &str| -> Result<Version> {
            v.trim().parse().map_err(|_| anyhow::anyhow!("{what}: {:?} is not a release number: give {FORM}", v.trim()))
        };
        let headscale = number(server)?;
        let clients: Vec<Version> = clients.split('+').map(number).collect::<Result<_>>()?;
        if clients.len() > client_names.len() {
            bail!(
                "{what} names {} client releases, but the lab has {} clients ({}): give at most one a client",
                clients.len(),
                client_names.len(),
                client_names.join(", ")
            );
        }
        let row = releases::headscale(headscale).map_err(|e| anyhow::anyhow!("{what}: {e}"))?;
        for (host, client) in client_names.iter().zip(&clients) {
            row.check_client(headscale, *client, &format!("{host}'s ")).map_err(|e| anyhow::anyhow!("{what}: {e}"))?;
        }
        let combo = Combo { headscale, clients };
        if combos.contains(&combo) {
            bail!("--combos {text:?} names {} twice: give each combination once", combo.label());
        }
        combos.push(combo);
    }
    if combos.is_empty() {
        bail!("--combos {text:?} names no combination: give {FORM}");
    }
    Ok(combos)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clients() -> Vec<String> {
        ["client-1", "client-2", "client-3", "client-4"].map(String::from).to_vec()
    }

    #[test]
    fn combinations_are_server_slash_clients_separated_by_commas() {
        let got = parse("0.27.1/1.90.9, v0.29.3/1.80.3+1.98.10+1.102.5", &clients()).unwrap();
        assert_eq!(got[0].label(), "0.27.1/1.90.9");
        assert!(!got[0].is_mixed());
        assert_eq!(got[1].label(), "0.29.3/1.80.3+1.98.10+1.102.5");
        let env = got[1].env(&clients());
        assert!(env.contains(&("MESH_TAILSCALE_VERSION", "1.80.3".into())));
        assert!(env.contains(&("MESH_CLIENT_VERSIONS", "client-2=1.98.10,client-3=1.102.5".into())));
        assert!(got[0].env(&clients()).contains(&("MESH_CLIENT_VERSIONS", String::new())));
    }

    #[test]
    fn bad_combinations_say_what_is_wrong() {
        for (bad, says) in [
            ("0.29.3", "has no '/'"),
            ("0.29.3/1.98", "\"1.98\" is not a release number"),
            ("0.26.1/1.90.9", "does not know how to drive"),
            ("0.29.3/1.78.1", "older than headscale 0.29.3 supports"),
            ("0.29.3/1.80.3+1.80.3+1.80.3+1.80.3+1.80.3", "the lab has 4 clients"),
            ("0.29.3/1.80.3,0.29.3/1.80.3", "twice"),
            (",", "names no combination"),
        ] {
            let err = parse(bad, &clients()).unwrap_err().to_string();
            assert!(err.contains(says) && err.contains("--combos"), "{bad}: {err}");
        }
    }

    #[test]
    fn the_defaults_are_valid_combinations() {
        let text: Vec<String> = defaults().iter().map(Combo::label).collect();
        assert_eq!(parse(&text.join(","), &clients()).unwrap(), defaults());
    }
}
