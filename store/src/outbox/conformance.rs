//! The outbox's conformance suite, run by every adapter's tests (sled and memory here).

// A test suite compiled into the library so that every adapter's crate can run it: a failed
// step panics, as in any test.
#![allow(clippy::unwrap_used)]

use proto::sync::{ObjectId, Priority};

use super::{Added, ObjectRecord, Outbox};

/// A fresh outbox, and a function that closes it and opens it again (a restart).
pub type Subject = (
    Box<dyn Outbox>,
    Box<dyn Fn(Box<dyn Outbox>) -> Box<dyn Outbox>>,
);

/// Runs every case, each on an outbox from `fresh`; panics with the case's name.
pub fn run(mut fresh: impl FnMut() -> Subject) {
    let cases: [crate::conformance::Case<Subject>; 5] = [
        ("an object is added once, numbered in order", added_once),
        ("versions and studies are counted", versions),
        ("priorities are raised, never lowered", priorities),
        ("deliveries are marked and can be requeued", deliveries),
        ("a restart keeps what was added", restart),
    ];
    crate::conformance::run("outbox", &cases, &mut fresh);
}

fn id(n: u8) -> ObjectId {
    ObjectId::from_digest(&[n; 32])
}

fn instance(sop: &str, study: &str) -> ObjectRecord {
    ObjectRecord {
        sop_instance_uid: sop.into(),
        study_instance_uid: study.into(),
        series_instance_uid: format!("{study}.1"),
        modality: Some("CT".into()),
        transfer_syntax: Some("1.2.840.10008.1.2.1".into()),
        instance_number: Some(1),
        ..ObjectRecord::attachment(100, Priority::Routine, false, 1_790_000_000)
    }
}

fn added_once((outbox, _): Subject) {
    assert_eq!(outbox.object(&id(1)).unwrap(), None);
    assert_eq!(
        outbox.add(&id(1), instance("1.1", "9.1")).unwrap(),
        Added::Stored { new_version: false }
    );
    assert_eq!(
        outbox
            .add(
                &id(2),
                ObjectRecord::attachment(7, Priority::Urgent, true, 5)
            )
            .unwrap(),
        Added::Stored { new_version: false }
    );
    assert_eq!(
        outbox.add(&id(1), instance("1.1", "9.1")).unwrap(),
        Added::Duplicate
    );
    let one = outbox.object(&id(1)).unwrap().unwrap();
    assert_eq!(
        (one.seq, one.size, one.sop_instance_uid.as_str()),
        (0, 100, "1.1")
    );
    let two = outbox.object(&id(2)).unwrap().unwrap();
    assert_eq!(
        (two.seq, two.priority, two.ahead),
        (1, Priority::Urgent, true)
    );
    let all: Vec<ObjectId> = outbox
        .objects()
        .unwrap()
        .into_iter()
        .map(|(i, _)| i)
        .collect();
    assert_eq!(all, vec![id(1), id(2)], "every object, in id order");
}

fn versions((outbox, _): Subject) {
    outbox.add(&id(1), instance("1.1", "9.1")).unwrap();
    outbox.add(&id(2), instance("1.2", "9.1")).unwrap();
    // The same instance with other bytes: a new version, not a new instance.
    assert_eq!(
        outbox.add(&id(3), instance("1.1", "9.1")).unwrap(),
        Added::Stored { new_version: true }
    );
    assert!(outbox.object(&id(3)).unwrap().unwrap().new_version);
    assert!(
        !outbox.object(&id(1)).unwrap().unwrap().new_version,
        "kept as it was"
    );
    outbox
        .add(
            &id(4),
            ObjectRecord::attachment(7, Priority::Routine, false, 5),
        )
        .unwrap();
    outbox
        .add(
            &id(5),
            ObjectRecord::attachment(8, Priority::Routine, false, 5),
        )
        .unwrap();
    assert_eq!(outbox.study_instances("9.1").unwrap(), 2);
    assert_eq!(
        outbox.study_instances("").unwrap(),
        0,
        "attachments count nowhere"
    );
    assert_eq!(outbox.study_instances("9.9").unwrap(), 0);
}

fn priorities((outbox, _): Subject) {
    outbox.add(&id(1), instance("1.1", "9.1")).unwrap();
    outbox.add(&id(2), instance("1.2", "9.1")).unwrap();
    outbox.add(&id(3), instance("2.1", "9.2")).unwrap();
    outbox.mark_delivered(&id(2), 10).unwrap();
    assert_eq!(
        outbox.raise_priority("9.1", Priority::Urgent).unwrap(),
        vec![id(1)]
    );
    assert_eq!(
        outbox.object(&id(1)).unwrap().unwrap().priority,
        Priority::Urgent
    );
    assert_eq!(
        outbox.object(&id(2)).unwrap().unwrap().priority,
        Priority::Routine,
        "delivered already"
    );
    assert_eq!(
        outbox.object(&id(3)).unwrap().unwrap().priority,
        Priority::Routine
    );
    assert!(
        outbox
            .raise_priority("9.1", Priority::Routine)
            .unwrap()
            .is_empty(),
        "never lowered"
    );
    assert_eq!(
        outbox.object(&id(1)).unwrap().unwrap().priority,
        Priority::Urgent
    );
}

fn deliveries((outbox, _): Subject) {
    outbox.add(&id(1), instance("1.1", "9.1")).unwrap();
    outbox.add(&id(2), instance("1.2", "9.1")).unwrap();
    outbox.mark_delivered(&id(1), 10).unwrap();
    outbox.mark_delivered(&id(1), 20).unwrap();
    outbox.mark_delivered(&id(9), 20).unwrap();
    assert_eq!(
        outbox.object(&id(1)).unwrap().unwrap().delivered_at,
        Some(10),
        "the first"
    );
    assert_eq!(outbox.object(&id(9)).unwrap(), None, "not made by a mark");
    let requeued = outbox.requeue_delivered().unwrap();
    assert_eq!(requeued.len(), 1);
    assert_eq!((&requeued[0].0, requeued[0].1.delivered_at), (&id(1), None));
    assert!(outbox
        .objects()
        .unwrap()
        .iter()
        .all(|(_, r)| r.delivered_at.is_none()));
}

fn restart((outbox, reopen): Subject) {
    outbox.add(&id(1), instance("1.1", "9.1")).unwrap();
    outbox.add(&id(2), instance("1.1", "9.1")).unwrap();
    outbox.raise_priority("9.1", Priority::Urgent).unwrap();
    let outbox = reopen(outbox);
    assert_eq!(outbox.objects().unwrap().len(), 2);
    assert_eq!(outbox.study_instances("9.1").unwrap(), 1);
    assert_eq!(
        outbox.object(&id(2)).unwrap().unwrap().priority,
        Priority::Urgent
    );
    assert_eq!(
        outbox.add(&id(3), instance("1.1", "9.1")).unwrap(),
        Added::Stored { new_version: true },
        "the versions were kept"
    );
    assert_eq!(
        outbox.object(&id(3)).unwrap().unwrap().seq,
        2,
        "numbering goes on"
    );
}
