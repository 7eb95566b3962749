//! The object store in memory, on a [`Machine`] that can lose power. What a crash keeps is
//! what a POSIX file system promises, no more: synced partial bytes (and, seeded, part of what
//! was appended after them, or zeros in its place) — unless, seeded, the partial's name itself
//! is lost (no adapter syncs it); placed objects only once `sync_placed` covered them —
//! otherwise, seeded, the rename is either kept or undone back to the partial.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use proto::sync::ObjectId;
use sha2::{Digest, Sha256};

use super::{LocalFile, ObjectError, ObjectStore, PartialUpload, Placed, TempBlob, UploadKey};
use crate::crash::{Crashed, Machine};

impl From<Crashed> for ObjectError {
    fn from(_: Crashed) -> Self {
        ObjectError::Crashed
    }
}

#[derive(Debug, Default)]
struct PartialState {
    /// What a reader sees now.
    bytes: Vec<u8>,
    /// How many leading bytes are durable.
    synced: usize,
    written: Option<Instant>,
}

#[derive(Debug, Default)]
struct Disk {
    partials: BTreeMap<UploadKey, PartialState>,
    objects: BTreeMap<ObjectId, Vec<u8>>,
    /// Placed, not yet synced: the partial each came from, with its durable bytes.
    unsynced: BTreeMap<ObjectId, Option<(UploadKey, Vec<u8>)>>,
    /// The boot whose crash has been applied.
    applied: u64,
}

/// One daemon's objects in memory; clones share them.
#[derive(Debug, Clone)]
pub struct MemoryObjects {
    machine: Machine,
    disk: Arc<Mutex<Disk>>,
    boot: u64,
}

impl MemoryObjects {
    /// A new, empty store on `machine`.
    pub fn new(machine: &Machine) -> Self {
        Self {
            boot: machine.booted(),
            machine: machine.clone(),
            disk: Arc::new(Mutex::new(Disk {
                applied: machine.booted(),
                ..Disk::default()
            })),
        }
    }

    /// The same store after the machine powered on again: what the crash lost is gone.
    pub fn boot(&self) -> Self {
        let boot = self.machine.booted();
        let mut disk = self.lock();
        if disk.applied != boot {
            disk.applied = boot;
            self.lose(&mut disk);
        }
        drop(disk);
        Self {
            machine: self.machine.clone(),
            disk: self.disk.clone(),
            boot,
        }
    }

    fn lose(&self, disk: &mut Disk) {
        for (id, from) in std::mem::take(&mut disk.unsynced) {
            // The rename either reached the disk or did not.
            if self.machine.below(2) == 0 {
                continue;
            }
            disk.objects.remove(&id);
            if let Some((key, bytes)) = from {
                let synced = bytes.len();
                disk.partials.insert(
                    key,
                    PartialState {
                        bytes,
                        synced,
                        written: None,
                    },
                );
            }
        }
        // A partial's name was never synced: it may be gone.
        let names: Vec<UploadKey> = disk.partials.keys().cloned().collect();
        for key in names {
            if self.machine.below(4) == 0 {
                disk.partials.remove(&key);
            }
        }
        for p in disk.partials.values_mut() {
            // Unsynced bytes: a seeded part of them may be there, or zeros in their place.
            let extra = p.bytes.len() - p.synced;
            let kept = p.synced + self.machine.below(extra as u64 + 1) as usize;
            p.bytes.truncate(kept);
            if self.machine.below(2) == 0 {
                p.bytes[p.synced..].fill(0);
            }
            p.synced = p.bytes.len();
        }
    }

    fn lock(&self) -> MutexGuard<'_, Disk> {
        self.disk.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn step(&self) -> Result<MutexGuard<'_, Disk>, ObjectError> {
        self.machine.step(self.boot)?;
        Ok(self.lock())
    }
}

struct MemoryPartial {
    store: MemoryObjects,
    key: UploadKey,
    len: u64,
}

impl PartialUpload for MemoryPartial {
    fn append(&mut self, bytes: &[u8]) -> Result<(), ObjectError> {
        let mut disk = self.store.step()?;
        let p = disk
            .partials
            .get_mut(&self.key)
            .ok_or_else(|| ObjectError::NoPartial(self.key.id.clone()))?;
        p.bytes.truncate(self.len as usize);
        p.bytes.extend_from_slice(bytes);
        p.written = Some(Instant::now());
        self.len = p.bytes.len() as u64;
        Ok(())
    }

    fn sync(&mut self) -> Result<(), ObjectError> {
        let mut disk = self.store.step()?;
        if let Some(p) = disk.partials.get_mut(&self.key) {
            p.synced = p.bytes.len();
        }
        Ok(())
    }

    fn len(&self) -> u64 {
        self.len
    }
}

fn digest(bytes: &[u8]) -> ObjectId {
    ObjectId::from_digest(&Sha256::digest(bytes).into())
}

impl ObjectStore for MemoryObjects {
    fn open_partial(
        &self,
        key: &UploadKey,
        committed: u64,
    ) -> Result<(u64, Box<dyn PartialUpload>), ObjectError> {
        let mut disk = self.step()?;
        let p = disk.partials.entry(key.clone()).or_default();
        let kept = (committed as usize).min(p.bytes.len());
        p.bytes.truncate(kept);
        p.synced = p.synced.min(kept);
        Ok((
            kept as u64,
            Box::new(MemoryPartial {
                store: self.clone(),
                key: key.clone(),
                len: kept as u64,
            }),
        ))
    }

    fn place(&self, key: &UploadKey, hashed: Option<ObjectId>) -> Result<Placed, ObjectError> {
        let mut disk = self.step()?;
        let p = disk
            .partials
            .remove(key)
            .ok_or_else(|| ObjectError::NoPartial(key.id.clone()))?;
        let actual = hashed.unwrap_or_else(|| digest(&p.bytes));
        if actual != key.id {
            return Ok(Placed::Mismatch { actual });
        }
        if disk.objects.contains_key(&key.id) {
            return Ok(Placed::Placed);
        }
        let durable = p.bytes[..p.synced].to_vec();
        disk.objects.insert(key.id.clone(), p.bytes);
        disk.unsynced
            .insert(key.id.clone(), Some((key.clone(), durable)));
        Ok(Placed::Placed)
    }

    fn sync_placed(&self, ids: &[ObjectId]) -> Result<(), ObjectError> {
        let mut disk = self.step()?;
        for id in ids {
            disk.unsynced.remove(id);
        }
        Ok(())
    }

    fn discard_partial(&self, key: &UploadKey) -> Result<(), ObjectError> {
        self.step()?.partials.remove(key);
        Ok(())
    }

    fn idle_partials(&self, idle: Duration) -> Result<Vec<UploadKey>, ObjectError> {
        let disk = self.step()?;
        Ok(disk
            .partials
            .iter()
            .filter(|(_, p)| p.written.is_none_or(|t| t.elapsed() > idle))
            .map(|(k, _)| k.clone())
            .collect())
    }

    fn stage(&self) -> Result<TempBlob, ObjectError> {
        Ok(TempBlob::create_in(&std::env::temp_dir())?)
    }

    fn put_staged(&self, staged: TempBlob) -> Result<ObjectId, ObjectError> {
        let bytes = std::fs::read(staged.path()).map_err(|e| ObjectError::Io {
            action: "read",
            what: staged.path().display().to_string(),
            detail: e.to_string(),
        })?;
        let id = digest(&bytes);
        if id != staged.id() {
            return Err(ObjectError::Io {
                action: "store",
                what: format!("the staged object {}", staged.id()),
                detail: "its bytes changed after they were hashed".into(),
            });
        }
        let mut disk = self.step()?;
        disk.objects.entry(id.clone()).or_insert(bytes);
        Ok(id)
    }

    fn contains(&self, id: &ObjectId) -> Result<bool, ObjectError> {
        Ok(self.step()?.objects.contains_key(id))
    }

    fn size(&self, id: &ObjectId) -> Result<Option<u64>, ObjectError> {
        Ok(self.step()?.objects.get(id).map(|b| b.len() as u64))
    }

    fn read_range(&self, id: &ObjectId, offset: u64, len: u64) -> Result<Vec<u8>, ObjectError> {
        let disk = self.step()?;
        let bytes = disk
            .objects
            .get(id)
            .ok_or_else(|| ObjectError::Missing(id.clone()))?;
        let size = bytes.len() as u64;
        super::starts_within(id, offset, len, size)?;
        let end = offset.saturating_add(len).min(size);
        Ok(bytes[offset as usize..end as usize].to_vec())
    }

    fn local_file(&self, id: &ObjectId) -> Result<LocalFile, ObjectError> {
        let bytes = super::read_all(self, id)?;
        let io = |e: std::io::Error| ObjectError::Io {
            action: "copy",
            what: id.to_string(),
            detail: e.to_string(),
        };
        let mut file = tempfile::NamedTempFile::new().map_err(io)?;
        std::io::Write::write_all(&mut file, &bytes).map_err(io)?;
        Ok(LocalFile::copy(file.into_temp_path()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_memory_objects_keep_the_port_contract() {
        super::super::conformance::run(|| {
            let store = MemoryObjects::new(&Machine::new(7));
            let again = store.clone();
            (
                Box::new(store) as Box<dyn ObjectStore>,
                Box::new(move || Box::new(again.boot()) as Box<dyn ObjectStore>)
                    as Box<dyn Fn() -> Box<dyn ObjectStore>>,
            )
        });
    }

    #[test]
    fn a_crash_keeps_synced_bytes_and_synced_objects_only() {
        for seed in 0..200 {
            let machine = Machine::new(seed);
            let store = MemoryObjects::new(&machine);
            let key = |b: &[u8]| UploadKey::new("c", digest(b));
            let (kept, synced) = (b"kept object".as_slice(), b"0123456789".as_slice());
            let (_, mut p) = store.open_partial(&key(kept), 0).unwrap();
            p.append(kept).unwrap();
            p.sync().unwrap();
            assert_eq!(store.place(&key(kept), None).unwrap(), Placed::Placed);
            store.sync_placed(&[digest(kept)]).unwrap();
            let lost = b"placed, not synced".as_slice();
            let (_, mut p) = store.open_partial(&key(lost), 0).unwrap();
            p.append(lost).unwrap();
            p.sync().unwrap();
            store.place(&key(lost), None).unwrap();
            let (_, mut p) = store.open_partial(&key(synced), 0).unwrap();
            p.append(&synced[..4]).unwrap();
            p.sync().unwrap();
            p.append(&synced[4..]).unwrap();
            machine.crash();
            assert!(matches!(p.append(b"x"), Err(ObjectError::Crashed)));
            machine.power_on();
            let after = store.boot();
            assert_eq!(super::super::read_all(&after, &digest(kept)).unwrap(), kept);
            if !after.contains(&digest(lost)).unwrap() {
                // Undone: the partial is back with its synced bytes, or gone.
                let (n, _) = after.open_partial(&key(lost), u64::MAX).unwrap();
                assert!(n == 0 || n == lost.len() as u64, "seed {seed}");
            }
            let (n, _) = after.open_partial(&key(synced), u64::MAX).unwrap();
            assert!(n == 0 || (4..=10).contains(&n), "seed {seed}: {n}");
            assert!(matches!(
                store.contains(&digest(kept)),
                Err(ObjectError::Crashed)
            ));
        }
    }
}
