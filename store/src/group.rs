//! Group commit: callers that need the same expensive step (fsync a folder, flush an index)
//! at about the same time share one run of it. The first caller runs the step for every item
//! queued so far; callers that arrive meanwhile wait and are served together by the next run.
//! Nobody returns before a run that includes their item has finished, so "durable when
//! `commit` returns" holds for each caller exactly as if it had run the step alone.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex, MutexGuard};

pub struct GroupCommit<T> {
    state: Mutex<State<T>>,
    finished: Condvar,
}

struct State<T> {
    /// Items waiting for the next run.
    queue: Vec<T>,
    /// The run queued items will be part of.
    next_run: u64,
    /// Runs before this one have finished.
    done_before: u64,
    running: bool,
    /// Failed runs still awaited by some caller, with their error.
    failures: HashMap<u64, String>,
    /// Callers per run not yet returned, to forget a failure once all have read it.
    members: HashMap<u64, usize>,
}

impl<T> Default for GroupCommit<T> {
    fn default() -> Self {
        Self {
            state: Mutex::new(State {
                queue: Vec::new(),
                next_run: 0,
                done_before: 0,
                running: false,
                failures: HashMap::new(),
                members: HashMap::new(),
            }),
            finished: Condvar::new(),
        }
    }
}

impl<T> GroupCommit<T> {
    /// Queues `item` and returns once `run` has been called, by this caller or another, on a
    /// batch containing it. Every caller passes the same kind of `run`; which one runs a batch
    /// is not specified. The batch's error is every member's error.
    pub fn commit(
        &self,
        item: T,
        run: impl FnOnce(Vec<T>) -> Result<(), String>,
    ) -> Result<(), String> {
        let mut st = self.lock();
        st.queue.push(item);
        let mine = st.next_run;
        *st.members.entry(mine).or_insert(0) += 1;
        loop {
            if st.done_before > mine {
                return Self::leave(&mut st, mine);
            }
            if !st.running {
                // Our item is still queued, so the queue is exactly run `mine`.
                st.running = true;
                let batch = std::mem::take(&mut st.queue);
                st.next_run += 1;
                drop(st);
                // A panicking step fails its batch instead of leaving `running` set and
                // every later caller waiting forever.
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(batch)))
                    .unwrap_or_else(|_| Err("the commit step panicked".into()));
                st = self.lock();
                st.running = false;
                st.done_before = mine + 1;
                if let Err(e) = result {
                    st.failures.insert(mine, e);
                }
                self.finished.notify_all();
                return Self::leave(&mut st, mine);
            }
            st = self.finished.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn leave(st: &mut State<T>, run: u64) -> Result<(), String> {
        let result = st.failures.get(&run).map_or(Ok(()), |e| Err(e.clone()));
        if let Some(n) = st.members.get_mut(&run) {
            *n -= 1;
            if *n == 0 {
                st.members.remove(&run);
                st.failures.remove(&run);
            }
        }
        result
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use super::*;

    #[test]
    fn concurrent_callers_share_runs_and_each_item_is_run_exactly_once() {
        let group = Arc::new(GroupCommit::<u32>::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let threads: Vec<_> = (0..64)
            .map(|i| {
                let (group, runs, seen) = (group.clone(), runs.clone(), seen.clone());
                std::thread::spawn(move || {
                    group
                        .commit(i, |batch| {
                            runs.fetch_add(1, Ordering::SeqCst);
                            std::thread::sleep(Duration::from_millis(5));
                            seen.lock().unwrap().extend(batch);
                            Ok(())
                        })
                        .unwrap();
                    // Returned only once its own item has been run.
                    assert!(seen.lock().unwrap().contains(&i));
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let mut seen = seen.lock().unwrap().clone();
        seen.sort();
        assert_eq!(seen, (0..64).collect::<Vec<_>>());
        let runs = runs.load(Ordering::SeqCst);
        assert!(
            runs < 64,
            "callers arriving together share a run ({runs} runs)"
        );
    }

    #[test]
    fn a_failed_run_fails_every_member_and_later_runs_start_clean() {
        let group = GroupCommit::<u32>::default();
        assert_eq!(
            group.commit(1, |_| Err("disk full".into())),
            Err("disk full".into())
        );
        assert_eq!(group.commit(2, |_| Ok(())), Ok(()));
        let st = group.lock();
        assert!(st.failures.is_empty() && st.members.is_empty());
    }

    #[test]
    fn a_panicking_run_fails_its_batch_and_the_next_caller_is_not_stuck() {
        let group = GroupCommit::<u32>::default();
        let result = group.commit(1, |_| panic!("index gone"));
        assert_eq!(result, Err("the commit step panicked".into()));
        assert_eq!(group.commit(2, |_| Ok(())), Ok(()));
    }
}
