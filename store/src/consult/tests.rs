//! Two sites' logs replicating into each other: identical timelines, duplicates ignored,
//! refusals surfaced, clinics kept apart.

use proto::consult::{Consent, Patient, Report, State, Urgency};

use super::*;

fn clinic(id: &str) -> ClinicId {
    ClinicId::new(id).unwrap()
}

fn open() -> (tempfile::TempDir, ConsultLog) {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::open(dir.path().join("index")).unwrap();
    (dir, ConsultLog::open(&db).unwrap())
}

fn created(question: &str) -> EventKind {
    EventKind::Created {
        patient: Patient {
            id: "P-7".into(),
            name: "Test^Patient".into(),
            sex: "M".into(),
            birth_date: String::new(),
        },
        clinical_summary: "chest pain".into(),
        question: question.into(),
        specialty: "cardiology".into(),
        urgency: Urgency::Emergency,
        number: None,
    }
}

/// Sends every event of `from`'s side not yet at `to`.
fn replicate(from: &ConsultLog, from_side: Side, to: &ConsultLog, to_side: Side, c: &ClinicId) {
    let cursor = to.cursor(c, from_side).unwrap();
    for e in from.events_after(c, from_side, cursor, 1000).unwrap() {
        to.apply_replicated(c, to_side, &e).unwrap();
    }
}

#[test]
fn two_sites_replicate_to_identical_timelines_and_ignore_duplicates() {
    let (_a, agent) = open();
    let (_g, gateway) = open();
    let jz = clinic("jinzhou");
    let id = ConsultationId::new(1_790_000_000_000, [1; 10]);
    agent
        .append(&jz, Side::Clinic, &id, "dr.wang", 1, created("STEMI?"))
        .unwrap();
    let refused = agent
        .append(&jz, Side::Clinic, &id, "dr.wang", 2, EventKind::Submitted)
        .unwrap_err();
    assert!(
        refused.to_string().contains("consent is not recorded"),
        "{refused}"
    );
    agent
        .append(
            &jz,
            Side::Clinic,
            &id,
            "dr.wang",
            3,
            EventKind::ConsentRecorded {
                consent: Consent {
                    given_by: "patient".into(),
                    method: "verbal".into(),
                    at_ms: 3,
                },
            },
        )
        .unwrap();
    agent
        .append(&jz, Side::Clinic, &id, "dr.wang", 4, EventKind::Submitted)
        .unwrap();
    replicate(&agent, Side::Clinic, &gateway, Side::Gateway, &jz);
    // Sending the same events again changes nothing.
    for e in agent.events_after(&jz, Side::Clinic, 0, 100).unwrap() {
        assert_eq!(
            gateway.apply_replicated(&jz, Side::Gateway, &e).unwrap(),
            Applied::Duplicate
        );
    }
    for (kind, actor) in [
        (EventKind::Delivered, "system"),
        (
            EventKind::Assigned {
                specialist: "sun".into(),
                rule: "cardiology".into(),
                reason: "only one on duty".into(),
            },
            "system",
        ),
        (
            EventKind::Accepted {
                specialist: "sun".into(),
            },
            "sun",
        ),
        (
            EventKind::Reported {
                specialist: "sun".into(),
                report: Report {
                    findings: "ST elevation V1–V4".into(),
                    impression: "anterior STEMI".into(),
                    recommendation: "transfer for PCI now".into(),
                    signer_name: "Sun Lei".into(),
                    signer_qualification: "cardiologist".into(),
                    signed_at_ms: 9,
                    signed_before_complete: None,
                },
            },
            "sun",
        ),
    ] {
        gateway
            .append(&jz, Side::Gateway, &id, actor, 5, kind)
            .unwrap();
    }
    replicate(&gateway, Side::Gateway, &agent, Side::Clinic, &jz);
    agent
        .append(
            &jz,
            Side::Clinic,
            &id,
            "dr.wang",
            10,
            EventKind::ReportAcknowledged,
        )
        .unwrap();
    replicate(&agent, Side::Clinic, &gateway, Side::Gateway, &jz);
    let (at_clinic, at_gateway) = (agent.timeline(&id).unwrap(), gateway.timeline(&id).unwrap());
    assert_eq!(at_clinic, at_gateway);
    assert_eq!(at_clinic.len(), 8);
    let folded = gateway.get(&id).unwrap().unwrap();
    assert_eq!(folded.consultation.state, State::Acknowledged);
    assert!(folded.superseded.is_empty());
    assert_eq!(agent.cursor(&jz, Side::Gateway).unwrap(), 4);
    assert_eq!(gateway.cursor(&jz, Side::Clinic).unwrap(), 4);
}

#[test]
fn a_gap_is_refused_and_clinics_never_see_each_other() {
    let (_a, agent) = open();
    let (_g, gateway) = open();
    let (jz, pl) = (clinic("jinzhou"), clinic("pulandian"));
    let a = ConsultationId::new(1, [1; 10]);
    let b = ConsultationId::new(2, [2; 10]);
    agent
        .append(&jz, Side::Clinic, &a, "dr.wang", 1, created("a?"))
        .unwrap();
    agent
        .append(&pl, Side::Clinic, &b, "dr.liu", 1, created("b?"))
        .unwrap();
    let mut events = agent.events_after(&jz, Side::Clinic, 0, 10).unwrap();
    let mut skipped = events.remove(0);
    skipped.id.seq = 2;
    assert!(matches!(
        gateway.apply_replicated(&jz, Side::Gateway, &skipped),
        Err(ConsultError::Replication(ReplicationError::Gap { .. }))
    ));
    // An event of Pulandian arriving on Jinzhou's link is refused, whatever it claims.
    let stray = agent
        .events_after(&pl, Side::Clinic, 0, 1)
        .unwrap()
        .remove(0);
    assert!(matches!(
        gateway.apply_replicated(&jz, Side::Gateway, &stray),
        Err(ConsultError::Replication(
            ReplicationError::OtherClinic { .. }
        ))
    ));
    replicate(&agent, Side::Clinic, &gateway, Side::Gateway, &jz);
    replicate(&agent, Side::Clinic, &gateway, Side::Gateway, &pl);
    let ids = |c: &ClinicId| -> Vec<ConsultationId> {
        gateway.list(c).unwrap().into_iter().map(|c| c.id).collect()
    };
    assert_eq!(ids(&jz), vec![a.clone()]);
    assert_eq!(ids(&pl), vec![b.clone()]);
    // An event too large for one frame is refused with the fix.
    let long = agent
        .append(
            &jz,
            Side::Clinic,
            &ConsultationId::new(3, [3; 10]),
            "dr.wang",
            1,
            created(&"?".repeat(70_000)),
        )
        .unwrap_err();
    assert!(long.to_string().contains("attach the long part"), "{long}");
    // Another clinic cannot append to it either: to them it does not exist.
    assert!(matches!(
        gateway.append(&pl, Side::Gateway, &a, "system", 3, EventKind::Delivered),
        Err(ConsultError::NotFound(_))
    ));
}

#[test]
fn all_lists_every_clinic_by_clinic_then_creation() {
    let (_d, log) = open();
    // Created out of clinic order, and a later id first.
    let cases = [
        ("zhuanghe", 3u64),
        ("jinzhou", 2),
        ("jinzhou", 1),
        ("pulandian", 4),
    ];
    for (c, t) in cases {
        let id = ConsultationId::new(1_790_000_000_000 + t, [t as u8; 10]);
        log.append(&clinic(c), Side::Clinic, &id, "dr", 1, created("?"))
            .unwrap();
    }
    let clinics: Vec<String> = log
        .all()
        .unwrap()
        .into_iter()
        .map(|c| c.clinic.to_string())
        .collect();
    assert_eq!(clinics, ["jinzhou", "jinzhou", "pulandian", "zhuanghe"]);
    // The same as asking clinic by clinic.
    let by_clinic: Vec<_> = log
        .clinics()
        .unwrap()
        .iter()
        .flat_map(|c| log.list(c).unwrap())
        .map(|c| c.id)
        .collect();
    let all: Vec<_> = log.all().unwrap().into_iter().map(|c| c.id).collect();
    assert_eq!(all, by_clinic);
}

fn consent_and_submit(agent: &ConsultLog, jz: &ClinicId, id: &ConsultationId) {
    agent
        .append(jz, Side::Clinic, id, "dr.wang", 1, created("STEMI?"))
        .unwrap();
    agent
        .append(
            jz,
            Side::Clinic,
            id,
            "dr.wang",
            2,
            EventKind::ConsentRecorded {
                consent: Consent {
                    given_by: "patient".into(),
                    method: "verbal".into(),
                    at_ms: 2,
                },
            },
        )
        .unwrap();
    agent
        .append(jz, Side::Clinic, id, "dr.wang", 3, EventKind::Submitted)
        .unwrap();
}

/// The clinic cancels while its link is down; meanwhile the cardiologist signs. Once the
/// link is back both sites show the report, and the cancel set aside with why.
#[test]
fn a_cancel_made_offline_while_the_specialist_signs_leaves_the_report_at_both_sites() {
    let (_a, agent) = open();
    let (_g, gateway) = open();
    let jz = clinic("jinzhou");
    let id = ConsultationId::new(1_790_000_000_000, [2; 10]);
    consent_and_submit(&agent, &jz, &id);
    replicate(&agent, Side::Clinic, &gateway, Side::Gateway, &jz);
    // The link drops: each side goes on alone.
    agent
        .append(
            &jz,
            Side::Clinic,
            &id,
            "dr.wang",
            4,
            EventKind::Cancelled {
                reason: "patient left".into(),
            },
        )
        .unwrap();
    for (kind, actor) in [
        (EventKind::Delivered, "system"),
        (
            EventKind::Assigned {
                specialist: "sun".into(),
                rule: "cardiology".into(),
                reason: "on duty".into(),
            },
            "system",
        ),
        (
            EventKind::Accepted {
                specialist: "sun".into(),
            },
            "sun",
        ),
        (
            EventKind::Reported {
                specialist: "sun".into(),
                report: Report {
                    findings: "ST elevation".into(),
                    impression: "anterior STEMI".into(),
                    recommendation: "transfer now".into(),
                    signer_name: "Sun Lei".into(),
                    signer_qualification: "cardiologist".into(),
                    signed_at_ms: 9,
                    signed_before_complete: None,
                },
            },
            "sun",
        ),
    ] {
        gateway
            .append(&jz, Side::Gateway, &id, actor, 5, kind)
            .unwrap();
    }
    replicate(&agent, Side::Clinic, &gateway, Side::Gateway, &jz);
    replicate(&gateway, Side::Gateway, &agent, Side::Clinic, &jz);
    assert_eq!(agent.timeline(&id).unwrap(), gateway.timeline(&id).unwrap());
    for site in [&agent, &gateway] {
        let folded = site.get(&id).unwrap().unwrap();
        // The projection the worklists read is the fold, the set-aside cancel included.
        assert_eq!(
            site.state(&id).unwrap().as_ref(),
            Some(&folded.consultation)
        );
        assert_eq!(site.list(&jz).unwrap(), vec![folded.consultation.clone()]);
        assert_eq!(folded.consultation.state, State::Reported);
        assert_eq!(
            folded.consultation.report.unwrap().impression,
            "anterior STEMI"
        );
        let set_aside: Vec<_> = folded
            .superseded
            .iter()
            .map(|(e, r)| (e.side, e.seq, r.clone()))
            .collect();
        assert_eq!(set_aside, vec![(Side::Clinic, 4, Refusal::ReportStands)]);
    }
    // And the clinic cannot cancel it now.
    let refused = agent
        .append(
            &jz,
            Side::Clinic,
            &id,
            "dr.wang",
            6,
            EventKind::Cancelled {
                reason: "again".into(),
            },
        )
        .unwrap_err();
    assert!(
        refused.to_string().contains("signed report stands"),
        "{refused}"
    );
}

/// A clinic that sends a gateway's kind of event (an assignment, which decides who sees a
/// case) has it refused, not stored.
#[test]
fn a_replicated_event_a_clinic_may_not_author_is_refused_and_not_stored() {
    let (_a, agent) = open();
    let (_g, gateway) = open();
    let jz = clinic("jinzhou");
    let id = ConsultationId::new(1_790_000_000_000, [3; 10]);
    consent_and_submit(&agent, &jz, &id);
    replicate(&agent, Side::Clinic, &gateway, Side::Gateway, &jz);
    let mut forged = agent.events_after(&jz, Side::Clinic, 2, 1).unwrap()[0].clone();
    forged.id.seq = 4;
    forged.kind = EventKind::Assigned {
        specialist: "sun".into(),
        rule: "x".into(),
        reason: "x".into(),
    };
    let refused = gateway
        .apply_replicated(&jz, Side::Gateway, &forged)
        .unwrap_err();
    assert!(refused.to_string().contains("assigned"), "{refused}");
    assert_eq!(gateway.cursor(&jz, Side::Clinic).unwrap(), 3);
    assert_eq!(gateway.timeline(&id).unwrap().len(), 3);
}

/// A restored gateway appends nothing for a clinic until it is reconciled, and takes back
/// only its own sealed events, in sequence.
#[test]
fn a_restored_gateway_takes_back_only_its_own_sealed_events_and_waits_until_then() {
    let key = [7u8; 32];
    let (_a, agent) = open();
    let (_g, before) = open();
    let before = before.sealed(&key);
    let jz = clinic("jinzhou");
    let id = ConsultationId::new(1_790_000_000_000, [4; 10]);
    consent_and_submit(&agent, &jz, &id);
    replicate(&agent, Side::Clinic, &before, Side::Gateway, &jz);
    before
        .append(&jz, Side::Gateway, &id, "system", 4, EventKind::Delivered)
        .unwrap();
    replicate(&before, Side::Gateway, &agent, Side::Clinic, &jz);
    let returned = agent.events_after(&jz, Side::Gateway, 0, 10).unwrap();
    assert_eq!(returned.len(), 1);
    assert!(returned[0].seal.is_some(), "the gateway seals its events");

    // The backup held the clinic's events but not the gateway's `delivered`.
    let (_r, restored) = open();
    let restored = restored.sealed(&key);
    replicate(&agent, Side::Clinic, &restored, Side::Gateway, &jz);
    restored.mark_restored().unwrap();
    let assign = || EventKind::Assigned {
        specialist: "sun".into(),
        rule: "x".into(),
        reason: "x".into(),
    };
    let waiting = restored
        .append(&jz, Side::Gateway, &id, "system", 5, EventKind::Delivered)
        .unwrap_err();
    assert!(
        matches!(waiting, ConsultError::AwaitingClinic(_)),
        "{waiting}"
    );
    assert!(waiting.to_string().contains("has not connected since"));

    // A forged or foreign-sealed event is refused; the genuine one is taken back.
    let mut forged = returned[0].clone();
    forged.actor = "someone else".into();
    let (_o, other) = open();
    let other = other.sealed(&[9u8; 32]);
    for bad in [forged, {
        let mut e = returned[0].clone();
        e.seal = None;
        e
    }] {
        let refused = restored
            .apply_returned(&jz, Side::Gateway, &bad)
            .unwrap_err();
        assert!(
            matches!(refused, ConsultError::Unsealed { seq: 1 }),
            "{refused}"
        );
    }
    assert!(other
        .apply_returned(&jz, Side::Gateway, &returned[0])
        .is_err());
    assert_eq!(
        restored
            .apply_returned(&jz, Side::Gateway, &returned[0])
            .unwrap(),
        Applied::Appended
    );
    restored.events_reconciled(&jz).unwrap();
    assert!(!restored.awaiting(&jz).unwrap().events);
    assert!(
        restored.awaiting(&jz).unwrap().objects,
        "objects still awaited"
    );
    let next = restored
        .append(&jz, Side::Gateway, &id, "system", 6, assign())
        .unwrap();
    assert_eq!(next.id.seq, 2, "numbered after the events taken back");
    assert_eq!(
        agent.timeline(&id).unwrap().len() + 1,
        restored.timeline(&id).unwrap().len()
    );
    // A gateway never restored awaits nothing.
    assert_eq!(before.awaiting(&jz).unwrap(), Awaiting::default());
}

/// Case numbers are given under the append lock: doctors creating cases at the same moment
/// get distinct numbers, one after another, counted per year, and the number travels with
/// the created event to the other site.
#[test]
fn concurrent_creations_get_distinct_consecutive_case_numbers_per_year() {
    let (_a, agent) = open();
    let agent = std::sync::Arc::new(agent);
    let jz = clinic("jinzhou");
    // 2026-12-04 and 2027-01-02, UTC.
    let (dec, jan) = (1_796_385_600_000_i64, 1_798_848_000_000_i64);
    let threads: Vec<_> = (0..8u8)
        .map(|t| {
            let (agent, jz) = (agent.clone(), jz.clone());
            std::thread::spawn(move || {
                (0..10u8)
                    .map(|i| {
                        let id = ConsultationId::new(
                            dec as u64 + u64::from(i),
                            [t, i, 0, 0, 0, 0, 0, 0, 0, 1],
                        );
                        let e = agent
                            .append_numbered(&jz, Side::Clinic, &id, "dr", dec, created("?"), "JZ")
                            .unwrap();
                        match e.kind {
                            EventKind::Created { number, .. } => number.unwrap(),
                            _ => unreachable!(),
                        }
                    })
                    .collect::<Vec<String>>()
            })
        })
        .collect();
    let mut numbers: Vec<String> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    numbers.sort();
    let expected: Vec<String> = (1..=80).map(|n| format!("JZ-2026-{n:04}")).collect();
    assert_eq!(numbers, expected);

    let next_year = ConsultationId::new(jan as u64, [2; 10]);
    agent
        .append_numbered(&jz, Side::Clinic, &next_year, "dr", jan, created("?"), "JZ")
        .unwrap();
    assert_eq!(
        agent.state(&next_year).unwrap().unwrap().number.as_deref(),
        Some("JZ-2027-0001")
    );
    // Another clinic counts its own cases.
    let xh = clinic("xiao-he");
    let other = ConsultationId::new(dec as u64, [3; 10]);
    agent
        .append_numbered(&xh, Side::Clinic, &other, "dr", dec, created("?"), "XH")
        .unwrap();
    assert_eq!(
        agent.state(&other).unwrap().unwrap().number.as_deref(),
        Some("XH-2026-0001")
    );
    // A case created before numbers existed has none, and does not disturb the count.
    let old = ConsultationId::new(dec as u64, [4; 10]);
    agent
        .append(&jz, Side::Clinic, &old, "dr", dec, created("?"))
        .unwrap();
    assert_eq!(agent.state(&old).unwrap().unwrap().number, None);
    let (_g, gateway) = open();
    replicate(&agent, Side::Clinic, &gateway, Side::Gateway, &jz);
    assert_eq!(
        gateway
            .state(&next_year)
            .unwrap()
            .unwrap()
            .number
            .as_deref(),
        Some("JZ-2027-0001"),
        "the number travels with the created event"
    );
    assert_eq!(gateway.list(&jz).unwrap().len(), 82);
}
