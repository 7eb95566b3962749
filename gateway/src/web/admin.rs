//! The administrator's pages for accounts (add, reset, deactivate and reactivate) and the
//! audit log.

// A refused page is a whole response, built once per request; boxing it buys nothing.
#![allow(clippy::result_large_err)]

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use daemon::accounts::User;
use daemon::api::{blocking, ApiError};
use daemon::web::{role_key, time, CsrfForm, Session};
use maud::html;
use proto::consult::ConsultationId;
use serde::Deserialize;

use super::{admin_only, failed, page, Client};
use crate::api::Api;

/// The users and audit pages.
pub(super) fn routes() -> axum::Router<Api> {
    axum::Router::new()
        .route("/admin/users", get(users).post(add_user))
        .route("/admin/users/{name}/details", post(change_details))
        .route("/admin/users/{name}/{op}", post(user_op))
        .route("/admin/audit", get(audit))
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
            Some(Err(m)) => { p.error role="alert" { (lang.say(m)) } }
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
                            form.inline method="post" action={"/admin/users/" (u.name) "/deactivate"} data-confirm=(lang.t("users.confirm_deactivate").replace("{name}", &u.name)) {
                                input type="hidden" name="csrf" value=(csrf);
                                button.danger type="submit" { (lang.t("users.deactivate")) }
                            }
                        }
                        @if u.deactivated {
                            form.inline method="post" action={"/admin/users/" (u.name) "/reactivate"} {
                                input type="hidden" name="csrf" value=(csrf);
                                button.secondary type="submit" { (lang.t("users.reactivate")) }
                            }
                        }
                        details.edit {
                            summary { (lang.t("users.edit")) }
                            form.details method="post" action={"/admin/users/" (u.name) "/details"} {
                                input type="hidden" name="csrf" value=(csrf);
                                label { (lang.t("users.display")) input name="display_name" required value=(u.display_name); }
                                label { (lang.t("users.role"))
                                    select name="role" {
                                        @for role in crate::access::ROLES {
                                            option value=(role.as_str()) selected[*role == u.role] { (lang.t(role_key(*role))) }
                                        }
                                    }
                                }
                                label { (lang.t("users.specialist_id")) input name="specialist" value=(u.specialist.as_deref().unwrap_or("")); }
                                label { (lang.t("users.qualification")) input name="qualification" value=(u.qualification.as_deref().unwrap_or("")); }
                                button.secondary type="submit" { (lang.t("users.save")) }
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

async fn add_user(
    State(api): State<Api>,
    axum::extract::ConnectInfo(crate::https::Peer(from)): Client,
    CsrfForm(session, form): CsrfForm<NewUser>,
) -> Response {
    if let Err(r) = admin_only(&session, crate::access::Task::Users) {
        return r;
    }
    // Every change of an account is in the audit log, before it is made.
    if let Err(e) =
        super::audit_change(&api, &session.user, from, "user_add", form.name.clone()).await
    {
        return failed(&session, e);
    }
    let nonempty = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
    let a = api.clone();
    let result = blocking(move || {
        let refused = |e: daemon::accounts::AccountError| ApiError::bad_request(e.to_string());
        let user = User {
            name: form.name,
            role: daemon::accounts::site_role(&form.role, crate::access::ROLES).map_err(refused)?,
            display_name: form.display_name,
            specialist: nonempty(form.specialist),
            qualification: nonempty(form.qualification),
            deactivated: false,
        };
        a.accounts
            .add_at(crate::access::ROLES, user, &form.password, false)
            .map_err(refused)
    })
    .await;
    users_page_after(api, session, result).await
}

#[derive(Deserialize)]
struct Details {
    display_name: String,
    role: String,
    specialist: Option<String>,
    qualification: Option<String>,
}

/// An administrator changes an account's details. The change is in the audit log before it
/// is made (`user_edit`), and a change of role once more on its own (`role_change`, with the
/// roles before and after), after it is made.
async fn change_details(
    State(api): State<Api>,
    axum::extract::ConnectInfo(crate::https::Peer(from)): Client,
    Path(name): Path<String>,
    CsrfForm(session, form): CsrfForm<Details>,
) -> Response {
    if let Err(r) = admin_only(&session, crate::access::Task::Users) {
        return r;
    }
    if let Err(e) = super::audit_change(&api, &session.user, from, "user_edit", name.clone()).await
    {
        return failed(&session, e);
    }
    let nonempty = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
    let (a, actor) = (api.clone(), session.user.clone());
    let result = blocking(move || {
        let refused = |e: daemon::accounts::AccountError| ApiError::bad_request(e.to_string());
        let changed = User {
            name: name.clone(),
            role: daemon::accounts::site_role(&form.role, crate::access::ROLES).map_err(refused)?,
            display_name: form.display_name,
            specialist: nonempty(form.specialist),
            qualification: nonempty(form.qualification),
            deactivated: false,
        };
        let (before, after) = a
            .accounts
            .change_details(crate::access::ROLES, &actor.name, changed)
            .map_err(refused)?;
        if before.role != after.role {
            a.cases.audited_target(
                &actor,
                from,
                "role_change",
                &format!("{name}: {} → {}", before.role.as_str(), after.role.as_str()),
            )?;
        }
        Ok(())
    })
    .await;
    users_page_after(api, session, result).await
}

#[derive(Deserialize)]
struct UserOp {
    password: Option<String>,
}

/// What an administrator does to an account from the users page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    /// A new password (ending the account's sessions and tokens).
    Reset,
    Deactivate,
    /// Lets a deactivated account log in again.
    Reactivate,
}

impl Op {
    /// The operation named in the path (`/admin/users/{name}/{op}`).
    fn parse(name: &str) -> Option<Self> {
        match name {
            "reset" => Some(Op::Reset),
            "deactivate" => Some(Op::Deactivate),
            "reactivate" => Some(Op::Reactivate),
            _ => None,
        }
    }

    /// Its action in the audit log.
    fn audit_action(self) -> &'static str {
        match self {
            Op::Reset => "user_reset",
            Op::Deactivate => "user_deactivate",
            Op::Reactivate => "user_reactivate",
        }
    }
}

async fn user_op(
    State(api): State<Api>,
    axum::extract::ConnectInfo(crate::https::Peer(from)): Client,
    Path((name, op)): Path<(String, String)>,
    CsrfForm(session, form): CsrfForm<UserOp>,
) -> Response {
    if let Err(r) = admin_only(&session, crate::access::Task::Users) {
        return r;
    }
    let Some(op) = Op::parse(&op) else {
        let e = ApiError::not_found(format!("no user operation {op}"));
        return users_page_after(api, session, Err(e)).await;
    };
    if let Err(e) =
        super::audit_change(&api, &session.user, from, op.audit_action(), name.clone()).await
    {
        return failed(&session, e);
    }
    let a = api.clone();
    let me = session.user.name.clone();
    let result = blocking(move || {
        let bad = |e: daemon::accounts::AccountError| ApiError::bad_request(e.to_string());
        match op {
            Op::Reset => {
                let user = a
                    .accounts
                    .get(&name)
                    .map_err(bad)?
                    .ok_or_else(|| ApiError::not_found(format!("no user {name}")))?;
                a.accounts
                    .add(user, form.password.as_deref().unwrap_or(""), true)
                    .map_err(bad)
            }
            Op::Deactivate => a.accounts.deactivate_by(&me, &name).map_err(|e| match e {
                daemon::accounts::AccountError::OwnAccount => ApiError::conflict(e.to_string()),
                e => bad(e),
            }),
            Op::Reactivate => a.accounts.set_deactivated(&name, false).map_err(bad),
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
                    td { (r.seq) } td { (time(r.at_ms)) } td { (r.user) } td { (r.address) } td data-action=(r.action) { (lang.audit_action(&r.action)) }
                    td { @if ConsultationId::parse(&r.target).is_some() { a href={"/cases/" (r.target)} { (r.target) } } @else { (r.target) } }
                }
            } }
        }
    };
    page(&session, lang.t("audit.title"), body)
}
