//! The gateway's half of store-and-forward: one task per object stream. It answers the offer
//! with the durable offset, writes the bytes to the partial file committing every chunk
//! (fsync, then the offset in the index), verifies the SHA-256 at the end and sends the receipt
//! only once the object is stored and indexed (`docs/protocol.md`, "Object streams").

use std::sync::Arc;

use proto::frame::FrameDecoder;
use proto::sync::{ObjectId, ReceiveStep, Receiver, DEFAULT_CHUNK};
use proto::{ClinicId, ControlFrame};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tracing::{debug, info, warn};

use crate::archive::{Finished, GatewayArchive};
use crate::metrics::Metrics;

const READ_BUF: usize = 256 * 1024;

/// Accepts object streams on `connection` until it closes.
pub async fn accept_objects(
    connection: quinn::Connection,
    clinic: ClinicId,
    archive: Arc<GatewayArchive>,
    metrics: Arc<Metrics>,
) {
    while let Ok((send, recv)) = connection.accept_bi().await {
        let (clinic, archive, metrics) = (clinic.clone(), archive.clone(), metrics.clone());
        tokio::spawn(async move {
            if let Err(reason) = receive(send, recv, &clinic, &archive, &metrics).await {
                debug!(clinic = %clinic, %reason, "object stream ended early; the partial keeps its committed offset");
            }
        });
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| format!("storage task failed: {e}"))
}

async fn receive(
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    clinic: &ClinicId,
    archive: &Arc<GatewayArchive>,
    metrics: &Metrics,
) -> Result<(), String> {
    let mut decoder = FrameDecoder::default();
    let mut buf = vec![0u8; READ_BUF];
    let (id, size) = loop {
        if let Some(frame) = decoder.next_frame().map_err(|e| e.to_string())? {
            match frame {
                ControlFrame::Offer {
                    object,
                    size,
                    study,
                } => {
                    if let Some(hint) = study {
                        let (a, c) = (archive.clone(), clinic.clone());
                        blocking(move || a.note_study(&c, &hint))
                            .await?
                            .map_err(|e| e.to_string())?;
                    }
                    break (object, size);
                }
                other => return Err(format!("expected offer, got {other:?}")),
            }
        }
        match recv.read(&mut buf).await.map_err(|e| e.to_string())? {
            Some(n) => decoder.push(&buf[..n]),
            None => return Err("stream ended before an offer".into()),
        }
    };
    let label = Metrics::clinic(clinic.as_str());
    let (a, c, i) = (archive.clone(), clinic.clone(), id.clone());
    if blocking(move || a.has(&c, &i))
        .await?
        .map_err(|e| e.to_string())?
    {
        return reply(&mut send, ControlFrame::Receipt { object: id }).await;
    }
    // One writer per partial file: a second stream for the same object (a buggy agent, or an
    // old connection's stream still draining) is refused and its sender retries later.
    let Some(_claim) = archive.claim_upload(clinic, &id) else {
        let _ = send.reset(quinn::VarInt::from_u32(1));
        return Err(format!(
            "object {id} is already being received on another stream"
        ));
    };
    let (a, c, i) = (archive.clone(), clinic.clone(), id.clone());
    let committed = blocking(move || a.resume_offset(&c, &i, size))
        .await?
        .map_err(|e| e.to_string())?;
    send.write_all(
        &ControlFrame::Accept {
            object: id.clone(),
            offset: committed,
        }
        .encode(),
    )
    .await
    .map_err(|e| e.to_string())?;
    let (a, c, i) = (archive.clone(), clinic.clone(), id.clone());
    let file = blocking(move || a.open_partial(&c, &i))
        .await?
        .map_err(|e| e.to_string())?;
    let mut upload = Upload {
        archive,
        clinic,
        id: &id,
        size,
        file: tokio::fs::File::from_std(file),
        receiver: Receiver::new(size, committed, DEFAULT_CHUNK),
        hasher: (committed == 0).then(Sha256::new),
    };
    let mut pending = decoder.take_remaining();
    if let Err(reason) = upload
        .stream(&mut recv, &mut pending, &mut buf, metrics)
        .await
    {
        // The link broke: keep everything already written, so only bytes still in flight are
        // sent again.
        if let Some(ReceiveStep::Commit { upto }) = upload.receiver.handle_abort() {
            upload.commit(upto).await?;
        }
        return Err(reason);
    }
    if let Err(short) = upload.receiver.handle_end() {
        // The agent stopped early (a paused transfer ends its stream): keep what arrived.
        if let Some(ReceiveStep::Commit { upto }) = upload.receiver.handle_abort() {
            upload.commit(upto).await?;
        }
        return Err(short.to_string());
    }
    let Upload { file, hasher, .. } = upload;
    drop(file);
    let hashed = hasher.map(|h| ObjectId::from_digest(&h.finalize().into()));
    let (a, c, i) = (archive.clone(), clinic.clone(), id.clone());
    match blocking(move || a.finish(&c, &i, hashed))
        .await?
        .map_err(|e| e.to_string())?
    {
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
struct Upload<'a> {
    archive: &'a Arc<GatewayArchive>,
    clinic: &'a ClinicId,
    id: &'a ObjectId,
    size: u64,
    file: tokio::fs::File,
    receiver: Receiver,
    /// SHA-256 of the bytes as they arrive, when the upload started at offset 0; a resumed
    /// upload is hashed by reading the file back at the end.
    hasher: Option<Sha256>,
}

impl Upload<'_> {
    /// Reads the object's bytes into the partial file, committing every chunk, up to the end
    /// of the stream.
    async fn stream(
        &mut self,
        recv: &mut quinn::RecvStream,
        pending: &mut Vec<u8>,
        buf: &mut [u8],
        metrics: &Metrics,
    ) -> Result<(), String> {
        let label = Metrics::clinic(self.clinic.as_str());
        loop {
            let want = self.receiver.want() as usize;
            if want == 0 {
                break;
            }
            // Fill the buffer before writing: quinn hands out packet-sized pieces, and one
            // write (a trip to the blocking pool) per packet cost most of the gateway's CPU.
            let mut ended = false;
            let chunk: Vec<u8> = if !pending.is_empty() {
                let n = pending.len().min(want);
                pending.drain(..n).collect()
            } else {
                let cap = want.min(buf.len());
                let n = match recv.read_exact(&mut buf[..cap]).await {
                    Ok(()) => cap,
                    Err(quinn::ReadExactError::FinishedEarly(n)) => {
                        ended = true;
                        n
                    }
                    Err(quinn::ReadExactError::ReadError(e)) => return Err(e.to_string()),
                };
                buf[..n].to_vec()
            };
            if chunk.is_empty() && ended {
                break;
            }
            if let Some(h) = self.hasher.as_mut() {
                h.update(&chunk);
            }
            self.file
                .write_all(&chunk)
                .await
                .map_err(|e| e.to_string())?;
            metrics
                .bytes_received
                .get_or_create(&label)
                .inc_by(chunk.len() as u64);
            if let ReceiveStep::Commit { upto } = self
                .receiver
                .handle_data(chunk.len() as u64)
                .map_err(|e| e.to_string())?
            {
                self.commit(upto).await?;
            }
            if ended {
                break;
            }
        }
        // Anything after the declared size is a protocol error; the end of the stream is
        // expected.
        if !pending.is_empty()
            || recv
                .read(&mut buf[..1])
                .await
                .map_err(|e| e.to_string())?
                .is_some()
        {
            return Err("the clinic sent bytes past the declared size".into());
        }
        Ok(())
    }

    /// Fsyncs the partial, then records `upto` as its durable offset. The final commit only
    /// fsyncs: the object is stored and indexed right after, and a crash in between costs at
    /// most one chunk.
    async fn commit(&mut self, upto: u64) -> Result<(), String> {
        self.file.flush().await.map_err(|e| e.to_string())?;
        self.file.sync_data().await.map_err(|e| e.to_string())?;
        if upto == self.size {
            return Ok(());
        }
        let (a, c, i, size) = (
            self.archive.clone(),
            self.clinic.clone(),
            self.id.clone(),
            self.size,
        );
        blocking(move || a.record_partial(&c, &i, size, upto))
            .await?
            .map_err(|e| e.to_string())
    }
}

async fn reply(send: &mut quinn::SendStream, frame: ControlFrame) -> Result<(), String> {
    send.write_all(&frame.encode())
        .await
        .map_err(|e| e.to_string())?;
    send.finish().map_err(|e| e.to_string())?;
    Ok(())
}
