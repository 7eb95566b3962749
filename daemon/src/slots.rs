//! A fixed number of places for costly work (rendering a frame, checking a password), shared
//! by the threads of a process: work beyond them waits a bounded time, then is refused, so a
//! burst of requests costs a bounded amount of memory and CPU instead of all of it.

use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct Slots {
    max: usize,
    wait: Duration,
    running: Mutex<usize>,
    freed: Condvar,
}

/// One place taken; given back when dropped.
#[derive(Debug)]
pub struct Slot<'a>(&'a Slots);

impl Slots {
    pub const fn new(max: usize, wait: Duration) -> Self {
        Self {
            max,
            wait,
            running: Mutex::new(0),
            freed: Condvar::new(),
        }
    }

    /// A place, waiting up to the configured time for one; `None` when none came free.
    pub fn take(&self) -> Option<Slot<'_>> {
        let deadline = Instant::now() + self.wait;
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        while *running >= self.max {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            running = self
                .freed
                .wait_timeout(running, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        *running += 1;
        Some(Slot(self))
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut running = self.0.running.lock().unwrap_or_else(|p| p.into_inner());
        *running = running.saturating_sub(1);
        self.0.freed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;

    /// However the threads happen to be scheduled: never more than two at once, and all of
    /// them run when each waits long enough.
    #[test]
    fn no_more_than_max_run_at_once() {
        static SLOTS: Slots = Slots::new(2, Duration::from_secs(30));
        let (now, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let workers: Vec<_> = (0..8)
            .map(|_| {
                let (now, most) = (now.clone(), most.clone());
                std::thread::spawn(move || {
                    let Some(_slot) = SLOTS.take() else {
                        return false;
                    };
                    let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(n, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(20));
                    now.fetch_sub(1, Ordering::SeqCst);
                    true
                })
            })
            .collect();
        let ran = workers
            .into_iter()
            .map(|w| w.join().unwrap())
            .filter(|ran| *ran)
            .count();
        assert_eq!(ran, 8, "each waited its turn");
        assert!(
            most.load(Ordering::SeqCst) <= 2,
            "never more than two at once"
        );
    }

    /// With every place held, a taker gives up after the wait; one given back goes to a
    /// taker waiting for it.
    #[test]
    fn a_taker_waits_its_turn_or_gives_up() {
        let short = Slots::new(1, Duration::from_millis(100));
        let held = short.take();
        assert!(held.is_some());
        let started = Instant::now();
        assert!(short.take().is_none(), "all held: refused");
        assert!(
            started.elapsed() >= Duration::from_millis(100),
            "after waiting"
        );
        drop(held);
        let long = Slots::new(1, Duration::from_secs(30));
        let held = long.take();
        std::thread::scope(|scope| {
            let waiter = scope.spawn(|| long.take().is_some());
            std::thread::sleep(Duration::from_millis(50));
            drop(held);
            assert!(waiter.join().unwrap(), "the freed place went to the waiter");
        });
    }
}
