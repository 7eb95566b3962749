//! The alerts' ledger in memory. Clones are handles on the same ledger.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::{Ack, AlertError, AlertStore, Key, Seen};

#[derive(Debug, Clone, Default)]
pub struct MemoryAlerts(Arc<Mutex<BTreeMap<Key, Seen>>>);

impl MemoryAlerts {
    fn rows(&self) -> std::sync::MutexGuard<'_, BTreeMap<Key, Seen>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl AlertStore for MemoryAlerts {
    fn all(&self) -> Result<BTreeMap<Key, Seen>, AlertError> {
        Ok(self.rows().clone())
    }

    fn raise(&self, key: &Key, first_ms: i64) -> Result<(), AlertError> {
        self.rows().entry(key.clone()).or_insert(Seen {
            first_ms,
            ack: None,
        });
        Ok(())
    }

    fn acknowledge(&self, key: &Key, ack: &Ack) -> Result<bool, AlertError> {
        Ok(match self.rows().get_mut(key) {
            Some(seen) => {
                seen.ack = Some(ack.clone());
                true
            }
            None => false,
        })
    }

    fn forget(&self, key: &Key) -> Result<(), AlertError> {
        self.rows().remove(key);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_memory_adapter_conforms() {
        super::super::conformance::run(|| {
            let alerts = MemoryAlerts::default();
            let again = alerts.clone();
            (
                Box::new(alerts) as Box<dyn AlertStore>,
                Box::new(move || Box::new(again.clone()) as Box<dyn AlertStore>) as _,
            )
        });
    }
}
