//! The forwarding queues' conformance suite, run by the archive index adapters' tests (sled and
//! memory here).

// A test suite compiled into the library so that every adapter's crate can run it: a failed
// step panics, as in any test.
#![allow(clippy::unwrap_used)]

use proto::sync::ObjectId;
use proto::ClinicId;

use super::{Counts, Entry, ForwardQueues};
use crate::archive::{ArchiveIndex, InstanceKey, InstanceRecord, ToForward, Verified};

/// An archive index that also keeps the forwarding queues.
pub trait Indexed: ArchiveIndex + ForwardQueues {}
impl<T: ArchiveIndex + ForwardQueues> Indexed for T {}

/// A fresh index, and a function that opens it again (a restart after a clean stop).
pub type Subject = (Box<dyn Indexed>, Box<dyn Fn() -> Box<dyn Indexed>>);

/// Runs every case, each on an index from `fresh`; panics with the case's name.
pub fn run(mut fresh: impl FnMut() -> Subject) {
    let cases: [crate::conformance::Case<Subject>; 5] = [
        ("the inbox moves into the queues it is for", fan_out),
        (
            "a queue is taken oldest first, skipping what is held",
            taken_in_order,
        ),
        (
            "an entry is updated while queued and done once",
            update_and_done,
        ),
        ("counts add up under concurrent senders", counts),
        ("queues and counts survive a restart", restart),
    ];
    crate::conformance::run("forwarding queues", &cases, &mut fresh);
}

fn instance(n: u8, modality: &str) -> Verified {
    let clinic = ClinicId::new("jinzhou").unwrap();
    let object = ObjectId::from_digest(&[n; 32]);
    Verified {
        clinic: clinic.clone(),
        key: InstanceKey {
            patient: "P-1".into(),
            study: "1.2".into(),
            series: "1.2.1".into(),
            sop: format!("1.2.1.{n}"),
        },
        record: InstanceRecord {
            object: object.clone(),
            size: 10,
            sop_class_uid: "1.2.840.10008.5.1.4.1.1.2".into(),
            modality: Some(modality.into()),
            received_at: 1_795_000_000,
            instance_number: Some(i64::from(n)),
        },
        forward: Some(ToForward {
            clinic,
            object,
            sop_class_uid: "1.2.840.10008.5.1.4.1.1.2".into(),
            sop_instance_uid: format!("1.2.1.{n}"),
            modality: Some(modality.into()),
        }),
    }
}

/// CT goes to both PACS, US to the second only, anything else nowhere.
fn route(item: &ToForward) -> Vec<String> {
    match item.modality.as_deref() {
        Some("CT") => vec!["main".into(), "backup".into()],
        Some("US") => vec!["backup".into()],
        _ => Vec::new(),
    }
}

fn objects(queued: &[Entry]) -> Vec<ObjectId> {
    queued
        .iter()
        .map(|(_, q)| q.as_ref().unwrap().item.object.clone())
        .collect()
}

fn fan_out((index, _): Subject) {
    index
        .commit_verified(&[instance(1, "CT"), instance(2, "US"), instance(3, "SR")])
        .unwrap();
    let out = index.fan_out(&route, 100).unwrap();
    assert_eq!(out.moved, 3);
    assert_eq!(out.added.get("main"), Some(&1));
    assert_eq!(out.added.get("backup"), Some(&2));
    assert!(
        index.forward_inbox().unwrap().is_empty(),
        "the inbox is empty"
    );
    assert_eq!(
        (index.len("main").unwrap(), index.len("backup").unwrap()),
        (1, 2)
    );
    let oldest = index.oldest("backup").unwrap().unwrap();
    assert_eq!(
        (oldest.item.object.clone(), oldest.queued_at),
        (ObjectId::from_digest(&[1; 32]), 100)
    );
    assert_eq!(
        index.fan_out(&route, 200).unwrap().moved,
        0,
        "nothing twice"
    );
    assert_eq!(index.len("backup").unwrap(), 2);
    assert_eq!(index.len("nowhere").unwrap(), 0);
}

fn taken_in_order((index, _): Subject) {
    for n in 1..=5 {
        index.commit_verified(&[instance(n, "CT")]).unwrap();
    }
    index.fan_out(&route, 100).unwrap();
    let all = index.queued("main", 10, &|_| false).unwrap();
    let want: Vec<ObjectId> = (1..=5).map(|n| ObjectId::from_digest(&[n; 32])).collect();
    assert_eq!(objects(&all), want, "oldest first");
    let first_two: Vec<u64> = all[..2].iter().map(|(id, _)| *id).collect();
    let rest = index
        .queued("main", 2, &|id| first_two.contains(&id))
        .unwrap();
    assert_eq!(
        objects(&rest),
        want[2..4],
        "skipping what is held, at most the limit"
    );
}

fn update_and_done((index, _): Subject) {
    index.commit_verified(&[instance(1, "CT")]).unwrap();
    index.fan_out(&route, 100).unwrap();
    let (id, queued) = index.queued("main", 1, &|_| false).unwrap().remove(0);
    let mut queued = queued.unwrap();
    queued.attempts = 2;
    queued.last_error = Some("C-STORE answered 0xA700".into());
    index.update("main", id, &queued).unwrap();
    assert_eq!(index.oldest("main").unwrap(), Some(queued.clone()));
    assert_eq!(
        index.oldest("backup").unwrap().unwrap().attempts,
        0,
        "the other destination's entry is its own"
    );
    assert!(index.done("main", id).unwrap());
    assert!(!index.done("main", id).unwrap(), "once");
    index.update("main", id, &queued).unwrap();
    assert_eq!(
        index.len("main").unwrap(),
        0,
        "an update brings nothing back"
    );
    assert_eq!(index.len("backup").unwrap(), 1);
}

fn counts((index, _): Subject) {
    assert_eq!(index.counts("main").unwrap(), Counts::default());
    std::thread::scope(|scope| {
        for _ in 0..4 {
            let index = &index;
            scope.spawn(move || {
                for _ in 0..25 {
                    index.count("main", 1, 0).unwrap();
                    index.count("main", 0, 2).unwrap();
                }
            });
        }
    });
    assert_eq!(
        index.counts("main").unwrap(),
        Counts {
            sent: 100,
            failures: 200
        }
    );
}

fn restart((index, reopen): Subject) {
    index
        .commit_verified(&[instance(1, "CT"), instance(2, "CT")])
        .unwrap();
    index.fan_out(&route, 100).unwrap();
    let (first, _) = index.queued("main", 1, &|_| false).unwrap().remove(0);
    index.done("main", first).unwrap();
    index.count("main", 1, 0).unwrap();
    index.sync().unwrap();
    drop(index);
    let index = reopen();
    assert_eq!(index.len("main").unwrap(), 1);
    assert_eq!(index.len("backup").unwrap(), 2);
    assert_eq!(index.counts("main").unwrap().sent, 1);
    // New entries are numbered after the ones held.
    index.commit_verified(&[instance(3, "CT")]).unwrap();
    index.fan_out(&route, 200).unwrap();
    let main = index.queued("main", 10, &|_| false).unwrap();
    assert_eq!(
        objects(&main),
        vec![
            ObjectId::from_digest(&[2; 32]),
            ObjectId::from_digest(&[3; 32])
        ]
    );
}
