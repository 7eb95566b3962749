//! Previews for urgent and emergency cases: once such a case is sent, each series of its
//! studies gets one small JPEG of a few key frames (`daemon::render::preview_sheet`), stored
//! as an attachment of the case and queued ahead of every full object, so the specialist has
//! something to look at while the study is still crossing a slow line. The original images
//! are sent as they are, after it; a preview is never a substitute for them.

use std::collections::{BTreeMap, HashSet};

use proto::consult::{Attachment, ConsultationId, EventKind, Preview, State, Urgency};
use proto::sync::ObjectId;

use crate::Handle;

/// One series held here: its instances' files in Instance Number order, and its size.
struct Series {
    study: String,
    modality: Option<String>,
    files: Vec<(Option<i64>, u64, store::objects::LocalFile)>,
    bytes: u64,
}

/// Makes the previews a case still lacks and attaches them; returns how many it attached.
/// Nothing for routine cases, drafts, or cases already closed. Blocking.
pub fn ensure(handle: &Handle, actor: &str, id: &ConsultationId) -> anyhow::Result<usize> {
    let Some(clinic) = handle.clinic.clone() else {
        return Ok(0);
    };
    let Some(folded) = handle.consult.log.get(id)? else {
        return Ok(0);
    };
    let c = folded.consultation;
    if c.urgency == Urgency::Routine
        || matches!(
            c.state,
            State::Draft | State::Reported | State::Acknowledged | State::Cancelled
        )
    {
        return Ok(0);
    }
    let done: HashSet<&str> = c
        .attachments
        .iter()
        .filter_map(|a| a.preview.as_ref())
        .map(|p| p.series_instance_uid.as_str())
        .collect();
    let mut attachments = Vec::new();
    for (uid, series) in series_of(handle, &c.studies) {
        if done.contains(uid.as_str()) {
            continue;
        }
        let paths: Vec<&std::path::Path> = series.files.iter().map(|(_, _, f)| f.path()).collect();
        let sheet = match daemon::render::preview_sheet(&paths) {
            Ok(sheet) => sheet,
            Err(e) => {
                // A waveform or an undecodable image has no preview; its original still goes.
                tracing::info!(case = %id, error = %e, "no preview for one series");
                continue;
            }
        };
        let object = handle.store_attachment(&sheet.jpeg, c.urgency, true)?;
        let modality = series.modality.clone();
        attachments.push(Attachment {
            object,
            name: format!(
                "preview-{}-{}.jpg",
                modality.as_deref().unwrap_or("image").to_lowercase(),
                attachments.len() + done.len() + 1
            ),
            media_type: "image/jpeg".into(),
            preview: Some(Preview {
                study_instance_uid: series.study,
                series_instance_uid: uid,
                modality,
                frames: sheet.frames,
                instances: u32::try_from(series.files.len()).unwrap_or(u32::MAX),
                bytes: series.bytes,
            }),
        });
    }
    let n = attachments.len();
    if n > 0 {
        handle.consult.append(
            &clinic,
            id,
            actor,
            daemon::now_ms(),
            EventKind::StudiesAttached {
                study_instance_uids: Vec::new(),
                attachments,
            },
        )?;
    }
    Ok(n)
}

/// The series of `studies` held here, by Series Instance UID.
fn series_of(handle: &Handle, studies: &[String]) -> BTreeMap<String, Series> {
    let mut all: BTreeMap<String, Series> = BTreeMap::new();
    let objects: Vec<(ObjectId, _)> = handle
        .store
        .objects()
        .into_iter()
        .filter(|(_, r)| {
            !r.series_instance_uid.is_empty() && studies.contains(&r.study_instance_uid)
        })
        .collect();
    for (id, r) in objects {
        // An object the store cannot give as a file is left out of the sheet (logged).
        let file = match handle.store.local_file(&id) {
            Ok(file) => file,
            Err(e) => {
                tracing::warn!(object = %id, error = %e, "a held object cannot be read");
                continue;
            }
        };
        let s = all
            .entry(r.series_instance_uid.clone())
            .or_insert_with(|| Series {
                study: r.study_instance_uid.clone(),
                modality: r.modality.clone(),
                files: Vec::new(),
                bytes: 0,
            });
        s.bytes += r.size;
        s.files.push((r.instance_number, r.seq, file));
    }
    for s in all.values_mut() {
        s.files
            .sort_by_key(|(number, seq, _)| (number.unwrap_or(i64::MAX), *seq));
    }
    all
}
