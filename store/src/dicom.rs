//! What the pilot reads out of a DICOM Part 10 file (PS3.10 §7): the identifiers that index it
//! and route it. Only the header is parsed (up to Pixel Data), so a 1 GiB cine costs little.
//!
//! Invariant: nothing here logs values; patient ids stay in the returned struct.

use std::path::Path;

use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::OpenFileOptions;
use serde::{Deserialize, Serialize};

/// Media Storage Directory Storage: a DICOMDIR, which indexes a medium and is not an image.
pub const DICOMDIR_SOP_CLASS: &str = "1.2.840.10008.1.3.10";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceSummary {
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    pub study_instance_uid: String,
    pub series_instance_uid: String,
    /// Clinic-scoped patient id. Patient data: never log it.
    pub patient_id: String,
    pub modality: Option<String>,
    pub transfer_syntax: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidDicom {
    #[error("not a DICOM Part 10 file ({0}); export it from the modality as DICOM, with a file meta header")]
    NotPart10(String),
    #[error("a DICOMDIR (a CD/USB index), not an image; import the folder that holds it instead")]
    Dicomdir,
    #[error("missing {name} {tag}; the modality or exporting tool must fill it in")]
    Missing { name: &'static str, tag: String },
    #[error("file meta header says SOP Instance UID {meta} but the data set says {dataset}; the file is inconsistent")]
    MetaMismatch { meta: String, dataset: String },
}

/// Reads and validates the identifiers of a DICOM file.
pub fn summarize(path: &Path) -> Result<InstanceSummary, InvalidDicom> {
    let obj = OpenFileOptions::new()
        .read_until(tags::PIXEL_DATA)
        .open_file(path)
        .map_err(|e| InvalidDicom::NotPart10(first_line(&e.to_string())))?;
    let meta = obj.meta();
    if meta.media_storage_sop_class_uid().trim_end_matches('\0') == DICOMDIR_SOP_CLASS {
        return Err(InvalidDicom::Dicomdir);
    }
    let text = |tag: Tag, name: &'static str| -> Result<String, InvalidDicom> {
        obj.element_opt(tag)
            .ok()
            .flatten()
            .and_then(|e| e.to_str().ok())
            .map(|s| s.trim_end_matches(['\0', ' ']).trim().to_owned())
            .filter(|s| !s.is_empty())
            .ok_or(InvalidDicom::Missing {
                name,
                tag: format!("({:04X},{:04X})", tag.group(), tag.element()),
            })
    };
    let sop_instance_uid = text(tags::SOP_INSTANCE_UID, "SOP Instance UID")?;
    let meta_uid = meta
        .media_storage_sop_instance_uid()
        .trim_end_matches(['\0', ' '])
        .to_owned();
    if !meta_uid.is_empty() && meta_uid != sop_instance_uid {
        return Err(InvalidDicom::MetaMismatch {
            meta: meta_uid,
            dataset: sop_instance_uid,
        });
    }
    Ok(InstanceSummary {
        sop_class_uid: text(tags::SOP_CLASS_UID, "SOP Class UID")?,
        study_instance_uid: text(tags::STUDY_INSTANCE_UID, "Study Instance UID")?,
        series_instance_uid: text(tags::SERIES_INSTANCE_UID, "Series Instance UID")?,
        patient_id: text(tags::PATIENT_ID, "Patient ID")?,
        modality: text(tags::MODALITY, "Modality").ok(),
        transfer_syntax: meta
            .transfer_syntax()
            .trim_end_matches(['\0', ' '])
            .to_owned(),
        sop_instance_uid,
    })
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or(s).chars().take(200).collect()
}
