//! Leases and notifications inside one process: the embedded gateway's adapter. Clones are
//! handles on the same leases and topics.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::{CoordinationError, Leases, Notifier, Subscription};

#[derive(Debug, Clone, Default)]
pub struct MemoryLeases(Arc<Mutex<HashMap<String, (String, i64)>>>);

impl Leases for MemoryLeases {
    fn hold(
        &self,
        name: &str,
        holder: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<bool, CoordinationError> {
        let mut leases = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match leases.get(name) {
            Some((other, until)) if other != holder && *until > now_ms => Ok(false),
            _ => {
                leases.insert(name.to_owned(), (holder.to_owned(), now_ms + ttl_ms));
                Ok(true)
            }
        }
    }

    fn release(&self, name: &str, holder: &str) -> Result<(), CoordinationError> {
        let mut leases = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if leases.get(name).is_some_and(|(h, _)| h == holder) {
            leases.remove(name);
        }
        Ok(())
    }

    fn holder(&self, name: &str, now_ms: i64) -> Result<Option<String>, CoordinationError> {
        let leases = self.0.lock().unwrap_or_else(|p| p.into_inner());
        Ok(leases
            .get(name)
            .filter(|(_, until)| *until > now_ms)
            .map(|(h, _)| h.clone()))
    }
}

#[derive(Debug, Clone, Default)]
pub struct MemoryNotifier(Arc<Mutex<HashMap<String, tokio::sync::watch::Sender<u64>>>>);

impl MemoryNotifier {
    fn topic(&self, topic: &str) -> tokio::sync::watch::Sender<u64> {
        let mut topics = self.0.lock().unwrap_or_else(|p| p.into_inner());
        topics
            .entry(topic.to_owned())
            .or_insert_with(|| tokio::sync::watch::channel(0).0)
            .clone()
    }
}

impl Notifier for MemoryNotifier {
    fn notify(&self, topic: &str) {
        self.topic(topic).send_modify(|n| *n = n.wrapping_add(1));
    }

    fn subscribe(&self, topic: &str) -> Subscription {
        self.topic(topic).subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_memory_adapters_conform() {
        super::super::conformance::run_leases(|| {
            let leases = MemoryLeases::default();
            let again = leases.clone();
            (
                Box::new(leases) as Box<dyn Leases>,
                Box::new(move || Box::new(again.clone()) as Box<dyn Leases>) as _,
            )
        });
        super::super::conformance::run_notifications(|| {
            let notifier = MemoryNotifier::default();
            let again = notifier.clone();
            (
                Box::new(notifier) as Box<dyn Notifier>,
                Box::new(move || Box::new(again.clone()) as Box<dyn Notifier>) as _,
            )
        });
    }
}
