//! The new-consultation form: the studies held here to pick from, the patient, the question,
//! consent and a letter or photo; shown again with what was wrong when it is refused.

use std::collections::HashMap;

use axum::extract::{Multipart, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use daemon::api::{blocking, ApiError};
use daemon::web::Session;
use maud::html;
use proto::consult::Urgency;
use proto::sync::ObjectId;

use super::upload::read_multipart;
use super::{may, page};
use crate::access::Action;
use crate::cases::{CaseError, ConsentBody, NewAttachment, NewConsultation};
use crate::Handle;

/// A study held at this clinic, as the new-consultation form offers it.
struct LocalStudy {
    uid: String,
    modality: String,
    instances: usize,
    date: String,
    description: String,
    patient: PatientFields,
}

/// The patient a study's header names, as the form's fields take them.
#[derive(Default)]
struct PatientFields {
    id: String,
    name: String,
    sex: String,
    /// `YYYYMMDD`.
    birth_date: String,
}

/// The studies a new consultation may ask about: newest first, and not those already in a
/// consultation of this clinic that is still open or done (a cancelled one frees its studies).
fn local_studies(handle: &Handle) -> Vec<LocalStudy> {
    let taken: std::collections::BTreeSet<String> = handle
        .consult
        .log
        .all()
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c.state != proto::consult::State::Cancelled)
        .flat_map(|c| c.studies)
        .collect();
    // Per study: modality, instances, newest arrival, and one of its files to read the
    // patient from.
    let mut by_study: std::collections::BTreeMap<String, (String, usize, i64, ObjectId)> =
        Default::default();
    for (id, rec) in handle.store.objects() {
        // Attachments (PDF, JPEG) have no study.
        if rec.study_instance_uid.is_empty() || taken.contains(&rec.study_instance_uid) {
            continue;
        }
        let e = by_study.entry(rec.study_instance_uid.clone()).or_insert((
            rec.modality.clone().unwrap_or_default(),
            0,
            rec.stored_at,
            id,
        ));
        e.1 += 1;
        e.2 = e.2.max(rec.stored_at);
    }
    let mut studies: Vec<_> = by_study.into_iter().collect();
    // Newest first: the study just taken is the one the doctor wants.
    studies.sort_by_key(|(_, (_, _, at, _))| std::cmp::Reverse(*at));
    studies
        .into_iter()
        .take(50)
        .map(|(uid, (modality, instances, _, object))| {
            let summary = handle.store.summary(&object);
            let (date, description) = summary
                .as_ref()
                .map(|s| {
                    (
                        s.study_date.clone().unwrap_or_default(),
                        s.study_description.clone().unwrap_or_default(),
                    )
                })
                .unwrap_or_default();
            let patient = summary
                .map(|s| PatientFields {
                    id: s.patient_id,
                    name: s.patient_name.unwrap_or_default(),
                    sex: s.patient_sex.unwrap_or_default(),
                    birth_date: s.patient_birth_date.unwrap_or_default().replace('-', ""),
                })
                .unwrap_or_default();
            LocalStudy {
                uid,
                modality,
                instances,
                date,
                description,
                patient,
            }
        })
        .collect()
}

/// What the doctor typed, to show again next to the errors.
#[derive(Default)]
struct Draft {
    fields: HashMap<String, Vec<String>>,
    errors: HashMap<&'static str, &'static str>,
    refusal: Option<String>,
}

impl Draft {
    fn get(&self, k: &str) -> &str {
        self.fields
            .get(k)
            .and_then(|v| v.first())
            .map_or("", String::as_str)
    }
    fn has(&self, k: &str, v: &str) -> bool {
        self.fields.get(k).is_some_and(|l| l.iter().any(|x| x == v))
    }
}

pub(super) async fn new_page(State(handle): State<Handle>, session: Session) -> Response {
    if let Err(r) = may(&session, Action::Create) {
        return r;
    }
    new_form(handle, session, Draft::default(), StatusCode::OK).await
}

async fn new_form(handle: Handle, session: Session, draft: Draft, status: StatusCode) -> Response {
    let specialties = handle.specialties.list().filter(|l| !l.is_empty());
    let studies = blocking(move || Ok(local_studies(&handle)))
        .await
        .unwrap_or_default();
    let lang = session.lang;
    let zh = lang == daemon::web::Lang::Zh;
    let err = |k: &str| draft.errors.get(k).map(|m| lang.t(m));
    let urgency = if draft.get("urgency").is_empty() {
        "routine"
    } else {
        draft.get("urgency")
    };
    let body = html! {
        h1 { (lang.t("new.title")) }
        @if let Some(r) = &draft.refusal { p.error role="alert" #refusal { (lang.say(r)) } }
        form.card #new-case method="post" action="/cases/new" enctype="multipart/form-data" {
            input type="hidden" name="csrf" value=(session.csrf());
            fieldset {
                legend { (lang.t("new.studies")) }
                @if studies.is_empty() { p.muted { (lang.t("new.no_studies")) " " a href="/import" { (lang.t("nav.import")) } } }
                @for s in &studies {
                    label.check {
                        // The script fills the patient's fields from the study ticked.
                        input type="checkbox" name="studies" value=(s.uid) checked[draft.has("studies", &s.uid)]
                            data-patient-id=(s.patient.id) data-patient-name=(s.patient.name)
                            data-sex=(s.patient.sex) data-birth-date=(s.patient.birth_date);
                        span { (s.modality) " · " (s.date) " " (s.description) " · " (s.instances) " " (lang.t(if s.instances == 1 { "study.instance" } else { "study.instances" }))
                            " · " (s.patient.id) " " (s.patient.name.replace('^', " ")) " " (s.patient.sex) " " (s.patient.birth_date) }
                    }
                }
            }
            div.grid {
                label { (lang.t("new.patient_id")) input name="patient_id" value=(draft.get("patient_id"));
                    @if let Some(e) = err("patient_id") { span.field-error { (e) } } }
                label { (lang.t("new.patient_name")) input name="patient_name" value=(draft.get("patient_name")); }
                label { (lang.t("new.sex")) input name="sex" value=(draft.get("sex")) maxlength="1"; }
                label { (lang.t("new.birth_date")) input name="birth_date" value=(draft.get("birth_date")); }
            }
            label { (lang.t("case.summary")) textarea name="summary" { (draft.get("summary")) } }
            label { (lang.t("case.question")) " *" textarea name="question" required { (draft.get("question")) }
                @if let Some(e) = err("question") { span.field-error { (e) } } }
            div.grid {
                label { (lang.t("case.specialty")) " *"
                    @match &specialties {
                        // The hospital's own list: a case asks for what its roster routes.
                        Some(list) => select name="specialty" required {
                            option value="" { (lang.t("new.choose_specialty")) }
                            @for sp in list {
                                option value=(sp.id) selected[draft.get("specialty") == sp.id] { (sp.name(zh)) }
                            }
                        },
                        // A clinic that never reached its gateway has no list yet.
                        None => input name="specialty" required value=(draft.get("specialty"));
                    }
                    @if specialties.is_none() { span.muted { (lang.t("new.specialty_offline")) } }
                    @if let Some(e) = err("specialty") { span.field-error { (e) } } }
                label { (lang.t("case.urgency"))
                    select name="urgency" {
                        @for (v, k) in [("routine", "urgency.routine"), ("urgent", "urgency.urgent"), ("emergency", "urgency.emergency")] {
                            option value=(v) selected[urgency == v] { (lang.t(k)) }
                        }
                    }
                }
            }
            fieldset {
                legend { (lang.t("case.consent")) }
                div.grid {
                    label { (lang.t("new.consent_given_by")) input name="consent_given_by" value=(draft.get("consent_given_by"));
                        @if let Some(e) = err("consent") { span.field-error { (e) } } }
                    label { (lang.t("new.consent_method"))
                        select name="consent_method" {
                            option value="written" { (lang.t("new.consent_written")) }
                            option value="verbal" selected[draft.get("consent_method") == "verbal"] { (lang.t("new.consent_verbal")) }
                        }
                    }
                }
            }
            label { (lang.t("new.attachment")) input type="file" name="attachment" accept="application/pdf,image/jpeg"; }
            button #send type="submit" name="action" value="submit" { (lang.t("new.submit")) } " "
            button.secondary type="submit" name="action" value="draft" { (lang.t("new.save_draft")) }
        }
    };
    let mut response = page(&session, lang.t("new.title"), body);
    *response.status_mut() = status;
    response
}

pub(super) async fn create(
    State(handle): State<Handle>,
    session: Session,
    form: Multipart,
) -> Response {
    if let Err(r) = may(&session, Action::Create) {
        return r;
    }
    let (fields, uploads) = match read_multipart(form, &session).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    // The attachment is read and checked before anything is stored, so a refused file leaves
    // no half-made case behind.
    let attachment = match uploads.first() {
        None => None,
        Some(u) => {
            let media_type = u.media_type.clone().unwrap_or_default();
            let checked = tokio::fs::read(&u.path)
                .await
                .map_err(|e| CaseError::Invalid(format!("cannot read {}: {e}", u.name)))
                .and_then(|bytes| {
                    crate::cases::check_attachment(&u.name, &media_type, &bytes)?;
                    Ok(bytes)
                });
            match checked.map_err(ApiError::from) {
                Ok(bytes) => Some(NewAttachment {
                    name: u.name.clone(),
                    media_type,
                    bytes,
                }),
                Err(e) => {
                    let draft = Draft {
                        fields,
                        refusal: Some(e.message),
                        ..Draft::default()
                    };
                    return new_form(handle, session, draft, e.status).await;
                }
            }
        }
    };
    let mut draft = Draft {
        fields,
        ..Draft::default()
    };
    let submit = draft.get("action") != "draft";
    let studies = draft.fields.get("studies").cloned().unwrap_or_default();
    if draft.get("question").trim().is_empty() {
        draft.errors.insert("question", "new.required");
    }
    let specialty = draft.get("specialty").trim();
    if specialty.is_empty() {
        draft.errors.insert("specialty", "new.required");
    } else if handle
        .specialties
        .list()
        .is_some_and(|l| !l.is_empty() && l.iter().all(|s| s.id != specialty))
    {
        // A page kept open across a roster change: choose again from today's list.
        draft.errors.insert("specialty", "new.unknown_specialty");
    }
    if studies.is_empty() && draft.get("patient_id").trim().is_empty() {
        draft.errors.insert("patient_id", "new.need_patient");
    }
    let given_by = draft.get("consent_given_by").trim().to_owned();
    if submit && given_by.is_empty() {
        draft.errors.insert("consent", "new.need_consent");
    }
    if !draft.errors.is_empty() {
        return new_form(handle, session, draft, StatusCode::BAD_REQUEST).await;
    }
    let urgency = match draft.get("urgency") {
        "emergency" => Urgency::Emergency,
        "urgent" => Urgency::Urgent,
        _ => Urgency::Routine,
    };
    let request = NewConsultation {
        patient: proto::consult::Patient {
            id: draft.get("patient_id").trim().to_owned(),
            name: draft.get("patient_name").trim().to_owned(),
            sex: draft.get("sex").trim().to_uppercase(),
            birth_date: draft.get("birth_date").trim().to_owned(),
        },
        clinical_summary: draft.get("summary").to_owned(),
        question: draft.get("question").to_owned(),
        specialty: draft.get("specialty").trim().to_owned(),
        urgency,
        consent: (!given_by.is_empty()).then(|| ConsentBody {
            given_by,
            method: draft.get("consent_method").to_owned(),
        }),
        studies,
        submit,
    };
    let (h, user) = (handle.clone(), session.user.clone());
    let created = blocking(move || {
        let cases = h.cases();
        let detail = match attachment {
            Some(attachment) => cases.create_with_attachment(&user, request, attachment)?,
            None => cases.create(&user, request)?,
        };
        Ok(detail.consultation.id)
    })
    .await;
    match created {
        Ok(id) => Redirect::to(&format!("/cases/{id}")).into_response(),
        Err(e) => {
            draft.refusal = Some(e.message);
            new_form(handle, session, draft, e.status).await
        }
    }
}
