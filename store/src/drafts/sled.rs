//! Drafts in the daemon's sled database: the tree `drafts`, keyed by the person, the case and
//! the form (`crate::keys`), holding the draft as JSON.

use super::{Draft, DraftError, DraftKey, DraftStore};

#[derive(Debug, Clone)]
pub struct SledDrafts {
    tree: sled::Tree,
}

fn err(e: impl std::fmt::Display) -> DraftError {
    DraftError(e.to_string())
}

fn key(k: &DraftKey) -> Vec<u8> {
    crate::keys::joined(&[&k.user, &k.case, &k.form])
}

impl SledDrafts {
    pub fn open(db: &sled::Db) -> Result<Self, DraftError> {
        Ok(Self {
            tree: db.open_tree("drafts").map_err(err)?,
        })
    }
}

impl DraftStore for SledDrafts {
    fn get(&self, k: &DraftKey) -> Result<Option<Draft>, DraftError> {
        match self.tree.get(key(k)).map_err(err)? {
            Some(v) => serde_json::from_slice(&v).map(Some).map_err(err),
            None => Ok(None),
        }
    }

    fn put(&self, k: &DraftKey, draft: &Draft) -> Result<(), DraftError> {
        let v = serde_json::to_vec(draft).map_err(err)?;
        self.tree.insert(key(k), v).map_err(err)?;
        Ok(())
    }

    fn remove(&self, k: &DraftKey) -> Result<(), DraftError> {
        self.tree.remove(key(k)).map_err(err)?;
        Ok(())
    }

    fn all(&self) -> Result<Vec<(DraftKey, Draft)>, DraftError> {
        let mut out = Vec::new();
        for kv in self.tree.iter() {
            let (k, v) = kv.map_err(err)?;
            // An entry that cannot be read is skipped: a draft is typing, not a record.
            if let (Some(key), Ok(draft)) = (unkey(&k), serde_json::from_slice(&v)) {
                out.push((key, draft));
            }
        }
        Ok(out)
    }
}

/// The key [`key`] wrote.
fn unkey(bytes: &[u8]) -> Option<DraftKey> {
    let [user, case, form] = crate::keys::split(bytes)?;
    Some(DraftKey { user, case, form })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_sled_adapter_conforms() {
        let dir = tempfile::tempdir().unwrap();
        super::super::conformance::run(crate::conformance::sled_subjects(dir.path(), |db| {
            Box::new(SledDrafts::open(db).unwrap()) as Box<dyn DraftStore>
        }));
    }
}
