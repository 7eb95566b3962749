//! Consultations over the real link: a request written while the link is down reaches the
//! gateway when it comes up, is answered with `delivered`, and the case goes back and forth —
//! question, answer, signed report, acknowledgement — with identical timelines at both ends.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use daemon::accounts::Role;
use harness::people::{person, raw_http, request, sign_up, PASSWORD};
use harness::{
    free_udp_addr, http, http_get_as, wait_until, PilotDir, RunningAgent, RunningGateway, Timings,
};
use proto::consult::{ConsultationId, EventKind, Report, State, Urgency};
use proto::ClinicId;

const WAIT: Duration = Duration::from_secs(30);

use daemon::now_ms;

fn state_at(site: &daemon::replicate::Site, id: &ConsultationId) -> Option<State> {
    site.log.get(id).unwrap().map(|f| f.consultation.state)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consultation_goes_from_an_offline_request_to_an_acknowledged_report_over_the_link() {
    let dir = tempfile::tempdir().unwrap();
    let pilot = PilotDir::create(dir.path(), Timings::default()).unwrap();
    let link = free_udp_addr();
    let bundle = pilot.enrol("jinzhou", "Jinzhou").unwrap();
    let agent = RunningAgent::start(
        pilot.agent_config("jinzhou", &bundle, link).unwrap(),
        Default::default(),
    )
    .unwrap();
    let jz = ClinicId::new("jinzhou").unwrap();
    let id = ConsultationId::new(now_ms() as u64, [9; 10]);
    let clinic = &agent.handle.consult;
    // Written at the clinic while no gateway is there.
    for kind in request("P-100", "radiology", Urgency::Urgent, now_ms()) {
        clinic.append(&jz, &id, "dr.wang", now_ms(), kind).unwrap();
    }
    assert_eq!(state_at(clinic, &id), Some(State::Submitted));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let gw = RunningGateway::start(pilot.gateway_config(link).unwrap()).unwrap();
    let hospital = &gw.handle.consult;
    assert!(
        wait_until(WAIT, || state_at(clinic, &id) == Some(State::Delivered)).await,
        "the clinic sees its request delivered once the link is up"
    );
    for (actor, kind) in [
        (
            "system",
            EventKind::Assigned {
                specialist: "li".into(),
                rule: "radiology".into(),
                reason: "test".into(),
            },
        ),
        (
            "li",
            EventKind::Accepted {
                specialist: "li".into(),
            },
        ),
        (
            "li",
            EventKind::QuestionAsked {
                specialist: "li".into(),
                text: "how many days of fever?".into(),
            },
        ),
    ] {
        hospital.append(&jz, &id, actor, now_ms(), kind).unwrap();
    }
    assert!(
        wait_until(WAIT, || state_at(clinic, &id)
            == Some(State::AwaitingAnswer))
        .await,
        "the question reaches the clinic"
    );
    let question = clinic
        .log
        .get(&id)
        .unwrap()
        .unwrap()
        .consultation
        .open_questions[0];
    clinic
        .append(
            &jz,
            &id,
            "dr.wang",
            now_ms(),
            EventKind::QuestionAnswered {
                question,
                text: "five".into(),
            },
        )
        .unwrap();
    assert!(
        wait_until(WAIT, || state_at(hospital, &id) == Some(State::Accepted)).await,
        "the answer reaches the specialist"
    );
    // The specialist's worklist flags it until they act on the case again.
    let li = sign_up(
        &gw.handle.accounts,
        person("li", Role::Specialist, "Li Wei", Some("li"), None),
    );
    let web = gw.web_addr;
    let rows: serde_json::Value = tokio::task::spawn_blocking(move || {
        serde_json::from_str(&http_get_as(web, "/api/v1/consultations", &li).unwrap()).unwrap()
    })
    .await
    .unwrap();
    assert_eq!(rows[0]["id"], id.as_str(), "{rows}");
    assert_eq!(rows[0]["answer_received"], true, "{rows}");
    assert_eq!(rows[0]["new"], false, "accepted: not new");
    hospital
        .append(
            &jz,
            &id,
            "li",
            now_ms(),
            EventKind::Reported {
                specialist: "li".into(),
                report: Report {
                    findings: "right lower lobe consolidation".into(),
                    impression: "pneumonia".into(),
                    recommendation: "antibiotics".into(),
                    signer_name: "Li Wei".into(),
                    signer_qualification: "attending radiologist".into(),
                    signed_at_ms: now_ms(),
                    signed_before_complete: None,
                },
            },
        )
        .unwrap();
    assert!(
        wait_until(WAIT, || state_at(clinic, &id) == Some(State::Reported)).await,
        "the signed report reaches the clinic"
    );
    clinic
        .append(&jz, &id, "dr.wang", now_ms(), EventKind::ReportAcknowledged)
        .unwrap();
    assert!(
        wait_until(WAIT, || state_at(hospital, &id)
            == Some(State::Acknowledged))
        .await,
        "the acknowledgement reaches the hospital"
    );
    let (at_clinic, at_hospital) = (
        clinic.log.timeline(&id).unwrap(),
        hospital.log.timeline(&id).unwrap(),
    );
    assert_eq!(at_clinic, at_hospital, "one timeline at both ends");
    assert_eq!(at_clinic.len(), 10);
    // Readable at the clinic with the gateway gone.
    gw.stop().await.unwrap();
    let report = clinic.log.get(&id).unwrap().unwrap().consultation.report;
    assert_eq!(report.unwrap().impression, "pneumonia");
    agent.stop().await.unwrap();
}

/// `config` with `roster` as its `routing.toml`, checked every second.
fn with_routing(config: &gateway::GatewayConfig, roster: &str) -> gateway::GatewayConfig {
    harness::people::with_routing(config, roster).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivered_request_is_routed_to_the_on_duty_specialist_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let pilot = PilotDir::create(dir.path(), Timings::default()).unwrap();
    let link = free_udp_addr();
    let gw_config = pilot.gateway_config(link).unwrap();
    let gw = RunningGateway::start(with_routing(
        &gw_config,
        r#"
[sla]
emergency_accept_minutes = 10

[[specialist]]
id = "li"
name = "Li Wei"
specialties = ["radiology"]
qualification = "attending radiologist"
years_independent = 12
utc_offset = "+08:00"
duty = ["daily 00:00-24:00"]

[[specialist]]
id = "sun"
name = "Sun Lei"
specialties = ["cardiology"]
qualification = "cardiologist"
years_independent = 15
utc_offset = "+08:00"
duty = ["daily 00:00-24:00"]

[[pool]]
id = "radiology"
members = ["li"]
lead = "li"

[[pool]]
id = "cardiology"
members = ["sun"]
lead = "sun"

[[rule]]
id = "heart"
pool = "cardiology"
specialty = ["cardiology"]

[[rule]]
id = "images"
pool = "radiology"
"#,
    ))
    .unwrap();
    let bundle = pilot.enrol("zhuanghe", "Zhuanghe").unwrap();
    let agent = RunningAgent::start(
        pilot.agent_config("zhuanghe", &bundle, link).unwrap(),
        Default::default(),
    )
    .unwrap();
    let zh = ClinicId::new("zhuanghe").unwrap();
    let id = ConsultationId::new(now_ms() as u64, [4; 10]);
    let clinic = &agent.handle.consult;
    for kind in request("P-200", "cardiology", Urgency::Emergency, now_ms()) {
        clinic.append(&zh, &id, "dr.zhang", now_ms(), kind).unwrap();
    }
    // A study still at the clinic: none of its images has reached the hospital.
    let attach = EventKind::StudiesAttached {
        study_instance_uids: vec!["1.2.826.0.1.3680043.10.1200.1".into()],
        attachments: Vec::new(),
    };
    clinic
        .append(&zh, &id, "dr.zhang", now_ms(), attach)
        .unwrap();
    assert!(
        wait_until(WAIT, || state_at(clinic, &id) == Some(State::Assigned)).await,
        "routed, and the clinic sees it"
    );
    let c = clinic.log.get(&id).unwrap().unwrap().consultation;
    assert_eq!(c.assignee.as_deref(), Some("sun"));
    let timeline = gw.handle.consult.log.timeline(&id).unwrap();
    let reason = timeline
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::Assigned { rule, reason, .. } => Some(format!("{rule}: {reason}")),
            _ => None,
        })
        .unwrap();
    assert!(reason.starts_with("heart: rule heart"), "{reason}");

    // The specialist works the case through the API, as themselves.
    let web = gw.web_addr;
    for (name, specialist, qualification) in
        [("sun", "sun", Some("cardiologist")), ("li", "li", None)]
    {
        sign_up(
            &gw.handle.accounts,
            person(
                name,
                Role::Specialist,
                &format!("Dr {name}"),
                Some(specialist),
                qualification,
            ),
        );
    }
    let (status, body) = http(web, "GET", "/api/v1/consultations", None, None).unwrap();
    assert_eq!(status, 401, "anonymous calls are refused");
    assert!(body.contains("\"code\":\"unauthenticated\""), "{body}");
    let (status, body) = http(
        web,
        "POST",
        "/api/v1/login",
        None,
        Some(&format!(r#"{{"user":"sun","password":"{PASSWORD}"}}"#)),
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let sun: serde_json::Value = serde_json::from_str(&body).unwrap();
    // Guessing a password is throttled: after five failures, 429 with Retry-After.
    let guess = r#"{"user":"li","password":"not the password"}"#;
    for _ in 0..5 {
        let (status, _) = http(web, "POST", "/api/v1/login", None, Some(guess)).unwrap();
        assert_eq!(status, 401);
    }
    let (status, body) = http(web, "POST", "/api/v1/login", None, Some(guess)).unwrap();
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("too_many_attempts"), "{body}");
    let sun = sun["token"].as_str().unwrap().to_owned();
    let li = gw.handle.accounts.script_token("li").unwrap();
    let list: serde_json::Value =
        serde_json::from_str(&http_get_as(web, "/api/v1/consultations", &sun).unwrap()).unwrap();
    assert_eq!(list[0]["id"], id.as_str());
    let assigned_at = timeline
        .iter()
        .find(|e| matches!(e.kind, EventKind::Assigned { .. }))
        .unwrap()
        .at_ms;
    assert_eq!(
        list[0]["accept_by_ms"].as_i64(),
        Some(assigned_at + 10 * 60_000),
        "the roster's SLA dates the acceptance deadline"
    );
    let case = format!("/api/v1/consultations/{id}");
    let (status, _) = http(web, "GET", &case, Some(&li), None).unwrap();
    assert_eq!(status, 404, "another specialist does not see the case");
    let (status, body) = http(web, "POST", &format!("{case}/accept"), Some(&li), None).unwrap();
    assert_eq!(
        status, 404,
        "only the assignee accepts; another does not see it: {body}"
    );
    let (status, body) = http(web, "POST", &format!("{case}/accept"), Some(&sun), None).unwrap();
    assert_eq!(status, 200, "{body}");
    // Signing before the images have arrived needs the specialist's explicit confirmation.
    let (status, body) = http(
        web,
        "POST",
        &format!("{case}/report"),
        Some(&sun),
        Some(r#"{"findings":"ST elevation","impression":"anterior STEMI","recommendation":"transfer for PCI"}"#),
    )
    .unwrap();
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("\"code\":\"images_incomplete\""), "{body}");
    assert!(
        body.contains("confirm_incomplete"),
        "the error names the fix: {body}"
    );
    let (status, body) = http(
        web,
        "POST",
        &format!("{case}/report"),
        Some(&sun),
        Some(r#"{"findings":"ST elevation","impression":"anterior STEMI","recommendation":"transfer for PCI","confirm_incomplete":true}"#),
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(
        wait_until(WAIT, || state_at(clinic, &id) == Some(State::Reported)).await,
        "the report reaches the clinic"
    );
    let report = clinic
        .log
        .get(&id)
        .unwrap()
        .unwrap()
        .consultation
        .report
        .unwrap();
    assert_eq!(
        (
            report.signer_name.as_str(),
            report.signer_qualification.as_str()
        ),
        ("Dr sun", "cardiologist"),
        "signed by the authenticated specialist"
    );
    assert_eq!(
        report.signed_before_complete,
        Some(proto::consult::Arrival {
            instances: 0,
            expected: None
        }),
        "the report says it was signed before the images arrived, at both sites"
    );
    let detail: serde_json::Value =
        serde_json::from_str(&http_get_as(web, &case, &sun).unwrap()).unwrap();
    assert_eq!(detail["consultation"]["state"], "reported");
    let metrics = gw.metrics();
    for series in [
        "tpg_consultations{state=\"reported\",urgency=\"emergency\"} 1",
        "tpg_consultation_time_to_accept_seconds_count 1",
        "tpg_consultation_time_to_report_seconds_count 1",
        "tpg_sla_breaches_total{urgency=\"emergency\"} 0",
    ] {
        assert!(metrics.contains(series), "{series} missing:\n{metrics}");
    }
    assert!(detail["timeline"].as_array().unwrap().len() >= 7);
    agent.stop().await.unwrap();
    gw.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clinic_never_sees_another_clinics_consultations() {
    let dir = tempfile::tempdir().unwrap();
    let pilot = PilotDir::create(dir.path(), Timings::default()).unwrap();
    let link = free_udp_addr();
    let gw = RunningGateway::start(pilot.gateway_config(link).unwrap()).unwrap();
    let mut agents = Vec::new();
    for clinic in ["jinzhou", "pulandian"] {
        let bundle = pilot.enrol(clinic, clinic).unwrap();
        let agent = RunningAgent::start(
            pilot.agent_config(clinic, &bundle, link).unwrap(),
            Default::default(),
        )
        .unwrap();
        let token = sign_up(
            &agent.handle.accounts,
            person("doc", Role::Doctor, "Doctor", None, None),
        );
        agents.push((agent, token));
    }
    let (a, a_token) = &agents[0];
    let (b, b_token) = &agents[1];
    let body = r#"{"patient":{"id":"P-1","name":"","sex":"","birth_date":""},"question":"q?","specialty":"radiology","urgency":"routine","consent":{"given_by":"patient","method":"written"},"submit":true}"#;
    let (status, text) = http(
        a.web_addr,
        "POST",
        "/api/v1/consultations",
        Some(a_token),
        Some(body),
    )
    .unwrap();
    assert_eq!(status, 200, "{text}");
    let created: serde_json::Value = serde_json::from_str(&text).unwrap();
    let id = created["consultation"]["id"].as_str().unwrap().to_owned();
    let id_parsed = ConsultationId::parse(&id).unwrap();
    assert!(
        wait_until(WAIT, || state_at(&gw.handle.consult, &id_parsed)
            == Some(State::Delivered))
        .await,
        "delivered at the hospital"
    );
    // A referral letter attached at the clinic reaches the hospital.
    let pdf = b"%PDF-1.4\n% referral letter\n%%EOF\n";
    let attach = format!("/api/v1/consultations/{id}/attachments?name=referral.pdf");
    let post_pdf = |bytes: &[u8]| {
        let head = format!(
            "POST {attach} HTTP/1.0\r\nHost: {}\r\nAuthorization: Bearer {a_token}\r\nContent-Type: application/pdf",
            a.web_addr
        );
        let (status, answer) = raw_http(a.web_addr, &head, bytes).unwrap();
        (status, answer.split_once("\r\n\r\n").unwrap().1.to_owned())
    };
    let (status, text) = post_pdf(b"not a pdf");
    assert_eq!(status, 400, "{text}");
    let (status, text) = post_pdf(pdf);
    assert_eq!(status, 200, "{text}");
    let detail: serde_json::Value = serde_json::from_str(&text).unwrap();
    let object = detail["consultation"]["attachments"][0]["object"]
        .as_str()
        .unwrap()
        .to_owned();
    let admin = gw.admin_token().unwrap();
    let url = format!("/api/v1/consultations/{id}/attachments/{object}");
    assert!(
        wait_until(WAIT, || http_get_as(gw.web_addr, &url, &admin).is_ok()).await,
        "the attachment arrives"
    );
    assert_eq!(
        http_get_as(gw.web_addr, &url, &admin).unwrap().as_bytes(),
        pdf
    );
    let studies = http_get_as(gw.web_addr, "/api/v1/clinics/jinzhou/studies", &admin).unwrap();
    assert!(
        studies.contains("\"studies\":[]"),
        "an attachment is not a study: {studies}"
    );
    // Pulandian's API lists nothing of Jinzhou's and does not find it by id.
    let list = http_get_as(b.web_addr, "/api/v1/consultations", b_token).unwrap();
    assert_eq!(list.trim(), "[]");
    let (status, _) = http(
        b.web_addr,
        "GET",
        &format!("/api/v1/consultations/{id}"),
        Some(b_token),
        None,
    )
    .unwrap();
    assert_eq!(status, 404);
    // A token of one clinic opens nothing at the other.
    let (status, _) = http(
        b.web_addr,
        "GET",
        "/api/v1/consultations",
        Some(a_token),
        None,
    )
    .unwrap();
    assert_eq!(status, 401);
    // Nor did anything of Jinzhou's reach Pulandian's log over the link.
    let pulandian = ClinicId::new("pulandian").unwrap();
    assert!(b.handle.consult.log.get(&id_parsed).unwrap().is_none());
    assert!(b
        .handle
        .consult
        .log
        .list(&ClinicId::new("jinzhou").unwrap())
        .unwrap()
        .is_empty());
    assert!(b.handle.consult.log.list(&pulandian).unwrap().is_empty());
    for (agent, _) in agents {
        agent.stop().await.unwrap();
    }
    gw.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_gateway_route_refuses_the_callers_it_should() {
    let dir = tempfile::tempdir().unwrap();
    let pilot = PilotDir::create(dir.path(), Timings::default()).unwrap();
    let gw = RunningGateway::start(pilot.gateway_config(free_udp_addr()).unwrap()).unwrap();
    let site = &gw.handle.consult;
    let jz = ClinicId::new("jinzhou").unwrap();
    let id = ConsultationId::new(now_ms() as u64, [8; 10]);
    // A case from Jinzhou, assigned to sun.
    for kind in request("P-300", "radiology", Urgency::Routine, now_ms()) {
        site.log
            .append(&jz, proto::consult::Side::Clinic, &id, "dr", now_ms(), kind)
            .unwrap();
    }
    for kind in [
        EventKind::Delivered,
        EventKind::Assigned {
            specialist: "sun".into(),
            rule: "manual".into(),
            reason: "test".into(),
        },
    ] {
        site.append(&jz, &id, "system", now_ms(), kind).unwrap();
    }
    let accounts = &gw.handle.accounts;
    for (name, role, specialist) in [
        ("li", Role::Specialist, Some("li")),
        ("boss", Role::Admin, None),
    ] {
        sign_up(accounts, person(name, role, name, specialist, None));
    }
    let case = format!("/api/v1/consultations/{id}");
    let dw = "/dicomweb/studies/1.2.3".to_owned();
    let dwi = format!("{dw}/series/1.2/instances/1.2.3.4");
    // (method, path, body, expected status for: nobody, a specialist not on the case, an
    // admin, and the audit record the administrator's call writes: every read of patient data
    // and every change is recorded, nothing else is)
    type Row<'a> = (&'a str, String, Option<&'a str>, [u16; 3], Option<&'a str>);
    let routes: Vec<Row> = vec![
        ("GET", "/api/v1/me".into(), None, [401, 200, 200], None),
        (
            "GET",
            "/api/v1/consultations".into(),
            None,
            [401, 200, 200],
            Some("view_worklist"),
        ),
        (
            "GET",
            "/api/v1/consultations?scope=all".into(),
            None,
            [401, 200, 200],
            Some("view_worklist"),
        ),
        ("GET", case.clone(), None, [401, 404, 200], Some("view")),
        (
            "GET",
            format!("{case}/attachments/nothing"),
            None,
            [401, 404, 404],
            None,
        ),
        (
            "GET",
            "/api/v1/clinics/jinzhou/studies".into(),
            None,
            [401, 200, 200],
            Some("view_studies"),
        ),
        // DICOMweb: a search answers what the user may read (nothing here: no study has
        // arrived, so nothing is recorded); a study nobody may read is absent for everyone.
        ("GET", "/dicomweb/studies".into(), None, [401, 200, 200], None),
        ("GET", "/dicomweb/series".into(), None, [401, 200, 200], None),
        ("GET", "/dicomweb/instances".into(), None, [401, 200, 200], None),
        ("GET", format!("{dw}/series"), None, [401, 200, 200], None),
        ("GET", format!("{dw}/instances"), None, [401, 200, 200], None),
        ("GET", format!("{dw}/series/1.2/instances"), None, [401, 200, 200], None),
        ("GET", dw.clone(), None, [401, 404, 404], None),
        // STOW-RS of a body that is not multipart/related: refused as such once signed in.
        ("POST", "/dicomweb/studies".into(), Some("{}"), [401, 415, 415], None),
        ("POST", dw.clone(), Some("{}"), [401, 415, 415], None),
        ("GET", format!("{dw}/metadata"), None, [401, 404, 404], None),
        ("GET", format!("{dw}/thumbnail"), None, [401, 404, 404], None),
        ("GET", format!("{dw}/series/1.2"), None, [401, 404, 404], None),
        ("GET", format!("{dw}/series/1.2/metadata"), None, [401, 404, 404], None),
        ("GET", format!("{dw}/series/1.2/thumbnail"), None, [401, 404, 404], None),
        ("GET", dwi.clone(), None, [401, 404, 404], None),
        ("GET", format!("{dwi}/metadata"), None, [401, 404, 404], None),
        ("GET", format!("{dwi}/rendered"), None, [401, 404, 404], None),
        ("GET", format!("{dwi}/thumbnail"), None, [401, 404, 404], None),
        ("GET", format!("{dwi}/frames/1"), None, [401, 404, 404], None),
        ("GET", format!("{dwi}/frames/1/rendered"), None, [401, 404, 404], None),
        ("GET", format!("{dwi}/bulk/7FE00010"), None, [401, 404, 404], None),
        // FHIR: the capability statement is public; a case's resources are the case's.
        ("GET", "/fhir/r4/metadata".into(), None, [200, 200, 200], None),
        (
            "GET",
            "/fhir/r4/ServiceRequest".into(),
            None,
            [401, 200, 200],
            Some("fhir_search"),
        ),
        (
            "GET",
            format!("/fhir/r4/ServiceRequest/{id}"),
            None,
            [401, 404, 200],
            Some("fhir_read"),
        ),
        // OHIF is not installed here: its page still needs a session first.
        ("GET", "/ohif".into(), None, [303, 303, 303], None),
        ("GET", "/ohif/".into(), None, [303, 404, 404], None),
        ("GET", "/ohif/app-config.js".into(), None, [404, 404, 404], None),
        ("GET", "/api/v1/forward".into(), None, [401, 403, 200], None),
        (
            "POST",
            "/api/v1/admin/backup".into(),
            Some(r#"{"to":"/"}"#),
            [401, 403, 409],
            Some("backup"),
        ),
        // A specialist not on the case learns nothing by acting on it: 404, as for reading;
        // each refusal of a case that exists is in the audit log.
        (
            "POST",
            format!("{case}/accept"),
            None,
            [401, 404, 403],
            Some("refused_accept"),
        ),
        (
            "POST",
            format!("{case}/take"),
            None,
            [401, 404, 403],
            Some("refused_take"),
        ),
        (
            "POST",
            format!("{case}/ask"),
            Some(r#"{"text":"?"}"#),
            [401, 404, 403],
            Some("refused_ask"),
        ),
        (
            "POST",
            format!("{case}/report"),
            Some(r#"{"impression":"x"}"#),
            [401, 404, 403],
            Some("refused_report"),
        ),
        (
            "POST",
            format!("{case}/decline"),
            Some(r#"{"reason":"x"}"#),
            [401, 404, 403],
            Some("refused_decline"),
        ),
        (
            "POST",
            format!("{case}/nonsense"),
            None,
            [401, 404, 404],
            None,
        ),
        (
            "POST",
            "/api/v1/login".into(),
            Some(r#"{"user":"nobody","password":"wrong"}"#),
            [401, 401, 401],
            Some("login_failed"),
        ),
        // The web pages: anonymous visitors are sent to log in (303); administrators'
        // pages refuse specialists; a form without its CSRF token is refused (403).
        ("GET", "/login".into(), None, [200, 200, 200], None),
        ("GET", "/lang/en".into(), None, [303, 303, 303], None),
        ("GET", "/assets/app.css".into(), None, [200, 200, 200], None),
        ("GET", "/assets/app.js".into(), None, [200, 200, 200], None),
        ("GET", "/".into(), None, [303, 303, 303], None),
        (
            "GET",
            "/worklist".into(),
            None,
            [303, 200, 200],
            Some("view_worklist"),
        ),
        // The search only narrows what each caller may list; what it shows is recorded.
        (
            "GET",
            "/worklist?all=1&q=p-300&state=assigned&urgency=routine&clinic=jinzhou&from=2000-01-01&sort=urgency&dir=asc".into(),
            None,
            [303, 200, 200],
            Some("view_worklist"),
        ),
        (
            "GET",
            "/api/v1/consultations?scope=all&q=P-300&limit=5".into(),
            None,
            [401, 200, 200],
            Some("view_worklist"),
        ),
        // A case number leads to the case, or to the search for it (no patient data shown).
        (
            "GET",
            "/cases/JI-2026-0001".into(),
            None,
            [303, 303, 303],
            None,
        ),
        (
            "GET",
            format!("/cases/{id}"),
            None,
            [303, 404, 200],
            Some("view"),
        ),
        (
            "GET",
            format!("/cases/{id}/viewer"),
            None,
            [303, 404, 200],
            Some("view_images"),
        ),
        (
            "GET",
            format!("/cases/{id}/images/0"),
            None,
            [303, 404, 404],
            None,
        ),
        (
            "GET",
            format!("/cases/{id}/waveforms/0"),
            None,
            [303, 404, 404],
            None,
        ),
        (
            "GET",
            "/assets/viewer.js".into(),
            None,
            [200, 200, 200],
            None,
        ),
        (
            "POST",
            format!("/cases/{id}/act/accept"),
            None,
            [303, 403, 403],
            None,
        ),
        // A draft and the report's preview are forms of the case like its actions.
        (
            "POST",
            format!("/cases/{id}/draft/report"),
            None,
            [303, 403, 403],
            None,
        ),
        (
            "POST",
            format!("/cases/{id}/report/preview"),
            None,
            [303, 403, 403],
            None,
        ),
        ("GET", "/admin/links".into(), None, [303, 403, 200], None),
        ("GET", "/admin/alerts".into(), None, [303, 403, 200], None),
        // Without its CSRF token an acknowledgement is refused before it is recorded.
        (
            "POST",
            "/admin/alerts/ack".into(),
            None,
            [303, 403, 403],
            None,
        ),
        ("GET", "/admin/roster".into(), None, [303, 403, 200], None),
        (
            "POST",
            "/admin/roster/pool/add".into(),
            None,
            [303, 403, 403],
            None,
        ),
        (
            "POST",
            "/admin/roster/pool/remove".into(),
            None,
            [303, 403, 403],
            None,
        ),
        (
            "POST",
            "/admin/roster/duty".into(),
            None,
            [303, 403, 403],
            None,
        ),
        ("GET", "/admin/users".into(), None, [303, 403, 200], None),
        ("POST", "/admin/users".into(), None, [303, 403, 403], None),
        (
            "POST",
            "/admin/users/li/deactivate".into(),
            None,
            [303, 403, 403],
            None,
        ),
        (
            "POST",
            "/admin/users/li/reactivate".into(),
            None,
            [303, 403, 403],
            None,
        ),
        (
            "POST",
            "/admin/users/li/details".into(),
            None,
            [303, 403, 403],
            None,
        ),
        ("GET", "/admin/audit".into(), None, [303, 403, 200], None),
        ("POST", "/logout".into(), None, [303, 403, 403], None),
        (
            "POST",
            "/api/v1/logout".into(),
            None,
            [401, 204, 204],
            Some("logout"),
        ),
        // Last: an administrator's assignment changes the case.
        (
            "POST",
            format!("{case}/assign"),
            Some(r#"{"specialist":"li"}"#),
            [401, 404, 200],
            Some("assign"),
        ),
    ];
    // Every route the gateway serves is in the table above: a new route must say who may
    // call it and what it records before this test passes.
    let declared: Vec<&str> = routes
        .iter()
        .map(|r| r.1.split('?').next().unwrap())
        .collect();
    for pattern in served_routes("gateway/src") {
        assert!(
            declared.iter().any(|path| route_matches(&pattern, path)),
            "the route {pattern} is not in this test's table: declare who may call it and what it records"
        );
    }
    // The access policy, asked directly, says what the API answered: for each action on the
    // case, a refusal as hidden is 404, as forbidden 403, and an allowed action is refused,
    // if at all, only by the consultation's own rules (409) — before any change is made.
    let timeline = site.log.timeline(&id).unwrap();
    let folded = proto::consult::Folded::fold(&timeline).unwrap();
    let policy_case = gateway::access::Case {
        consultation: &folded.consultation,
        timeline: &timeline,
        my_pool: None,
    };
    let li_user = accounts.get("li").unwrap().unwrap();
    let boss_user = accounts.get("boss").unwrap().unwrap();
    let mut asked = 0;
    for (method, path, _, expected, _) in &routes {
        let Some(name) = path.strip_prefix(&format!("{case}/")) else {
            continue;
        };
        if *method != "POST" || name.contains('/') {
            continue;
        }
        let action = gateway::access::CaseAction::parse(name);
        for (user, want) in [(&li_user, expected[1]), (&boss_user, expected[2])] {
            let policy = action.map(|a| {
                gateway::access::check(user, gateway::access::Action::Act(policy_case, a))
            });
            let status = match policy {
                None => 404,
                Some(Err(gateway::access::Denied::Hidden)) => 404,
                Some(Err(gateway::access::Denied::Forbidden(_))) => 403,
                Some(Ok(())) => want,
            };
            assert_eq!(
                status, want,
                "{} {name}: the policy and the API disagree",
                user.name
            );
            assert!(
                policy.is_none_or(|p| p.is_ok() == !matches!(want, 401 | 403 | 404)),
                "{} {name}",
                user.name
            );
            asked += 1;
        }
    }
    assert!(asked >= 12, "{asked}");
    for (user, want) in [(&li_user, false), (&boss_user, true)] {
        assert_eq!(
            gateway::access::check(user, gateway::access::Action::Read(policy_case)).is_ok(),
            want,
            "{} reading the case",
            user.name
        );
    }
    let log = dir.path().join("gateway/data/audit.log");
    let actions = || -> Vec<String> {
        gateway::audit::verify(&log).unwrap();
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .map(|l| {
                serde_json::from_str::<gateway::audit::Record>(l)
                    .unwrap()
                    .action
            })
            .collect()
    };
    // A search never reaches past the policy: li, not on the case, finds nothing by its
    // patient id; the administrator finds it.
    let found = |who: &str| -> Vec<serde_json::Value> {
        let token = accounts.script_token(who).unwrap();
        let (status, text) = http(
            gw.web_addr,
            "GET",
            "/api/v1/consultations?scope=all&q=p-300",
            Some(&token),
            None,
        )
        .unwrap();
        assert_eq!(status, 200, "{text}");
        serde_json::from_str(&text).unwrap()
    };
    assert!(found("li").is_empty());
    let rows = found("boss");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["patient_id"], "P-300");
    for (method, path, body, expected, audit) in routes {
        for (who, want) in [None, Some("li"), Some("boss")].into_iter().zip(expected) {
            // A fresh token per call: logout revokes the one it is called with.
            let token = who.map(|name| accounts.script_token(name).unwrap());
            let before = actions().len();
            let (status, text) = http(gw.web_addr, method, &path, token.as_deref(), body).unwrap();
            assert_eq!(status, want, "{method} {path} as {who:?}: {text}");
            if who == Some("boss") {
                let written = actions()[before..].to_vec();
                match audit {
                    Some(action) => assert!(
                        written.iter().any(|a| a == action),
                        "{method} {path} must record {action}: {written:?}"
                    ),
                    None => assert!(
                        written.is_empty(),
                        "{method} {path} records nothing: {written:?}"
                    ),
                }
            }
        }
    }
    // A specialist who opened a case not theirs is on record, with the case.
    let refused: Vec<gateway::audit::Record> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<gateway::audit::Record>(l).unwrap())
        .filter(|r| r.user == "li" && r.action == "refused_view")
        .collect();
    assert!(
        refused.iter().any(|r| r.target == id.as_str()),
        "{refused:?}"
    );
    gw.stop().await.unwrap();
}

/// The routes a daemon's web listener serves (`gateway/src`, `clinic-agent/src`), read from
/// where they are declared.
fn served_routes(daemon_src: &str) -> Vec<String> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut out = Vec::new();
    // Every file of the daemon's HTTP layer, and the routes both daemons share.
    let mut files = vec![
        root.join("daemon/src/login.rs"),
        root.join("daemon/src/web.rs"),
    ];
    let mut folders = vec![root.join(daemon_src)];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                folders.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    for file in files {
        let text = std::fs::read_to_string(file).unwrap();
        for piece in text.split(".route(").skip(1) {
            let piece = piece.trim_start();
            if let Some(rest) = piece.strip_prefix('"') {
                out.push(rest.split('"').next().unwrap().to_owned());
            }
        }
    }
    assert!(out.len() > 20, "{out:?}");
    out
}

/// Whether a served route's pattern (`/cases/{id}`) matches a path of a test's table.
fn route_matches(pattern: &str, path: &str) -> bool {
    let (p, q): (Vec<&str>, Vec<&str>) = (pattern.split('/').collect(), path.split('/').collect());
    p.len() == q.len()
        && p.iter()
            .zip(&q)
            .all(|(a, b)| a == b || (a.starts_with('{') && a.ends_with('}')))
}

/// What a request of the clinic's route matrix carries.
#[derive(Debug, Clone, Copy)]
enum Body<'a> {
    Empty,
    Json(&'a str),
    /// A URL-encoded form, sent with the session's CSRF token.
    Form(&'a str),
    /// A multipart form without files, sent with the session's CSRF token.
    Multipart,
}

/// Sends one request of the clinic's route matrix as `token`'s holder (or nobody).
fn clinic_call(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Body,
) -> (u16, String) {
    let csrf = token.map_or_else(|| "none".to_owned(), daemon::web::csrf_of);
    let head = |content_type: &str| {
        let mut head =
            format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: {content_type}");
        if let Some(t) = token {
            head.push_str(&format!("\r\nAuthorization: Bearer {t}"));
        }
        head
    };
    match body {
        Body::Empty => http(addr, method, path, token, None).unwrap(),
        Body::Json(json) => http(addr, method, path, token, Some(json)).unwrap(),
        Body::Form(fields) => raw_http(
            addr,
            &head("application/x-www-form-urlencoded"),
            [format!("csrf={csrf}"), fields.to_owned()]
                .join("&")
                .trim_end_matches('&')
                .as_bytes(),
        )
        .unwrap(),
        Body::Multipart => raw_http(
            addr,
            &head("multipart/form-data; boundary=matrix"),
            format!(
                "--matrix\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n{csrf}\r\n--matrix--\r\n"
            )
            .as_bytes(),
        )
        .unwrap(),
    }
}

/// Every route of the clinic agent answers each kind of caller as the access policy says:
/// the clinic PC's own CLI (no account), nobody signed in on another computer of the clinic
/// LAN, and a specialist's, a doctor's and an administrator's account there. The policy is
/// asked directly too, for every route that it gates, and must agree with the answer: sign in
/// first is 401 (a page: 303 to the log-in page), hidden 404, forbidden 403, and an allowed
/// call is refused, if at all, only by the case's own rules or the request's content (400,
/// 409) — before anything is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_clinic_route_refuses_the_callers_it_should() {
    use clinic_agent::access::{self, Action, Caller, ClinicAction, Denied, Task};
    let dir = tempfile::tempdir().unwrap();
    let pilot = PilotDir::create(dir.path(), Timings::default()).unwrap();
    let bundle = pilot.enrol("jinzhou", "Jinzhou").unwrap();
    let agent = RunningAgent::start(
        pilot
            .agent_config("jinzhou", &bundle, free_udp_addr())
            .unwrap(),
        Default::default(),
    )
    .unwrap();
    let accounts = &agent.handle.accounts;
    for (name, role) in [
        ("li", Role::Specialist),
        ("doc", Role::Doctor),
        ("boss", Role::Admin),
    ] {
        sign_up(accounts, person(name, role, name, None, None));
    }
    let doctor = accounts.get("doc").unwrap().unwrap();
    // A draft of this clinic, without consent: sending it is the case's own refusal.
    let handle = agent.handle.clone();
    let draft = tokio::task::spawn_blocking(move || {
        let mut request =
            harness::people::new_case("radiology", Urgency::Routine, "?", "", Vec::new());
        request.patient.id = "P-900".into();
        request.consent = None;
        request.submit = false;
        handle.cases().create(&doctor, request).unwrap()
    })
    .await
    .unwrap();
    let id = draft.consultation.id.clone();
    let number = draft.consultation.number.clone().unwrap();
    assert!(number.starts_with("JI-"), "derived from jinzhou: {number}");
    let absent = ConsultationId::new(now_ms() as u64, [9; 10]);
    let file = dir.path().join("x.dcm");
    std::fs::write(&file, b"not DICOM").unwrap();
    let import = serde_json::json!({ "path": file }).to_string();

    // The policy's view of the two cases.
    let here = ClinicId::new("jinzhou").unwrap();
    let ours = access::Case {
        clinic: Some(&here),
        here: &here,
    };
    let nowhere = access::Case {
        clinic: None,
        here: &here,
    };
    let case = format!("/api/v1/consultations/{id}");
    let create = r#"{"patient":{"id":"P-901","name":"","sex":"","birth_date":""},"question":"q?","specialty":"radiology","urgency":"routine","submit":true}"#;
    // (method, path, body, the policy's action, expected status for: this PC without an
    // account, nobody elsewhere, a specialist, a doctor, an administrator)
    type Row<'a> = (&'a str, String, Body<'a>, Option<Action<'a>>, [u16; 5]);
    let mut routes: Vec<Row> = vec![
        (
            "GET",
            "/api/v1/me".into(),
            Body::Empty,
            None,
            [401, 401, 200, 200, 200],
        ),
        (
            "POST",
            "/api/v1/login".into(),
            Body::Json(r#"{"user":"nobody","password":"wrong"}"#),
            None,
            [401; 5],
        ),
        (
            "GET",
            "/api/v1/status".into(),
            Body::Empty,
            Some(Action::Run(Task::Status)),
            [200, 401, 200, 200, 200],
        ),
        // STOW-RS of a body that is not multipart/related: refused as such once allowed.
        (
            "POST",
            "/dicomweb/studies".into(),
            Body::Json("{}"),
            Some(Action::Run(Task::Stow)),
            [415, 401, 403, 415, 415],
        ),
        (
            "POST",
            "/api/v1/studies/1.2.3/priority".into(),
            Body::Json(r#"{"priority":"urgent"}"#),
            Some(Action::Run(Task::Priority)),
            [200, 401, 200, 200, 200],
        ),
        (
            "POST",
            "/api/v1/import".into(),
            Body::Json(&import),
            Some(Action::Run(Task::ImportPath)),
            [200, 403, 403, 403, 403],
        ),
        (
            "GET",
            "/api/v1/consultations".into(),
            Body::Empty,
            Some(Action::List),
            [401, 401, 403, 200, 200],
        ),
        // Sending without consent is refused before anything is stored.
        (
            "POST",
            "/api/v1/consultations".into(),
            Body::Json(create),
            Some(Action::Create),
            [401, 401, 403, 409, 409],
        ),
        (
            "GET",
            case.clone(),
            Body::Empty,
            Some(Action::Read(ours)),
            [401, 401, 403, 200, 200],
        ),
        (
            "GET",
            format!("/api/v1/consultations/{absent}"),
            Body::Empty,
            Some(Action::Read(nowhere)),
            [401, 401, 403, 404, 404],
        ),
        (
            "POST",
            format!("{case}/attachments?name=letter.pdf"),
            Body::Json("{}"),
            Some(Action::Attach(ours)),
            [401, 401, 403, 400, 400],
        ),
        (
            "POST",
            format!("{case}/nonsense"),
            Body::Empty,
            None,
            [401, 401, 404, 404, 404],
        ),
        (
            "POST",
            format!("/api/v1/consultations/{absent}/cancel"),
            Body::Json(r#"{"reason":"x"}"#),
            Some(Action::Act(nowhere, ClinicAction::Cancel)),
            [401, 401, 403, 404, 404],
        ),
        // The web pages: anonymous visitors are sent to log in (303); a specialist's account
        // is refused; a form is sent with its CSRF token.
        ("GET", "/login".into(), Body::Empty, None, [200; 5]),
        ("GET", "/lang/en".into(), Body::Empty, None, [303; 5]),
        ("GET", "/assets/app.css".into(), Body::Empty, None, [200; 5]),
        ("GET", "/assets/app.js".into(), Body::Empty, None, [200; 5]),
        (
            "GET",
            "/".into(),
            Body::Empty,
            Some(Action::List),
            [303, 303, 403, 200, 200],
        ),
        (
            "GET",
            "/?q=p-900&state=draft&from=2000-01-01&sort=created&dir=asc".into(),
            Body::Empty,
            Some(Action::List),
            [303, 303, 403, 200, 200],
        ),
        (
            "GET",
            "/api/v1/consultations?q=P-900&urgency=routine".into(),
            Body::Empty,
            Some(Action::List),
            [401, 401, 403, 200, 200],
        ),
        // A case number leads to the case (303) for whoever may list cases; not a policy
        // question of its own (the list's), so not asked below.
        (
            "GET",
            format!("/cases/{number}"),
            Body::Empty,
            None,
            [303, 303, 403, 303, 303],
        ),
        (
            "GET",
            "/import".into(),
            Body::Empty,
            Some(Action::Run(Task::Upload)),
            [303, 303, 403, 200, 200],
        ),
        (
            "POST",
            "/import".into(),
            Body::Multipart,
            Some(Action::Run(Task::Upload)),
            [303, 303, 403, 200, 200],
        ),
        (
            "GET",
            "/cases/new".into(),
            Body::Empty,
            Some(Action::Create),
            [303, 303, 403, 200, 200],
        ),
        // An empty form: the question is missing.
        (
            "POST",
            "/cases/new".into(),
            Body::Multipart,
            Some(Action::Create),
            [303, 303, 403, 400, 400],
        ),
        (
            "GET",
            format!("/cases/{id}"),
            Body::Empty,
            Some(Action::Read(ours)),
            [303, 303, 403, 200, 200],
        ),
        (
            "GET",
            format!("/cases/{absent}"),
            Body::Empty,
            Some(Action::Read(nowhere)),
            [303, 303, 403, 404, 404],
        ),
        (
            "GET",
            format!("/cases/{id}/print"),
            Body::Empty,
            Some(Action::Read(ours)),
            [303, 303, 403, 200, 200],
        ),
        (
            "POST",
            format!("/cases/{id}/act/nonsense"),
            Body::Form(""),
            None,
            [303, 303, 404, 404, 404],
        ),
        (
            "POST",
            "/api/v1/logout".into(),
            Body::Empty,
            None,
            [401, 401, 204, 204, 204],
        ),
        ("POST", "/logout".into(), Body::Form(""), None, [303; 5]),
        // Files set aside, and giving an id-less study its patient (here: no such study).
        (
            "GET",
            "/set-aside".into(),
            Body::Empty,
            Some(Action::Run(Task::Reconcile)),
            [303, 303, 403, 200, 200],
        ),
        (
            "POST",
            "/set-aside/assign".into(),
            Body::Form("study_uid=1.2.3&patient_id=P-1"),
            Some(Action::Run(Task::Reconcile)),
            [303, 303, 403, 400, 400],
        ),
        // A draft of an answer is kept for whoever may answer (the page fills the answer's
        // form with it); only answers keep drafts here.
        (
            "POST",
            format!("/cases/{id}/draft/answer-1"),
            Body::Form("text=half"),
            Some(Action::Act(ours, ClinicAction::Answer)),
            [303, 303, 403, 204, 204],
        ),
        (
            "POST",
            format!("/cases/{id}/draft/report"),
            Body::Form("text=x"),
            None,
            [303, 303, 404, 404, 404],
        ),
    ];
    // Each action on the case, through the API and through the page's form, without what it
    // needs (or, to send and to acknowledge, at a state that does not allow it).
    for action in ClinicAction::ALL {
        let refused = match action {
            ClinicAction::Submit | ClinicAction::Acknowledge => 409,
            _ => 400,
        };
        let name = action.name();
        routes.push((
            "POST",
            format!("{case}/{name}"),
            Body::Empty,
            Some(Action::Act(ours, action)),
            [401, 401, 403, refused, refused],
        ));
        routes.push((
            "POST",
            format!("/cases/{id}/act/{name}"),
            Body::Form(""),
            Some(Action::Act(ours, action)),
            [303, 303, 403, refused, refused],
        ));
    }
    // Every route the agent serves is in the table above: a new route must say who may call
    // it before this test passes.
    for pattern in served_routes("clinic-agent/src") {
        assert!(
            routes
                .iter()
                .any(|r| route_matches(&pattern, r.1.split('?').next().unwrap())),
            "the route {pattern} is not in this test's table: declare who may call it"
        );
    }
    // The policy, asked directly, says what the routes answer.
    let users: Vec<_> = ["li", "doc", "boss"]
        .iter()
        .map(|name| accounts.get(name).unwrap().unwrap())
        .collect();
    let callers = [
        Caller::ThisPc,
        Caller::Nobody,
        Caller::User(&users[0]),
        Caller::User(&users[1]),
        Caller::User(&users[2]),
    ];
    let mut asked = 0;
    for (method, path, _, action, expected) in &routes {
        let Some(action) = action else { continue };
        let page = !path.starts_with("/api/") && !path.starts_with("/dicomweb/");
        for (caller, want) in callers.iter().zip(expected) {
            let said = match access::check(*caller, *action) {
                Err(Denied::Unauthenticated) if page => 303,
                Err(Denied::Unauthenticated) => 401,
                Err(Denied::Hidden) => 404,
                Err(Denied::Forbidden(_)) => 403,
                Ok(()) => {
                    assert!(
                        // Allowed, and then answered by the request's own merits.
                        matches!(want, 200 | 204 | 400 | 409 | 415),
                        "{method} {path} as {caller:?}: allowed, yet answered {want}"
                    );
                    *want
                }
            };
            assert_eq!(
                said, *want,
                "{method} {path} as {caller:?}: the policy and the route disagree"
            );
            asked += 1;
        }
    }
    assert!(asked >= 5 * 25, "{asked}");

    // The same over HTTP: this PC through the agent's own listener, the others as a PC
    // elsewhere on the clinic LAN reaches it.
    let here_addr = daemon::client::local(agent.web_addr);
    let lan: std::net::SocketAddr = "192.168.1.20:50123".parse().unwrap();
    let app = clinic_agent::http::router(agent.handle.clone())
        .layer(axum::extract::connect_info::MockConnectInfo(lan));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let there = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let before = agent.handle.consult.log.timeline(&id).unwrap();
    for (method, path, body, _, expected) in routes {
        for (column, want) in expected.into_iter().enumerate() {
            let (addr, who) = match column {
                0 => (here_addr, None),
                1 => (there, None),
                n => (there, Some(["li", "doc", "boss"][n - 2])),
            };
            // A fresh token per call: logout revokes the one it is called with.
            let token = who.map(|name| accounts.script_token(name).unwrap());
            let (status, text) = clinic_call(addr, method, &path, token.as_deref(), body);
            let text: String = text.chars().take(300).collect();
            assert_eq!(status, want, "{method} {path} as {who:?}: {text}");
        }
    }
    // Nothing refused was stored: the draft is as it was, and it is the only case.
    assert_eq!(agent.handle.consult.log.timeline(&id).unwrap(), before);
    assert_eq!(agent.handle.consult.log.list(&here).unwrap().len(), 1);
    server.abort();
    agent.stop().await.unwrap();
}

/// The new-case form with a referral letter: the letter is on the case before it is sent, so
/// it travels with the request; a file that is not what it claims stores nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_letter_sent_with_the_new_case_form_is_on_the_case_before_it_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let pilot = PilotDir::create(dir.path(), Timings::default()).unwrap();
    let bundle = pilot.enrol("jinzhou", "Jinzhou").unwrap();
    let agent = RunningAgent::start(
        pilot
            .agent_config("jinzhou", &bundle, free_udp_addr())
            .unwrap(),
        Default::default(),
    )
    .unwrap();
    let token = sign_up(
        &agent.handle.accounts,
        person("doc", Role::Doctor, "Doctor", None, None),
    );
    let addr = daemon::client::local(agent.web_addr);
    let post = |letter: &[u8]| {
        let mut body = Vec::new();
        for (name, value) in [
            ("csrf", daemon::web::csrf_of(&token)),
            ("patient_id", "P-950".into()),
            ("question", "fracture?".into()),
            ("specialty", "radiology".into()),
            ("urgency", "routine".into()),
            ("consent_given_by", "patient".into()),
            ("consent_method", "verbal".into()),
            ("action", "submit".into()),
        ] {
            body.extend_from_slice(
                format!(
                    "--b\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
                )
                .as_bytes(),
            );
        }
        body.extend_from_slice(b"--b\r\nContent-Disposition: form-data; name=\"attachment\"; filename=\"letter.pdf\"\r\nContent-Type: application/pdf\r\n\r\n");
        body.extend_from_slice(letter);
        body.extend_from_slice(b"\r\n--b--\r\n");
        raw_http(
            addr,
            &format!("POST /cases/new HTTP/1.0\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Type: multipart/form-data; boundary=b"),
            &body,
        )
        .unwrap()
    };
    let jz = ClinicId::new("jinzhou").unwrap();
    let (status, page) = post(b"not a PDF");
    assert_eq!(status, 400, "{page}");
    assert!(agent.handle.consult.log.list(&jz).unwrap().is_empty());

    let (status, page) = post(b"%PDF-1.4 a referral letter");
    assert_eq!(status, 303, "{page}");
    let cases = agent.handle.consult.log.list(&jz).unwrap();
    assert_eq!(cases.len(), 1);
    assert_eq!(cases[0].state, State::Submitted);
    assert_eq!(cases[0].attachments.len(), 1);
    let kinds: Vec<_> = agent
        .handle
        .consult
        .log
        .timeline(&cases[0].id)
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    let attached = kinds
        .iter()
        .position(|k| matches!(k, EventKind::StudiesAttached { attachments, .. } if !attachments.is_empty()))
        .unwrap();
    let sent = kinds
        .iter()
        .position(|k| *k == EventKind::Submitted)
        .unwrap();
    assert!(attached < sent, "{kinds:?}");
    agent.stop().await.unwrap();
}

/// An administrator deactivates an account from the users page and reactivates it there (the
/// login error tells the user an administrator can); their own account they cannot deactivate;
/// an unknown operation is 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_administrator_deactivates_and_reactivates_an_account_from_the_users_page() {
    let dir = tempfile::tempdir().unwrap();
    let pilot = PilotDir::create(dir.path(), Timings::default()).unwrap();
    let gw = RunningGateway::start(pilot.gateway_config(free_udp_addr()).unwrap()).unwrap();
    let token = gw.admin_token().unwrap();
    sign_up(
        &gw.handle.accounts,
        person("zhao", Role::Admin, "Dr Zhao", None, None),
    );
    let addr = daemon::client::local(gw.web_addr);
    let port = addr.port();
    let csrf = format!("csrf={}", daemon::web::csrf_of(&token));
    let op = |user: &str, op: &str| {
        raw_http(
            addr,
            &format!(
                "POST /admin/users/{user}/{op} HTTP/1.0\r\nHost: {addr}\r\nCookie: tpg_session_{port}={token}\r\nContent-Type: application/x-www-form-urlencoded"
            ),
            csrf.as_bytes(),
        )
        .unwrap()
    };
    let (status, page) = op("zhao", "deactivate");
    assert_eq!(status, 200, "{page}");
    assert!(matches!(
        gw.handle.accounts.login("zhao", PASSWORD),
        Err(daemon::accounts::AccountError::Deactivated(_))
    ));
    assert!(
        page.contains("/admin/users/zhao/reactivate"),
        "the page offers to reactivate the account"
    );
    let (status, page) = op("zhao", "reactivate");
    assert_eq!(status, 200, "{page}");
    assert!(!page.contains("/admin/users/zhao/reactivate"));
    assert_eq!(
        gw.handle.accounts.login("zhao", PASSWORD).unwrap().name,
        "zhao"
    );
    let (status, _) = op("admin", "deactivate");
    assert_eq!(status, 409, "not one's own account");
    assert!(
        !gw.handle
            .accounts
            .get("admin")
            .unwrap()
            .unwrap()
            .deactivated
    );
    assert_eq!(op("zhao", "frobnicate").0, 404);
    // Each change is in the audit log, by whom and of which account.
    let log = dir.path().join("gateway/data/audit.log");
    gateway::audit::verify(&log).unwrap();
    let records: Vec<gateway::audit::Record> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let changes: Vec<(&str, &str, &str)> = records
        .iter()
        .filter(|r| r.action.starts_with("user_"))
        .map(|r| (r.user.as_str(), r.action.as_str(), r.target.as_str()))
        .collect();
    assert_eq!(
        changes,
        [
            ("admin", "user_deactivate", "zhao"),
            ("admin", "user_reactivate", "zhao"),
            ("admin", "user_deactivate", "admin"),
        ]
    );
    gw.stop().await.unwrap();
}

/// Logins, failed logins, a lock-out (once, however often the locked name is tried) and logouts
/// are in the audit log, under the name tried and with the client's address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_failures_lockouts_and_logouts_are_in_the_audit_log() {
    let dir = tempfile::tempdir().unwrap();
    let pilot = PilotDir::create(dir.path(), Timings::default()).unwrap();
    let gw = RunningGateway::start(pilot.gateway_config(free_udp_addr()).unwrap()).unwrap();
    sign_up(
        &gw.handle.accounts,
        person("zhao", Role::Admin, "Dr Zhao", None, None),
    );
    let addr = daemon::client::local(gw.web_addr);
    let login = |password: &str| {
        raw_http(
            addr,
            &format!(
                "POST /api/v1/login HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json"
            ),
            format!(r#"{{"user":"zhao","password":"{password}"}}"#).as_bytes(),
        )
        .unwrap()
    };
    assert_eq!(login("a wrong guess").0, 401);
    let (status, answer) = login(PASSWORD);
    assert_eq!(status, 200, "{answer}");
    let body = &answer[answer.find("\r\n\r\n").unwrap() + 4..];
    let token = serde_json::from_str::<serde_json::Value>(body).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, _) = raw_http(
        addr,
        &format!("POST /api/v1/logout HTTP/1.0\r\nHost: {addr}\r\nAuthorization: Bearer {token}"),
        b"",
    )
    .unwrap();
    assert_eq!(status, 204);
    for _ in 0..daemon::accounts::FREE_FAILURES {
        assert_eq!(login("a wrong guess").0, 401);
    }
    assert_eq!(login(PASSWORD).0, 429);
    assert_eq!(login(PASSWORD).0, 429);
    let log = dir.path().join("gateway/data/audit.log");
    gateway::audit::verify(&log).unwrap();
    let records: Vec<gateway::audit::Record> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let zhao: Vec<&str> = records
        .iter()
        .filter(|r| r.user == "zhao")
        .map(|r| r.action.as_str())
        .collect();
    let mut expected = vec!["login_failed", "login", "logout"];
    expected.extend(["login_failed"; daemon::accounts::FREE_FAILURES as usize]);
    expected.push("login_locked");
    assert_eq!(zhao, expected);
    assert!(records
        .iter()
        .filter(|r| r.user == "zhao")
        .all(|r| r.address == "127.0.0.1" && r.target == "zhao"));
    gw.stop().await.unwrap();
}

/// Forms need the session's CSRF token; a change made with the browser's cookie through the
/// JSON API needs it in `X-CSRF-Token`; the log-in form throttles guessing with 429.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forms_need_their_csrf_token_and_the_login_form_throttles_guesses() {
    let dir = tempfile::tempdir().unwrap();
    let pilot = PilotDir::create(dir.path(), Timings::default()).unwrap();
    let gw = RunningGateway::start(pilot.gateway_config(free_udp_addr()).unwrap()).unwrap();
    let token = gw.admin_token().unwrap();
    let addr = daemon::client::local(gw.web_addr);
    let port = addr.port();
    let send = |head: String, body: &str| raw_http(addr, &head, body.as_bytes()).unwrap();
    let cookie = format!("Cookie: tpg_session_{port}={token}");
    let form_head = format!(
        "POST /admin/users HTTP/1.0\r\nHost: {addr}\r\n{cookie}\r\nContent-Type: application/x-www-form-urlencoded"
    );
    let form = |csrf: &str| {
        format!(
            "csrf={csrf}&name=zhao&display_name=Dr+Zhao&role=admin&password=a+long+enough+password"
        )
    };
    let (status, _) = send(form_head.clone(), &form("0123456789abcdef0123456789abcdef"));
    assert_eq!(status, 403, "a forged form is refused");
    assert!(gw.handle.accounts.get("zhao").unwrap().is_none());
    let (status, page) = send(form_head, &form(&daemon::web::csrf_of(&token)));
    assert_eq!(status, 200, "{page}");
    assert!(gw.handle.accounts.get("zhao").unwrap().is_some());

    // The JSON API with the cookie: the header is required for a change.
    let logout =
        |header: &str| format!("POST /api/v1/logout HTTP/1.0\r\nHost: {addr}\r\n{cookie}{header}");
    assert_eq!(send(logout(""), "").0, 403);
    let header = format!("\r\nX-CSRF-Token: {}", daemon::web::csrf_of(&token));
    assert_eq!(send(logout(&header), "").0, 204);

    // The log-in form: a double-submit token, then five wrong passwords, then 429.
    let login = |cookie_token: &str, form_token: &str, password: &str| {
        send(
            format!(
                "POST /login HTTP/1.0\r\nHost: {addr}\r\nCookie: tpg_login_csrf_{port}={cookie_token}\r\nContent-Type: application/x-www-form-urlencoded"
            ),
            &format!("csrf={form_token}&user=admin&password={password}&next=%2F"),
        )
    };
    let forged = format!(
        "POST /login HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded"
    );
    let (status, _) = send(forged, "csrf=x&user=admin&password=pilot-admin-password");
    assert_eq!(status, 403, "no log-in without the form's token");
    let (status, _) = login("abc", "xyz", "pilot-admin-password");
    assert_eq!(status, 403, "the form's token must be the cookie's");
    let (status, answer) = login("abc", "abc", "pilot-admin-password");
    assert_eq!(status, 303, "{answer}");
    assert!(
        answer.contains(&format!("tpg_session_{port}="))
            && answer.contains("HttpOnly")
            && answer.contains("SameSite=Strict")
    );
    for _ in 0..5 {
        assert_eq!(login("abc", "abc", "wrong").0, 401);
    }
    let (status, answer) = login("abc", "abc", "pilot-admin-password");
    assert_eq!(status, 429, "{answer}");
    // Locked for 30 s from the fifth failure; a second may have passed since.
    let retry_after = answer
        .to_ascii_lowercase()
        .lines()
        .find_map(|l| l.strip_prefix("retry-after: ")?.trim().parse::<u64>().ok());
    assert!(
        retry_after.is_some_and(|s| (29..=30).contains(&s)),
        "{answer}"
    );
    gw.stop().await.unwrap();
}

/// A case the router cannot give to anyone (the lead declined it, the other member is off
/// duty) waits in its pool: the off-duty member sees it on their worklist with the pool's
/// name and may take it; the one who declined does not see it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_case_nobody_can_be_given_waits_in_its_pool_and_a_member_takes_it() {
    let dir = tempfile::tempdir().unwrap();
    let pilot = PilotDir::create(dir.path(), Timings::default()).unwrap();
    let link = free_udp_addr();
    // Li works the hours half a day away from now.
    let hour = (now_ms() / 3_600_000 % 24 + 12) % 24;
    let roster = format!(
        r#"
[[specialist]]
id = "li"
name = "Li Wei"
specialties = ["radiology"]
qualification = "attending radiologist"
years_independent = 12
utc_offset = "+00:00"
duty = ["daily {hour:02}:00-{next:02}:00"]

[[specialist]]
id = "zhang"
name = "Zhang Min"
specialties = ["radiology"]
qualification = "chief radiologist"
years_independent = 20
utc_offset = "+00:00"
duty = ["daily 00:00-24:00"]

[[pool]]
id = "radiology"
members = ["li", "zhang"]
lead = "zhang"

[[rule]]
id = "all"
pool = "radiology"
"#,
        next = (hour + 1) % 24
    );
    let gw =
        RunningGateway::start(with_routing(&pilot.gateway_config(link).unwrap(), &roster)).unwrap();
    let [li, zhang] = [
        ("li", "attending radiologist"),
        ("zhang", "chief radiologist"),
    ]
    .map(|(name, qualification)| {
        let user = person(
            name,
            Role::Specialist,
            name,
            Some(name),
            Some(qualification),
        );
        sign_up(&gw.handle.accounts, user)
    });
    let bundle = pilot.enrol("jinzhou", "Jinzhou").unwrap();
    let agent = RunningAgent::start(
        pilot.agent_config("jinzhou", &bundle, link).unwrap(),
        Default::default(),
    )
    .unwrap();
    let jz = ClinicId::new("jinzhou").unwrap();
    let id = ConsultationId::new(now_ms() as u64, [6; 10]);
    for kind in request("P-300", "radiology", Urgency::Urgent, now_ms()) {
        agent
            .handle
            .consult
            .append(&jz, &id, "dr.wang", now_ms(), kind)
            .unwrap();
    }
    let hospital = &gw.handle.consult;
    let assignee = || {
        hospital
            .log
            .get(&id)
            .unwrap()
            .and_then(|f| f.consultation.assignee)
    };
    assert!(
        wait_until(WAIT, || assignee().as_deref() == Some("zhang")).await,
        "the lead is the only one on duty"
    );
    let web = gw.web_addr;
    let case = format!("/api/v1/consultations/{id}");
    let worklist = |token: &str| -> serde_json::Value {
        serde_json::from_str(&http_get_as(web, "/api/v1/consultations", token).unwrap()).unwrap()
    };
    assert_eq!(worklist(&li).as_array().unwrap().len(), 0, "held by zhang");
    let (status, body) = http(web, "POST", &format!("{case}/take"), Some(&li), None).unwrap();
    assert_eq!(status, 404, "a held case cannot be taken, nor seen: {body}");
    let (status, body) = http(
        web,
        "POST",
        &format!("{case}/decline"),
        Some(&zhang),
        Some(r#"{"reason":"in theatre all afternoon"}"#),
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");

    // Two router passes later it still waits: nobody on duty may have it.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let c = hospital.log.get(&id).unwrap().unwrap().consultation;
    assert_eq!((c.state, c.assignee.as_deref()), (State::Delivered, None));
    let rows = worklist(&li);
    assert_eq!(rows[0]["id"], id.as_str(), "{rows}");
    assert_eq!(rows[0]["waiting_in_pool"], "radiology");
    assert!(
        rows[0]["accept_by_ms"].as_i64().is_some(),
        "the SLA runs from delivery"
    );
    assert_eq!(
        worklist(&zhang).as_array().unwrap().len(),
        0,
        "declined, never back"
    );
    let page = http_get_as(web, &format!("/cases/{id}"), &li).unwrap();
    assert!(page.contains("id=\"take\""), "{page}");

    let (status, body) = http(web, "POST", &format!("{case}/take"), Some(&li), None).unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(assignee().as_deref(), Some("li"));
    let (status, _) = http(web, "POST", &format!("{case}/take"), Some(&li), None).unwrap();
    assert_eq!(status, 409, "taken once");
    assert!(worklist(&li)[0]["waiting_in_pool"].is_null());
    let (status, body) = http(web, "POST", &format!("{case}/accept"), Some(&li), None).unwrap();
    assert_eq!(status, 200, "{body}");
    agent.stop().await.unwrap();
    gw.stop().await.unwrap();
}

/// One HTTP/1.0 exchange over TLS with `config`, the server named `name`: the whole answer.
fn raw_https(
    addr: std::net::SocketAddr,
    config: std::sync::Arc<rustls::ClientConfig>,
    name: &str,
    request: &str,
) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let name =
        rustls::pki_types::ServerName::try_from(name.to_owned()).map_err(std::io::Error::other)?;
    let conn = rustls::ClientConnection::new(config, name).map_err(std::io::Error::other)?;
    let mut tls = rustls::StreamOwned::new(conn, std::net::TcpStream::connect(addr)?);
    tls.write_all(request.as_bytes())?;
    let mut out = Vec::new();
    match tls.read_to_end(&mut out) {
        Err(e) if e.kind() != std::io::ErrorKind::UnexpectedEof => return Err(e),
        _ => {}
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// With `[web] cert` and `key` the gateway serves its pages over HTTPS with the pilot PKI's
/// certificate: a client that trusts the pilot CA logs in and gets cookies marked `Secure`,
/// plain HTTP on that port gets no page, and the gateway's own CLI reaches its API by the
/// certificate of its config (and names the problem when the listener serves another).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_listener_serves_https_with_the_pilot_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let pilot = PilotDir::create(dir.path(), Timings::default()).unwrap();
    let web = "cert = \"../pki/gateway/cert.pem\"\nkey = \"../pki/gateway/key.pem\"";
    let config = pilot.gateway_config_with(free_udp_addr(), web).unwrap();
    let file = config.file.clone();
    let gw = RunningGateway::start(config).unwrap();
    let token = gw.admin_token().unwrap();
    let addr = daemon::client::local(gw.web_addr);
    let port = addr.port();
    let browser = std::sync::Arc::new(
        certs::tls::web_client_config(&pilot.pki_dir().join("ca.pem")).unwrap(),
    );
    let https = |request: String| raw_https(addr, browser.clone(), "localhost", &request).unwrap();

    let page = https(format!(
        "GET /login HTTP/1.0\r\nHost: localhost:{port}\r\n\r\n"
    ));
    assert!(page.starts_with("HTTP/1.0 200"), "{page}");
    // Security headers on every answer; HTTPS only from now on.
    let head = page.split("\r\n\r\n").next().unwrap().to_ascii_lowercase();
    for header in [
        "x-content-type-options: nosniff",
        "x-frame-options: deny",
        "content-security-policy: frame-ancestors 'none'",
        "referrer-policy: same-origin",
        "strict-transport-security: max-age=31536000",
    ] {
        assert!(head.contains(header), "{header} missing: {head}");
    }
    let csrf_cookie = page
        .lines()
        .find(|l| l.contains(&format!("tpg_login_csrf_{port}=")))
        .unwrap_or_default();
    assert!(csrf_cookie.contains("; Secure"), "{page}");

    let form = "csrf=abc&user=admin&password=pilot-admin-password&next=%2F";
    let answer = https(format!(
        "POST /login HTTP/1.0\r\nHost: localhost:{port}\r\nCookie: tpg_login_csrf_{port}=abc\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
        form.len()
    ));
    assert!(answer.starts_with("HTTP/1.0 303"), "{answer}");
    let session = answer
        .lines()
        .find(|l| l.contains(&format!("tpg_session_{port}=")))
        .unwrap_or_default();
    for attribute in ["; Secure", "; HttpOnly", "; SameSite=Strict"] {
        assert!(
            session.contains(attribute),
            "{attribute} missing: {session}"
        );
    }
    let users = https(format!(
        "GET /admin/users HTTP/1.0\r\nHost: localhost:{port}\r\nCookie: tpg_session_{port}={token}\r\n\r\n"
    ));
    assert!(users.starts_with("HTTP/1.0 200"), "{users}");

    let plain = raw_http(addr, "GET /login HTTP/1.0\r\nHost: localhost", b"");
    assert!(
        !matches!(plain, Ok((200, _))),
        "plain HTTP must not get a page: {plain:?}"
    );

    // The CLI reads the listener's address from its config: one with the bound port.
    let text = std::fs::read_to_string(&file).unwrap().replacen(
        "[web]\nlisten = \"127.0.0.1:0\"",
        &format!("[web]\nlisten = \"{addr}\""),
        1,
    );
    let cli = |config: &str| {
        let path = file.with_file_name(config);
        std::process::Command::new(harness::binary("gateway"))
            .args(["consult", "--token", &token, "--config"])
            .arg(path)
            .args(["list", "--all"])
            .output()
            .unwrap()
    };
    std::fs::write(file.with_file_name("cli.toml"), &text).unwrap();
    let out = cli("cli.toml");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A config naming another certificate than the one served: refused, and said why.
    let bundle = pilot.enrol("jinzhou", "Jinzhou").unwrap();
    let other = text.replace(
        "cert = \"../pki/gateway/cert.pem\"\nkey = \"../pki/gateway/key.pem\"\n\n[metrics]",
        &format!(
            "cert = \"{}\"\nkey = \"{}\"\n\n[metrics]",
            bundle.join("cert.pem").display(),
            bundle.join("key.pem").display()
        ),
    );
    assert_ne!(other, text);
    std::fs::write(file.with_file_name("other.toml"), &other).unwrap();
    let out = cli("other.toml");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("must serve"), "{stderr}");
    gw.stop().await.unwrap();
}

/// The agent's endpoints for its CLI (status, import by path, study priority) need no account
/// on the clinic PC itself; seen from another computer of the clinic LAN, status and priority
/// need a signed-in user and import by path is refused with a pointer to the upload page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agents_cli_endpoints_need_an_account_off_the_clinic_pc() {
    let dir = tempfile::tempdir().unwrap();
    let pilot = PilotDir::create(dir.path(), Timings::default()).unwrap();
    let bundle = pilot.enrol("jinzhou", "Jinzhou").unwrap();
    let agent = RunningAgent::start(
        pilot
            .agent_config("jinzhou", &bundle, free_udp_addr())
            .unwrap(),
        Default::default(),
    )
    .unwrap();
    let file = dir.path().join("x.dcm");
    std::fs::write(&file, b"not DICOM").unwrap();
    let import = serde_json::json!({ "path": file }).to_string();
    let priority = r#"{"priority":"urgent"}"#;
    let here = daemon::client::local(agent.web_addr);
    assert_eq!(
        http(here, "GET", "/api/v1/status", None, None).unwrap().0,
        200
    );
    let (status, body) = http(here, "POST", "/api/v1/import", None, Some(&import)).unwrap();
    assert_eq!(status, 200, "{body}");
    // A web page that rebinds its own name to 127.0.0.1 still sends that name: refused.
    let (status, _) = raw_http(
        here,
        "GET /api/v1/status HTTP/1.0\r\nHost: attacker.example:8081",
        b"",
    )
    .unwrap();
    assert_eq!(
        status, 401,
        "a loopback call naming another host needs an account"
    );

    // The same routes as a PC elsewhere on the clinic LAN reaches them.
    let lan: std::net::SocketAddr = "192.168.1.20:50123".parse().unwrap();
    let app = clinic_agent::http::router(agent.handle.clone())
        .layer(axum::extract::connect_info::MockConnectInfo(lan));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let there = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let doc = sign_up(
        &agent.handle.accounts,
        person("doc", Role::Doctor, "Doctor", None, None),
    );
    let call = |method: &str, path: &str, token: Option<&str>, json: Option<&str>| {
        http(there, method, path, token, json).unwrap()
    };
    assert_eq!(call("GET", "/api/v1/status", None, None).0, 401);
    assert_eq!(call("GET", "/api/v1/status", Some(&doc), None).0, 200);
    let raise = "/api/v1/studies/1.2.3/priority";
    assert_eq!(call("POST", raise, None, Some(priority)).0, 401);
    assert_eq!(call("POST", raise, Some(&doc), Some(priority)).0, 200);
    for token in [None, Some(doc.as_str())] {
        let (status, body) = call("POST", "/api/v1/import", token, Some(&import));
        assert_eq!(status, 403, "{body}");
        assert!(
            body.contains("upload the files on the import page"),
            "{body}"
        );
    }
    server.abort();
    agent.stop().await.unwrap();
}

/// A backup taken through the API while the gateway runs, with a clinic online, restores
/// (with `gateway restore`) into a gateway that serves the same cases and studies and whose
/// audit log is intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_while_the_gateway_runs_restores_into_a_gateway_serving_the_same_cases() {
    let OneRadiologist {
        dir,
        config,
        gw,
        li,
        agent,
        ..
    } = one_radiologist();
    let admin = gw.admin_token().unwrap();
    let study =
        harness::samples::write_ct_series(&dir.path().join("ct"), "P-500", 3, 64 * 64 * 2, 5)
            .unwrap();
    let handle = agent.handle.clone();
    let files = study.files.clone();
    tokio::task::spawn_blocking(move || {
        for f in files {
            handle.ingest_file(&f).unwrap();
        }
    })
    .await
    .unwrap();
    let jz = ClinicId::new("jinzhou").unwrap();
    let id = ConsultationId::new(now_ms() as u64, [5; 10]);
    for kind in request("P-500", "radiology", Urgency::Urgent, now_ms()) {
        agent
            .handle
            .consult
            .append(&jz, &id, "dr.wang", now_ms(), kind)
            .unwrap();
    }
    let web = gw.web_addr;
    let studies = || http_get_as(web, "/api/v1/clinics/jinzhou/studies", &admin).unwrap();
    assert!(
        wait_until(WAIT, || {
            gw.handle
                .archive
                .studies(&jz)
                .first()
                .is_some_and(|s| s.instances == 3)
                && gw
                    .handle
                    .consult
                    .log
                    .get(&id)
                    .unwrap()
                    .is_some_and(|f| f.consultation.assignee.is_some())
        })
        .await
    );
    let case = format!("/api/v1/consultations/{id}");
    let (status, body) = http(web, "POST", &format!("{case}/accept"), Some(&li), None).unwrap();
    assert_eq!(status, 200, "{body}");
    let before_case: serde_json::Value =
        serde_json::from_str(&http_get_as(web, &case, &li).unwrap()).unwrap();
    let before_studies = studies();

    let to = dir.path().join("backup");
    let request_body = serde_json::json!({ "to": to }).to_string();
    let (status, body) = http(
        web,
        "POST",
        "/api/v1/admin/backup",
        Some(&li),
        Some(&request_body),
    )
    .unwrap();
    assert_eq!(status, 403, "specialists do not take backups: {body}");
    let (status, body) = http(
        web,
        "POST",
        "/api/v1/admin/backup",
        Some(&admin),
        Some(&request_body),
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let manifest: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(manifest["objects"], 3, "{manifest}");
    let (status, body) = http(
        web,
        "POST",
        "/api/v1/admin/backup",
        Some(&admin),
        Some(&request_body),
    )
    .unwrap();
    assert_eq!(status, 409, "never over an earlier backup");
    assert!(body.contains("not empty"), "{body}");
    assert!(
        agent.handle.status_report().link.up,
        "taken while a clinic is online"
    );
    agent.stop().await.unwrap();
    gw.stop().await.unwrap();

    // Restored into a new data folder with the CLI, and served.
    let text = std::fs::read_to_string(&config.file)
        .unwrap()
        .replace("data_dir = \"data\"", "data_dir = \"restored\"");
    let restored = config.file.with_file_name("restored.toml");
    std::fs::write(&restored, text).unwrap();
    let out = std::process::Command::new(harness::binary("gateway"))
        .arg("restore")
        .arg("--config")
        .arg(&restored)
        .arg("--from")
        .arg(&to)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = std::process::Command::new(harness::binary("gateway"))
        .args(["restore", "--config"])
        .arg(&restored)
        .arg("--from")
        .arg(&to)
        .output()
        .unwrap();
    assert!(!out.status.success(), "never over a gateway's data");
    assert!(String::from_utf8_lossy(&out.stderr).contains("already holds gateway data"));
    // A backup whose audit log lost its last record no longer matches its manifest.
    assert!(manifest["audit_records"].as_u64() >= Some(2), "{manifest}");
    let cut = dir.path().join("backup-cut");
    let copied = std::process::Command::new("cp")
        .arg("-a")
        .arg(&to)
        .arg(&cut)
        .status()
        .unwrap();
    assert!(copied.success());
    let log = std::fs::read_to_string(cut.join("audit.log")).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    std::fs::write(
        cut.join("audit.log"),
        lines[..lines.len() - 1].join("\n") + "\n",
    )
    .unwrap();
    let text = std::fs::read_to_string(&restored)
        .unwrap()
        .replace("data_dir = \"restored\"", "data_dir = \"from-cut\"");
    let from_cut = config.file.with_file_name("from-cut.toml");
    std::fs::write(&from_cut, text).unwrap();
    let out = std::process::Command::new(harness::binary("gateway"))
        .args(["restore", "--config"])
        .arg(&from_cut)
        .arg("--from")
        .arg(&cut)
        .output()
        .unwrap();
    assert!(!out.status.success(), "a cut audit log is not restored");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("does not match its manifest"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let gw = RunningGateway::start(gateway::GatewayConfig::load(&restored).unwrap()).unwrap();
    let web = gw.web_addr;
    let after_case: serde_json::Value =
        serde_json::from_str(&http_get_as(web, &case, &li).unwrap()).unwrap();
    assert_eq!(after_case["consultation"], before_case["consultation"]);
    assert_eq!(after_case["timeline"], before_case["timeline"]);
    assert_eq!(
        http_get_as(web, "/api/v1/clinics/jinzhou/studies", &admin).unwrap(),
        before_studies
    );
    for (_, record) in gw.handle.archive.instances(&jz) {
        let restored = gw.stored_file(&record.object).unwrap();
        assert_eq!(store::blob::hash_file(&restored).unwrap(), record.object);
    }
    let (records, _) =
        gateway::audit::verify(&dir.path().join("gateway/restored/audit.log")).unwrap();
    assert!(
        records >= 2,
        "the views and the acceptance are in the restored log"
    );
    gw.stop().await.unwrap();
}

/// The viewer shows a series in Instance Number order, whatever its instances' UIDs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_viewer_shows_a_series_in_instance_number_order() {
    let dir = tempfile::tempdir().unwrap();
    let pilot = PilotDir::create(dir.path(), Timings::default()).unwrap();
    let link = free_udp_addr();
    let config = with_routing(
        &pilot.gateway_config(link).unwrap(),
        harness::people::ONE_RADIOLOGIST,
    );
    let gw = RunningGateway::start(config.clone()).unwrap();
    let li = sign_up(
        &gw.handle.accounts,
        person(
            "li",
            Role::Specialist,
            "Dr Li",
            Some("li"),
            Some("radiologist"),
        ),
    );
    let bundle = pilot.enrol("jinzhou", "Jinzhou").unwrap();
    let agent = RunningAgent::start(
        pilot.agent_config("jinzhou", &bundle, link).unwrap(),
        Default::default(),
    )
    .unwrap();
    let doc = sign_up(
        &agent.handle.accounts,
        person("doc", Role::Doctor, "Doctor", None, None),
    );
    let series =
        harness::samples::write_ct_series(&dir.path().join("ct"), "P-600", 6, 32 * 32 * 2, 3)
            .unwrap();
    let handle = agent.handle.clone();
    let files = series.files.clone();
    tokio::task::spawn_blocking(move || {
        for f in files.iter().rev() {
            handle.ingest_file(f).unwrap();
        }
    })
    .await
    .unwrap();
    let body = serde_json::json!({
        "patient": {"id": "P-600", "name": "", "sex": "", "birth_date": ""},
        "question": "q?", "specialty": "radiology", "urgency": "urgent",
        "consent": {"given_by": "patient", "method": "written"},
        "studies": [series.study_uid], "submit": true,
    });
    let here = daemon::client::local(agent.web_addr);
    let (status, answer) = http(
        here,
        "POST",
        "/api/v1/consultations",
        Some(&doc),
        Some(&body.to_string()),
    )
    .unwrap();
    assert_eq!(status, 200, "{answer}");
    let id: serde_json::Value = serde_json::from_str(&answer).unwrap();
    let id = id["consultation"]["id"].as_str().unwrap().to_owned();
    let jz = ClinicId::new("jinzhou").unwrap();
    assert!(
        wait_until(WAIT, || gw
            .handle
            .archive
            .studies(&jz)
            .first()
            .is_some_and(|s| s.instances == 6))
        .await
    );
    assert!(
        wait_until(WAIT, || gw
            .handle
            .consult
            .log
            .get(&ConsultationId::parse(&id).unwrap())
            .unwrap()
            .is_some_and(|f| f.consultation.assignee.is_some()))
        .await
    );
    // write_ct_series numbers its files' instances 1, 2, 3... in file order.
    for (i, file) in series.files.iter().enumerate() {
        let shown =
            harness::http_get_bytes(gw.web_addr, &format!("/cases/{id}/images/{i}"), Some(&li))
                .unwrap();
        let expected = gateway::render::png(file, 0, None).unwrap();
        assert!(shown == expected, "image {i} is not instance {}", i + 1);
        // The viewer names the instance's object: the same frame, found without a listing.
        let object = ::store::blob::hash_file(file).unwrap();
        let named = harness::http_get_bytes(
            gw.web_addr,
            &format!("/cases/{id}/images/{i}?o={object}&frame=0"),
            Some(&li),
        )
        .unwrap();
        assert!(named == expected, "image {i} by its object");
    }
    // An object of the clinic's that is not in this case's studies is not this case's image,
    // whatever the address says; nor is a made-up name.
    let other =
        harness::samples::write_ct_series(&dir.path().join("other"), "P-601", 1, 32 * 32 * 2, 4)
            .unwrap();
    let handle = agent.handle.clone();
    let file = other.files[0].clone();
    tokio::task::spawn_blocking(move || handle.ingest_file(&file).unwrap())
        .await
        .unwrap();
    let object = ::store::blob::hash_file(&other.files[0]).unwrap();
    assert!(wait_until(WAIT, || gw.handle.archive.has(&jz, &object).unwrap()).await);
    for (o, want) in [(object.to_string(), 404), ("not-an-object".to_owned(), 400)] {
        let (status, body) = http(
            gw.web_addr,
            "GET",
            &format!("/cases/{id}/images/0?o={o}&frame=0"),
            Some(&li),
            None,
        )
        .unwrap();
        assert_eq!(status, want, "{o}: {body}");
    }
    agent.stop().await.unwrap();
    gw.stop().await.unwrap();

    // The same data folder as a gateway from before the read indexes left it (no study
    // listing, no projections): the next gateway builds them and serves the same case.
    let index = config.data_dir.join("index");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let db = loop {
        match sled::open(&index) {
            Ok(db) => break db,
            Err(_) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("cannot reopen the gateway's index: {e}"),
        }
    };
    for tree in [
        "study_instances",
        "consult_projection",
        "consult_open",
        "consult_patients",
    ] {
        assert!(db.drop_tree(tree).unwrap(), "{tree} was there");
    }
    db.flush().unwrap();
    drop(db);
    let gw = loop {
        match RunningGateway::start(config.clone()) {
            Ok(gw) => break gw,
            Err(_) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("the older data folder does not open: {e:#}"),
        }
    };
    let rows: serde_json::Value =
        serde_json::from_str(&http_get_as(gw.web_addr, "/api/v1/consultations", &li).unwrap())
            .unwrap();
    assert_eq!(
        rows[0]["id"],
        id.as_str(),
        "the case is on the worklist: {rows}"
    );
    let detail: serde_json::Value = serde_json::from_str(
        &http_get_as(gw.web_addr, &format!("/api/v1/consultations/{id}"), &li).unwrap(),
    )
    .unwrap();
    assert_eq!(detail["studies"][0]["arrived"]["instances"], 6, "{detail}");
    for (i, file) in series.files.iter().enumerate() {
        let object = ::store::blob::hash_file(file).unwrap();
        let shown = harness::http_get_bytes(
            gw.web_addr,
            &format!("/cases/{id}/images/{i}?o={object}&frame=0"),
            Some(&li),
        )
        .unwrap();
        assert!(
            shown == gateway::render::png(file, 0, None).unwrap(),
            "image {i}"
        );
    }
    gw.stop().await.unwrap();
}

/// The doctor cancels while the clinic's link is down; meanwhile the specialist accepts and
/// signs. When the link is back, both sites show the signed report and the cancellation set
/// aside with why; neither site hides the report.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_made_offline_while_the_specialist_signs_never_hides_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let pilot = PilotDir::create(dir.path(), Timings::default()).unwrap();
    let gw = RunningGateway::start(with_routing(
        &pilot.gateway_config(free_udp_addr()).unwrap(),
        harness::people::ONE_RADIOLOGIST,
    ))
    .unwrap();
    sign_up(
        &gw.handle.accounts,
        person(
            "li",
            Role::Specialist,
            "Dr Li",
            Some("li"),
            Some("radiologist"),
        ),
    );
    let li = gw.handle.accounts.script_token("li").unwrap();
    let relay = harness::relay::UdpRelay::start(gw.link_addr).await.unwrap();
    let bundle = pilot.enrol("jinzhou", "Jinzhou").unwrap();
    let agent = RunningAgent::start(
        pilot.agent_config("jinzhou", &bundle, relay.addr).unwrap(),
        Default::default(),
    )
    .unwrap();
    let (jz, id) = (
        ClinicId::new("jinzhou").unwrap(),
        ConsultationId::new(now_ms() as u64, [4; 10]),
    );
    let clinic = &agent.handle.consult;
    for kind in request("P-300", "radiology", Urgency::Urgent, now_ms()) {
        clinic.append(&jz, &id, "dr.wang", now_ms(), kind).unwrap();
    }
    assert!(
        wait_until(WAIT, || state_at(clinic, &id) == Some(State::Assigned)).await,
        "assigned, and the clinic knows"
    );
    relay.set_cut(true);
    assert!(
        wait_until(WAIT, || !agent.handle.status_report().link.up).await,
        "the clinic's link is down"
    );
    clinic
        .append(
            &jz,
            &id,
            "dr.wang",
            now_ms(),
            EventKind::Cancelled {
                reason: "patient went home".into(),
            },
        )
        .unwrap();
    let case = format!("/api/v1/consultations/{id}");
    let web = gw.web_addr;
    let (status, body) = http(web, "POST", &format!("{case}/accept"), Some(&li), None).unwrap();
    assert_eq!(status, 200, "{body}");
    let (status, body) = http(
        web,
        "POST",
        &format!("{case}/report"),
        Some(&li),
        Some(r#"{"findings":"none","impression":"no fracture","recommendation":"rest","confirm_incomplete":true}"#),
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    relay.set_cut(false);
    let hospital = &gw.handle.consult;
    assert!(
        wait_until(WAIT, || {
            let (c, h) = (
                clinic.log.timeline(&id).unwrap(),
                hospital.log.timeline(&id).unwrap(),
            );
            c.len() == 8 && c == h
        })
        .await,
        "both sites hold both sides' events"
    );
    // The hospital's API and the clinic's both show the report and the set-aside cancel.
    let at_hospital: serde_json::Value =
        serde_json::from_str(&http_get_as(web, &case, &li).unwrap()).unwrap();
    let doctor = sign_up(
        &agent.handle.accounts,
        person("doc", Role::Doctor, "Doctor", None, None),
    );
    let (status, body) = http(agent.web_addr, "GET", &case, Some(&doctor), None).unwrap();
    assert_eq!(status, 200, "{body}");
    let at_clinic: serde_json::Value = serde_json::from_str(&body).unwrap();
    for detail in [&at_hospital, &at_clinic] {
        assert_eq!(detail["consultation"]["state"], "reported", "{detail}");
        assert_eq!(
            detail["consultation"]["report"]["impression"],
            "no fracture"
        );
        let set_aside = detail["superseded"].as_array().unwrap();
        assert_eq!(set_aside.len(), 1, "{detail}");
        assert_eq!(set_aside[0]["event"]["side"], "clinic");
        assert!(
            set_aside[0]["reason"]
                .as_str()
                .unwrap()
                .contains("signed report stands"),
            "{detail}"
        );
    }
    agent.stop().await.unwrap();
    gw.stop().await.unwrap();
}

/// The hospital with one radiologist on duty (`li`, with a script token) and Jinzhou's agent
/// linked to it: the setting most consultation tests start from.
struct OneRadiologist {
    dir: tempfile::TempDir,
    config: gateway::GatewayConfig,
    agent_config: clinic_agent::AgentConfig,
    gw: RunningGateway,
    li: String,
    agent: RunningAgent,
}

fn one_radiologist() -> OneRadiologist {
    let dir = tempfile::tempdir().unwrap();
    let pilot = PilotDir::create(dir.path(), Timings::default()).unwrap();
    let link = free_udp_addr();
    let config = with_routing(
        &pilot.gateway_config(link).unwrap(),
        harness::people::ONE_RADIOLOGIST,
    );
    let gw = RunningGateway::start(config.clone()).unwrap();
    let li = sign_up(
        &gw.handle.accounts,
        person(
            "li",
            Role::Specialist,
            "Dr Li",
            Some("li"),
            Some("radiologist"),
        ),
    );
    let bundle = pilot.enrol("jinzhou", "Jinzhou").unwrap();
    let agent_config = pilot.agent_config("jinzhou", &bundle, link).unwrap();
    let agent = RunningAgent::start(agent_config.clone(), Default::default()).unwrap();
    OneRadiologist {
        dir,
        config,
        agent_config,
        gw,
        li,
        agent,
    }
}

/// What happened after a backup survives a restore: the clinic's link gives the restored
/// gateway back its own events and offers every object again, so the gateway holds (and
/// forwards) the object sent after the backup, and the specialist's later report reaches the
/// clinic instead of being dropped as a duplicate. Until the clinic is back, its cases wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_gateway_takes_back_from_its_clinics_what_the_backup_lacked() {
    let OneRadiologist {
        dir,
        config,
        agent_config,
        gw,
        li,
        agent,
        ..
    } = one_radiologist();
    let admin = gw.admin_token().unwrap();
    let jz = ClinicId::new("jinzhou").unwrap();
    let cases = [
        ConsultationId::new(now_ms() as u64, [6; 10]),
        ConsultationId::new(now_ms() as u64, [7; 10]),
    ];
    for (id, patient) in cases.iter().zip(["P-600", "P-601"]) {
        for kind in request(patient, "radiology", Urgency::Urgent, now_ms()) {
            agent
                .handle
                .consult
                .append(&jz, id, "dr.wang", now_ms(), kind)
                .unwrap();
        }
    }
    let clinic_state =
        |agent: &RunningAgent, id: &ConsultationId| state_at(&agent.handle.consult, id);
    assert!(
        wait_until(WAIT, || cases
            .iter()
            .all(|id| clinic_state(&agent, id) == Some(State::Assigned)))
        .await
    );
    let web = gw.web_addr;
    let act = |web, id: &ConsultationId, what: &str, body: Option<&str>| {
        http(
            web,
            "POST",
            &format!("/api/v1/consultations/{id}/{what}"),
            Some(&li),
            body,
        )
        .unwrap()
    };
    let report = r#"{"findings":"none","impression":"normal","recommendation":"none","confirm_incomplete":true}"#;
    for id in &cases {
        assert_eq!(act(web, id, "accept", None).0, 200);
    }
    let to = dir.path().join("backup");
    let (status, body) = http(
        web,
        "POST",
        "/api/v1/admin/backup",
        Some(&admin),
        Some(&serde_json::json!({ "to": to }).to_string()),
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");

    // After the backup: an image arrives and the first case is reported.
    let study =
        harness::samples::write_ct_series(&dir.path().join("ct"), "P-600", 1, 64 * 64 * 2, 6)
            .unwrap();
    let (handle, file) = (agent.handle.clone(), study.files[0].clone());
    tokio::task::spawn_blocking(move || handle.ingest_file(&file).unwrap())
        .await
        .unwrap();
    assert!(
        wait_until(WAIT, || gw.handle.archive.instances(&jz).len() == 1
            && agent.handle.store.outbox().is_empty())
        .await,
        "the gateway receipted the image"
    );
    // The study is attached to no case: the administrator sees it, the specialist does not.
    let studies = |token: &str| -> serde_json::Value {
        serde_json::from_str(&http_get_as(web, "/api/v1/clinics/jinzhou/studies", token).unwrap())
            .unwrap()
    };
    assert_eq!(studies(&admin)["studies"].as_array().unwrap().len(), 1);
    assert_eq!(studies(&li)["studies"].as_array().unwrap().len(), 0);
    let (status, body) = act(web, &cases[0], "report", Some(report));
    assert_eq!(status, 200, "{body}");
    assert!(
        wait_until(WAIT, || clinic_state(&agent, &cases[0])
            == Some(State::Reported))
        .await,
        "the clinic holds the report"
    );
    agent.stop().await.unwrap();
    gw.stop().await.unwrap();

    // The hospital's disk is lost; the backup is restored, with a PACS to forward to.
    let text = std::fs::read_to_string(&config.file)
        .unwrap()
        .replace("data_dir = \"data\"", "data_dir = \"restored\"");
    let restored = config.file.with_file_name("restored.toml");
    std::fs::write(&restored, text).unwrap();
    let pacs = harness::peers::Storescp::start(&dir.path().join("pacs"), "PACS", &["+xa"]).unwrap();
    harness::append_config(
        &restored,
        &harness::forward_table("pacs", "PACS", pacs.addr, ""),
    )
    .unwrap();
    let out = std::process::Command::new(harness::binary("gateway"))
        .args(["restore", "--config"])
        .arg(&restored)
        .arg("--from")
        .arg(&to)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let gw = RunningGateway::start(gateway::GatewayConfig::load(&restored).unwrap()).unwrap();
    let web = gw.web_addr;
    let hospital = &gw.handle.consult;
    assert_eq!(
        state_at(hospital, &cases[0]),
        Some(State::Accepted),
        "the backup predates the report"
    );
    let (status, body) = act(web, &cases[1], "report", Some(report));
    assert_eq!(
        status, 503,
        "nothing is appended for a clinic not back yet: {body}"
    );
    assert!(body.contains("clinic_not_reconnected"), "{body}");

    let agent = RunningAgent::start(agent_config, Default::default()).unwrap();
    assert!(
        wait_until(WAIT, || state_at(hospital, &cases[0])
            == Some(State::Reported))
        .await,
        "the restored gateway took its report back from the clinic"
    );
    let object = store::blob::hash_file(&study.files[0]).unwrap();
    assert!(
        wait_until(WAIT, || gw
            .handle
            .archive
            .instances(&jz)
            .iter()
            .any(|(_, r)| r.object == object))
        .await,
        "the image sent after the backup was offered again and stored"
    );
    assert!(
        wait_until(WAIT, || !pacs.files().is_empty()).await,
        "and forwarded to the PACS"
    );
    assert!(
        wait_until(WAIT, || act(web, &cases[1], "report", Some(report)).0
            == 200)
        .await,
        "the clinic is back: the specialist reports again"
    );
    assert!(
        wait_until(WAIT, || cases.iter().all(|id| {
            hospital.log.timeline(id).unwrap() == agent.handle.consult.log.timeline(id).unwrap()
        }) && clinic_state(&agent, &cases[1])
            == Some(State::Reported))
        .await,
        "both sites' timelines are equal, and the new report reached the clinic"
    );
    agent.stop().await.unwrap();
    gw.stop().await.unwrap();
}

/// The images say whose they are: the clinic cannot move a case onto another patient id
/// under its attached study, and once the specialist has accepted, a change of identity is a
/// correction with its reason, shown to the specialist above the case.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_case_keeps_the_patient_of_its_images_and_late_corrections_are_shown() {
    let OneRadiologist {
        dir, gw, li, agent, ..
    } = one_radiologist();
    let doctor = sign_up(
        &agent.handle.accounts,
        person("doc", Role::Doctor, "Doctor", None, None),
    );
    let study =
        harness::samples::write_ct_series(&dir.path().join("ct"), "P-700", 1, 64 * 64 * 2, 8)
            .unwrap();
    let handle = agent.handle.clone();
    let uid = study.study_uid.clone();
    let file = study.files[0].clone();
    let case = tokio::task::spawn_blocking(move || {
        handle.ingest_file(&file).unwrap();
        let who = person("doc", Role::Doctor, "Doctor", None, None);
        let request = harness::people::new_case("radiology", Urgency::Urgent, "?", "", vec![uid]);
        handle.cases().create(&who, request).unwrap()
    })
    .await
    .unwrap();
    let id = case.consultation.id.clone();
    assert_eq!(
        case.consultation.patient.id, "P-700",
        "filled from the study"
    );
    let path = format!("/api/v1/consultations/{id}");
    let update = |body: serde_json::Value| {
        http(
            agent.web_addr,
            "POST",
            &format!("{path}/patient"),
            Some(&doctor),
            Some(&body.to_string()),
        )
        .unwrap()
    };
    let patient = |id: &str, name: &str| serde_json::json!({"id": id, "name": name, "sex": "", "birth_date": ""});
    let (status, body) = update(serde_json::json!({"patient": patient("P-999", "")}));
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("belongs to another patient id"), "{body}");
    assert!(
        wait_until(WAIT, || state_at(&gw.handle.consult, &id)
            == Some(State::Assigned))
        .await
    );
    let (status, body) = http(
        gw.web_addr,
        "POST",
        &format!("{path}/accept"),
        Some(&li),
        None,
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(
        wait_until(WAIT, || state_at(&agent.handle.consult, &id)
            == Some(State::Accepted))
        .await
    );
    let (status, body) = update(serde_json::json!({"patient": patient("P-700", "Corrected^Name")}));
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("give its reason"), "{body}");
    let (status, body) = update(serde_json::json!({
        "patient": patient("P-700", "Corrected^Name"),
        "reason": "name typed from the wrong form"
    }));
    assert_eq!(status, 200, "{body}");
    assert!(
        wait_until(WAIT, || gw
            .handle
            .consult
            .log
            .get(&id)
            .unwrap()
            .is_some_and(|f| f.consultation.corrections.len() == 1))
        .await,
        "the correction reaches the hospital"
    );
    let page = http_get_as(gw.web_addr, &format!("/cases/{id}"), &li).unwrap();
    assert!(page.contains("id=\"corrections\""), "{page}");
    assert!(page.contains("name typed from the wrong form"), "{page}");
    agent.stop().await.unwrap();
    gw.stop().await.unwrap();
}

/// A storm of logins (300 at once, each a different name) costs the gateway a bounded number
/// of password checks at a time: every caller gets an answer (401, or 503 to retry), and an
/// upload running meanwhile still gets its receipts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_storm_does_not_stop_an_upload() {
    let dir = tempfile::tempdir().unwrap();
    let pilot = PilotDir::create(dir.path(), Timings::default()).unwrap();
    let link = free_udp_addr();
    let gw = RunningGateway::start(pilot.gateway_config(link).unwrap()).unwrap();
    let bundle = pilot.enrol("jinzhou", "Jinzhou").unwrap();
    let agent = RunningAgent::start(
        pilot.agent_config("jinzhou", &bundle, link).unwrap(),
        Default::default(),
    )
    .unwrap();
    let study =
        harness::samples::write_ct_series(&dir.path().join("ct"), "P-800", 6, 2 * 1024 * 1024, 9)
            .unwrap();
    let web = gw.web_addr;
    let storm = std::thread::spawn(move || {
        let callers: Vec<_> = (0..300)
            .map(|i| {
                std::thread::spawn(move || {
                    let body = format!(r#"{{"user":"guest{i}","password":"not the password"}}"#);
                    http(web, "POST", "/api/v1/login", None, Some(&body))
                        .map(|(status, _)| status)
                        .unwrap_or(0)
                })
            })
            .collect();
        callers
            .into_iter()
            .map(|c| c.join().unwrap())
            .collect::<Vec<u16>>()
    });
    let handle = agent.handle.clone();
    let files = study.files.clone();
    tokio::task::spawn_blocking(move || {
        for f in files {
            handle.ingest_file(&f).unwrap();
        }
    })
    .await
    .unwrap();
    let jz = ClinicId::new("jinzhou").unwrap();
    assert!(
        wait_until(WAIT, || gw.handle.archive.instances(&jz).len() == 6).await,
        "the upload's receipts arrive during the storm"
    );
    let statuses = tokio::task::spawn_blocking(move || storm.join().unwrap())
        .await
        .unwrap();
    assert!(
        statuses.iter().all(|s| *s == 401 || *s == 503),
        "every caller is answered, refused or told to retry: {statuses:?}"
    );
    agent.stop().await.unwrap();
    gw.stop().await.unwrap();
}
