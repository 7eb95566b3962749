//! Drafts in the daemon's sled database: the tree `drafts`, keyed by the person, the case and
//! the form, each length-prefixed (so no name can run into the next), holding the draft as
//! JSON.

use super::{Draft, DraftError, DraftKey, DraftStore};

#[derive(Debug, Clone)]
pub struct SledDrafts {
    tree: sled::Tree,
}

fn err(e: impl std::fmt::Display) -> DraftError {
    DraftError(e.to_string())
}

fn key(k: &DraftKey) -> Vec<u8> {
    let mut out = Vec::new();
    for part in [&k.user, &k.case, &k.form] {
        out.extend_from_slice(&(part.len() as u32).to_be_bytes());
        out.extend_from_slice(part.as_bytes());
    }
    out
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
fn unkey(mut bytes: &[u8]) -> Option<DraftKey> {
    let mut parts = Vec::new();
    for _ in 0..3 {
        let (len, rest) = bytes.split_first_chunk::<4>()?;
        let len = u32::from_be_bytes(*len) as usize;
        parts.push(String::from_utf8(rest.get(..len)?.to_vec()).ok()?);
        bytes = &rest[len..];
    }
    let form = parts.pop()?;
    let case = parts.pop()?;
    let user = parts.pop()?;
    Some(DraftKey { user, case, form })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_sled_adapter_conforms() {
        let dir = tempfile::tempdir().unwrap();
        let mut n = 0;
        super::super::conformance::run(|| {
            n += 1;
            let path = dir.path().join(n.to_string());
            let db = sled::open(&path).unwrap();
            let drafts = SledDrafts::open(&db).unwrap();
            let reopen = move || {
                db.flush().unwrap();
                Box::new(SledDrafts::open(&db).unwrap()) as Box<dyn DraftStore>
            };
            (
                Box::new(drafts) as Box<dyn DraftStore>,
                Box::new(reopen) as _,
            )
        });
    }
}
