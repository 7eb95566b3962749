//! Forwarding to the hospital PACS: every verified instance is queued durably for each
//! `[[forward]]` destination whose filter it passes, and sent there by C-STORE, several
//! associations at once, until the destination stores it. Nothing is dropped: a destination
//! that is down for hours gets everything when it is back.
//!
//! - The archive writes each verified instance to the forwarding inbox in the same write as
//!   its index entry. The fan-out moves inbox entries into the destinations' queues (one entry
//!   per destination and inbox id, so doing it twice after a crash changes nothing) and only
//!   then removes them from the inbox (`store::archive::forwarding::ForwardQueues`).
//! - A queue entry leaves the queue when the destination answered success or a warning; the
//!   removal is flushed once per association, so a crash can only make the gateway send an
//!   instance again (the PACS keeps one copy per SOP Instance UID).
//! - Each instance is offered in its own transfer syntax, and in explicit and implicit VR
//!   little endian. When the destination accepts only the latter, the instance is re-encoded
//!   (compressed pixel data decoded with dicom-pixeldata); when that cannot be done, the
//!   entry stays queued with the reason.
//! - While a destination fails, attempts back off exponentially up to `retry_max`; a refused
//!   instance backs off on its own without holding up the others.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dicom_core::Tag;
use proto::backoff::{Backoff, BackoffConfig};
use serde::{Deserialize, Serialize};
use store::archive::forwarding::{Counts, ForwardQueues, Queued};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::archive::{GatewayArchive, ToForward};
use crate::config::ForwardConfig;
use crate::metrics::{DestinationLabel, FailureLabel, Metrics};
use daemon::scu::{self, EXPLICIT_VR_LE, IMPLICIT_VR_LE};

/// Instances sent in one association.
const BATCH: usize = 32;
/// How long a DICOM exchange may stall before the association is given up.
const DICOM_TIMEOUT: Duration = Duration::from_secs(60);
/// How often an idle destination is checked with C-ECHO.
const ECHO_EVERY: Duration = Duration::from_secs(60);
/// How often the inbox is drained into the queues.
pub const FAN_OUT_EVERY: Duration = Duration::from_millis(300);

/// The last C-ECHO.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Echo {
    pub ok: bool,
    pub at_ms: i64,
    pub detail: String,
}

/// What the board and the API show of a destination.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DestinationStatus {
    pub name: String,
    /// `AE@host:port`.
    pub peer: String,
    pub queued: u64,
    pub oldest_pending_secs: Option<u64>,
    pub sent: u64,
    pub failures: u64,
    /// The last failure, with the DICOM status when there was one.
    pub last_error: Option<String>,
    pub echo: Option<Echo>,
}

#[derive(Debug, Default)]
struct Live {
    /// Entries in the destination's queue (counted once at start, then kept up to date).
    queued: u64,
    /// Queue entries being sent now.
    in_flight: HashSet<u64>,
    /// Queue entries refused lately, and when to try each again.
    retry_at: HashMap<u64, Instant>,
    last_error: Option<String>,
    echo: Option<Echo>,
}

pub struct Forwarder {
    archive: Arc<GatewayArchive>,
    /// The inbox and the queues, kept with the archive index.
    queues: Arc<dyn ForwardQueues>,
    destinations: Vec<ForwardConfig>,
    metrics: Arc<Metrics>,
    live: Mutex<HashMap<String, Live>>,
    /// One re-encoding at a time: it holds a whole decoded instance in memory.
    converting: Mutex<()>,
}

impl std::fmt::Debug for Forwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarder")
            .field("destinations", &self.destinations)
            .finish_non_exhaustive()
    }
}

fn passes(d: &ForwardConfig, item: &ToForward) -> bool {
    let modality_ok = d.modalities.as_ref().is_none_or(|wanted| {
        item.modality
            .as_deref()
            .is_some_and(|m| wanted.iter().any(|w| w.eq_ignore_ascii_case(m)))
    });
    let clinic_ok = d
        .clinics
        .as_ref()
        .is_none_or(|wanted| wanted.iter().any(|c| c == item.clinic.as_str()));
    modality_ok && clinic_ok
}

/// The outcome of one association.
enum Batch {
    /// Every instance got an answer (stored or refused).
    Done,
    /// The destination could not be reached or the association broke.
    Unreachable(String),
}

impl Forwarder {
    pub fn open(
        archive: Arc<GatewayArchive>,
        queues: Arc<dyn ForwardQueues>,
        destinations: Vec<ForwardConfig>,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Self> {
        let forwarder = Self {
            queues,
            archive,
            metrics,
            live: Mutex::default(),
            converting: Mutex::default(),
            destinations,
        };
        for d in &forwarder.destinations {
            let queued = forwarder.queues.len(&d.name)?;
            forwarder.live(&d.name, |live| live.queued = queued);
            forwarder.gauge(&d.name);
        }
        Ok(forwarder)
    }

    fn live<T>(&self, destination: &str, f: impl FnOnce(&mut Live) -> T) -> T {
        let mut all = self.live.lock().unwrap_or_else(|p| p.into_inner());
        f(all.entry(destination.to_owned()).or_default())
    }

    fn counts(&self, destination: &str) -> Counts {
        self.queues.counts(destination).unwrap_or_else(|e| {
            warn!(destination, error = %e, "cannot read the forwarding counts");
            Counts::default()
        })
    }

    /// Adds to the persistent counts, atomically (several associations count at once).
    fn count(&self, destination: &str, sent: u64, failures: u64) {
        if let Err(e) = self.queues.count(destination, sent, failures) {
            warn!(destination, error = %e, "cannot count a forwarding outcome");
        }
    }

    /// Removes a sent entry, once.
    fn remove(&self, destination: &str, id: u64) {
        if matches!(self.queues.done(destination, id), Ok(true)) {
            self.live(destination, |live| {
                live.queued = live.queued.saturating_sub(1)
            });
        }
    }

    fn gauge(&self, destination: &str) {
        let queued = self.live(destination, |live| live.queued);
        self.metrics
            .forward_queue_items
            .get_or_create(&DestinationLabel {
                destination: destination.to_owned(),
            })
            .set(queued as i64);
    }

    /// Moves the inbox into the destinations' queues; returns how many instances moved.
    pub fn fan_out(&self) -> anyhow::Result<usize> {
        let route = |item: &ToForward| {
            self.destinations
                .iter()
                .filter(|d| passes(d, item))
                .map(|d| d.name.clone())
                .collect()
        };
        let out = self.queues.fan_out(&route, daemon::now_ms() / 1000)?;
        if out.unreadable > 0 {
            warn!(
                entries = out.unreadable,
                "forwarding inbox entries are unreadable; they are left in the inbox"
            );
        }
        for (destination, added) in &out.added {
            self.live(destination, |live| live.queued += added);
        }
        if out.moved > 0 {
            for d in &self.destinations {
                self.gauge(&d.name);
            }
        }
        Ok(out.moved)
    }

    /// Takes up to [`BATCH`] entries of `destination` that are neither being sent nor waiting
    /// for their retry time, oldest first.
    fn claim(&self, destination: &str) -> Vec<(u64, Queued)> {
        let now = Instant::now();
        self.live(destination, |live| {
            live.retry_at.retain(|_, at| *at > now);
            let skip = |id| live.in_flight.contains(&id) || live.retry_at.contains_key(&id);
            let queued = match self.queues.queued(destination, BATCH, &skip) {
                Ok(queued) => queued,
                Err(e) => {
                    warn!(destination, error = %e, "cannot read the forwarding queue");
                    return Vec::new();
                }
            };
            let mut out = Vec::new();
            for (id, entry) in queued {
                match entry {
                    Ok(q) => {
                        live.in_flight.insert(id);
                        out.push((id, q));
                    }
                    Err(e) => {
                        warn!(destination, error = %e, "a forwarding queue entry is unreadable; it stays queued");
                        live.retry_at.insert(id, now + Duration::from_secs(3600));
                    }
                }
            }
            out
        })
    }

    fn release(&self, destination: &str, keys: &[u64]) {
        self.live(destination, |live| {
            for key in keys {
                live.in_flight.remove(key);
            }
        });
    }

    /// Counts a failed attempt (metric by status, and the board's count).
    fn count_failure(&self, d: &ForwardConfig, status: &str) {
        self.metrics
            .forward_failures
            .get_or_create(&FailureLabel {
                destination: d.name.clone(),
                status: status.to_owned(),
            })
            .inc();
        self.count(&d.name, 0, 1);
    }

    /// Records a refused or failed attempt at one instance: counted, kept with its reason,
    /// tried again after its backoff.
    fn failed(&self, d: &ForwardConfig, key: u64, queued: Queued, status: &str, why: String) {
        self.count_failure(d, status);
        self.retry_later(d, key, queued, status, why);
    }

    /// Keeps the reason with the entry and holds it back for its backoff (uncounted: the
    /// caller counts).
    fn retry_later(
        &self,
        d: &ForwardConfig,
        key: u64,
        mut queued: Queued,
        status: &str,
        why: String,
    ) {
        warn!(destination = %d.name, status, error = %why, "forwarding an instance failed; it stays queued");
        queued.attempts = queued.attempts.saturating_add(1);
        queued.last_error = Some(why.clone());
        // Only while it is still queued.
        if let Err(e) = self.queues.update(&d.name, key, &queued) {
            warn!(destination = %d.name, error = %e, "cannot record a forwarding failure");
        }
        let wait = backoff(d).ceiling(queued.attempts.saturating_sub(1));
        self.live(&d.name, |live| {
            live.retry_at.insert(key, Instant::now() + wait);
            live.last_error = Some(why);
        });
    }

    /// Sends `batch` in one association (blocking).
    fn send_batch(&self, d: &ForwardConfig, batch: Vec<(u64, Queued)>) -> Batch {
        // What each instance is on disk: its transfer syntax and where its data set starts.
        let mut ready = Vec::new();
        for (key, queued) in batch {
            let local = match self.archive.objects().local_file(&queued.item.object) {
                Ok(local) => local,
                Err(e) => {
                    self.failed(
                        d,
                        key,
                        queued,
                        "file",
                        format!("stored object unreadable: {e}"),
                    );
                    continue;
                }
            };
            match store::dicom::summarize(local.path()) {
                Ok(s) => ready.push((key, queued, local, s)),
                Err(e) => self.failed(
                    d,
                    key,
                    queued,
                    "file",
                    format!("stored file unreadable: {e}"),
                ),
            }
        }
        if ready.is_empty() {
            return Batch::Done;
        }
        // Each instance's own transfer syntax in a context of its own, so that the destination
        // can accept it as it is; and per SOP class the two little-endian encodings, which it
        // must accept when it accepts nothing else.
        let mut proposals: Vec<(String, Vec<String>)> = Vec::new();
        for (_, _, _, s) in &ready {
            let own = (s.sop_class_uid.clone(), vec![s.transfer_syntax.clone()]);
            let native = (
                s.sop_class_uid.clone(),
                vec![EXPLICIT_VR_LE.to_owned(), IMPLICIT_VR_LE.to_owned()],
            );
            for proposal in [own, native] {
                if !proposals.contains(&proposal) && proposals.len() < 120 {
                    proposals.push(proposal);
                }
            }
        }
        let mut association = match scu::open(&d.peer, &proposals, DICOM_TIMEOUT) {
            Ok(a) => a,
            Err(e) => return Batch::Unreachable(e.to_string()),
        };
        for (key, queued, local, summary) in ready {
            let path = local.path();
            let accepted = association.accepted(&summary.sop_class_uid);
            let as_is = accepted
                .iter()
                .find(|(_, ts)| *ts == summary.transfer_syntax)
                .map(|(id, _)| *id);
            let converted = accepted
                .iter()
                .find(|(_, ts)| ts == EXPLICIT_VR_LE || ts == IMPLICIT_VR_LE)
                .cloned();
            let patient = qualified_patient(d.patient_ids, &queued.item.clinic);
            let sent = match (as_is, converted) {
                (Some(context), _) => match data_set_for(path, &summary, patient.as_ref()) {
                    Ok(mut reader) => association.store(
                        context,
                        &summary.sop_class_uid,
                        &summary.sop_instance_uid,
                        &mut reader,
                    ),
                    Err(e) => {
                        self.failed(
                            d,
                            key,
                            queued,
                            "file",
                            format!("cannot read the stored file: {e}"),
                        );
                        continue;
                    }
                },
                (None, Some((context, ts))) => match self.reencode(path, &ts, patient.as_ref()) {
                    Ok(bytes) => association.store(
                        context,
                        &summary.sop_class_uid,
                        &summary.sop_instance_uid,
                        &mut bytes.as_slice(),
                    ),
                    Err(e) => {
                        let why = format!(
                            "the destination accepts this SOP class only as {ts}, and the instance (transfer syntax {}) cannot be converted: {e}",
                            summary.transfer_syntax
                        );
                        self.failed(d, key, queued, "convert", why);
                        continue;
                    }
                },
                (None, None) => {
                    let why = format!(
                        "the destination accepts no transfer syntax for SOP class {} (offered {} and explicit/implicit VR little endian); configure the PACS to accept it",
                        summary.sop_class_uid, summary.transfer_syntax
                    );
                    self.failed(d, key, queued, "not_accepted", why);
                    continue;
                }
            };
            let sent = match sent {
                // "Duplicate SOP instance" is harmless for a resend of the same bytes, but for
                // a corrected version it means the PACS kept the old one.
                // For an older version superseded since, it is as good as stored.
                Ok(0x0111)
                    if {
                        let versions = self
                            .archive
                            .versions(&queued.item.clinic, &summary.sop_instance_uid);
                        // Received in the same second as the newest counts as newest.
                        let newest = versions.iter().map(|v| v.received_at).max();
                        versions.len() > 1
                            && versions.iter().any(|v| {
                                v.object == queued.item.object && Some(v.received_at) == newest
                            })
                    } =>
                {
                    let why = "the PACS already holds another version of this instance (same SOP Instance UID) and kept it (0x0111): the corrected version is not stored there; remove the old one at the PACS or let it accept updates, and the gateway sends it again".to_owned();
                    self.failed(d, key, queued, "0x0111", why);
                    continue;
                }
                other => other,
            };
            match sent {
                Ok(status) if daemon::dimse::stored(status) => {
                    if status != daemon::dimse::STATUS_SUCCESS {
                        debug!(destination = %d.name, status = format!("0x{status:04X}"), "stored with a warning");
                    }
                    self.remove(&d.name, key);
                    self.count(&d.name, 1, 0);
                    self.metrics
                        .forward_sent
                        .get_or_create(&DestinationLabel {
                            destination: d.name.clone(),
                        })
                        .inc();
                    self.live(&d.name, |live| live.last_error = None);
                }
                Ok(status) => {
                    let why = format!(
                        "C-STORE answered 0x{status:04X} ({})",
                        daemon::dimse::status_text(status)
                    );
                    self.failed(d, key, queued, &format!("0x{status:04X}"), why);
                }
                Err(e) => {
                    // The association is gone: this instance is retried with the rest (the
                    // caller counts the failure once).
                    self.retry_later(d, key, queued, "association", e.to_string());
                    self.sync_queues(d);
                    return Batch::Unreachable(e.to_string());
                }
            }
        }
        association.release();
        self.sync_queues(d);
        Batch::Done
    }

    /// Makes the association's removals and failures durable (a crash before only sends an
    /// instance again).
    fn sync_queues(&self, d: &ForwardConfig) {
        if let Err(e) = self.queues.sync() {
            warn!(destination = %d.name, error = %e, "cannot sync the forwarding queue");
        }
    }

    fn echo(&self, d: &ForwardConfig) {
        let result = scu::echo(&d.peer, DICOM_TIMEOUT);
        let echo = Echo {
            ok: result.is_ok(),
            at_ms: daemon::now_ms(),
            detail: match &result {
                Ok(()) => "C-ECHO answered".into(),
                Err(e) => e.to_string(),
            },
        };
        match &result {
            Ok(()) => debug!(destination = %d.name, "C-ECHO answered"),
            Err(e) => warn!(destination = %d.name, error = %e, "C-ECHO failed"),
        }
        self.live(&d.name, |live| live.echo = Some(echo));
    }

    /// Every destination's queue, counts, last error and last C-ECHO.
    pub fn status(&self) -> Vec<DestinationStatus> {
        let now = daemon::now_ms() / 1000;
        self.destinations
            .iter()
            .map(|d| {
                // Keys grow with time: the first entry is the oldest.
                let oldest = self
                    .queues
                    .oldest(&d.name)
                    .ok()
                    .flatten()
                    .map(|q| (now - q.queued_at).max(0) as u64);
                let counts = self.counts(&d.name);
                let (queued, last_error, echo) = self.live(&d.name, |l| {
                    (l.queued, l.last_error.clone(), l.echo.clone())
                });
                DestinationStatus {
                    name: d.name.clone(),
                    peer: d.peer.to_string(),
                    queued,
                    oldest_pending_secs: oldest,
                    sent: counts.sent,
                    failures: counts.failures,
                    last_error,
                    echo,
                }
            })
            .collect()
    }

    /// [`reencode`], one at a time, as it holds a whole decoded instance in memory.
    fn reencode(
        &self,
        path: &std::path::Path,
        ts: &str,
        patient: Option<&QualifiedPatient>,
    ) -> Result<Vec<u8>, String> {
        let _one = self.converting.lock().unwrap_or_else(|p| p.into_inner());
        reencode(path, ts, patient)
    }
}

/// The data set of the file at `path` in transfer syntax `ts` (explicit or implicit VR little
/// endian), compressed pixel data decoded first. A file dicom-rs cannot read safely (see
/// `daemon::render::readable`) is refused before it is opened.
pub fn reencode(
    path: &std::path::Path,
    ts: &str,
    patient: Option<&QualifiedPatient>,
) -> Result<Vec<u8>, String> {
    // Forwarding converts whatever size it must: one instance at a time (`Forwarder::reencode`).
    let mut object =
        daemon::dicomweb::instance::transcoded(path, ts, u64::MAX).map_err(|e| e.to_string())?;
    if let Some(p) = patient {
        // The id as dicom-rs read it in the file's character set, prefixed when asked.
        let id = object
            .element(PATIENT_ID)
            .ok()
            .and_then(|e| e.to_str().ok())
            .map(|v| v.trim().to_owned())
            .unwrap_or_default();
        let id = match (&p.prefix, id.is_empty()) {
            (Some(prefix), false) => format!("{prefix}{id}"),
            _ => id,
        };
        for (tag, value) in [(PATIENT_ID, &id), (ISSUER_OF_PATIENT_ID, &p.issuer)] {
            object.put(dicom_object::mem::InMemElement::new(
                tag,
                dicom_core::VR::LO,
                dicom_core::PrimitiveValue::from(value.as_str()),
            ));
        }
    }
    let mut out = Vec::new();
    object.write_dataset(&mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

const PATIENT_ID: Tag = Tag(0x0010, 0x0020);
const ISSUER_OF_PATIENT_ID: Tag = Tag(0x0010, 0x0021);

/// What a destination receives to tell the clinics' patients apart: Issuer of Patient ID,
/// and with `PatientIds::Prefix` a prefix put before the stored id's own bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QualifiedPatient {
    pub prefix: Option<String>,
    pub issuer: String,
}

/// What a destination keeping patients apart receives for `clinic`; `None` when it gets the
/// ids as stored.
pub fn qualified_patient(
    mode: crate::config::PatientIds,
    clinic: &proto::ClinicId,
) -> Option<QualifiedPatient> {
    use crate::config::PatientIds;
    let issuer = clinic.as_str().to_owned();
    match mode {
        PatientIds::AsIs => None,
        PatientIds::Issuer => Some(QualifiedPatient {
            prefix: None,
            issuer,
        }),
        PatientIds::Prefix => Some(QualifiedPatient {
            prefix: Some(format!("{issuer}-")),
            issuer,
        }),
    }
}

/// One LO element in the data set's encoding, its value padded to even length.
fn lo_element(tag: Tag, value: &[u8], ts: &str) -> Result<Vec<u8>, String> {
    let mut v = value.to_vec();
    if v.len() > 64 {
        return Err(format!(
            "the qualified patient id is {} bytes, longer than the 64 DICOM allows; shorten the clinic id or use patient_ids = \"issuer\"",
            v.len()
        ));
    }
    if v.len() % 2 == 1 {
        v.push(b' ');
    }
    let mut out = Vec::with_capacity(12 + v.len());
    match ts {
        IMPLICIT_VR_LE => {
            out.extend(tag.group().to_le_bytes());
            out.extend(tag.element().to_le_bytes());
            out.extend((v.len() as u32).to_le_bytes());
        }
        EXPLICIT_VR_BE => {
            out.extend(tag.group().to_be_bytes());
            out.extend(tag.element().to_be_bytes());
            out.extend(b"LO");
            out.extend((v.len() as u16).to_be_bytes());
        }
        DEFLATED => {
            return Err("a deflated data set cannot have its patient id qualified on the way; set patient_ids = \"as_is\" for this destination or store it uncompressed".into())
        }
        _ => {
            out.extend(tag.group().to_le_bytes());
            out.extend(tag.element().to_le_bytes());
            out.extend(b"LO");
            out.extend((v.len() as u16).to_le_bytes());
        }
    }
    out.extend(v);
    Ok(out)
}

const EXPLICIT_VR_BE: &str = "1.2.840.10008.1.2.2";
const DEFLATED: &str = "1.2.840.10008.1.2.1.99";

/// The data set of the stored file at `path` as a destination receives it: as stored, or
/// with its Patient ID and Issuer of Patient ID replaced, streamed from the file around the
/// two new elements (the file itself is never changed).
pub fn data_set_for(
    path: &std::path::Path,
    summary: &store::dicom::InstanceSummary,
    patient: Option<&QualifiedPatient>,
) -> std::io::Result<Box<dyn std::io::Read + Send>> {
    use std::io::{Read, Seek, SeekFrom};
    let Some(p) = patient else {
        return Ok(Box::new(store::dicom::data_set(path, summary)?));
    };
    let invalid = |e: String| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
    let layout = store::structure::layout(path, &[]).map_err(invalid)?;
    let tags: Vec<(u16, u16)> = layout.top_level.iter().map(|(t, _)| *t).collect();
    let in_order = tags.windows(2).all(|w| w[0] < w[1]);
    let group_length = tags.iter().any(|(g, e)| *e == 0 && *g == 0x0010);
    if !in_order || group_length {
        // Elements out of order, or a group length that would no longer hold: rewrite the
        // whole data set instead of cutting it.
        return reencode(path, &summary.transfer_syntax, Some(p))
            .map(|bytes| Box::new(std::io::Cursor::new(bytes)) as Box<dyn Read + Send>)
            .map_err(invalid);
    }
    let at = |from: (u16, u16)| {
        layout
            .top_level
            .iter()
            .find(|(tag, _)| *tag >= from)
            .map_or(layout.len, |(_, start)| *start)
    };
    let (cut_start, cut_end) = (at((0x0010, 0x0020)), at((0x0010, 0x0022)));
    // The stored id's own bytes (in the file's character set), without its padding: every
    // encoding's element header here is 8 bytes before an LO value.
    let id_end = at((0x0010, 0x0021));
    let mut id = Vec::new();
    if tags.contains(&(0x0010, 0x0020)) {
        let mut file = std::fs::File::open(path)?;
        file.seek(SeekFrom::Start(cut_start + 8))?;
        file.take(id_end.saturating_sub(cut_start + 8))
            .read_to_end(&mut id)?;
        while id.last().is_some_and(|b| *b == b' ' || *b == 0) {
            id.pop();
        }
    }
    let qualified = match (&p.prefix, id.is_empty()) {
        (Some(prefix), false) => [prefix.as_bytes(), &id].concat(),
        _ => id,
    };
    let mut middle =
        lo_element(PATIENT_ID, &qualified, &summary.transfer_syntax).map_err(invalid)?;
    middle.extend(
        lo_element(
            ISSUER_OF_PATIENT_ID,
            p.issuer.as_bytes(),
            &summary.transfer_syntax,
        )
        .map_err(invalid)?,
    );
    let mut head = std::fs::File::open(path)?;
    head.seek(SeekFrom::Start(summary.dataset_offset))?;
    let mut tail = std::fs::File::open(path)?;
    tail.seek(SeekFrom::Start(cut_end))?;
    let head = std::io::BufReader::new(head).take(cut_start.saturating_sub(summary.dataset_offset));
    Ok(Box::new(
        head.chain(std::io::Cursor::new(middle))
            .chain(std::io::BufReader::new(tail)),
    ))
}

/// A destination's retries: from 1 s, doubling, up to its `retry_max` (the whole destination
/// while it is unreachable, and each refused instance on its own).
fn backoff(d: &ForwardConfig) -> BackoffConfig {
    BackoffConfig {
        initial: Duration::from_secs(1),
        max: d.retry_max,
    }
}

/// Runs the fan-out (while this node holds its `lease`) and, per destination, its
/// associations, until `shutdown`.
pub async fn run(
    forwarder: Arc<Forwarder>,
    lease: crate::lease::Lease,
    shutdown: CancellationToken,
) {
    let mut tasks = tokio::task::JoinSet::new();
    {
        let forwarder = forwarder.clone();
        let shutdown = shutdown.clone();
        tasks.spawn(async move {
            loop {
                let f = forwarder.clone();
                if lease.mine() {
                    match tokio::task::spawn_blocking(move || f.fan_out()).await {
                        Ok(Err(e)) => warn!(error = %e, "forwarding inbox could not be drained"),
                        Err(e) => warn!(error = %e, "forwarding fan-out panicked"),
                        Ok(Ok(_)) => {}
                    }
                }
                tokio::select! {
                    () = shutdown.cancelled() => return lease.release(),
                    () = tokio::time::sleep(FAN_OUT_EVERY) => {}
                }
            }
        });
    }
    for d in forwarder.destinations.clone() {
        info!(destination = %d.name, peer = %d.peer, associations = d.associations, "forwarding to PACS");
        for slot in 0..d.associations {
            tasks.spawn(sender(forwarder.clone(), d.clone(), slot, shutdown.clone()));
        }
    }
    while tasks.join_next().await.is_some() {}
}

/// Runs `work` on the blocking pool; `None` when a stop comes first. A stop never waits for a
/// PACS that does not answer: nothing unanswered has left the queue.
async fn until_stopped<T: Send + 'static>(
    shutdown: &CancellationToken,
    work: impl FnOnce() -> T + Send + 'static,
) -> Option<Result<T, tokio::task::JoinError>> {
    let job = tokio::task::spawn_blocking(work);
    tokio::select! {
        outcome = job => Some(outcome),
        () = shutdown.cancelled() => None,
    }
}

/// One association slot of a destination.
async fn sender(
    forwarder: Arc<Forwarder>,
    d: ForwardConfig,
    slot: usize,
    shutdown: CancellationToken,
) {
    let mut backoff = Backoff::new(backoff(&d), slot as u64 + daemon::now_ms() as u64);
    if slot == 0 {
        // The board shows from the start whether the destination answers.
        let (f, dd) = (forwarder.clone(), d.clone());
        if until_stopped(&shutdown, move || f.echo(&dd))
            .await
            .is_none()
        {
            return;
        }
    }
    let mut last_echo = Instant::now();
    loop {
        let (f, name) = (forwarder.clone(), d.name.clone());
        let claimed = tokio::task::spawn_blocking(move || f.claim(&name))
            .await
            .unwrap_or_default();
        let wait = if claimed.is_empty() {
            // Idle: the first slot keeps the board's C-ECHO fresh.
            if slot == 0 && last_echo.elapsed() >= ECHO_EVERY {
                last_echo = Instant::now();
                let (f, dd) = (forwarder.clone(), d.clone());
                if until_stopped(&shutdown, move || f.echo(&dd))
                    .await
                    .is_none()
                {
                    return;
                }
            }
            Duration::from_millis(500)
        } else {
            let keys: Vec<u64> = claimed.iter().map(|(k, _)| *k).collect();
            let (f, dd) = (forwarder.clone(), d.clone());
            let Some(outcome) = until_stopped(&shutdown, move || f.send_batch(&dd, claimed)).await
            else {
                return;
            };
            forwarder.release(&d.name, &keys);
            forwarder.gauge(&d.name);
            match outcome {
                Ok(Batch::Done) => {
                    backoff.reset();
                    Duration::ZERO
                }
                Ok(Batch::Unreachable(why)) => {
                    warn!(destination = %d.name, error = %why, "PACS destination unreachable; retrying");
                    forwarder
                        .metrics
                        .forward_failures
                        .get_or_create(&FailureLabel {
                            destination: d.name.clone(),
                            status: "association".into(),
                        })
                        .inc();
                    forwarder.live(&d.name, |live| live.last_error = Some(why));
                    backoff.next_delay()
                }
                Err(e) => {
                    warn!(destination = %d.name, error = %e, "forwarding task panicked");
                    backoff.next_delay()
                }
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
    }
}
