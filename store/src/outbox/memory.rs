//! The outbox in memory, on a [`Machine`] that can lose power. `add`, `raise_priority` and
//! `requeue_delivered` are durable when they return (and, like sled's flush, make every
//! earlier write durable too); the delivery marks written since survive a crash only in part:
//! a seeded prefix, as sled's background flush may have written it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use proto::sync::{ObjectId, Priority};

use super::{Added, ObjectRecord, Outbox, OutboxError};
use crate::crash::Machine;

#[derive(Debug, Clone, Default)]
struct State {
    objects: BTreeMap<ObjectId, ObjectRecord>,
    instances: BTreeMap<String, Vec<ObjectId>>,
    studies: BTreeMap<String, u32>,
    next_seq: u64,
}

impl State {
    fn deliver(&mut self, id: &ObjectId, at: i64) {
        if let Some(r) = self.objects.get_mut(id) {
            r.delivered_at.get_or_insert(at);
        }
    }
}

#[derive(Debug, Default)]
struct Disk {
    now: State,
    durable: State,
    /// Delivery marks since the last durable write, oldest first.
    loose: Vec<(ObjectId, i64)>,
    applied: u64,
}

impl Disk {
    fn durable(&mut self) {
        self.durable = self.now.clone();
        self.loose.clear();
    }
}

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
            disk: Arc::new(Mutex::new(Disk {
                applied: machine.booted(),
                ..Disk::default()
            })),
        }
    }

    /// The same outbox after the machine powered on again.
    pub fn boot(&self) -> Self {
        let boot = self.machine.booted();
        let mut disk = self.lock();
        if disk.applied != boot {
            disk.applied = boot;
            let mut state = disk.durable.clone();
            let kept = self.machine.below(disk.loose.len() as u64 + 1) as usize;
            for (id, at) in &disk.loose[..kept] {
                state.deliver(id, *at);
            }
            disk.loose.clear();
            disk.now = state.clone();
            disk.durable = state;
        }
        drop(disk);
        Self {
            machine: self.machine.clone(),
            disk: self.disk.clone(),
            boot,
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
        disk.durable();
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
            disk.durable();
        }
        Ok(changed)
    }

    fn mark_delivered(&self, id: &ObjectId, at: i64) -> Result<(), OutboxError> {
        let mut disk = self.step()?;
        disk.now.deliver(id, at);
        disk.loose.push((id.clone(), at));
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
        disk.durable();
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
