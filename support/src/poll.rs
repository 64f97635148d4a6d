//! The one way to wait: poll a real condition within a budget, count every attempt against
//! it, make a last attempt at the end, and fail with what was last observed.
//! The condition only observes; a state change never happens inside a poll.
//! Hand-written on purpose: retry crates repeat an action; this only observes and reports the last observation.

use anyhow::{anyhow, Result};
use std::time::{Duration, Instant};

/// An observation after which waiting cannot help (what is waited for has exited): returned
/// by `observe`, it ends the poll at once, like a unit that failed ends a wait for it.
#[derive(Debug)]
pub struct Hopeless(pub String);

impl std::fmt::Display for Hopeless {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Hopeless {}

/// Poll `observe` until it returns `Ok`, for at most `budget`.
///
/// `observe` returns `Err(observation)` while the condition does not hold; the last
/// observation goes into the error, with the budget and the number of attempts.
pub fn until<T>(what: &str, budget: Duration, observe: impl FnMut() -> Result<T>) -> Result<T> {
    until_every(what, budget, crate::budget::poll_interval(), observe)
}

/// [`until`] with a pause of `interval` between attempts rather than the usual
/// [`poll_interval`](crate::budget::poll_interval): for what changes within milliseconds and
/// is waited for many times in a row (a signalled process exiting, in teardown).
pub fn until_every<T>(what: &str, budget: Duration, interval: Duration, mut observe: impl FnMut() -> Result<T>) -> Result<T> {
    let started = Instant::now();
    let deadline = started + budget;
    let mut attempts = 0u32;
    let verbose = crate::settings::on("MESH_VERBOSE");
    let mut previous = String::new();
    loop {
        attempts += 1;
        let last = match observe() {
            Ok(v) => return Ok(v),
            Err(e) if e.downcast_ref::<Hopeless>().is_some() => {
                return Err(anyhow!("{what}: gave up after {:.1?} ({attempts} attempts): {e:#}", started.elapsed()));
            }
            Err(e) => e,
        };
        if verbose {
            let seen = format!("{last:#}");
            if seen != previous {
                crate::say!("waiting for {what}: {seen}");
                previous = seen;
            }
        }
        if Instant::now() >= deadline {
            return Err(anyhow!(
                "{what}: not within its budget of {budget:.1?} ({attempts} attempts over {:.1?}); last seen: {last:#}",
                started.elapsed()
            ));
        }
        // Sleep no further than the deadline, so the final attempt happens right at it.
        let pause = interval.min(deadline.saturating_duration_since(Instant::now()));
        std::thread::sleep(pause);
    }
}

/// The other way round from [`until`]: `observe` must hold throughout `span`, looked at every
/// `interval` (and once more at its end); the first observation where it does not ends the
/// check, with what was seen and when. Returns how many looks were taken.
pub fn holds(what: &str, span: Duration, interval: Duration, mut observe: impl FnMut() -> Result<()>) -> Result<u32> {
    let started = Instant::now();
    let end = started + span;
    let mut looks = 0u32;
    loop {
        looks += 1;
        if let Err(e) = observe() {
            return Err(anyhow!(
                "{what}: it stopped holding after {:.1?} of {span:.1?} ({looks} looks): {e:#}",
                started.elapsed()
            ));
        }
        let now = Instant::now();
        if now >= end {
            return Ok(looks);
        }
        std::thread::sleep(interval.min(end - now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::bail;

    #[test]
    fn returns_the_value_once_the_condition_holds() {
        let mut n = 0;
        let v = until("n reaches 3", Duration::from_secs(5), || {
            n += 1;
            if n < 3 {
                bail!("n is {n}")
            } else {
                Ok(n)
            }
        })
        .unwrap();
        assert_eq!(v, 3);
    }

    #[test]
    fn a_hopeless_observation_ends_the_wait_at_once() {
        let started = std::time::Instant::now();
        let err = until("a service", Duration::from_secs(30), || -> Result<()> { Err(Hopeless("it exited".into()).into()) })
            .unwrap_err()
            .to_string();
        assert!(started.elapsed() < Duration::from_secs(1) && err.contains("it exited"), "{err}");
    }

    #[test]
    fn fails_with_the_budget_and_the_last_observation() {
        let mut n = 0;
        let err = until("never", Duration::from_millis(250), || -> Result<()> {
            n += 1;
            bail!("observation {n}")
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("budget of 250") && err.contains(&format!("observation {n}")), "{err}");
        assert!(n >= 2, "a last attempt must happen at the deadline");
    }

    #[test]
    fn holds_looks_throughout_and_fails_at_the_first_lapse() {
        let looks = holds("always", Duration::from_millis(150), Duration::from_millis(20), || Ok(())).unwrap();
        assert!(looks >= 3, "{looks} looks over 150 ms at 20 ms apart");
        let mut n = 0;
        let err = holds("until the third look", Duration::from_secs(30), Duration::from_millis(1), || {
            n += 1;
            if n < 3 {
                Ok(())
            } else {
                bail!("look {n} saw it gone")
            }
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("3 looks") && err.contains("look 3 saw it gone"), "{err}");
    }

    #[test]
    fn until_every_polls_at_its_own_interval() {
        let mut n = 0;
        let err = until_every("never", Duration::from_millis(200), Duration::from_millis(10), || -> Result<()> {
            n += 1;
            bail!("observation {n}")
        })
        .unwrap_err()
        .to_string();
        // At the usual 100 ms it would be 3; a loaded machine may stretch the 10 ms pauses.
        assert!(n >= 5, "{n} attempts in 200 ms at 10 ms apart: {err}");
        assert!(err.contains("budget of 200") && err.contains(&format!("observation {n}")), "{err}");
    }
}
