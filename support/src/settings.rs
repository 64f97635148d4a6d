//! The environment variables that tune a run, checked in one place before anything is built:
//! a bad value is a one-line error naming the variable, the value and what it takes.
//! (Backend, subnets, binaries and `MESH_LAB` are checked where they are read, as richly.)

use crate::version::Version;
use anyhow::{bail, Result};
use std::collections::BTreeMap;

/// `1` (on), `0` or unset (off).
const SWITCHES: &[&str] = &["MESH_VERBOSE", "MESH_QUIET", "MESH_ALLOW_VERSION_MISMATCH", REQUIRE_PREREQUISITES];

/// `1`: a harness test that finds a prerequisite of its own missing (a normal user's lab needs
/// user namespaces and an open /dev/net/tun) fails instead of skipping. CI sets it, having
/// provided them, so that such a test really runs there.
pub const REQUIRE_PREREQUISITES: &str = "MESH_REQUIRE_PREREQUISITES";

/// Releases asked for by number (`--headscale-version`, `--tailscale-version` set them), and
/// the upgrade rehearsal's starting release.
const VERSIONS: &[&str] = &["MESH_HEADSCALE_VERSION", "MESH_TAILSCALE_VERSION", UPGRADE_FROM_VAR];

/// The headscale release the upgrade rehearsal's server starts at (`upgrade`).
pub const UPGRADE_FROM_VAR: &str = "MESH_UPGRADE_FROM";

pub fn validate() -> Result<()> {
    for var in SWITCHES {
        if let Ok(v) = std::env::var(var) {
            if !matches!(v.as_str(), "" | "0" | "1") {
                bail!("{var}={v:?} is not a switch: set it to 1 (on) or 0, or leave it unset");
            }
        }
    }
    time_scale()?;
    for var in VERSIONS {
        version(var)?;
    }
    client_versions()?;
    priorities()?;
    if let Ok(v) = std::env::var("MESH_ACCEL") {
        if !matches!(v.trim(), "" | "auto" | "tcg") {
            bail!("MESH_ACCEL={v:?} is not an accelerator choice: use tcg (force QEMU's emulation) or auto (KVM where it truly works)");
        }
    }
    if let Ok(v) = std::env::var("MESH_LIBVIRT_URI") {
        if !v.contains(":///") && !v.contains("://") {
            bail!("MESH_LIBVIRT_URI={v:?} is not a libvirt URI: use e.g. qemu:///system (the default)");
        }
    }
    Ok(())
}

/// `MESH_TIME_SCALE`: the factor on every time budget the user asks for (1 when unset).
pub fn time_scale() -> Result<f64> {
    let Ok(v) = std::env::var("MESH_TIME_SCALE") else { return Ok(1.0) };
    match v.trim().parse::<f64>() {
        Ok(f) if f.is_finite() && f > 0.0 => Ok(f),
        _ => bail!("MESH_TIME_SCALE={v:?} is not a positive number: use e.g. 2 to double every time budget"),
    }
}

/// A release asked for by number: `0.27.1` or `v0.27.1`; `None` when unset or empty (the pin).
pub fn version(var: &str) -> Result<Option<Version>> {
    match std::env::var(var) {
        Ok(v) if v.trim().is_empty() => Ok(None),
        Ok(v) => match v.parse() {
            Ok(version) => Ok(Some(version)),
            Err(_) => bail!(
                "{var}={v:?} is not a release number: give one such as 0.27.1 or v0.27.1, or unset it for the pinned release"
            ),
        },
        Err(_) => Ok(None),
    }
}

/// `MESH_CLIENT_VERSIONS`: `client-1=1.80.3,client-2=1.98.10`, the clients that run a
/// tailscale release of their own (the others run `MESH_TAILSCALE_VERSION`'s, or the pin). Its
/// form only: that each name is a client of the lab is checked against the lab's spec.
pub fn client_versions() -> Result<BTreeMap<String, Version>> {
    match std::env::var(CLIENT_VERSIONS) {
        Ok(text) => parse_client_versions(&text),
        Err(_) => Ok(BTreeMap::new()),
    }
}

const CLIENT_VERSIONS: &str = "MESH_CLIENT_VERSIONS";

fn parse_client_versions(text: &str) -> Result<BTreeMap<String, Version>> {
    const VAR: &str = CLIENT_VERSIONS;
    const EXAMPLE: &str = "client-1=1.80.3,client-2=1.98.10";
    let mut clients = BTreeMap::new();
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let Some((host, version)) = entry.split_once('=') else {
            bail!("{VAR}={text:?}: {entry:?} has no '=': give host=version pairs, separated by commas, e.g. {EXAMPLE}");
        };
        let host = host.trim();
        let Ok(version) = version.parse::<Version>() else {
            bail!("{VAR}={text:?}: {entry:?}: {:?} is not a release number: give one such as 1.80.3 or v1.80.3", version.trim());
        };
        if host.is_empty() {
            bail!("{VAR}={text:?}: {entry:?} names no host: give host=version pairs, e.g. {EXAMPLE}");
        }
        if clients.insert(host.to_string(), version).is_some() {
            bail!("{VAR}={text:?} names {host} twice: give each client one version");
        }
    }
    Ok(clients)
}

/// `MESH_PRIORITIES` (`--priorities`): the scenario files a check runs, by priority number:
/// `0-7`, `0,1,5`, `2-4,10`. `None`: every one. The others are reported skipped, saying so.
pub const PRIORITIES_VAR: &str = "MESH_PRIORITIES";

pub fn priorities() -> Result<Option<Vec<std::ops::RangeInclusive<u32>>>> {
    match std::env::var(PRIORITIES_VAR) {
        Ok(text) if !text.trim().is_empty() => parse_priorities(&text).map(Some),
        _ => Ok(None),
    }
}

fn parse_priorities(text: &str) -> Result<Vec<std::ops::RangeInclusive<u32>>> {
    let bad = || {
        anyhow::anyhow!(
            "{PRIORITIES_VAR}={text:?} is not a list of priorities: give numbers and ranges such as 0-7 or 0,1,5 or 2-4,10"
        )
    };
    text.split(',')
        .map(str::trim)
        .map(|part| {
            let number = |s: &str| s.trim().trim_start_matches(['p', 'P']).parse::<u32>().map_err(|_| bad());
            match part.split_once('-') {
                Some((a, b)) if number(a)? <= number(b)? => Ok(number(a)?..=number(b)?),
                Some(_) => Err(bad()),
                None => Ok(number(part)?..=number(part)?),
            }
        })
        .collect()
}

/// A switch is on.
pub fn on(var: &str) -> bool {
    std::env::var(var).as_deref() == Ok("1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities_are_numbers_and_ranges() {
        let got = parse_priorities("0-7, 10,p3").unwrap();
        assert_eq!(got, vec![0..=7, 10..=10, 3..=3]);
        for bad in ["", "7-0", "a", "1-", "0..7"] {
            assert!(parse_priorities(bad).unwrap_err().to_string().contains("MESH_PRIORITIES"), "{bad}");
        }
    }

    #[test]
    fn client_versions_are_host_equals_version_pairs() {
        let got = parse_client_versions("client-1=1.80.3, client-3=v1.102.5,").unwrap();
        assert_eq!(got.get("client-1"), Some(&Version::new(1, 80, 3)));
        assert_eq!(got.get("client-3"), Some(&Version::new(1, 102, 5)));
        assert!(parse_client_versions("").unwrap().is_empty());
        for (bad, says) in [
            ("client-1:1.80.3", "has no '='"),
            ("client-1=1.80", "not a release number"),
            ("=1.80.3", "names no host"),
            ("client-1=1.80.3,client-1=1.98.10", "twice"),
        ] {
            let err = parse_client_versions(bad).unwrap_err().to_string();
            assert!(err.contains(says) && err.contains("MESH_CLIENT_VERSIONS"), "{bad}: {err}");
        }
    }
}
