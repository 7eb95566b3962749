//! The administrator's roster page: the specialists of `routing.toml` with their specialties
//! and duty hours, the pools with their members; a specialist added to or taken out of a pool,
//! duty hours set. Every change goes through `crate::roster_edit` (the file's own checks,
//! written whole) and is in the audit log (`roster_change`) before it is made.

// A refused page is a whole response, built once per request; boxing it buys nothing.
#![allow(clippy::result_large_err)]

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use daemon::api::{blocking, ApiError};
use daemon::web::{CsrfForm, Session};
use maud::html;
use serde::Deserialize;

use super::{admin_only, failed, page, Client};
use crate::access::Task;
use crate::api::Api;
use crate::consult::now_ms;
use crate::roster_edit::{Change, EditError};
use crate::routing::Roster;

pub(super) fn routes() -> axum::Router<Api> {
    axum::Router::new()
        .route("/admin/roster", get(roster))
        .route("/admin/roster/pool/{op}", post(pool_op))
        .route("/admin/roster/duty", post(set_duty))
}

async fn roster(State(api): State<Api>, session: Session) -> Response {
    roster_page(api, session, StatusCode::OK, None, None).await
}

/// The roster as the file on disk says, or why it cannot be read; `None` without `[routing]`.
fn on_disk(api: &Api) -> Option<(std::path::PathBuf, Result<Roster, String>)> {
    let router = api.cases.router.as_ref()?;
    let file = router.file().to_path_buf();
    let roster = Roster::load(&file).map_err(|e| e.to_string());
    Some((file, roster))
}

async fn roster_page(
    api: Api,
    session: Session,
    status: StatusCode,
    message: Option<Result<String, String>>,
    typed: Option<(String, String)>,
) -> Response {
    if let Err(r) = admin_only(&session, Task::Roster) {
        return r;
    }
    let loaded = match blocking(move || Ok(on_disk(&api))).await {
        Ok(l) => l,
        Err(e) => return failed(&session, e),
    };
    let lang = session.lang;
    let csrf = session.csrf();
    let now = now_ms();
    let body = html! {
        h1 { (lang.t("roster.title")) }
        @match &message {
            Some(Ok(m)) => { p.ok role="status" { (m) } }
            Some(Err(m)) => { p.error role="alert" { (lang.say(m)) } }
            None => {}
        }
        @match &loaded {
            None => { p.muted #no-routing { (lang.t("roster.none")) } }
            Some((_, Err(why))) => { p.error #roster-refused { (lang.t("roster.refused")) " " (why) } }
            Some((_, Ok(r))) => {
                // Specialties by their names in the page's language; people by name and id.
                @let specialty = |name: &str| r.specialty_shown(name, lang == daemon::web::Lang::Zh);
                @let who = |id: &str| -> String {
                    r.specialists.get(id).map_or_else(|| id.to_owned(), |s| format!("{} ({id})", s.name))
                };
                p.muted { (lang.t("roster.help")) }
                h2 { (lang.t("roster.specialists")) }
                table #specialists {
                    thead { tr {
                        th { (lang.t("roster.id")) } th { (lang.t("users.display")) } th { (lang.t("roster.specialties")) }
                        th { (lang.t("roster.on_duty")) } th { (lang.t("roster.duty")) }
                    } }
                    tbody { @for s in r.specialists.values() {
                        tr data-specialist=(s.id) {
                            td { (s.id) } td { (s.name) } td { (s.specialties.iter().map(|n| specialty(n)).collect::<Vec<_>>().join("、")) }
                            td { @if r.on_duty(&s.id, now) { span.badge.online { (lang.t("roster.yes")) } } @else { span.badge { (lang.t("roster.no")) } } }
                            td {
                                form.inline method="post" action="/admin/roster/duty" {
                                    input type="hidden" name="csrf" value=(csrf);
                                    input type="hidden" name="specialist" value=(s.id);
                                    // Hours the file refused stay as typed, to be corrected.
                                    @let value = match &typed {
                                        Some((who, text)) if *who == s.id => text.clone(),
                                        _ => s.duty.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "),
                                    };
                                    input name="duty" size="28" aria-label=(lang.t("roster.duty")) value=(value);
                                    " "
                                    button.secondary type="submit" { (lang.t("roster.save")) }
                                }
                            }
                        }
                    } }
                }
                h2 { (lang.t("roster.pools")) }
                table #pools {
                    thead { tr {
                        th { (lang.t("roster.pool")) } th { (lang.t("roster.specialties")) } th { (lang.t("roster.lead")) }
                        th { (lang.t("roster.members")) } th { (lang.t("roster.add")) }
                    } }
                    tbody { @for p in r.pools.values() {
                        tr data-pool=(p.id) {
                            td { (p.id) }
                            td { (p.specialties.iter().map(|n| specialty(n)).collect::<Vec<_>>().join("、")) }
                            td { (who(&p.lead)) }
                            td { ul.members { @for m in &p.members {
                                li data-member=(m) {
                                    (who(m)) " "
                                    form.inline method="post" action="/admin/roster/pool/remove" {
                                        input type="hidden" name="csrf" value=(csrf);
                                        input type="hidden" name="pool" value=(p.id);
                                        input type="hidden" name="specialist" value=(m);
                                        button.link type="submit" aria-label=(lang.t("roster.remove")) { (lang.t("roster.remove")) }
                                    }
                                }
                            } } }
                            td {
                                @let others: Vec<&String> = r.specialists.keys().filter(|id| !p.members.contains(id)).collect();
                                @if !others.is_empty() {
                                    form.inline method="post" action="/admin/roster/pool/add" {
                                        input type="hidden" name="csrf" value=(csrf);
                                        input type="hidden" name="pool" value=(p.id);
                                        select name="specialist" aria-label=(lang.t("roster.add")) {
                                            @for id in others { option value=(id) { (who(id)) } }
                                        }
                                        " "
                                        button.secondary type="submit" { (lang.t("roster.add")) }
                                    }
                                }
                            }
                        }
                    } }
                }
                @if let Some((file, _)) = &loaded { p.muted { (lang.t("roster.file")) " " code { (file.display()) } } }
            }
        }
    };
    let mut response = page(&session, lang.t("roster.title"), body);
    *response.status_mut() = status;
    response
}

/// Records `change` in the audit log, makes it, and shows the page with the outcome.
async fn make(
    api: Api,
    from: std::net::SocketAddr,
    session: Session,
    change: Change,
    typed: Option<(String, String)>,
) -> Response {
    if let Err(r) = admin_only(&session, Task::Roster) {
        return r;
    }
    let Some(file) = api.cases.router.as_ref().map(|r| r.file().to_path_buf()) else {
        let e = ApiError::conflict(session.t("roster.none"));
        return roster_page(api, session, e.status, Some(Err(e.message)), None).await;
    };
    if let Err(e) = super::audit_change(
        &api,
        &session.user,
        from,
        "roster_change",
        change.describe(),
    )
    .await
    {
        return failed(&session, e);
    }
    let result = blocking(move || {
        crate::roster_edit::change(&file, &change)
            .map(|_| ())
            .map_err(|e| match e {
                EditError::Read { .. } | EditError::Write { .. } => {
                    ApiError::internal(e.to_string())
                }
                EditError::NoPool(_) | EditError::NoSpecialist(_) => {
                    ApiError::not_found(e.to_string())
                }
                _ => ApiError::conflict(e.to_string()),
            })
    })
    .await;
    match result {
        Ok(()) => {
            let saved = session.t("roster.saved").to_owned();
            roster_page(api, session, StatusCode::OK, Some(Ok(saved)), None).await
        }
        Err(e) => roster_page(api, session, e.status, Some(Err(e.message)), typed).await,
    }
}

#[derive(Deserialize)]
struct PoolForm {
    pool: String,
    specialist: String,
}

async fn pool_op(
    State(api): State<Api>,
    axum::extract::ConnectInfo(crate::https::Peer(from)): Client,
    Path(op): Path<String>,
    CsrfForm(session, form): CsrfForm<PoolForm>,
) -> Response {
    let (pool, specialist) = (form.pool, form.specialist);
    let change = match op.as_str() {
        "add" => Change::AddMember { pool, specialist },
        "remove" => Change::RemoveMember { pool, specialist },
        _ => {
            return failed(
                &session,
                ApiError::not_found(format!("no pool operation {op}")),
            )
        }
    };
    make(api, from, session, change, None).await
}

#[derive(Deserialize)]
struct DutyForm {
    specialist: String,
    /// Shifts separated by `;` or new lines.
    duty: String,
}

async fn set_duty(
    State(api): State<Api>,
    axum::extract::ConnectInfo(crate::https::Peer(from)): Client,
    CsrfForm(session, form): CsrfForm<DutyForm>,
) -> Response {
    let duty = form
        .duty
        .split([';', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    let typed = Some((form.specialist.clone(), form.duty));
    let change = Change::SetDuty {
        specialist: form.specialist,
        duty,
    };
    make(api, from, session, change, typed).await
}
