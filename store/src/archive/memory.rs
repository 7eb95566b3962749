//! The archive index in memory, on a [`Machine`] that can lose power. Its calls that promise
//! durability (`record_partial`, `forget_partial`, `commit_verified`) are durable when they
//! return; what came after the last of them (`note_expected`) survives a crash only in part:
//! a seeded prefix, as sled's background flush may have written it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use proto::sync::ObjectId;
use proto::ClinicId;

use super::{
    ArchiveIndex, IndexError, InstanceKey, InstanceRecord, PartialRecord, ToForward, Verified,
};
use crate::archive::forwarding::{Counts, Entry, FannedOut, ForwardQueues, Queued, Route};
use crate::crash::{Flushed, Machine, Replay};

type Clinic = String;

#[derive(Debug, Clone, Default)]
struct State {
    instances: BTreeMap<(Clinic, InstanceKey, ObjectId), InstanceRecord>,
    claims: BTreeMap<(Clinic, ObjectId), InstanceKey>,
    partials: BTreeMap<(Clinic, ObjectId), PartialRecord>,
    expected: BTreeMap<(Clinic, String), u32>,
    inbox: BTreeMap<u64, ToForward>,
    next_forward_id: u64,
    queues: BTreeMap<(String, u64), Queued>,
    counts: BTreeMap<String, Counts>,
}

#[derive(Debug, Clone)]
enum Loose {
    Expected(Clinic, String, u32),
    Update(String, u64, Queued),
    Done(String, u64),
    Count(String, u64, u64),
}

impl State {
    /// A destination's queue, oldest first.
    fn queue(&self, destination: &str) -> impl Iterator<Item = (&(String, u64), &Queued)> {
        self.queues
            .range((destination.to_owned(), 0)..=(destination.to_owned(), u64::MAX))
    }
}

impl Replay<Loose> for State {
    fn apply(&mut self, op: &Loose) {
        match op {
            Loose::Expected(clinic, study, n) => {
                let e = self
                    .expected
                    .entry((clinic.clone(), study.clone()))
                    .or_insert(0);
                *e = (*e).max(*n);
            }
            Loose::Update(destination, id, queued) => {
                if let Some(q) = self.queues.get_mut(&(destination.clone(), *id)) {
                    *q = queued.clone();
                }
            }
            Loose::Done(destination, id) => {
                self.queues.remove(&(destination.clone(), *id));
            }
            Loose::Count(destination, sent, failures) => {
                let c = self.counts.entry(destination.clone()).or_default();
                c.sent += sent;
                c.failures += failures;
            }
        }
    }
}

type Disk = Flushed<State, Loose>;

#[derive(Debug, Clone)]
pub struct MemoryIndex {
    machine: Machine,
    disk: Arc<Mutex<Disk>>,
    boot: u64,
}

impl MemoryIndex {
    pub fn new(machine: &Machine) -> Self {
        let state = State {
            next_forward_id: 1,
            ..State::default()
        };
        Self {
            boot: machine.booted(),
            machine: machine.clone(),
            disk: Arc::new(Mutex::new(Disk::new(state, machine))),
        }
    }

    /// The same index after the machine powered on again.
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

    fn step(&self) -> Result<MutexGuard<'_, Disk>, IndexError> {
        self.machine.step(self.boot)?;
        Ok(self.lock())
    }
}

fn c(clinic: &ClinicId) -> Clinic {
    clinic.as_str().to_owned()
}

impl ArchiveIndex for MemoryIndex {
    fn holds(&self, clinic: &ClinicId, id: &ObjectId) -> Result<bool, IndexError> {
        Ok(self
            .step()?
            .now
            .claims
            .contains_key(&(c(clinic), id.clone())))
    }

    fn partial(
        &self,
        clinic: &ClinicId,
        id: &ObjectId,
    ) -> Result<Option<PartialRecord>, IndexError> {
        Ok(self
            .step()?
            .now
            .partials
            .get(&(c(clinic), id.clone()))
            .copied())
    }

    fn record_partial(
        &self,
        clinic: &ClinicId,
        id: &ObjectId,
        record: PartialRecord,
    ) -> Result<(), IndexError> {
        let mut disk = self.step()?;
        disk.now.partials.insert((c(clinic), id.clone()), record);
        disk.sync();
        Ok(())
    }

    fn forget_partial(&self, clinic: &ClinicId, id: &ObjectId) -> Result<(), IndexError> {
        let mut disk = self.step()?;
        disk.now.partials.remove(&(c(clinic), id.clone()));
        disk.sync();
        Ok(())
    }

    fn commit_verified(&self, batch: &[Verified]) -> Result<(), IndexError> {
        let mut disk = self.step()?;
        let now = &mut disk.now;
        for v in batch {
            let claim = (c(&v.clinic), v.record.object.clone());
            now.partials.remove(&claim);
            if now.claims.contains_key(&claim) {
                continue;
            }
            now.instances.insert(
                (claim.0.clone(), v.key.clone(), v.record.object.clone()),
                v.record.clone(),
            );
            now.claims.insert(claim, v.key.clone());
            if let Some(f) = &v.forward {
                let id = now.next_forward_id;
                now.next_forward_id += 1;
                now.inbox.insert(id, f.clone());
            }
        }
        disk.sync();
        Ok(())
    }

    fn note_expected(
        &self,
        clinic: &ClinicId,
        study: &str,
        instances: u32,
    ) -> Result<(), IndexError> {
        let mut disk = self.step()?;
        let op = Loose::Expected(c(clinic), study.to_owned(), instances);
        disk.loose(op);
        Ok(())
    }

    fn expected(&self, clinic: &ClinicId, study: &str) -> Result<Option<u32>, IndexError> {
        Ok(self
            .step()?
            .now
            .expected
            .get(&(c(clinic), study.to_owned()))
            .copied())
    }

    fn instances(
        &self,
        clinic: &ClinicId,
    ) -> Result<Vec<(InstanceKey, InstanceRecord)>, IndexError> {
        let disk = self.step()?;
        Ok(disk
            .now
            .instances
            .iter()
            .filter(|((owner, _, _), _)| owner == clinic.as_str())
            .map(|((_, key, _), record)| (key.clone(), record.clone()))
            .collect())
    }

    fn study(
        &self,
        clinic: &ClinicId,
        study: &str,
    ) -> Result<Vec<(InstanceKey, InstanceRecord)>, IndexError> {
        Ok(self
            .instances(clinic)?
            .into_iter()
            .filter(|(k, _)| k.study == study)
            .collect())
    }

    fn instance(
        &self,
        clinic: &ClinicId,
        id: &ObjectId,
    ) -> Result<Option<(InstanceKey, InstanceRecord)>, IndexError> {
        let disk = self.step()?;
        let Some(key) = disk.now.claims.get(&(c(clinic), id.clone())) else {
            return Ok(None);
        };
        Ok(disk
            .now
            .instances
            .get(&(c(clinic), key.clone(), id.clone()))
            .map(|r| (key.clone(), r.clone())))
    }

    fn forward_inbox(&self) -> Result<Vec<(u64, ToForward)>, IndexError> {
        let disk = self.step()?;
        Ok(disk
            .now
            .inbox
            .iter()
            .map(|(k, v)| (*k, v.clone()))
            .collect())
    }

    fn clinics(&self) -> Result<Vec<ClinicId>, IndexError> {
        let disk = self.step()?;
        let set: std::collections::BTreeSet<&String> =
            disk.now.claims.keys().map(|(clinic, _)| clinic).collect();
        Ok(set
            .into_iter()
            .filter_map(|c| ClinicId::new(c).ok())
            .collect())
    }
}

impl MemoryIndex {
    /// A loose write: applied now, durable with the next durable one (or, seeded, in part).
    fn loose(&self, op: Loose) -> Result<(), IndexError> {
        let mut disk = self.step()?;
        disk.loose(op);
        Ok(())
    }
}

impl ForwardQueues for MemoryIndex {
    fn fan_out(&self, route: Route<'_>, now: i64) -> Result<FannedOut, IndexError> {
        let mut disk = self.step()?;
        let mut out = FannedOut::default();
        let state = &mut disk.now;
        for (id, item) in std::mem::take(&mut state.inbox) {
            for destination in route(&item) {
                let key = (destination.clone(), id);
                if state.queues.contains_key(&key) {
                    continue;
                }
                let queued = Queued::new(item.clone(), now);
                state.queues.insert(key, queued);
                *out.added.entry(destination).or_default() += 1;
            }
            out.moved += 1;
        }
        disk.sync();
        Ok(out)
    }

    fn queued(
        &self,
        destination: &str,
        limit: usize,
        skip: &dyn Fn(u64) -> bool,
    ) -> Result<Vec<Entry>, IndexError> {
        let disk = self.step()?;
        Ok(disk
            .now
            .queue(destination)
            .filter(|((_, id), _)| !skip(*id))
            .take(limit)
            .map(|((_, id), q)| (*id, Ok(q.clone())))
            .collect())
    }

    fn len(&self, destination: &str) -> Result<u64, IndexError> {
        let disk = self.step()?;
        Ok(disk.now.queue(destination).count() as u64)
    }

    fn oldest(&self, destination: &str) -> Result<Option<Queued>, IndexError> {
        let disk = self.step()?;
        let oldest = disk.now.queue(destination).next().map(|(_, q)| q.clone());
        Ok(oldest)
    }

    fn update(&self, destination: &str, id: u64, queued: &Queued) -> Result<(), IndexError> {
        self.loose(Loose::Update(destination.to_owned(), id, queued.clone()))
    }

    fn done(&self, destination: &str, id: u64) -> Result<bool, IndexError> {
        let held = self
            .step()?
            .now
            .queues
            .contains_key(&(destination.to_owned(), id));
        self.loose(Loose::Done(destination.to_owned(), id))?;
        Ok(held)
    }

    fn counts(&self, destination: &str) -> Result<Counts, IndexError> {
        Ok(self
            .step()?
            .now
            .counts
            .get(destination)
            .copied()
            .unwrap_or_default())
    }

    fn count(&self, destination: &str, sent: u64, failures: u64) -> Result<(), IndexError> {
        self.loose(Loose::Count(destination.to_owned(), sent, failures))
    }

    fn sync(&self) -> Result<(), IndexError> {
        let mut disk = self.step()?;
        disk.sync();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_memory_index_keeps_the_port_contract() {
        super::super::conformance::run(|| {
            let index = MemoryIndex::new(&Machine::new(3));
            let again = index.clone();
            (
                Box::new(index) as Box<dyn ArchiveIndex>,
                Box::new(move || Box::new(again.boot()) as Box<dyn ArchiveIndex>)
                    as Box<dyn Fn() -> Box<dyn ArchiveIndex>>,
            )
        });
    }

    #[test]
    fn the_memory_index_keeps_the_forwarding_queues_contract() {
        use crate::archive::forwarding::conformance::Indexed;
        crate::archive::forwarding::conformance::run(|| {
            let index = MemoryIndex::new(&Machine::new(4));
            let again = index.clone();
            (
                Box::new(index) as Box<dyn Indexed>,
                Box::new(move || Box::new(again.boot()) as Box<dyn Indexed>) as _,
            )
        });
    }
}
