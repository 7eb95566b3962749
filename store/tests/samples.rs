//! The structural check and the summary against pydicom's sample files: valid files pass and
//! give their identifiers; broken ones are refused quickly, naming the problem.

// Tests and their helpers may unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

fn samples() -> PathBuf {
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import pydicom,os;print(os.path.dirname(pydicom.__file__))",
        ])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "pydicom missing: run ./scripts/test, which installs it"
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("data/test_files")
}

#[test]
fn every_sample_is_judged_quickly_and_without_huge_allocations() {
    for entry in std::fs::read_dir(samples()).unwrap().flatten() {
        let path = entry.path();
        let started = Instant::now();
        let _ = store::dicom::summarize(&path);
        // Regression: UN_sequence.dcm (674 bytes) made dicom-rs allocate 3.6 GB and take 50 s.
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{} took {:?}",
            path.display(),
            started.elapsed()
        );
    }
}

#[test]
fn valid_samples_give_their_identifiers() {
    let s = store::dicom::summarize(&samples().join("CT_small.dcm")).unwrap();
    assert_eq!(s.modality.as_deref(), Some("CT"));
    assert!(
        s.sop_instance_uid.starts_with("1.3.6.1.4.1.5962"),
        "{}",
        s.sop_instance_uid
    );
    assert!(!s.patient_id.is_empty());
    for name in [
        "MR_small_RLE.dcm",
        "JPEG2000.dcm",
        "MR_small_bigendian.dcm",
        "MR_small_implicit.dcm",
        "waveform_ecg.dcm",
    ] {
        assert!(
            store::dicom::summarize(&samples().join(name)).is_ok(),
            "{name}: {:?}",
            store::dicom::summarize(&samples().join(name))
        );
    }
}

#[test]
fn broken_samples_are_refused_with_the_reason() {
    let err = store::dicom::summarize(&samples().join("no_meta.dcm"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("DICM") || err.contains("Part 10"), "{err}");
    // Anonymised inconsistently: the meta header and the data set disagree on the instance.
    let err = store::dicom::summarize(&samples().join("rtplan.dcm"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("file meta header says SOP Instance UID"),
        "{err}"
    );
    let err = store::dicom::summarize(&samples().join("rtplan_truncated.dcm"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("truncated") || err.contains("ends"), "{err}");
}
