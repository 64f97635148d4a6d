//! The upgrade rehearsal (P6): the server starts at an older headscale (`MESH_UPGRADE_FROM`,
//! N-1), and is upgraded in place to the run's (N) — stopped, its binary replaced, started on
//! the same database (SQLite or PostgreSQL) and keys with N's configuration keys — as an
//! operator upgrades.
//! Here: whether and from what a run rehearses it; the upgrade itself is [`in_place`].

pub mod in_place;

use crate::backend::BackendKind;
use crate::releases;
use crate::tools::{HEADSCALE, TAILSCALE};
use crate::version::Version;
use anyhow::{bail, Context, Result};

/// The variable naming the release the server starts at.
pub use crate::settings::UPGRADE_FROM_VAR as FROM_VAR;
/// N-1 by default: NixOS 25.11's headscale, the newest release before the pin's series that
/// builds here (0.28.0 does not).
pub const DEFAULT_FROM: Version = Version::new(0, 27, 1);

/// What a run's upgrade rehearsal does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// The server starts at `from` and is upgraded to `to`.
    Rehearse { from: Version, to: Version },
    /// It cannot be rehearsed in this run, for this reason (its scenario says so, skipped).
    Skip(String),
}

impl Plan {
    /// From the environment, checked before anything is built: a `MESH_UPGRADE_FROM` not
    /// older than the headscale it upgrades to, of a series the harness does not drive, or
    /// that would not let the run's clients in, is bad input.
    pub fn from_env(backend: BackendKind) -> Result<Plan> {
        let to = HEADSCALE.wanted()?.version;
        let plan = match explicit_from()? {
            Some(from) if from >= to => bail!(
                "{FROM_VAR}={from} is not older than the headscale it upgrades to ({to}, {} or the pin): give an older \
                 release, e.g. {FROM_VAR}={DEFAULT_FROM}, or a newer {}",
                HEADSCALE.version_var,
                HEADSCALE.version_var
            ),
            Some(from) => Plan::Rehearse { from, to },
            None if DEFAULT_FROM >= to => {
                let older = releases::HEADSCALE.iter().any(|r| r.series < to && !r.series.same_series(&to));
                let fix = if older {
                    format!("set {FROM_VAR} to an older release to rehearse an upgrade to {to}")
                } else {
                    "the harness drives no older series (support/src/releases.rs), so there is nothing to upgrade from".into()
                };
                return Ok(Plan::Skip(format!(
                    "the run's headscale {to} is not newer than {DEFAULT_FROM}, the release the rehearsal upgrades from by \
                     default: {fix}"
                )));
            }
            None => Plan::Rehearse { from: DEFAULT_FROM, to },
        };
        let Plan::Rehearse { from, .. } = plan else { unreachable!() };
        let row = releases::headscale(from).with_context(|| format!("{FROM_VAR}={from}"))?;
        let mut clients = vec![TAILSCALE.wanted()?.version];
        clients.extend(crate::settings::client_versions()?.into_values());
        for client in clients {
            row.check_client(from, client, &format!("{FROM_VAR}={from}: "))?;
        }
        if backend != BackendKind::Netns {
            return Ok(Plan::Skip(format!(
                "the {} backend installs one headscale into its VM image, and the rehearsal needs {from} there too \
                 (the netns backend rehearses it)",
                backend.name()
            )));
        }
        Ok(plan)
    }
}

/// `MESH_UPGRADE_FROM`, if set.
fn explicit_from() -> Result<Option<Version>> {
    crate::settings::version(FROM_VAR)
}

/// The release a run whose headscale is `to` starts its rehearsal's server at, if it rehearses
/// one (`cargo mesh matrix` builds it with the rest, before the first lab).
pub fn from_for(to: Version) -> Result<Option<Version>> {
    let from = explicit_from()?.unwrap_or(DEFAULT_FROM);
    Ok((from < to).then_some(from))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With the versions left to their defaults (the pins, 0.27.1), netns rehearses and a VM
    /// lab skips, saying why.
    #[test]
    fn a_vm_lab_skips_the_rehearsal_with_its_reason() {
        let set = |v: &str| std::env::var(v).is_ok_and(|v| !v.is_empty());
        if set(FROM_VAR) || set(HEADSCALE.version_var) || set(TAILSCALE.version_var) || set("MESH_CLIENT_VERSIONS") {
            eprintln!("SKIPPED: this test reads the defaults, and this environment sets versions");
            return;
        }
        let netns = Plan::from_env(BackendKind::Netns).unwrap();
        assert_eq!(netns, Plan::Rehearse { from: DEFAULT_FROM, to: HEADSCALE.pin });
        match Plan::from_env(BackendKind::Libvirt).unwrap() {
            Plan::Skip(reason) => assert!(reason.contains("libvirt backend") && reason.contains("netns"), "{reason}"),
            other => panic!("a VM lab rehearses: {other:?}"),
        }
        assert_eq!(from_for(Version::new(0, 27, 1)).unwrap(), None);
        assert_eq!(from_for(HEADSCALE.pin).unwrap(), Some(DEFAULT_FROM));
    }
}
