//! The import page: studies from a CD or a USB stick, uploaded from the browser and taken in
//! like the modality's, with each file's outcome.

use axum::extract::{Multipart, State};
use axum::response::Response;
use daemon::web::Session;
use maud::{html, Markup};

use super::upload::read_multipart;
use super::{may, page};
use crate::access::{Action, Task};
use crate::Handle;

pub(super) async fn import_page(session: Session) -> Response {
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

pub(super) async fn import(
    State(handle): State<Handle>,
    session: Session,
    form: Multipart,
) -> Response {
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
                    td { (lang.say(r.reason.as_deref().unwrap_or(""))) }
                }
            } }
        }
        p { a.button href="/cases/new" { (lang.t("nav.new_case")) } }
        (import_form(&session))
    };
    page(&session, lang.t("import.result"), body)
}
