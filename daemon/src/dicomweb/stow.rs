//! The STOW-RS answer (PS3.18 §10.5.3): each instance of the request stored
//! (Referenced SOP Sequence) or refused with a reason (Failed SOP Sequence), the HTTP status
//! for the mix, and a `Warning` header per refusal saying what was wrong in words.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

/// Failure reasons (PS3.18 Table 10.5.3-1 and PS3.4 Annex B).
pub mod reason {
    /// Processing failure: the instance could not be stored here.
    pub const PROCESSING_FAILURE: u16 = 0x0110;
    /// Out of resources.
    pub const OUT_OF_RESOURCES: u16 = 0xA700;
    /// Cannot understand: not a readable DICOM Part 10 file.
    pub const CANNOT_UNDERSTAND: u16 = 0xC000;
}

/// What became of one part of the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The part's place in the request, from 1.
    pub part: usize,
    pub sop_class: Option<String>,
    pub sop_instance: Option<String>,
    /// Stored: where it is retrieved from (WADO-RS), when this server serves it.
    pub result: Result<Option<String>, (u16, String)>,
}

fn ui(value: &str) -> Value {
    json!({ "vr": "UI", "Value": [value] })
}

/// The answer to a STOW-RS request: 200 when every instance was stored, 202 when some were
/// and some were not, 409 when none was (PS3.18 §10.5.3.1). `study_url`: the study the
/// request stored into, when this server serves it (Retrieve URL at the top).
fn answer(outcomes: &[Outcome], study_url: Option<&str>) -> Response {
    let mut referenced = Vec::new();
    let mut failed = Vec::new();
    let mut warnings = Vec::new();
    for o in outcomes {
        let mut item = Map::new();
        if let Some(class) = &o.sop_class {
            item.insert("00081150".into(), ui(class));
        }
        if let Some(instance) = &o.sop_instance {
            item.insert("00081155".into(), ui(instance));
        }
        match &o.result {
            Ok(url) => {
                if let Some(url) = url {
                    item.insert("00081190".into(), json!({ "vr": "UR", "Value": [url] }));
                }
                referenced.push(Value::Object(item));
            }
            Err((code, why)) => {
                item.insert("00081197".into(), json!({ "vr": "US", "Value": [code] }));
                failed.push(Value::Object(item));
                // A header value must be visible ASCII; the reasons are written here in
                // English and name no patient data.
                let text: String = why
                    .chars()
                    .map(|c| {
                        if c.is_ascii_graphic() || c == ' ' {
                            c
                        } else {
                            '?'
                        }
                    })
                    .filter(|c| *c != '"')
                    .collect();
                warnings.push(format!("299 tpg: \"part {}: {text}\"", o.part));
            }
        }
    }
    let status = match (referenced.is_empty(), failed.is_empty()) {
        (_, true) => StatusCode::OK,
        (false, false) => StatusCode::ACCEPTED,
        (true, false) => StatusCode::CONFLICT,
    };
    let mut body = Map::new();
    if let Some(url) = study_url.filter(|_| !referenced.is_empty()) {
        body.insert("00081190".into(), json!({ "vr": "UR", "Value": [url] }));
    }
    if !referenced.is_empty() {
        body.insert(
            "00081199".into(),
            json!({ "vr": "SQ", "Value": referenced }),
        );
    }
    if !failed.is_empty() {
        body.insert("00081198".into(), json!({ "vr": "SQ", "Value": failed }));
    }
    let mut response = (
        status,
        [(header::CONTENT_TYPE, super::DICOM_JSON)],
        Value::Object(body).to_string(),
    )
        .into_response();
    for w in warnings {
        if let Ok(v) = HeaderValue::from_str(&w) {
            response.headers_mut().append(header::WARNING, v);
        }
    }
    response
}

/// The largest instance a STOW-RS part may be, at either site: a long cine loop fits.
pub const MAX_PART: u64 = 4 << 30;

/// Bytes of a part's start kept to name it when its file is broken ([`meta_uids`]).
const HEAD: usize = 4096;

/// Reads a STOW-RS request's parts one by one: each streams into a file `stage` starts (on
/// a blocking thread, so a study never sits in memory), then `keep` stores it and says what
/// became of it (also on a blocking thread), given the part's number, the file and its first
/// bytes. A part cut short, longer than `max_part` bytes, or that cannot be staged (no room)
/// ends the reading and is reported as failed; the parts before it stay stored. `Err` only
/// when a thread of this daemon failed.
async fn receive<S, K>(
    body: axum::body::Body,
    boundary: String,
    max_part: u64,
    stage: S,
    keep: K,
) -> Result<Vec<Outcome>, String>
where
    S: Fn() -> Result<store::blob::TempBlob, String> + Clone + Send + 'static,
    K: Fn(usize, store::blob::TempBlob, Vec<u8>) -> Outcome + Clone + Send + 'static,
{
    let unreadable = |part: usize, e: &multer::Error| Outcome {
        part,
        sop_class: None,
        sop_instance: None,
        result: Err((
            reason::CANNOT_UNDERSTAND,
            format!("the request body could not be read here ({e}); send the part again"),
        )),
    };
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
        let stage = stage.clone();
        let writer = tokio::task::spawn_blocking(move || {
            let mut staged = stage()?;
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
        let mut size = 0u64;
        loop {
            match field.chunk().await {
                Ok(Some(chunk)) => {
                    size = size.saturating_add(chunk.len() as u64);
                    if size > max_part {
                        broken = Some(format!(
                            "the part is larger than {} MiB, the most one instance may be here",
                            max_part >> 20
                        ));
                        break;
                    }
                    if tx.send(chunk).await.is_err() {
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    broken = Some(format!(
                        "the request body could not be read here ({e}); send the part again"
                    ));
                    break;
                }
            }
        }
        drop(tx);
        // A part that cannot be kept (the disk full, the reserve reached) ends the reading:
        // the parts before it stay stored and the answer says which ones.
        let (staged, head) = match writer.await.map_err(|e| e.to_string())? {
            Ok(kept) => kept,
            Err(e) => {
                outcomes.push(Outcome {
                    part,
                    sop_class: None,
                    sop_instance: None,
                    result: Err((
                        reason::OUT_OF_RESOURCES,
                        format!(
                            "the part could not be kept here ({e}); send it and the parts after \
                             it again once there is room"
                        ),
                    )),
                });
                break;
            }
        };
        if let Some(why) = broken {
            drop(staged);
            outcomes.push(Outcome {
                part,
                sop_class: None,
                sop_instance: None,
                result: Err((reason::CANNOT_UNDERSTAND, why)),
            });
            break;
        }
        let keep = keep.clone();
        outcomes.push(
            tokio::task::spawn_blocking(move || keep(part, staged, head))
                .await
                .map_err(|e| e.to_string())?,
        );
    }
    Ok(outcomes)
}

/// A whole STOW-RS request: its `Content-Type` checked (415 unless `multipart/related` of
/// `application/dicom`), its parts read and kept by [`receive`] (at most [`MAX_PART`] bytes
/// each), and the answer ([`answer`]); a body without parts is a 400.
pub async fn serve<S, K>(
    content_type: Option<&str>,
    body: axum::body::Body,
    stage: S,
    keep: K,
    study_url: Option<&str>,
) -> Result<Response, crate::api::ApiError>
where
    S: Fn() -> Result<store::blob::TempBlob, String> + Clone + Send + 'static,
    K: Fn(usize, store::blob::TempBlob, Vec<u8>) -> Outcome + Clone + Send + 'static,
{
    use crate::api::ApiError;
    let boundary = super::multipart::stow_boundary(content_type)
        .map_err(|e| ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "not_multipart", e.0))?;
    let outcomes = receive(body, boundary, MAX_PART, stage, keep)
        .await
        .map_err(ApiError::internal)?;
    if outcomes.is_empty() {
        return Err(ApiError::bad_request(
            "the request holds no parts; send one DICOM file in each part of the \
             multipart/related body",
        ));
    }
    Ok(answer(&outcomes, study_url))
}

/// The SOP Class and Instance UIDs a part's file meta group names, read without trusting the
/// rest of the file: how a refused file is still named in the answer when its data set is
/// broken. `head` is the file's first bytes.
pub fn meta_uids(head: &[u8]) -> (Option<String>, Option<String>) {
    let (mut class, mut instance) = (None, None);
    if head.get(128..132) != Some(b"DICM".as_slice()) {
        return (None, None);
    }
    let mut at = 132;
    while let Some(h) = head.get(at..at + 8) {
        let group = u16::from_le_bytes([h[0], h[1]]);
        let element = u16::from_le_bytes([h[2], h[3]]);
        if group != 0x0002 {
            break;
        }
        let long = matches!(
            &h[4..6],
            b"OB" | b"OW" | b"UN" | b"SQ" | b"UT" | b"UC" | b"UR"
        );
        let (len, value_at) = if long {
            match head.get(at + 8..at + 12) {
                Some(l) => (
                    u32::from_le_bytes([l[0], l[1], l[2], l[3]]) as usize,
                    at + 12,
                ),
                None => break,
            }
        } else {
            (usize::from(u16::from_le_bytes([h[6], h[7]])), at + 8)
        };
        let Some(value) = head.get(value_at..value_at.saturating_add(len)) else {
            break;
        };
        let text = || {
            Some(
                String::from_utf8_lossy(value)
                    .trim_end_matches(['\0', ' '])
                    .to_owned(),
            )
            .filter(|s| !s.is_empty())
        };
        match element {
            0x0002 => class = text(),
            0x0003 => instance = text(),
            _ => {}
        }
        at = value_at + len;
    }
    (class, instance)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(part: usize, ok: bool) -> Outcome {
        Outcome {
            part,
            sop_class: Some("1.2.840.10008.5.1.4.1.1.2".into()),
            sop_instance: Some(format!("1.2.3.{part}")),
            result: if ok {
                Ok(Some(format!(
                    "http://x/dicomweb/studies/1/series/2/instances/1.2.3.{part}"
                )))
            } else {
                Err((
                    reason::CANNOT_UNDERSTAND,
                    "malformed DICOM: cut short".into(),
                ))
            },
        }
    }

    #[test]
    fn the_status_says_whether_all_some_or_none_were_stored() {
        assert_eq!(answer(&[outcome(1, true)], None).status(), StatusCode::OK);
        let some = answer(&[outcome(1, true), outcome(2, false)], Some("http://x/s"));
        assert_eq!(some.status(), StatusCode::ACCEPTED);
        let warning = some.headers().get(header::WARNING).unwrap();
        assert!(warning
            .to_str()
            .unwrap()
            .contains("part 2: malformed DICOM"));
        assert_eq!(
            answer(&[outcome(1, false)], None).status(),
            StatusCode::CONFLICT
        );
    }

    #[test]
    fn a_broken_file_is_named_by_its_meta_group() {
        let mut file = vec![0u8; 128];
        file.extend_from_slice(b"DICM");
        for (element, value) in [(2u16, "1.2.840.10008.5.1.4.1.1.7\0"), (3, "1.2.3.4 ")] {
            file.extend_from_slice(&2u16.to_le_bytes());
            file.extend_from_slice(&element.to_le_bytes());
            file.extend_from_slice(b"UI");
            file.extend_from_slice(&(value.len() as u16).to_le_bytes());
            file.extend_from_slice(value.as_bytes());
        }
        file.extend_from_slice(&[0x08, 0x00, 0x16, 0x00, b'U']);
        assert_eq!(
            meta_uids(&file),
            (
                Some("1.2.840.10008.5.1.4.1.1.7".into()),
                Some("1.2.3.4".into())
            )
        );
        assert_eq!(meta_uids(b"not dicom"), (None, None));
    }
}
