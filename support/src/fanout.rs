//! Work across hosts at once: one scoped thread an item, results in the items' order.
//!
//! Scoped threads rather than an async runtime: every piece of this work blocks (a process in a
//! namespace, an SSH round trip through ssh2's C library) and borrows the lab, which an async
//! runtime's blocking pool cannot (its tasks must own what they use). A thread an item is what
//! such a pool would give, for the handful of hosts a lab has.

use anyhow::{anyhow, Result};

/// Run `work` on every item at once; each result in its item's place. A panic in one item's
/// thread becomes that item's error, naming `what`.
pub fn each<T: Sync, R: Send>(what: &str, items: &[T], work: impl Fn(&T) -> Result<R> + Sync) -> Vec<Result<R>> {
    if items.len() <= 1 {
        return items.iter().map(&work).collect();
    }
    let work = &work;
    std::thread::scope(|scope| {
        let handles: Vec<_> = items.iter().map(|item| scope.spawn(move || work(item))).collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| Err(anyhow!("its {what} thread panicked: {}", crate::panics::message(&*p)))))
            .collect()
    })
}

/// Run `work` on every item at once; the first error in the items' order, once all are done.
pub fn all<T: Sync, R: Send>(what: &str, items: &[T], work: impl Fn(&T) -> Result<R> + Sync) -> Result<Vec<R>> {
    each(what, items, work).into_iter().collect()
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    #[test]
    fn items_run_at_once_and_results_keep_their_order() {
        let started = Instant::now();
        let out = super::all("sleep", &[3u64, 1, 2], |n| {
            std::thread::sleep(Duration::from_millis(100 * n));
            Ok(n * 10)
        })
        .unwrap();
        assert_eq!(out, vec![30, 10, 20]);
        assert!(started.elapsed() < Duration::from_millis(550), "took {:?}", started.elapsed());
    }

    #[test]
    fn a_panic_is_its_item_error_and_the_others_complete() {
        let out = super::each("probe", &[1, 2], |n| if *n == 2 { panic!("boom {n}") } else { Ok(*n) });
        assert_eq!(out[0].as_ref().unwrap(), &1);
        assert_eq!(out[1].as_ref().unwrap_err().to_string(), "its probe thread panicked: boom 2");
        assert!(super::all("probe", &[1, 2], |n| if *n == 2 { anyhow::bail!("no {n}") } else { Ok(*n) }).is_err());
    }
}
