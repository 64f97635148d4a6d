//! ICMP ping from a host through the system's own ping: what a user's `ping` would see.

use crate::backend::Host;
use anyhow::{anyhow, Result};
use std::time::Duration;

#[derive(Debug, Clone, Copy)]
pub struct PingStats {
    pub sent: u32,
    pub received: u32,
    pub avg: Duration,
    pub max: Duration,
}

/// `count` pings 50 ms apart from `host` to `ip`; all must be answered.
pub fn ping(host: &dyn Host, ip: &str, count: u32) -> Result<PingStats> {
    let count_s = count.to_string();
    let out = host.exec(&["ping", "-n", "-c", &count_s, "-i", "0.05", "-W", "2", ip], None, crate::budget::ping())?;
    let stats = parse(&out.stdout).ok_or_else(|| anyhow!("{}", out.describe_failure()))?;
    if stats.received < stats.sent || !out.success() {
        return Err(anyhow!("{} of {} pings answered\n{}", stats.received, stats.sent, out.describe_failure()));
    }
    Ok(stats)
}

/// One ping, answered within a second: the mesh's quickest "does it reach".
pub fn answers(host: &dyn Host, ip: &str) -> Result<()> {
    host.succeed(&["ping", "-n", "-c", "1", "-W", "1", ip]).map(|_| ())
}

/// iputils' summary: `3 packets transmitted, 3 received, …` and `rtt min/avg/max/mdev = a/b/c/d ms`.
fn parse(text: &str) -> Option<PingStats> {
    let counts = text.lines().find(|l| l.contains("packets transmitted"))?;
    let mut words = counts.split(',').map(|p| p.split_whitespace().next().and_then(|n| n.parse::<u32>().ok()));
    let (sent, received) = (words.next()??, words.next()??);
    let ms = |v: f64| Duration::from_secs_f64(v / 1000.0);
    let (avg, max) = match text.lines().find(|l| l.starts_with("rtt ")) {
        Some(rtt) => {
            let values: Vec<f64> =
                rtt.split('=').nth(1)?.split_whitespace().next()?.split('/').filter_map(|v| v.parse().ok()).collect();
            (ms(*values.get(1)?), ms(*values.get(2)?))
        }
        None => (Duration::ZERO, Duration::ZERO),
    };
    Some(PingStats { sent, received, avg, max })
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_iputils_summaries() {
        let text =
            "3 packets transmitted, 3 received, 0% packet loss, time 402ms\nrtt min/avg/max/mdev = 0.050/0.063/0.080/0.012 ms\n";
        let s = super::parse(text).unwrap();
        assert_eq!((s.sent, s.received), (3, 3));
        assert_eq!(s.max.as_micros(), 80);
        let lost = super::parse("3 packets transmitted, 0 received, 100% packet loss, time 2041ms\n").unwrap();
        assert_eq!(lost.received, 0);
    }
}
