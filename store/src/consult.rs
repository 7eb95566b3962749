//! The consultation logs, kept the same way at both sites: every event of every clinic, in a
//! sled database the daemon owns. A site appends its own events after checking them against the
//! consultation's current state ([`ConsultLog::append`]) and applies the other side's events
//! as they are replicated ([`ConsultLog::apply_replicated`]); an event is durable before either
//! call returns, and the highest stored sequence number of each (clinic, side) is the
//! replication cursor, so event and cursor can never disagree.
//!
//! The gateway seals its own events ([`ConsultLog::sealed`]) and, after a restore from a
//! backup, takes back from each clinic the events the backup lacked
//! ([`ConsultLog::apply_returned`]); until a clinic has reconnected it appends nothing for
//! that clinic, so no sequence number is ever given twice ([`ConsultLog::mark_restored`]).

use std::sync::Mutex;

use ring::hmac;

use crate::gate::WriteGate;

use proto::consult::{
    canonical_order, Applied, Consultation, ConsultationId, Event, EventId, EventKind, Folded, Log,
    Refusal, ReplicationError, Side,
};
use proto::ClinicId;

#[derive(Debug, thiserror::Error)]
pub enum ConsultError {
    #[error("index error: {0}")]
    Index(String),
    #[error("consultation {0} does not exist")]
    NotFound(ConsultationId),
    #[error("consultation {0} already exists")]
    Exists(ConsultationId),
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error(transparent)]
    Replication(#[from] ReplicationError),
    #[error("the text is too long ({bytes} bytes; at most {MAX_EVENT_BYTES}): shorten it, or attach the long part as a PDF")]
    TooLarge { bytes: usize },
    #[error("the gateway was restored from a backup and clinic {0} has not connected since: its cases wait until its link is back (the clinic holds events the backup lacks)")]
    AwaitingClinic(ClinicId),
    #[error("event {seq} sent back by the clinic does not carry this gateway's seal: refused (only events this gateway wrote are taken back)")]
    Unsealed { seq: u64 },
}

/// The largest event, encoded, that fits one control frame with room to spare.
pub const MAX_EVENT_BYTES: usize = 60 * 1024;

impl From<sled::Error> for ConsultError {
    fn from(e: sled::Error) -> Self {
        ConsultError::Index(e.to_string())
    }
}

/// One site's store of consultation events.
pub struct ConsultLog {
    db: sled::Db,
    /// `clinic \0 side \0 seq(be)` → event (JSON).
    events: sled::Tree,
    /// `consultation \0 side \0 seq(be)` → `clinic`: a consultation's events.
    by_consultation: sled::Tree,
    /// `consultation` → `clinic`: which clinic a consultation belongs to.
    owners: sled::Tree,
    /// After a restore: `restored`, and `events\0clinic` / `objects\0clinic` once that
    /// clinic's events and objects are reconciled.
    reconcile: sled::Tree,
    /// Appends are checked against the state they extend: one at a time.
    append: Mutex<()>,
    /// The gateway's key for sealing its own events; `None` at a clinic.
    seal: Option<hmac::Key>,
    gate: WriteGate,
}

/// What a restored gateway still waits for from one clinic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Awaiting {
    /// The gateway's own events the backup lacked: it appends nothing for the clinic until
    /// they are back.
    pub events: bool,
    /// The clinic's delivered objects, offered again.
    pub objects: bool,
}

const RESTORED: &[u8] = b"restored";

fn reconcile_key(part: &str, clinic: &ClinicId) -> Vec<u8> {
    let mut k = part.as_bytes().to_vec();
    k.push(0);
    k.extend(clinic.as_str().as_bytes());
    k
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The bytes a seal covers: the event as encoded, without its seal.
fn sealed_bytes(event: &Event) -> Result<Vec<u8>, ConsultError> {
    let mut bare = event.clone();
    bare.seal = None;
    encode(&bare)
}

impl std::fmt::Debug for ConsultLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsultLog").finish_non_exhaustive()
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

fn encode(event: &Event) -> Result<Vec<u8>, ConsultError> {
    serde_json::to_vec(event).map_err(|e| ConsultError::Index(e.to_string()))
}

impl ConsultLog {
    /// Opens the log's trees in a daemon's sled database.
    pub fn open(db: &sled::Db) -> Result<Self, ConsultError> {
        Ok(Self {
            events: db.open_tree("consult_events")?,
            by_consultation: db.open_tree("consult_by_consultation")?,
            owners: db.open_tree("consult_owners")?,
            reconcile: db.open_tree("consult_reconcile")?,
            db: db.clone(),
            append: Mutex::new(()),
            seal: None,
            gate: WriteGate::default(),
        })
    }

    /// Seals this site's own events with `key` (the gateway's), and takes back sealed events.
    pub fn sealed(mut self, key: &[u8]) -> Self {
        self.seal = Some(hmac::Key::new(hmac::HMAC_SHA256, key));
        self
    }

    /// Writes under `gate`, so a backup reads every event with its indexes.
    pub fn gated(mut self, gate: WriteGate) -> Self {
        self.gate = gate;
        self
    }

    /// Records that this index was just restored from a backup: every clinic is awaited until
    /// it reconnects (an earlier restore's marks are cleared).
    pub fn mark_restored(&self) -> Result<(), ConsultError> {
        self.reconcile.clear()?;
        self.reconcile.insert(RESTORED, &[])?;
        self.db.flush()?;
        Ok(())
    }

    /// What this site still waits for from `clinic` after a restore (nothing at a clinic, or
    /// at a gateway never restored).
    pub fn awaiting(&self, clinic: &ClinicId) -> Result<Awaiting, ConsultError> {
        if !self.reconcile.contains_key(RESTORED)? {
            return Ok(Awaiting::default());
        }
        Ok(Awaiting {
            events: !self
                .reconcile
                .contains_key(reconcile_key("events", clinic))?,
            objects: !self
                .reconcile
                .contains_key(reconcile_key("objects", clinic))?,
        })
    }

    /// `clinic`'s events (after a restore) are whole again: appends for it resume.
    pub fn events_reconciled(&self, clinic: &ClinicId) -> Result<(), ConsultError> {
        self.mark_reconciled("events", clinic)
    }

    /// `clinic` has put its delivered objects back in its outbox.
    pub fn objects_reconciled(&self, clinic: &ClinicId) -> Result<(), ConsultError> {
        self.mark_reconciled("objects", clinic)
    }

    fn mark_reconciled(&self, part: &str, clinic: &ClinicId) -> Result<(), ConsultError> {
        if self.reconcile.contains_key(RESTORED)? {
            self.reconcile.insert(reconcile_key(part, clinic), &[])?;
            self.db.flush()?;
        }
        Ok(())
    }

    /// The highest sequence number stored for `clinic`'s `side`: for this site's own side the
    /// last appended event, for the other side the replication cursor.
    pub fn cursor(&self, clinic: &ClinicId, side: Side) -> Result<u64, ConsultError> {
        let prefix = log_prefix(clinic, side);
        Ok(match self.events.scan_prefix(&prefix).next_back() {
            Some(kv) => {
                let (k, _) = kv?;
                let tail: [u8; 8] = k[prefix.len()..]
                    .try_into()
                    .map_err(|_| ConsultError::Index("malformed event key".into()))?;
                u64::from_be_bytes(tail)
            }
            None => 0,
        })
    }

    /// `clinic`'s events of `side` after sequence number `after`, oldest first, at most `limit`.
    pub fn events_after(
        &self,
        clinic: &ClinicId,
        side: Side,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Event>, ConsultError> {
        // The cursor comes from the peer's `replicate` frame: any number, u64::MAX too (found
        // by the fuzz targets).
        let Some(first) = after.checked_add(1) else {
            return Ok(Vec::new());
        };
        let prefix = log_prefix(clinic, side);
        let mut start = prefix.clone();
        start.extend(first.to_be_bytes());
        let mut end = prefix.clone();
        end.extend(u64::MAX.to_be_bytes());
        self.events
            .range(start..=end)
            .take(limit)
            .map(|kv| {
                let (_, v) = kv?;
                serde_json::from_slice(&v).map_err(|e| ConsultError::Index(e.to_string()))
            })
            .collect()
    }

    /// The clinic a consultation belongs to.
    pub fn owner(&self, consultation: &ConsultationId) -> Result<Option<ClinicId>, ConsultError> {
        Ok(match self.owners.get(consultation.as_str())? {
            Some(v) => Some(
                ClinicId::new(&String::from_utf8_lossy(&v))
                    .map_err(|e| ConsultError::Index(e.to_string()))?,
            ),
            None => None,
        })
    }

    /// A consultation's events, both sides, in canonical order.
    pub fn timeline(&self, consultation: &ConsultationId) -> Result<Vec<Event>, ConsultError> {
        let Some(owner) = self.owner(consultation)? else {
            return Ok(Vec::new());
        };
        let mut prefix = consultation.as_str().as_bytes().to_vec();
        prefix.push(0);
        let (mut clinic, mut gateway) = (Vec::new(), Vec::new());
        for kv in self.by_consultation.scan_prefix(&prefix) {
            let (k, _) = kv?;
            let side = k.get(prefix.len()).copied();
            let tail: [u8; 8] = k[k.len().saturating_sub(8)..]
                .try_into()
                .map_err(|_| ConsultError::Index("malformed consultation key".into()))?;
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
            let event: Event =
                serde_json::from_slice(&v).map_err(|e| ConsultError::Index(e.to_string()))?;
            match id.side {
                Side::Clinic => clinic.push(event),
                Side::Gateway => gateway.push(event),
            }
        }
        Ok(canonical_order(&clinic, &gateway)
            .into_iter()
            .cloned()
            .collect())
    }

    /// A consultation as its events make it; `None` if this site has never heard of it.
    pub fn get(&self, consultation: &ConsultationId) -> Result<Option<Folded>, ConsultError> {
        let events = self.timeline(consultation)?;
        Ok(Folded::fold(&events))
    }

    /// Every consultation of `clinic` this site holds, oldest first (ids sort by creation).
    pub fn list(&self, clinic: &ClinicId) -> Result<Vec<Folded>, ConsultError> {
        let mut out = Vec::new();
        for kv in self.owners.iter() {
            let (k, v) = kv?;
            if v.as_ref() != clinic.as_str().as_bytes() {
                continue;
            }
            let Some(id) = ConsultationId::parse(&String::from_utf8_lossy(&k)) else {
                continue;
            };
            if let Some(f) = self.get(&id)? {
                out.push(f);
            }
        }
        Ok(out)
    }

    /// Every consultation of every clinic, by clinic and then by id (creation order): one
    /// pass over the owners instead of one per clinic.
    pub fn all(&self) -> Result<Vec<Folded>, ConsultError> {
        let mut ids = Vec::new();
        for kv in self.owners.iter() {
            let (k, v) = kv?;
            if let Some(id) = ConsultationId::parse(&String::from_utf8_lossy(&k)) {
                ids.push((v.to_vec(), id));
            }
        }
        // Stable: ids stay in key order within a clinic.
        ids.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out = Vec::with_capacity(ids.len());
        for (_, id) in ids {
            if let Some(f) = self.get(&id)? {
                out.push(f);
            }
        }
        Ok(out)
    }

    /// Every consultation as it stands, in the order of [`Self::all`].
    pub fn consultations(&self) -> Result<Vec<proto::consult::Consultation>, ConsultError> {
        Ok(self.all()?.into_iter().map(|f| f.consultation).collect())
    }

    /// Every clinic with consultations here.
    pub fn clinics(&self) -> Result<Vec<ClinicId>, ConsultError> {
        let mut set = std::collections::BTreeSet::new();
        for kv in self.owners.iter() {
            let (_, v) = kv?;
            if let Ok(c) = ClinicId::new(&String::from_utf8_lossy(&v)) {
                set.insert(c);
            }
        }
        Ok(set.into_iter().collect())
    }

    /// Appends this site's event (`side`) to a consultation of `clinic` after checking it
    /// against the consultation's current state; durable when this returns.
    pub fn append(
        &self,
        clinic: &ClinicId,
        side: Side,
        consultation: &ConsultationId,
        actor: &str,
        at_ms: i64,
        kind: EventKind,
    ) -> Result<Event, ConsultError> {
        let _one_at_a_time = self.append.lock().unwrap_or_else(|p| p.into_inner());
        if self.awaiting(clinic)?.events {
            return Err(ConsultError::AwaitingClinic(clinic.clone()));
        }
        let other = side.other();
        let id = EventId {
            clinic: clinic.clone(),
            side,
            seq: self.cursor(clinic, side)? + 1,
        };
        let mut event = Event {
            id,
            seen: self.cursor(clinic, other)?,
            consultation: consultation.clone(),
            at_ms,
            actor: actor.to_owned(),
            kind,
            seal: None,
        };
        if let Some(key) = &self.seal {
            event.seal = Some(hex(hmac::sign(key, &encode(&event)?).as_ref()));
        }
        let encoded = encode(&event)?;
        if encoded.len() > MAX_EVENT_BYTES {
            return Err(ConsultError::TooLarge {
                bytes: encoded.len(),
            });
        }
        match self.owner(consultation)? {
            None if matches!(event.kind, EventKind::Created { .. }) => {
                // Checks the created event itself (its side, the required fields).
                Consultation::from_events([&event])?;
            }
            None => return Err(ConsultError::NotFound(consultation.clone())),
            Some(_) if matches!(event.kind, EventKind::Created { .. }) => {
                return Err(ConsultError::Exists(consultation.clone()))
            }
            Some(owner) if owner != *clinic => {
                return Err(ConsultError::NotFound(consultation.clone()))
            }
            Some(_) => {
                let mut current: Consultation = self
                    .get(consultation)?
                    .ok_or_else(|| ConsultError::NotFound(consultation.clone()))?
                    .consultation;
                current.admits(&event.actor, &event.kind)?;
                current.apply(&event)?;
            }
        }
        self.store(&event, encoded)?;
        Ok(event)
    }

    /// Applies an event replicated from the other side: stored once, in sequence; a duplicate
    /// changes nothing. An event the fold refuses is still stored — the other site accepted it,
    /// and both sites must hold the same log — and shows as superseded.
    /// `link` is the clinic whose link the event arrived on: an event of another clinic is
    /// refused ([`ReplicationError::OtherClinic`]).
    pub fn apply_replicated(
        &self,
        link: &ClinicId,
        local: Side,
        event: &Event,
    ) -> Result<Applied, ConsultError> {
        self.apply_from_peer(link, local.other(), event, |_| Ok(()))
    }

    /// Takes back one of this site's own events that a restore lost, from the clinic that
    /// holds it: only the next in sequence, only with this site's seal. A duplicate changes
    /// nothing.
    pub fn apply_returned(
        &self,
        link: &ClinicId,
        local: Side,
        event: &Event,
    ) -> Result<Applied, ConsultError> {
        self.apply_from_peer(link, local, event, |event| {
            let genuine = match (&self.seal, event.seal.as_deref().and_then(unhex)) {
                (Some(key), Some(tag)) => hmac::verify(key, &sealed_bytes(event)?, &tag).is_ok(),
                _ => false,
            };
            if genuine {
                Ok(())
            } else {
                Err(ConsultError::Unsealed { seq: event.id.seq })
            }
        })
    }

    /// Stores an event of `side`'s log that came over the link: once, in sequence, of the
    /// link's clinic, and only if `accept` agrees.
    fn apply_from_peer(
        &self,
        link: &ClinicId,
        side: Side,
        event: &Event,
        accept: impl Fn(&Event) -> Result<(), ConsultError>,
    ) -> Result<Applied, ConsultError> {
        let _one_at_a_time = self.append.lock().unwrap_or_else(|p| p.into_inner());
        let mut log = Log {
            clinic: link.clone(),
            side,
            cursor: self.cursor(link, side)?,
        };
        if log.apply(event)? == Applied::Duplicate {
            return Ok(Applied::Duplicate);
        }
        accept(event)?;
        if let Some(owner) = self.owner(&event.consultation)? {
            if owner != event.id.clinic {
                return Err(ReplicationError::OtherClinic {
                    expected: owner.to_string(),
                    got: event.id.clinic.to_string(),
                }
                .into());
            }
        }
        self.store(event, encode(event)?)?;
        Ok(Applied::Appended)
    }

    /// Stores `event` (encoded as `value`) with its indexes in one transaction, then flushes.
    fn store(&self, event: &Event, value: Vec<u8>) -> Result<(), ConsultError> {
        use sled::Transactional;
        let _whole = self.gate.enter();
        let clinic = event.id.clinic.as_str().as_bytes().to_vec();
        (&self.events, &self.by_consultation, &self.owners)
            .transaction(|(events, by_consultation, owners)| {
                events.insert(event_key(&event.id), value.clone())?;
                by_consultation.insert(
                    consultation_key(&event.consultation, &event.id),
                    clinic.clone(),
                )?;
                owners.insert(event.consultation.as_str().as_bytes(), clinic.clone())?;
                Ok::<(), sled::transaction::ConflictableTransactionError<()>>(())
            })
            .map_err(|e| ConsultError::Index(format!("{e:?}")))?;
        self.db.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
