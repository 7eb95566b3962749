//! What the pilot reads out of a DICOM Part 10 file (PS3.10 §7): the identifiers that index it
//! and route it. Values are read by a structural walk that skips everything else, so a 1 GiB
//! cine or a hostile file costs little.
//!
//! Invariant: nothing here logs values; patient ids stay in the returned struct.

use std::path::Path;

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
    /// Patient's Name (0010,0010) as written (`Family^Given`), Sex (0010,0040) and Birth Date
    /// (0010,0030) as `YYYY-MM-DD`, when present. Patient data: never log them.
    pub patient_name: Option<String>,
    pub patient_sex: Option<String>,
    pub patient_birth_date: Option<String>,
    /// Where the data set starts in the file: what a C-STORE sends as it is.
    #[serde(default)]
    pub dataset_offset: u64,
    /// Instance Number (0020,0013): the order of images in their series.
    #[serde(default)]
    pub instance_number: Option<i64>,
    /// Study Date (0008,0020) as `YYYY-MM-DD` and Study Description (0008,1030), when
    /// present: how people tell their studies apart.
    #[serde(default)]
    pub study_date: Option<String>,
    #[serde(default)]
    pub study_description: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidDicom {
    #[error("not a DICOM Part 10 file ({0}); export it from the modality as DICOM, with a file meta header")]
    NotPart10(String),
    #[error("malformed DICOM: {0}")]
    Malformed(String),
    #[error("a DICOMDIR (a CD/USB index), not an image; import the folder that holds it instead")]
    Dicomdir,
    #[error("missing {name} {tag}; the modality or exporting tool must fill it in")]
    Missing { name: &'static str, tag: String },
    #[error("file meta header says SOP Instance UID {meta} but the data set says {dataset}; the file is inconsistent")]
    MetaMismatch { meta: String, dataset: String },
}

const SOP_CLASS_UID: (u16, u16) = (0x0008, 0x0016);
const SOP_INSTANCE_UID: (u16, u16) = (0x0008, 0x0018);
const MODALITY: (u16, u16) = (0x0008, 0x0060);
const PATIENT_ID: (u16, u16) = (0x0010, 0x0020);
const STUDY_INSTANCE_UID: (u16, u16) = (0x0020, 0x000D);
const SERIES_INSTANCE_UID: (u16, u16) = (0x0020, 0x000E);
const PATIENT_NAME: (u16, u16) = (0x0010, 0x0010);
const PATIENT_BIRTH_DATE: (u16, u16) = (0x0010, 0x0030);
const PATIENT_SEX: (u16, u16) = (0x0010, 0x0040);
const INSTANCE_NUMBER: (u16, u16) = (0x0020, 0x0013);
const STUDY_DATE: (u16, u16) = (0x0008, 0x0020);
const STUDY_DESCRIPTION: (u16, u16) = (0x0008, 0x1030);

/// Reads and validates the identifiers of a DICOM file by walking its structure
/// ([`crate::structure`]), so a malformed file is refused without being loaded.
pub fn summarize(path: &Path) -> Result<InstanceSummary, InvalidDicom> {
    let wanted = [
        SOP_CLASS_UID,
        SOP_INSTANCE_UID,
        MODALITY,
        PATIENT_ID,
        STUDY_INSTANCE_UID,
        SERIES_INSTANCE_UID,
        PATIENT_NAME,
        PATIENT_BIRTH_DATE,
        PATIENT_SEX,
        INSTANCE_NUMBER,
        STUDY_DATE,
        STUDY_DESCRIPTION,
    ];
    let scan = crate::structure::scan(path, &wanted).map_err(|e| {
        if e.contains("DICM") || e.contains("too short") {
            InvalidDicom::NotPart10(e)
        } else {
            InvalidDicom::Malformed(e)
        }
    })?;
    let meta = |element: u16| scan.meta.get(&element).cloned().unwrap_or_default();
    if meta(0x0002) == DICOMDIR_SOP_CLASS {
        return Err(InvalidDicom::Dicomdir);
    }
    let value = |tag: (u16, u16), name: &'static str| -> Result<String, InvalidDicom> {
        scan.values
            .get(&tag)
            .filter(|v| !v.is_empty())
            .cloned()
            .ok_or(InvalidDicom::Missing {
                name,
                tag: format!("({:04X},{:04X})", tag.0, tag.1),
            })
    };
    let sop_instance_uid = value(SOP_INSTANCE_UID, "SOP Instance UID")?;
    let meta_uid = meta(0x0003);
    if !meta_uid.is_empty() && meta_uid != sop_instance_uid {
        return Err(InvalidDicom::MetaMismatch {
            meta: meta_uid,
            dataset: sop_instance_uid,
        });
    }
    Ok(InstanceSummary {
        sop_class_uid: value(SOP_CLASS_UID, "SOP Class UID")?,
        study_instance_uid: value(STUDY_INSTANCE_UID, "Study Instance UID")?,
        series_instance_uid: value(SERIES_INSTANCE_UID, "Series Instance UID")?,
        patient_id: value(PATIENT_ID, "Patient ID")?,
        modality: value(MODALITY, "Modality").ok(),
        transfer_syntax: meta(0x0010),
        patient_name: value(PATIENT_NAME, "Patient's Name").ok(),
        patient_sex: value(PATIENT_SEX, "Patient's Sex").ok(),
        patient_birth_date: value(PATIENT_BIRTH_DATE, "Patient's Birth Date")
            .ok()
            .and_then(|d| iso_date(&d)),
        sop_instance_uid,
        dataset_offset: scan.dataset_offset,
        instance_number: scan
            .values
            .get(&INSTANCE_NUMBER)
            .and_then(|v| v.trim().parse().ok()),
        study_date: value(STUDY_DATE, "Study Date")
            .ok()
            .and_then(|d| iso_date(&d)),
        study_description: value(STUDY_DESCRIPTION, "Study Description").ok(),
    })
}

/// The data set of the file at `path` that `summary` describes, read from where it starts:
/// what a C-STORE sends when the peer accepts the file's transfer syntax.
pub fn data_set(
    path: &Path,
    summary: &InstanceSummary,
) -> std::io::Result<std::io::BufReader<std::fs::File>> {
    use std::io::{Seek, SeekFrom};
    let mut file = std::fs::File::open(path)?;
    file.seek(SeekFrom::Start(summary.dataset_offset))?;
    Ok(std::io::BufReader::new(file))
}

/// DICOM `YYYYMMDD` as `YYYY-MM-DD`; anything else is dropped.
fn iso_date(da: &str) -> Option<String> {
    (da.len() == 8 && da.bytes().all(|b| b.is_ascii_digit()))
        .then(|| format!("{}-{}-{}", &da[..4], &da[4..6], &da[6..]))
}
