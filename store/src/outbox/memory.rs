//! The outbox in memory, on a [`Machine`] that can lose power. `add`, `raise_priority` and
//! `requeue_delivered` are durable when they return (and, like sled's flush, make every
//! earlier write durable too); the delivery marks written since survive a crash only in part:
//! a seeded prefix, as sled's background flush may have written it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use proto::sync::{ObjectId, Priority};

use super::{Added, ObjectRecord, Outbox, OutboxError};
use crate::crash::{Flushed, Machine, Replay};

#[derive(Debug, Clone, Default)]
struct State {
    objects: BTreeMap<ObjectId, ObjectRecord>,
    instances: BTreeMap<String, Vec<ObjectId>>,
    studies: BTreeMap<String, u32>,
    next_seq: u64,
}

/// A delivery mark: the object and when the hospital receipted it.
type Delivered = (ObjectId, i64);

impl Replay<Delivered> for State {
    fn apply(&mut self, (id, at): &Delivered) {
        if let Some(r) = self.objects.get_mut(id) {
            r.delivered_at.get_or_insert(*at);
        }
    }
}

type Disk = Flushed<State, Delivered>;

#[derive(Debug, Clone)]
pub struct MemoryOutbox {
    machine: Machine,
    disk: Arc<Mutex<Disk>>,
    boot: u64,
}

impl MemoryOutbox {
    pub fn new(machine: &Machine) -> Self {
        Self {
            boot: machine.booted(),
            machine: machine.clone(),
            disk: Arc::new(Mutex::new(Disk::new(State::default(), machine))),
        }
    }

    /// The same outbox after the machine powered on again.
    pub fn boot(&self) -> Self {
        self.lock().reboot(&self.machine);
        Self {
            machine: self.machine.clone(),
            disk: self.disk.clone(),
            boot: self.machine.booted(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Disk> {
        self.disk.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn step(&self) -> Result<MutexGuard<'_, Disk>, OutboxError> {
        self.machine.step(self.boot)?;
        Ok(self.lock())
    }
}

impl Outbox for MemoryOutbox {
    fn add(&self, id: &ObjectId, mut record: ObjectRecord) -> Result<Added, OutboxError> {
        let mut disk = self.step()?;
        let state = &mut disk.now;
        let added = if state.objects.contains_key(id) {
            Added::Duplicate
        } else {
            let sop = record.sop_instance_uid.clone();
            let new_version = !sop.is_empty() && state.instances.contains_key(&sop);
            record.seq = state.next_seq;
            record.new_version = new_version;
            state.next_seq += 1;
            if !sop.is_empty() {
                if !new_version {
                    *state
                        .studies
                        .entry(record.study_instance_uid.clone())
                        .or_default() += 1;
                }
                state.instances.entry(sop).or_default().push(id.clone());
            }
            state.objects.insert(id.clone(), record);
            Added::Stored { new_version }
        };
        disk.sync();
        Ok(added)
    }

    fn object(&self, id: &ObjectId) -> Result<Option<ObjectRecord>, OutboxError> {
        Ok(self.step()?.now.objects.get(id).cloned())
    }

    fn objects(&self) -> Result<Vec<(ObjectId, ObjectRecord)>, OutboxError> {
        let disk = self.step()?;
        Ok(disk
            .now
            .objects
            .iter()
            .map(|(id, r)| (id.clone(), r.clone()))
            .collect())
    }

    fn study_instances(&self, study_instance_uid: &str) -> Result<u32, OutboxError> {
        Ok(self
            .step()?
            .now
            .studies
            .get(study_instance_uid)
            .copied()
            .unwrap_or(0))
    }

    fn raise_priority(
        &self,
        study_instance_uid: &str,
        priority: Priority,
    ) -> Result<Vec<ObjectId>, OutboxError> {
        let mut disk = self.step()?;
        let mut changed = Vec::new();
        for (id, r) in disk.now.objects.iter_mut() {
            if r.study_instance_uid == study_instance_uid
                && r.delivered_at.is_none()
                && r.priority < priority
            {
                r.priority = priority;
                changed.push(id.clone());
            }
        }
        if !changed.is_empty() {
            disk.sync();
        }
        Ok(changed)
    }

    fn mark_delivered(&self, id: &ObjectId, at: i64) -> Result<(), OutboxError> {
        let mut disk = self.step()?;
        disk.loose((id.clone(), at));
        Ok(())
    }

    fn requeue_delivered(&self) -> Result<Vec<(ObjectId, ObjectRecord)>, OutboxError> {
        let mut disk = self.step()?;
        let mut requeued = Vec::new();
        for (id, r) in disk.now.objects.iter_mut() {
            if r.delivered_at.take().is_some() {
                requeued.push((id.clone(), r.clone()));
            }
        }
        disk.sync();
        Ok(requeued)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_memory_adapter_conforms() {
        super::super::conformance::run(|| {
            let outbox = MemoryOutbox::new(&Machine::new(1));
            let again = outbox.clone();
            (
                Box::new(outbox) as Box<dyn Outbox>,
                Box::new(move |_old: Box<dyn Outbox>| Box::new(again.boot()) as Box<dyn Outbox>)
                    as _,
            )
        });
    }
}
