//! Store-and-forward of content-addressed objects over the link (`docs/protocol.md`, "Object
//! streams"): which object to send next, from which offset, and what a receipt means.
//!
//! [`Uploader`] runs at the clinic: it orders the queue (emergency before urgent before
//! routine, oldest first), keeps a bounded number of objects in flight, pauses a lower-priority
//! transfer when a higher one waits, and retries every failure with backoff, forever.
//! [`Receiver`] runs at the gateway for one object: it answers an offer with the durable
//! offset to resume from and says when to commit (fsync) what has arrived.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::backoff::{Backoff, BackoffConfig};

/// SHA-256 of an object's bytes, as 64 lowercase hex digits: its name on both sides.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ObjectId(String);

impl ObjectId {
    pub fn from_digest(digest: &[u8; 32]) -> Self {
        Self(digest.iter().map(|b| format!("{b:02x}")).collect())
    }

    pub fn parse(s: &str) -> Option<Self> {
        (s.len() == 64
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
        .then(|| Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ObjectId {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::parse(&s)
            .ok_or_else(|| format!("'{s}' is not a SHA-256 object id (64 lowercase hex digits)"))
    }
}

impl From<ObjectId> for String {
    fn from(id: ObjectId) -> String {
        id.0
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectId({}…)", &self.0[..12.min(self.0.len())])
    }
}

/// Urgency of what an object belongs to; higher goes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    Routine,
    Urgent,
    Emergency,
}

impl Priority {
    pub const ALL: [Priority; 3] = [Priority::Emergency, Priority::Urgent, Priority::Routine];

    pub fn label(self) -> &'static str {
        match self {
            Priority::Routine => "routine",
            Priority::Urgent => "urgent",
            Priority::Emergency => "emergency",
        }
    }
}

/// One object waiting to be delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedObject {
    pub id: ObjectId,
    pub size: u64,
    pub priority: Priority,
    /// Enqueue order (a durable sequence number): older first within a priority.
    pub seq: u64,
    /// Sent ahead of every object that is not: an urgent case's preview, which a specialist
    /// can look at while the full study is still on its way.
    pub ahead: bool,
}

impl QueuedObject {
    fn rank(&self) -> Rank {
        (
            std::cmp::Reverse((self.ahead, self.priority)),
            self.seq,
            self.id.clone(),
        )
    }
}

/// Queue order: objects sent ahead first, then by priority, then oldest first.
type Rank = (std::cmp::Reverse<(bool, Priority)>, u64, ObjectId);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploaderConfig {
    /// Objects whose bytes are being sent at once (each on its own stream).
    pub max_in_flight: usize,
    /// Objects wholly sent and waiting for their receipt, beyond those being sent. They hold
    /// no sending slot: the gateway's fsyncs for one object overlap the next one's bytes.
    pub max_awaiting_receipt: usize,
    /// Delay before an object that failed is offered again.
    pub retry: BackoffConfig,
}

impl Default for UploaderConfig {
    fn default() -> Self {
        Self {
            max_in_flight: 4,
            max_awaiting_receipt: 32,
            retry: BackoffConfig {
                initial: Duration::from_secs(1),
                max: Duration::from_secs(60),
            },
        }
    }
}

/// What the clinic's I/O layer must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadAction {
    /// Open a stream and send `offer` for this object.
    Offer { id: ObjectId, size: u64 },
    /// The gateway asked for the bytes from `offset` to the end: send them, then finish.
    SendFrom { id: ObjectId, offset: u64 },
    /// Stop sending this object (a higher priority needs the slot); it stays queued.
    Pause { id: ObjectId },
}

/// What happened to an object, for the store, metrics and status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadEvent {
    /// The gateway durably stored it: mark it delivered.
    Delivered { id: ObjectId },
    /// Bytes that had already been sent once are being sent again (after an outage).
    Resent { id: ObjectId, bytes: u64 },
    /// The object failed; it is retried after `retry_in`.
    Failed {
        id: ObjectId,
        reason: String,
        retry_in: Duration,
    },
}

#[derive(Debug)]
struct Flight {
    size: u64,
    priority: Priority,
    ahead: bool,
    seq: u64,
    /// Bytes sent in this attempt, counted from offset 0.
    sent_upto: u64,
}

impl Flight {
    /// Still sending bytes (not just waiting for the receipt).
    fn sending(&self) -> bool {
        self.sent_upto < self.size
    }
}

#[derive(Debug)]
struct Waiting {
    backoff: Backoff,
    /// Not offered again before this instant.
    not_before: Option<Instant>,
    /// Highest offset ever sent, to count resent bytes.
    max_sent: u64,
    last_failure: Option<String>,
}

/// The clinic side of store-and-forward.
#[derive(Debug)]
pub struct Uploader {
    config: UploaderConfig,
    link_up: bool,
    /// Ready or backing-off objects, in [`Rank`] order.
    order: BTreeSet<Rank>,
    queued: HashMap<ObjectId, QueuedObject>,
    waiting: HashMap<ObjectId, Waiting>,
    in_flight: HashMap<ObjectId, Flight>,
    /// Queued objects still backing off after a failure, by the instant they become ready.
    backing_off: BTreeSet<(Instant, ObjectId)>,
    actions: VecDeque<UploadAction>,
    events: VecDeque<UploadEvent>,
    seed: u64,
}

impl Uploader {
    pub fn new(config: UploaderConfig, seed: u64) -> Self {
        Self {
            config,
            link_up: false,
            order: BTreeSet::new(),
            queued: HashMap::new(),
            waiting: HashMap::new(),
            in_flight: HashMap::new(),
            backing_off: BTreeSet::new(),
            actions: VecDeque::new(),
            events: VecDeque::new(),
            seed,
        }
    }

    /// Adds an object to the queue (again, after a restart: the store holds the queue).
    pub fn enqueue(&mut self, now: Instant, object: QueuedObject) {
        if self.queued.contains_key(&object.id) || self.in_flight.contains_key(&object.id) {
            return;
        }
        self.order.insert(object.rank());
        self.seed = self.seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        self.waiting
            .entry(object.id.clone())
            .or_insert_with(|| Waiting {
                backoff: Backoff::new(self.config.retry, self.seed),
                not_before: None,
                max_sent: 0,
                last_failure: None,
            });
        self.queued.insert(object.id.clone(), object);
        self.schedule(now);
    }

    /// Raises an object's priority (a consultation attached to it became more urgent).
    pub fn reprioritize(&mut self, now: Instant, id: &ObjectId, priority: Priority) {
        if let Some(q) = self.queued.get_mut(id) {
            if priority > q.priority {
                self.order.remove(&q.rank());
                q.priority = priority;
                self.order.insert(q.rank());
            }
        } else if let Some(f) = self.in_flight.get_mut(id) {
            f.priority = f.priority.max(priority);
        }
        self.schedule(now);
    }

    pub fn handle_link_up(&mut self, now: Instant) {
        self.link_up = true;
        self.schedule(now);
    }

    /// Every in-flight object goes back to the queue, ready at once on the next link.
    pub fn handle_link_down(&mut self, _now: Instant) {
        self.link_up = false;
        let ids: Vec<_> = self.in_flight.keys().cloned().collect();
        for id in ids {
            self.requeue(&id);
        }
    }

    /// The gateway answered the offer: resume from `offset`.
    pub fn handle_accept(&mut self, id: &ObjectId, offset: u64) {
        let Some(flight) = self.in_flight.get_mut(id) else {
            return;
        };
        let offset = offset.min(flight.size);
        let max_sent = self.waiting.get(id).map_or(0, |w| w.max_sent);
        if offset < max_sent {
            self.events.push_back(UploadEvent::Resent {
                id: id.clone(),
                bytes: max_sent - offset,
            });
        }
        flight.sent_upto = offset;
        self.actions.push_back(UploadAction::SendFrom {
            id: id.clone(),
            offset,
        });
    }

    /// Bytes of the object handed to the transport so far (from offset 0). An object wholly
    /// sent frees its sending slot while it waits for the receipt.
    pub fn handle_sent(&mut self, now: Instant, id: &ObjectId, upto: u64) {
        let mut done_sending = false;
        if let Some(f) = self.in_flight.get_mut(id) {
            let was_sending = f.sending();
            f.sent_upto = f.sent_upto.max(upto);
            done_sending = was_sending && !f.sending();
        }
        if let Some(w) = self.waiting.get_mut(id) {
            w.max_sent = w.max_sent.max(upto);
        }
        if done_sending {
            self.schedule(now);
        }
    }

    /// The gateway's durable receipt: the object is delivered, forever.
    pub fn handle_receipt(&mut self, now: Instant, id: &ObjectId) {
        if self.in_flight.remove(id).is_some() || self.queued.contains_key(id) {
            self.forget(id);
            self.events
                .push_back(UploadEvent::Delivered { id: id.clone() });
        }
        self.schedule(now);
    }

    /// The attempt failed (stream reset, hash mismatch, local read error): retry later.
    pub fn handle_failed(&mut self, now: Instant, id: &ObjectId, reason: String) {
        if !self.in_flight.contains_key(id) {
            return;
        }
        self.requeue(id);
        if let Some(w) = self.waiting.get_mut(id) {
            let retry_in = w.backoff.next_delay();
            w.not_before = Some(now + retry_in);
            self.backing_off.insert((now + retry_in, id.clone()));
            w.last_failure = Some(reason.clone());
            self.events.push_back(UploadEvent::Failed {
                id: id.clone(),
                reason,
                retry_in,
            });
        }
        self.schedule(now);
    }

    /// The earliest instant a backing-off object becomes ready. Never an instant already
    /// handled: an object whose backoff has run out waits for a free slot, not for a timer.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if !self.link_up {
            return None;
        }
        self.backing_off.first().map(|(t, _)| *t)
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.schedule(now);
    }

    pub fn poll_action(&mut self) -> Option<UploadAction> {
        self.actions.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<UploadEvent> {
        self.events.pop_front()
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// In-flight objects still sending bytes.
    pub fn sending(&self) -> usize {
        self.in_flight.values().filter(|f| f.sending()).count()
    }

    pub fn is_in_flight(&self, id: &ObjectId) -> bool {
        self.in_flight.contains_key(id)
    }

    /// Bytes sent of an in-flight object, for progress displays.
    pub fn progress(&self, id: &ObjectId) -> Option<(u64, u64)> {
        self.in_flight.get(id).map(|f| (f.sent_upto, f.size))
    }

    pub fn last_failure(&self, id: &ObjectId) -> Option<&str> {
        self.waiting.get(id)?.last_failure.as_deref()
    }

    pub fn queued_len(&self) -> usize {
        self.queued.len()
    }

    fn forget(&mut self, id: &ObjectId) {
        if let Some(q) = self.queued.remove(id) {
            self.order.remove(&q.rank());
        }
        if let Some(t) = self.waiting.remove(id).and_then(|w| w.not_before) {
            self.backing_off.remove(&(t, id.clone()));
        }
    }

    fn requeue(&mut self, id: &ObjectId) {
        if let Some(f) = self.in_flight.remove(id) {
            let q = QueuedObject {
                id: id.clone(),
                size: f.size,
                priority: f.priority,
                seq: f.seq,
                ahead: f.ahead,
            };
            self.order.insert(q.rank());
            self.queued.insert(id.clone(), q);
        }
    }

    /// Fills free slots with the best ready objects, pausing lower-priority transfers when a
    /// higher-priority object is waiting and no slot is free.
    fn schedule(&mut self, now: Instant) {
        if !self.link_up {
            return;
        }
        while let Some((t, id)) = self.backing_off.first().cloned() {
            if t > now {
                break;
            }
            self.backing_off.pop_first();
            if let Some(w) = self.waiting.get_mut(&id) {
                w.not_before = None;
            }
        }
        loop {
            let ready = self.order.iter().find(|(_, _, id)| {
                self.waiting
                    .get(id)
                    .and_then(|w| w.not_before)
                    .is_none_or(|t| t <= now)
            });
            let Some(rank) = ready.cloned() else {
                return;
            };
            let (std::cmp::Reverse(class), _, id) = rank.clone();
            if self.in_flight.len() >= self.config.max_in_flight + self.config.max_awaiting_receipt
            {
                return;
            }
            if self.sending() >= self.config.max_in_flight {
                // The lowest-ranked, newest transfer still sending yields if it ranks below
                // the candidate.
                let victim = self
                    .in_flight
                    .iter()
                    .filter(|(_, f)| f.sending() && (f.ahead, f.priority) < class)
                    .min_by_key(|(_, f)| (f.ahead, f.priority, std::cmp::Reverse(f.seq)))
                    .map(|(id, _)| id.clone());
                match victim {
                    Some(v) => {
                        self.requeue(&v);
                        self.actions.push_back(UploadAction::Pause { id: v });
                    }
                    None => return,
                }
            }
            self.order.remove(&rank);
            let Some(q) = self.queued.remove(&id) else {
                continue;
            };
            self.in_flight.insert(
                id.clone(),
                Flight {
                    size: q.size,
                    priority: q.priority,
                    ahead: q.ahead,
                    seq: q.seq,
                    sent_upto: 0,
                },
            );
            self.actions
                .push_back(UploadAction::Offer { id, size: q.size });
        }
    }
}

/// The gateway side of one object transfer: where to resume, and when to commit.
#[derive(Debug)]
pub struct Receiver {
    size: u64,
    chunk: u64,
    committed: u64,
    received: u64,
}

/// What the gateway's I/O layer must do with the bytes it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiveStep {
    /// Keep reading.
    Continue,
    /// Fsync the partial file and record `upto` as its durable offset.
    Commit { upto: u64 },
    /// All bytes are here and durable: verify the SHA-256, then store and send the receipt.
    Verify,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiveError {
    #[error("the clinic sent {got} bytes past the declared size of {size}")]
    TooLong { size: u64, got: u64 },
    #[error("the stream ended at byte {got} of {size}; the transfer resumes from the last commit")]
    Truncated { size: u64, got: u64 },
}

/// Default commit interval: at most this many bytes are sent twice after an outage.
pub const DEFAULT_CHUNK: u64 = 1024 * 1024;

pub mod block;

/// Why the gateway ended an object stream early (its QUIC reset and stop-sending code). The
/// agent sends the object again later either way; the code only says why, for its status.
pub mod stream_code {
    /// Another stream is already receiving this object.
    pub const BUSY: u32 = 1;
    /// The gateway could not write the object to its store (for example, its disk is full).
    pub const STORAGE_FAILED: u32 = 2;

    /// What the agent shows for a stream the gateway ended with `code`.
    pub fn reason(code: u64) -> Option<&'static str> {
        match code {
            c if c == u64::from(BUSY) => {
                Some("the gateway is receiving this object on another stream")
            }
            c if c == u64::from(STORAGE_FAILED) => {
                Some("the gateway could not store it (its disk may be full)")
            }
            _ => None,
        }
    }
}

impl Receiver {
    /// `committed` is the durable offset of an existing partial (0 for a new object).
    pub fn new(size: u64, committed: u64, chunk: u64) -> Self {
        let committed = committed.min(size);
        Self {
            size,
            chunk: chunk.max(1),
            committed,
            received: committed,
        }
    }

    /// Most bytes to read before the next commit point, so that never more than one chunk is
    /// held uncommitted (and so sent twice after an outage).
    pub fn want(&self) -> u64 {
        (self.size - self.received).min(self.committed + self.chunk - self.received)
    }

    /// The offset the clinic must resume from.
    pub fn resume_offset(&self) -> u64 {
        self.committed
    }

    /// `len` more bytes were written to the partial file.
    pub fn handle_data(&mut self, len: u64) -> Result<ReceiveStep, ReceiveError> {
        self.received += len;
        if self.received > self.size {
            return Err(ReceiveError::TooLong {
                size: self.size,
                got: self.received,
            });
        }
        if self.received == self.size || self.received - self.committed >= self.chunk {
            self.committed = self.received;
            return Ok(ReceiveStep::Commit {
                upto: self.committed,
            });
        }
        Ok(ReceiveStep::Continue)
    }

    /// The clinic finished the stream.
    pub fn handle_end(&mut self) -> Result<ReceiveStep, ReceiveError> {
        if self.received < self.size {
            return Err(ReceiveError::Truncated {
                size: self.size,
                got: self.received,
            });
        }
        Ok(ReceiveStep::Verify)
    }

    /// The stream broke: everything already written may be committed, so that a link drop
    /// costs nothing already received. `None` when nothing new is held.
    pub fn handle_abort(&mut self) -> Option<ReceiveStep> {
        (self.received > self.committed).then(|| {
            self.committed = self.received;
            ReceiveStep::Commit {
                upto: self.committed,
            }
        })
    }

    pub fn committed(&self) -> u64 {
        self.committed
    }
}

#[cfg(test)]
mod tests;
