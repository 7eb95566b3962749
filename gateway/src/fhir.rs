//! FHIR R4 (4.0.1), read-only, under `/fhir/r4/`: the consultations as the hospital's own
//! systems (HIS/EMR, the regional health platform) exchange them. Each case is a
//! `ServiceRequest` (question, urgency, specialty, consent as an extension) about a `Patient`
//! (the clinic's id, with the clinic as the identifier's system); each of its studies that has
//! arrived is an `ImagingStudy` with a DICOMweb endpoint on this listener; its signed report
//! is a `DiagnosticReport` (`amended` once it has addenda). `basedOn` and `subject` references
//! chain them. Reads and searches (by patient, status, date, `_lastUpdated` for polling)
//! answer `application/fhir+json`; errors are `OperationOutcome`s.
//!
//! Access and audit are the API's: a specialist reads the resources of the cases they may
//! list, an administrator all; every answer holding patient data is recorded first, naming
//! its cases. The `CapabilityStatement` (`/fhir/r4/metadata`) holds none and is public.

// An answer refused is a whole response; boxing it buys nothing.
#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, BTreeSet};

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use daemon::api::{blocking, ApiError};
use daemon::login::Authenticated;
use proto::consult::{Consultation, State as CaseState, Urgency};
use serde_json::{json, Value};

use crate::api::Api;
use crate::https::Peer;

type Client = axum::extract::ConnectInfo<Peer>;

/// The media type of every answer.
const FHIR_JSON: &str = "application/fhir+json";

/// The resource types served.
const KINDS: [&str; 4] = [
    "Patient",
    "ServiceRequest",
    "ImagingStudy",
    "DiagnosticReport",
];

pub fn routes() -> axum::Router<Api> {
    axum::Router::new()
        .route("/fhir/r4/metadata", get(capabilities))
        .route("/fhir/r4/{kind}", get(search))
        .route("/fhir/r4/{kind}/{id}", get(read))
}

/// A FHIR error: an `OperationOutcome` with its status.
fn outcome(status: StatusCode, code: &str, text: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, FHIR_JSON)],
        json!({
            "resourceType": "OperationOutcome",
            "issue": [{ "severity": "error", "code": code, "diagnostics": text }],
        })
        .to_string(),
    )
        .into_response()
}

fn refused(e: ApiError) -> Response {
    let code = match e.status {
        StatusCode::UNAUTHORIZED => "login",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND => "not-found",
        StatusCode::BAD_REQUEST => "invalid",
        _ => "exception",
    };
    outcome(e.status, code, &e.message)
}

fn answer(value: &Value) -> Response {
    ([(header::CONTENT_TYPE, FHIR_JSON)], value.to_string()).into_response()
}

/// A FHIR `instant` (RFC 3339, UTC) of unix milliseconds.
fn instant(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".into())
}

/// A short, stable id for what has no id of its own that FHIR allows (a patient's id at a
/// clinic, a study's UID): `prefix` and a keyed hash (HMAC-SHA-256 under the gateway's id
/// key, `consult::derived_key`), so an id seen in a URL or a log cannot be turned back into
/// the patient id by trying the likely ones.
fn hashed_id(key: &[u8], prefix: &str, clinic: &str, value: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    let tag = ring::hmac::sign(&key, format!("{prefix}\0{clinic}\0{value}").as_bytes());
    let hex: String = tag.as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{prefix}-{hex}")
}

/// The purpose the FHIR ids' key is derived for.
pub const ID_KEY_PURPOSE: &str = "fhir-resource-ids";

/// A readable case, with the time of its last event.
struct Case {
    c: Consultation,
    updated_ms: i64,
}

/// One resource, with what searches match it against.
struct Resource {
    kind: &'static str,
    id: String,
    /// The cases it comes from (the audit log names them).
    cases: BTreeSet<String>,
    updated_ms: i64,
    /// `Patient/…` it is about.
    patient: String,
    /// Search values: `status`, `identifier` (`system|value`), `based-on`, and the dates.
    status: Option<String>,
    identifier: Option<(String, String)>,
    based_on: BTreeSet<String>,
    date_ms: Option<i64>,
    body: Value,
}

/// Every resource of the cases `user` may list.
fn resources(
    api: &Api,
    user: &daemon::accounts::User,
    base: &str,
) -> Result<Vec<Resource>, ApiError> {
    let mut cases = Vec::new();
    for c in api.cases.listable(user).map_err(ApiError::from)? {
        let updated_ms = api
            .cases
            .consult
            .log
            .timeline(&c.id)
            .map_err(|e| ApiError::internal(e.to_string()))?
            .iter()
            .map(|e| e.at_ms)
            .max()
            .unwrap_or(c.created_at_ms);
        cases.push(Case { c, updated_ms });
    }
    let mut out = Vec::new();
    // One Patient per (clinic, patient id), one ImagingStudy per (clinic, study).
    let mut patients: BTreeMap<String, Resource> = BTreeMap::new();
    let mut studies: BTreeMap<String, Resource> = BTreeMap::new();
    for case in &cases {
        let c = &case.c;
        let pid = hashed_id(&api.fhir_ids, "pt", c.clinic.as_str(), &c.patient.id);
        let subject = format!("Patient/{pid}");
        let p = patients.entry(pid.clone()).or_insert_with(|| Resource {
            kind: "Patient",
            id: pid.clone(),
            cases: BTreeSet::new(),
            updated_ms: 0,
            patient: subject.clone(),
            status: None,
            identifier: Some((clinic_system(c), c.patient.id.clone())),
            based_on: BTreeSet::new(),
            date_ms: None,
            body: patient(c, &pid),
        });
        p.cases.insert(c.id.as_str().to_owned());
        p.updated_ms = p.updated_ms.max(case.updated_ms);
        let arrived = api
            .cases
            .archive
            .study_instances(&c.clinic, &c.studies)
            .map_err(|e| ApiError::internal(e.to_string()))?;
        let mut study_refs = Vec::new();
        for study in &c.studies {
            let of_study: Vec<&([String; 4], crate::archive::InstanceRecord)> =
                arrived.iter().filter(|(k, _)| k[1] == *study).collect();
            if of_study.is_empty() {
                continue;
            }
            let sid = hashed_id(&api.fhir_ids, "st", c.clinic.as_str(), study);
            study_refs.push(format!("ImagingStudy/{sid}"));
            let received = of_study.iter().map(|(_, r)| r.received_at * 1000).max();
            let s = studies.entry(sid.clone()).or_insert_with(|| Resource {
                kind: "ImagingStudy",
                id: sid.clone(),
                cases: BTreeSet::new(),
                updated_ms: 0,
                patient: subject.clone(),
                status: None,
                identifier: Some(("urn:dicom:uid".into(), format!("urn:oid:{study}"))),
                based_on: BTreeSet::new(),
                date_ms: None,
                body: imaging_study(base, &sid, &subject, study, &of_study),
            });
            s.cases.insert(c.id.as_str().to_owned());
            s.based_on
                .insert(format!("ServiceRequest/{}", c.id.as_str()));
            s.updated_ms = s.updated_ms.max(case.updated_ms).max(received.unwrap_or(0));
        }
        let request = service_request(c, &subject, &study_refs);
        out.push(Resource {
            kind: "ServiceRequest",
            id: c.id.as_str().to_owned(),
            cases: [c.id.as_str().to_owned()].into(),
            updated_ms: case.updated_ms,
            patient: subject.clone(),
            status: request["status"].as_str().map(str::to_owned),
            identifier: c
                .number
                .clone()
                .map(|n| (format!("{}:case-number", clinic_system(c)), n)),
            based_on: BTreeSet::new(),
            date_ms: Some(c.created_at_ms),
            body: request,
        });
        if let Some(report) = diagnostic_report(c, &subject, &study_refs) {
            out.push(Resource {
                kind: "DiagnosticReport",
                id: c.id.as_str().to_owned(),
                cases: [c.id.as_str().to_owned()].into(),
                updated_ms: case.updated_ms,
                patient: subject.clone(),
                status: report["status"].as_str().map(str::to_owned),
                identifier: None,
                based_on: [format!("ServiceRequest/{}", c.id.as_str())].into(),
                date_ms: c.report.as_ref().map(|r| r.signed_at_ms),
                body: report,
            });
        }
    }
    out.extend(patients.into_values());
    out.extend(studies.into_values());
    for r in &mut out {
        let basedon: Vec<Value> = r
            .based_on
            .iter()
            .map(|b| json!({ "reference": b }))
            .collect();
        if r.kind == "ImagingStudy" {
            r.body["basedOn"] = Value::Array(basedon);
        }
        r.body["meta"] = json!({ "lastUpdated": instant(r.updated_ms) });
    }
    Ok(out)
}

/// The identifier system of a clinic's own ids.
fn clinic_system(c: &Consultation) -> String {
    format!("urn:tpg:clinic:{}", c.clinic.as_str())
}

fn patient(c: &Consultation, id: &str) -> Value {
    let mut p = json!({
        "resourceType": "Patient",
        "id": id,
        "identifier": [{ "system": clinic_system(c), "value": c.patient.id }],
        "managingOrganization": { "display": c.clinic.as_str() },
        "gender": match c.patient.sex.as_str() {
            "M" => "male",
            "F" => "female",
            "O" => "other",
            _ => "unknown",
        },
    });
    if !c.patient.name.trim().is_empty() {
        p["name"] = json!([{ "text": c.patient.name }]);
    }
    let b = &c.patient.birth_date;
    if b.len() == 10
        && time::Date::parse(
            b,
            &time::macros::format_description!("[year]-[month]-[day]"),
        )
        .is_ok()
    {
        p["birthDate"] = json!(b);
    }
    p
}

fn service_request(c: &Consultation, subject: &str, studies: &[String]) -> Value {
    let status = match c.state {
        CaseState::Draft => "draft",
        CaseState::Reported | CaseState::Acknowledged => "completed",
        CaseState::Cancelled => "revoked",
        _ => "active",
    };
    let mut r = json!({
        "resourceType": "ServiceRequest",
        "id": c.id.as_str(),
        "status": status,
        "intent": "order",
        "priority": match c.urgency {
            Urgency::Emergency => "stat",
            Urgency::Urgent => "urgent",
            Urgency::Routine => "routine",
        },
        "code": {
            "coding": [{ "system": "http://snomed.info/sct", "code": "11429006", "display": "Consultation" }],
            "text": "Teleconsultation",
        },
        "performerType": { "text": c.specialty },
        "subject": { "reference": subject },
        "authoredOn": instant(c.created_at_ms),
        "reasonCode": [{ "text": c.question }],
    });
    if let Some(n) = &c.number {
        r["identifier"] =
            json!([{ "system": format!("{}:case-number", clinic_system(c)), "value": n }]);
    }
    if !c.clinical_summary.trim().is_empty() {
        r["note"] = json!([{ "text": c.clinical_summary }]);
    }
    if !studies.is_empty() {
        r["supportingInfo"] = studies.iter().map(|s| json!({ "reference": s })).collect();
    }
    if let Some(consent) = &c.consent {
        r["extension"] = json!([{
            "url": CONSENT_EXTENSION,
            "extension": [
                { "url": "givenBy", "valueString": consent.given_by },
                { "url": "method", "valueCode": consent.method },
                { "url": "recorded", "valueDateTime": instant(consent.at_ms) },
            ],
        }]);
    }
    r
}

/// The extension holding a request's consent: who gave it, how, when.
const CONSENT_EXTENSION: &str = "urn:tpg:fhir:StructureDefinition:consent";

fn imaging_study(
    base: &str,
    id: &str,
    subject: &str,
    study: &str,
    instances: &[&([String; 4], crate::archive::InstanceRecord)],
) -> Value {
    let dcm =
        |m: &str| json!({ "system": "http://dicom.nema.org/resources/ontology/DCM", "code": m });
    let mut series: BTreeMap<&str, Vec<&crate::archive::InstanceRecord>> = BTreeMap::new();
    let mut sops: BTreeMap<&str, Vec<(&str, &crate::archive::InstanceRecord)>> = BTreeMap::new();
    for (k, r) in instances {
        series.entry(&k[2]).or_default().push(r);
        let list = sops.entry(&k[2]).or_default();
        if !list.iter().any(|(sop, _)| *sop == k[3]) {
            list.push((&k[3], r));
        }
    }
    let modalities: BTreeSet<&str> = instances
        .iter()
        .filter_map(|(_, r)| r.modality.as_deref())
        .filter(|m| !m.is_empty())
        .collect();
    let series_json: Vec<Value> = sops
        .iter()
        .map(|(uid, list)| {
            let modality = list
                .iter()
                .find_map(|(_, r)| r.modality.as_deref())
                .unwrap_or("OT");
            json!({
                "uid": uid,
                "modality": dcm(modality),
                "numberOfInstances": list.len(),
                "instance": list.iter().map(|(sop, r)| json!({
                    "uid": sop,
                    "sopClass": { "system": "urn:ietf:rfc:3986", "code": format!("urn:oid:{}", r.sop_class_uid) },
                    "number": r.instance_number,
                })).map(|mut v| { if v["number"].is_null() { if let Some(m) = v.as_object_mut() { m.remove("number"); } } v }).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "resourceType": "ImagingStudy",
        "id": id,
        "contained": [{
            "resourceType": "Endpoint",
            "id": "dicomweb",
            "status": "active",
            "connectionType": {
                "system": "http://terminology.hl7.org/CodeSystem/endpoint-connection-type",
                "code": "dicom-wado-rs",
            },
            "payloadType": [{ "text": "DICOM" }],
            "payloadMimeType": ["application/dicom"],
            "address": format!("{base}/dicomweb"),
        }],
        "identifier": [{ "system": "urn:dicom:uid", "value": format!("urn:oid:{study}") }],
        "status": "available",
        "modality": modalities.into_iter().map(dcm).collect::<Vec<_>>(),
        "subject": { "reference": subject },
        "endpoint": [{ "reference": "#dicomweb" }],
        "numberOfSeries": series.len(),
        "numberOfInstances": sops.values().map(Vec::len).sum::<usize>(),
        "series": series_json,
    })
}

fn diagnostic_report(c: &Consultation, subject: &str, studies: &[String]) -> Option<Value> {
    let r = c.report.as_ref()?;
    let mut text = format!(
        "Findings:\n{}\n\nImpression:\n{}\n\nRecommendation:\n{}\n\nSigned by {} ({})\n",
        r.findings, r.impression, r.recommendation, r.signer_name, r.signer_qualification
    );
    for (n, a) in c.addenda.iter().enumerate() {
        text.push_str(&format!("\nAddendum {}:\n{a}\n", n + 1));
    }
    let mut report = json!({
        "resourceType": "DiagnosticReport",
        "id": c.id.as_str(),
        "basedOn": [{ "reference": format!("ServiceRequest/{}", c.id.as_str()) }],
        "status": if c.addenda.is_empty() { "final" } else { "amended" },
        "code": {
            "coding": [{ "system": "http://loinc.org", "code": "11488-4", "display": "Consult note" }],
            "text": format!("Teleconsultation report ({})", c.specialty),
        },
        "subject": { "reference": subject },
        "effectiveDateTime": instant(r.signed_at_ms),
        "issued": instant(r.signed_at_ms),
        "performer": [{ "display": format!("{}, {}", r.signer_name, r.signer_qualification) }],
        "conclusion": r.impression,
        "presentedForm": [{
            "contentType": "text/plain; charset=utf-8",
            "language": "zh-CN",
            "title": "Teleconsultation report",
            "data": base64::engine::general_purpose::STANDARD.encode(text.as_bytes()),
        }],
    });
    if !studies.is_empty() {
        report["imagingStudy"] = studies.iter().map(|s| json!({ "reference": s })).collect();
    }
    Some(report)
}

/// A date search value: its prefix and the span of time it names, in unix milliseconds.
fn date_param(text: &str) -> Option<(&str, i64, i64)> {
    let (prefix, value) = match text.get(..2) {
        Some(p @ ("eq" | "ne" | "gt" | "lt" | "ge" | "le" | "sa" | "eb")) => (p, &text[2..]),
        _ => ("eq", text),
    };
    use time::macros::format_description;
    let day = |y: i32, m: u8, d: u8| -> Option<i64> {
        let date = time::Date::from_calendar_date(y, time::Month::try_from(m).ok()?, d).ok()?;
        Some(date.midnight().assume_utc().unix_timestamp() * 1000)
    };
    let span = match value.len() {
        4 => {
            let y: i32 = value.parse().ok()?;
            (day(y, 1, 1)?, day(y.checked_add(1)?, 1, 1)?)
        }
        7 => {
            let (y, m) = value.split_once('-')?;
            let (y, m): (i32, u8) = (y.parse().ok()?, m.parse().ok()?);
            let next = if m == 12 {
                day(y.checked_add(1)?, 1, 1)?
            } else {
                day(y, m.checked_add(1)?, 1)?
            };
            (day(y, m, 1)?, next)
        }
        10 => {
            let d = time::Date::parse(value, &format_description!("[year]-[month]-[day]")).ok()?;
            let start = d.midnight().assume_utc().unix_timestamp() * 1000;
            (start, start + 86_400_000)
        }
        _ => {
            let t =
                time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc3339)
                    .ok()?;
            let ms = (t.unix_timestamp_nanos() / 1_000_000) as i64;
            (ms, ms + 1)
        }
    };
    Some((prefix, span.0, span.1))
}

/// Whether `ms` matches a date search value (FHIR R4 §3.1.1.5.6 prefixes).
pub fn date_matches(text: &str, ms: Option<i64>) -> Result<bool, String> {
    let (prefix, from, to) = date_param(text).ok_or_else(|| {
        format!("'{text}' is not a FHIR date: write 2026-12-05, ge2026-12-01 or 2026-12-05T08:00:00+08:00")
    })?;
    let Some(ms) = ms else { return Ok(false) };
    Ok(match prefix {
        "eq" => ms >= from && ms < to,
        "ne" => ms < from || ms >= to,
        "gt" | "sa" => ms >= to,
        "ge" => ms >= from,
        "lt" | "eb" => ms < from,
        _ => ms < to,
    })
}

/// Whether a reference search value (`Patient/x` or `x`) names `reference` (`Patient/x`).
fn names(asked: &str, reference: &str, kind: &str) -> bool {
    asked == reference || format!("{kind}/{asked}") == reference
}

/// The search parameters each type takes, besides `_id`, `_lastUpdated`, `_count`.
fn params_of(kind: &str) -> &'static [&'static str] {
    match kind {
        "Patient" => &["identifier"],
        "ServiceRequest" => &["patient", "subject", "status", "authored", "identifier"],
        "ImagingStudy" => &["patient", "subject", "basedon", "identifier"],
        _ => &["patient", "subject", "status", "date", "based-on"],
    }
}

/// Whether a search of `kind` takes the parameter `name`.
fn takes(kind: &str, name: &str) -> bool {
    matches!(
        name,
        "_id" | "_lastUpdated" | "_count" | "_offset" | "_format"
    ) || params_of(kind).contains(&name)
}

/// Whether `r` matches every search parameter; an error names a parameter or value not taken.
fn matches(r: &Resource, params: &[(String, String)]) -> Result<bool, String> {
    for (name, value) in params {
        let ok = match name.as_str() {
            "_count" | "_offset" | "_format" => true,
            "_id" => value.split(',').any(|v| v == r.id),
            "_lastUpdated" => date_matches(value, Some(r.updated_ms))?,
            "patient" | "subject" if params_of(r.kind).contains(&name.as_str()) => {
                value.split(',').any(|v| names(v, &r.patient, "Patient"))
            }
            "status" if params_of(r.kind).contains(&"status") => {
                value.split(',').any(|v| Some(v) == r.status.as_deref())
            }
            "authored" | "date" if params_of(r.kind).contains(&name.as_str()) => {
                date_matches(value, r.date_ms)?
            }
            "based-on" | "basedon" if params_of(r.kind).contains(&name.as_str()) => value
                .split(',')
                .any(|v| r.based_on.iter().any(|b| names(v, b, "ServiceRequest"))),
            "identifier" if params_of(r.kind).contains(&"identifier") => {
                value
                    .split(',')
                    .any(|v| match (&r.identifier, v.split_once('|')) {
                        (Some((system, id)), Some((s, i))) => {
                            (s.is_empty() || s == system) && i == id
                        }
                        (Some((_, id)), None) => v == id,
                        (None, _) => false,
                    })
            }
            other => {
                return Err(format!(
                    "{} is not searched by '{other}'; use _id, _lastUpdated, _count, _offset or {}",
                    r.kind,
                    params_of(r.kind).join(", ")
                ))
            }
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

fn known_kind(kind: &str) -> Result<&'static str, Response> {
    KINDS.iter().copied().find(|k| *k == kind).ok_or_else(|| {
        outcome(
            StatusCode::NOT_FOUND,
            "not-supported",
            &format!(
                "{kind} is not served here; the types are {} (and /fhir/r4/metadata)",
                KINDS.join(", ")
            ),
        )
    })
}

/// Who asks, and the resource type they name; or the OperationOutcome that refuses them.
fn caller(
    user: Result<Authenticated, ApiError>,
    kind: &str,
) -> Result<(daemon::accounts::User, &'static str), Response> {
    let Authenticated(user) = user.map_err(refused)?;
    Ok((user, known_kind(kind)?))
}

async fn read(
    State(api): State<Api>,
    axum::extract::ConnectInfo(Peer(from)): Client,
    user: Result<Authenticated, ApiError>,
    Path((kind, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let (user, kind) = match caller(user, &kind) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let base = api.origin(&headers);
    let found = blocking(move || {
        let r = resources(&api, &user, &base)?
            .into_iter()
            .find(|r| r.kind == kind && r.id == id)
            .ok_or_else(|| ApiError::not_found(format!("no {kind}/{id} here")))?;
        let cases: Vec<&str> = r.cases.iter().map(String::as_str).collect();
        api.cases
            .audited_target(&user, from, "fhir_read", &cases.join(","))
            .map_err(ApiError::from)?;
        Ok(r.body)
    })
    .await;
    match found {
        Ok(body) => answer(&body),
        Err(e) => refused(e),
    }
}

/// The most entries one search answers when it names no `_count`.
const MAX_ENTRIES: usize = 1000;

async fn search(
    State(api): State<Api>,
    axum::extract::ConnectInfo(Peer(from)): Client,
    user: Result<Authenticated, ApiError>,
    Path(kind): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    let (user, kind) = match caller(user, &kind) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let params: Vec<(String, String)> =
        match serde_urlencoded::from_str(raw.as_deref().unwrap_or("")) {
            Ok(p) => p,
            Err(e) => {
                return outcome(
                    StatusCode::BAD_REQUEST,
                    "invalid",
                    &format!("the query string is malformed: {e}"),
                )
            }
        };
    // Parameters this server does not take are ignored, as FHIR asks of a lenient server, and
    // left out of the self link; a client that wants them refused says
    // `Prefer: handling=strict` (R4 §3.1.1.5.7).
    let strict = headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("handling=strict"));
    let params: Vec<(String, String)> = params
        .into_iter()
        .filter(|(name, _)| strict || takes(kind, name))
        .collect();
    let offset = match params.iter().find(|(n, _)| n == "_offset") {
        None => 0,
        Some((_, v)) => match v.parse::<usize>() {
            Ok(n) => n,
            Err(_) => {
                return outcome(
                    StatusCode::BAD_REQUEST,
                    "invalid",
                    &format!("_offset={v} is not a count"),
                )
            }
        },
    };
    let count = match params.iter().find(|(n, _)| n == "_count") {
        None => MAX_ENTRIES,
        Some((_, v)) => match v.parse::<usize>() {
            Ok(n) => n.min(MAX_ENTRIES),
            Err(_) => {
                return outcome(
                    StatusCode::BAD_REQUEST,
                    "invalid",
                    &format!("_count={v} is not a count"),
                )
            }
        },
    };
    let base = api.origin(&headers);
    let link = |offset: Option<usize>| {
        let mut pairs: Vec<(String, String)> = params
            .iter()
            .filter(|(n, _)| n != "_offset")
            .cloned()
            .collect();
        if let Some(o) = offset.filter(|o| *o > 0) {
            pairs.push(("_offset".into(), o.to_string()));
        }
        let query = serde_urlencoded::to_string(&pairs).unwrap_or_default();
        format!(
            "{base}/fhir/r4/{kind}{}",
            if query.is_empty() {
                String::new()
            } else {
                format!("?{query}")
            }
        )
    };
    let self_url = link(Some(offset));
    let next_url = link(Some(offset.saturating_add(count)));
    let found = blocking(move || {
        let mut hits = Vec::new();
        for r in resources(&api, &user, &base)? {
            if r.kind == kind && matches(&r, &params).map_err(ApiError::bad_request)? {
                hits.push(r);
            }
        }
        // Probe the parameters even when nothing of this type exists, so a typo is named.
        if hits.is_empty() {
            let probe = Resource {
                kind,
                id: String::new(),
                cases: BTreeSet::new(),
                updated_ms: 0,
                patient: String::new(),
                status: None,
                identifier: None,
                based_on: BTreeSet::new(),
                date_ms: None,
                body: Value::Null,
            };
            matches(&probe, &params).map_err(ApiError::bad_request)?;
        }
        hits.sort_by_key(|r| std::cmp::Reverse((r.updated_ms, r.id.clone())));
        let total = hits.len();
        let mut links = vec![json!({ "relation": "self", "url": self_url })];
        if offset.saturating_add(count) < total {
            links.push(json!({ "relation": "next", "url": next_url }));
        }
        // What the answer shows is recorded: the page's cases, or when the page is empty
        // (`_count=0`) but the total tells what matched, every matching case.
        let page: Vec<&Resource> = hits.iter().skip(offset).take(count).collect();
        let shown: Vec<&Resource> = if page.is_empty() {
            hits.iter().collect()
        } else {
            page.clone()
        };
        let cases: BTreeSet<&str> = shown
            .iter()
            .flat_map(|r| r.cases.iter().map(String::as_str))
            .collect();
        if !cases.is_empty() {
            let cases: Vec<&str> = cases.into_iter().collect();
            api.cases
                .audited_target(&user, from, "fhir_search", &cases.join(","))
                .map_err(ApiError::from)?;
        }
        Ok(json!({
            "resourceType": "Bundle",
            "type": "searchset",
            "total": total,
            "link": links,
            "entry": page.iter().map(|r| json!({
                "fullUrl": format!("{base}/fhir/r4/{}/{}", r.kind, r.id),
                "resource": r.body,
                "search": { "mode": "match" },
            })).collect::<Vec<_>>(),
        }))
    })
    .await;
    match found {
        Ok(bundle) => answer(&bundle),
        Err(e) => refused(e),
    }
}

/// What this server does, for clients to discover (public: no patient data).
async fn capabilities() -> Response {
    let resource = |kind: &str| {
        let mut params: Vec<Value> = vec![
            json!({ "name": "_id", "type": "token" }),
            json!({ "name": "_lastUpdated", "type": "date" }),
        ];
        for p in params_of(kind) {
            let t = match *p {
                "patient" | "subject" | "basedon" | "based-on" => "reference",
                "authored" | "date" => "date",
                _ => "token",
            };
            params.push(json!({ "name": p, "type": t }));
        }
        json!({
            "type": kind,
            "interaction": [{ "code": "read" }, { "code": "search-type" }],
            "searchParam": params,
        })
    };
    answer(&json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-12-05",
        "publisher": "Township Telemedicine Pilot Gateway",
        "kind": "instance",
        "software": { "name": "tpg-gateway", "version": env!("CARGO_PKG_VERSION") },
        "implementation": { "description": "Consultations, their studies and reports, read-only" },
        "fhirVersion": "4.0.1",
        "format": ["json"],
        "rest": [{
            "mode": "server",
            "security": { "description": "A session of the gateway's web pages, or a bearer token (gateway user token)" },
            "resource": KINDS.iter().map(|k| resource(k)).collect::<Vec<_>>(),
        }],
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_match_with_prefixes_over_the_span_they_name() {
        let day = 1_764_892_800_000; // 2025-12-05T00:00:00Z
        assert!(date_matches("2025-12-05", Some(day + 3_600_000)).unwrap());
        assert!(!date_matches("2025-12-06", Some(day)).unwrap());
        assert!(date_matches("ge2025-12-05", Some(day)).unwrap());
        assert!(!date_matches("gt2025-12-05", Some(day + 1000)).unwrap());
        assert!(date_matches("lt2025-12", Some(day - 86_400_000 * 5)).unwrap());
        assert!(date_matches("le2025", Some(day)).unwrap());
        assert!(date_matches("ge2025-12-05T00:00:00Z", Some(day)).unwrap());
        assert!(!date_matches("2025-12-05", None).unwrap());
        assert!(date_matches("yesterday", Some(day)).is_err());
        assert_eq!(instant(day), "2025-12-05T00:00:00Z");
    }

    #[test]
    fn ids_are_stable_hashes_that_hold_no_patient_data() {
        let a = hashed_id(b"key", "pt", "jinzhou", "P-1");
        assert_eq!(a, hashed_id(b"key", "pt", "jinzhou", "P-1"));
        assert_ne!(a, hashed_id(b"key", "pt", "other", "P-1"));
        assert_ne!(a, hashed_id(b"another key", "pt", "jinzhou", "P-1"));
        assert!(!a.contains("P-1") && a.len() <= 64, "{a}");
    }
}
