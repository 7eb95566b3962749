//! The outbox on the clinic agent's sled trees, as they have always been: `objects` (id →
//! record, JSON), `instances` (SOP Instance UID → its versions' ids), `studies` (Study
//! Instance UID → instances held, big-endian u32) and `meta` (`next_seq`).

use proto::sync::{ObjectId, Priority};
use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::Transactional;

use super::{Added, ObjectRecord, Outbox, OutboxError};

const SEQ_KEY: &[u8] = b"next_seq";

#[derive(Debug, Clone)]
pub struct SledOutbox {
    db: sled::Db,
    objects: sled::Tree,
    instances: sled::Tree,
    studies: sled::Tree,
    meta: sled::Tree,
}

fn index(e: impl std::fmt::Display) -> OutboxError {
    OutboxError::Index(e.to_string())
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, OutboxError> {
    serde_json::from_slice(bytes).map_err(index)
}

fn abort(e: impl std::fmt::Display) -> ConflictableTransactionError<String> {
    ConflictableTransactionError::Abort(e.to_string())
}

impl SledOutbox {
    pub fn open(db: &sled::Db) -> Result<Self, OutboxError> {
        Ok(Self {
            objects: db.open_tree("objects").map_err(index)?,
            instances: db.open_tree("instances").map_err(index)?,
            studies: db.open_tree("studies").map_err(index)?,
            meta: db.open_tree("meta").map_err(index)?,
            db: db.clone(),
        })
    }

    fn flush(&self) -> Result<(), OutboxError> {
        self.db.flush().map(drop).map_err(index)
    }

    /// Changes the record of `id` with `change` (nothing when it is absent or undecodable).
    fn update(
        &self,
        id: &ObjectId,
        change: impl Fn(&mut ObjectRecord),
    ) -> Result<Option<ObjectRecord>, OutboxError> {
        let updated = self
            .objects
            .update_and_fetch(id.as_str().as_bytes(), |old| {
                let mut r: ObjectRecord = serde_json::from_slice(old?).ok()?;
                change(&mut r);
                serde_json::to_vec(&r).ok()
            })
            .map_err(index)?;
        updated.map(|v| decode(&v)).transpose()
    }
}

impl Outbox for SledOutbox {
    fn add(&self, id: &ObjectId, record: ObjectRecord) -> Result<Added, OutboxError> {
        let sop = record.sop_instance_uid.clone();
        let study = record.study_instance_uid.clone();
        let result: Result<Added, TransactionError<String>> =
            (&self.objects, &self.instances, &self.meta, &self.studies).transaction(
                |(objects, instances, meta, studies)| {
                    if objects.get(id.as_str().as_bytes())?.is_some() {
                        return Ok(Added::Duplicate);
                    }
                    let held = if sop.is_empty() {
                        None
                    } else {
                        instances.get(sop.as_bytes())?
                    };
                    let mut versions: Vec<ObjectId> = match held {
                        Some(v) => serde_json::from_slice(&v).map_err(abort)?,
                        None => Vec::new(),
                    };
                    let seq = meta
                        .get(SEQ_KEY)?
                        .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
                        .map_or(0, u64::from_be_bytes);
                    meta.insert(SEQ_KEY, &(seq + 1).to_be_bytes())?;
                    let new_version = !versions.is_empty();
                    let mut record = record.clone();
                    record.seq = seq;
                    record.new_version = new_version;
                    objects.insert(
                        id.as_str().as_bytes(),
                        serde_json::to_vec(&record).map_err(abort)?,
                    )?;
                    if !sop.is_empty() {
                        if !new_version {
                            // A new instance of the study (a new version does not add one).
                            let n = studies
                                .get(study.as_bytes())?
                                .and_then(|v| <[u8; 4]>::try_from(v.as_ref()).ok())
                                .map_or(0, u32::from_be_bytes);
                            studies.insert(study.as_bytes(), &(n + 1).to_be_bytes())?;
                        }
                        versions.push(id.clone());
                        instances.insert(
                            sop.as_bytes(),
                            serde_json::to_vec(&versions).map_err(abort)?,
                        )?;
                    }
                    Ok(Added::Stored { new_version })
                },
            );
        let added = result.map_err(|e| index(format!("{e:?}")))?;
        // A duplicate too: the add that stored it may still be flushing.
        self.flush()?;
        Ok(added)
    }

    fn object(&self, id: &ObjectId) -> Result<Option<ObjectRecord>, OutboxError> {
        match self.objects.get(id.as_str().as_bytes()).map_err(index)? {
            Some(v) => Ok(Some(decode(&v)?)),
            None => Ok(None),
        }
    }

    fn objects(&self) -> Result<Vec<(ObjectId, ObjectRecord)>, OutboxError> {
        let mut out = Vec::new();
        for kv in self.objects.iter() {
            let (k, v) = kv.map_err(index)?;
            let Some(id) = std::str::from_utf8(&k).ok().and_then(ObjectId::parse) else {
                continue;
            };
            out.push((id, decode(&v)?));
        }
        Ok(out)
    }

    fn study_instances(&self, study_instance_uid: &str) -> Result<u32, OutboxError> {
        Ok(self
            .studies
            .get(study_instance_uid.as_bytes())
            .map_err(index)?
            .and_then(|v| <[u8; 4]>::try_from(v.as_ref()).ok())
            .map_or(0, u32::from_be_bytes))
    }

    fn raise_priority(
        &self,
        study_instance_uid: &str,
        priority: Priority,
    ) -> Result<Vec<ObjectId>, OutboxError> {
        let mut changed = Vec::new();
        for (id, rec) in self.objects()? {
            if rec.study_instance_uid != study_instance_uid
                || rec.delivered_at.is_some()
                || rec.priority >= priority
            {
                continue;
            }
            self.update(&id, |r| r.priority = r.priority.max(priority))?;
            changed.push(id);
        }
        if !changed.is_empty() {
            self.flush()?;
        }
        Ok(changed)
    }

    fn mark_delivered(&self, id: &ObjectId, at: i64) -> Result<(), OutboxError> {
        self.update(id, |r| {
            r.delivered_at.get_or_insert(at);
        })?;
        Ok(())
    }

    fn requeue_delivered(&self) -> Result<Vec<(ObjectId, ObjectRecord)>, OutboxError> {
        let mut requeued = Vec::new();
        for (id, _) in self
            .objects()?
            .into_iter()
            .filter(|(_, r)| r.delivered_at.is_some())
        {
            if let Some(rec) = self.update(&id, |r| r.delivered_at = None)? {
                requeued.push((id, rec));
            }
        }
        self.flush()?;
        Ok(requeued)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use std::sync::Arc;

    #[test]
    fn the_sled_adapter_conforms() {
        super::super::conformance::run(|| {
            let dir = Arc::new(tempfile::tempdir().unwrap());
            let db = sled::open(dir.path().join("index")).unwrap();
            let outbox = SledOutbox::open(&db).unwrap();
            let path = dir.path().join("index");
            let reopen = move |old: Box<dyn Outbox>| {
                let _keep = &dir;
                drop(old);
                // The first handle's database is closed with it; open the folder again.
                let db = loop {
                    match sled::open(&path) {
                        Ok(db) => break db,
                        Err(_) => std::thread::sleep(std::time::Duration::from_millis(5)),
                    }
                };
                Box::new(SledOutbox::open(&db).unwrap()) as Box<dyn Outbox>
            };
            drop(db);
            (Box::new(outbox) as Box<dyn Outbox>, Box::new(reopen) as _)
        });
    }

    /// An agent's folder written before the outbox was a port reads the same: the records,
    /// the versions, the study counts and the numbering go on.
    #[test]
    fn an_outbox_written_before_the_port_reads_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path().join("index")).unwrap();
        let id = ObjectId::from_digest(&[7; 32]);
        db.open_tree("objects")
            .unwrap()
            .insert(
                id.as_str().as_bytes(),
                br#"{"size":12,"sop_instance_uid":"1.2.3","study_instance_uid":"1.2","series_instance_uid":"1.2.1","modality":"CT","priority":"routine","seq":41,"stored_at":1795000000,"delivered_at":null,"new_version":false,"transfer_syntax":"1.2.840.10008.1.2.1"}"#.as_slice(),
            )
            .unwrap();
        db.open_tree("instances")
            .unwrap()
            .insert(b"1.2.3".as_slice(), format!(r#"["{id}"]"#).as_bytes())
            .unwrap();
        db.open_tree("studies")
            .unwrap()
            .insert(b"1.2".as_slice(), 1u32.to_be_bytes().as_slice())
            .unwrap();
        db.open_tree("meta")
            .unwrap()
            .insert(b"next_seq".as_slice(), 42u64.to_be_bytes().as_slice())
            .unwrap();
        let outbox = SledOutbox::open(&db).unwrap();
        let record = outbox.object(&id).unwrap().unwrap();
        assert_eq!(
            (record.seq, record.size, record.priority),
            (41, 12, Priority::Routine)
        );
        assert_eq!(outbox.study_instances("1.2").unwrap(), 1);
        let mut next = record.clone();
        next.size = 13;
        let other = ObjectId::from_digest(&[8; 32]);
        assert_eq!(
            outbox.add(&other, next).unwrap(),
            Added::Stored { new_version: true },
            "the versions were read"
        );
        assert_eq!(outbox.object(&other).unwrap().unwrap().seq, 42);
        assert_eq!(outbox.study_instances("1.2").unwrap(), 1);
    }
}
