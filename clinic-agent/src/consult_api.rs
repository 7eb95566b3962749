//! The clinic's consultation API on `[web] listen`: the township doctor creates a request
//! (patient, consent, question, studies), sends it, answers the specialist's questions, reads
//! and acknowledges the report — offline too: everything is appended to the clinic's log and
//! travels when the link is up. Every call needs a session or a bearer token (401 otherwise);
//! the acting doctor is the authenticated one. This agent only ever holds its own clinic's
//! consultations.

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::Json;
use daemon::accounts::{Role, User};
use daemon::api::{blocking, ApiError};
use daemon::login::Authenticated;
use daemon::now_ms;
use proto::consult::{Consent, ConsultationId, EventKind, Patient, Urgency};
use serde::{Deserialize, Serialize};

use crate::Handle;

/// The largest attachment accepted.
pub const MAX_ATTACHMENT: usize = 20 * 1024 * 1024;

pub fn routes() -> axum::Router<Handle> {
    axum::Router::new()
        .route("/api/v1/consultations", get(list).post(create))
        .route("/api/v1/consultations/{id}", get(detail))
        .route(
            "/api/v1/consultations/{id}/attachments",
            post(attach).layer(axum::extract::DefaultBodyLimit::max(MAX_ATTACHMENT)),
        )
        .route("/api/v1/consultations/{id}/{action}", post(act))
}

#[derive(Debug, Deserialize)]
struct AttachQuery {
    /// Missing is refused by `check_attachment` with a message saying what to send.
    #[serde(default)]
    name: String,
}

/// Attaches a PDF or JPEG sent as the request body (`Content-Type: application/pdf` or
/// `image/jpeg`, `?name=letter.pdf`). Its bytes travel to the hospital like images, at the
/// consultation's urgency.
async fn attach(
    State(handle): State<Handle>,
    Authenticated(user): Authenticated,
    Path(id): Path<String>,
    axum::extract::Query(q): axum::extract::Query<AttachQuery>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<CaseDetail>, ApiError> {
    let id = parse_id(&id)?;
    let media_type = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    blocking(move || attach_file(&handle, &user, &id, q.name, media_type, &body))
        .await
        .map(Json)
}

/// Attaches a PDF or a JPEG (checked by its first bytes, whatever it claims to be).
pub fn attach_file(
    handle: &Handle,
    user: &User,
    id: &ConsultationId,
    name: String,
    media_type: String,
    body: &[u8],
) -> Result<CaseDetail, ApiError> {
    doctor(user)?;
    check_attachment(&name, &media_type, body)?;
    let current = detail_of(handle, id)?.consultation;
    let object = handle
        .store_attachment(body, current.urgency, false)
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let kind = EventKind::StudiesAttached {
        study_instance_uids: Vec::new(),
        attachments: vec![proto::consult::Attachment {
            object,
            name,
            media_type,
            preview: None,
        }],
    };
    handle
        .consult
        .append(clinic(handle)?, id, &user.name, now_ms(), kind)
        .map_err(ApiError::from)?;
    detail_of(handle, id)
}

/// Refuses what cannot be attached: anything but a PDF or a JPEG (by its first bytes), or a
/// file without a usable name.
pub fn check_attachment(name: &str, media_type: &str, body: &[u8]) -> Result<(), ApiError> {
    let magic_ok = match media_type {
        "application/pdf" => body.starts_with(b"%PDF-"),
        "image/jpeg" => body.starts_with(&[0xFF, 0xD8, 0xFF]),
        _ => {
            return Err(ApiError::bad_request(
                "attach a PDF (Content-Type: application/pdf) or a JPEG photo (image/jpeg)",
            ))
        }
    };
    if !magic_ok {
        return Err(ApiError::bad_request(format!(
            "the file is not a {media_type}: its first bytes do not match"
        )));
    }
    if name.trim().is_empty() || name.len() > 200 {
        return Err(ApiError::bad_request("name the file: ?name=letter.pdf"));
    }
    Ok(())
}

pub fn doctor(user: &User) -> Result<(), ApiError> {
    match user.role {
        Role::Doctor | Role::Admin => Ok(()),
        Role::Specialist => Err(ApiError::forbidden(
            "clinic consultations are created and answered by the clinic's doctors",
        )),
    }
}

#[derive(Debug, Deserialize)]
pub struct ConsentBody {
    pub given_by: String,
    pub method: String,
}

#[derive(Debug, Deserialize)]
pub struct NewConsultation {
    pub patient: Patient,
    #[serde(default)]
    pub clinical_summary: String,
    pub question: String,
    pub specialty: String,
    pub urgency: Urgency,
    pub consent: Option<ConsentBody>,
    #[serde(default)]
    pub studies: Vec<String>,
    /// Send it at once (needs `consent`).
    #[serde(default)]
    pub submit: bool,
}

pub use daemon::cases::CaseDetail;

/// This clinic's id; without one (a certificate that names no clinic) there are no
/// consultations to keep.
pub fn clinic(handle: &Handle) -> Result<&proto::ClinicId, ApiError> {
    handle.clinic.as_ref().ok_or_else(|| {
        ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "no_clinic",
            "this agent's certificate names no clinic; install the clinic's bundle from `certs clinic`",
        )
    })
}

pub fn detail_of(handle: &Handle, id: &ConsultationId) -> Result<CaseDetail, ApiError> {
    let clinic = clinic(handle)?;
    let timeline = handle.consult.log.timeline(id).map_err(ApiError::from)?;
    let folded = proto::consult::Folded::fold(&timeline)
        .filter(|f| &f.consultation.clinic == clinic)
        .ok_or_else(|| ApiError::not_found(format!("no consultation {id}")))?;
    Ok(CaseDetail {
        superseded: folded.set_aside(),
        studies: handle.store.study_arrivals(&folded.consultation.studies),
        previews: Vec::new(),
        waiting_in_pool: None,
        consultation: folded.consultation,
        timeline,
    })
}

async fn create(
    State(handle): State<Handle>,
    Authenticated(user): Authenticated,
    Json(req): Json<NewConsultation>,
) -> Result<Json<CaseDetail>, ApiError> {
    blocking(move || create_case(&handle, &user, req))
        .await
        .map(Json)
}

/// Creates a consultation (and sends it when asked and consent is recorded); nothing is
/// stored when the request is refused.
pub fn create_case(
    handle: &Handle,
    user: &User,
    req: NewConsultation,
) -> Result<CaseDetail, ApiError> {
    doctor(user)?;
    if req.submit && req.consent.is_none() {
        return Err(ApiError::conflict(
            proto::consult::Refusal::NoConsent.to_string(),
        ));
    }
    let mut random = [0u8; 10];
    getrandom::getrandom(&mut random).map_err(|e| ApiError::internal(e.to_string()))?;
    let id = ConsultationId::new(now_ms() as u64, random);
    let urgency = req.urgency;
    let patient = with_study_demographics(handle, req.patient, &req.studies)?;
    let mut steps = vec![EventKind::Created {
        patient,
        clinical_summary: req.clinical_summary,
        question: req.question,
        specialty: req.specialty,
        urgency,
    }];
    if let Some(c) = req.consent {
        steps.push(EventKind::ConsentRecorded {
            consent: Consent {
                given_by: c.given_by,
                method: c.method,
                at_ms: now_ms(),
            },
        });
    }
    if !req.studies.is_empty() {
        steps.push(EventKind::StudiesAttached {
            study_instance_uids: req.studies.clone(),
            attachments: Vec::new(),
        });
    }
    if req.submit {
        steps.push(EventKind::Submitted);
    }
    // The first step checks the request itself; nothing is stored if it is refused.
    for kind in steps {
        handle
            .consult
            .append(clinic(handle)?, &id, &user.name, now_ms(), kind)
            .map_err(ApiError::from)?;
    }
    // Previews first: queued ahead of everything, they leave before the raised images do.
    previews(handle, user, &id);
    raise(handle, &req.studies, urgency);
    detail_of(handle, &id)
}

/// Sends an urgent case's previews ahead of its images (`preview`); the case itself is
/// already recorded, so a preview that cannot be made is logged, not refused.
fn previews(handle: &Handle, user: &User, id: &ConsultationId) {
    if let Err(e) = crate::preview::ensure(handle, &user.name, id) {
        tracing::warn!(case = %id, error = %e, "cannot make the case's previews");
    }
}

/// Fills what the doctor left empty from the first attached study's DICOM header, and refuses
/// a study of another patient: attaching the wrong patient's images is the error to catch.
fn with_study_demographics(
    handle: &Handle,
    mut patient: Patient,
    studies: &[String],
) -> Result<Patient, ApiError> {
    for uid in studies {
        let Some(s) = handle.store.study_patient(uid) else {
            continue;
        };
        if patient.id.trim().is_empty() {
            patient.id = s.patient_id.clone();
        } else if patient.id != s.patient_id {
            return Err(ApiError::conflict(format!(
                "study {uid} belongs to another patient id than {}; check the study before attaching it",
                patient.id
            )));
        }
        let fill = |field: &mut String, from: Option<String>| {
            if field.trim().is_empty() {
                *field = from.unwrap_or_default();
            }
        };
        fill(&mut patient.name, s.patient_name);
        fill(&mut patient.sex, s.patient_sex);
        fill(&mut patient.birth_date, s.patient_birth_date);
    }
    Ok(patient)
}

/// Refuses a patient id that contradicts a study already attached to the case: the images
/// say whose they are, and a case must not be moved onto another patient under them.
fn same_patient_as_studies(
    handle: &Handle,
    patient: &Patient,
    studies: &[String],
) -> Result<(), ApiError> {
    for uid in studies {
        if let Some(s) = handle.store.study_patient(uid) {
            if s.patient_id != patient.id {
                return Err(ApiError::conflict(format!(
                    "the attached study {uid} belongs to another patient id than {}; a case keeps the patient of its images (start a new case for another patient)",
                    patient.id
                )));
            }
        }
    }
    Ok(())
}

/// A study takes the highest urgency of the consultations it is attached to.
fn raise(handle: &Handle, studies: &[String], urgency: Urgency) {
    for uid in studies {
        if let Err(e) = handle.raise_study_priority(uid, urgency) {
            tracing::warn!(error = %e, "cannot raise an attached study's sync priority");
        }
    }
}

/// One row of the clinic's list.
#[derive(Debug, Serialize, Deserialize)]
pub struct CaseRow {
    pub id: ConsultationId,
    pub state: proto::consult::State,
    pub urgency: Urgency,
    pub specialty: String,
    pub question: String,
    pub patient_id: String,
    pub assignee: Option<String>,
    pub created_at_ms: i64,
    /// Open questions from the specialist waiting for an answer.
    pub open_questions: usize,
    /// The studies attached, by Study Instance UID.
    pub studies: Vec<String>,
}

async fn list(
    State(handle): State<Handle>,
    Authenticated(user): Authenticated,
) -> Result<Json<Vec<CaseRow>>, ApiError> {
    doctor(&user)?;
    blocking(move || list_cases(&handle)).await.map(Json)
}

/// This clinic's consultations, newest first.
pub fn list_cases(handle: &Handle) -> Result<Vec<CaseRow>, ApiError> {
    let all = handle
        .consult
        .log
        .list(clinic(handle)?)
        .map_err(ApiError::from)?;
    Ok(all
        .into_iter()
        .rev()
        .map(|c| CaseRow {
            id: c.id,
            state: c.state,
            urgency: c.urgency,
            specialty: c.specialty,
            question: c.question,
            patient_id: c.patient.id,
            assignee: c.assignee,
            created_at_ms: c.created_at_ms,
            open_questions: c.open_questions.len(),
            studies: c.studies,
        })
        .collect())
}

pub fn parse_id(id: &str) -> Result<ConsultationId, ApiError> {
    ConsultationId::parse(id).ok_or_else(|| ApiError::not_found(format!("no consultation {id}")))
}

async fn detail(
    State(handle): State<Handle>,
    Authenticated(user): Authenticated,
    Path(id): Path<String>,
) -> Result<Json<CaseDetail>, ApiError> {
    doctor(&user)?;
    let id = parse_id(&id)?;
    blocking(move || detail_of(&handle, &id)).await.map(Json)
}

#[derive(Debug, Default, Deserialize)]
pub struct ActionBody {
    pub patient: Option<Patient>,
    pub given_by: Option<String>,
    pub method: Option<String>,
    pub study_instance_uids: Option<Vec<String>>,
    pub question: Option<u64>,
    pub text: Option<String>,
    pub reason: Option<String>,
}

async fn act(
    State(handle): State<Handle>,
    Authenticated(user): Authenticated,
    Path((id, action)): Path<(String, String)>,
    body: Option<Json<ActionBody>>,
) -> Result<Json<CaseDetail>, ApiError> {
    let id = parse_id(&id)?;
    let body = body.map(|Json(b)| b).unwrap_or_default();
    let action = ClinicAction::parse(&action)
        .ok_or_else(|| ApiError::not_found(format!("no action {action}")))?;
    blocking(move || act_on(&handle, &user, &id, action, body))
        .await
        .map(Json)
}

/// What a doctor does to a case (`/consultations/{id}/{action}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClinicAction {
    Consent,
    Studies,
    Submit,
    Patient,
    Answer,
    Acknowledge,
    Cancel,
}

impl ClinicAction {
    /// The action named in a path.
    pub fn parse(name: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::String(name.to_owned())).ok()
    }
}

/// The doctor acts on a case: consent, studies, submit, patient, answer, acknowledge, cancel.
pub fn act_on(
    handle: &Handle,
    user: &User,
    id: &ConsultationId,
    action: ClinicAction,
    body: ActionBody,
) -> Result<CaseDetail, ApiError> {
    doctor(user)?;
    let current = detail_of(handle, id)?.consultation;
    let need = |v: Option<String>, what: &str| {
        v.filter(|s| !s.trim().is_empty())
            .ok_or_else(|| ApiError::bad_request(format!("{what} is required")))
    };
    let kind = match action {
        ClinicAction::Consent => EventKind::ConsentRecorded {
            consent: Consent {
                given_by: need(body.given_by, "given_by")?,
                method: need(body.method, "method")?,
                at_ms: now_ms(),
            },
        },
        ClinicAction::Studies => {
            let uids = body
                .study_instance_uids
                .filter(|u| !u.is_empty())
                .ok_or_else(|| ApiError::bad_request("study_instance_uids is required"))?;
            with_study_demographics(handle, current.patient.clone(), &uids)?;
            EventKind::StudiesAttached {
                study_instance_uids: uids,
                attachments: Vec::new(),
            }
        }
        ClinicAction::Submit => EventKind::Submitted,
        ClinicAction::Patient => {
            let patient = body
                .patient
                .ok_or_else(|| ApiError::bad_request("patient is required"))?;
            same_patient_as_studies(handle, &patient, &current.studies)?;
            EventKind::PatientUpdated {
                patient,
                reason: body.reason.filter(|r| !r.trim().is_empty()),
            }
        }
        ClinicAction::Answer => {
            let question = match body.question {
                Some(q) => q,
                // The one open question, when there is exactly one.
                None => match current.open_questions.as_slice() {
                    [q] => *q,
                    _ => {
                        return Err(ApiError::bad_request(
                            "question is required (the number of the question being answered)",
                        ))
                    }
                },
            };
            EventKind::QuestionAnswered {
                question,
                text: need(body.text, "text")?,
            }
        }
        ClinicAction::Acknowledge => EventKind::ReportAcknowledged,
        ClinicAction::Cancel => EventKind::Cancelled {
            reason: need(body.reason, "reason")?,
        },
    };
    let attached = match &kind {
        EventKind::StudiesAttached {
            study_instance_uids,
            ..
        } => Some(study_instance_uids.clone()),
        _ => None,
    };
    let sent_images = attached.is_some() || kind == EventKind::Submitted;
    handle
        .consult
        .append(clinic(handle)?, id, &user.name, now_ms(), kind)
        .map_err(ApiError::from)?;
    // Previews first: queued ahead of everything, they leave before the raised images do.
    if sent_images {
        previews(handle, user, id);
    }
    if let Some(uids) = attached {
        raise(handle, &uids, current.urgency);
    }
    detail_of(handle, id)
}
