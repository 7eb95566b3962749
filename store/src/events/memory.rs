//! The event store in memory, on a [`Machine`] that can lose power: every write is durable
//! when it returns (as the contract asks), so a crash only stops what comes after it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use proto::consult::{Consultation, ConsultationId, Event, Side};
use proto::ClinicId;

use super::{EventError, EventStore};
use crate::crash::Machine;

#[derive(Debug, Default)]
struct Disk {
    /// (clinic, side, seq) → event.
    events: BTreeMap<(String, u8, u64), Event>,
    owners: BTreeMap<ConsultationId, ClinicId>,
    /// (clinic, consultation) → state.
    projections: BTreeMap<(String, ConsultationId), Consultation>,
    marks: BTreeSet<Vec<u8>>,
}

#[derive(Debug, Clone)]
pub struct MemoryEvents {
    machine: Machine,
    disk: Arc<Mutex<Disk>>,
    boot: u64,
}

fn side(side: Side) -> u8 {
    match side {
        Side::Clinic => 0,
        Side::Gateway => 1,
    }
}

impl MemoryEvents {
    pub fn new(machine: &Machine) -> Self {
        Self {
            boot: machine.booted(),
            machine: machine.clone(),
            disk: Arc::default(),
        }
    }

    /// The same store after the machine powered on again.
    pub fn boot(&self) -> Self {
        Self {
            machine: self.machine.clone(),
            disk: self.disk.clone(),
            boot: self.machine.booted(),
        }
    }

    fn step(&self) -> Result<MutexGuard<'_, Disk>, EventError> {
        self.machine.step(self.boot)?;
        Ok(self.disk.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl EventStore for MemoryEvents {
    fn cursor(&self, clinic: &ClinicId, s: Side) -> Result<u64, EventError> {
        let disk = self.step()?;
        let c = clinic.as_str().to_owned();
        Ok(disk
            .events
            .range((c.clone(), side(s), 0)..=(c, side(s), u64::MAX))
            .next_back()
            .map_or(0, |((_, _, seq), _)| *seq))
    }

    fn events_after(
        &self,
        clinic: &ClinicId,
        s: Side,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Event>, EventError> {
        let disk = self.step()?;
        let Some(first) = after.checked_add(1) else {
            return Ok(Vec::new());
        };
        let c = clinic.as_str().to_owned();
        Ok(disk
            .events
            .range((c.clone(), side(s), first)..=(c, side(s), u64::MAX))
            .take(limit)
            .map(|(_, e)| e.clone())
            .collect())
    }

    fn owner(&self, consultation: &ConsultationId) -> Result<Option<ClinicId>, EventError> {
        Ok(self.step()?.owners.get(consultation).cloned())
    }

    fn events_of(
        &self,
        consultation: &ConsultationId,
    ) -> Result<(Vec<Event>, Vec<Event>), EventError> {
        let disk = self.step()?;
        let Some(owner) = disk.owners.get(consultation) else {
            return Ok((Vec::new(), Vec::new()));
        };
        let c = owner.as_str().to_owned();
        let of = |s: Side| -> Vec<Event> {
            disk.events
                .range((c.clone(), side(s), 0)..=(c.clone(), side(s), u64::MAX))
                .filter(|(_, e)| &e.consultation == consultation)
                .map(|(_, e)| e.clone())
                .collect()
        };
        Ok((of(Side::Clinic), of(Side::Gateway)))
    }

    fn store(&self, event: &Event, projection: Option<&Consultation>) -> Result<(), EventError> {
        let mut disk = self.step()?;
        let c = event.id.clinic.as_str().to_owned();
        disk.events.insert(
            (c.clone(), side(event.id.side), event.id.seq),
            event.clone(),
        );
        disk.owners
            .insert(event.consultation.clone(), event.id.clinic.clone());
        if let Some(p) = projection {
            disk.projections
                .insert((c, event.consultation.clone()), p.clone());
        }
        Ok(())
    }

    fn projection(
        &self,
        consultation: &ConsultationId,
    ) -> Result<Option<Consultation>, EventError> {
        let disk = self.step()?;
        let Some(owner) = disk.owners.get(consultation) else {
            return Ok(None);
        };
        Ok(disk
            .projections
            .get(&(owner.as_str().to_owned(), consultation.clone()))
            .cloned())
    }

    fn projections(&self, clinic: Option<&ClinicId>) -> Result<Vec<Consultation>, EventError> {
        let disk = self.step()?;
        Ok(disk
            .projections
            .iter()
            .filter(|((c, _), _)| clinic.is_none_or(|want| want.as_str() == c))
            .map(|(_, state)| state.clone())
            .collect())
    }

    fn open_projections(&self, clinic: Option<&ClinicId>) -> Result<Vec<Consultation>, EventError> {
        let mut all = self.projections(clinic)?;
        all.retain(|c| c.state.is_open());
        Ok(all)
    }

    fn patient_projections(
        &self,
        clinic: &ClinicId,
        patient_id: &str,
    ) -> Result<Vec<Consultation>, EventError> {
        let mut all = self.projections(Some(clinic))?;
        all.retain(|c| c.patient.id == patient_id);
        Ok(all)
    }

    fn clinics(&self) -> Result<Vec<ClinicId>, EventError> {
        let disk = self.step()?;
        let set: BTreeSet<ClinicId> = disk.owners.values().cloned().collect();
        Ok(set.into_iter().collect())
    }

    fn set_mark(&self, mark: &[u8]) -> Result<(), EventError> {
        self.step()?.marks.insert(mark.to_vec());
        Ok(())
    }

    fn has_mark(&self, mark: &[u8]) -> Result<bool, EventError> {
        Ok(self.step()?.marks.contains(mark))
    }

    fn clear_marks(&self) -> Result<(), EventError> {
        self.step()?.marks.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_memory_events_keep_the_port_contract() {
        super::super::conformance::run(|| {
            let store = MemoryEvents::new(&Machine::new(5));
            let again = store.clone();
            (
                Box::new(store) as Box<dyn EventStore>,
                Box::new(move || Box::new(again.boot()) as Box<dyn EventStore>)
                    as Box<dyn Fn() -> Box<dyn EventStore>>,
            )
        });
    }
}
