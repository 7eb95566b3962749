//! The clinic's half of store-and-forward over the link: drives a [`proto::sync::Uploader`]
//! with the outbox from the [`AgentStore`], runs one task per object in flight (each on its own
//! QUIC stream, `docs/protocol.md` "Object streams"), and marks an object delivered only after
//! the gateway's durable receipt.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use daemon::frames::{ControlCodec, ReadFrameError};
use futures_util::StreamExt;
use proto::frame::StudyHint;
use proto::sync::block::{self, Encoding};
use proto::sync::{
    ObjectId, Priority, QueuedObject, UploadAction, UploadEvent, Uploader, UploaderConfig,
};
use proto::ControlFrame;
use quinn::Connection;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::codec::FramedRead;
use tracing::{debug, info, warn};

use crate::archive::AgentStore;
use crate::config::RoutineLimit;
use crate::metrics::Metrics;

/// Bytes read from disk and written to the stream at a time: one block when compressed.
const SEND_BUF: usize = 256 * 1024;
const _: () = assert!(SEND_BUF as u32 == block::MAX_BLOCK);

/// Paces object bytes to a configured rate, shared by every transfer (a token bucket holding
/// at most a tenth of a second of bytes, or one piece).
///
/// Each caller reserves its bytes when it asks, running the bucket into debt, and sleeps until
/// the debt is paid: transfers are served in the order they ask, so one that lost a race for
/// the tokens never waits while the others go on.
#[derive(Debug)]
pub struct Pacer {
    rate: u64,
    /// When the bucket was last updated, and its tokens then (negative: bytes reserved
    /// ahead of the rate).
    state: Mutex<(Instant, f64)>,
}

impl Pacer {
    pub fn new(bytes_per_sec: u64) -> Self {
        Self {
            rate: bytes_per_sec.max(1),
            state: Mutex::new((Instant::now(), 0.0)),
        }
    }

    /// Waits until `n` more bytes may be sent.
    pub async fn take(&self, n: usize) {
        let wait = {
            let mut guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let burst = (self.rate as f64 / 10.0).max(n as f64);
            let tokens = (guard.1 + now.duration_since(guard.0).as_secs_f64() * self.rate as f64)
                .min(burst)
                - n as f64;
            *guard = (now, tokens);
            Duration::from_secs_f64((-tokens).max(0.0) / self.rate as f64)
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

/// The upload caps a transfer honours: the clinic's whole upload limit, and the lower limit for
/// routine objects outside the off-hours window (`[link] routine_limit_kib_per_sec`).
#[derive(Debug, Default)]
pub struct Limits {
    all: Option<Pacer>,
    routine: Option<(Pacer, RoutineLimit)>,
}

impl Limits {
    pub fn new(upload_limit: Option<u64>, routine: Option<RoutineLimit>) -> Self {
        Self {
            all: upload_limit.map(Pacer::new),
            routine: routine.map(|r| (Pacer::new(r.bytes_per_sec), r)),
        }
    }

    /// Waits until `n` more link bytes of a transfer may be sent; `routine` for a routine
    /// object.
    async fn take(&self, routine: bool, n: usize) {
        if let (true, Some((pacer, limit))) = (routine, &self.routine) {
            if routine_capped(limit, daemon::now_ms() / 1000) {
                pacer.take(n).await;
            }
        }
        if let Some(pacer) = &self.all {
            pacer.take(n).await;
        }
    }
}

/// Whether routine objects are held to `limit` at `unix_secs`: outside its full-rate hours
/// (always, when it has none).
pub fn routine_capped(limit: &RoutineLimit, unix_secs: i64) -> bool {
    limit.full_rate.is_none_or(|window| {
        !window.contains(proto::hours::local_minute(unix_secs, limit.utc_offset_secs))
    })
}

/// The routine limit in a sentence, as it stands at `unix_secs`, for the status report.
pub fn describe_routine_limit(limit: &RoutineLimit, unix_secs: i64) -> String {
    let rate = format!("{}/s", daemon::human_bytes(limit.bytes_per_sec));
    let Some(window) = limit.full_rate else {
        return format!(
            "routine objects at most {rate} all day; emergency and urgent ones at full rate"
        );
    };
    let hours = format!(
        "{window} (UTC{})",
        proto::hours::format_offset(limit.utc_offset_secs)
    );
    if routine_capped(limit, unix_secs) {
        format!("routine objects at most {rate} now, at full rate {hours}; emergency and urgent ones always at full rate")
    } else {
        format!("routine objects at full rate now ({hours}), at most {rate} outside those hours")
    }
}

/// Progress of the objects in flight, for status and metrics.
#[derive(Debug, Clone, Default)]
pub struct SyncStatus {
    /// Object → (bytes sent, size).
    pub sending: HashMap<ObjectId, (u64, u64)>,
    /// Object → why its last attempt failed (cleared on delivery).
    pub last_failure: HashMap<ObjectId, String>,
    /// Object bytes sent lately: the upload rate that estimates of time left use.
    pub throughput: Throughput,
    /// The routine limit in force, if any.
    pub routine_limit: Option<RoutineLimit>,
}

/// Object bytes sent over the last minute, in buckets of a second.
#[derive(Debug, Clone, Default)]
pub struct Throughput {
    buckets: VecDeque<(Instant, u64)>,
}

impl Throughput {
    pub const WINDOW: Duration = Duration::from_secs(60);
    /// The shortest span a rate is computed over (a first burst is not a rate).
    const MIN_SPAN: Duration = Duration::from_secs(5);
    /// Nothing sent for this long: the next send starts a new measurement.
    const IDLE: Duration = Duration::from_secs(10);

    pub fn add(&mut self, now: Instant, bytes: u64) {
        // After a pause the link's rate is measured afresh: the idle time is not a slow link.
        if self
            .buckets
            .back()
            .is_some_and(|(t, _)| now.saturating_duration_since(*t) >= Self::IDLE)
        {
            self.buckets.clear();
        }
        match self.buckets.back_mut() {
            Some((start, sum))
                if now.saturating_duration_since(*start) < Duration::from_secs(1) =>
            {
                *sum += bytes;
            }
            _ => self.buckets.push_back((now, bytes)),
        }
        while self
            .buckets
            .front()
            .is_some_and(|(t, _)| now.saturating_duration_since(*t) >= Self::WINDOW)
        {
            self.buckets.pop_front();
        }
    }

    /// Bytes per second from the first send within the window until `now`; `None` when
    /// nothing was sent within it.
    pub fn per_sec(&self, now: Instant) -> Option<f64> {
        let recent = || {
            self.buckets
                .iter()
                .filter(move |(t, _)| now.saturating_duration_since(*t) < Self::WINDOW)
        };
        let (first, _) = recent().next()?;
        let total: u64 = recent().map(|(_, b)| b).sum();
        let span = now.saturating_duration_since(*first).max(Self::MIN_SPAN);
        Some(total as f64 / span.as_secs_f64())
    }
}

pub type SharedSync = Arc<Mutex<SyncStatus>>;

fn with_status(status: &SharedSync, f: impl FnOnce(&mut SyncStatus)) {
    let mut guard = status.lock().unwrap_or_else(|p| p.into_inner());
    f(&mut guard);
}

/// What the rest of the agent asks of the sync loop.
#[derive(Debug, Clone)]
pub enum SyncCommand {
    /// A newly stored object to deliver.
    Enqueue(QueuedObject),
    /// Objects whose priority was raised (a consultation attached to their study).
    Reprioritize(Vec<ObjectId>, Priority),
}

/// What a transfer task reports.
#[derive(Debug)]
pub enum TransferMsg {
    Accepted {
        id: ObjectId,
        offset: u64,
    },
    /// Object bytes up to `upto` are written to the stream: `delta` more object bytes, taking
    /// `wire` bytes on the link.
    Sent {
        id: ObjectId,
        upto: u64,
        delta: u64,
        wire: u64,
    },
    Receipt {
        id: ObjectId,
    },
    Failed {
        id: ObjectId,
        reason: String,
    },
}

struct Task {
    /// Which attempt this is: messages from an earlier attempt at the same object (paused,
    /// or cut by a reconnect) carry another number and are ignored.
    attempt: u64,
    handle: JoinHandle<()>,
    start: Option<oneshot::Sender<u64>>,
    /// The object's priority now: a doctor may raise it while it is sending.
    class: Arc<Class>,
}

pub struct Sync {
    uploader: Uploader,
    store: Arc<AgentStore>,
    metrics: Arc<Metrics>,
    status: SharedSync,
    connection: Option<Connection>,
    tasks: HashMap<ObjectId, Task>,
    tx: mpsc::Sender<(u64, TransferMsg)>,
    pub rx: mpsc::Receiver<(u64, TransferMsg)>,
    limits: Arc<Limits>,
    attempts: u64,
}

impl Sync {
    pub fn new(
        config: UploaderConfig,
        upload_limit: Option<u64>,
        routine_limit: Option<RoutineLimit>,
        store: Arc<AgentStore>,
        metrics: Arc<Metrics>,
        status: SharedSync,
        seed: u64,
    ) -> Self {
        let (tx, rx) = mpsc::channel(256);
        let mut uploader = Uploader::new(config, seed);
        let now = Instant::now();
        for object in store.outbox() {
            uploader.enqueue(now, object);
        }
        with_status(&status, |s| s.routine_limit = routine_limit);
        Self {
            uploader,
            store,
            metrics,
            status,
            connection: None,
            tasks: HashMap::new(),
            tx,
            rx,
            limits: Arc::new(Limits::new(upload_limit, routine_limit)),
            attempts: 0,
        }
    }

    pub fn command(&mut self, command: SyncCommand) {
        let now = Instant::now();
        match command {
            SyncCommand::Enqueue(object) => self.uploader.enqueue(now, object),
            SyncCommand::Reprioritize(ids, priority) => {
                for id in ids {
                    if let Some(task) = self.tasks.get(&id) {
                        task.class.set(priority);
                    }
                    self.uploader.reprioritize(now, &id, priority);
                }
            }
        }
        self.drive();
    }

    pub fn link_up(&mut self, connection: Connection) {
        self.connection = Some(connection);
        self.uploader.handle_link_up(Instant::now());
        self.drive();
    }

    pub fn link_down(&mut self) {
        self.connection = None;
        for (_, task) in self.tasks.drain() {
            task.handle.abort();
        }
        self.uploader.handle_link_down(Instant::now());
        with_status(&self.status, |s| s.sending.clear());
        self.drive();
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.uploader.poll_timeout()
    }

    pub fn handle_timeout(&mut self) {
        self.uploader.handle_timeout(Instant::now());
        self.drive();
    }

    pub async fn handle(&mut self, (attempt, msg): (u64, TransferMsg)) {
        let now = Instant::now();
        let current = |tasks: &HashMap<ObjectId, Task>, id: &ObjectId| {
            tasks.get(id).is_some_and(|t| t.attempt == attempt)
        };
        match msg {
            // A durable receipt is a fact whichever attempt earned it.
            TransferMsg::Receipt { .. } => {}
            TransferMsg::Accepted { ref id, .. }
            | TransferMsg::Sent { ref id, .. }
            | TransferMsg::Failed { ref id, .. }
                if !current(&self.tasks, id) =>
            {
                return;
            }
            _ => {}
        }
        match msg {
            TransferMsg::Accepted { id, offset } => {
                self.uploader.handle_accept(&id, offset);
                if let Some(progress) = self.uploader.progress(&id) {
                    with_status(&self.status, |s| {
                        s.sending.insert(id.clone(), progress);
                    });
                }
            }
            TransferMsg::Sent {
                id,
                upto,
                delta,
                wire,
            } => {
                self.metrics.bytes_sent.inc_by(delta);
                self.metrics.wire_bytes_sent.inc_by(wire);
                self.uploader.handle_sent(now, &id, upto);
                let progress = self.uploader.progress(&id);
                with_status(&self.status, |s| {
                    s.throughput.add(now, delta);
                    if let Some(progress) = progress {
                        s.sending.insert(id.clone(), progress);
                    }
                });
            }
            TransferMsg::Receipt { id } => {
                if let Some(task) = self.tasks.remove(&id) {
                    if task.attempt != attempt {
                        task.handle.abort();
                    }
                }
                // Delivered only once the receipt itself is durable here.
                let store = self.store.clone();
                let rid = id.clone();
                match tokio::task::spawn_blocking(move || store.mark_delivered(&rid)).await {
                    Ok(Ok(())) => self.uploader.handle_receipt(now, &id),
                    Ok(Err(e)) => self.uploader.handle_failed(
                        now,
                        &id,
                        format!("cannot record the receipt: {e}"),
                    ),
                    Err(e) => self.uploader.handle_failed(
                        now,
                        &id,
                        format!("cannot record the receipt: {e}"),
                    ),
                }
            }
            TransferMsg::Failed { id, reason } => {
                self.tasks.remove(&id);
                self.uploader.handle_failed(now, &id, reason);
            }
        }
        self.drive();
    }

    fn drive(&mut self) {
        while let Some(action) = self.uploader.poll_action() {
            match action {
                UploadAction::Offer { id, size } => {
                    let Some(connection) = self.connection.clone() else {
                        continue;
                    };
                    let file = match self.store.local_file(&id) {
                        Ok(file) => file,
                        Err(e) => {
                            self.uploader
                                .handle_failed(Instant::now(), &id, e.to_string());
                            continue;
                        }
                    };
                    // In flight from the offer on, so status shows what is really moving.
                    with_status(&self.status, |s| {
                        s.sending.insert(id.clone(), (0, size));
                    });
                    let (start_tx, start_rx) = oneshot::channel();
                    let study = self.store.study_hint(&id);
                    let record = self.store.object(&id).ok().flatten();
                    let transfer_syntax = record.as_ref().and_then(|r| r.transfer_syntax.clone());
                    self.attempts += 1;
                    let attempt = self.attempts;
                    let priority = record.as_ref().map_or(Priority::Routine, |r| r.priority);
                    let ahead = record.as_ref().is_some_and(|r| r.ahead);
                    let outgoing = Outgoing {
                        id: id.clone(),
                        size,
                        file,
                        study,
                        attempt,
                        compressible: block::may_compress(transfer_syntax.as_deref()),
                        class: Arc::new(Class::new(priority)),
                        ahead,
                    };
                    let class = outgoing.class.clone();
                    let handle = tokio::spawn(transfer(
                        connection,
                        outgoing,
                        start_rx,
                        (attempt, self.tx.clone()),
                        self.limits.clone(),
                    ));
                    self.tasks.insert(
                        id,
                        Task {
                            attempt,
                            handle,
                            start: Some(start_tx),
                            class,
                        },
                    );
                }
                UploadAction::SendFrom { id, offset } => {
                    if let Some(start) = self.tasks.get_mut(&id).and_then(|t| t.start.take()) {
                        let _ = start.send(offset);
                    }
                }
                UploadAction::Pause { id } => {
                    if let Some(task) = self.tasks.remove(&id) {
                        task.handle.abort();
                    }
                    with_status(&self.status, |s| {
                        s.sending.remove(&id);
                    });
                    debug!(object = %id, "paused for a more urgent object");
                }
            }
        }
        while let Some(event) = self.uploader.poll_event() {
            match event {
                UploadEvent::Delivered { id } => {
                    self.metrics.objects_delivered.inc();
                    with_status(&self.status, |s| {
                        s.sending.remove(&id);
                        s.last_failure.remove(&id);
                    });
                    debug!(object = %id, "delivered");
                }
                UploadEvent::Resent { id, bytes } => {
                    self.metrics.bytes_resent.inc_by(bytes);
                    debug!(object = %id, bytes, "resending bytes the gateway had not committed");
                }
                UploadEvent::Failed {
                    id,
                    reason,
                    retry_in,
                } => {
                    warn!(object = %id, %reason, retry_in_ms = retry_in.as_millis() as u64, "transfer failed; will retry");
                    with_status(&self.status, |s| {
                        s.sending.remove(&id);
                        s.last_failure.insert(id, reason);
                    });
                }
            }
        }
    }
}

impl Drop for Sync {
    fn drop(&mut self) {
        for (_, task) in self.tasks.drain() {
            task.handle.abort();
        }
    }
}

/// An object about to be offered.
struct Outgoing {
    id: ObjectId,
    size: u64,
    file: store::objects::LocalFile,
    study: Option<StudyHint>,
    /// Whether its transfer syntax leaves its bytes worth compressing.
    compressible: bool,
    /// Its priority now: routine objects keep to the routine limit, and it orders the stream.
    class: Arc<Class>,
    /// The offer's number, which orders streams of one class ([`stream_priority`]).
    attempt: u64,
    /// Sent ahead of every other object (a preview).
    ahead: bool,
}

/// An object's priority, shared by its transfer task and the driver that may raise it.
#[derive(Debug)]
struct Class(AtomicU8);

impl Class {
    fn new(priority: Priority) -> Self {
        let class = Self(AtomicU8::new(0));
        class.set(priority);
        class
    }

    fn set(&self, priority: Priority) {
        self.0.store(priority as u8, Ordering::Relaxed);
    }

    fn get(&self) -> Priority {
        match self.0.load(Ordering::Relaxed) {
            x if x == Priority::Emergency as u8 => Priority::Emergency,
            x if x == Priority::Urgent as u8 => Priority::Urgent,
            _ => Priority::Routine,
        }
    }
}

/// The order quinn sends object streams in: emergency before urgent before routine, and
/// within each, the object offered first before the next. quinn shares the link among streams
/// of equal priority, and up to 36 objects have bytes buffered in it: shared, they would all
/// finish together at the end (on a 10 Mbit/s line the first image of a 40-image study was
/// usable after 10 s of 18); in order, images become usable one after another, and an outage
/// leaves one object half sent instead of dozens. Previews go ahead of all of them. All below
/// the events stream's 1 and the offers' 0.
fn stream_priority(ahead: bool, priority: Priority, attempt: u64) -> i32 {
    let class: i32 = match (ahead, priority) {
        (true, _) => 0,
        (false, Priority::Emergency) => -1,
        (false, Priority::Urgent) => -2,
        (false, Priority::Routine) => -3,
    };
    class * (1 << 24) - (attempt % (1 << 24)) as i32
}

/// The rate the link delivers now, in bytes per second, as its congestion window over its
/// round trip estimates it.
fn link_rate(connection: &Connection) -> f64 {
    let window = connection.stats().path.cwnd as f64;
    window / connection.rtt().as_secs_f64().max(1e-6)
}

/// Sends messages of one attempt, tagged with its number.
#[derive(Clone)]
struct Reporter(u64, mpsc::Sender<(u64, TransferMsg)>);

impl Reporter {
    async fn send(&self, msg: TransferMsg) -> Result<(), ()> {
        self.1.send((self.0, msg)).await.map_err(|_| ())
    }
}

async fn transfer(
    connection: Connection,
    outgoing: Outgoing,
    start: oneshot::Receiver<u64>,
    (attempt, tx): (u64, mpsc::Sender<(u64, TransferMsg)>),
    limits: Arc<Limits>,
) {
    let tx = Reporter(attempt, tx);
    let outcome = send_object(&connection, &outgoing, start, &tx, &limits).await;
    let id = outgoing.id;
    let msg = match outcome {
        Ok(()) => TransferMsg::Receipt { id },
        Err(reason) => TransferMsg::Failed { id, reason },
    };
    let _ = tx.send(msg).await;
}

async fn send_object(
    connection: &Connection,
    outgoing: &Outgoing,
    start: oneshot::Receiver<u64>,
    tx: &Reporter,
    limits: &Limits,
) -> Result<(), String> {
    let Outgoing {
        id,
        size,
        file,
        study,
        compressible,
        class,
        attempt,
        ahead,
    } = outgoing;
    let size = *size;
    // Offered only where it can pay: the gateway may still answer raw (an older one does).
    let offered =
        (*compressible && block::link_is_slow(link_rate(connection))).then_some(Encoding::Zstd);
    let (mut send, recv) = connection
        .open_bi()
        .await
        .map_err(|e| format!("cannot open a stream: {e}"))?;
    // The offer goes ahead of every object's bytes, so that the next object is accepted
    // before the bytes buffered ahead of it have drained; its own bytes then take their turn.
    let _ = send.set_priority(0);
    let offer = ControlFrame::Offer {
        object: id.clone(),
        size,
        study: study.clone(),
        encoding: offered,
    };
    send.write_all(&offer.encode())
        .await
        .map_err(|e| format!("offer not sent: {e}"))?;
    let mut replies = daemon::frames::control_frames(recv);
    let encoding = match read_frame(&mut replies).await? {
        ControlFrame::Receipt { object } if object == *id => {
            let _ = send.finish();
            return Ok(());
        }
        ControlFrame::Accept {
            object,
            offset,
            encoding,
        } if object == *id => {
            tx.send(TransferMsg::Accepted {
                id: id.clone(),
                offset,
            })
            .await
            .map_err(|_| "agent stopping".to_string())?;
            encoding.filter(|_| offered.is_some())
        }
        other => {
            return Err(format!(
                "gateway answered the offer with frame `{}`",
                other.name()
            ))
        }
    };
    // In blocks, the first one is the sample: if it does not shrink, none of the others is
    // compressed (each still goes as a block).
    let mut compress = encoding.is_some();
    let mut first = true;
    let offset = start.await.map_err(|_| "transfer cancelled".to_string())?;
    let mut reader = StoredObject::open(file.path().to_path_buf(), offset).await?;
    let mut upto = offset;
    while upto < size {
        let want = ((size - upto) as usize).min(SEND_BUF);
        // Each piece is read into its own buffer and handed to quinn as is: no copy between
        // the page cache and the packets but the encryption's (and the compressor's).
        let (back, piece) = reader.read(want, encoding.map(|_| compress)).await?;
        reader = back;
        let n = piece.raw_len;
        if n == 0 {
            return Err(format!(
                "the stored object {} is shorter than its record says",
                file.path().display()
            ));
        }
        if first && piece.header.is_some_and(|h| h.kind == block::Kind::Raw) {
            compress = false;
        }
        first = false;
        let wire = piece.wire_len();
        // Read each piece: the object may have been raised since the last one.
        let priority = class.get();
        let _ = send.set_priority(stream_priority(*ahead, priority, *attempt));
        limits
            .take(priority == Priority::Routine, wire as usize)
            .await;
        let header = piece
            .header
            .map(|h| bytes::Bytes::copy_from_slice(&h.encode()));
        for part in header.into_iter().chain([piece.bytes]) {
            send.write_chunk(part).await.map_err(|e| {
                let code = match &e {
                    quinn::WriteError::Stopped(code) => Some(*code),
                    _ => None,
                };
                gateway_reason(code).unwrap_or_else(|| format!("link lost while sending: {e}"))
            })?;
        }
        upto += n as u64;
        let _ = tx
            .send(TransferMsg::Sent {
                id: id.clone(),
                upto,
                delta: n as u64,
                wire,
            })
            .await;
    }
    send.finish()
        .map_err(|e| format!("cannot finish the stream: {e}"))?;
    match read_frame(&mut replies).await? {
        ControlFrame::Receipt { object } if object == *id => {
            info!(object = %id, size, "delivered with durable receipt");
            Ok(())
        }
        ControlFrame::Mismatch { object } if object == *id => {
            Err("the gateway found a SHA-256 mismatch; sending again from the start".into())
        }
        other => Err(format!(
            "gateway answered the object with frame `{}`",
            other.name()
        )),
    }
}

/// A stored object being read for sending, on the blocking pool.
struct StoredObject {
    file: std::fs::File,
    path: PathBuf,
}

impl StoredObject {
    async fn open(path: PathBuf, offset: u64) -> Result<Self, String> {
        tokio::task::spawn_blocking(move || {
            use std::io::Seek;
            let mut file = std::fs::File::open(&path)
                .map_err(|e| format!("cannot open the stored object {}: {e}", path.display()))?;
            file.seek(std::io::SeekFrom::Start(offset))
                .map_err(|e| format!("cannot seek the stored object: {e}"))?;
            Ok(Self { file, path })
        })
        .await
        .map_err(|e| format!("storage task failed: {e}"))?
    }

    /// Reads up to `want` bytes (fewer only at the end of the file); with `block`, as a
    /// block of the stream's encoding, compressed when `block` is `Some(true)` and it shrinks.
    async fn read(mut self, want: usize, block: Option<bool>) -> Result<(Self, Piece), String> {
        tokio::task::spawn_blocking(move || {
            use std::io::Read;
            let mut buf = Vec::with_capacity(want);
            (&mut self.file)
                .take(want as u64)
                .read_to_end(&mut buf)
                .map_err(|e| {
                    format!("cannot read the stored object {}: {e}", self.path.display())
                })?;
            let raw = bytes::Bytes::from(buf);
            let raw_len = raw.len();
            let piece = match block {
                Some(compress) if raw_len > 0 => {
                    let encoded = daemon::compress::encode(raw, compress);
                    Piece {
                        raw_len,
                        header: Some(encoded.header),
                        bytes: encoded.bytes,
                    }
                }
                _ => Piece {
                    raw_len,
                    header: None,
                    bytes: raw,
                },
            };
            Ok((self, piece))
        })
        .await
        .map_err(|e| format!("storage task failed: {e}"))?
    }
}

/// A piece of an object ready for the stream: raw bytes, or a block with its header.
struct Piece {
    /// Object bytes it carries.
    raw_len: usize,
    header: Option<block::Header>,
    bytes: bytes::Bytes,
}

impl Piece {
    /// Bytes it takes on the stream.
    fn wire_len(&self) -> u64 {
        let header = self.header.map_or(0, |_| block::HEADER_LEN);
        (header + self.bytes.len()) as u64
    }
}

/// The gateway's next answer on an object stream.
async fn read_frame(
    replies: &mut FramedRead<quinn::RecvStream, ControlCodec>,
) -> Result<ControlFrame, String> {
    match replies.next().await {
        Some(Ok(frame)) => Ok(frame),
        Some(Err(ReadFrameError::Frame(e))) => Err(e.to_string()),
        None | Some(Err(ReadFrameError::Truncated { .. })) => {
            Err("the gateway closed the stream without answering".into())
        }
        Some(Err(ReadFrameError::Io(e))) => {
            // quinn's stream hands its own error over inside the io::Error.
            let code = match e.get_ref().and_then(|e| e.downcast_ref()) {
                Some(quinn::ReadError::Reset(code)) => Some(*code),
                _ => None,
            };
            Err(gateway_reason(code)
                .unwrap_or_else(|| format!("link lost waiting for the gateway: {e}")))
        }
    }
}

/// The reason the gateway gave for ending an object stream early with `code`, if it gave one.
fn gateway_reason(code: Option<quinn::VarInt>) -> Option<String> {
    let reason = proto::sync::stream_code::reason(code?.into_inner())?;
    Some(format!("{reason}; sending it again later"))
}

#[cfg(test)]
mod throughput_tests {
    use super::*;

    #[test]
    fn the_rate_is_measured_over_the_last_minute_and_afresh_after_a_pause() {
        let t0 = Instant::now();
        let mut t = Throughput::default();
        assert_eq!(t.per_sec(t0), None);
        // 100 KiB a second for 20 s.
        for s in 0..20 {
            t.add(t0 + Duration::from_secs(s), 100 * 1024);
        }
        let rate = t.per_sec(t0 + Duration::from_secs(20)).unwrap();
        assert!((rate - 100.0 * 1024.0).abs() < 1.0, "{rate}");
        // A minute and a half of silence: nothing to say.
        assert_eq!(t.per_sec(t0 + Duration::from_secs(100)), None);
        // A pause of 30 s, then 1 MiB a second: measured afresh, not averaged with the pause.
        for s in 50..60 {
            t.add(t0 + Duration::from_secs(s), 1024 * 1024);
        }
        let rate = t.per_sec(t0 + Duration::from_secs(60)).unwrap();
        assert!((rate - 1024.0 * 1024.0).abs() < 1.0, "{rate}");
    }
}

#[cfg(test)]
mod pacer_tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Four transfers share a paced link whose burst is one piece: each gets its turn, none
    /// waits while the others finish (a transfer once sat at 256 KiB for 8 s while 16 others
    /// were delivered).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn transfers_sharing_the_upload_limit_take_turns() {
        const PIECE: usize = 256 * 1024;
        // Eight pieces a second, and at most one piece of credit saved up.
        let pacer = Arc::new(Pacer::new(8 * PIECE as u64));
        let counts: Arc<[AtomicUsize; 4]> = Arc::new(Default::default());
        let deadline = tokio::time::Instant::now() + Duration::from_millis(2_000);
        let mut tasks = Vec::new();
        for i in 0..4 {
            let (pacer, counts) = (pacer.clone(), counts.clone());
            tasks.push(tokio::spawn(async move {
                loop {
                    pacer.take(PIECE).await;
                    if tokio::time::Instant::now() > deadline {
                        return;
                    }
                    counts[i].fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        let counts: Vec<usize> = counts.iter().map(|c| c.load(Ordering::Relaxed)).collect();
        let total: usize = counts.iter().sum();
        // 16 pieces in 2 s; fewer when a loaded machine wakes a task late.
        assert!((10..=17).contains(&total), "the limit holds: {counts:?}");
        // Round robin gives 4 each; a late wake-up may cost a transfer a turn or two.
        let (least, most) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
        assert!(
            *least >= 2 && most - least <= 2,
            "every transfer gets its turn: {counts:?}"
        );
    }
}
