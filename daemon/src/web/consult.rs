//! Pieces of a consultation page that look the same at the clinic and the hospital: state
//! and urgency badges, the timeline, the signed report.

use maud::{html, Markup};
use proto::consult::{Correction, Event, EventKind, Report, SetAside, State, Urgency};

use super::{time, Lang};

pub fn state_key(state: State) -> &'static str {
    match state {
        State::Draft => "state.draft",
        State::Submitted => "state.submitted",
        State::Delivered => "state.delivered",
        State::Assigned => "state.assigned",
        State::Accepted => "state.accepted",
        State::AwaitingAnswer => "state.awaiting_answer",
        State::Reported => "state.reported",
        State::Acknowledged => "state.acknowledged",
        State::Cancelled => "state.cancelled",
    }
}

pub fn urgency_key(urgency: Urgency) -> &'static str {
    match urgency {
        Urgency::Routine => "urgency.routine",
        Urgency::Urgent => "urgency.urgent",
        Urgency::Emergency => "urgency.emergency",
    }
}

/// The CSS class of an urgency (rows and badges).
pub fn urgency_class(urgency: Urgency) -> &'static str {
    match urgency {
        Urgency::Routine => "routine",
        Urgency::Urgent => "urgent",
        Urgency::Emergency => "emergency",
    }
}

pub fn state_badge(lang: Lang, state: State) -> Markup {
    html! { span class={"badge " (state.label())} data-state=(state.label()) { (lang.t(state_key(state))) } }
}

pub fn urgency_badge(lang: Lang, urgency: Urgency) -> Markup {
    html! { span class={"badge " (urgency_class(urgency))} { (lang.t(urgency_key(urgency))) } }
}

/// Age in whole years from a `YYYY-MM-DD` or `YYYYMMDD` birth date, at `now_ms`.
pub fn age(birth_date: &str, now_ms: i64) -> Option<u32> {
    let digits: String = birth_date.chars().filter(char::is_ascii_digit).collect();
    if digits.len() != 8 {
        return None;
    }
    let (y, md): (i64, i64) = (digits[..4].parse().ok()?, digits[4..].parse().ok()?);
    let today = time::OffsetDateTime::from_unix_timestamp(now_ms / 1000).ok()?;
    let (ty, tmd) = (
        i64::from(today.year()),
        i64::from(u8::from(today.month())) * 100 + i64::from(today.day()),
    );
    let years = ty - y - i64::from(tmd < md);
    u32::try_from(years).ok()
}

/// "45 F", "F", "45", or "" — what a specialist sees first.
pub fn age_sex(sex: &str, birth_date: &str, now_ms: i64) -> String {
    match (age(birth_date, now_ms), sex.trim()) {
        (Some(a), "") => a.to_string(),
        (Some(a), s) => format!("{a} {s}"),
        (None, s) => s.to_owned(),
    }
}

fn fill(template: &str, pairs: &[(&str, &str)]) -> String {
    pairs.iter().fold(template.to_owned(), |acc, (k, v)| {
        acc.replace(&format!("{{{k}}}"), v)
    })
}

/// One event as a sentence in `lang`.
/// How consent was given, in words: the form's two ways by name, anything else as recorded.
pub fn consent_method(lang: Lang, method: &str) -> &str {
    match method {
        "written" => lang.t("new.consent_written"),
        "verbal" => lang.t("new.consent_verbal"),
        other => other,
    }
}

pub fn describe(lang: Lang, kind: &EventKind) -> String {
    let t = |k| lang.t(k);
    match kind {
        EventKind::Created { .. } => t("ev.created").into(),
        EventKind::ConsentRecorded { consent } => fill(
            t("ev.consent"),
            &[
                ("who", &consent.given_by),
                ("how", consent_method(lang, &consent.method)),
            ],
        ),
        EventKind::PatientUpdated {
            reason: Some(why), ..
        } => format!("{}: {why}", t("ev.patient")),
        EventKind::PatientUpdated { .. } => t("ev.patient").into(),
        EventKind::StudiesAttached {
            study_instance_uids,
            attachments,
        } => fill(
            t("ev.studies"),
            &[
                ("n", &study_instance_uids.len().to_string()),
                ("m", &attachments.len().to_string()),
            ],
        ),
        EventKind::Submitted => t("ev.submitted").into(),
        EventKind::Delivered => t("ev.delivered").into(),
        EventKind::Assigned {
            specialist, reason, ..
        } => fill(
            t("ev.assigned"),
            &[("who", specialist), ("why", &lang.say(reason))],
        ),
        EventKind::Accepted { specialist } => fill(t("ev.accepted"), &[("who", specialist)]),
        EventKind::QuestionAsked { specialist, text } => {
            fill(t("ev.asked"), &[("who", specialist), ("text", text)])
        }
        EventKind::QuestionAnswered { text, .. } => fill(t("ev.answered"), &[("text", text)]),
        EventKind::Reported { specialist, .. } => fill(t("ev.reported"), &[("who", specialist)]),
        EventKind::Addendum {
            specialist, text, ..
        } => fill(t("ev.addendum"), &[("who", specialist), ("text", text)]),
        EventKind::ReportAcknowledged => t("ev.acknowledged").into(),
        EventKind::Declined { specialist, reason } => {
            fill(t("ev.declined"), &[("who", specialist), ("why", reason)])
        }
        EventKind::Reassigned { from, to, reason } => fill(
            t("ev.reassigned"),
            &[("from", from), ("who", to), ("why", reason)],
        ),
        EventKind::Escalated { from, to, reason } => fill(
            t("ev.escalated"),
            &[("from", from), ("who", to), ("why", &lang.say(reason))],
        ),
        EventKind::Cancelled { reason } => fill(t("ev.cancelled"), &[("why", reason)]),
        EventKind::Unrouted { reason } => fill(t("ev.unrouted"), &[("why", &lang.say(reason))]),
    }
}

/// Changes of who the patient is made after a specialist accepted the case: shown above the
/// case at both sites, with what the details were before and why they changed.
pub fn corrections(lang: Lang, corrections: &[Correction]) -> Markup {
    html! {
        @if !corrections.is_empty() {
            section.card #corrections role="alert" {
                h2.error { (lang.t("case.corrected")) }
                ul { @for k in corrections {
                    li {
                        (time(k.at_ms)) " · " (k.by) " — " (lang.t("case.corrected_before")) " "
                        (k.before.id) " · " (k.before.name) " · " (k.before.sex) " " (k.before.birth_date)
                        " — " (k.reason)
                    }
                } }
            }
        }
    }
}

/// The timeline, oldest first; events that no longer applied are struck through, with why.
pub fn timeline(lang: Lang, events: &[Event], superseded: &[SetAside]) -> Markup {
    html! {
        ol.timeline {
            @for e in events {
                @let gone = superseded.iter().find(|s| s.event == e.id);
                li class=[gone.is_some().then_some("superseded")] {
                    (time(e.at_ms)) " — " (describe(lang, &e.kind))
                    span.muted { " · " (e.actor) }
                    @if let Some(why) = gone {
                        span.muted { " (" (lang.t("case.superseded")) ": " (lang.say(&why.reason)) ")" }
                    }
                }
            }
        }
    }
}

/// A signed report with its addenda.
pub fn report(lang: Lang, report: &Report, addenda: &[String]) -> Markup {
    html! {
        section.card #report {
            h2 { (lang.t("case.report")) }
            dl.facts {
                dt { (lang.t("case.findings")) } dd.report { (report.findings) }
                dt { (lang.t("case.impression")) } dd.report { (report.impression) }
                dt { (lang.t("case.recommendation")) } dd.report { (report.recommendation) }
                dt { (lang.t("case.signed_by")) }
                dd { (report.signer_name) ", " (report.signer_qualification) " · " (time(report.signed_at_ms)) }
                @if let Some(a) = &report.signed_before_complete {
                    dt { (lang.t("report.incomplete")) }
                    dd.warn #signed-before-complete { (lang.t("report.incomplete_note").replace("{n}", &a.describe())) }
                }
            }
            @if !addenda.is_empty() {
                h2 { (lang.t("case.addenda")) }
                ul { @for a in addenda { li.report { (a) } } }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn age_counts_whole_years_to_the_day() {
        // 2026-11-26 00:00 UTC
        let now = 1_795_651_200_000;
        assert_eq!(age("1980-11-26", now), Some(46));
        assert_eq!(age("19801127", now), Some(45));
        assert_eq!(age("", now), None);
        assert_eq!(age("1980", now), None);
        assert_eq!(age_sex("F", "19801127", now), "45 F");
        assert_eq!(age_sex("", "", now), "");
    }
}
