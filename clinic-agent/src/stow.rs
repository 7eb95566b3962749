//! STOW-RS at the clinic (DICOM PS3.18 §10.5): `POST /dicomweb/studies` with
//! `multipart/related; type="application/dicom"` puts each instance into the same durable
//! queue as a C-STORE or an import, so an ultrasound cart, a modern modality or a reporting
//! tool can push by HTTP. Each part streams to a staged file (a study never sits in memory),
//! then is checked and stored as any import is: a broken file is quarantined and named in the
//! Failed SOP Sequence, the others are stored. The answer comes only once every stored
//! instance is durable and queued for the gateway.

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::post;
use daemon::api::{blocking, ApiError};
use daemon::dicomweb::stow::{self, reason, Outcome};

use crate::access::Task;
use crate::api::Asking;
use crate::archive::Ingested;
use crate::Handle;

pub fn routes() -> axum::Router<Handle> {
    axum::Router::new().route("/dicomweb/studies", post(store))
}

/// Bytes of a part's start kept to name it when its file is broken.
const HEAD: usize = 4096;

async fn store(
    asking: Asking,
    State(handle): State<Handle>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    asking.may(Task::Stow)?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let boundary = daemon::dicomweb::multipart::stow_boundary(content_type)
        .map_err(|e| ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "not_multipart", e.0))?;
    let mut parts = multer::Multipart::new(body.into_data_stream(), boundary);
    let mut outcomes = Vec::new();
    loop {
        let part = outcomes.len() + 1;
        let mut field = match parts.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(e) => {
                outcomes.push(unreadable(part, &e));
                break;
            }
        };
        let (tx, mut rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(8);
        let h = handle.clone();
        // The part's bytes go to a staged file on a blocking thread as they arrive.
        let writer = tokio::task::spawn_blocking(move || {
            let mut staged = h.store.stage().map_err(|e| e.to_string())?;
            let mut head = Vec::new();
            while let Some(chunk) = rx.blocking_recv() {
                if head.len() < HEAD {
                    head.extend_from_slice(&chunk[..chunk.len().min(HEAD - head.len())]);
                }
                staged.write(&chunk).map_err(|e| e.to_string())?;
            }
            Ok::<_, String>((staged, head))
        });
        let mut broken = None;
        loop {
            match field.chunk().await {
                Ok(Some(chunk)) => {
                    if tx.send(chunk).await.is_err() {
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    broken = Some(e);
                    break;
                }
            }
        }
        drop(tx);
        let staged = writer
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?;
        if let Some(e) = broken {
            outcomes.push(unreadable(part, &e));
            break;
        }
        let (staged, head) = staged
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "store_failed", e))?;
        let h = handle.clone();
        outcomes.push(
            blocking(move || {
                let summary = store::dicom::summarize(staged.path()).ok();
                let (meta_class, meta_instance) = stow::meta_uids(&head);
                let (sop_class, sop_instance) = match summary {
                    Some(s) => (Some(s.sop_class_uid), Some(s.sop_instance_uid)),
                    None => (meta_class, meta_instance),
                };
                let result = match h.ingest_temp(staged, &format!("STOW-RS part {part}")) {
                    Ok(Ingested::Stored { .. } | Ingested::Duplicate { .. }) => Ok(()),
                    Ok(Ingested::Quarantined { reason, .. } | Ingested::Skipped { reason }) => {
                        Err((reason::CANNOT_UNDERSTAND, reason))
                    }
                    Err(e) => Err((reason::PROCESSING_FAILURE, e.to_string())),
                };
                Ok(Outcome {
                    part,
                    sop_class,
                    sop_instance,
                    result,
                })
            })
            .await?,
        );
    }
    if outcomes.is_empty() {
        return Err(ApiError::bad_request(
            "the request holds no parts; send one DICOM file in each part of the \
             multipart/related body",
        ));
    }
    Ok(stow::answer(&outcomes))
}

/// A part that could not be read off the request (cut short, or not multipart inside).
fn unreadable(part: usize, e: &multer::Error) -> Outcome {
    Outcome {
        part,
        sop_class: None,
        sop_instance: None,
        result: Err((
            reason::CANNOT_UNDERSTAND,
            format!("the request body could not be read here ({e}); send the part again"),
        )),
    }
}
