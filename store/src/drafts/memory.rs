//! Drafts in memory. Clones are handles on the same drafts.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::{Draft, DraftError, DraftKey, DraftStore};

#[derive(Debug, Clone, Default)]
pub struct MemoryDrafts(Arc<Mutex<BTreeMap<DraftKey, Draft>>>);

impl MemoryDrafts {
    fn rows(&self) -> std::sync::MutexGuard<'_, BTreeMap<DraftKey, Draft>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl DraftStore for MemoryDrafts {
    fn get(&self, key: &DraftKey) -> Result<Option<Draft>, DraftError> {
        Ok(self.rows().get(key).cloned())
    }

    fn put(&self, key: &DraftKey, draft: &Draft) -> Result<(), DraftError> {
        self.rows().insert(key.clone(), draft.clone());
        Ok(())
    }

    fn remove(&self, key: &DraftKey) -> Result<(), DraftError> {
        self.rows().remove(key);
        Ok(())
    }

    fn all(&self) -> Result<Vec<(DraftKey, Draft)>, DraftError> {
        Ok(self
            .rows()
            .iter()
            .map(|(k, d)| (k.clone(), d.clone()))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_memory_adapter_conforms() {
        super::super::conformance::run(|| {
            let drafts = MemoryDrafts::default();
            let again = drafts.clone();
            (
                Box::new(drafts) as Box<dyn DraftStore>,
                Box::new(move || Box::new(again.clone()) as Box<dyn DraftStore>) as _,
            )
        });
    }
}
