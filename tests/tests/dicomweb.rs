//! DICOMweb with real clients and a real peer: Python's `dicomweb-client` stores pydicom's
//! sample files at the clinic agent (STOW-RS) and at Orthanc's DICOMweb plugin; once the
//! consultation naming them reaches the hospital, the radiologist's client searches (QIDO-RS)
//! and retrieves (WADO-RS metadata, instances, frames as stored and in explicit VR little
//! endian) from the gateway and gets what Orthanc answers and what the files hold, while
//! another specialist sees none of it. A 100-instance study posted in one request is in the
//! agent's durable queue when the answer comes and reaches the gateway; a broken instance in a
//! request is named in the Failed SOP Sequence while the others are stored.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use daemon::accounts::Role;
use harness::peers::Orthanc;
use harness::people::{person, radiologist, raw_http, sign_up, RadiologyPilot};
use harness::{wait_until, RunningAgent, RunningGateway};
use serde_json::{json, Value};

/// The hospital and the Jinzhou clinic: (gateway, agent, the doctor's token).
fn pilot(dir: &Path) -> (RunningGateway, RunningAgent, String) {
    let p = RadiologyPilot::start(dir, |_| {}).unwrap();
    (p.gateway, p.agent, p.doctor)
}

fn check_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("python/dicomweb_check.py")
}

/// Runs the check script with `args`; panics with its output unless it succeeds.
fn python(args: &[String]) -> String {
    let out = std::process::Command::new("python3")
        .arg(check_script())
        .args(args)
        .output()
        .expect("python3 runs (scripts/test installs dicomweb-client)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "dicomweb_check.py {args:?}:\n{text}");
    text
}

/// A multipart/related body of DICOM parts, and its Content-Type.
fn stow_body(parts: &[Vec<u8>]) -> (String, Vec<u8>) {
    let boundary = "stow-boundary-7f3a";
    let mut body = Vec::new();
    for part in parts {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Type: application/dicom\r\n\r\n").as_bytes(),
        );
        body.extend_from_slice(part);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (
        format!("multipart/related; type=\"application/dicom\"; boundary={boundary}"),
        body,
    )
}

/// POSTs a STOW-RS request to the agent: (status, headers, DICOM JSON answer).
fn stow(
    agent: &RunningAgent,
    token: &str,
    content_type: &str,
    body: &[u8],
) -> (u16, String, Value) {
    let head = format!(
        "POST /dicomweb/studies HTTP/1.0\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: {content_type}\r\nAccept: application/dicom+json"
    );
    let (status, answer) = raw_http(agent.web_addr, &head, body).unwrap();
    let (headers, json_text) = answer.split_once("\r\n\r\n").unwrap();
    let json = serde_json::from_str(json_text).unwrap_or(Value::Null);
    (status, headers.to_owned(), json)
}

/// The SOP Instance UIDs of a STOW answer's sequence `tag`.
fn sop_uids(answer: &Value, tag: &str) -> Vec<String> {
    answer[tag]["Value"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|i| i["00081155"]["Value"][0].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_instance_study_posted_in_one_request_is_durable_when_answered_and_syncs() {
    let dir = tempfile::tempdir().unwrap();
    let (gw, agent, doctor) = pilot(dir.path());
    let study =
        harness::samples::write_ct_series(&dir.path().join("ct"), "P-STOW", 100, 16 * 1024, 7)
            .unwrap();
    let parts: Vec<Vec<u8>> = study
        .files
        .iter()
        .map(|f| std::fs::read(f).unwrap())
        .collect();
    let sops: Vec<String> = study
        .files
        .iter()
        .map(|f| store::dicom::summarize(f).unwrap().sop_instance_uid)
        .collect();
    let (content_type, body) = stow_body(&parts);
    let (status, _, answer) = stow(&agent, &doctor, &content_type, &body);
    assert_eq!(status, 200, "{answer}");
    let mut stored = sop_uids(&answer, "00081199");
    stored.sort();
    let mut expected = sops.clone();
    expected.sort();
    assert_eq!(stored, expected, "every instance is acknowledged");
    // Acknowledged means queued durably: every instance is in the agent's outbox now.
    let queued: std::collections::BTreeSet<String> = agent
        .handle
        .store
        .objects()
        .into_iter()
        .map(|(_, r)| r.sop_instance_uid)
        .collect();
    assert!(
        sops.iter().all(|s| queued.contains(s)),
        "acknowledged before queued"
    );

    // And they sync like any other study.
    let jinzhou = proto::ClinicId::new("jinzhou").unwrap();
    let archive = gw.handle.archive.clone();
    let uid = study.study_uid.clone();
    assert!(
        wait_until(Duration::from_secs(60), || {
            archive
                .study_instances(&jinzhou, std::slice::from_ref(&uid))
                .map(|i| i.len())
                .unwrap_or(0)
                == 100
        })
        .await,
        "the study posted to the agent reaches the gateway"
    );

    // One broken instance among good ones: the others are stored, it is named.
    let more =
        harness::samples::write_ct_series(&dir.path().join("more"), "P-STOW", 2, 4096, 8).unwrap();
    let good: Vec<Vec<u8>> = more
        .files
        .iter()
        .map(|f| std::fs::read(f).unwrap())
        .collect();
    let mut broken = good[1].clone();
    broken.truncate(broken.len() * 2 / 3);
    let broken_sop = store::dicom::summarize(&more.files[1])
        .unwrap()
        .sop_instance_uid;
    let cut = dir.path().join("cut.dcm");
    std::fs::write(&cut, &broken).unwrap();
    assert!(
        store::dicom::summarize(&cut).is_err(),
        "the cut file is broken"
    );
    let (content_type, body) = stow_body(&[good[0].clone(), broken]);
    let (status, headers, answer) = stow(&agent, &doctor, &content_type, &body);
    assert_eq!(status, 202, "some stored, some not: {answer}");
    assert_eq!(
        sop_uids(&answer, "00081199"),
        vec![
            store::dicom::summarize(&more.files[0])
                .unwrap()
                .sop_instance_uid
        ]
    );
    assert_eq!(sop_uids(&answer, "00081198"), vec![broken_sop]);
    assert_eq!(
        answer["00081198"]["Value"][0]["00081197"]["Value"][0],
        json!(0xC000),
        "failure reason: cannot understand"
    );
    assert!(
        headers
            .to_lowercase()
            .contains("warning: 299 tpg: \"part 2: malformed dicom"),
        "{headers}"
    );
    assert_eq!(
        agent.handle.store.quarantined(),
        1,
        "the broken file is kept aside"
    );

    // A body that is not multipart/related is refused with what to send.
    let (status, _, answer) = stow(&agent, &doctor, "application/dicom", &parts[0]);
    assert_eq!(status, 415, "{answer}");
    assert!(answer["message"]
        .as_str()
        .unwrap()
        .contains("send multipart/related"));
    agent.stop().await.unwrap();
    gw.stop().await.unwrap();
}

/// pydicom's samples, each a different instance: native, RLE (grey and colour, 2 frames),
/// JPEG baseline (30 frames) and JPEG 2000, an overlay (bulk data besides the pixels) and a
/// palette. (`rtdose.dcm`, the native multi-frame sample, names another instance in its meta
/// group than in its data set: the agent refuses it, rightly; a synthetic cine loop stands in.)
const SAMPLES: &[&str] = &[
    "CT_small.dcm",
    "MR_small_RLE.dcm",
    "SC_rgb_rle_2frame.dcm",
    "examples_ybr_color.dcm",
    "693_J2KI.dcm",
    "examples_overlay.dcm",
    "examples_palette.dcm",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dicomweb_client_reads_from_the_gateway_what_orthanc_and_the_files_hold() {
    let dir = tempfile::tempdir().unwrap();
    let (gw, agent, doctor) = pilot(dir.path());
    let li = sign_up(&gw.handle.accounts, radiologist());
    let zhao = sign_up(
        &gw.handle.accounts,
        person("zhao", Role::Specialist, "Dr Zhao", Some("zhao"), None),
    );
    let samples = harness::samples::pydicom_test_files().unwrap();
    let mut files: Vec<String> = SAMPLES
        .iter()
        .map(|f| samples.join(f).display().to_string())
        .collect();
    let patient = harness::samples::DemoPatient {
        id: "P-CINE".into(),
        name: "TEST^CINE".into(),
        sex: "F".into(),
        birth_date: "19900101".into(),
    };
    let cine = harness::samples::demo_us_cine(&dir.path().join("cine"), &patient, 12).unwrap();
    files.extend(cine.files.iter().map(|f| f.display().to_string()));
    let orthanc = Orthanc::start_with_dicomweb(&dir.path().join("orthanc"), "ORTHANC").unwrap();

    // dicomweb-client stores the same files at the clinic and at Orthanc.
    let agent_url = format!("http://{}/dicomweb", agent.web_addr);
    let mut args = vec!["stow".to_owned(), agent_url, doctor.clone()];
    args.extend(files.iter().cloned());
    python(&args);
    let mut args = vec!["stow".to_owned(), orthanc.dicomweb(), String::new()];
    args.extend(files.iter().cloned());
    python(&args);

    // The doctor asks about each patient's studies; the cases reach Dr Li's pool.
    let mut by_patient: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for f in &files {
        let s = store::dicom::summarize(Path::new(f)).unwrap();
        let studies = by_patient.entry(s.patient_id).or_default();
        if !studies.contains(&s.study_instance_uid) {
            studies.push(s.study_instance_uid);
        }
    }
    let mut studies: Vec<String> = by_patient.values().flatten().cloned().collect();
    studies.sort();
    studies.dedup();
    let mut cases = Vec::new();
    for (patient, of_patient) in &by_patient {
        let request = json!({
            "patient": {"id": patient, "name": "", "sex": "", "birth_date": ""},
            "question": "second opinion?", "specialty": "radiology", "urgency": "routine",
            "consent": {"given_by": "patient", "method": "written"},
            "studies": of_patient, "submit": true,
        });
        let (status, answer) = harness::http(
            daemon::client::local(agent.web_addr),
            "POST",
            "/api/v1/consultations",
            Some(&doctor),
            Some(&request.to_string()),
        )
        .unwrap();
        assert_eq!(status, 200, "{answer}");
        let answer: Value = serde_json::from_str(&answer).unwrap();
        cases.push(answer["consultation"]["id"].as_str().unwrap().to_owned());
    }
    let web = gw.web_addr;
    let token = li.clone();
    let wanted = studies.len();
    let sops = files.len();
    assert!(
        wait_until(Duration::from_secs(90), || {
            let listed = harness::http_get_as(web, "/dicomweb/studies", &token)
                .ok()
                .and_then(|t| serde_json::from_str::<Value>(&t).ok())
                .and_then(|v| v.as_array().cloned())
                .unwrap_or_default();
            let instances: u64 = listed
                .iter()
                .filter_map(|s| s["00201208"]["Value"][0].as_u64())
                .sum();
            listed.len() == wanted && instances == sops as u64
        })
        .await,
        "every study reaches the gateway and Dr Li's scope"
    );
    // Dr Li accepts the cases: storing into their studies is for the specialist who holds them.
    let site = gw.handle.consult.clone();
    let ids: Vec<proto::consult::ConsultationId> = cases
        .iter()
        .map(|c| proto::consult::ConsultationId::parse(c).unwrap())
        .collect();
    assert!(
        wait_until(Duration::from_secs(30), || ids.iter().all(|id| site
            .log
            .get(id)
            .unwrap()
            .is_some_and(|f| f.consultation.assignee.as_deref() == Some("li"))))
        .await,
        "the router gives Dr Li the cases"
    );
    for case in &cases {
        let (status, answer) = harness::http(
            web,
            "POST",
            &format!("/api/v1/consultations/{case}/accept"),
            Some(&li),
            None,
        )
        .unwrap();
        assert_eq!(status, 200, "{answer}");
    }

    let mut args = vec![
        "check".to_owned(),
        format!("http://{web}/dicomweb"),
        li.clone(),
        orthanc.dicomweb(),
        zhao,
    ];
    args.extend(files.iter().cloned());
    let out = python(&args);
    println!("{out}");

    // Requests that cannot be answered are refused before anything is read or recorded: a
    // search for no match, a frame past the last, a list asking for more frames than there
    // are, bulk data the instance does not have.
    let log = dir.path().join("gateway/data/audit.log");
    let recorded = || std::fs::read_to_string(&log).unwrap().lines().count();
    let before = recorded();
    let get = |path: &str| harness::http(web, "GET", path, Some(&li), None).unwrap();
    let (status, answer) = get("/dicomweb/studies?limit=0");
    assert_eq!(status, 400, "{answer}");
    assert!(answer.contains("limit=1"), "{answer}");
    let ct = store::dicom::summarize(&samples.join("CT_small.dcm")).unwrap();
    let single = format!(
        "/dicomweb/studies/{}/series/{}/instances/{}",
        ct.study_instance_uid, ct.series_instance_uid, ct.sop_instance_uid
    );
    for (path, want) in [
        (format!("{single}/frames/2"), 404),
        (format!("{single}/frames/1,1"), 400),
        (format!("{single}/bulk/00990099"), 404),
    ] {
        let (status, answer) = get(&path);
        assert_eq!(status, want, "{path}: {answer}");
    }
    assert_eq!(recorded(), before, "nothing refused is recorded as read");
    let (status, _) = get(&format!("{single}/frames/1"));
    assert_eq!(status, 200);
    assert_eq!(recorded(), before + 1, "a frame read is");

    // Every read was recorded, naming the studies and never a patient.
    gateway::audit::verify(&log).unwrap();
    let audit: Vec<gateway::audit::Record> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for action in [
        "dicomweb_search",
        "dicomweb_metadata",
        "dicomweb_retrieve",
        "dicomweb_frames",
    ] {
        assert!(
            audit.iter().any(|r| r.user == "li" && r.action == action),
            "{action} is in the audit log"
        );
    }
    assert!(audit
        .iter()
        .all(|r| !r.target.contains("CompressedSamples")));
    agent.stop().await.unwrap();
    gw.stop().await.unwrap();
}
