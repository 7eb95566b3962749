//! The gateway's web pages for specialists and administrators, on the same listener as its
//! JSON API: the worklist, a case with its actions, the image viewer, and the administrator's
//! link board, alerts, users and audit log. Every page takes a [`Session`] (log-in otherwise)
//! and goes through the same checks as the API ([`Api::worklist`], [`Api::case`],
//! [`Api::act`]), so a page can never show or do more than the API allows. Paths carry ids
//! only, never patient data.

// A refused page is a whole response, built once per request; boxing it buys nothing.
#![allow(clippy::result_large_err)]

mod board;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use daemon::accounts::{Role, User};
use daemon::api::{blocking, ApiError};
use daemon::web::consult::{age_sex, report, state_badge, timeline, urgency_badge, urgency_class};
use daemon::web::{error_page, layout, role_key, time, CsrfForm, Lang, NavItem, Session};
use maud::{html, Markup};
use proto::consult::{ConsultationId, State as CaseState};
use serde::Deserialize;

use crate::api::{ActionBody, Api};
use crate::consult::now_ms;

type Client = axum::extract::ConnectInfo<crate::https::Peer>;

pub fn routes() -> axum::Router<Api> {
    daemon::web::routes()
        .route("/", get(home))
        .route("/worklist", get(worklist))
        .route("/cases/{id}", get(case))
        .route("/cases/{id}/act/{action}", post(act))
        .route("/cases/{id}/viewer", get(viewer))
        .route("/cases/{id}/images/{n}", get(image))
        .route("/admin/links", get(board::links_page))
        .route("/admin/alerts", get(board::alerts_page))
        .route("/admin/users", get(users).post(add_user))
        .route("/admin/users/{name}/{op}", post(user_op))
        .route("/admin/audit", get(audit))
}

fn nav(user: &User) -> Vec<NavItem> {
    let mut items = Vec::new();
    if user.specialist.is_some() || user.role == Role::Admin {
        items.push(("/worklist", "nav.worklist"));
    }
    if user.role == Role::Admin {
        items.extend([
            ("/admin/links", "nav.links"),
            ("/admin/alerts", "nav.alerts"),
            ("/admin/users", "nav.users"),
            ("/admin/audit", "nav.audit"),
        ]);
    }
    items
}

/// A page of the gateway's site, in the session's language.
pub fn page(session: &Session, title: &str, body: Markup) -> Response {
    layout(
        session.lang,
        "site.gateway",
        title,
        Some(session),
        &nav(&session.user),
        body,
    )
    .into_response()
}

/// An API refusal shown as a page.
pub fn failed(session: &Session, e: ApiError) -> Response {
    error_page(session.lang, e.status, &e.message)
}

/// Running the gateway (`task`): the access policy's administrators; anyone else gets 403.
pub fn admin_only(session: &Session, task: crate::access::Task) -> Result<(), Response> {
    crate::access::check(&session.user, crate::access::Action::Run(task)).map_err(|_| {
        error_page(
            session.lang,
            StatusCode::FORBIDDEN,
            session.t("err.forbidden"),
        )
    })
}

async fn home(session: Session) -> Redirect {
    if session.user.specialist.is_none() && session.user.role == Role::Admin {
        Redirect::to("/admin/links")
    } else {
        Redirect::to("/worklist")
    }
}

#[derive(Deserialize)]
struct WorklistQuery {
    all: Option<String>,
}

async fn worklist(
    State(api): State<Api>,
    axum::extract::ConnectInfo(crate::https::Peer(from)): Client,
    session: Session,
    Query(q): Query<WorklistQuery>,
) -> Response {
    let all = q.all.is_some();
    let user = session.user.clone();
    let rows = match blocking(move || Ok(api.cases.read_worklist(&user, from, all)?)).await {
        Ok(rows) => rows,
        Err(e) => return failed(&session, e),
    };
    let lang = session.lang;
    let now = now_ms();
    let body = html! {
        div data-refresh="30" data-now=(now) {
            h1 { (lang.t("work.title")) }
            p.noprint {
                @if all { a href="/worklist" { "← " (lang.t("nav.worklist")) } }
                @else { a href="/worklist?all=1" { (lang.t("work.all")) } }
            }
            @if rows.is_empty() {
                p.muted #empty { (lang.t("work.empty")) }
            } @else {
                table #worklist {
                    thead { tr {
                        th { (lang.t("case.urgency")) } th { (lang.t("work.sla")) }
                        th { (lang.t("case.state")) } th { (lang.t("case.clinic")) }
                        th { (lang.t("case.age_sex")) } th { (lang.t("case.specialty")) }
                        th { (lang.t("case.question")) } th { (lang.t("case.created")) }
                    } }
                    tbody {
                        @for r in &rows {
                            tr class=(urgency_class(r.urgency)) data-case=(r.id.as_str()) {
                                td { (urgency_badge(lang, r.urgency)) }
                                td { @if let Some(by) = r.accept_by_ms { span data-deadline=(by) { (daemon::client::utc(by)) } } }
                                td { (state_badge(lang, r.state))
                                     @if let Some(pool) = &r.waiting_in_pool { " " span.badge data-pool=(pool) { (lang.t("work.in_pool")) " " (pool) } } }
                                td { (r.clinic) }
                                td { (age_sex(&r.patient_sex, &r.patient_birth_date, now)) }
                                td { (r.specialty) }
                                td { a href={"/cases/" (r.id.as_str())} { (r.question) } }
                                td { (time(r.created_at_ms)) }
                            }
                        }
                    }
                }
            }
        }
    };
    page(&session, lang.t("work.title"), body)
}

fn parse_id(session: &Session, id: &str) -> Result<ConsultationId, Response> {
    ConsultationId::parse(id).ok_or_else(|| {
        failed(
            session,
            ApiError::not_found(format!("no consultation {id}")),
        )
    })
}

async fn case(
    State(api): State<Api>,
    axum::extract::ConnectInfo(crate::https::Peer(from)): Client,
    session: Session,
    Path(id): Path<String>,
) -> Response {
    let id = match parse_id(&session, &id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    case_page(api, from, session, id, StatusCode::OK, None).await
}

/// A case page, with a refusal shown above the actions when an action was refused.
async fn case_page(
    api: Api,
    from: std::net::SocketAddr,
    session: Session,
    id: ConsultationId,
    status: StatusCode,
    error: Option<String>,
) -> Response {
    let user = session.user.clone();
    let loaded = blocking(move || {
        let detail = api.cases.case(&user, from, &id)?;
        let c = &detail.consultation;
        // Earlier consultations of the same patient at the same clinic that this user may see.
        let mut prior = Vec::new();
        if !c.patient.id.trim().is_empty() {
            for other in api
                .cases
                .consult
                .log
                .patient_cases(&c.clinic, &c.patient.id)
                .map_err(|e| ApiError::internal(e.to_string()))?
            {
                if other.id != c.id && api.cases.visible(&user, &other.id).is_ok() {
                    prior.push(other);
                }
            }
        }
        if !prior.is_empty() {
            let ids: Vec<&str> = prior.iter().map(|p| p.id.as_str()).collect();
            api.cases
                .audited_target(&user, from, "view_prior", &ids.join(","))?;
        }
        let roster = api
            .cases
            .router
            .as_ref()
            .and_then(|r| r.reload().ok())
            .map(|r| {
                r.specialists
                    .values()
                    .map(|s| (s.id.clone(), s.name.clone()))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        Ok((detail, prior, roster))
    })
    .await;
    let (detail, prior, roster) = match loaded {
        Ok(v) => v,
        Err(e) => return failed(&session, e),
    };
    let lang = session.lang;
    let c = &detail.consultation;
    let me = session.user.specialist.as_deref();
    let mine = me.is_some() && c.assignee.as_deref() == me;
    let csrf = session.csrf();
    let action = |name: &str| format!("/cases/{}/act/{name}", c.id);
    let body = html! {
        h1 { (lang.t("case.id")) " " (c.id.as_str()) " " (urgency_badge(lang, c.urgency)) " " (state_badge(lang, c.state)) }
        @if let Some(e) = &error { p.error role="alert" #action-error { (e) } }
        (daemon::web::consult::corrections(lang, &c.corrections))
        div.grid {
            section.card {
                h2 { (lang.t("case.patient")) }
                dl.facts {
                    dt { (lang.t("new.patient_name")) } dd { (c.patient.name) }
                    dt { (lang.t("new.patient_id")) } dd { (c.patient.id) }
                    dt { (lang.t("case.age_sex")) } dd { (age_sex(&c.patient.sex, &c.patient.birth_date, now_ms())) " (" (c.patient.birth_date) ")" }
                    dt { (lang.t("case.clinic")) } dd { (c.clinic.as_str()) }
                    dt { (lang.t("case.specialty")) } dd { (c.specialty) }
                    dt { (lang.t("case.assignee")) } dd { (c.assignee.as_deref().unwrap_or("—")) }
                    dt { (lang.t("case.consent")) }
                    dd { @match &c.consent {
                        Some(k) => { (k.given_by) ", " (k.method) " · " (time(k.at_ms)) }
                        None => { span.error { (lang.t("case.consent_none")) } }
                    } }
                }
                h2 { (lang.t("case.summary")) } p.report { (c.clinical_summary) }
                h2 { (lang.t("case.question")) } p.report #question { (c.question) }
            }
            section.card {
                (previews(lang, c.id.as_str(), &detail.previews))
                h2 { (lang.t("case.studies")) }
                ul {
                    @for s in &detail.studies {
                        li {
                            @match &s.arrived {
                                Some(row) => {
                                    (row.modality.as_deref().unwrap_or("?")) " · " (row.instances) " " (lang.t("study.instances")) " · "
                                    @if row.complete { span.ok { (lang.t("study.arrived")) } } @else { span { (lang.t("study.partial")) } }
                                }
                                None => { span.muted { (lang.t("study.waiting")) } }
                            }
                        }
                    }
                }
                p { a.button #open-viewer href={"/cases/" (c.id.as_str()) "/viewer"} { (lang.t("case.images")) } }
                @if c.attachments.iter().any(|a| a.preview.is_none()) {
                    h2 { (lang.t("case.attachments")) }
                    ul { @for a in c.attachments.iter().filter(|a| a.preview.is_none()) {
                        li { a href={"/api/v1/consultations/" (c.id.as_str()) "/attachments/" (a.object.as_str())} target="_blank" { (a.name) } }
                    } }
                }
                @if !prior.is_empty() {
                    h2 { (lang.t("case.prior")) }
                    ul { @for p in &prior {
                        li { a href={"/cases/" (p.id.as_str())} { (time(p.created_at_ms)) " · " (p.specialty) " · " (p.question) } " " (state_badge(lang, p.state)) }
                    } }
                }
            }
        }
        @if let Some(r) = &c.report { (report(lang, r, &c.addenda)) }
        section.card.noprint #actions {
            @if let Some(pool) = &detail.waiting_in_pool {
                form method="post" action=(action("take")) {
                    input type="hidden" name="csrf" value=(csrf);
                    p.muted { (lang.t("act.take_note").replace("{pool}", pool)) }
                    button #take type="submit" { (lang.t("act.take")) }
                }
            }
            @if mine && c.state == CaseState::Assigned {
                form method="post" action=(action("accept")) {
                    input type="hidden" name="csrf" value=(csrf);
                    button #accept type="submit" { (lang.t("act.accept")) }
                }
            }
            @if mine && matches!(c.state, CaseState::Accepted | CaseState::AwaitingAnswer) {
                h2 { (lang.t("act.report")) }
                form #report-form method="post" action=(action("report")) {
                    input type="hidden" name="csrf" value=(csrf);
                    label { (lang.t("case.findings")) textarea name="findings" {} }
                    label { (lang.t("case.impression")) " *" textarea name="impression" required {} }
                    label { (lang.t("case.recommendation")) textarea name="recommendation" {} }
                    @if let Some(a) = crate::api::incomplete(&detail.studies) {
                        label.warn { input #confirm-incomplete type="checkbox" name="confirm_incomplete" value="true" required; " " (lang.t("act.confirm_incomplete").replace("{n}", &a.describe())) }
                    }
                    p.muted { (lang.t("act.sign_note")) }
                    button #sign type="submit" { (lang.t("act.report")) }
                }
                h2 { (lang.t("act.ask")) }
                form method="post" action=(action("ask")) {
                    input type="hidden" name="csrf" value=(csrf);
                    label { (lang.t("act.text")) textarea name="text" required {} }
                    button.secondary type="submit" { (lang.t("act.ask")) }
                }
            }
            @if mine && c.state == CaseState::Reported {
                h2 { (lang.t("act.addendum")) }
                form method="post" action=(action("addendum")) {
                    input type="hidden" name="csrf" value=(csrf);
                    label { (lang.t("act.text")) textarea name="text" required {} }
                    button.secondary type="submit" { (lang.t("act.addendum")) }
                }
            }
            @if mine && matches!(c.state, CaseState::Assigned | CaseState::Accepted | CaseState::AwaitingAnswer) {
                h2 { (lang.t("act.decline")) }
                form method="post" action=(action("decline")) {
                    input type="hidden" name="csrf" value=(csrf);
                    label { (lang.t("act.reason")) input name="reason" required; }
                    button.danger type="submit" { (lang.t("act.decline")) }
                }
            }
            @if session.user.role == Role::Admin && matches!(c.state, CaseState::Delivered | CaseState::Assigned | CaseState::Accepted | CaseState::AwaitingAnswer) {
                h2 { (lang.t("act.assign")) }
                form method="post" action=(action("assign")) {
                    input type="hidden" name="csrf" value=(csrf);
                    label { (lang.t("case.assignee"))
                        select name="specialist" required {
                            @for (id, name) in &roster { option value=(id) { (name) " (" (id) ")" } }
                        }
                    }
                    label { (lang.t("act.reason")) input name="reason"; }
                    button.secondary type="submit" { (lang.t("act.assign")) }
                }
            }
        }
        section.card {
            h2 { (lang.t("case.timeline")) }
            (timeline(lang, &detail.timeline, &detail.superseded))
        }
    };
    let mut response = page(&session, c.id.as_str(), body);
    *response.status_mut() = status;
    response
}

async fn act(
    State(api): State<Api>,
    axum::extract::ConnectInfo(crate::https::Peer(from)): Client,
    Path((id, action)): Path<(String, String)>,
    CsrfForm(session, body): CsrfForm<ActionBody>,
) -> Response {
    let id = match parse_id(&session, &id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let (a, user, case_id) = (api.clone(), session.user.clone(), id.clone());
    let Some(action) = crate::access::CaseAction::parse(&action) else {
        return failed(&session, ApiError::not_found(format!("no action {action}")));
    };
    match blocking(move || Ok(a.cases.act(&user, from, &case_id, action, body)?)).await {
        // Back to the case (303: the browser follows with GET, so a reload does not resend).
        Ok(_) => Redirect::to(&format!("/cases/{id}")).into_response(),
        Err(e) if e.status == StatusCode::NOT_FOUND => failed(&session, e),
        Err(e) => case_page(api, from, session, id, e.status, Some(e.message)).await,
    }
}

/// The clinic's previews of a case's series, each labelled as not for diagnosis, with how
/// much of its series has arrived and the time left; a series that has all arrived says so.
fn previews(lang: Lang, case: &str, previews: &[crate::api::PreviewArrival]) -> Markup {
    html! {
        @if !previews.is_empty() {
            h2 { (lang.t("preview.title")) }
            p.muted { (lang.t("preview.note")) }
            @for p in previews {
                figure.preview data-series=(p.preview.series_instance_uid) {
                    @if p.viewable {
                        img src={"/api/v1/consultations/" (case) "/attachments/" (p.attachment.object.as_str())}
                            alt=(lang.t("preview.title"));
                    } @else {
                        p.muted { (lang.t("preview.waiting")) }
                    }
                    figcaption {
                        strong { (lang.t("preview.title")) } " · "
                        (p.preview.modality.as_deref().unwrap_or("?")) " · "
                        @if p.complete() {
                            span.ok data-arrival="complete" { (lang.t("preview.complete")) }
                        } @else {
                            span data-arrival="partial" { (lang.t("preview.arrived").replace("{n}", &format!("{} / {}", p.instances, p.preview.instances))) }
                            @if let Some(s) = p.seconds_left { " · " span.muted { (lang.t("preview.left").replace("{t}", &daemon::span(s))) } }
                        }
                    }
                }
            }
        }
    }
}

/// One instance of a case, as the viewer lists it.
struct Shown {
    series: String,
    modality: Option<String>,
    object: proto::sync::ObjectId,
}

/// The instances of a case's studies that have arrived, by study, series and instance.
/// The root of the waveform storage SOP classes (ECG, haemodynamic, audio...).
const WAVEFORM_CLASSES: &str = "1.2.840.10008.5.1.4.1.1.9.";

fn instances_of(api: &Api, c: &proto::consult::Consultation) -> Result<Vec<Shown>, ApiError> {
    let mut all = api
        .cases
        .archive
        .study_instances(&c.clinic, &c.studies)
        .map_err(|e| ApiError::internal(e.to_string()))?;
    // Images before waveforms (an ECG has no frame to show), then the consultation's order
    // of studies, each series in Instance Number order.
    let study_rank = |study: &str| c.studies.iter().position(|s| s == study);
    all.sort_by_key(|([_, study, series, sop], rec)| {
        (
            rec.sop_class_uid.starts_with(WAVEFORM_CLASSES),
            study_rank(study),
            series.clone(),
            rec.instance_number.unwrap_or(i64::MAX),
            sop.clone(),
        )
    });
    Ok(all
        .into_iter()
        .map(|([_, _, series, _], rec)| Shown {
            series,
            modality: rec.modality,
            object: rec.object,
        })
        .collect())
}

#[derive(Deserialize)]
struct ViewerQuery {
    i: Option<usize>,
}

async fn viewer(
    State(api): State<Api>,
    axum::extract::ConnectInfo(crate::https::Peer(from)): Client,
    session: Session,
    Path(id): Path<String>,
    Query(q): Query<ViewerQuery>,
) -> Response {
    let id = match parse_id(&session, &id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let user = session.user.clone();
    let index = q.i.unwrap_or(0);
    let loaded = blocking(move || {
        let (folded, _) = api.cases.visible(&user, &id)?;
        api.cases.audited(&user, from, "view_images", &id)?;
        let shown = instances_of(&api, &folded.consultation)?;
        let info = shown.get(index).map(|s| {
            let local = api.cases.archive.objects().local_file(&s.object);
            local
                .map_err(|e| e.to_string())
                .and_then(|f| crate::render::info(f.path()).map_err(|e| e.to_string()))
        });
        // Previews stand in for the series still on their way.
        let mut pending = api.cases.previews(&folded.consultation);
        pending.retain(|p| !p.complete());
        Ok((folded.consultation, shown, info, pending))
    })
    .await;
    let (c, shown, info, pending) = match loaded {
        Ok(v) => v,
        Err(e) => return failed(&session, e),
    };
    // Series numbered 1, 2, … in the order listed.
    let series_no: Vec<usize> = shown
        .iter()
        .scan((0usize, None::<&str>), |(n, last), s| {
            if *last != Some(s.series.as_str()) {
                *n += 1;
                *last = Some(s.series.as_str());
            }
            Some(*n)
        })
        .collect();
    let lang = session.lang;
    let presets: [(&str, Option<(i32, i32)>); 5] = [
        ("viewer.preset_default", None),
        ("viewer.preset_lung", Some((-600, 1500))),
        ("viewer.preset_soft", Some((40, 400))),
        ("viewer.preset_bone", Some((400, 1800))),
        ("viewer.preset_brain", Some((40, 80))),
    ];
    let body = html! {
        h1 { a href={"/cases/" (c.id.as_str())} { (lang.t("case.id")) " " (c.id.as_str()) } " · " (lang.t("viewer.title")) }
        @if !pending.is_empty() { section.card #previews { (previews(lang, c.id.as_str(), &pending)) } }
        @if shown.is_empty() {
            p.muted #no-images { (lang.t("viewer.none")) }
        } @else {
            div #viewer {
                aside {
                    h2 { (lang.t("viewer.series")) }
                    ul {
                        @for (n, s) in shown.iter().enumerate() {
                            @if n == 0 || shown[n - 1].series != s.series {
                                li.muted { (s.modality.as_deref().unwrap_or("?")) " · " (lang.t("viewer.series")) " " (series_no[n]) }
                            }
                            li { a class=[(n == index).then_some("current")] href={"?i=" (n)} { "#" (n + 1) } }
                        }
                    }
                    h2 { (lang.t("viewer.preset")) }
                    p { @for (key, w) in presets {
                        button.secondary type="button" data-preset=(w.map(|(c, w)| format!("{c},{w}")).unwrap_or_default()) { (lang.t(key)) } " "
                    } }
                    p.muted { (lang.t("viewer.help")) }
                }
                div.stage {
                    @match &info {
                        Some(Ok(i)) => {
                            img #image alt=(lang.t("viewer.title"))
                                src={"/cases/" (c.id.as_str()) "/images/" (index) "?o=" (shown[index].object) "&frame=0"}
                                data-base={"/cases/" (c.id.as_str()) "/images/" (index) "?o=" (shown[index].object)}
                                data-frames=(i.frames)
                                data-wc="" data-ww=""
                                data-wc-auto=(i.window.0) data-ww-auto=(i.window.1);
                            span.overlay {}
                        }
                        Some(Err(e)) => { p.placeholder #cannot { (lang.t("viewer.cannot")) ": " (e) } }
                        None => { p.placeholder { (lang.t("viewer.none")) } }
                    }
                }
            }
        }
    };
    page(&session, lang.t("viewer.title"), body)
}

#[derive(Deserialize)]
struct ImageQuery {
    /// The instance's object, as the viewer page names it: found without listing the case's
    /// instances. Without it, `n` counts in the viewer's order.
    o: Option<String>,
    frame: Option<u32>,
    wc: Option<f64>,
    ww: Option<f64>,
}

/// A frame as PNG. Access is checked like the case page, and every frame fetched is recorded
/// (a frame can be fetched without the viewer page).
async fn image(
    State(api): State<Api>,
    axum::extract::ConnectInfo(crate::https::Peer(from)): Client,
    session: Session,
    Path((id, n)): Path<(String, usize)>,
    Query(q): Query<ImageQuery>,
) -> Response {
    let id = match parse_id(&session, &id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let user = session.user.clone();
    let window = q.wc.zip(q.ww);
    let rendered = blocking(move || {
        let (folded, _) = api.cases.visible(&user, &id)?;
        let c = &folded.consultation;
        let object = match q.o.as_deref() {
            Some(o) => {
                let object = proto::sync::ObjectId::parse(o)
                    .ok_or_else(|| ApiError::bad_request(format!("{o} is not an object id")))?;
                // Only an instance of one of the case's studies, from the case's clinic.
                let found = api
                    .cases
                    .archive
                    .instance(&c.clinic, &object)
                    .map_err(|e| ApiError::internal(e.to_string()))?;
                match found {
                    Some(([_, study, _, _], _)) if c.studies.contains(&study) => object,
                    _ => return Err(ApiError::not_found(format!("no image {o} in this case"))),
                }
            }
            None => {
                instances_of(&api, c)?
                    .into_iter()
                    .nth(n)
                    .ok_or_else(|| ApiError::not_found(format!("no image {n} in this case")))?
                    .object
            }
        };
        api.cases.audited_target(
            &user,
            from,
            "view_image",
            &format!("{id}/{n}/{}", q.frame.unwrap_or(0)),
        )?;
        let local = api
            .cases
            .archive
            .objects()
            .local_file(&object)
            .map_err(|e| ApiError::internal(e.to_string()))?;
        crate::render::png(local.path(), q.frame.unwrap_or(0), window).map_err(|e| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "cannot_render",
                e.to_string(),
            )
        })
    })
    .await;
    match rendered {
        Ok(png) => (
            [
                (header::CONTENT_TYPE, "image/png"),
                (header::CACHE_CONTROL, "private, max-age=300"),
            ],
            png,
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

async fn users(State(api): State<Api>, session: Session) -> Response {
    users_page(api, session, StatusCode::OK, None).await
}

/// The users page again after a change: "saved", or the change's error with its status.
async fn users_page_after(api: Api, session: Session, result: Result<(), ApiError>) -> Response {
    match result {
        Ok(()) => {
            let saved = session.t("users.saved").to_owned();
            users_page(api, session, StatusCode::OK, Some(Ok(saved))).await
        }
        Err(e) => users_page(api, session, e.status, Some(Err(e.message))).await,
    }
}

async fn users_page(
    api: Api,
    session: Session,
    status: StatusCode,
    message: Option<Result<String, String>>,
) -> Response {
    if let Err(r) = admin_only(&session, crate::access::Task::Users) {
        return r;
    }
    let list = match blocking(move || {
        api.accounts
            .list()
            .map_err(|e| ApiError::internal(e.to_string()))
    })
    .await
    {
        Ok(l) => l,
        Err(e) => return failed(&session, e),
    };
    let lang = session.lang;
    let csrf = session.csrf();
    let body = html! {
        h1 { (lang.t("users.title")) }
        @match &message {
            Some(Ok(m)) => { p.ok role="status" { (m) } }
            Some(Err(m)) => { p.error role="alert" { (m) } }
            None => {}
        }
        table #users {
            thead { tr {
                th { (lang.t("users.name")) } th { (lang.t("users.display")) } th { (lang.t("users.role")) }
                th { (lang.t("users.specialist_id")) } th { (lang.t("users.qualification")) } th {}
            } }
            tbody { @for u in &list {
                tr data-user=(u.name) {
                    td { (u.name) @if u.deactivated { " " span.badge { (lang.t("users.inactive")) } } }
                    td { (u.display_name) } td { (lang.t(role_key(u.role))) }
                    td { (u.specialist.as_deref().unwrap_or("")) } td { (u.qualification.as_deref().unwrap_or("")) }
                    td {
                        form.inline method="post" action={"/admin/users/" (u.name) "/reset"} {
                            input type="hidden" name="csrf" value=(csrf);
                            input name="password" type="password" placeholder=(lang.t("users.password")) minlength="10" required;
                            button.secondary type="submit" { (lang.t("users.reset")) }
                        }
                        " "
                        @if !u.deactivated && u.name != session.user.name {
                            form.inline method="post" action={"/admin/users/" (u.name) "/deactivate"} {
                                input type="hidden" name="csrf" value=(csrf);
                                button.danger type="submit" { (lang.t("users.deactivate")) }
                            }
                        }
                    }
                }
            } }
        }
        section.card {
            h2 { (lang.t("users.add")) }
            form method="post" action="/admin/users" {
                input type="hidden" name="csrf" value=(csrf);
                label { (lang.t("users.name")) input name="name" required pattern="[A-Za-z0-9._-]{1,64}"; }
                label { (lang.t("users.display")) input name="display_name" required; }
                label { (lang.t("users.role"))
                    select name="role" {
                        option value="specialist" { (lang.t("role.specialist")) }
                        option value="admin" { (lang.t("role.admin")) }
                    }
                }
                label { (lang.t("users.specialist_id")) input name="specialist"; }
                label { (lang.t("users.qualification")) input name="qualification"; }
                label { (lang.t("users.password")) input name="password" type="password" minlength="10" required; }
                button type="submit" { (lang.t("users.add")) }
            }
        }
    };
    let mut response = page(&session, lang.t("users.title"), body);
    *response.status_mut() = status;
    response
}

#[derive(Deserialize)]
struct NewUser {
    name: String,
    display_name: String,
    role: String,
    specialist: Option<String>,
    qualification: Option<String>,
    password: String,
}

async fn add_user(State(api): State<Api>, CsrfForm(session, form): CsrfForm<NewUser>) -> Response {
    if let Err(r) = admin_only(&session, crate::access::Task::Users) {
        return r;
    }
    let nonempty = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
    let role = match Role::parse(&form.role) {
        Some(r @ (Role::Specialist | Role::Admin)) => r,
        _ => {
            return users_page(
                api,
                session,
                StatusCode::BAD_REQUEST,
                Some(Err("role must be specialist or admin".into())),
            )
            .await
        }
    };
    let specialist = nonempty(form.specialist);
    if role == Role::Specialist && specialist.is_none() {
        return users_page(
            api,
            session,
            StatusCode::BAD_REQUEST,
            Some(Err("a specialist needs their id in routing.toml".into())),
        )
        .await;
    }
    let user = User {
        name: form.name,
        role,
        display_name: form.display_name,
        specialist,
        qualification: nonempty(form.qualification),
        deactivated: false,
    };
    let a = api.clone();
    let result = blocking(move || {
        a.accounts
            .add(user, &form.password, false)
            .map_err(|e| ApiError::bad_request(e.to_string()))
    })
    .await;
    users_page_after(api, session, result).await
}

#[derive(Deserialize)]
struct UserOp {
    password: Option<String>,
}

async fn user_op(
    State(api): State<Api>,
    Path((name, op)): Path<(String, String)>,
    CsrfForm(session, form): CsrfForm<UserOp>,
) -> Response {
    if let Err(r) = admin_only(&session, crate::access::Task::Users) {
        return r;
    }
    let a = api.clone();
    let me = session.user.name.clone();
    let result = blocking(move || {
        let bad = |e: daemon::accounts::AccountError| ApiError::bad_request(e.to_string());
        match op.as_str() {
            "reset" => {
                let user = a
                    .accounts
                    .get(&name)
                    .map_err(bad)?
                    .ok_or_else(|| ApiError::not_found(format!("no user {name}")))?;
                a.accounts
                    .add(user, form.password.as_deref().unwrap_or(""), true)
                    .map_err(bad)
            }
            "deactivate" if name == me => Err(ApiError::conflict(
                "you cannot deactivate your own account; ask another administrator",
            )),
            "deactivate" => a.accounts.set_deactivated(&name, true).map_err(bad),
            other => Err(ApiError::not_found(format!("no user operation {other}"))),
        }
    })
    .await;
    users_page_after(api, session, result).await
}

#[derive(Deserialize)]
struct AuditQuery {
    user: Option<String>,
    action: Option<String>,
    target: Option<String>,
}

async fn audit(State(api): State<Api>, session: Session, Query(q): Query<AuditQuery>) -> Response {
    if let Err(r) = admin_only(&session, crate::access::Task::Audit) {
        return r;
    }
    let audit = api.cases.audit.clone();
    let loaded = blocking(move || {
        let chain = audit.verify().map(|_| ()).map_err(|e| e.to_string());
        let records = audit
            .records()
            .map_err(|e| ApiError::internal(e.to_string()))?;
        Ok((chain, records))
    })
    .await;
    let (chain, records) = match loaded {
        Ok(v) => v,
        Err(e) => return failed(&session, e),
    };
    let want = |f: &Option<String>, v: &str| {
        f.as_deref()
            .filter(|f| !f.trim().is_empty())
            .is_none_or(|f| v.contains(f.trim()))
    };
    let shown: Vec<_> = records
        .iter()
        .rev()
        .filter(|r| {
            want(&q.user, &r.user) && want(&q.action, &r.action) && want(&q.target, &r.target)
        })
        .take(500)
        .collect();
    let lang = session.lang;
    let body = html! {
        h1 { (lang.t("audit.title")) }
        @match &chain {
            Ok(()) => { p.ok #chain { (lang.t("audit.chain_ok")) } }
            Err(e) => { p.error #chain { (lang.t("audit.chain_bad")) (e) } }
        }
        form.card method="get" action="/admin/audit" {
            div.grid {
                label { (lang.t("audit.who")) input name="user" value=(q.user.as_deref().unwrap_or("")); }
                label { (lang.t("audit.action")) input name="action" value=(q.action.as_deref().unwrap_or("")); }
                label { (lang.t("audit.target")) input name="target" value=(q.target.as_deref().unwrap_or("")); }
            }
            button type="submit" { (lang.t("audit.filter")) }
        }
        table #audit {
            thead { tr {
                th { "#" } th { (lang.t("audit.when")) } th { (lang.t("audit.who")) }
                th { (lang.t("audit.from")) } th { (lang.t("audit.action")) } th { (lang.t("audit.target")) }
            } }
            tbody { @for r in &shown {
                tr {
                    td { (r.seq) } td { (time(r.at_ms)) } td { (r.user) } td { (r.address) } td { (r.action) }
                    td { @if ConsultationId::parse(&r.target).is_some() { a href={"/cases/" (r.target)} { (r.target) } } @else { (r.target) } }
                }
            } }
        }
    };
    page(&session, lang.t("audit.title"), body)
}
