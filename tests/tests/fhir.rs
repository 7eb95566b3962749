//! FHIR R4 as a hospital system reads it: two urgent and routine consultations of one patient
//! reach the gateway; Dr Li reports on one and adds an addendum. Python's `fhir.resources`
//! (FHIR 4.0.1) validates every resource the gateway answers while the check follows the
//! request to its patient, study (and the study's DICOMweb endpoint) and amended report, runs
//! the searches a hospital polls with, and another specialist finds nothing.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use daemon::accounts::Role;
use harness::people::{accept_and_report, person, radiologist, sign_up, RadiologyPilot};
use harness::wait_until;
use serde_json::json;

/// `fhir.resources` 6.4.0 (FHIR R4 4.0.1) needs pydantic 1, which the system's Python may not
/// have: it is installed apart, in `target/fhir-python` (`scripts/test` does; so does this).
fn fhir_python() -> std::path::PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/fhir-python");
    if !dir.join("fhir/resources").is_dir() {
        let status = std::process::Command::new("python3")
            .args(["-m", "pip", "install", "--quiet", "--target"])
            .arg(&dir)
            .args(["fhir.resources==6.4.0", "pydantic<2"])
            .status()
            .unwrap();
        assert!(
            status.success(),
            "pip installs fhir.resources into {}",
            dir.display()
        );
    }
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hospital_system_follows_a_case_to_its_study_and_amended_report_in_fhir_r4() {
    let python_path = fhir_python();
    let dir = tempfile::tempdir().unwrap();
    let pilot = RadiologyPilot::start(dir.path(), |_| {}).unwrap();
    let gw = &pilot.gateway;
    let li = sign_up(&gw.handle.accounts, radiologist());
    let zhao = sign_up(
        &gw.handle.accounts,
        person("zhao", Role::Specialist, "Dr Zhao", Some("zhao"), None),
    );
    let patient = harness::samples::DemoPatient {
        id: "P-FHIR".into(),
        name: "TEST^FHIR".into(),
        sex: "F".into(),
        birth_date: "19800101".into(),
    };
    let cr = harness::samples::demo_chest_cr(&dir.path().join("cr"), &patient).unwrap();
    pilot.import(&cr.files).await.unwrap();
    let mut ids = Vec::new();
    for (urgency, studies) in [("urgent", vec![cr.study_uid.clone()]), ("routine", vec![])] {
        let request = json!({
            "patient": {"id": "P-FHIR", "name": "TEST^FHIR", "sex": "F", "birth_date": "1980-01-01"},
            "question": "pneumonia?", "clinical_summary": "cough for two weeks",
            "specialty": "radiology", "urgency": urgency,
            "consent": {"given_by": "patient", "method": "written"},
            "studies": studies, "submit": true,
        });
        ids.push(pilot.ask(&request).unwrap());
    }
    let jinzhou = proto::ClinicId::new("jinzhou").unwrap();
    let (archive, site) = (gw.handle.archive.clone(), gw.handle.consult.clone());
    let cases: Vec<proto::consult::ConsultationId> = ids
        .iter()
        .map(|i| proto::consult::ConsultationId::parse(i).unwrap())
        .collect();
    assert!(
        wait_until(Duration::from_secs(60), || {
            let arrived: u64 = archive.studies(&jinzhou).iter().map(|s| s.instances).sum();
            arrived == cr.files.len() as u64
                && cases.iter().all(|c| {
                    site.log
                        .get(c)
                        .unwrap()
                        .is_some_and(|f| f.consultation.assignee.is_some())
                })
        })
        .await,
        "the study and both cases reach Dr Li"
    );
    let web = daemon::client::local(gw.web_addr);
    accept_and_report(web, &li, &ids[0]);
    let (status, answer) = harness::http(
        web,
        "POST",
        &format!("/api/v1/consultations/{}/addendum", ids[0]),
        Some(&li),
        Some(r#"{"text":"compare with the film of last year"}"#),
    )
    .unwrap();
    assert_eq!(status, 200, "{answer}");

    let out = std::process::Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("python/fhir_check.py"))
        .arg(format!("http://{web}/fhir/r4"))
        .args([&li, &zhao, &ids[0], "P-FHIR", "jinzhou"])
        .env("PYTHONPATH", &python_path)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
    assert!(out.status.success(), "fhir_check.py:\n{text}");

    // Every answer with patient data was recorded, naming cases, never the patient.
    let log = dir.path().join("gateway/data/audit.log");
    let records: Vec<gateway::audit::Record> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for action in ["fhir_read", "fhir_search"] {
        assert!(
            records
                .iter()
                .any(|r| r.user == "li" && r.action == action && r.target.contains(&ids[0])),
            "{action} is recorded with the case"
        );
    }
    assert!(records.iter().all(|r| !r.target.contains("P-FHIR")));

    // A search that shows only its total still tells what matched: it is recorded too. Values
    // out of range are refused or answered, never the end of the request.
    let searches = |records: &[gateway::audit::Record]| {
        records.iter().filter(|r| r.action == "fhir_search").count()
    };
    let before = searches(&records);
    let get = |path: &str| harness::http(web, "GET", path, Some(&li), None).unwrap();
    let (status, answer) = get("/fhir/r4/ServiceRequest?_count=0");
    assert_eq!(status, 200, "{answer}");
    let bundle: serde_json::Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(bundle["total"], 2, "{answer}");
    assert!(
        bundle["entry"].as_array().is_some_and(|e| e.is_empty()),
        "{answer}"
    );
    let records: Vec<gateway::audit::Record> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        searches(&records),
        before + 1,
        "the total-only search is recorded"
    );
    assert!(records.last().unwrap().target.contains(&ids[1]));
    for (path, want) in [
        ("/fhir/r4/ServiceRequest?_lastUpdated=123-255", 400),
        ("/fhir/r4/ServiceRequest?authored=9999-12", 400),
        ("/fhir/r4/ServiceRequest?_offset=18446744073709551615", 200),
    ] {
        let (status, answer) = get(path);
        assert_eq!(status, want, "{path}: {answer}");
    }
    pilot.stop().await.unwrap();
}
