//! ICMP ping from a host through the system's own ping: what a user's `ping` would see.

use crate::backend::Host;
use anyhow::{anyhow, Result};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct PingStats {
    pub sent: u32,
    pub received: u32,
    /// The sequence numbers answered (duplicates once), in the order the replies came.
    pub answered: Vec<u32>,
    pub avg: Duration,
    pub max: Duration,
}

/// `count` pings 50 ms apart from `host` to `ip`; every one must be answered.
///
/// With `-W` alone, iputils' ping stops waiting two round trips after its last probe once any
/// reply has come, so on emulated hosts a reply late by a scheduler tick counts as lost. With
/// `-w` it waits until `count` replies have come (sending more meanwhile) or the deadline
/// passes; a probe is lost when a later one was answered and it never was.
pub fn ping(host: &dyn Host, ip: &str, count: u32) -> Result<PingStats> {
    let budget = crate::budget::ping();
    let (count_s, deadline) = (count.to_string(), crate::budget::whole_seconds(budget));
    let out = host.exec(&["ping", "-n", "-c", &count_s, "-i", "0.05", "-w", &deadline, ip], None, budget + budget / 4)?;
    let stats = parse(&out.stdout).ok_or_else(|| anyhow!("{}", out.describe_failure()))?;
    let missing = stats.missing(count);
    if !missing.is_empty() || !out.success() {
        return Err(anyhow!(
            "{} of the first {count} pings answered within {deadline} s (no reply to icmp_seq {missing:?})\n{}",
            count as usize - missing.len(),
            out.describe_failure()
        ));
    }
    Ok(stats)
}

/// One ping, answered within [`crate::budget::reach`]: the mesh's quickest "does it reach".
pub fn answers(host: &dyn Host, ip: &str) -> Result<()> {
    let wait = format!("{:.1}", crate::budget::reach().as_secs_f64());
    host.succeed(&["ping", "-n", "-c", "1", "-W", &wait, ip]).map(|_| ())
}

impl PingStats {
    /// The probes among the first `count` that got no reply (a probe still in flight when
    /// ping stopped, after `count` replies had come, is not among them).
    pub fn missing(&self, count: u32) -> Vec<u32> {
        (1..=count).filter(|seq| !self.answered.contains(seq)).collect()
    }
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
    let answered = text
        .lines()
        .filter(|l| l.contains(" bytes from ") && !l.contains("DUP!"))
        .filter_map(|l| l.split("icmp_seq=").nth(1)?.split_whitespace().next()?.parse().ok())
        .collect();
    Some(PingStats { sent, received, answered, avg, max })
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
        assert_eq!(lost.missing(3), vec![1, 2, 3]);
    }

    #[test]
    fn a_probe_is_missing_only_when_it_was_never_answered() {
        // As `ping -c 3 -w N` ends when seq 3's reply is late: a fourth probe went out meanwhile.
        let late = "64 bytes from 10.0.0.2: icmp_seq=1 ttl=64 time=9.1 ms\n\
                    64 bytes from 10.0.0.2: icmp_seq=2 ttl=64 time=8.0 ms\n\
                    64 bytes from 10.0.0.2: icmp_seq=3 ttl=64 time=120 ms\n\
                    \n4 packets transmitted, 3 received, 25% packet loss, time 160ms\n\
                    rtt min/avg/max/mdev = 8.0/45.7/120/52 ms\n";
        let s = super::parse(late).unwrap();
        assert_eq!((s.sent, s.received, s.answered.clone()), (4, 3, vec![1, 2, 3]));
        assert!(s.missing(3).is_empty());
        let lost = late.replace("icmp_seq=2 ttl=64 time=8.0 ms", "icmp_seq=4 ttl=64 time=8.0 ms");
        assert_eq!(super::parse(&lost).unwrap().missing(3), vec![2]);
        let dup = late.replace("time=120 ms", "time=120 ms (DUP!)");
        assert_eq!(super::parse(&dup).unwrap().missing(3), vec![3]);
    }
}
