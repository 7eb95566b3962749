//! Sample DICOM files for tests and the pilot: synthetic but valid studies written with
//! dicom-rs, and pydicom's bundled test files (installed by `scripts/test`).

use std::path::{Path, PathBuf};

use anyhow::Context;
use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_object::meta::FileMetaTableBuilder;
use dicom_object::InMemDicomObject;

/// CT Image Storage.
pub const CT_IMAGE: &str = "1.2.840.10008.5.1.4.1.1.2";
/// Explicit VR Little Endian.
pub const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";

/// A new unique UID under the 2.25 root (UUID-derived, PS3.5 §B.2), from a counter and the
/// clock so that every call differs.
pub fn new_uid() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed) as u128;
    let value =
        (nanos << 20) ^ (n * 0x9e37_79b9_7f4a_7c15) ^ (u128::from(std::process::id()) << 100);
    format!("2.25.{}", value % 10u128.pow(38))
}

/// One synthetic study written to disk.
#[derive(Debug, Clone)]
pub struct SyntheticStudy {
    pub study_uid: String,
    pub files: Vec<PathBuf>,
}

/// Writes a CT-like series of `count` instances with about `pixel_bytes` of pixel data each
/// (16-bit, deterministic pseudo-random content from `seed`) into `dir`.
pub fn write_ct_series(
    dir: &Path,
    patient_id: &str,
    count: usize,
    pixel_bytes: usize,
    seed: u64,
) -> anyhow::Result<SyntheticStudy> {
    std::fs::create_dir_all(dir)?;
    let study_uid = new_uid();
    let series_uid = new_uid();
    let side = (((pixel_bytes / 2) as f64).sqrt() as usize).max(1);
    let mut files = Vec::with_capacity(count);
    let mut state = seed | 1;
    for i in 0..count {
        let sop_uid = new_uid();
        let mut pixels = vec![0u8; side * side * 2];
        for b in pixels.iter_mut() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            *b = state as u8;
        }
        let mut obj = InMemDicomObject::new_empty();
        let put = |obj: &mut InMemDicomObject, tag, vr, v: PrimitiveValue| {
            obj.put(DataElement::new(tag, vr, v));
        };
        put(&mut obj, tags::SOP_CLASS_UID, VR::UI, CT_IMAGE.into());
        put(
            &mut obj,
            tags::SOP_INSTANCE_UID,
            VR::UI,
            sop_uid.as_str().into(),
        );
        put(
            &mut obj,
            tags::STUDY_INSTANCE_UID,
            VR::UI,
            study_uid.as_str().into(),
        );
        put(
            &mut obj,
            tags::SERIES_INSTANCE_UID,
            VR::UI,
            series_uid.as_str().into(),
        );
        put(&mut obj, tags::PATIENT_ID, VR::LO, patient_id.into());
        put(
            &mut obj,
            tags::PATIENT_NAME,
            VR::PN,
            "SYNTHETIC^PATIENT".into(),
        );
        put(&mut obj, tags::MODALITY, VR::CS, "CT".into());
        put(
            &mut obj,
            tags::INSTANCE_NUMBER,
            VR::IS,
            ((i + 1) as i32).into(),
        );
        put(
            &mut obj,
            tags::SAMPLES_PER_PIXEL,
            VR::US,
            PrimitiveValue::from(1u16),
        );
        put(
            &mut obj,
            tags::PHOTOMETRIC_INTERPRETATION,
            VR::CS,
            "MONOCHROME2".into(),
        );
        put(
            &mut obj,
            tags::ROWS,
            VR::US,
            PrimitiveValue::from(side as u16),
        );
        put(
            &mut obj,
            tags::COLUMNS,
            VR::US,
            PrimitiveValue::from(side as u16),
        );
        put(
            &mut obj,
            tags::BITS_ALLOCATED,
            VR::US,
            PrimitiveValue::from(16u16),
        );
        put(
            &mut obj,
            tags::BITS_STORED,
            VR::US,
            PrimitiveValue::from(16u16),
        );
        put(
            &mut obj,
            tags::HIGH_BIT,
            VR::US,
            PrimitiveValue::from(15u16),
        );
        put(
            &mut obj,
            tags::PIXEL_REPRESENTATION,
            VR::US,
            PrimitiveValue::from(0u16),
        );
        put(
            &mut obj,
            tags::PIXEL_DATA,
            VR::OW,
            PrimitiveValue::from(pixels),
        );
        let file = obj
            .with_meta(
                FileMetaTableBuilder::new()
                    .transfer_syntax(EXPLICIT_LE)
                    .media_storage_sop_class_uid(CT_IMAGE)
                    .media_storage_sop_instance_uid(sop_uid.as_str()),
            )
            .context("building the file meta group")?;
        let path = dir.join(format!("ct{:04}.dcm", i + 1));
        file.write_to_file(&path)
            .with_context(|| format!("writing {}", path.display()))?;
        files.push(path);
    }
    Ok(SyntheticStudy { study_uid, files })
}

/// pydicom's bundled `test_files` folder (`pip install pydicom==3.0.2`; `scripts/test` does).
pub fn pydicom_test_files() -> anyhow::Result<PathBuf> {
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import pydicom,os;print(os.path.dirname(pydicom.__file__))",
        ])
        .output()
        .context(
            "python3 is needed to find pydicom's test files; run ./scripts/test, which installs it",
        )?;
    anyhow::ensure!(
        out.status.success(),
        "pydicom is not installed; run ./scripts/test (it installs pydicom==3.0.2)"
    );
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
        .join("data")
        .join("test_files");
    anyhow::ensure!(dir.is_dir(), "{} is missing", dir.display());
    Ok(dir)
}
