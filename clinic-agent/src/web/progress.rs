//! How the case's studies are getting on: bytes held, delivered and in flight per study, and
//! the estimate of when each is through, for the case list and the case page.

use std::collections::HashMap;
use std::time::Instant;

use daemon::web::Lang;
use maud::{html, Markup};

use crate::status::{bytes_until_through, seconds_left, Pending};
use crate::Handle;

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
pub(super) struct Progress {
    studies: HashMap<String, StudyProgress>,
    up: bool,
    pub(super) rate: Option<f64>,
}

pub(super) fn progress(handle: &Handle) -> Progress {
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
pub(super) fn sync_cell(lang: Lang, studies: &[String], progress: &Progress) -> Markup {
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
