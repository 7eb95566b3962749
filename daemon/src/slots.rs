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

    #[test]
    fn no_more_than_max_run_at_once_and_the_rest_wait_or_give_up() {
        static SLOTS: Slots = Slots::new(2, Duration::from_millis(300));
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
                    std::thread::sleep(Duration::from_millis(100));
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
        assert_eq!(
            most.load(Ordering::SeqCst),
            2,
            "never more than two at once"
        );
        assert!(
            (2..8).contains(&ran),
            "some waited their turn, the rest gave up: {ran}"
        );
    }
}
