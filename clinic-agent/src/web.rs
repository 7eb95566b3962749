//! The township doctor's web pages, on the agent's `[web] listen`: the case list with the
//! true state of each case and of the link, importing studies from the browser, the new
//! consultation form, a case with its timeline, questions and report, and the report's print
//! view. Pages ask the same access policy (`access`) and call the same case service (`cases`)
//! as the JSON API, so they can do nothing the API would refuse. Paths carry ids only, never patient data.

// A refused page is a whole response, built once per request; boxing it buys nothing.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::time::Instant;

use axum::extract::{Multipart, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use daemon::api::{blocking, ApiError};
use daemon::web::consult::{report, state_badge, timeline, urgency_badge, urgency_class};
use daemon::web::{error_page, layout, time, CsrfForm, Lang, NavItem, Session};
use maud::{html, Markup};
use proto::consult::{ConsultationId, State as CaseState, Urgency};
use proto::sync::ObjectId;
use serde::Deserialize;

use crate::access::{self, Action, Caller, ClinicAction, Task};
use crate::cases::{ActionBody, CaseError, ConsentBody, NewAttachment, NewConsultation};
use crate::consult_api::denied;
use crate::status::{bytes_until_through, seconds_left, Pending};
use crate::Handle;

/// The largest browser upload of studies in one go.
pub const MAX_IMPORT: usize = 4 * 1024 * 1024 * 1024;

const NAV: &[NavItem] = &[
    ("/", "nav.cases"),
    ("/cases/new", "nav.new_case"),
    ("/import", "nav.import"),
];

pub fn routes() -> axum::Router<Handle> {
    daemon::web::routes()
        .route("/", get(home))
        .route(
            "/import",
            get(import_page)
                .post(import)
                .layer(axum::extract::DefaultBodyLimit::max(MAX_IMPORT)),
        )
        .route(
            "/cases/new",
            get(new_page)
                .post(create)
                .layer(axum::extract::DefaultBodyLimit::max(
                    crate::cases::MAX_ATTACHMENT + 64 * 1024,
                )),
        )
        .route("/cases/{id}", get(case))
        .route("/cases/{id}/print", get(print))
        .route("/cases/{id}/act/{action}", post(act))
}

fn page(session: &Session, title: &str, body: Markup) -> Response {
    layout(session.lang, "site.clinic", title, Some(session), NAV, body).into_response()
}

fn failed(session: &Session, e: ApiError) -> Response {
    error_page(session.lang, e.status, &e.message)
}

/// Whether the policy lets the signed-in user do `action`; a refusal is the error page.
fn may(session: &Session, action: Action<'_>) -> Result<(), Response> {
    access::check(Caller::User(&session.user), action).map_err(|d| failed(session, denied(d)))
}

/// How each study is getting on, in bytes.
#[derive(Debug, Clone, Copy, Default)]
struct StudyProgress {
    held: u64,
    delivered: u64,
    /// Of the undelivered objects, what is already sent.
    sent: u64,
    /// What the uploader still sends before this study is through (its own and what is ahead).
    until_through: u64,
}

/// The studies' progress, with the link's state and recent upload rate for estimates.
struct Progress {
    studies: HashMap<String, StudyProgress>,
    up: bool,
    rate: Option<f64>,
}

fn progress(handle: &Handle) -> Progress {
    let (sending, rate) = handle
        .sync
        .lock()
        .map(|s| (s.sending.clone(), s.throughput.per_sec(Instant::now())))
        .unwrap_or_default();
    let mut studies: HashMap<String, StudyProgress> = HashMap::new();
    let mut pending = Vec::new();
    for (id, rec) in handle.store.objects() {
        let sent = match rec.delivered_at {
            Some(_) => 0,
            None => sending.get(&id).map_or(0, |(sent, _)| *sent),
        };
        if rec.delivered_at.is_none() {
            pending.push(Pending {
                priority: rec.priority,
                seq: rec.seq,
                left: rec.size.saturating_sub(sent),
                study: rec.study_instance_uid.clone(),
            });
        }
        if rec.study_instance_uid.is_empty() {
            continue; // an attachment: in the queue, not a study
        }
        let e = studies.entry(rec.study_instance_uid).or_default();
        e.held += rec.size;
        if rec.delivered_at.is_some() {
            e.delivered += rec.size;
        }
        e.sent += sent;
    }
    for (study, bytes) in bytes_until_through(pending) {
        studies.entry(study).or_default().until_through = bytes;
    }
    Progress {
        studies,
        up: handle.link_status().up,
        rate,
    }
}

/// "uploading 45 % · about 3m20s left", "queued" or "delivered" for a case's studies.
fn sync_cell(lang: Lang, studies: &[String], progress: &Progress) -> Markup {
    let total = studies.iter().filter_map(|s| progress.studies.get(s)).fold(
        StudyProgress::default(),
        |a, p| StudyProgress {
            held: a.held + p.held,
            delivered: a.delivered + p.delivered,
            sent: a.sent + p.sent,
            until_through: a.until_through.max(p.until_through),
        },
    );
    if total.held == 0 {
        return html! {};
    }
    let pct = ((total.delivered + total.sent) as f64 * 100.0 / total.held as f64).min(100.0);
    // Nothing left to send (the receipt is awaited): no estimate.
    let eta = seconds_left(progress.up, progress.rate, total.until_through)
        .filter(|_| total.until_through > 0)
        .map(|s| lang.t("sync.eta").replace("{span}", &daemon::span(s)));
    html! {
        @if total.delivered >= total.held { span.ok data-sync="delivered" { (lang.t("study.arrived")) } }
        @else {
            @if total.sent == 0 && total.delivered == 0 { span data-sync="queued" { (lang.t("sync.queued")) } }
            @else {
                span data-sync="uploading" { (lang.t("sync.uploading")) " " (format!("{pct:.0} %")) " " }
                span.progress { span style={"width:" (format!("{pct:.0}")) "%"} {} }
            }
            @if let Some(eta) = eta { " " span.muted data-eta=(total.until_through) { (eta) } }
        }
    }
}

async fn home(State(handle): State<Handle>, session: Session) -> Response {
    if let Err(r) = may(&session, Action::List) {
        return r;
    }
    let (h, user) = (handle.clone(), session.user.clone());
    let loaded = blocking(move || {
        let cases = h.cases().list(&user)?;
        Ok((cases, progress(&h), crate::status::backlog(&h.store)))
    })
    .await;
    let (cases, progress, backlog) = match loaded {
        Ok(v) => v,
        Err(e) => return failed(&session, e),
    };
    let lang = session.lang;
    let link = handle.link_status();
    let routine = handle.sync.lock().ok().and_then(|s| s.routine_limit);
    let now_secs = daemon::now_ms() / 1000;
    let since_ms = link
        .since
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as i64);
    let body = html! {
        div data-refresh="10" {
            section.card #link {
                @if link.up {
                    span.badge.online { (lang.t("link.online")) }
                    @if let Some(rtt) = link.rtt { " · RTT " (format!("{:.0} ms", rtt.as_secs_f64() * 1000.0)) }
                    @if let Some(rate) = progress.rate { " · " (daemon::human_bytes(rate as u64)) "/s" }
                } @else {
                    span.badge.offline { (lang.t("link.offline_since")) }
                    @if let Some(t) = since_ms { " " (time(t)) }
                    @if let Some(r) = &link.down_reason { " · " span.muted { (r) } }
                }
                " · " (lang.t("link.backlog")) ": " (backlog.items) " · " (daemon::human_bytes(backlog.bytes))
                @if let Some(limit) = &routine {
                    br;
                    span #routine-limit .muted {
                        @if crate::sync::routine_capped(limit, now_secs) {
                            (lang.t("link.routine_capped")) " " (daemon::human_bytes(limit.bytes_per_sec)) "/s"
                        } @else {
                            (lang.t("link.routine_full"))
                        }
                        @if let Some(window) = limit.full_rate {
                            " · " (lang.t("link.full_rate_hours")) " " (window.to_string())
                            " (UTC" (proto::hours::format_offset(limit.utc_offset_secs)) ")"
                        }
                    }
                }
            }
            h1 { (lang.t("nav.cases")) }
            @if cases.is_empty() { p.muted { (lang.t("case.none")) } }
            @else {
                table #cases {
                    thead { tr {
                        th { (lang.t("case.urgency")) } th { (lang.t("case.state")) } th { (lang.t("case.studies")) }
                        th { (lang.t("case.assignee")) } th { (lang.t("case.question")) } th { (lang.t("case.created")) }
                    } }
                    tbody { @for c in &cases {
                        tr class=(urgency_class(c.urgency)) data-case=(c.id.as_str()) {
                            td { (urgency_badge(lang, c.urgency)) }
                            td { (state_badge(lang, c.state))
                                 @if c.open_questions > 0 { " " span.badge.urgent { (lang.t("case.questions")) " " (c.open_questions) } } }
                            td { (sync_cell(lang, &c.studies, &progress)) }
                            td { (c.assignee.as_deref().unwrap_or("")) }
                            td { a href={"/cases/" (c.id.as_str())} { (c.question) } }
                            td { (time(c.created_at_ms)) }
                        }
                    } }
                }
            }
        }
    };
    page(&session, lang.t("nav.cases"), body)
}

async fn import_page(session: Session) -> Response {
    if let Err(r) = may(&session, Action::Run(Task::Upload)) {
        return r;
    }
    page(&session, session.t("import.title"), import_form(&session))
}

fn import_form(session: &Session) -> Markup {
    let lang = session.lang;
    html! {
        h1 { (lang.t("import.title")) }
        form.card #import-form method="post" action="/import" enctype="multipart/form-data" {
            input type="hidden" name="csrf" value=(session.csrf());
            p.muted { (lang.t("import.help")) }
            label { (lang.t("import.files")) input #files type="file" name="file" multiple; }
            label { (lang.t("import.folder")) input #folder type="file" name="file" webkitdirectory multiple; }
            button #import type="submit" { (lang.t("import.submit")) }
        }
    }
}

/// A file received from the browser, in a temporary file removed when this is dropped.
struct Upload {
    name: String,
    media_type: Option<String>,
    path: std::path::PathBuf,
}

impl Drop for Upload {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Reads a multipart form: text fields into a map, files streamed to temporary files, so a
/// CD's worth of studies never sits in memory. The CSRF token must come before any file.
async fn read_multipart(
    mut form: Multipart,
    session: &Session,
) -> Result<(HashMap<String, Vec<String>>, Vec<Upload>), Response> {
    use tokio::io::AsyncWriteExt;
    let mut fields: HashMap<String, Vec<String>> = HashMap::new();
    let mut uploads = Vec::new();
    let mut checked = false;
    let bad = |e: axum::extract::multipart::MultipartError| {
        error_page(session.lang, StatusCode::BAD_REQUEST, &e.body_text())
    };
    while let Some(mut field) = form.next_field().await.map_err(bad)? {
        let name = field.name().unwrap_or("").to_owned();
        match field.file_name().map(str::to_owned) {
            Some(file_name) if !file_name.is_empty() => {
                if !checked {
                    return Err(error_page(
                        session.lang,
                        StatusCode::FORBIDDEN,
                        session.t("err.csrf"),
                    ));
                }
                let mut random = [0u8; 8];
                let _ = getrandom::getrandom(&mut random);
                let upload = Upload {
                    name: file_name,
                    media_type: field.content_type().map(str::to_owned),
                    path: std::env::temp_dir().join(format!(
                        "tpg-upload-{}",
                        random
                            .iter()
                            .map(|b| format!("{b:02x}"))
                            .collect::<String>()
                    )),
                };
                let io = |e: std::io::Error| {
                    error_page(
                        session.lang,
                        StatusCode::INTERNAL_SERVER_ERROR,
                        &e.to_string(),
                    )
                };
                let mut file = tokio::fs::File::create(&upload.path).await.map_err(io)?;
                uploads.push(upload);
                while let Some(chunk) = field.chunk().await.map_err(bad)? {
                    file.write_all(&chunk).await.map_err(io)?;
                }
                file.flush().await.map_err(io)?;
            }
            Some(_) => {} // an empty file input
            None => {
                let value = field.text().await.map_err(bad)?;
                if name == "csrf" {
                    session.check_csrf(Some(&value))?;
                    checked = true;
                }
                fields.entry(name).or_default().push(value);
            }
        }
    }
    if !checked {
        session.check_csrf(None)?;
    }
    Ok((fields, uploads))
}

async fn import(State(handle): State<Handle>, session: Session, form: Multipart) -> Response {
    if let Err(r) = may(&session, Action::Run(Task::Upload)) {
        return r;
    }
    let uploads = match read_multipart(form, &session).await {
        Ok((_, uploads)) => uploads,
        Err(r) => return r,
    };
    let h = handle.clone();
    let results = tokio::task::spawn_blocking(move || {
        uploads
            .iter()
            .map(|u| {
                let ingested = std::fs::File::open(&u.path)
                    .map_err(|e| e.to_string())
                    .and_then(|f| h.ingest(f, &u.name).map_err(|e| e.to_string()));
                let row = match ingested {
                    Ok(i) => crate::api::ImportResult::from(i),
                    Err(e) => crate::api::ImportResult {
                        outcome: "failed".into(),
                        object: None,
                        new_version: false,
                        reason: Some(e),
                    },
                };
                (u.name.clone(), row)
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    let lang = session.lang;
    let count = |o: &str| results.iter().filter(|(_, r)| r.outcome == o).count();
    let outcome_key = |o: &str| match o {
        "stored" => "import.stored",
        "duplicate" => "import.duplicate",
        "skipped" => "import.skipped",
        _ => "import.quarantined",
    };
    let body = html! {
        h1 { (lang.t("import.result")) }
        p #import-summary {
            span.ok { (lang.t("import.stored")) " " (count("stored")) } " · "
            (lang.t("import.duplicate")) " " (count("duplicate")) " · "
            span.error { (lang.t("import.quarantined")) " " (count("quarantined") + count("failed")) }
        }
        table #import-results {
            tbody { @for (name, r) in &results {
                tr data-outcome=(r.outcome) {
                    td { (name) }
                    td { (lang.t(outcome_key(&r.outcome))) @if r.new_version { " · " (lang.t("import.new_version")) } }
                    td { (r.reason.as_deref().unwrap_or("")) }
                }
            } }
        }
        p { a.button href="/cases/new" { (lang.t("nav.new_case")) } }
        (import_form(&session))
    };
    page(&session, lang.t("import.result"), body)
}

/// A study held at this clinic, as the new-consultation form offers it.
struct LocalStudy {
    uid: String,
    modality: String,
    instances: usize,
    patient: String,
}

fn local_studies(handle: &Handle) -> Vec<LocalStudy> {
    // Per study: modality, instances, newest arrival, and one of its files to read the
    // patient from.
    let mut by_study: std::collections::BTreeMap<String, (String, usize, i64, ObjectId)> =
        Default::default();
    for (id, rec) in handle.store.objects() {
        // Attachments (PDF, JPEG) have no study.
        if rec.study_instance_uid.is_empty() {
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
            let patient = ::store::dicom::summarize(&handle.store.blobs().path(&object))
                .map(|s| {
                    format!(
                        "{} · {} · {} {}",
                        s.patient_id,
                        s.patient_name.unwrap_or_default(),
                        s.patient_sex.unwrap_or_default(),
                        s.patient_birth_date.unwrap_or_default()
                    )
                })
                .unwrap_or_default();
            LocalStudy {
                uid,
                modality,
                instances,
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

async fn new_page(State(handle): State<Handle>, session: Session) -> Response {
    if let Err(r) = may(&session, Action::Create) {
        return r;
    }
    new_form(handle, session, Draft::default(), StatusCode::OK).await
}

async fn new_form(handle: Handle, session: Session, draft: Draft, status: StatusCode) -> Response {
    let studies = blocking(move || Ok(local_studies(&handle)))
        .await
        .unwrap_or_default();
    let lang = session.lang;
    let err = |k: &str| draft.errors.get(k).map(|m| lang.t(m));
    let urgency = if draft.get("urgency").is_empty() {
        "routine"
    } else {
        draft.get("urgency")
    };
    let body = html! {
        h1 { (lang.t("new.title")) }
        @if let Some(r) = &draft.refusal { p.error role="alert" #refusal { (r) } }
        form.card #new-case method="post" action="/cases/new" enctype="multipart/form-data" {
            input type="hidden" name="csrf" value=(session.csrf());
            fieldset {
                legend { (lang.t("new.studies")) }
                @if studies.is_empty() { p.muted { (lang.t("new.no_studies")) " " a href="/import" { (lang.t("nav.import")) } } }
                @for s in &studies {
                    label.check {
                        input type="checkbox" name="studies" value=(s.uid) checked[draft.has("studies", &s.uid)];
                        span { (s.modality) " · " (s.instances) " " (lang.t("study.instances")) " · " (s.patient) }
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
                label { (lang.t("case.specialty")) " *" input name="specialty" required value=(draft.get("specialty")) list="specialties";
                    @if let Some(e) = err("specialty") { span.field-error { (e) } } }
                datalist #specialties { @for s in ["radiology", "cardiology", "obstetrics", "internal medicine", "surgery", "pediatrics"] { option value=(s) {} } }
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

async fn create(State(handle): State<Handle>, session: Session, form: Multipart) -> Response {
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
    if draft.get("specialty").trim().is_empty() {
        draft.errors.insert("specialty", "new.required");
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

fn parse_id(session: &Session, id: &str) -> Result<ConsultationId, Response> {
    crate::cases::parse_id(id).map_err(|e| failed(session, e.into()))
}

async fn case(State(handle): State<Handle>, session: Session, Path(id): Path<String>) -> Response {
    let id = match parse_id(&session, &id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    case_page(handle, session, id, StatusCode::OK, None).await
}

async fn case_page(
    handle: Handle,
    session: Session,
    id: ConsultationId,
    status: StatusCode,
    error: Option<String>,
) -> Response {
    let (h, user) = (handle.clone(), session.user.clone());
    let loaded = blocking(move || Ok((h.cases().detail(&user, &id)?, progress(&h)))).await;
    let (detail, progress) = match loaded {
        Ok(v) => v,
        Err(e) => return failed(&session, e),
    };
    let lang = session.lang;
    let c = &detail.consultation;
    let csrf = session.csrf();
    let action = |name: &str| format!("/cases/{}/act/{name}", c.id);
    // The text of each open question, by its event's sequence number.
    let questions: Vec<(u64, String)> = detail
        .timeline
        .iter()
        .filter_map(|e| match &e.kind {
            proto::consult::EventKind::QuestionAsked { text, .. }
                if c.open_questions.contains(&e.id.seq) =>
            {
                Some((e.id.seq, text.clone()))
            }
            _ => None,
        })
        .collect();
    let body = html! {
        div data-refresh="15" {
        h1 { (lang.t("case.id")) " " (c.id.as_str()) " " (urgency_badge(lang, c.urgency)) " " (state_badge(lang, c.state)) }
        @if let Some(e) = &error { p.error role="alert" #action-error { (e) } }
        @if !questions.is_empty() {
            section.card #questions {
                h2 { (lang.t("case.questions")) }
                @for (seq, text) in &questions {
                    p.report { (text) }
                    form method="post" action=(action("answer")) {
                        input type="hidden" name="csrf" value=(csrf);
                        input type="hidden" name="question" value=(seq);
                        label { (lang.t("case.answer")) textarea name="text" required {} }
                        button type="submit" { (lang.t("act.submit")) }
                    }
                }
            }
        }
        @if let Some(r) = &c.report {
            (report(lang, r, &c.addenda))
            p.noprint {
                a.button #print href={"/cases/" (c.id.as_str()) "/print"} { (lang.t("case.print")) } " "
                @if c.state == CaseState::Reported {
                    form.inline method="post" action=(action("acknowledge")) {
                        input type="hidden" name="csrf" value=(csrf);
                        button #acknowledge type="submit" { (lang.t("act.acknowledge")) }
                    }
                }
            }
        }
        (daemon::web::consult::corrections(lang, &c.corrections))
        div.grid {
            section.card {
                dl.facts {
                    dt { (lang.t("case.patient")) } dd { (c.patient.id) " · " (c.patient.name) " · " (c.patient.sex) " " (c.patient.birth_date) }
                    dt { (lang.t("case.specialty")) } dd { (c.specialty) }
                    dt { (lang.t("case.assignee")) } dd { (c.assignee.as_deref().unwrap_or("—")) }
                    dt { (lang.t("case.consent")) }
                    dd { @match &c.consent {
                        Some(k) => { (k.given_by) ", " (k.method) " · " (time(k.at_ms)) }
                        None => { span.error { (lang.t("case.consent_none")) } }
                    } }
                    dt { (lang.t("case.studies")) } dd { (c.studies.len()) " · " (sync_cell(lang, &c.studies, &progress)) }
                    @if !c.attachments.is_empty() {
                        dt { (lang.t("case.attachments")) } dd { @for a in &c.attachments { (a.name) " " } }
                    }
                }
                h2 { (lang.t("case.summary")) } p.report { (c.clinical_summary) }
                h2 { (lang.t("case.question")) } p.report { (c.question) }
            }
            section.card {
                h2 { (lang.t("case.timeline")) }
                (timeline(lang, &detail.timeline, &detail.superseded))
            }
        }
        section.card.noprint {
            @if c.consent.is_none() && matches!(c.state, CaseState::Draft) {
                h2 { (lang.t("act.consent")) }
                form method="post" action=(action("consent")) {
                    input type="hidden" name="csrf" value=(csrf);
                    label { (lang.t("new.consent_given_by")) input name="given_by" required; }
                    label { (lang.t("new.consent_method"))
                        select name="method" { option value="written" { (lang.t("new.consent_written")) } option value="verbal" { (lang.t("new.consent_verbal")) } }
                    }
                    button type="submit" { (lang.t("act.consent")) }
                }
            }
            @if c.state == CaseState::Draft {
                form method="post" action=(action("submit")) {
                    input type="hidden" name="csrf" value=(csrf);
                    button #submit type="submit" { (lang.t("new.submit")) }
                }
            }
            @if c.state.is_open() || c.state == CaseState::Draft {
                h2 { (lang.t("act.cancel")) }
                form method="post" action=(action("cancel")) {
                    input type="hidden" name="csrf" value=(csrf);
                    label { (lang.t("act.reason")) input name="reason" required; }
                    button.danger type="submit" { (lang.t("act.cancel")) }
                }
            }
        }
        }
    };
    let mut response = page(&session, c.id.as_str(), body);
    *response.status_mut() = status;
    response
}

/// A form's fields for a doctor's action; `question` arrives as text.
#[derive(Debug, Deserialize)]
struct ActForm {
    given_by: Option<String>,
    method: Option<String>,
    question: Option<String>,
    text: Option<String>,
    reason: Option<String>,
}

async fn act(
    State(handle): State<Handle>,
    Path((id, action)): Path<(String, String)>,
    CsrfForm(session, form): CsrfForm<ActForm>,
) -> Response {
    let id = match parse_id(&session, &id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let body = ActionBody {
        given_by: form.given_by,
        method: form.method,
        question: form.question.and_then(|q| q.trim().parse().ok()),
        text: form.text,
        reason: form.reason,
        ..ActionBody::default()
    };
    let Some(action) = ClinicAction::parse(&action) else {
        return failed(&session, ApiError::not_found(format!("no action {action}")));
    };
    let (h, user, case_id) = (handle.clone(), session.user.clone(), id.clone());
    match blocking(move || Ok(h.cases().act(&user, &case_id, action, body)?)).await {
        Ok(_) => Redirect::to(&format!("/cases/{id}")).into_response(),
        Err(e) if e.status == StatusCode::NOT_FOUND => failed(&session, e),
        Err(e) => case_page(handle, session, id, e.status, Some(e.message)).await,
    }
}

/// The signed report alone, laid out for paper.
async fn print(State(handle): State<Handle>, session: Session, Path(id): Path<String>) -> Response {
    let id = match parse_id(&session, &id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let user = session.user.clone();
    let detail = match blocking(move || Ok(handle.cases().detail(&user, &id)?)).await {
        Ok(d) => d,
        Err(e) => return failed(&session, e),
    };
    let lang = session.lang;
    let c = &detail.consultation;
    let body = html! {
        section.card {
            h1 { (lang.t("case.report")) " · " (c.clinic.as_str()) }
            dl.facts {
                dt { (lang.t("case.id")) } dd { (c.id.as_str()) }
                dt { (lang.t("case.patient")) } dd { (c.patient.id) " · " (c.patient.name) " · " (c.patient.sex) " " (c.patient.birth_date) }
                dt { (lang.t("case.question")) } dd { (c.question) }
            }
        }
        @match &c.report {
            Some(r) => { (report(lang, r, &c.addenda)) }
            None => { p.muted { (lang.t("state.submitted")) } }
        }
        p.noprint { button type="button" onclick="window.print()" { (lang.t("case.print")) } }
    };
    page(&session, lang.t("case.report"), body)
}
