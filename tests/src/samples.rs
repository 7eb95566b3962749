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
/// (16-bit, deterministic pseudo-random content from `seed`: incompressible) into `dir`.
pub fn write_ct_series(
    dir: &Path,
    patient_id: &str,
    count: usize,
    pixel_bytes: usize,
    seed: u64,
) -> anyhow::Result<SyntheticStudy> {
    write_series(dir, patient_id, count, pixel_bytes, seed, Pixels::Noise)
}

/// Like [`write_ct_series`], with pixels as a CT scanner's are: 12 bits stored, a body
/// phantom (air, soft tissue, organs, a bone ring) that changes from slice to slice, and
/// detector noise. Lossless compressors shrink such slices to a third to a half.
pub fn write_ct_phantom_series(
    dir: &Path,
    patient_id: &str,
    count: usize,
    pixel_bytes: usize,
    seed: u64,
) -> anyhow::Result<SyntheticStudy> {
    write_series(dir, patient_id, count, pixel_bytes, seed, Pixels::Phantom)
}

/// W3 of the benchmarks: `count` small instances of 8–64 KiB (the sizes of ECG waveforms,
/// structured reports and key images), each its own study, incompressible.
pub fn write_small_instances(dir: &Path, count: usize) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::with_capacity(count);
    for (i, size) in (0..count).map(|i| (i, 8 * 1024 + (i * 7919) % (56 * 1024))) {
        let study = write_ct_series(
            &dir.join(format!("{i:04}")),
            "BENCH-W3",
            1,
            size,
            i as u64 + 2,
        )?;
        files.extend(study.files);
    }
    Ok(files)
}

#[derive(Clone, Copy, PartialEq)]
enum Pixels {
    Noise,
    Phantom,
}

/// Stored value of a phantom's pixel at (`x`, `y`) of a `side`-wide slice `slice`, before
/// noise (rescale intercept −1024: 0 is air, 1024 water).
fn phantom(x: usize, y: usize, side: usize, slice: usize) -> f64 {
    let half = side as f64 / 2.0;
    let (dx, dy) = ((x as f64 - half) / half, (y as f64 - half) / half);
    let r = (dx * dx + dy * dy * 1.4).sqrt();
    let grow = 0.02 * (slice % 10) as f64;
    if r > 0.92 {
        return 0.0;
    }
    if r > 0.84 {
        return 1024.0 + 900.0;
    }
    let organ = |cx: f64, cy: f64, size: f64, hu: f64| {
        let d = ((dx - cx).powi(2) + (dy - cy).powi(2)).sqrt();
        if d < size + grow {
            hu
        } else {
            0.0
        }
    };
    1024.0
        + 40.0
        + organ(-0.35, 0.0, 0.25, 25.0)
        + organ(0.3, 0.1, 0.2, -80.0)
        + organ(0.0, -0.4, 0.1, 300.0)
}

fn write_series(
    dir: &Path,
    patient_id: &str,
    count: usize,
    pixel_bytes: usize,
    seed: u64,
    kind: Pixels,
) -> anyhow::Result<SyntheticStudy> {
    std::fs::create_dir_all(dir)?;
    let study_uid = new_uid();
    let series_uid = new_uid();
    let side = (((pixel_bytes / 2) as f64).sqrt() as usize).max(1);
    let mut files = Vec::with_capacity(count);
    let mut state = seed | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let bits: u16 = if kind == Pixels::Phantom { 12 } else { 16 };
    for i in 0..count {
        let sop_uid = new_uid();
        let mut pixels = vec![0u8; side * side * 2];
        match kind {
            Pixels::Noise => pixels.iter_mut().for_each(|b| *b = next() as u8),
            Pixels::Phantom => {
                for (p, px) in pixels.chunks_exact_mut(2).enumerate() {
                    let base = phantom(p % side, p / side, side, i);
                    // Detector noise: roughly normal, a standard deviation of about 5.
                    let r = next();
                    let noise =
                        ((r & 0xff) + ((r >> 8) & 0xff) + ((r >> 16) & 0xff)) as f64 / 3.0 - 127.5;
                    let noise = if base == 0.0 { 0.0 } else { noise * 0.12 };
                    let v = (base + noise).clamp(0.0, 4095.0) as u16;
                    px.copy_from_slice(&v.to_le_bytes());
                }
            }
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
            PrimitiveValue::from(bits),
        );
        put(
            &mut obj,
            tags::HIGH_BIT,
            VR::US,
            PrimitiveValue::from(bits - 1),
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

/// Who a demo study belongs to.
#[derive(Debug, Clone)]
pub struct DemoPatient {
    pub id: String,
    /// `Family^Given`.
    pub name: String,
    /// `M`, `F` or `O`.
    pub sex: String,
    /// `YYYYMMDD`.
    pub birth_date: String,
}

/// Ultrasound Multi-frame Image Storage.
pub const US_MULTIFRAME: &str = "1.2.840.10008.5.1.4.1.1.3.1";
/// Computed Radiography Image Storage.
pub const CR_IMAGE: &str = "1.2.840.10008.5.1.4.1.1.1";
/// 12-lead ECG Waveform Storage.
pub const ECG_12_LEAD: &str = "1.2.840.10008.5.1.4.1.1.9.1.1";

fn put(obj: &mut InMemDicomObject, tag: dicom_core::Tag, vr: VR, v: impl Into<PrimitiveValue>) {
    obj.put(DataElement::new(tag, vr, v.into()));
}

/// The identifying part every demo instance shares.
fn demo_base(
    patient: &DemoPatient,
    sop_class: &str,
    modality: &str,
    study_uid: &str,
    series_uid: &str,
    description: &str,
) -> (InMemDicomObject, String) {
    let sop_uid = new_uid();
    let mut obj = InMemDicomObject::new_empty();
    put(&mut obj, tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 192");
    put(&mut obj, tags::SOP_CLASS_UID, VR::UI, sop_class);
    put(&mut obj, tags::SOP_INSTANCE_UID, VR::UI, sop_uid.as_str());
    put(&mut obj, tags::STUDY_INSTANCE_UID, VR::UI, study_uid);
    put(&mut obj, tags::SERIES_INSTANCE_UID, VR::UI, series_uid);
    put(&mut obj, tags::PATIENT_ID, VR::LO, patient.id.as_str());
    put(&mut obj, tags::PATIENT_NAME, VR::PN, patient.name.as_str());
    put(&mut obj, tags::PATIENT_SEX, VR::CS, patient.sex.as_str());
    put(
        &mut obj,
        tags::PATIENT_BIRTH_DATE,
        VR::DA,
        patient.birth_date.as_str(),
    );
    put(&mut obj, tags::MODALITY, VR::CS, modality);
    put(&mut obj, tags::STUDY_DESCRIPTION, VR::LO, description);
    put(&mut obj, tags::SERIES_NUMBER, VR::IS, "1");
    let (date, time) = today();
    put(&mut obj, tags::STUDY_DATE, VR::DA, date.as_str());
    put(&mut obj, tags::STUDY_TIME, VR::TM, time.as_str());
    put(&mut obj, tags::CONTENT_DATE, VR::DA, date.as_str());
    put(&mut obj, tags::CONTENT_TIME, VR::TM, time.as_str());
    put(&mut obj, tags::STUDY_ID, VR::SH, "1");
    put(&mut obj, tags::ACCESSION_NUMBER, VR::SH, "");
    put(&mut obj, tags::REFERRING_PHYSICIAN_NAME, VR::PN, "");
    put(
        &mut obj,
        tags::MANUFACTURER,
        VR::LO,
        "TPG pilot (synthetic)",
    );
    (obj, sop_uid)
}

/// Today's date and the time (UTC) as DICOM DA and TM.
fn today() -> (String, String) {
    let now = daemon::now_ms();
    let text = daemon::client::utc(now); // YYYY-MM-DD HH:MM:SS
    let date: String = text[..10].chars().filter(char::is_ascii_digit).collect();
    let time: String = text[11..].chars().filter(char::is_ascii_digit).collect();
    (date, time)
}

/// The image pixel module: `allocated` bits per sample of which `stored` are used.
fn image_module(
    obj: &mut InMemDicomObject,
    (rows, cols): (usize, usize),
    (allocated, stored): (u16, u16),
    frames: usize,
) {
    put(obj, tags::SAMPLES_PER_PIXEL, VR::US, 1u16);
    put(obj, tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "MONOCHROME2");
    put(obj, tags::ROWS, VR::US, rows as u16);
    put(obj, tags::COLUMNS, VR::US, cols as u16);
    put(obj, tags::BITS_ALLOCATED, VR::US, allocated);
    put(obj, tags::BITS_STORED, VR::US, stored);
    put(obj, tags::HIGH_BIT, VR::US, stored - 1);
    put(obj, tags::PIXEL_REPRESENTATION, VR::US, 0u16);
    if frames > 1 {
        put(obj, tags::NUMBER_OF_FRAMES, VR::IS, frames.to_string());
        put(obj, tags::FRAME_TIME, VR::DS, "50");
        // Frames advance by Frame Time (0018,1063).
        obj.put(DataElement::new(
            tags::FRAME_INCREMENT_POINTER,
            VR::AT,
            PrimitiveValue::Tags(vec![tags::FRAME_TIME].into()),
        ));
    }
}

fn write_demo(
    obj: InMemDicomObject,
    sop_class: &str,
    sop_uid: &str,
    path: &Path,
) -> anyhow::Result<PathBuf> {
    let file = obj
        .with_meta(
            FileMetaTableBuilder::new()
                .transfer_syntax(EXPLICIT_LE)
                .media_storage_sop_class_uid(sop_class)
                .media_storage_sop_instance_uid(sop_uid),
        )
        .context("building the file meta group")?;
    file.write_to_file(path)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path.to_path_buf())
}

/// A small pseudo-random generator for speckle and noise (deterministic per seed).
fn noise(state: &mut u64) -> f64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    (*state % 10_000) as f64 / 10_000.0
}

/// A head CT series: `slices` axial slices of 256×256, 12-bit in 16, skull, brain and
/// ventricles drawn so the viewer has something to show.
pub fn demo_ct_head(
    dir: &Path,
    patient: &DemoPatient,
    slices: usize,
) -> anyhow::Result<SyntheticStudy> {
    std::fs::create_dir_all(dir)?;
    let (study_uid, series_uid, frame_of_reference) = (new_uid(), new_uid(), new_uid());
    let n = 256usize;
    let mut state = 7u64;
    let mut files = Vec::new();
    for s in 0..slices {
        let (mut obj, sop) = demo_base(patient, CT_IMAGE, "CT", &study_uid, &series_uid, "CT HEAD");
        image_module(&mut obj, (n, n), (16, 12), 1);
        put(&mut obj, tags::INSTANCE_NUMBER, VR::IS, (s + 1).to_string());
        put(
            &mut obj,
            tags::IMAGE_TYPE,
            VR::CS,
            "ORIGINAL\\PRIMARY\\AXIAL",
        );
        put(
            &mut obj,
            tags::FRAME_OF_REFERENCE_UID,
            VR::UI,
            frame_of_reference.as_str(),
        );
        put(
            &mut obj,
            tags::IMAGE_POSITION_PATIENT,
            VR::DS,
            format!("-115\\-115\\{}", s * 5),
        );
        put(
            &mut obj,
            tags::IMAGE_ORIENTATION_PATIENT,
            VR::DS,
            "1\\0\\0\\0\\1\\0",
        );
        put(&mut obj, tags::PIXEL_SPACING, VR::DS, "0.9\\0.9");
        put(&mut obj, tags::SLICE_THICKNESS, VR::DS, "5");
        put(&mut obj, tags::RESCALE_INTERCEPT, VR::DS, "-1024");
        put(&mut obj, tags::RESCALE_SLOPE, VR::DS, "1");
        put(&mut obj, tags::WINDOW_CENTER, VR::DS, "40");
        put(&mut obj, tags::WINDOW_WIDTH, VR::DS, "80");
        let scale = 1.0 - (s as f64 - slices as f64 / 2.0).abs() / slices as f64;
        let mut px = Vec::with_capacity(n * n * 2);
        for y in 0..n {
            for x in 0..n {
                let (dx, dy) = ((x as f64 - 128.0) / 100.0, (y as f64 - 128.0) / 120.0);
                let r = (dx * dx + dy * dy).sqrt() / scale.max(0.3);
                let vent = ((dx.abs() - 0.15).powi(2) * 20.0 + (dy + 0.1).powi(2) * 8.0) < 0.05;
                let hu: f64 = if r > 1.0 {
                    -1000.0
                } else if r > 0.9 {
                    1200.0
                } else if vent {
                    5.0
                } else {
                    32.0 + 8.0 * noise(&mut state)
                };
                px.extend_from_slice(&((hu + 1024.0).clamp(0.0, 4095.0) as u16).to_le_bytes());
            }
        }
        put(&mut obj, tags::PIXEL_DATA, VR::OW, px);
        files.push(write_demo(
            obj,
            CT_IMAGE,
            &sop,
            &dir.join(format!("ct{:03}.dcm", s + 1)),
        )?);
    }
    Ok(SyntheticStudy { study_uid, files })
}

/// A chest radiograph: one 512×512 12-bit CR image, lungs darker than the mediastinum.
pub fn demo_chest_cr(dir: &Path, patient: &DemoPatient) -> anyhow::Result<SyntheticStudy> {
    std::fs::create_dir_all(dir)?;
    let (study_uid, series_uid) = (new_uid(), new_uid());
    let (mut obj, sop) = demo_base(patient, CR_IMAGE, "CR", &study_uid, &series_uid, "CHEST PA");
    let n = 512usize;
    image_module(&mut obj, (n, n), (16, 12), 1);
    put(&mut obj, tags::INSTANCE_NUMBER, VR::IS, "1");
    put(&mut obj, tags::BODY_PART_EXAMINED, VR::CS, "CHEST");
    put(&mut obj, tags::VIEW_POSITION, VR::CS, "PA");
    put(&mut obj, tags::WINDOW_CENTER, VR::DS, "2048");
    put(&mut obj, tags::WINDOW_WIDTH, VR::DS, "4096");
    let mut state = 11u64;
    let mut px = Vec::with_capacity(n * n * 2);
    for y in 0..n {
        for x in 0..n {
            let lung = |cx: f64| {
                let (dx, dy) = ((x as f64 - cx) / 95.0, (y as f64 - 250.0) / 170.0);
                dx * dx + dy * dy < 1.0
            };
            let body = ((x as f64 - 256.0) / 230.0).powi(2) < 1.0;
            let v: f64 = if lung(160.0) || lung(352.0) {
                900.0
            } else if body {
                3000.0
            } else {
                200.0
            };
            px.extend_from_slice(&((v + 300.0 * noise(&mut state)) as u16).to_le_bytes());
        }
    }
    put(&mut obj, tags::PIXEL_DATA, VR::OW, px);
    let files = vec![write_demo(obj, CR_IMAGE, &sop, &dir.join("chest.dcm"))?];
    Ok(SyntheticStudy { study_uid, files })
}

/// An obstetric ultrasound cine loop: `frames` frames of 256×256, 8-bit, a sector of speckle
/// with a moving bright structure.
pub fn demo_us_cine(
    dir: &Path,
    patient: &DemoPatient,
    frames: usize,
) -> anyhow::Result<SyntheticStudy> {
    std::fs::create_dir_all(dir)?;
    let (study_uid, series_uid) = (new_uid(), new_uid());
    let (mut obj, sop) = demo_base(
        patient,
        US_MULTIFRAME,
        "US",
        &study_uid,
        &series_uid,
        "OB ULTRASOUND",
    );
    let n = 256usize;
    image_module(&mut obj, (n, n), (8, 8), frames);
    put(&mut obj, tags::INSTANCE_NUMBER, VR::IS, "1");
    put(&mut obj, tags::IMAGE_TYPE, VR::CS, "ORIGINAL\\PRIMARY");
    let mut state = 13u64;
    let mut px = Vec::with_capacity(n * n * frames);
    for f in 0..frames {
        let phase = f as f64 / frames as f64 * std::f64::consts::TAU;
        for y in 0..n {
            for x in 0..n {
                let (dx, dy) = (x as f64 - 128.0, y as f64);
                let angle = dx.atan2(dy).abs();
                let depth = (dx * dx + dy * dy).sqrt();
                let inside = angle < 0.6 && depth < 250.0;
                let (fx, fy) = (x as f64 - 128.0 - 10.0 * phase.sin(), y as f64 - 140.0);
                let fetus = (fx * fx) / 1600.0 + (fy * fy) / 900.0 < 1.0;
                let v = if !inside {
                    0.0
                } else if fetus {
                    150.0 + 80.0 * noise(&mut state)
                } else {
                    40.0 + 60.0 * noise(&mut state)
                };
                px.push(v as u8);
            }
        }
    }
    put(&mut obj, tags::PIXEL_DATA, VR::OB, px);
    let files = vec![write_demo(obj, US_MULTIFRAME, &sop, &dir.join("cine.dcm"))?];
    Ok(SyntheticStudy { study_uid, files })
}

/// A 12-lead resting ECG: 10 s at 500 Hz, 16-bit signed samples in µV, every lead a
/// plausible sinus rhythm at 75 beats per minute.
pub fn demo_ecg(dir: &Path, patient: &DemoPatient) -> anyhow::Result<SyntheticStudy> {
    ecg(dir, patient, 500, 10)
}

/// [`demo_ecg`] of `seconds` at `rate` Hz: a short one of 1 s at 250 Hz (6 kB of samples)
/// seeds the fuzzing of the viewer's ECG drawing.
pub fn ecg(
    dir: &Path,
    patient: &DemoPatient,
    rate: usize,
    seconds: usize,
) -> anyhow::Result<SyntheticStudy> {
    use dicom_core::value::DataSetSequence;
    std::fs::create_dir_all(dir)?;
    let (study_uid, series_uid) = (new_uid(), new_uid());
    let (mut obj, sop) = demo_base(
        patient,
        ECG_12_LEAD,
        "ECG",
        &study_uid,
        &series_uid,
        "RESTING ECG",
    );
    let leads = 12usize;
    let samples = rate * seconds;
    let names = [
        "I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6",
    ];
    let mut channels = Vec::new();
    for name in names {
        let mut source = InMemDicomObject::new_empty();
        put(&mut source, tags::CODE_VALUE, VR::SH, "5.6.3-9-1");
        put(
            &mut source,
            tags::CODING_SCHEME_DESIGNATOR,
            VR::SH,
            "SCPECG",
        );
        put(
            &mut source,
            tags::CODE_MEANING,
            VR::LO,
            format!("Lead {name}"),
        );
        let mut units = InMemDicomObject::new_empty();
        put(&mut units, tags::CODE_VALUE, VR::SH, "uV");
        put(&mut units, tags::CODING_SCHEME_DESIGNATOR, VR::SH, "UCUM");
        put(&mut units, tags::CODE_MEANING, VR::LO, "microvolt");
        let mut ch = InMemDicomObject::new_empty();
        ch.put(DataElement::new(
            tags::CHANNEL_SOURCE_SEQUENCE,
            VR::SQ,
            DataSetSequence::from(vec![source]),
        ));
        ch.put(DataElement::new(
            tags::CHANNEL_SENSITIVITY_UNITS_SEQUENCE,
            VR::SQ,
            DataSetSequence::from(vec![units]),
        ));
        put(&mut ch, tags::CHANNEL_SENSITIVITY, VR::DS, "1");
        put(
            &mut ch,
            tags::CHANNEL_SENSITIVITY_CORRECTION_FACTOR,
            VR::DS,
            "1",
        );
        put(&mut ch, tags::CHANNEL_BASELINE, VR::DS, "0");
        put(&mut ch, tags::WAVEFORM_BITS_STORED, VR::US, 16u16);
        channels.push(ch);
    }
    let mut data = Vec::with_capacity(samples * leads * 2);
    for i in 0..samples {
        let t = (i % (rate * 4 / 5)) as f64 / rate as f64; // one beat every 0.8 s
        let wave = |c: f64, w: f64, a: f64| a * (-((t - c) / w).powi(2)).exp();
        let beat = wave(0.2, 0.025, 120.0) + wave(0.33, 0.012, 1100.0) - wave(0.36, 0.01, 250.0)
            + wave(0.55, 0.05, 300.0);
        for lead in 0..leads {
            let gain = [1.0, 1.2, 0.4, -0.9, 0.5, 0.8, -0.6, 0.3, 0.9, 1.3, 1.1, 0.9][lead];
            data.extend_from_slice(&((beat * gain) as i16).to_le_bytes());
        }
    }
    let mut waveform = InMemDicomObject::new_empty();
    put(
        &mut waveform,
        tags::MULTIPLEX_GROUP_TIME_OFFSET,
        VR::DS,
        "0",
    );
    put(
        &mut waveform,
        tags::WAVEFORM_ORIGINALITY,
        VR::CS,
        "ORIGINAL",
    );
    put(
        &mut waveform,
        tags::NUMBER_OF_WAVEFORM_CHANNELS,
        VR::US,
        leads as u16,
    );
    put(
        &mut waveform,
        tags::NUMBER_OF_WAVEFORM_SAMPLES,
        VR::UL,
        samples as u32,
    );
    put(
        &mut waveform,
        tags::SAMPLING_FREQUENCY,
        VR::DS,
        rate.to_string(),
    );
    put(&mut waveform, tags::MULTIPLEX_GROUP_LABEL, VR::SH, "RHYTHM");
    waveform.put(DataElement::new(
        tags::CHANNEL_DEFINITION_SEQUENCE,
        VR::SQ,
        DataSetSequence::from(channels),
    ));
    put(&mut waveform, tags::WAVEFORM_BITS_ALLOCATED, VR::US, 16u16);
    put(
        &mut waveform,
        tags::WAVEFORM_SAMPLE_INTERPRETATION,
        VR::CS,
        "SS",
    );
    waveform.put(DataElement::new(
        tags::WAVEFORM_DATA,
        VR::OW,
        PrimitiveValue::from(data),
    ));
    obj.put(DataElement::new(
        tags::WAVEFORM_SEQUENCE,
        VR::SQ,
        DataSetSequence::from(vec![waveform]),
    ));
    let files = vec![write_demo(obj, ECG_12_LEAD, &sop, &dir.join("ecg.dcm"))?];
    Ok(SyntheticStudy { study_uid, files })
}

/// Writes, byte by byte, a small explicit VR file whose private element (0009,1010) is UN of
/// undefined length — a sequence in implicit VR, nested once — before an ordinary 8×8 image:
/// valid DICOM (PS3.5 §6.2.2) of the kind dicom-rs mis-reads.
pub fn write_undefined_length_un(path: &Path) -> anyhow::Result<()> {
    fn el(out: &mut Vec<u8>, group: u16, element: u16, vr: &[u8; 2], value: &[u8]) {
        out.extend(group.to_le_bytes());
        out.extend(element.to_le_bytes());
        out.extend(vr);
        if matches!(vr, b"OB" | b"OW" | b"UN" | b"SQ") {
            out.extend([0, 0]);
            out.extend((value.len() as u32).to_le_bytes());
        } else {
            out.extend((value.len() as u16).to_le_bytes());
        }
        out.extend(value);
    }
    fn even(text: &str, pad: u8) -> Vec<u8> {
        let mut v = text.as_bytes().to_vec();
        if v.len() % 2 == 1 {
            v.push(pad);
        }
        v
    }
    fn tag(out: &mut Vec<u8>, group: u16, element: u16, length: u32) {
        out.extend(group.to_le_bytes());
        out.extend(element.to_le_bytes());
        out.extend(length.to_le_bytes());
    }
    let (sop_class, sop) = ("1.2.840.10008.5.1.4.1.1.7", new_uid());
    let mut meta = Vec::new();
    el(&mut meta, 0x0002, 0x0001, b"OB", &[0, 1]);
    el(&mut meta, 0x0002, 0x0002, b"UI", &even(sop_class, 0));
    el(&mut meta, 0x0002, 0x0003, b"UI", &even(&sop, 0));
    el(
        &mut meta,
        0x0002,
        0x0010,
        b"UI",
        &even("1.2.840.10008.1.2.1", 0),
    );
    let mut out = vec![0u8; 128];
    out.extend(b"DICM");
    el(
        &mut out,
        0x0002,
        0x0000,
        b"UL",
        &(meta.len() as u32).to_le_bytes(),
    );
    out.extend(meta);
    el(&mut out, 0x0008, 0x0016, b"UI", &even(sop_class, 0));
    el(&mut out, 0x0008, 0x0018, b"UI", &even(&sop, 0));
    el(&mut out, 0x0008, 0x0060, b"CS", b"OT");
    el(&mut out, 0x0009, 0x0010, b"LO", &even("TPG CRAFTED", b' '));
    // (0009,1010) UN, undefined length: items in implicit VR little endian.
    out.extend(0x0009u16.to_le_bytes());
    out.extend(0x1010u16.to_le_bytes());
    out.extend(b"UN\0\0");
    out.extend(u32::MAX.to_le_bytes());
    tag(&mut out, 0xFFFE, 0xE000, u32::MAX);
    tag(&mut out, 0x0009, 0x1011, 4);
    out.extend(b"ABCD");
    tag(&mut out, 0x0009, 0x1012, u32::MAX);
    tag(&mut out, 0xFFFE, 0xE000, 8);
    tag(&mut out, 0x0009, 0x1013, 0);
    tag(&mut out, 0xFFFE, 0xE0DD, 0);
    tag(&mut out, 0xFFFE, 0xE00D, 0);
    tag(&mut out, 0xFFFE, 0xE0DD, 0);
    el(&mut out, 0x0010, 0x0020, b"LO", &even("P-UN", b' '));
    el(&mut out, 0x0020, 0x000D, b"UI", &even(&new_uid(), 0));
    el(&mut out, 0x0020, 0x000E, b"UI", &even(&new_uid(), 0));
    el(&mut out, 0x0028, 0x0002, b"US", &1u16.to_le_bytes());
    el(&mut out, 0x0028, 0x0004, b"CS", b"MONOCHROME2 ");
    el(&mut out, 0x0028, 0x0010, b"US", &8u16.to_le_bytes());
    el(&mut out, 0x0028, 0x0011, b"US", &8u16.to_le_bytes());
    el(&mut out, 0x0028, 0x0100, b"US", &8u16.to_le_bytes());
    el(&mut out, 0x0028, 0x0101, b"US", &8u16.to_le_bytes());
    el(&mut out, 0x0028, 0x0102, b"US", &7u16.to_le_bytes());
    el(&mut out, 0x0028, 0x0103, b"US", &0u16.to_le_bytes());
    el(
        &mut out,
        0x7FE0,
        0x0010,
        b"OB",
        &(0..64).collect::<Vec<u8>>(),
    );
    std::fs::write(path, out).with_context(|| format!("cannot write {}", path.display()))
}
