//! The consultation fold: the whole happy path, and each refusal a user can meet.

use super::*;

fn clinic() -> ClinicId {
    ClinicId::new("jinzhou").unwrap()
}

/// Appends events to one consultation, numbering each side's events, checking each append.
struct Case {
    id: ConsultationId,
    events: Vec<Event>,
    seq: [u64; 2],
    at_ms: i64,
}

impl Case {
    fn new(urgency: Urgency) -> Self {
        let mut case = Self {
            id: ConsultationId::new(1_790_000_000_000, [7; 10]),
            events: Vec::new(),
            seq: [0, 0],
            at_ms: 1_790_000_000_000,
        };
        case.push(
            "dr.wang",
            EventKind::Created {
                patient: Patient {
                    id: "P-1".into(),
                    name: "Test^Patient".into(),
                    sex: "F".into(),
                    birth_date: "1970-01-01".into(),
                },
                clinical_summary: "cough for three weeks".into(),
                question: "pneumonia or tuberculosis?".into(),
                specialty: "radiology".into(),
                urgency,
                number: None,
            },
        )
        .unwrap();
        case
    }

    fn event(&mut self, actor: &str, kind: EventKind) -> Event {
        let side = kind.origin();
        self.seq[side as usize] += 1;
        self.at_ms += 60_000;
        let seen = self.seq[1 - side as usize];
        let seq = self.seq[side as usize];
        Event {
            id: EventId {
                clinic: clinic(),
                side,
                seq,
            },
            seen,
            consultation: self.id.clone(),
            at_ms: self.at_ms,
            actor: actor.into(),
            kind,
            seal: None,
        }
    }

    /// Appends when the fold accepts it; a refused event takes no sequence number.
    fn push(&mut self, actor: &str, kind: EventKind) -> Result<Consultation, Refusal> {
        let side = kind.origin() as usize;
        let e = self.event(actor, kind);
        let mut all = self.events.clone();
        all.push(e);
        match Consultation::from_events(&all) {
            Ok(c) => {
                self.events = all;
                Ok(c)
            }
            Err(r) => {
                self.seq[side] -= 1;
                Err(r)
            }
        }
    }

    fn state(&self) -> Consultation {
        Consultation::from_events(&self.events).unwrap()
    }

    /// Consent, submitted, delivered, assigned to `to`.
    fn assigned_to(urgency: Urgency, to: &str) -> Self {
        let mut c = Self::new(urgency);
        c.push("dr.wang", consent()).unwrap();
        c.push("dr.wang", EventKind::Submitted).unwrap();
        c.push("system", EventKind::Delivered).unwrap();
        c.push("system", assign(to)).unwrap();
        c
    }
}

fn consent() -> EventKind {
    EventKind::ConsentRecorded {
        consent: Consent {
            given_by: "patient".into(),
            method: "written".into(),
            at_ms: 1_790_000_000_000,
        },
    }
}

fn assign(to: &str) -> EventKind {
    EventKind::Assigned {
        specialist: to.into(),
        rule: "radiology-all".into(),
        reason: "fewest open cases".into(),
    }
}

fn accept(by: &str) -> EventKind {
    EventKind::Accepted {
        specialist: by.into(),
    }
}

fn report(by: &str) -> EventKind {
    EventKind::Reported {
        specialist: by.into(),
        report: Report {
            findings: "consolidation in the right lower lobe".into(),
            impression: "community-acquired pneumonia".into(),
            recommendation: "antibiotics, review in two weeks".into(),
            signer_name: "Dr Li".into(),
            signer_qualification: "attending radiologist".into(),
            signed_at_ms: 1_790_000_900_000,
            signed_before_complete: None,
        },
    }
}

#[test]
fn ids_sort_by_creation_time_and_round_trip() {
    let a = ConsultationId::new(1_000, [255; 10]);
    let b = ConsultationId::new(1_001, [0; 10]);
    assert!(a < b);
    assert_eq!(a.as_str().len(), 26);
    assert_eq!(ConsultationId::parse(a.as_str()), Some(a.clone()));
    let json = serde_json::to_string(&a).unwrap();
    assert_eq!(serde_json::from_str::<ConsultationId>(&json).unwrap(), a);
    assert!(ConsultationId::parse("not-an-id").is_none());
    assert!(
        ConsultationId::parse(&"U".repeat(26)).is_none(),
        "U is not Crockford"
    );
}

#[test]
fn a_consultation_goes_from_request_to_acknowledged_report() {
    let mut c = Case::new(Priority::Urgent);
    assert_eq!(c.state().state, State::Draft);
    c.push("dr.wang", consent()).unwrap();
    c.push(
        "dr.wang",
        EventKind::StudiesAttached {
            study_instance_uids: vec!["1.2.3".into()],
            attachments: Vec::new(),
        },
    )
    .unwrap();
    c.push("dr.wang", EventKind::Submitted).unwrap();
    c.push("system", EventKind::Delivered).unwrap();
    c.push("system", assign("li")).unwrap();
    c.push("li", accept("li")).unwrap();
    let asked = c
        .push(
            "li",
            EventKind::QuestionAsked {
                specialist: "li".into(),
                text: "any fever?".into(),
            },
        )
        .unwrap();
    assert_eq!(asked.state, State::AwaitingAnswer);
    let question = asked.open_questions[0];
    c.push(
        "dr.wang",
        EventKind::QuestionAnswered {
            question,
            text: "38.5 °C for five days".into(),
        },
    )
    .unwrap();
    assert_eq!(c.state().state, State::Accepted);
    c.push("li", report("li")).unwrap();
    let done = c.push("dr.wang", EventKind::ReportAcknowledged).unwrap();
    assert_eq!(done.state, State::Acknowledged);
    assert_eq!(done.studies, vec!["1.2.3".to_string()]);
    assert!(done.report.is_some() && done.reported_at_ms > done.accepted_at_ms);
    // The log survives serialisation unchanged (it is what travels and is stored).
    let json = serde_json::to_string(&c.events).unwrap();
    let back: Vec<Event> = serde_json::from_str(&json).unwrap();
    assert_eq!(Consultation::from_events(&back).unwrap(), done);
}

#[test]
fn a_request_without_consent_is_refused_with_a_message_that_says_so() {
    let mut c = Case::new(Priority::Routine);
    let refused = c.push("dr.wang", EventKind::Submitted).unwrap_err();
    assert_eq!(refused, Refusal::NoConsent);
    assert!(refused.to_string().contains("consent is not recorded"));
    c.push("dr.wang", consent()).unwrap();
    assert_eq!(
        c.push("dr.wang", EventKind::Submitted).unwrap().state,
        State::Submitted
    );
}

#[test]
fn each_side_appends_only_its_own_kinds() {
    let c = Case::new(Priority::Routine);
    let mut forged = c.events[0].clone();
    forged.id.side = Side::Gateway;
    assert!(matches!(
        Consultation::from_events([&forged]),
        Err(Refusal::WrongSide { .. })
    ));
}

#[test]
fn only_the_assigned_specialist_accepts_reports_and_asks() {
    let mut c = Case::assigned_to(Priority::Emergency, "li");
    assert!(matches!(
        c.push("zhao", accept("zhao")),
        Err(Refusal::NotAssigned { .. })
    ));
    assert!(
        matches!(c.push("li", report("li")), Err(Refusal::NotNow { .. })),
        "no report before accepting"
    );
    c.push("li", accept("li")).unwrap();
    assert!(matches!(
        c.push("zhao", report("zhao")),
        Err(Refusal::NotAssigned { .. })
    ));
    assert!(matches!(
        c.push(
            "zhao",
            EventKind::QuestionAsked {
                specialist: "zhao".into(),
                text: "?".into()
            }
        ),
        Err(Refusal::NotAssigned { .. })
    ));
}

#[test]
fn a_signed_report_is_immutable_and_corrected_by_addenda() {
    let mut c = Case::assigned_to(Priority::Routine, "li");
    c.push("li", accept("li")).unwrap();
    let mut corrected = c.state().patient;
    corrected.birth_date = "1970-02-01".into();
    let updated = c
        .push(
            "dr.wang",
            EventKind::PatientUpdated {
                patient: corrected.clone(),
                reason: Some("birth date mistyped".into()),
            },
        )
        .unwrap();
    assert_eq!(
        updated.patient, corrected,
        "details corrected before the report"
    );
    let signed = c.push("li", report("li")).unwrap();
    assert!(
        matches!(
            c.push(
                "dr.wang",
                EventKind::PatientUpdated {
                    patient: corrected,
                    reason: Some("again".into())
                }
            ),
            Err(Refusal::NotNow { .. })
        ),
        "a signed report's patient is fixed"
    );
    assert!(matches!(
        c.push("li", report("li")),
        Err(Refusal::NotNow { .. })
    ));
    let amended = c
        .push(
            "li",
            EventKind::Addendum {
                specialist: "li".into(),
                text: "also a small left effusion".into(),
                signed_at_ms: 1_790_001_000_000,
            },
        )
        .unwrap();
    assert_eq!(amended.addenda.len(), 1);
    assert_eq!(
        amended.report, signed.report,
        "the report itself is unchanged"
    );
}

#[test]
fn a_declined_case_returns_to_routing_and_never_to_the_same_specialist() {
    let mut c = Case::assigned_to(Priority::Urgent, "li");
    let declined = c
        .push(
            "li",
            EventKind::Declined {
                specialist: "li".into(),
                reason: "on leave from tomorrow".into(),
            },
        )
        .unwrap();
    assert_eq!(declined.state, State::Delivered);
    assert_eq!(declined.assignee, None);
    assert_eq!(
        c.push("system", assign("li")).unwrap_err(),
        Refusal::DeclinedBefore("li".into())
    );
    assert_eq!(
        c.push("system", assign("zhao")).unwrap().state,
        State::Assigned
    );
}

#[test]
fn escalation_moves_an_unaccepted_case_to_someone_else() {
    let mut c = Case::assigned_to(Priority::Emergency, "li");
    let escalated = c
        .push(
            "system",
            EventKind::Escalated {
                from: "li".into(),
                to: "chen".into(),
                reason: "not accepted within 30 min".into(),
            },
        )
        .unwrap();
    assert_eq!(escalated.assignee.as_deref(), Some("chen"));
    assert_eq!(escalated.state, State::Assigned);
    c.push("chen", accept("chen")).unwrap();
}

#[test]
fn replication_applies_each_event_once_in_order() {
    let mut c = Case::new(Priority::Routine);
    c.push("dr.wang", consent()).unwrap();
    c.push("dr.wang", EventKind::Submitted).unwrap();
    let mut log = Log {
        clinic: clinic(),
        side: Side::Clinic,
        cursor: 0,
    };
    assert_eq!(log.apply(&c.events[0]), Ok(Applied::Appended));
    assert_eq!(log.apply(&c.events[0]), Ok(Applied::Duplicate));
    assert!(matches!(
        log.apply(&c.events[2]),
        Err(ReplicationError::Gap {
            expected: 2,
            got: 3,
            ..
        })
    ));
    assert_eq!(log.apply(&c.events[1]), Ok(Applied::Appended));
    assert_eq!(log.apply(&c.events[2]), Ok(Applied::Appended));
    assert_eq!(log.cursor, 3);
    let mut other = c.events[0].clone();
    other.id.clinic = ClinicId::new("pulandian").unwrap();
    other.id.seq = 4;
    assert!(matches!(
        log.apply(&other),
        Err(ReplicationError::OtherClinic { .. })
    ));
    let mut gateway_event = c.events[0].clone();
    gateway_event.id.side = Side::Gateway;
    assert!(matches!(
        log.apply(&gateway_event),
        Err(ReplicationError::WrongDirection { .. })
    ));
}

#[test]
fn both_sites_fold_concurrent_events_the_same_way() {
    // The clinic cancels while, unaware, the specialist accepts: both logs hold both events.
    let mut c = Case::assigned_to(Priority::Urgent, "li");
    let cancel = c.event(
        "dr.wang",
        EventKind::Cancelled {
            reason: "patient transferred".into(),
        },
    );
    let accept_event = c.event("li", accept("li"));
    // Each was appended before its author saw the other.
    assert_eq!(cancel.seen, 2);
    let mut accept_event = accept_event;
    accept_event.seen = 3;
    let split = |events: &[Event], side| -> Vec<Event> {
        events
            .iter()
            .filter(|e| e.id.side == side)
            .cloned()
            .collect()
    };
    let mut all = c.events.clone();
    all.push(cancel);
    all.push(accept_event);
    let (clinic_events, gateway_events) = (split(&all, Side::Clinic), split(&all, Side::Gateway));
    let order = canonical_order(&clinic_events, &gateway_events);
    assert_eq!(order.len(), all.len());
    let folded = Folded::fold(order.iter().copied()).unwrap();
    assert_eq!(folded.consultation.state, State::Cancelled);
    assert_eq!(
        folded.superseded.len(),
        0,
        "the crossing acceptance applies, then the cancel"
    );
    // Causality: the gateway's delivered event (it saw the clinic's 3 events) comes after
    // the clinic's submitted event.
    let pos = |kind: &str| order.iter().position(|e| e.kind.name() == kind).unwrap();
    assert!(pos("submitted") < pos("delivered"));
    assert!(pos("delivered") < pos("assigned"));
    // The same rule over one consultation's events of a busier log (other consultations'
    // events took sequence numbers in between) keeps cause before effect.
    let renumber = |events: &[Event], step: u64| -> Vec<Event> {
        events
            .iter()
            .cloned()
            .map(|mut e| {
                e.id.seq *= step;
                e.seen *= step;
                e
            })
            .collect()
    };
    let (sparse_clinic, sparse_gateway) =
        (renumber(&clinic_events, 3), renumber(&gateway_events, 3));
    let sparse = canonical_order(&sparse_clinic, &sparse_gateway);
    let names = |o: &[&Event]| o.iter().map(|e| e.kind.name()).collect::<Vec<_>>();
    assert_eq!(names(&sparse), names(&order));
}

/// Splits a consultation's events by side and folds them in canonical order.
fn fold_both(events: &[Event]) -> Folded {
    let split = |side| -> Vec<Event> {
        events
            .iter()
            .filter(|e| e.id.side == side)
            .cloned()
            .collect()
    };
    let (clinic_events, gateway_events) = (split(Side::Clinic), split(Side::Gateway));
    Folded::fold(canonical_order(&clinic_events, &gateway_events)).unwrap()
}

#[test]
fn a_cancel_that_crosses_a_signed_report_never_hides_it() {
    // The clinic cancels offline right after sending; meanwhile the hospital delivers,
    // assigns, and the specialist accepts and signs. The cancel saw none of it.
    let mut c = Case::new(Priority::Urgent);
    c.push("dr.wang", consent()).unwrap();
    c.push("dr.wang", EventKind::Submitted).unwrap();
    let mut cancel = c.event(
        "dr.wang",
        EventKind::Cancelled {
            reason: "patient went home".into(),
        },
    );
    cancel.seen = 0;
    let mut all = c.events.clone();
    for (actor, kind) in [
        ("system", EventKind::Delivered),
        ("system", assign("li")),
        ("li", accept("li")),
        ("li", report("li")),
    ] {
        let mut e = c.event(actor, kind);
        e.seen = 3;
        all.push(e);
    }
    all.push(cancel.clone());
    let folded = fold_both(&all);
    assert_eq!(folded.consultation.state, State::Reported);
    assert!(folded.consultation.report.is_some(), "the report is shown");
    assert_eq!(
        folded.superseded,
        vec![(cancel.id.clone(), Refusal::ReportStands)],
        "only the cancel is set aside, and it says why"
    );
    assert!(Refusal::ReportStands
        .to_string()
        .contains("signed report stands"));
    // A cancel that crosses only an acceptance still cancels, after it.
    let mut c = Case::assigned_to(Priority::Urgent, "li");
    let cancel = c.event("dr.wang", EventKind::Cancelled { reason: "x".into() });
    let mut accepted = c.event("li", accept("li"));
    accepted.seen = cancel.seen;
    let mut all = c.events.clone();
    all.extend([cancel, accepted]);
    let folded = fold_both(&all);
    assert_eq!(folded.consultation.state, State::Cancelled);
    assert_eq!(folded.superseded, vec![]);
}

#[test]
fn a_replicated_event_of_the_wrong_origin_is_refused() {
    // A clinic cannot author a gateway's kind of event (an assignment grants access).
    let c = Case::assigned_to(Priority::Routine, "li");
    let mut forged = c
        .events
        .iter()
        .find(|e| e.kind.name() == "assigned")
        .unwrap()
        .clone();
    forged.id.side = Side::Clinic;
    forged.id.seq = 4;
    let mut log = Log {
        clinic: clinic(),
        side: Side::Clinic,
        cursor: 3,
    };
    let refused = log.apply(&forged).unwrap_err();
    assert!(matches!(refused, ReplicationError::WrongOrigin { .. }));
    assert!(refused.to_string().contains("assigned"), "{refused}");
    assert_eq!(log.cursor, 3);
}

/// Before acceptance the clinic corrects the patient freely; once a specialist has accepted,
/// a change of identity needs its reason and is kept for the specialist to see.
#[test]
fn a_change_of_identity_after_acceptance_is_an_explicit_correction() {
    let mut c = Case::assigned_to(Priority::Urgent, "li");
    let mut other = c.state().patient;
    other.name = "Other^Name".into();
    let before = c
        .push(
            "dr.wang",
            EventKind::PatientUpdated {
                patient: other.clone(),
                reason: None,
            },
        )
        .unwrap();
    assert!(before.corrections.is_empty(), "not accepted yet: an update");
    c.push("li", accept("li")).unwrap();
    let mut another = other.clone();
    another.id = "P-2".into();
    let unexplained = EventKind::PatientUpdated {
        patient: another.clone(),
        reason: None,
    };
    assert_eq!(
        c.state().admits("dr.wang", &unexplained),
        Err(Refusal::CorrectionNeedsReason),
        "a new correction needs its reason"
    );
    // A log written before the rule still folds as it did.
    assert!(c.state().check("dr.wang", &unexplained).is_ok());
    let corrected = c
        .push(
            "dr.wang",
            EventKind::PatientUpdated {
                patient: another.clone(),
                reason: Some("wrong patient's record opened".into()),
            },
        )
        .unwrap();
    assert_eq!(corrected.patient, another);
    assert_eq!(corrected.corrections.len(), 1);
    assert_eq!(corrected.corrections[0].before, other);
    assert_eq!(
        corrected.corrections[0].reason,
        "wrong patient's record opened"
    );
    // The same details again change nothing and need no reason.
    c.push(
        "dr.wang",
        EventKind::PatientUpdated {
            patient: another,
            reason: None,
        },
    )
    .unwrap();
}

/// A created event written before case numbers existed reads as it was written, folds with
/// no number, and encodes to the same bytes (so nothing computed over an event's encoding,
/// such as the gateway's seal, changes for the events already in a log).
#[test]
fn an_event_from_before_case_numbers_reads_folds_and_encodes_as_before() {
    let case = Case::new(Urgency::Routine);
    let old = serde_json::to_string(&case.events[0]).unwrap();
    assert!(!old.contains("number"), "{old}");
    let read: Event = serde_json::from_str(&old).unwrap();
    assert_eq!(serde_json::to_string(&read).unwrap(), old);
    assert_eq!(case.state().number, None);
    // A projection stored before the fold had numbers still reads.
    let mut projection = serde_json::to_value(case.state()).unwrap();
    let fields = projection.as_object_mut().unwrap();
    fields.remove("number");
    fields.remove("answered_at_ms");
    let read: Consultation = serde_json::from_value(projection).unwrap();
    assert_eq!(read, case.state());
}

#[test]
fn a_numbered_created_event_carries_its_number_into_the_fold() {
    let mut case = Case::new(Urgency::Routine);
    if let EventKind::Created { number, .. } = &mut case.events[0].kind {
        *number = Some("JZ-2026-0042".into());
    }
    let text = serde_json::to_string(&case.events[0]).unwrap();
    assert!(text.contains(r#""number":"JZ-2026-0042""#), "{text}");
    let read: Event = serde_json::from_str(&text).unwrap();
    assert_eq!(read, case.events[0]);
    assert_eq!(case.state().number.as_deref(), Some("JZ-2026-0042"));
}

#[test]
fn an_answer_is_received_until_the_specialist_acts_again() {
    let mut case = Case::assigned_to(Urgency::Urgent, "li");
    assert!(case.state().is_new_for("li"));
    assert!(!case.state().is_new_for("sun"));
    case.push("li", accept("li")).unwrap();
    assert!(!case.state().is_new_for("li"));
    let ask = |text: &str| EventKind::QuestionAsked {
        specialist: "li".into(),
        text: text.into(),
    };
    let c = case.push("li", ask("smoker?")).unwrap();
    assert!(!c.answer_received());
    let question = c.open_questions[0];
    let c = case
        .push(
            "dr.wang",
            EventKind::QuestionAnswered {
                question,
                text: "yes".into(),
            },
        )
        .unwrap();
    assert_eq!(c.state, State::Accepted);
    assert!(c.answer_received());
    let c = case.push("li", report("li")).unwrap();
    assert!(!c.answer_received(), "reporting is acting on the answer");
}

#[test]
fn the_time_to_accept_runs_from_delivery_then_from_assignment() {
    let mut case = Case::new(Urgency::Emergency);
    case.push("dr.wang", consent()).unwrap();
    let c = case.push("dr.wang", EventKind::Submitted).unwrap();
    let sla = default_sla(Urgency::Emergency);
    assert_eq!(c.accept_by_ms(sla), None, "not at the hospital yet");
    let c = case.push("system", EventKind::Delivered).unwrap();
    assert_eq!(c.accept_by_ms(sla), Some(case.at_ms + 30 * 60_000));
    let c = case.push("system", assign("li")).unwrap();
    assert_eq!(c.accept_by_ms(sla), Some(case.at_ms + 30 * 60_000));
    let c = case.push("li", accept("li")).unwrap();
    assert_eq!(c.accept_by_ms(sla), None);
}
