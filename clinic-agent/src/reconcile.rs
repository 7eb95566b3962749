//! The files the agent set aside, and giving an id-less study its patient. Patient ID is type 2
//! in most image IODs: an ultrasound cart or an emergency "unknown patient" sends it empty, and
//! such a file cannot be tied to a consultation. It is kept in quarantine (never lost), listed
//! with its reason on the clinic's pages, and a doctor assigns the study to a patient there:
//! each of its files is then stored again, corrected, and syncs like any other, while the
//! original bytes stay in the quarantine folder untouched.
//!
//! The correction is recorded where it travels: in the corrected instance's Original
//! Attributes Sequence (0400,0561), which holds the values replaced, when, by which system and
//! why (PS3.3 C.12.1), so the hospital and its PACS see the change on the study itself; and in
//! the quarantine folder, as `reconciled.json` (who, when, the new id, the stored object).

use std::path::{Path, PathBuf};

use dicom_core::value::DataSetSequence;
use dicom_core::{PrimitiveValue, Tag, VR};
use dicom_object::mem::{InMemDicomObject, InMemElement};
use serde::{Deserialize, Serialize};
use tracing::info;

use crate::archive::Ingested;
use crate::Handle;

const PATIENT_ID: Tag = Tag(0x0010, 0x0020);
const PATIENT_NAME: Tag = Tag(0x0010, 0x0010);
const PATIENT_BIRTH_DATE: Tag = Tag(0x0010, 0x0030);
const PATIENT_SEX: Tag = Tag(0x0010, 0x0040);
const STUDY_INSTANCE_UID: Tag = Tag(0x0020, 0x000D);
const STUDY_DATE: Tag = Tag(0x0008, 0x0020);
const STUDY_DESCRIPTION: Tag = Tag(0x0008, 0x1030);
const MODALITY: Tag = Tag(0x0008, 0x0060);
const ORIGINAL_ATTRIBUTES_SEQUENCE: Tag = Tag(0x0400, 0x0561);
const MODIFIED_ATTRIBUTES_SEQUENCE: Tag = Tag(0x0400, 0x0550);
const ATTRIBUTE_MODIFICATION_DATETIME: Tag = Tag(0x0400, 0x0562);
const MODIFYING_SYSTEM: Tag = Tag(0x0400, 0x0563);
const SOURCE_OF_PREVIOUS_VALUES: Tag = Tag(0x0400, 0x0564);
const REASON_FOR_THE_ATTRIBUTE_MODIFICATION: Tag = Tag(0x0400, 0x0565);

/// At most this many set-aside files are listed (the newest).
const MAX_LISTED: usize = 500;

/// A file set aside, as the pages list it.
#[derive(Debug, Clone, Serialize)]
pub struct SetAside {
    /// Its folder's name under the quarantine folder.
    pub folder: String,
    pub reason: String,
    /// Unix seconds.
    pub at: i64,
    pub source_file_name: String,
    /// What could be read of the study, when the file is DICOM at all.
    pub study: Option<StudyFacts>,
    /// Set once the file has been given its patient.
    pub reconciled: Option<Reconciled>,
}

impl SetAside {
    /// Whether a doctor can give it a patient: DICOM with a study, whose only lack is the
    /// patient's id.
    pub fn needs_patient(&self) -> bool {
        self.reconciled.is_none()
            && self
                .study
                .as_ref()
                .is_some_and(|s| s.patient_id.trim().is_empty() && !s.study_uid.is_empty())
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct StudyFacts {
    pub study_uid: String,
    pub patient_id: String,
    pub patient_name: String,
    pub modality: String,
    pub date: String,
    pub description: String,
}

/// What `reconciled.json` records.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reconciled {
    pub by: String,
    /// Unix milliseconds.
    pub at_ms: i64,
    pub patient_id: String,
    /// The corrected instance as stored and queued.
    pub object: String,
}

/// Who the doctor says the patient is.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct NewPatient {
    pub patient_id: String,
    #[serde(default)]
    pub patient_name: String,
    #[serde(default)]
    pub sex: String,
    /// `YYYYMMDD`.
    #[serde(default)]
    pub birth_date: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("a patient id is required: the id the clinic knows this patient by")]
    NoPatientId,
    #[error("the patient id is at most 64 characters, without backslashes or control characters")]
    BadPatientId,
    #[error("sex is M, F or O (or empty)")]
    BadSex,
    #[error("the birth date is written YYYYMMDD (or left empty)")]
    BadBirthDate,
    #[error("no file set aside belongs to study {0} and lacks a patient id; reload the page")]
    NothingToReconcile(String),
    #[error("{0}")]
    Store(String),
}

/// The files set aside, newest first.
pub fn list(quarantine: &Path) -> Vec<SetAside> {
    let Ok(entries) = std::fs::read_dir(quarantine) else {
        return Vec::new();
    };
    let mut out: Vec<SetAside> = entries
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .filter_map(|e| read_entry(&e.path()))
        .collect();
    out.sort_by(|a, b| b.at.cmp(&a.at).then_with(|| b.folder.cmp(&a.folder)));
    out.truncate(MAX_LISTED);
    out
}

#[derive(Deserialize)]
struct ReasonRecord {
    reason: String,
    at: i64,
    #[serde(default)]
    source_file_name: String,
}

fn read_entry(folder: &Path) -> Option<SetAside> {
    let reason: ReasonRecord =
        serde_json::from_slice(&std::fs::read(folder.join("reason.json")).ok()?).ok()?;
    let reconciled = std::fs::read(folder.join(RECONCILED))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    Some(SetAside {
        folder: folder.file_name()?.to_string_lossy().into_owned(),
        reason: reason.reason,
        at: reason.at,
        source_file_name: reason.source_file_name,
        study: study_facts(&folder.join(FILE)),
        reconciled,
    })
}

const FILE: &str = "file.dcm";
const RECONCILED: &str = "reconciled.json";

/// The file as dicom-rs reads it, when it does so safely (`daemon::render::readable`).
fn open(path: &Path) -> Option<dicom_object::DefaultDicomObject> {
    daemon::render::readable(path).ok()?;
    daemon::render::guarded(|| {
        dicom_object::OpenFileOptions::new()
            .open_file(path)
            .map_err(|e| daemon::render::RenderError::Open(e.to_string()))
    })
    .ok()
}

fn text(obj: &InMemDicomObject, tag: Tag) -> String {
    obj.element(tag)
        .ok()
        .and_then(|e| e.to_str().ok())
        .map(|v| v.trim().to_owned())
        .unwrap_or_default()
}

fn study_facts(path: &Path) -> Option<StudyFacts> {
    let obj = open(path)?;
    Some(StudyFacts {
        study_uid: text(&obj, STUDY_INSTANCE_UID),
        patient_id: text(&obj, PATIENT_ID),
        patient_name: text(&obj, PATIENT_NAME).replace('^', " ").trim().to_owned(),
        modality: text(&obj, MODALITY),
        date: text(&obj, STUDY_DATE),
        description: text(&obj, STUDY_DESCRIPTION),
    })
}

impl NewPatient {
    fn checked(mut self) -> Result<Self, ReconcileError> {
        self.patient_id = self.patient_id.trim().to_owned();
        self.patient_name = self.patient_name.trim().to_owned();
        self.sex = self.sex.trim().to_uppercase();
        self.birth_date = self.birth_date.trim().to_owned();
        if self.patient_id.is_empty() {
            return Err(ReconcileError::NoPatientId);
        }
        let bad = |s: &str| s.chars().any(|c| c.is_control() || c == '\\');
        if self.patient_id.chars().count() > 64 || bad(&self.patient_id) || bad(&self.patient_name)
        {
            return Err(ReconcileError::BadPatientId);
        }
        if !matches!(self.sex.as_str(), "" | "M" | "F" | "O") {
            return Err(ReconcileError::BadSex);
        }
        if !(self.birth_date.is_empty()
            || (self.birth_date.len() == 8 && self.birth_date.bytes().all(|b| b.is_ascii_digit())))
        {
            return Err(ReconcileError::BadBirthDate);
        }
        Ok(self)
    }
}

/// Gives every set-aside file of `study_uid` that lacks a patient id the patient `who`: each
/// is stored again, corrected, and queued for the hospital; `user` is recorded with the
/// change. Returns the stored objects. Blocking.
pub fn assign(
    handle: &Handle,
    user: &str,
    study_uid: &str,
    who: NewPatient,
) -> Result<Vec<String>, ReconcileError> {
    let who = who.checked()?;
    let quarantine = handle.store.quarantine_dir().to_path_buf();
    let waiting: Vec<PathBuf> = list(&quarantine)
        .into_iter()
        .filter(|s| s.needs_patient() && s.study.as_ref().is_some_and(|f| f.study_uid == study_uid))
        .map(|s| quarantine.join(s.folder))
        .collect();
    if waiting.is_empty() {
        return Err(ReconcileError::NothingToReconcile(study_uid.to_owned()));
    }
    let clinic = handle
        .clinic
        .as_ref()
        .map_or_else(|| "unknown clinic".to_owned(), |c| c.to_string());
    let mut stored = Vec::new();
    for folder in waiting {
        let corrected = corrected(&folder.join(FILE), &who, &clinic)?;
        let name = format!("reconciled {}", folder.display());
        let object = match handle
            .ingest(corrected.as_slice(), &name)
            .map_err(|e| ReconcileError::Store(e.to_string()))?
        {
            Ingested::Stored { id, .. } | Ingested::Duplicate { id } => id,
            Ingested::Quarantined { reason, .. } | Ingested::Skipped { reason } => {
                return Err(ReconcileError::Store(format!(
                    "the corrected file was refused too: {reason}"
                )))
            }
        };
        let record = Reconciled {
            by: user.to_owned(),
            at_ms: daemon::now_ms(),
            patient_id: who.patient_id.clone(),
            object: object.to_string(),
        };
        let json =
            serde_json::to_vec_pretty(&record).map_err(|e| ReconcileError::Store(e.to_string()))?;
        daemon::private::write_file(&folder.join(RECONCILED), &json)
            .map_err(|e| ReconcileError::Store(format!("{}: {e}", folder.display())))?;
        stored.push(object.to_string());
    }
    info!(
        files = stored.len(),
        "a study set aside without a patient id was given its patient and queued"
    );
    Ok(stored)
}

/// The file at `path` with the patient `who`, and the values replaced kept in its Original
/// Attributes Sequence.
fn corrected(path: &Path, who: &NewPatient, clinic: &str) -> Result<Vec<u8>, ReconcileError> {
    let mut obj = open(path).ok_or_else(|| {
        ReconcileError::Store("the set-aside file can no longer be read as DICOM".into())
    })?;
    let mut replaced = InMemDicomObject::new_empty();
    let mut changes: Vec<(Tag, VR, &str)> = vec![(PATIENT_ID, VR::LO, &who.patient_id)];
    for (tag, vr, value) in [
        (PATIENT_NAME, VR::PN, &who.patient_name),
        (PATIENT_SEX, VR::CS, &who.sex),
        (PATIENT_BIRTH_DATE, VR::DA, &who.birth_date),
    ] {
        if !value.is_empty() {
            changes.push((tag, vr, value));
        }
    }
    for (tag, vr, value) in changes {
        // The value as it was (an empty one when it was absent: "it had none").
        let before = obj
            .element(tag)
            .ok()
            .cloned()
            .unwrap_or_else(|| InMemElement::new(tag, vr, PrimitiveValue::Empty));
        replaced.put(before);
        obj.put(InMemElement::new(tag, vr, PrimitiveValue::from(value)));
    }
    let now = time::OffsetDateTime::now_utc();
    let stamp = format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    );
    let mut item = InMemDicomObject::new_empty();
    item.put(InMemElement::new(
        MODIFIED_ATTRIBUTES_SEQUENCE,
        VR::SQ,
        DataSetSequence::from(vec![replaced]),
    ));
    item.put(InMemElement::new(
        ATTRIBUTE_MODIFICATION_DATETIME,
        VR::DT,
        PrimitiveValue::from(stamp.as_str()),
    ));
    item.put(InMemElement::new(
        MODIFYING_SYSTEM,
        VR::LO,
        PrimitiveValue::from(format!("tpg clinic-agent {clinic}").as_str()),
    ));
    item.put(InMemElement::new(
        SOURCE_OF_PREVIOUS_VALUES,
        VR::LO,
        PrimitiveValue::Empty,
    ));
    item.put(InMemElement::new(
        REASON_FOR_THE_ATTRIBUTE_MODIFICATION,
        VR::CS,
        PrimitiveValue::from("CORRECT"),
    ));
    // An earlier correction's items stay; this one is added after them.
    let mut items: Vec<InMemDicomObject> = obj
        .element(ORIGINAL_ATTRIBUTES_SEQUENCE)
        .ok()
        .and_then(|e| e.items().map(<[InMemDicomObject]>::to_vec))
        .unwrap_or_default();
    items.push(item);
    obj.put(InMemElement::new(
        ORIGINAL_ATTRIBUTES_SEQUENCE,
        VR::SQ,
        DataSetSequence::from(items),
    ));
    let mut out = Vec::new();
    obj.write_all(&mut out)
        .map_err(|e| ReconcileError::Store(format!("cannot write the corrected file: {e}")))?;
    Ok(out)
}
