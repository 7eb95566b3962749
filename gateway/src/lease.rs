//! Background tasks meant to run once across the gateway's nodes — the router's passes, the
//! forwarding fan-out, the sweep of abandoned uploads — run a pass only while this node holds
//! the task's lease (`store::coordination::Leases`). The embedded gateway is one node, so it
//! always does; with several nodes on one database, the others wait until the holder stops
//! renewing (it died) or releases it (it stopped).

use std::sync::Arc;
use std::time::Duration;

use store::coordination::Leases;
use tracing::warn;

/// One task's lease, as held by this node.
#[derive(Clone)]
pub struct Lease {
    leases: Arc<dyn Leases>,
    task: Arc<str>,
    node: Arc<str>,
    /// How long a pass's hold lasts: a few of the task's periods, so one late pass does not
    /// hand the task to another node.
    ttl: Duration,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("task", &self.task)
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

impl Lease {
    /// The lease on `task` for `node`, held three of its `period`s at a time.
    pub fn new(
        leases: Arc<dyn Leases>,
        task: impl Into<Arc<str>>,
        node: Arc<str>,
        period: Duration,
    ) -> Self {
        Self {
            leases,
            task: task.into(),
            node,
            ttl: period * 3,
        }
    }

    /// A lease of the same node and period on another name (one per clinic's link).
    pub fn named(&self, task: String) -> Self {
        Self {
            task: task.into(),
            ..self.clone()
        }
    }

    /// Whether this node runs the task's next pass: takes or renews the lease. A store that
    /// cannot answer means no (the pass waits for the next turn), and is logged.
    pub fn mine(&self) -> bool {
        let ttl = i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX);
        match self
            .leases
            .hold(&self.task, &self.node, daemon::now_ms(), ttl)
        {
            Ok(held) => held,
            Err(e) => {
                warn!(task = %self.task, error = %e, "cannot hold the task's lease; skipping a pass");
                false
            }
        }
    }

    /// Gives the lease up (on shutdown), so another node takes the task at once.
    pub fn release(&self) {
        if let Err(e) = self.leases.release(&self.task, &self.node) {
            warn!(task = %self.task, error = %e, "cannot release the task's lease");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use store::coordination::memory::MemoryLeases;

    /// Two nodes on one store: the first to ask runs the passes until it releases the task.
    #[test]
    fn one_node_runs_a_task_until_it_lets_go() {
        let leases: Arc<dyn Leases> = Arc::new(MemoryLeases::default());
        let period = Duration::from_secs(30);
        let a = Lease::new(leases.clone(), "router", "node-a".into(), period);
        let b = Lease::new(leases.clone(), "router", "node-b".into(), period);
        assert!(a.mine());
        assert!(!b.mine());
        assert!(a.mine(), "renewed");
        b.release();
        assert!(!b.mine(), "b could not give up what it does not hold");
        a.release();
        assert!(b.mine());
        assert!(!a.mine());
    }
}
