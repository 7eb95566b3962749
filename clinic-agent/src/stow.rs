//! STOW-RS at the clinic (DICOM PS3.18 §10.5): `POST /dicomweb/studies` with
//! `multipart/related; type="application/dicom"` puts each instance into the same durable
//! queue as a C-STORE or an import, so an ultrasound cart, a modern modality or a reporting
//! tool can push by HTTP. Each part streams to a staged file (a study never sits in memory),
//! then is checked and stored as any import is: a broken file is quarantined and named in the
//! Failed SOP Sequence, the others are stored. The answer comes only once every stored
//! instance is durable and queued for the gateway.

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::Response;
use axum::routing::post;
use daemon::api::ApiError;
use daemon::dicomweb::stow::{self, reason, Outcome};

use crate::access::Task;
use crate::api::Asking;
use crate::archive::Ingested;
use crate::Handle;

pub fn routes() -> axum::Router<Handle> {
    axum::Router::new().route("/dicomweb/studies", post(store))
}

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
    let h = handle.clone();
    let stage = move || h.store.stage().map_err(|e| e.to_string());
    let keep = move |part: usize, staged: store::blob::TempBlob, head: Vec<u8>| {
        let summary = store::dicom::summarize(staged.path()).ok();
        let (meta_class, meta_instance) = stow::meta_uids(&head);
        let (sop_class, sop_instance) = match summary {
            Some(s) => (Some(s.sop_class_uid), Some(s.sop_instance_uid)),
            None => (meta_class, meta_instance),
        };
        let result = match handle.ingest_temp(staged, &format!("STOW-RS part {part}")) {
            // The agent serves no WADO-RS: no Retrieve URL.
            Ok(Ingested::Stored { .. } | Ingested::Duplicate { .. }) => Ok(None),
            Ok(Ingested::Quarantined { reason, .. } | Ingested::Skipped { reason }) => {
                Err((reason::CANNOT_UNDERSTAND, reason))
            }
            Err(e) => Err((reason::PROCESSING_FAILURE, e.to_string())),
        };
        Outcome {
            part,
            sop_class,
            sop_instance,
            result,
        }
    };
    stow::serve(content_type, body, stage, keep, None).await
}
