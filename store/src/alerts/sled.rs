//! The alerts' ledger in the daemon's sled database: the tree `alerts`, keyed by the alert's
//! kind and subject (`crate::keys`), holding
//! [`Seen`] as JSON. An acknowledgement is written with a compare-and-swap, so one made while
//! the alert clears is not written back over its forgetting.

use std::collections::BTreeMap;

use super::{Ack, AlertError, AlertStore, Key, Seen};

#[derive(Debug, Clone)]
pub struct SledAlerts {
    tree: sled::Tree,
}

fn err(e: impl std::fmt::Display) -> AlertError {
    AlertError(e.to_string())
}

fn key(k: &Key) -> Vec<u8> {
    crate::keys::joined(&[&k.0, &k.1])
}

/// The key [`key`] wrote.
fn unkey(bytes: &[u8]) -> Option<Key> {
    let [kind, about] = crate::keys::split(bytes)?;
    Some((kind, about))
}

impl SledAlerts {
    pub fn open(db: &sled::Db) -> Result<Self, AlertError> {
        Ok(Self {
            tree: db.open_tree("alerts").map_err(err)?,
        })
    }
}

impl AlertStore for SledAlerts {
    fn all(&self) -> Result<BTreeMap<Key, Seen>, AlertError> {
        let mut out = BTreeMap::new();
        for kv in self.tree.iter() {
            let (k, v) = kv.map_err(err)?;
            // An entry that cannot be read is left out: the alert is raised again, unacknowledged.
            if let (Some(key), Ok(seen)) = (unkey(&k), serde_json::from_slice(&v)) {
                out.insert(key, seen);
            }
        }
        Ok(out)
    }

    fn raise(&self, k: &Key, first_ms: i64) -> Result<(), AlertError> {
        let v = serde_json::to_vec(&Seen {
            first_ms,
            ack: None,
        })
        .map_err(err)?;
        // Already there: the first time stays.
        let _ = self
            .tree
            .compare_and_swap(key(k), None as Option<&[u8]>, Some(v))
            .map_err(err)?;
        Ok(())
    }

    fn acknowledge(&self, k: &Key, ack: &Ack) -> Result<bool, AlertError> {
        let k = key(k);
        loop {
            let Some(old) = self.tree.get(&k).map_err(err)? else {
                return Ok(false);
            };
            let mut seen: Seen = serde_json::from_slice(&old).map_err(err)?;
            seen.ack = Some(ack.clone());
            let new = serde_json::to_vec(&seen).map_err(err)?;
            if self
                .tree
                .compare_and_swap(&k, Some(old), Some(new))
                .map_err(err)?
                .is_ok()
            {
                return Ok(true);
            }
        }
    }

    fn forget(&self, k: &Key) -> Result<(), AlertError> {
        self.tree.remove(key(k)).map_err(err)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_sled_adapter_conforms() {
        let dir = tempfile::tempdir().unwrap();
        super::super::conformance::run(crate::conformance::sled_subjects(dir.path(), |db| {
            Box::new(SledAlerts::open(db).unwrap()) as Box<dyn AlertStore>
        }));
    }
}
