//! The upgrade rehearsal (P6): the server starts at an older headscale (`MESH_UPGRADE_FROM`,
//! N-1), and is upgraded in place to the run's (N) — stopped, its binary replaced, started on
//! the same SQLite database and keys with N's configuration keys — as an operator upgrades.
//! Here: whether and from what a run rehearses it, and the upgrade itself.

use crate::backend::BackendKind;
use crate::lab::Lab;
use crate::releases;
use crate::tools::{HEADSCALE, TAILSCALE};
use crate::version::Version;
use anyhow::{bail, Context, Result};
use std::time::{Duration, Instant};

/// The variable naming the release the server starts at.
pub const FROM_VAR: &str = "MESH_UPGRADE_FROM";
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

/// What the upgrade measured.
pub struct Upgraded {
    /// From N's start to it answering its CLI and HTTPS port: the database's migration.
    pub ready: Duration,
}

/// Stop the server, replace its binary by the run's headscale, write N's configuration (the
/// same database, noise and DERP keys, TLS files), and start it. A server that does not come
/// up is reported with headscale's own log line.
pub fn upgrade_server(lab: &Lab) -> Result<Upgraded> {
    let old = lab.headscale();
    old.host.stop_service(crate::headscale::SERVICE)?;
    lab.server_upgraded()?;
    let new = lab.headscale();
    let spec = &lab.record.spec;
    new.host.write_file(&new.config_path(), serde_json::to_string_pretty(&new.config(spec))?.as_bytes())?;
    let log_before = new.host.service_log(crate::headscale::SERVICE).len();
    let started = Instant::now();
    let ready = new.start_service().and_then(|()| new.await_ready(spec));
    if let Err(e) = ready {
        let log = new.host.service_log(crate::headscale::SERVICE);
        let since = log.get(log_before..).unwrap_or(&log);
        bail!(
            "headscale {} did not start on the database of {}: {} (its log: {}; {e:#})",
            lab.record.tools.versions.headscale,
            lab.record.tools.upgrade_from.as_ref().map(|f| f.version.as_str()).unwrap_or("?"),
            failure_line(since).unwrap_or("it logged no error"),
            new.host.log_path(crate::headscale::SERVICE).display()
        );
    }
    Ok(Upgraded { ready: started.elapsed() })
}

/// headscale's own line for why it stopped: its fatal or error line (a failed migration is
/// one), the first of them.
fn failure_line(log: &str) -> Option<&str> {
    let is = |l: &&str, words: &[&str]| words.iter().any(|w| l.contains(w));
    log.lines().find(|l| is(l, &["FTL", "fatal", "panic"])).or_else(|| log.lines().find(|l| is(l, &["ERR", "migrat"])))
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

    #[test]
    fn the_fatal_line_is_the_one_named() {
        let log = "2026-12-01T00:00:00Z INF Opening database\n\
                   2026-12-01T00:00:01Z FTL Migration failed: near \"x\": syntax error error=…\n";
        assert!(failure_line(log).unwrap().contains("Migration failed"));
        assert_eq!(failure_line("INF all fine\n"), None);
    }
}
