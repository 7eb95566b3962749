//! Seed inputs for the fuzz targets, made with the project's own encoders so that they are
//! what a real peer sends: frames, blocks, command sets and PDUs, a consultation's events,
//! forms, configuration files and a CRL. The patients in them are invented.

use proto::consult::{
    Consent, ConsultationId, Event, EventId, EventKind, Patient, Report, Side, Urgency,
};
use proto::frame::{Backlog, StudyHint};
use proto::sync::block::{Encoding, MAX_BLOCK};
use proto::sync::ObjectId;
use proto::{ClinicId, ControlFrame};

type Seeds = Vec<(&'static str, String, Vec<u8>)>;

pub(super) fn all() -> anyhow::Result<Seeds> {
    let mut out = Seeds::new();
    control_frames(&mut out)?;
    blocks(&mut out)?;
    dimse(&mut out)?;
    events(&mut out)?;
    forms(&mut out);
    dicomweb(&mut out);
    configs(&mut out);
    crl(&mut out)?;
    Ok(out)
}

fn object(n: u8) -> ObjectId {
    ObjectId::from_digest(&[n; 32])
}

fn consultation() -> ConsultationId {
    ConsultationId::new(1_767_000_000_000, [7; 10])
}

/// A consultation's life, in each side's sequence order: created, consent, studies, submitted
/// at the clinic; delivered, assigned, accepted, a question, a report at the hospital.
fn life(clinic: &ClinicId) -> anyhow::Result<Vec<Event>> {
    let event = |side, seq, seen, kind| Event {
        id: EventId {
            clinic: clinic.clone(),
            side,
            seq,
        },
        seen,
        consultation: consultation(),
        at_ms: 1_767_000_000_000 + (seq as i64) * 60_000,
        actor: match side {
            Side::Clinic => "dr-wang".into(),
            Side::Gateway => "li".into(),
        },
        kind,
        seal: None,
    };
    let patient = Patient {
        id: "P-0001".into(),
        name: "Test^Patient".into(),
        sex: "F".into(),
        birth_date: "1980-02-29".into(),
    };
    Ok(vec![
        event(
            Side::Clinic,
            1,
            0,
            EventKind::Created {
                patient: patient.clone(),
                clinical_summary: "cough for three weeks".into(),
                question: "pneumonia?".into(),
                specialty: "radiology".into(),
                urgency: Urgency::Urgent,
                number: None,
            },
        ),
        event(
            Side::Clinic,
            2,
            0,
            EventKind::ConsentRecorded {
                consent: Consent {
                    given_by: "patient".into(),
                    method: "written".into(),
                    at_ms: 1_767_000_000_000,
                },
            },
        ),
        event(
            Side::Clinic,
            3,
            0,
            EventKind::StudiesAttached {
                study_instance_uids: vec!["1.2.826.0.1.3680043.2.1125.1".into()],
                attachments: vec![proto::consult::Attachment {
                    object: object(3),
                    name: "referral.pdf".into(),
                    media_type: "application/pdf".into(),
                    preview: None,
                }],
            },
        ),
        event(Side::Clinic, 4, 0, EventKind::Submitted),
        event(Side::Gateway, 1, 4, EventKind::Delivered),
        event(
            Side::Gateway,
            2,
            4,
            EventKind::Assigned {
                specialist: "li".into(),
                rule: "everything-else".into(),
                reason: "fewest open cases".into(),
            },
        ),
        event(
            Side::Gateway,
            3,
            4,
            EventKind::Accepted {
                specialist: "li".into(),
            },
        ),
        event(
            Side::Gateway,
            4,
            4,
            EventKind::QuestionAsked {
                specialist: "li".into(),
                text: "any fever?".into(),
            },
        ),
        event(
            Side::Clinic,
            5,
            4,
            EventKind::QuestionAnswered {
                question: 4,
                text: "38.5 at night".into(),
            },
        ),
        event(
            Side::Gateway,
            5,
            5,
            EventKind::Reported {
                specialist: "li".into(),
                report: Report {
                    findings: "consolidation, right lower lobe".into(),
                    impression: "pneumonia".into(),
                    recommendation: "antibiotics; review in two weeks".into(),
                    signer_name: "Li Wei".into(),
                    signer_qualification: "attending radiologist".into(),
                    signed_at_ms: 1_767_000_900_000,
                    signed_before_complete: None,
                },
            },
        ),
        event(
            Side::Gateway,
            6,
            5,
            EventKind::Addendum {
                specialist: "li".into(),
                text: "compare with the old film".into(),
                signed_at_ms: 1_767_001_000_000,
            },
        ),
        event(Side::Clinic, 6, 6, EventKind::ReportAcknowledged),
    ])
}

fn control_frames(out: &mut Seeds) -> anyhow::Result<()> {
    let clinic = ClinicId::new("jinzhou-03")?;
    let first = life(&clinic)?.remove(0);
    let frames = [
        ControlFrame::Hello {
            major: 1,
            minor: 2,
            agent_version: "0.1.0".into(),
        },
        ControlFrame::Welcome {
            major: 1,
            minor: 2,
            gateway_version: "0.1.0".into(),
            clinic: "jinzhou-03".into(),
        },
        ControlFrame::VersionMismatch {
            gateway_majors: vec![1, 2],
            agent_major: 3,
        },
        ControlFrame::Ping { seq: 1 },
        ControlFrame::Pong { seq: u64::MAX },
        ControlFrame::Offer {
            object: object(1),
            size: 1 << 20,
            study: Some(StudyHint {
                uid: "1.2.826.0.1.3680043.2.1125.1".into(),
                instances: 40,
            }),
            encoding: Some(Encoding::Zstd),
        },
        ControlFrame::Accept {
            object: object(1),
            offset: 262_144,
            encoding: Some(Encoding::Zstd),
        },
        ControlFrame::Receipt { object: object(1) },
        ControlFrame::Mismatch { object: object(2) },
        ControlFrame::Replicate {
            have: 3,
            own: Some(9),
            reoffer: true,
        },
        ControlFrame::Reoffered,
        ControlFrame::Event {
            event: Box::new(first),
        },
        ControlFrame::Backlog(Backlog {
            items: 12,
            bytes: 1 << 30,
            oldest_pending_secs: Some(600),
            oldest_emergency_secs: None,
            quarantined: 1,
        }),
    ];
    let mut all = vec![255u8];
    for (n, frame) in frames.iter().enumerate() {
        let mut one = vec![255u8];
        one.extend(frame.encode());
        out.push(("control_frames", format!("frame-{n:02}"), one));
        all.extend(frame.encode());
    }
    out.push(("control_frames", "all-frames".into(), all.clone()));
    all[0] = 7; // the same stream, arriving in 7-byte pieces
    out.push(("control_frames", "all-frames-in-pieces".into(), all));
    let future = br#"{"type":"from_the_future","x":[1,{"y":null}]}"#;
    let mut unknown = vec![255u8];
    unknown.extend((future.len() as u32).to_be_bytes());
    unknown.extend(future);
    out.push(("control_frames", "unknown-type".into(), unknown));
    Ok(())
}

fn blocks(out: &mut Seeds) -> anyhow::Result<()> {
    use daemon::compress::encode;
    let text: Vec<u8> = (0..16_384u32)
        .map(|i| b"DICOM pixels "[i as usize % 13])
        .collect();
    let noise: Vec<u8> = (0..512u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let mut stream = Vec::new();
    for (raw, compress) in [(&text, true), (&noise, true), (&text, false)] {
        let block = encode(raw.clone().into(), compress);
        stream.extend(block.header.encode());
        stream.extend(block.bytes.iter());
    }
    let mut blocks = vec![0u8];
    blocks.extend(&stream);
    out.push(("block_header", "zstd-raw-raw".into(), blocks));
    let offer = ControlFrame::Offer {
        object: object(1),
        size: (text.len() * 2 + noise.len()) as u64,
        study: None,
        encoding: Some(Encoding::Zstd),
    };
    let mut with_offer = vec![1u8];
    with_offer.extend(offer.encode());
    with_offer.extend(&stream);
    out.push(("block_header", "offer-then-blocks".into(), with_offer));
    // One header at the bound, its body missing: refused without allocating it.
    let mut largest = vec![0u8];
    largest.extend(
        proto::sync::block::Header {
            kind: proto::sync::block::Kind::Zstd,
            raw_len: MAX_BLOCK,
            wire_len: proto::sync::block::MAX_WIRE_BLOCK,
        }
        .encode(),
    );
    out.push(("block_header", "largest-header-no-body".into(), largest));
    Ok(())
}

fn dimse(out: &mut Seeds) -> anyhow::Result<()> {
    use daemon::dimse;
    use dicom_ul::pdu::{
        AbortRQSource, AssociationRQ, PDataValue, PDataValueType, PresentationContextProposed,
        UserVariableItem,
    };
    use dicom_ul::Pdu;
    let ct = "1.2.840.10008.5.1.4.1.1.2";
    let store = dimse::store_request(7, ct, "1.2.826.0.1.3680043.2.1125.1.1");
    out.push(("dimse", "c-echo-rq".into(), dimse::echo_request(1)));
    out.push(("dimse", "c-store-rq".into(), store.clone()));
    if let Ok(command) = dimse::parse(&store) {
        let rsp = dimse::response(&command, dimse::C_STORE_RSP, 0xB000);
        out.push(("dimse", "c-store-rsp".into(), rsp));
    }
    let rq = Pdu::AssociationRQ(AssociationRQ {
        protocol_version: 1,
        calling_ae_title: "CT_ROOM_1".into(),
        called_ae_title: "TPG_AGENT".into(),
        application_context_name: "1.2.840.10008.3.1.1.1".into(),
        presentation_contexts: vec![
            PresentationContextProposed {
                id: 1,
                abstract_syntax: dimse::VERIFICATION_SOP_CLASS.into(),
                transfer_syntaxes: vec!["1.2.840.10008.1.2".into()],
            },
            PresentationContextProposed {
                id: 3,
                abstract_syntax: ct.into(),
                transfer_syntaxes: vec![
                    "1.2.840.10008.1.2.1".into(),
                    "1.2.840.10008.1.2.4.70".into(),
                ],
            },
        ],
        user_variables: vec![
            UserVariableItem::MaxLength(256 * 1024),
            UserVariableItem::ImplementationClassUID(dimse::IMPLEMENTATION_CLASS_UID.into()),
            UserVariableItem::ImplementationVersionName("TPG".into()),
        ],
    });
    let (first, second) = store.split_at(store.len() / 2);
    let pdata = |value_type, is_last, data: &[u8]| PDataValue {
        presentation_context_id: 3,
        value_type,
        is_last,
        data: data.to_vec(),
    };
    let session = [
        rq,
        Pdu::PData {
            data: vec![pdata(PDataValueType::Command, false, first)],
        },
        Pdu::PData {
            data: vec![
                pdata(PDataValueType::Command, true, second),
                pdata(
                    PDataValueType::Data,
                    true,
                    &[8, 0, 0x16, 0, 2, 0, 0, 0, b'1', 0],
                ),
            ],
        },
        Pdu::ReleaseRQ,
        Pdu::AbortRQ {
            source: AbortRQSource::ServiceUser,
        },
    ];
    let mut wire = Vec::new();
    for (n, pdu) in session.iter().enumerate() {
        let mut one = Vec::new();
        dicom_ul::write_pdu(&mut one, pdu)?;
        out.push(("dimse", format!("pdu-{n}"), one.clone()));
        wire.extend(one);
    }
    out.push(("dimse", "association".into(), wire));
    Ok(())
}

fn json_lines(events: &[Event]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    for e in events {
        out.extend(serde_json::to_vec(e)?);
        out.push(b'\n');
    }
    Ok(out)
}

fn events(out: &mut Seeds) -> anyhow::Result<()> {
    let clinic = ClinicId::new("jinzhou-03")?;
    let life = life(&clinic)?;
    let (clinic_side, gateway_side): (Vec<Event>, Vec<Event>) = life
        .iter()
        .cloned()
        .partition(|e| e.id.side == Side::Clinic);
    out.push((
        "replicated_events",
        "a-whole-case".into(),
        json_lines(&life)?,
    ));
    out.push((
        "replicated_events",
        "clinic-events".into(),
        json_lines(&clinic_side)?,
    ));
    out.push((
        "replicated_events",
        "gateway-events".into(),
        json_lines(&gateway_side)?,
    ));
    // A cancel that crossed the report on the link, and an event of the wrong origin.
    let mut crossing: Vec<Event> = life[..10].to_vec();
    let mut cancel = life[0].clone();
    cancel.id.seq = 6;
    cancel.seen = 4;
    cancel.kind = EventKind::Cancelled {
        reason: "patient went to the city".into(),
    };
    crossing.push(cancel);
    let mut forged = life[4].clone();
    forged.id.side = Side::Clinic;
    forged.id.seq = 7;
    crossing.push(forged);
    out.push((
        "replicated_events",
        "cancel-crosses-report".into(),
        json_lines(&crossing)?,
    ));
    // Numbers at their bounds: sequence numbers and cursors are the peer's to choose.
    let mut extreme = life[..2].to_vec();
    extreme[0].at_ms = i64::MIN;
    extreme[1].id.seq = u64::MAX;
    extreme[1].seen = u64::MAX;
    extreme[1].at_ms = i64::MAX;
    out.push((
        "replicated_events",
        "extreme-numbers".into(),
        json_lines(&extreme)?,
    ));
    Ok(())
}

fn forms(out: &mut Seeds) {
    let boundary = "----tpgBoundary7MA4YWxkTrZu0gW";
    let multipart = format!(
        "0multipart/form-data; boundary={boundary}\n\
         --{boundary}\r\n\
         Content-Disposition: form-data; name=\"csrf\"\r\n\r\n\
         0123456789abcdef0123456789abcdef\r\n\
         --{boundary}\r\n\
         Content-Disposition: form-data; name=\"question\"\r\n\r\n\
         pneumonia?\r\n\
         --{boundary}\r\n\
         Content-Disposition: form-data; name=\"studies\"\r\n\r\n\
         1.2.826.0.1.3680043.2.1125.1\r\n\
         --{boundary}\r\n\
         Content-Disposition: form-data; name=\"attachment\"; filename=\"referral.pdf\"\r\n\
         Content-Type: application/pdf\r\n\r\n\
         %PDF-1.4 a letter\r\n\
         --{boundary}\r\n\
         Content-Disposition: form-data; name=\"files\"; filename=\"photo.jpg\"\r\n\
         Content-Type: image/jpeg\r\n\r\n\
         \u{ff}\u{d8}\u{ff}\u{e0}\r\n\
         --{boundary}--\r\n"
    );
    out.push((
        "multipart_and_forms",
        "new-case-upload".into(),
        multipart.into_bytes(),
    ));
    for (name, body) in [
        (
            "act-form",
            "1csrf=0123456789abcdef&given_by=%E6%82%A3%E8%80%85&method=written&question=4&text=38.5+at+night",
        ),
        (
            "report-form",
            "1csrf=x&findings=consolidation&impression=pneumonia&recommendation=&confirm_incomplete=true&specialist=li",
        ),
        ("checkboxes", "1studies=1.2.3&studies=1.2.4&studies=%zz&d"),
        (
            "new-consultation",
            r#"2{"patient":{"id":"P-0001","name":"Test^Patient","sex":"F","birth_date":"1980-02-29"},"clinical_summary":"cough","question":"pneumonia?","specialty":"radiology","urgency":"urgent","consent":{"given_by":"patient","method":"written"},"studies":["1.2.3"],"submit":true}"#,
        ),
        (
            "action-body",
            r#"2{"text":"any fever?","reason":null,"question":4,"study_instance_uids":["1.2.3"],"specialist":"li","confirm_incomplete":false}"#,
        ),
        ("priority", r#"2{"priority":"emergency","path":"/tmp/x.dcm","to":"/backups/b1"}"#),
        (
            "headers",
            "3Host: gateway.local:8443\nCookie: tpg_session_8443=abc; tpg_lang=en; tpg_login_csrf=q\nAccept-Language: en-GB,en;q=0.9,zh;q=0.8\ncases/01JG9Y2Z3X0000000000000000/act\nclinics/jinzhou-03\n",
        ),
    ] {
        out.push(("multipart_and_forms", name.into(), body.as_bytes().to_vec()));
    }
}

/// DICOMweb and FHIR requests as OHIF, `dicomweb-client` and a hospital system send them (the
/// STOW-RS and WADO-RS seeds are written with DICOM files by `write_seed_corpora`).
fn dicomweb(out: &mut Seeds) {
    for (name, body) in [
        (
            "accept-and-dates",
            "1application/dicom+json, application/json;q=0.9\n\
             multipart/related; type=\"application/octet-stream\"; transfer-syntax=*\n\
             multipart/related; type=\"application/dicom\"; transfer-syntax=1.2.840.10008.1.2.1, */*;q=0.1\n\
             multipart/related; type=\"image/jls\"; q=0.5, image/jpeg;q=0.8\n\
             ge2026-12-01\n\
             2026-12-05T08:00:00+08:00\n\
             0020000D",
        ),
        (
            "qido-ohif",
            "1PatientName=D%C3%96E*&StudyDate=20261201-20261205&ModalitiesInStudy=CT&limit=101&offset=0&includefield=00081030,00080060,StudyDescription&fuzzymatching=true",
        ),
        (
            "qido-uids",
            "1StudyInstanceUID=1.2.3,1.2.4&AccessionNumber=A?12&StudyTime=080000-&includefield=all&_=1733380000",
        ),
    ] {
        out.push(("dicomweb", name.into(), body.as_bytes().to_vec()));
    }
}

fn configs(out: &mut Seeds) {
    let gateway = r#"data_dir = "data"
min_free_mib = 256

[link]
listen = "0.0.0.0:4433"
cert = "cert.pem"
key = "key.pem"
ca = "ca.pem"
crl = "crl.pem"
crl_reload_secs = 10
keep_alive_secs = 5
idle_timeout_secs = 60
heartbeat_secs = 5
handshake_timeout_secs = 15

[web]
listen = "127.0.0.1:8080"
cert = "web-cert.pem"
key = "web-key.pem"

[metrics]
listen = "127.0.0.1:9100"

[routing]
file = "routing.toml"
check_secs = 30

[alerts]
link_down_minutes = 15
backlog_age_minutes = 120
cert_expiry_days = 30
disk_percent = 90

[[forward]]
name = "pacs-main"
ae_title = "PACS"
address = "10.0.0.5:104"
calling_ae = "TPG_GATEWAY"
associations = 2
modalities = ["CT", "CR"]
clinics = ["jinzhou-03"]
retry_max_secs = 300
"#;
    let agent = r#"data_dir = "data"

[link]
gateway = "gateway.example.org:4433"
server_name = "gateway.example.org"
cert = "cert.pem"
key = "key.pem"
ca = "ca.pem"
reconnect_initial_ms = 500
reconnect_max_secs = 30
keep_alive_secs = 5
idle_timeout_secs = 60
heartbeat_secs = 5
handshake_timeout_secs = 15
upload_limit_kib_per_sec = 1024
routine_limit_kib_per_sec = 256
full_rate_hours = "20:00-07:00"
utc_offset = "+08:00"

[dicom]
listen = "0.0.0.0:11112"
ae_title = "TPG_AGENT"
allowed_calling_ae_titles = ["CT_ROOM_1", "US_1"]

[web]
listen = "127.0.0.1:8081"

[metrics]
listen = "127.0.0.1:9101"
"#;
    let routing = r#"[sla]
emergency_accept_minutes = 30
urgent_accept_minutes = 240
routine_accept_minutes = 2880

[[specialist]]
id = "li"
name = "Li Wei"
specialties = ["radiology"]
qualification = "attending radiologist"
years_independent = 12
utc_offset = "+08:00"
duty = ["mon-fri 08:00-17:00", "sat 08:00-12:00"]

[[specialist]]
id = "head"
name = "Zhao Min"
specialties = ["radiology", "cardiology"]
qualification = "head of department"
years_independent = 25
utc_offset = "-03:30"
duty = ["daily 20:00-08:00", "sun,wed 09:00-12:00"]

[[pool]]
id = "radiology"
members = ["li"]
lead = "head"

[[rule]]
id = "ecg"
pool = "radiology"
specialty = ["cardiology"]
modality = ["ECG"]
urgency = ["emergency"]
clinic = ["jinzhou-03"]

[[rule]]
id = "everything-else"
pool = "radiology"
"#;
    for (name, text) in [
        ("gateway.toml", gateway),
        ("agent.toml", agent),
        ("routing.toml", routing),
    ] {
        out.push(("configs", name.into(), text.as_bytes().to_vec()));
        // The same file with every number at TOML's largest integer: values are outside input
        // too, and arithmetic on them must not overflow.
        let extreme: String = text
            .lines()
            .map(|line| match line.split_once(" = ") {
                Some((key, value)) if value.trim().parse::<i64>().is_ok() => {
                    format!("{key} = {}\n", i64::MAX)
                }
                _ => format!("{line}\n"),
            })
            .collect();
        out.push((
            "configs",
            format!("extreme-numbers-{name}"),
            extreme.into_bytes(),
        ));
    }
}

fn crl(out: &mut Seeds) -> anyhow::Result<()> {
    use certs::pki::{Pki, Validity};
    let dir = tempfile::tempdir()?;
    let mut pki = Pki::init(dir.path(), certs::pki::DEFAULT_CA_NAME, 30, false)?;
    let empty = std::fs::read(dir.path().join("crl.pem"))?;
    out.push(("crl", "empty-crl.pem".into(), empty));
    for clinic in ["jinzhou-03", "beizhen-01"] {
        let id = ClinicId::new(clinic)?;
        pki.issue_clinic(
            &id,
            Some("Township clinic"),
            Validity::days_from_now(30)?,
            false,
        )?;
        pki.revoke(&id, None, "laptop stolen")?;
    }
    let pem = std::fs::read(dir.path().join("crl.pem"))?;
    let der = certs::tls::read_crls(&dir.path().join("crl.pem"))?
        .into_iter()
        .next()
        .map(|d| d.as_ref().to_vec())
        .unwrap_or_default();
    out.push(("crl", "two-revoked.pem".into(), pem));
    out.push(("crl", "two-revoked.der".into(), der));
    Ok(())
}
