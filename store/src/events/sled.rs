//! The event store in sled, in the trees the daemons have always written —
//! `consult_events` (`clinic \0 side \0 seq` → event), `consult_by_consultation`
//! (`consultation \0 side \0 seq` → clinic), `consult_owners` (consultation → clinic),
//! `consult_reconcile` (marks) — and the projections, built from the events the first time a
//! data folder from before them opens: `consult_projection` (`clinic \0 consultation` →
//! state), `consult_open` (the same, for open consultations only) and `consult_patients`
//! (`clinic \0 patient id \0 consultation` → nothing).

use ::sled::transaction::ConflictableTransactionError;
use ::sled::{Db, Transactional, Tree};
use proto::consult::{canonical_order, Consultation, ConsultationId, Event, EventId, Folded, Side};
use proto::ClinicId;

use super::{EventError, EventStore};
use crate::gate::WriteGate;

impl From<::sled::Error> for EventError {
    fn from(e: ::sled::Error) -> Self {
        EventError::Engine(e.to_string())
    }
}

pub struct SledEvents {
    db: Db,
    events: Tree,
    by_consultation: Tree,
    owners: Tree,
    reconcile: Tree,
    projection: Tree,
    open: Tree,
    patients: Tree,
    gate: WriteGate,
}

impl std::fmt::Debug for SledEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledEvents").finish_non_exhaustive()
    }
}

fn side_byte(side: Side) -> u8 {
    match side {
        Side::Clinic => b'c',
        Side::Gateway => b'g',
    }
}

fn log_prefix(clinic: &ClinicId, side: Side) -> Vec<u8> {
    let mut k = clinic.as_str().as_bytes().to_vec();
    k.extend([0, side_byte(side), 0]);
    k
}

fn event_key(id: &EventId) -> Vec<u8> {
    let mut k = log_prefix(&id.clinic, id.side);
    k.extend(id.seq.to_be_bytes());
    k
}

fn consultation_key(consultation: &ConsultationId, id: &EventId) -> Vec<u8> {
    let mut k = consultation.as_str().as_bytes().to_vec();
    k.extend([0, side_byte(id.side), 0]);
    k.extend(id.seq.to_be_bytes());
    k
}

fn projection_key(clinic: &ClinicId, consultation: &ConsultationId) -> Vec<u8> {
    let mut k = clinic.as_str().as_bytes().to_vec();
    k.push(0);
    k.extend(consultation.as_str().as_bytes());
    k
}

fn patient_key(clinic: &ClinicId, patient: &str, consultation: &ConsultationId) -> Vec<u8> {
    let mut k = clinic.as_str().as_bytes().to_vec();
    k.push(0);
    k.extend(patient.as_bytes());
    k.push(0);
    k.extend(consultation.as_str().as_bytes());
    k
}

fn clinic_prefix(clinic: &ClinicId) -> Vec<u8> {
    let mut prefix = clinic.as_str().as_bytes().to_vec();
    prefix.push(0);
    prefix
}

fn corrupt(e: impl std::fmt::Display) -> EventError {
    EventError::Corrupt(e.to_string())
}

/// Marks the projection tree as complete (kept in the reconcile tree's own namespace would
/// collide with its clearing: a key of the projection tree instead), for this version of the
/// fold: `.2` added the case number and the answer received, so a folder built by an older
/// fold is folded again once. Marks start with 0xff, which no clinic id does.
const BUILT: &[u8] = b"\xffbuilt.2";

impl SledEvents {
    /// The event store in `db`'s trees; writes hold `gate` shared. Builds the projections of
    /// a data folder written before they existed.
    pub fn open(db: &Db, gate: WriteGate) -> Result<Self, EventError> {
        let store = Self {
            events: db.open_tree("consult_events")?,
            by_consultation: db.open_tree("consult_by_consultation")?,
            owners: db.open_tree("consult_owners")?,
            reconcile: db.open_tree("consult_reconcile")?,
            projection: db.open_tree("consult_projection")?,
            open: db.open_tree("consult_open")?,
            patients: db.open_tree("consult_patients")?,
            db: db.clone(),
            gate,
        };
        if !store.projection.contains_key(BUILT)? {
            store.build_projections()?;
        }
        Ok(store)
    }

    /// Folds every consultation once into its projection.
    fn build_projections(&self) -> Result<(), EventError> {
        for kv in self.owners.iter() {
            let (k, v) = kv?;
            let id = ConsultationId::parse(&String::from_utf8_lossy(&k))
                .ok_or_else(|| corrupt("a consultation id"))?;
            let clinic = ClinicId::new(&String::from_utf8_lossy(&v)).map_err(corrupt)?;
            let (c, g) = self.events_of(&id)?;
            let timeline: Vec<Event> = canonical_order(&c, &g).into_iter().cloned().collect();
            if let Some(folded) = Folded::fold(&timeline) {
                let c = folded.consultation;
                let value = serde_json::to_vec(&c).map_err(corrupt)?;
                let key = projection_key(&clinic, &id);
                if c.state.is_open() {
                    self.open.insert(&key, value.as_slice())?;
                }
                self.patients
                    .insert(patient_key(&clinic, &c.patient.id, &id), &[])?;
                self.projection.insert(key, value)?;
            }
        }
        self.projection.insert(BUILT, &[])?;
        self.db.flush()?;
        Ok(())
    }
}

impl EventStore for SledEvents {
    fn cursor(&self, clinic: &ClinicId, side: Side) -> Result<u64, EventError> {
        let prefix = log_prefix(clinic, side);
        Ok(match self.events.scan_prefix(&prefix).next_back() {
            Some(kv) => {
                let (k, _) = kv?;
                let tail: [u8; 8] = k[prefix.len()..]
                    .try_into()
                    .map_err(|_| corrupt("malformed event key"))?;
                u64::from_be_bytes(tail)
            }
            None => 0,
        })
    }

    fn events_after(
        &self,
        clinic: &ClinicId,
        side: Side,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Event>, EventError> {
        let Some(first) = after.checked_add(1) else {
            return Ok(Vec::new());
        };
        let prefix = log_prefix(clinic, side);
        let mut start = prefix.clone();
        start.extend(first.to_be_bytes());
        let mut end = prefix;
        end.extend(u64::MAX.to_be_bytes());
        self.events
            .range(start..=end)
            .take(limit)
            .map(|kv| {
                let (_, v) = kv?;
                serde_json::from_slice(&v).map_err(corrupt)
            })
            .collect()
    }

    fn owner(&self, consultation: &ConsultationId) -> Result<Option<ClinicId>, EventError> {
        match self.owners.get(consultation.as_str())? {
            Some(v) => Ok(Some(
                ClinicId::new(&String::from_utf8_lossy(&v)).map_err(corrupt)?,
            )),
            None => Ok(None),
        }
    }

    fn events_of(
        &self,
        consultation: &ConsultationId,
    ) -> Result<(Vec<Event>, Vec<Event>), EventError> {
        let Some(owner) = self.owner(consultation)? else {
            return Ok((Vec::new(), Vec::new()));
        };
        let mut prefix = consultation.as_str().as_bytes().to_vec();
        prefix.push(0);
        let (mut clinic, mut gateway) = (Vec::new(), Vec::new());
        for kv in self.by_consultation.scan_prefix(&prefix) {
            let (k, _) = kv?;
            let side = k.get(prefix.len()).copied();
            let tail: [u8; 8] = k[k.len().saturating_sub(8)..]
                .try_into()
                .map_err(|_| corrupt("malformed consultation key"))?;
            let id = EventId {
                clinic: owner.clone(),
                side: if side == Some(side_byte(Side::Clinic)) {
                    Side::Clinic
                } else {
                    Side::Gateway
                },
                seq: u64::from_be_bytes(tail),
            };
            let Some(v) = self.events.get(event_key(&id))? else {
                continue;
            };
            let event: Event = serde_json::from_slice(&v).map_err(corrupt)?;
            match id.side {
                Side::Clinic => clinic.push(event),
                Side::Gateway => gateway.push(event),
            }
        }
        Ok((clinic, gateway))
    }

    fn store(&self, event: &Event, projection: Option<&Consultation>) -> Result<(), EventError> {
        let value = serde_json::to_vec(event).map_err(corrupt)?;
        let state = match projection {
            Some(p) => Some(serde_json::to_vec(p).map_err(corrupt)?),
            None => None,
        };
        let clinic = event.id.clinic.as_str().as_bytes().to_vec();
        let open = projection.is_some_and(|p| p.state.is_open());
        let patient = projection.map(|p| p.patient.id.as_str());
        let _whole = self.gate.enter();
        (
            &self.events,
            &self.by_consultation,
            &self.owners,
            &self.projection,
            &self.open,
            &self.patients,
        )
            .transaction(
                |(events, by_consultation, owners, projections, opens, patients)| {
                    events.insert(event_key(&event.id), value.clone())?;
                    by_consultation.insert(
                        consultation_key(&event.consultation, &event.id),
                        clinic.clone(),
                    )?;
                    owners.insert(event.consultation.as_str().as_bytes(), clinic.clone())?;
                    if let (Some(state), Some(patient)) = (&state, patient) {
                        let key = projection_key(&event.id.clinic, &event.consultation);
                        let before = projections.insert(key.as_slice(), state.as_slice())?;
                        // The patient index follows a change of patient id.
                        let before_patient = before
                            .and_then(|b| serde_json::from_slice::<Consultation>(&b).ok())
                            .map(|b| b.patient.id);
                        if let Some(old) = before_patient.filter(|old| old != patient) {
                            patients.remove(patient_key(
                                &event.id.clinic,
                                &old,
                                &event.consultation,
                            ))?;
                        }
                        patients.insert(
                            patient_key(&event.id.clinic, patient, &event.consultation),
                            &[],
                        )?;
                        if open {
                            opens.insert(key, state.as_slice())?;
                        } else {
                            opens.remove(key)?;
                        }
                    }
                    Ok::<(), ConflictableTransactionError<()>>(())
                },
            )
            .map_err(|e| EventError::Engine(format!("{e:?}")))?;
        self.db.flush()?;
        Ok(())
    }

    fn projection(
        &self,
        consultation: &ConsultationId,
    ) -> Result<Option<Consultation>, EventError> {
        let Some(owner) = self.owner(consultation)? else {
            return Ok(None);
        };
        match self.projection.get(projection_key(&owner, consultation))? {
            Some(v) => Ok(Some(serde_json::from_slice(&v).map_err(corrupt)?)),
            None => Ok(None),
        }
    }

    fn projections(&self, clinic: Option<&ClinicId>) -> Result<Vec<Consultation>, EventError> {
        let scan = match clinic {
            Some(c) => {
                let mut prefix = c.as_str().as_bytes().to_vec();
                prefix.push(0);
                self.projection.scan_prefix(prefix)
            }
            None => self.projection.iter(),
        };
        let mut out = Vec::new();
        for kv in scan {
            let (k, v) = kv?;
            if k.first() == Some(&0xff) {
                continue;
            }
            out.push(serde_json::from_slice(&v).map_err(corrupt)?);
        }
        Ok(out)
    }

    fn open_projections(&self, clinic: Option<&ClinicId>) -> Result<Vec<Consultation>, EventError> {
        let scan = match clinic {
            Some(c) => self.open.scan_prefix(clinic_prefix(c)),
            None => self.open.iter(),
        };
        let mut out = Vec::new();
        for kv in scan {
            let (_, v) = kv?;
            out.push(serde_json::from_slice(&v).map_err(corrupt)?);
        }
        Ok(out)
    }

    fn patient_projections(
        &self,
        clinic: &ClinicId,
        patient_id: &str,
    ) -> Result<Vec<Consultation>, EventError> {
        let mut prefix = clinic_prefix(clinic);
        prefix.extend(patient_id.as_bytes());
        prefix.push(0);
        let mut out = Vec::new();
        for kv in self.patients.scan_prefix(&prefix) {
            let (k, _) = kv?;
            let id = ConsultationId::parse(&String::from_utf8_lossy(&k[prefix.len()..]))
                .ok_or_else(|| corrupt("a consultation id in the patient index"))?;
            if let Some(v) = self.projection.get(projection_key(clinic, &id))? {
                out.push(serde_json::from_slice(&v).map_err(corrupt)?);
            }
        }
        Ok(out)
    }

    fn clinics(&self) -> Result<Vec<ClinicId>, EventError> {
        let mut set = std::collections::BTreeSet::new();
        for kv in self.owners.iter() {
            let (_, v) = kv?;
            if let Ok(c) = ClinicId::new(&String::from_utf8_lossy(&v)) {
                set.insert(c);
            }
        }
        Ok(set.into_iter().collect())
    }

    fn set_mark(&self, mark: &[u8]) -> Result<(), EventError> {
        self.reconcile.insert(mark, &[])?;
        self.db.flush()?;
        Ok(())
    }

    fn has_mark(&self, mark: &[u8]) -> Result<bool, EventError> {
        Ok(self.reconcile.contains_key(mark)?)
    }

    fn clear_marks(&self) -> Result<(), EventError> {
        self.reconcile.clear()?;
        self.db.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sled_events_keep_the_port_contract() {
        let dir = tempfile::tempdir().unwrap();
        let mut n = 0;
        super::super::conformance::run(|| {
            n += 1;
            let db = ::sled::open(dir.path().join(n.to_string())).unwrap();
            let store = SledEvents::open(&db, WriteGate::default()).unwrap();
            let reopen = move || {
                Box::new(SledEvents::open(&db, WriteGate::default()).unwrap())
                    as Box<dyn EventStore>
            };
            (
                Box::new(store) as Box<dyn EventStore>,
                Box::new(reopen) as Box<dyn Fn() -> Box<dyn EventStore>>,
            )
        });
    }

    /// A data folder from before the projection gets one the first time it opens.
    #[test]
    fn the_projections_of_an_older_data_folder_are_built_once() {
        let dir = tempfile::tempdir().unwrap();
        let db = ::sled::open(dir.path()).unwrap();
        let store = SledEvents::open(&db, WriteGate::default()).unwrap();
        let events = super::super::conformance::a_case(&ClinicId::new("jinzhou").unwrap(), 3);
        let mut folded = Vec::new();
        for e in &events {
            folded.push(e.clone());
            let state = Folded::fold(&folded).unwrap().consultation;
            store.store(e, Some(&state)).unwrap();
        }
        let expected = store.projections(None).unwrap();
        assert_eq!(expected.len(), 1);
        // As an older gateway left it: no projection trees.
        for tree in ["consult_projection", "consult_open", "consult_patients"] {
            db.drop_tree(tree).unwrap();
        }
        let reopened = SledEvents::open(&db, WriteGate::default()).unwrap();
        assert_eq!(reopened.projections(None).unwrap(), expected);
        assert_eq!(
            reopened.open_projections(None).unwrap(),
            expected,
            "submitted is open"
        );
        let jz = ClinicId::new("jinzhou").unwrap();
        assert_eq!(reopened.patient_projections(&jz, "P-3").unwrap(), expected);
    }
}
