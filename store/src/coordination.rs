//! The ports the background tasks coordinate through: leases, so that a task meant to run once
//! (the router, the forwarding fan-out, the sweep of abandoned uploads) runs on one node at a
//! time, and notifications, so that a change made by one task wakes the tasks waiting for it
//! (an appended consultation event wakes the router and the events streams).
//!
//! The embedded gateway is one process: sled locks its data folder to one process, so a
//! lease kept in sled would coordinate nothing a lease in memory does not. Its adapter is
//! [`memory`]; a shared database's adapter (one lease row per task, LISTEN/NOTIFY) runs the
//! same [`conformance`] suites.
//!
//! The contract:
//! - a lease is held by one holder at a time: until it runs out (`ttl` after its last
//!   renewal) or is released, every other holder is refused, and handles on the same store
//!   (other nodes) agree; renewing extends it; a holder that is not the holder cannot
//!   release it;
//! - of several holders asking at once, exactly one gets it;
//! - a notification on a topic wakes every subscriber of that topic, through any handle on
//!   the same store, and no subscriber of another topic; many notifications before a
//!   subscriber looks wake it once (they are a "something changed", never a queue).

pub mod conformance;
pub mod memory;

#[derive(Debug, thiserror::Error)]
#[error("coordination: {0}")]
pub struct CoordinationError(pub String);

/// Leases on named tasks, with times in unix milliseconds.
pub trait Leases: Send + Sync + std::fmt::Debug {
    /// Takes the lease `name` for `holder`, or renews it when `holder` has it, until
    /// `now_ms + ttl_ms`; whether `holder` holds it now.
    fn hold(
        &self,
        name: &str,
        holder: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<bool, CoordinationError>;
    /// Gives the lease up at once, when `holder` holds it.
    fn release(&self, name: &str, holder: &str) -> Result<(), CoordinationError>;
    /// Who holds the lease at `now_ms`.
    fn holder(&self, name: &str, now_ms: i64) -> Result<Option<String>, CoordinationError>;
}

/// A subscription to one topic: `changed().await` returns after the next notification (or
/// at once if one came since it last returned).
pub type Subscription = tokio::sync::watch::Receiver<u64>;

/// Notifications on named topics.
pub trait Notifier: Send + Sync + std::fmt::Debug {
    /// Wakes every subscriber of `topic`.
    fn notify(&self, topic: &str);
    fn subscribe(&self, topic: &str) -> Subscription;
}
