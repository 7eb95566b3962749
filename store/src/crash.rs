//! A machine that can lose power, for the in-memory adapters: every storage operation is one
//! step; at the chosen step the power goes, that operation and every later one fail, and what
//! each adapter had not made durable is lost — all of it, or, where the real engine may have
//! written some of it on its own (a file system's unsynced pages, sled's background flush), a
//! seeded part of it. A new boot sees only what survived.

use std::sync::{Arc, Mutex, MutexGuard};

use proto::rng::Rng;

#[derive(Debug, Clone)]
pub struct Machine(Arc<Mutex<State>>);

#[derive(Debug)]
struct State {
    steps: u64,
    crash_at: Option<u64>,
    /// Counts power losses: an adapter booted before the last one is dead.
    boot: u64,
    down: bool,
    rng: Rng,
}

/// The power went: the operation did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the storage crashed (simulated power loss)")]
pub struct Crashed;

impl Machine {
    pub fn new(seed: u64) -> Self {
        Self(Arc::new(Mutex::new(State {
            steps: 0,
            crash_at: None,
            boot: 0,
            down: false,
            rng: Rng::new(seed),
        })))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The power goes at step `step` (counted from now).
    pub fn crash_after(&self, steps: u64) {
        let mut st = self.lock();
        st.crash_at = Some(st.steps + steps);
    }

    /// No crash is coming (one armed is called off).
    pub fn disarm(&self) {
        self.lock().crash_at = None;
    }

    /// The power goes now.
    pub fn crash(&self) {
        let mut st = self.lock();
        st.down = true;
        st.crash_at = None;
    }

    /// One storage operation of an adapter booted at `boot`: `Err` when the power is off or
    /// goes now, or when the adapter belongs to an earlier boot.
    pub fn step(&self, boot: u64) -> Result<(), Crashed> {
        let mut st = self.lock();
        if st.down || boot != st.boot {
            return Err(Crashed);
        }
        st.steps += 1;
        if st.crash_at.is_some_and(|at| st.steps >= at) {
            st.down = true;
            st.crash_at = None;
            return Err(Crashed);
        }
        Ok(())
    }

    pub fn is_down(&self) -> bool {
        self.lock().down
    }

    /// Powers the machine on again after a crash; returns the new boot number. Adapters apply
    /// the loss when they boot with [`Machine::booted`].
    pub fn power_on(&self) -> u64 {
        let mut st = self.lock();
        if st.down {
            st.down = false;
            st.boot += 1;
        }
        st.boot
    }

    /// The current boot.
    pub fn booted(&self) -> u64 {
        self.lock().boot
    }

    /// A seeded number below `n` (n > 0), for what a crash keeps.
    pub fn below(&self, n: u64) -> u64 {
        self.lock().rng.next_u64() % n.max(1)
    }
}

/// A write a [`Flushed`] state can replay after a crash.
pub trait Replay<Op> {
    fn apply(&mut self, op: &Op);
}

/// What a store on a [`Machine`] holds when its engine syncs some writes and leaves others to
/// a background flush (sled): the state now, the state made durable, and the loose writes
/// since. A crash keeps the durable state and, seeded, a prefix of the loose writes — what the
/// background flush may have written before the power went.
#[derive(Debug)]
pub struct Flushed<S, Op> {
    pub now: S,
    durable: S,
    /// Writes since the last durable one, oldest first.
    loose: Vec<Op>,
    /// The boot whose crash has been applied.
    applied: u64,
}

impl<S: Clone + Replay<Op>, Op> Flushed<S, Op> {
    /// `state`, durable, on `machine` as it is booted now.
    pub fn new(state: S, machine: &Machine) -> Self {
        Self {
            now: state.clone(),
            durable: state,
            loose: Vec::new(),
            applied: machine.booted(),
        }
    }

    /// A write not synced: applied now, kept by a crash only within a seeded prefix.
    pub fn loose(&mut self, op: Op) {
        self.now.apply(&op);
        self.loose.push(op);
    }

    /// Makes everything written so far durable.
    pub fn sync(&mut self) {
        self.durable = self.now.clone();
        self.loose.clear();
    }

    /// Applies the last power loss, once per boot of `machine`: the durable state and a
    /// seeded prefix of the loose writes.
    pub fn reboot(&mut self, machine: &Machine) {
        let boot = machine.booted();
        if self.applied == boot {
            return;
        }
        self.applied = boot;
        let kept = machine.below(self.loose.len() as u64 + 1) as usize;
        for op in self.loose.drain(..kept) {
            self.durable.apply(&op);
        }
        self.loose.clear();
        self.now = self.durable.clone();
    }
}
