//! The upgrade itself: the server stopped, its binary replaced by the run's headscale, and
//! started on the same database and keys with that release's configuration.

use crate::lab::Lab;
use anyhow::{bail, Result};
use std::time::{Duration, Instant};

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

    #[test]
    fn the_fatal_line_is_the_one_named() {
        let log = "2026-12-01T00:00:00Z INF Opening database\n\
                   2026-12-01T00:00:01Z FTL Migration failed: near \"x\": syntax error error=…\n";
        assert!(failure_line(log).unwrap().contains("Migration failed"));
        assert_eq!(failure_line("INF all fine\n"), None);
    }
}
