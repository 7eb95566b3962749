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

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use ring::hmac;

use crate::events::{EventError, EventStore};
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

impl From<EventError> for ConsultError {
    fn from(e: EventError) -> Self {
        ConsultError::Index(e.to_string())
    }
}

impl From<sled::Error> for ConsultError {
    fn from(e: sled::Error) -> Self {
        ConsultError::Index(e.to_string())
    }
}

/// One site's consultation log: the rules, over an event store.
pub struct ConsultLog {
    store: Arc<dyn EventStore>,
    /// Appends are checked against the state they extend: one at a time.
    append: Mutex<()>,
    /// The gateway's key for sealing its own events; `None` at a clinic.
    seal: Option<hmac::Key>,
    /// Whether the index was restored from a backup (the mark `restored`), once read: 0 not
    /// read yet, 1 no, 2 yes. Only a restore sets the mark, and a restore is made while no
    /// daemon runs on the index, so it cannot change under a running one; read once, it
    /// spares every append and every router pass a lookup per clinic.
    restored: AtomicU8,
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
        f.debug_struct("ConsultLog")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

fn encode(event: &Event) -> Result<Vec<u8>, ConsultError> {
    serde_json::to_vec(event).map_err(|e| ConsultError::Index(e.to_string()))
}

impl ConsultLog {
    /// The log over an event store.
    pub fn new(store: Arc<dyn EventStore>) -> Self {
        Self {
            store,
            append: Mutex::new(()),
            seal: None,
            restored: AtomicU8::new(0),
        }
    }

    /// The log in a daemon's sled database.
    pub fn open(db: &sled::Db) -> Result<Self, ConsultError> {
        Self::open_gated(db, WriteGate::default())
    }

    /// The log in a daemon's sled database, writing under `gate` (so a backup reads every
    /// event with its indexes).
    pub fn open_gated(db: &sled::Db, gate: WriteGate) -> Result<Self, ConsultError> {
        let store = crate::events::sled::SledEvents::open(db, gate)?;
        Ok(Self::new(Arc::new(store)))
    }

    /// Seals this site's own events with `key` (the gateway's), and takes back sealed events.
    pub fn sealed(mut self, key: &[u8]) -> Self {
        self.seal = Some(hmac::Key::new(hmac::HMAC_SHA256, key));
        self
    }

    /// Records that this index was just restored from a backup: every clinic is awaited until
    /// it reconnects (an earlier restore's marks are cleared).
    pub fn mark_restored(&self) -> Result<(), ConsultError> {
        self.store.clear_marks()?;
        self.store.set_mark(RESTORED)?;
        self.restored.store(2, Ordering::Relaxed);
        Ok(())
    }

    /// Whether the index was restored from a backup.
    fn restored(&self) -> Result<bool, ConsultError> {
        match self.restored.load(Ordering::Relaxed) {
            0 => {
                let restored = self.store.has_mark(RESTORED)?;
                // A restore marked meanwhile (by this handle) stands.
                let _ = self.restored.compare_exchange(
                    0,
                    if restored { 2 } else { 1 },
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
                Ok(restored)
            }
            known => Ok(known == 2),
        }
    }

    /// What this site still waits for from `clinic` after a restore (nothing at a clinic, or
    /// at a gateway never restored).
    pub fn awaiting(&self, clinic: &ClinicId) -> Result<Awaiting, ConsultError> {
        if !self.restored()? {
            return Ok(Awaiting::default());
        }
        Ok(Awaiting {
            events: !self.store.has_mark(&reconcile_key("events", clinic))?,
            objects: !self.store.has_mark(&reconcile_key("objects", clinic))?,
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
        if self.restored()? {
            self.store.set_mark(&reconcile_key(part, clinic))?;
        }
        Ok(())
    }

    /// The highest sequence number stored for `clinic`'s `side`: for this site's own side the
    /// last appended event, for the other side the replication cursor.
    pub fn cursor(&self, clinic: &ClinicId, side: Side) -> Result<u64, ConsultError> {
        Ok(self.store.cursor(clinic, side)?)
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
        // by the fuzz targets); the store answers it with nothing.
        Ok(self.store.events_after(clinic, side, after, limit)?)
    }

    /// The clinic a consultation belongs to.
    pub fn owner(&self, consultation: &ConsultationId) -> Result<Option<ClinicId>, ConsultError> {
        Ok(self.store.owner(consultation)?)
    }

    /// A consultation's events, both sides, in canonical order.
    pub fn timeline(&self, consultation: &ConsultationId) -> Result<Vec<Event>, ConsultError> {
        let (clinic, gateway) = self.store.events_of(consultation)?;
        Ok(canonical_order(&clinic, &gateway)
            .into_iter()
            .cloned()
            .collect())
    }

    /// A consultation as its events make it, with the events set aside; `None` if this site
    /// has never heard of it.
    pub fn get(&self, consultation: &ConsultationId) -> Result<Option<Folded>, ConsultError> {
        let events = self.timeline(consultation)?;
        Ok(Folded::fold(&events))
    }

    /// A consultation as it stands (its projection: no fold).
    pub fn state(
        &self,
        consultation: &ConsultationId,
    ) -> Result<Option<Consultation>, ConsultError> {
        Ok(self.store.projection(consultation)?)
    }

    /// Every consultation of `clinic` this site holds, as it stands, oldest first (ids sort
    /// by creation).
    pub fn list(&self, clinic: &ClinicId) -> Result<Vec<Consultation>, ConsultError> {
        Ok(self.store.projections(Some(clinic))?)
    }

    /// Every consultation of every clinic as it stands, by clinic and then by id (creation
    /// order), read from the projections.
    pub fn all(&self) -> Result<Vec<Consultation>, ConsultError> {
        Ok(self.store.projections(None)?)
    }

    /// The consultations still open (of one clinic, or all), as they stand, by clinic and id.
    pub fn open_cases(&self, clinic: Option<&ClinicId>) -> Result<Vec<Consultation>, ConsultError> {
        Ok(self.store.open_projections(clinic)?)
    }

    /// One patient's consultations at one clinic, as they stand, oldest first.
    pub fn patient_cases(
        &self,
        clinic: &ClinicId,
        patient_id: &str,
    ) -> Result<Vec<Consultation>, ConsultError> {
        Ok(self.store.patient_projections(clinic, patient_id)?)
    }

    /// Every clinic with consultations here.
    pub fn clinics(&self) -> Result<Vec<ClinicId>, ConsultError> {
        Ok(self.store.clinics()?)
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
        self.append_locked(clinic, side, consultation, actor, at_ms, kind)
    }

    /// Appends a created event with the clinic's next case number for the year of `at_ms`
    /// under `prefix` (`proto::find::CaseNumber`), counted from the clinic's cases under the
    /// same lock as the append, so concurrent creations never share a number. A created event
    /// that already carries a number, or any other event, is appended as it is.
    #[allow(clippy::too_many_arguments)]
    pub fn append_numbered(
        &self,
        clinic: &ClinicId,
        side: Side,
        consultation: &ConsultationId,
        actor: &str,
        at_ms: i64,
        mut kind: EventKind,
        prefix: &str,
    ) -> Result<Event, ConsultError> {
        let _one_at_a_time = self.append.lock().unwrap_or_else(|p| p.into_inner());
        if let EventKind::Created { number, .. } = &mut kind {
            if number.is_none() {
                let cases = self.list(clinic)?;
                let year = proto::find::year_of(at_ms);
                *number = Some(proto::find::CaseNumber::next(
                    prefix,
                    year,
                    cases.iter().filter_map(|c| c.number.as_deref()),
                ));
            }
        }
        self.append_locked(clinic, side, consultation, actor, at_ms, kind)
    }

    /// [`Self::append`] with the append lock held.
    fn append_locked(
        &self,
        clinic: &ClinicId,
        side: Side,
        consultation: &ConsultationId,
        actor: &str,
        at_ms: i64,
        kind: EventKind,
    ) -> Result<Event, ConsultError> {
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
        // The state with the event: this site's own event has seen every event stored, so it
        // folds last, onto the state as it stands.
        let projection = match self.owner(consultation)? {
            None if matches!(event.kind, EventKind::Created { .. }) => {
                // Checks the created event itself (its side, the required fields).
                Consultation::from_events([&event])?
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
                current
            }
        };
        self.store.store(&event, Some(&projection))?;
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
        self.store_replicated(event)?;
        Ok(Applied::Appended)
    }

    /// Stores a peer's `event` with the consultation's new projection: the fold of its
    /// timeline with the event (which may fold before events this site already holds), so the
    /// projection is always what [`Self::get`] would fold.
    fn store_replicated(&self, event: &Event) -> Result<(), ConsultError> {
        let (mut clinic, mut gateway) = self.store.events_of(&event.consultation)?;
        match event.id.side {
            Side::Clinic => clinic.push(event.clone()),
            Side::Gateway => gateway.push(event.clone()),
        }
        let timeline: Vec<Event> = canonical_order(&clinic, &gateway)
            .into_iter()
            .cloned()
            .collect();
        // A consultation whose first event is not its creation has no state to project: its
        // events are still kept (both sites hold the same log).
        let projection = Folded::fold(&timeline).map(|f| f.consultation);
        Ok(self.store.store(event, projection.as_ref())?)
    }
}

#[cfg(test)]
mod tests;
