//! The gateway's half of store-and-forward: one task per object stream (an events stream is
//! handed to `daemon::replicate`). It answers the offer
//! with the durable offset, writes the bytes to the partial file committing every chunk
//! (fsync, then the offset in the index), verifies the SHA-256 at the end and sends the receipt
//! only once the object is stored and indexed (`docs/protocol.md`, "Object streams").

use std::sync::Arc;

use proto::frame::FrameDecoder;
use proto::sync::{stream_code, ObjectId, ReceiveStep, Receiver, DEFAULT_CHUNK};
use proto::{ClinicId, ControlFrame};
use std::fs::File;
use std::io::Write;

use sha2::{Digest, Sha256};
use tracing::{debug, info, warn};

use daemon::replicate::Replica;

use crate::archive::{Begin, Finished, GatewayArchive};
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
    mut recv: quinn::RecvStream,
    clinic: &ClinicId,
    archive: &Arc<GatewayArchive>,
    metrics: &Metrics,
    replica: Replica,
) -> Result<(), String> {
    let mut decoder = FrameDecoder::default();
    let mut buf = vec![0u8; READ_BUF];
    let (id, size, study) = loop {
        if let Some(frame) = decoder.next_frame().map_err(|e| e.to_string())? {
            match frame {
                ControlFrame::Offer {
                    object,
                    size,
                    study,
                } => break (object, size, study),
                ControlFrame::Replicate { have } => {
                    // An events stream: the bytes after this frame are the agent's events.
                    // Its frames go before object streams' bytes.
                    let _ = send.set_priority(1);
                    let rest = std::io::Cursor::new(decoder.take_remaining());
                    let recv = tokio::io::AsyncReadExt::chain(rest, recv);
                    return daemon::replicate::run(send, recv, clinic.clone(), replica, Some(have))
                        .await;
                }
                other => return Err(format!("expected offer, got {other:?}")),
            }
        }
        match recv.read(&mut buf).await.map_err(|e| e.to_string())? {
            Some(n) => decoder.push(&buf[..n]),
            None => return Err("stream ended before an offer".into()),
        }
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
    let (committed, file) = match begun {
        Begin::Stored => return reply(&mut send, ControlFrame::Receipt { object: id }).await,
        Begin::Resume { offset, file } => (offset, file),
    };
    send.write_all(
        &ControlFrame::Accept {
            object: id.clone(),
            offset: committed,
        }
        .encode(),
    )
    .await
    .map_err(|e| e.to_string())?;
    let mut upload = Upload {
        archive: archive.clone(),
        clinic: clinic.clone(),
        id: id.clone(),
        size,
        partial: Some(Partial {
            file,
            hasher: (committed == 0).then(Sha256::new),
        }),
        receiver: Receiver::new(size, committed, DEFAULT_CHUNK),
    };
    let pending = decoder.take_remaining();
    let outcome = match upload.stream(&mut recv, pending, buf, metrics).await {
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

/// The partial file and the hash of its bytes, moved into each storage call and back.
struct Partial {
    file: File,
    /// SHA-256 of the bytes as they arrive, when the upload started at offset 0; a resumed
    /// upload is hashed by reading the file back at the end.
    hasher: Option<Sha256>,
}

/// One upload in progress: the partial file and where it stands.
struct Upload {
    archive: Arc<GatewayArchive>,
    clinic: ClinicId,
    id: ObjectId,
    size: u64,
    /// `None` only while a storage call holds it.
    partial: Option<Partial>,
    receiver: Receiver,
}

impl Upload {
    /// Reads the object's bytes into the partial file, committing every chunk, until the
    /// object is complete; then stores it, and checks that the stream ends there.
    async fn stream(
        &mut self,
        recv: &mut quinn::RecvStream,
        mut pending: Vec<u8>,
        mut buf: Vec<u8>,
        metrics: &Metrics,
    ) -> Result<Finished, Failure> {
        let label = Metrics::clinic(self.clinic.as_str());
        let mut finished = None;
        while self.receiver.want() > 0 {
            let want = self.receiver.want() as usize;
            // Fill the buffer before writing: quinn hands out packet-sized pieces, and a
            // storage call per packet would cost more than the bytes.
            let n = if !pending.is_empty() {
                let n = pending.len().min(want);
                buf[..n].copy_from_slice(&pending[..n]);
                pending.drain(..n);
                n
            } else {
                let cap = want.min(buf.len());
                match recv.read_exact(&mut buf[..cap]).await {
                    Ok(()) => cap,
                    Err(quinn::ReadExactError::FinishedEarly(n)) => n,
                    Err(quinn::ReadExactError::ReadError(e)) => return Err(e.to_string().into()),
                }
            };
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
        if !pending.is_empty()
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
        let mut partial = self.partial.take().ok_or_else(|| {
            Failure::Storage("the partial file was lost by an earlier storage failure".into())
        })?;
        let (archive, clinic, id, size) = (
            self.archive.clone(),
            self.clinic.clone(),
            self.id.clone(),
            self.size,
        );
        let (partial, buf, outcome) = blocking(move || {
            let outcome = (|| -> Result<Option<Finished>, String> {
                partial
                    .file
                    .write_all(&buf[..n])
                    .map_err(|e| e.to_string())?;
                if let Some(h) = partial.hasher.as_mut() {
                    h.update(&buf[..n]);
                }
                let Some(upto) = commit else {
                    return Ok(None);
                };
                partial.file.sync_data().map_err(|e| e.to_string())?;
                if upto < size {
                    archive
                        .record_partial(&clinic, &id, size, upto)
                        .map_err(|e| e.to_string())?;
                    return Ok(None);
                }
                let hashed = partial
                    .hasher
                    .take()
                    .map(|h| ObjectId::from_digest(&h.finalize().into()));
                archive
                    .finish(&clinic, &id, hashed)
                    .map(Some)
                    .map_err(|e| e.to_string())
            })();
            (partial, buf, outcome)
        })
        .await
        .map_err(Failure::Storage)?;
        self.partial = Some(partial);
        Ok((buf, outcome.map_err(Failure::Storage)?))
    }
}

async fn reply(send: &mut quinn::SendStream, frame: ControlFrame) -> Result<(), String> {
    send.write_all(&frame.encode())
        .await
        .map_err(|e| e.to_string())?;
    send.finish().map_err(|e| e.to_string())?;
    Ok(())
}
