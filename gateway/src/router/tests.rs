//! The router over a real gateway index on a virtual clock: assignment on delivery, escalation
//! after the SLA, re-routing after a decline, alerts raised once.

use proto::consult::{Consent, ConsultationId, Patient, Side, Urgency};
use proto::ClinicId;

use super::*;

const ROSTER: &str = r#"
[[specialist]]
id = "li"
name = "Li Wei"
specialties = ["radiology"]
qualification = "attending radiologist"
years_independent = 12
utc_offset = "+08:00"
duty = ["daily 00:00-24:00"]

[[specialist]]
id = "chen"
name = "Chen Jing"
specialties = ["radiology"]
qualification = "attending radiologist"
years_independent = 8
utc_offset = "+08:00"
duty = ["daily 00:00-24:00"]

[[pool]]
id = "radiology"
members = ["li", "chen"]
lead = "li"

[[rule]]
id = "all"
pool = "radiology"
"#;

struct Fixture {
    _dir: tempfile::TempDir,
    router: Router,
    site: Site,
    metrics: Arc<Metrics>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let embedded = crate::storage::Embedded::open(dir.path()).unwrap();
    let archive = Arc::new({
        let (objects, index) = embedded.ports();
        GatewayArchive::new(objects, index)
    });
    let site =
        crate::consult::open(&crate::storage::Ports::embedded_in(embedded), dir.path()).unwrap();
    let file = dir.path().join("routing.toml");
    std::fs::write(&file, ROSTER).unwrap();
    let metrics = Arc::new(Metrics::new());
    let router = Router::new(site.clone(), archive, metrics.clone(), file);
    Fixture {
        _dir: dir,
        router,
        site,
        metrics,
    }
}

/// A request from the clinic, submitted and delivered at `at_ms`.
fn delivered(site: &Site, n: u8, urgency: Urgency, at_ms: i64) -> (ClinicId, ConsultationId) {
    delivered_for(site, n, urgency, at_ms, "radiology")
}

fn delivered_for(
    site: &Site,
    n: u8,
    urgency: Urgency,
    at_ms: i64,
    specialty: &str,
) -> (ClinicId, ConsultationId) {
    let clinic = ClinicId::new("jinzhou").unwrap();
    let id = ConsultationId::new(at_ms as u64, [n; 10]);
    for kind in [
        EventKind::Created {
            patient: Patient {
                id: format!("P-{n}"),
                name: "Test^Patient".into(),
                sex: "M".into(),
                birth_date: String::new(),
            },
            clinical_summary: "trauma".into(),
            question: "fracture?".into(),
            specialty: specialty.into(),
            urgency,
            number: None,
        },
        EventKind::ConsentRecorded {
            consent: Consent {
                given_by: "patient".into(),
                method: "verbal".into(),
                at_ms,
            },
        },
        EventKind::Submitted,
    ] {
        site.log
            .append(&clinic, Side::Clinic, &id, "dr.wang", at_ms, kind)
            .unwrap();
    }
    site.append(&clinic, &id, "system", at_ms, EventKind::Delivered)
        .unwrap();
    (clinic, id)
}

fn get(site: &Site, id: &ConsultationId) -> Consultation {
    site.log.get(id).unwrap().unwrap().consultation
}

const T0: i64 = 1_795_000_000_000;
const MIN: i64 = 60_000;

#[test]
fn delivered_cases_are_assigned_and_unaccepted_ones_escalate_after_their_sla() {
    let f = fixture();
    let (_, a) = delivered(&f.site, 1, Urgency::Emergency, T0);
    let first = f.router.pass(T0);
    assert_eq!(first.assigned, 1);
    let c = get(&f.site, &a);
    assert_eq!(c.state, State::Assigned);
    let assignee = c.assignee.clone().unwrap();
    assert_eq!(
        f.router.pass(T0 + MIN),
        Pass::default(),
        "nothing new to do"
    );
    // 30 minutes for an emergency, then it goes to the other specialist.
    assert_eq!(f.router.pass(T0 + 29 * MIN).escalated, 0);
    let late = f.router.pass(T0 + 31 * MIN);
    assert_eq!(late.escalated, 1);
    let c = get(&f.site, &a);
    assert_ne!(c.assignee.as_ref(), Some(&assignee));
    assert_eq!(c.state, State::Assigned);
    let timeline = f.site.log.timeline(&a).unwrap();
    let EventKind::Escalated { reason, .. } = &timeline.last().unwrap().kind else {
        panic!("escalated last")
    };
    assert!(reason.contains("not accepted within 30 min"), "{reason}");
    assert!(f
        .metrics
        .render()
        .contains("tpg_sla_breaches_total{urgency=\"emergency\"} 1"));
}

#[test]
fn a_declined_case_goes_to_someone_else_and_load_spreads_cases() {
    let f = fixture();
    let (clinic, a) = delivered(&f.site, 1, Urgency::Routine, T0);
    let (_, b) = delivered(&f.site, 2, Urgency::Routine, T0);
    assert_eq!(f.router.pass(T0).assigned, 2);
    let (ca, cb) = (get(&f.site, &a), get(&f.site, &b));
    assert_ne!(
        ca.assignee, cb.assignee,
        "fewest open cases spreads the two"
    );
    let who = ca.assignee.unwrap();
    f.site
        .append(
            &clinic,
            &a,
            &who,
            T0 + MIN,
            EventKind::Declined {
                specialist: who.clone(),
                reason: "conflict of interest".into(),
            },
        )
        .unwrap();
    assert_eq!(f.router.pass(T0 + 2 * MIN).assigned, 1);
    let again = get(&f.site, &a);
    assert_eq!(again.state, State::Assigned);
    assert_ne!(
        again.assignee.as_ref(),
        Some(&who),
        "never back to who declined"
    );
}

#[test]
fn a_case_nobody_can_take_raises_one_alert_and_waits() {
    let f = fixture();
    let (clinic, a) = delivered(&f.site, 1, Urgency::Urgent, T0);
    f.router.pass(T0);
    for step in 1..=2 {
        let who = get(&f.site, &a).assignee.unwrap();
        f.site
            .append(
                &clinic,
                &a,
                &who,
                T0 + step * MIN,
                EventKind::Declined {
                    specialist: who.clone(),
                    reason: "not my field".into(),
                },
            )
            .unwrap();
        f.router.pass(T0 + step * MIN);
    }
    // Both declined (the lead too): it stays delivered, with one alert however many passes.
    assert_eq!(get(&f.site, &a).state, State::Delivered);
    let alerts = |f: &Fixture| {
        harness_metric(
            &f.metrics.render(),
            "tpg_routing_alerts_total{kind=\"unroutable\"}",
        )
    };
    assert_eq!(alerts(&f), Some(1.0));
    f.router.pass(T0 + 10 * MIN);
    assert_eq!(alerts(&f), Some(1.0));
}

fn harness_metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series))
        .and_then(|v| v.trim().parse().ok())
}

#[test]
fn a_broken_roster_edit_keeps_the_roster_in_force() {
    let f = fixture();
    f.router.reload().unwrap();
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(&f.router.file, "[[pool]]\nid = 3\n").unwrap();
    let kept = f.router.reload().unwrap();
    assert_eq!(kept.specialists.len(), 2);
    assert!(f
        .metrics
        .render()
        .contains("tpg_routing_alerts_total{kind=\"roster_invalid\"} 1"));
    assert!(f.router.refused().is_some(), "the alerts page says why");
}

/// A roster refused at start (nothing in force) routes nothing, and says so once, with why,
/// for the alerts page; fixed, it routes again.
#[test]
fn a_roster_refused_at_start_is_reported_not_silent() {
    let f = fixture();
    std::fs::write(
        &f.router.file,
        ROSTER.replace("lead = \"li\"", "lead = \"nobody\""),
    )
    .unwrap();
    let (_, a) = delivered(&f.site, 3, Urgency::Emergency, T0);
    f.router.pass(T0);
    f.router.pass(T0 + MIN);
    assert_eq!(get(&f.site, &a).state, State::Delivered);
    let why = f.router.refused().expect("refused, with why");
    assert!(why.contains("nobody is not a [[specialist]]"), "{why}");
    assert!(f
        .metrics
        .render()
        .contains("tpg_routing_alerts_total{kind=\"roster_invalid\"} 1"));
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(&f.router.file, ROSTER).unwrap();
    f.router.pass(T0 + 2 * MIN);
    assert_eq!(get(&f.site, &a).state, State::Assigned);
    assert!(f.router.refused().is_none());
}

/// A specialty the roster does not know is not given to the catch-all rule's radiologists: the
/// case waits, unrouted, with the reason on its timeline (once) and one alert.
#[test]
fn an_unknown_specialty_waits_unrouted_with_its_reason_and_one_alert() {
    let f = fixture();
    let (_, a) = delivered_for(&f.site, 2, Urgency::Emergency, T0, "neurology");
    f.router.pass(T0);
    f.router.pass(T0 + MIN);
    let c = get(&f.site, &a);
    assert_eq!(c.state, State::Delivered);
    assert_eq!(c.assignee, None, "not assigned to a radiologist");
    let why = c.unrouted.expect("waits unrouted");
    assert!(why.contains("'neurology' is not in the roster"), "{why}");
    let timeline = f.site.log.timeline(&a).unwrap();
    let unrouted = timeline
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Unrouted { .. }))
        .count();
    assert_eq!(unrouted, 1, "said once on the timeline");
    assert_eq!(
        harness_metric(
            &f.metrics.render(),
            "tpg_routing_alerts_total{kind=\"unroutable\"}",
        ),
        Some(1.0)
    );
}
