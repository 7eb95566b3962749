//! The event store's conformance suite, run by every adapter's tests (sled and memory here;
//! the database adapters of later work run it against their real servers).

// A test suite compiled into the library so that every adapter's crate can run it: a failed
// step panics, as in any test.
#![allow(clippy::unwrap_used)]

use proto::consult::{
    Consent, Consultation, ConsultationId, Event, EventId, EventKind, Folded, Patient, Side,
    Urgency,
};
use proto::ClinicId;

use super::EventStore;

/// A fresh store, and a function that opens the same store again.
pub type Subject = (Box<dyn EventStore>, Box<dyn Fn() -> Box<dyn EventStore>>);

/// Runs every case, each on a store from `fresh`; panics with the case's name on a failure.
pub fn run(mut fresh: impl FnMut() -> Subject) {
    let cases: [crate::conformance::Case<Subject>; 7] = [
        ("events are kept by clinic, side and sequence", sequences),
        ("a consultation's events and owner", by_consultation),
        (
            "the projection is the last one stored with an event",
            projections,
        ),
        ("marks are set and cleared durably", marks),
        ("two clinics' numbers never collide", clinics_apart),
        ("closed consultations leave the open projections", open_ones),
        (
            "a patient's consultations follow a change of patient id",
            patients,
        ),
    ];
    crate::conformance::run("event store", &cases, &mut fresh);
}

/// The clinic's first events of consultation number `n`: created, consent, submitted
/// (sequence numbers from `3 n - 2`).
pub fn a_case(clinic: &ClinicId, n: u64) -> Vec<Event> {
    let id = ConsultationId::new(1_790_000_000_000 + n, [n as u8; 10]);
    let kinds = [
        EventKind::Created {
            patient: Patient {
                id: format!("P-{n}"),
                name: "Test^Patient".into(),
                sex: "F".into(),
                birth_date: String::new(),
            },
            clinical_summary: "cough".into(),
            question: "pneumonia?".into(),
            specialty: "radiology".into(),
            urgency: Urgency::Routine,
            number: None,
        },
        EventKind::ConsentRecorded {
            consent: Consent {
                given_by: "patient".into(),
                method: "verbal".into(),
                at_ms: 1,
            },
        },
        EventKind::Submitted,
    ];
    kinds
        .into_iter()
        .enumerate()
        .map(|(i, kind)| Event {
            id: EventId {
                clinic: clinic.clone(),
                side: Side::Clinic,
                seq: 3 * (n - 1) + i as u64 + 1,
            },
            seen: 0,
            consultation: id.clone(),
            at_ms: 1_790_000_000_000 + i as i64,
            actor: "dr.wang".into(),
            kind,
            seal: None,
        })
        .collect()
}

/// Stores `events` in order, each with the projection of the events so far.
fn store_all(store: &dyn EventStore, events: &[Event]) -> Consultation {
    let mut so_far = Vec::new();
    let mut state = None;
    for e in events {
        so_far.push(e.clone());
        let s = Folded::fold(&so_far).unwrap().consultation;
        store.store(e, Some(&s)).unwrap();
        state = Some(s);
    }
    state.unwrap()
}

fn clinic(name: &str) -> ClinicId {
    ClinicId::new(name).unwrap()
}

fn sequences((store, reopen): Subject) {
    let jz = clinic("jinzhou");
    assert_eq!(store.cursor(&jz, Side::Clinic).unwrap(), 0);
    let first = a_case(&jz, 1);
    let second = a_case(&jz, 2);
    store_all(&*store, &first);
    store_all(&*store, &second);
    drop(store);
    let store = reopen();
    assert_eq!(store.cursor(&jz, Side::Clinic).unwrap(), 6);
    assert_eq!(store.cursor(&jz, Side::Gateway).unwrap(), 0);
    let after: Vec<u64> = store
        .events_after(&jz, Side::Clinic, 2, 3)
        .unwrap()
        .iter()
        .map(|e| e.id.seq)
        .collect();
    assert_eq!(after, [3, 4, 5]);
    assert_eq!(
        store.events_after(&jz, Side::Clinic, 0, 100).unwrap()[0],
        first[0]
    );
    assert!(store
        .events_after(&jz, Side::Clinic, u64::MAX, 10)
        .unwrap()
        .is_empty());
    assert!(store
        .events_after(&jz, Side::Gateway, 0, 10)
        .unwrap()
        .is_empty());
}

fn by_consultation((store, _): Subject) {
    let jz = clinic("jinzhou");
    let mut events = a_case(&jz, 1);
    let id = events[0].consultation.clone();
    // The gateway's answer, on its own side.
    events.push(Event {
        id: EventId {
            clinic: jz.clone(),
            side: Side::Gateway,
            seq: 1,
        },
        seen: 3,
        consultation: id.clone(),
        at_ms: 1_790_000_000_010,
        actor: "system".into(),
        kind: EventKind::Delivered,
        seal: None,
    });
    store_all(&*store, &events);
    assert_eq!(store.owner(&id).unwrap(), Some(jz.clone()));
    let (c, g) = store.events_of(&id).unwrap();
    assert_eq!(c, events[..3]);
    assert_eq!(g, events[3..]);
    let unknown = ConsultationId::new(1, [0; 10]);
    assert_eq!(store.owner(&unknown).unwrap(), None);
    assert_eq!(store.events_of(&unknown).unwrap(), (Vec::new(), Vec::new()));
    assert_eq!(store.clinics().unwrap(), vec![jz]);
}

fn projections((store, reopen): Subject) {
    let (jz, pl) = (clinic("jinzhou"), clinic("pulandian"));
    let b = store_all(&*store, &a_case(&pl, 1));
    let a1 = store_all(&*store, &a_case(&jz, 1));
    let a2 = store_all(&*store, &a_case(&jz, 2));
    drop(store);
    let store = reopen();
    assert_eq!(
        store.projections(None).unwrap(),
        vec![a1.clone(), a2.clone(), b.clone()]
    );
    assert_eq!(store.projections(Some(&jz)).unwrap(), vec![a1.clone(), a2]);
    assert_eq!(store.projections(Some(&pl)).unwrap(), vec![b]);
    assert_eq!(store.projection(&a1.id).unwrap(), Some(a1.clone()));
    assert_eq!(a1.state, proto::consult::State::Submitted);
    assert_eq!(
        store.projection(&ConsultationId::new(1, [0; 10])).unwrap(),
        None
    );
}

fn marks((store, reopen): Subject) {
    assert!(!store.has_mark(b"restored").unwrap());
    store.set_mark(b"restored").unwrap();
    store.set_mark(b"events\0jinzhou").unwrap();
    drop(store);
    let store = reopen();
    assert!(store.has_mark(b"restored").unwrap());
    assert!(store.has_mark(b"events\0jinzhou").unwrap());
    store.clear_marks().unwrap();
    drop(store);
    let store = reopen();
    assert!(!store.has_mark(b"restored").unwrap());
    assert!(!store.has_mark(b"events\0jinzhou").unwrap());
}

fn clinics_apart((store, _): Subject) {
    let (jz, pl) = (clinic("jinzhou"), clinic("pulandian"));
    store_all(&*store, &a_case(&jz, 1));
    store_all(&*store, &a_case(&pl, 5));
    assert_eq!(store.cursor(&jz, Side::Clinic).unwrap(), 3);
    assert_eq!(store.cursor(&pl, Side::Clinic).unwrap(), 15);
    assert!(store
        .events_after(&jz, Side::Clinic, 0, 100)
        .unwrap()
        .iter()
        .all(|e| e.id.clinic == jz));
    assert_eq!(store.clinics().unwrap(), vec![jz, pl]);
}

/// The gateway's events that close `first`'s consultation: delivered, assigned, accepted,
/// reported.
fn closing(first: &Event) -> Vec<Event> {
    let kinds = [
        EventKind::Delivered,
        EventKind::Assigned {
            specialist: "li".into(),
            rule: "r".into(),
            reason: "on duty".into(),
        },
        EventKind::Accepted {
            specialist: "li".into(),
        },
        EventKind::Reported {
            specialist: "li".into(),
            report: proto::consult::Report {
                findings: "clear".into(),
                impression: "normal".into(),
                recommendation: "none".into(),
                signer_name: "Li".into(),
                signer_qualification: "radiologist".into(),
                signed_at_ms: 5,
                signed_before_complete: None,
            },
        },
    ];
    kinds
        .into_iter()
        .enumerate()
        .map(|(i, kind)| Event {
            id: EventId {
                clinic: first.id.clinic.clone(),
                side: Side::Gateway,
                seq: i as u64 + 1,
            },
            seen: 3,
            consultation: first.consultation.clone(),
            at_ms: first.at_ms + 10 + i as i64,
            actor: if i < 2 { "system".into() } else { "li".into() },
            kind,
            seal: None,
        })
        .collect()
}

fn open_ones((store, reopen): Subject) {
    let jz = clinic("jinzhou");
    let (mut first, second) = (a_case(&jz, 1), a_case(&jz, 2));
    store_all(&*store, &second);
    first.extend(closing(&first[0]));
    let closed = store_all(&*store, &first);
    assert_eq!(closed.state, proto::consult::State::Reported);
    drop(store);
    let store = reopen();
    let open: Vec<ConsultationId> = store
        .open_projections(None)
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(open, vec![second[0].consultation.clone()]);
    assert_eq!(store.open_projections(Some(&jz)).unwrap().len(), 1);
    assert!(store
        .open_projections(Some(&clinic("pulandian")))
        .unwrap()
        .is_empty());
    assert_eq!(
        store.projections(None).unwrap().len(),
        2,
        "closed ones stay listed"
    );
}

fn patients((store, _): Subject) {
    let jz = clinic("jinzhou");
    let mut events = a_case(&jz, 1);
    store_all(&*store, &events);
    store_all(&*store, &a_case(&jz, 2));
    let id = events[0].consultation.clone();
    assert_eq!(store.patient_projections(&jz, "P-1").unwrap().len(), 1);
    events.push(Event {
        id: EventId {
            clinic: jz.clone(),
            side: Side::Clinic,
            seq: 7,
        },
        seen: 0,
        consultation: id.clone(),
        at_ms: 1_790_000_000_100,
        actor: "dr.wang".into(),
        kind: EventKind::PatientUpdated {
            patient: Patient {
                id: "P-99".into(),
                name: "Test^Patient".into(),
                sex: "F".into(),
                birth_date: String::new(),
            },
            reason: None,
        },
        seal: None,
    });
    store_all(&*store, &events);
    assert!(store.patient_projections(&jz, "P-1").unwrap().is_empty());
    let now: Vec<ConsultationId> = store
        .patient_projections(&jz, "P-99")
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(now, vec![id]);
    assert_eq!(store.patient_projections(&jz, "P-2").unwrap().len(), 1);
    assert!(
        store.patient_projections(&jz, "P").unwrap().is_empty(),
        "no prefix match"
    );
    assert!(store
        .patient_projections(&clinic("pulandian"), "P-2")
        .unwrap()
        .is_empty());
}
