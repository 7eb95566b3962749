//! The gateway's half of store-and-forward: one task per object stream (an events stream is
//! handed to `daemon::replicate`). It answers the offer
//! with the durable offset, writes the bytes to the partial file committing every chunk
//! (fsync, then the offset in the index), verifies the SHA-256 at the end and sends the receipt
//! only once the object is stored and indexed (`docs/protocol.md`, "Object streams").

use std::sync::Arc;

use futures_util::StreamExt;
use proto::sync::block::{self, Encoding};
use proto::sync::{stream_code, ObjectId, ReceiveStep, Receiver, DEFAULT_CHUNK};
use proto::{ClinicId, ControlFrame};

use tracing::{debug, info, warn};

use daemon::replicate::Replica;

use crate::archive::{Begin, Finished, GatewayArchive, Receiving};
use crate::metrics::Metrics;

const READ_BUF: usize = 256 * 1024;

/// Accepts the agent's streams on `connection` until it closes: object streams, and events
/// streams (told apart by their first frame).
pub async fn accept_streams(
    connection: quinn::Connection,
    clinic: ClinicId,
    archive: Arc<GatewayArchive>,
    metrics: Arc<Metrics>,
    replica: Replica,
) {
    while let Ok((send, recv)) = connection.accept_bi().await {
        let (clinic, archive, metrics, replica) = (
            clinic.clone(),
            archive.clone(),
            metrics.clone(),
            replica.clone(),
        );
        tokio::spawn(async move {
            if let Err(reason) = receive(send, recv, &clinic, &archive, &metrics, replica).await {
                debug!(clinic = %clinic, %reason, "stream ended early; a partial keeps its committed offset");
            }
        });
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| format!("storage task failed: {e}"))
}

/// Why an upload stopped before its receipt.
enum Failure {
    /// The stream or the link broke, or the clinic broke the protocol.
    Stream(String),
    /// The gateway could not write to its store: the hospital's problem, logged loudly and
    /// told to the clinic, which sends the object again later.
    Storage(String),
}

impl From<String> for Failure {
    fn from(reason: String) -> Self {
        Self::Stream(reason)
    }
}

/// Ends the upload's stream in both directions, telling the clinic that storing failed.
fn refuse_storage(
    send: &mut quinn::SendStream,
    recv: &mut quinn::RecvStream,
    clinic: &ClinicId,
    id: &ObjectId,
    reason: &str,
    metrics: &Metrics,
) -> String {
    metrics
        .storage_failures
        .get_or_create(&Metrics::clinic(clinic.as_str()))
        .inc();
    warn!(clinic = %clinic, object = %id, error = %reason, "could not store an upload; the clinic sends it again later");
    let code = quinn::VarInt::from_u32(stream_code::STORAGE_FAILED);
    let _ = recv.stop(code);
    let _ = send.reset(code);
    format!("storage failed: {reason}")
}

async fn receive(
    mut send: quinn::SendStream,
    recv: quinn::RecvStream,
    clinic: &ClinicId,
    archive: &Arc<GatewayArchive>,
    metrics: &Metrics,
    replica: Replica,
) -> Result<(), String> {
    let mut frames = daemon::frames::control_frames(recv);
    let first = match frames.next().await {
        Some(Ok(frame)) => frame,
        None | Some(Err(daemon::frames::ReadFrameError::Truncated { .. })) => {
            return Err("stream ended before an offer".into())
        }
        Some(Err(e)) => return Err(e.to_string()),
    };
    // The stream, and the bytes read past the first frame (the object's first bytes, or the
    // agent's first events).
    let (mut recv, pending) = daemon::frames::into_stream_and_rest(frames);
    let (id, size, study, encoding) = match first {
        ControlFrame::Offer {
            object,
            size,
            study,
            encoding,
        } => (object, size, study, encoding),
        ControlFrame::Replicate { have, own, reoffer } => {
            // An events stream: the bytes after this frame are the agent's events. Its
            // frames go before object streams' bytes.
            let _ = send.set_priority(1);
            let recv = tokio::io::AsyncReadExt::chain(std::io::Cursor::new(pending), recv);
            let opening = daemon::replicate::Opening { have, own, reoffer };
            return daemon::replicate::run(send, recv, clinic.clone(), replica, Some(opening))
                .await;
        }
        other => return Err(format!("expected offer, got frame `{}`", other.name())),
    };
    // One writer per partial file: a second stream for the same object (a buggy agent, or an
    // old connection's stream still draining) is refused and its sender retries later.
    let Some(_claim) = archive.claim_upload(clinic, &id) else {
        let _ = send.reset(quinn::VarInt::from_u32(stream_code::BUSY));
        return Err(format!(
            "object {id} is already being received on another stream"
        ));
    };
    let (a, c, i) = (archive.clone(), clinic.clone(), id.clone());
    let begun = match blocking(move || a.begin(&c, &i, size, study.as_ref())).await? {
        Ok(begun) => begun,
        Err(e) => {
            let reason = e.to_string();
            return Err(refuse_storage(
                &mut send, &mut recv, clinic, &id, &reason, metrics,
            ));
        }
    };
    let (committed, partial) = match begun {
        Begin::Stored => return reply(&mut send, ControlFrame::Receipt { object: id }).await,
        Begin::Resume { offset, partial } => (offset, partial),
    };
    // zstd is the one encoding this gateway knows; an agent that offers it gets it.
    let encoding = encoding.filter(|e| *e == Encoding::Zstd);
    send.write_all(
        &ControlFrame::Accept {
            object: id.clone(),
            offset: committed,
            encoding,
        }
        .encode(),
    )
    .await
    .map_err(|e| e.to_string())?;
    // No larger than what is left of the object: a burst of small objects from many clinics
    // would otherwise hold a quarter MiB each (zeroed, so resident) for a few KiB of bytes.
    let left = usize::try_from(size.saturating_sub(committed)).unwrap_or(READ_BUF);
    let buf = vec![0u8; left.clamp(1, READ_BUF)];
    let mut upload = Upload {
        archive: archive.clone(),
        clinic: clinic.clone(),
        id: id.clone(),
        size,
        partial: Some(partial),
        receiver: Receiver::new(size, committed, DEFAULT_CHUNK),
    };
    let source = Source {
        pending: Vec::from(pending),
        blocks: encoding.map(|_| Vec::new()),
    };
    let outcome = match upload.stream(&mut recv, source, buf, metrics).await {
        Ok(outcome) => outcome,
        Err(Failure::Storage(reason)) => {
            return Err(refuse_storage(
                &mut send, &mut recv, clinic, &id, &reason, metrics,
            ));
        }
        Err(Failure::Stream(reason)) => {
            // The link broke or the agent stopped early (a paused transfer ends its stream):
            // keep everything already written, so only bytes still in flight are sent again.
            if let Some(ReceiveStep::Commit { upto }) = upload.receiver.handle_abort() {
                if let Err(Failure::Storage(e) | Failure::Stream(e)) =
                    upload.write(Vec::new(), 0, Some(upto)).await
                {
                    return Err(format!("{reason}; committing what arrived failed: {e}"));
                }
            }
            return Err(reason);
        }
    };
    let label = Metrics::clinic(clinic.as_str());
    match outcome {
        Finished::Stored => {
            metrics.instances_stored.get_or_create(&label).inc();
            info!(clinic = %clinic, object = %id, size, "object stored and indexed");
            reply(&mut send, ControlFrame::Receipt { object: id }).await
        }
        Finished::Mismatch => {
            metrics.hash_mismatch.get_or_create(&label).inc();
            warn!(clinic = %clinic, object = %id, "SHA-256 mismatch; partial discarded, the clinic sends it again");
            reply(&mut send, ControlFrame::Mismatch { object: id }).await
        }
    }
}

/// One upload in progress: the partial file and where it stands.
struct Upload {
    archive: Arc<GatewayArchive>,
    clinic: ClinicId,
    id: ObjectId,
    size: u64,
    /// `None` only while a storage call holds it.
    partial: Option<Receiving>,
    receiver: Receiver,
}

impl Upload {
    /// Reads the object's bytes into the partial file, committing every chunk, until the
    /// object is complete; then stores it, and checks that the stream ends there.
    async fn stream(
        &mut self,
        recv: &mut quinn::RecvStream,
        mut source: Source,
        mut buf: Vec<u8>,
        metrics: &Metrics,
    ) -> Result<Finished, Failure> {
        let label = Metrics::clinic(self.clinic.as_str());
        let mut finished = None;
        while self.receiver.want() > 0 {
            let want = self.receiver.want() as usize;
            let cap = want.min(buf.len());
            let (n, wire) = source.fill(recv, &mut buf[..cap]).await?;
            metrics
                .wire_bytes_received
                .get_or_create(&label)
                .inc_by(wire);
            if n == 0 {
                let short = self.receiver.handle_end().err();
                let reason = short.map_or_else(|| "stream ended".into(), |e| e.to_string());
                return Err(reason.into());
            }
            metrics
                .bytes_received
                .get_or_create(&label)
                .inc_by(n as u64);
            let commit = match self
                .receiver
                .handle_data(n as u64)
                .map_err(|e| Failure::Stream(e.to_string()))?
            {
                ReceiveStep::Commit { upto } => Some(upto),
                ReceiveStep::Continue | ReceiveStep::Verify => None,
            };
            let (b, done) = self.write(buf, n, commit).await?;
            buf = b;
            finished = done;
        }
        let finished = match finished {
            Some(f) => f,
            // Nothing to receive (an empty object, or a partial already complete).
            None => self
                .write(Vec::new(), 0, Some(self.size))
                .await?
                .1
                .ok_or_else(|| Failure::Storage("not stored".into()))?,
        };
        // Anything after the declared size is a protocol error; the end of the stream is
        // expected. The object is verified and stored either way.
        if !source.is_empty()
            || recv
                .read(&mut buf[..1])
                .await
                .map_err(|e| e.to_string())?
                .is_some()
        {
            return Err(Failure::Stream(
                "the clinic sent bytes past the declared size".into(),
            ));
        }
        Ok(finished)
    }

    /// One storage call: appends `buf[..n]` to the partial and hashes it; with `commit`, fsyncs
    /// and records `commit` as the durable offset, or, at the object's end, verifies, stores
    /// and indexes it. Gives the buffer back for the next read.
    async fn write(
        &mut self,
        buf: Vec<u8>,
        n: usize,
        commit: Option<u64>,
    ) -> Result<(Vec<u8>, Option<Finished>), Failure> {
        let partial = self.partial.take().ok_or_else(|| {
            Failure::Storage("the partial file was lost by an earlier storage failure".into())
        })?;
        let (archive, clinic, id, size) = (
            self.archive.clone(),
            self.clinic.clone(),
            self.id.clone(),
            self.size,
        );
        let (partial, buf, outcome) = blocking(move || {
            let mut partial = partial;
            let outcome = archive
                .receive(&clinic, &id, size, &mut partial, &buf[..n], commit)
                .map_err(|e| e.to_string());
            (partial, buf, outcome)
        })
        .await
        .map_err(Failure::Storage)?;
        self.partial = Some(partial);
        Ok((buf, outcome.map_err(Failure::Storage)?))
    }
}

/// Where an upload's object bytes come from: what arrived with the offer, then the stream,
/// as raw bytes or in blocks (`proto::sync::block`).
struct Source {
    /// Bytes read past the offer frame.
    pending: Vec<u8>,
    /// With a block encoding: the decoded bytes of the current block not yet handed out.
    blocks: Option<Vec<u8>>,
}

impl Source {
    /// Fills as much of `out` as one read allows (all of it for raw bytes, so a storage call
    /// is not spent on each packet-sized piece quinn hands out; up to the end of the current
    /// block for blocks). Returns the object bytes written to `out` and the bytes they took on
    /// the link; 0 object bytes when the stream ended.
    async fn fill(
        &mut self,
        recv: &mut quinn::RecvStream,
        out: &mut [u8],
    ) -> Result<(usize, u64), Failure> {
        let Some(mut decoded) = self.blocks.take() else {
            let n = read_full(recv, &mut self.pending, out).await?;
            return Ok((n, n as u64));
        };
        let mut wire = 0;
        if decoded.is_empty() {
            let mut head = [0u8; block::HEADER_LEN];
            let got = read_full(recv, &mut self.pending, &mut head).await?;
            if got == 0 {
                self.blocks = Some(decoded);
                return Ok((0, 0));
            }
            if got < head.len() {
                return Err("the stream ended inside a block header".to_string().into());
            }
            let header = block::Header::decode(&head).map_err(|e| e.to_string())?;
            let mut body = vec![0u8; header.wire_len as usize];
            if read_full(recv, &mut self.pending, &mut body).await? < body.len() {
                return Err("the stream ended inside a block".to_string().into());
            }
            decoded = daemon::compress::decode(&header, body).map_err(|e| e.to_string())?;
            wire = (block::HEADER_LEN + header.wire_len as usize) as u64;
        }
        let n = out.len().min(decoded.len());
        out[..n].copy_from_slice(&decoded[..n]);
        decoded.drain(..n);
        self.blocks = Some(decoded);
        Ok((n, wire))
    }

    /// Whether nothing is left over.
    fn is_empty(&self) -> bool {
        self.pending.is_empty() && self.blocks.as_ref().is_none_or(|b| b.is_empty())
    }
}

/// Fills `out` from `pending`, then from the stream; fewer bytes only where the stream ended.
async fn read_full(
    recv: &mut quinn::RecvStream,
    pending: &mut Vec<u8>,
    out: &mut [u8],
) -> Result<usize, Failure> {
    let from_pending = pending.len().min(out.len());
    out[..from_pending].copy_from_slice(&pending[..from_pending]);
    pending.drain(..from_pending);
    if from_pending == out.len() {
        return Ok(from_pending);
    }
    match recv.read_exact(&mut out[from_pending..]).await {
        Ok(()) => Ok(out.len()),
        Err(quinn::ReadExactError::FinishedEarly(n)) => Ok(from_pending + n),
        Err(quinn::ReadExactError::ReadError(e)) => Err(e.to_string().into()),
    }
}

async fn reply(send: &mut quinn::SendStream, frame: ControlFrame) -> Result<(), String> {
    send.write_all(&frame.encode())
        .await
        .map_err(|e| e.to_string())?;
    send.finish().map_err(|e| e.to_string())?;
    Ok(())
}
