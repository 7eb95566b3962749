//! The archive index's conformance suite, run by every adapter's tests (sled and memory here;
//! the database adapters of later work run it against their real servers). Each case takes a
//! fresh, empty index and a way to open the same index again.

// A test suite compiled into the library so that every adapter's crate can run it: a failed
// step panics, as in any test.
#![allow(clippy::unwrap_used)]

use proto::sync::ObjectId;
use proto::ClinicId;

use super::{ArchiveIndex, InstanceKey, InstanceRecord, PartialRecord, ToForward, Verified};

/// A fresh index, and a function that opens the same index again.
pub type Subject = (
    Box<dyn ArchiveIndex>,
    Box<dyn Fn() -> Box<dyn ArchiveIndex>>,
);

/// Runs every case, each on an index from `fresh`; panics with the case's name on a failure.
pub fn run(mut fresh: impl FnMut() -> Subject) {
    let cases: [crate::conformance::Case<Subject>; 8] = [
        ("partial records are kept, replaced and forgotten", partials),
        ("a verified object is the sending clinic's only", verified),
        (
            "an entry, its claim and its inbox entry are one write",
            one_write,
        ),
        ("an object held already is left as it is", held_already),
        ("versions of one instance are kept side by side", versions),
        ("the expected count keeps the largest", expected),
        ("forwarding ids only grow across restarts", ids_grow),
        ("a study's instances are listed on their own", by_study),
    ];
    crate::conformance::run("archive index", &cases, &mut fresh);
}

fn clinic(name: &str) -> ClinicId {
    ClinicId::new(name).unwrap()
}

fn object(n: u8) -> ObjectId {
    ObjectId::from_digest(&[n; 32])
}

/// A verified instance `sop` of study "1.2.3", from `clinic`, as object `n`.
fn instance(clinic: &ClinicId, n: u8, sop: &str, forward: bool) -> Verified {
    let key = InstanceKey {
        patient: "P-7".into(),
        study: "1.2.3".into(),
        series: "1.2.3.4".into(),
        sop: sop.into(),
    };
    let record = InstanceRecord {
        object: object(n),
        size: 1000 + u64::from(n),
        sop_class_uid: "1.2.840.10008.5.1.4.1.1.2".into(),
        modality: Some("CT".into()),
        received_at: 1_795_000_000 + i64::from(n),
        instance_number: Some(i64::from(n)),
    };
    let forward = forward.then(|| ToForward {
        clinic: clinic.clone(),
        object: object(n),
        sop_class_uid: record.sop_class_uid.clone(),
        sop_instance_uid: sop.into(),
        modality: Some("CT".into()),
    });
    Verified {
        clinic: clinic.clone(),
        key,
        record,
        forward,
    }
}

fn partials((index, reopen): Subject) {
    let jz = clinic("jinzhou");
    assert_eq!(index.partial(&jz, &object(1)).unwrap(), None);
    let first = PartialRecord {
        size: 100,
        committed: 40,
    };
    index.record_partial(&jz, &object(1), first).unwrap();
    let later = PartialRecord {
        size: 100,
        committed: 80,
    };
    index.record_partial(&jz, &object(1), later).unwrap();
    drop(index);
    let index = reopen();
    assert_eq!(index.partial(&jz, &object(1)).unwrap(), Some(later));
    assert_eq!(
        index.partial(&clinic("pulandian"), &object(1)).unwrap(),
        None
    );
    index.forget_partial(&jz, &object(1)).unwrap();
    drop(index);
    let index = reopen();
    assert_eq!(index.partial(&jz, &object(1)).unwrap(), None);
}

fn verified((index, reopen): Subject) {
    let (jz, pl) = (clinic("jinzhou"), clinic("pulandian"));
    let v = instance(&jz, 1, "1.2.3.4.1", false);
    index
        .record_partial(
            &jz,
            &object(1),
            PartialRecord {
                size: 1001,
                committed: 500,
            },
        )
        .unwrap();
    index.commit_verified(std::slice::from_ref(&v)).unwrap();
    drop(index);
    let index = reopen();
    assert!(index.holds(&jz, &object(1)).unwrap());
    assert!(
        !index.holds(&pl, &object(1)).unwrap(),
        "the same bytes from another clinic"
    );
    assert_eq!(
        index.partial(&jz, &object(1)).unwrap(),
        None,
        "the partial ended"
    );
    assert_eq!(
        index.instances(&jz).unwrap(),
        vec![(v.key.clone(), v.record.clone())]
    );
    assert!(index.instances(&pl).unwrap().is_empty());
    assert_eq!(
        index.clinics().unwrap(),
        vec![jz.clone()],
        "the clinics with objects"
    );
    assert_eq!(
        index.instance(&jz, &object(1)).unwrap(),
        Some((v.key, v.record))
    );
    assert_eq!(index.instance(&pl, &object(1)).unwrap(), None);
    assert!(index.forward_inbox().unwrap().is_empty(), "not to forward");
}

fn one_write((index, reopen): Subject) {
    let jz = clinic("jinzhou");
    let batch = [
        instance(&jz, 1, "1.2.3.4.1", true),
        instance(&jz, 2, "1.2.3.4.2", true),
        instance(&jz, 3, "1.2.3.4.3", false),
    ];
    index.commit_verified(&batch).unwrap();
    drop(index);
    let index = reopen();
    let inbox = index.forward_inbox().unwrap();
    let forwarded: Vec<ToForward> = inbox.iter().map(|(_, f)| f.clone()).collect();
    assert_eq!(
        forwarded,
        vec![
            batch[0].forward.clone().unwrap(),
            batch[1].forward.clone().unwrap()
        ]
    );
    assert!(inbox[0].0 < inbox[1].0);
    for n in 1..=3 {
        assert!(index.holds(&jz, &object(n)).unwrap());
    }
}

fn held_already((index, _): Subject) {
    let jz = clinic("jinzhou");
    let v = instance(&jz, 1, "1.2.3.4.1", true);
    index.commit_verified(std::slice::from_ref(&v)).unwrap();
    let mut again = v.clone();
    again.record.received_at += 60;
    index.commit_verified(&[again]).unwrap();
    assert_eq!(index.forward_inbox().unwrap().len(), 1, "forwarded once");
    assert_eq!(index.instances(&jz).unwrap(), vec![(v.key, v.record)]);
}

fn versions((index, _): Subject) {
    let jz = clinic("jinzhou");
    let (old, new) = (
        instance(&jz, 1, "1.2.3.4.1", false),
        instance(&jz, 2, "1.2.3.4.1", false),
    );
    index.commit_verified(std::slice::from_ref(&old)).unwrap();
    index.commit_verified(std::slice::from_ref(&new)).unwrap();
    let all = index.instances(&jz).unwrap();
    assert_eq!(all.len(), 2);
    assert!(all.iter().all(|(k, _)| k.sop == "1.2.3.4.1"));
    assert_eq!(
        index.instance(&jz, &object(2)).unwrap().map(|(_, r)| r),
        Some(new.record)
    );
    assert_eq!(
        index.instance(&jz, &object(1)).unwrap().map(|(_, r)| r),
        Some(old.record)
    );
}

fn expected((index, _): Subject) {
    let jz = clinic("jinzhou");
    assert_eq!(index.expected(&jz, "1.2.3").unwrap(), None);
    index.note_expected(&jz, "1.2.3", 24).unwrap();
    index.note_expected(&jz, "1.2.3", 12).unwrap();
    assert_eq!(index.expected(&jz, "1.2.3").unwrap(), Some(24));
    assert_eq!(index.expected(&clinic("pulandian"), "1.2.3").unwrap(), None);
}

fn ids_grow((index, reopen): Subject) {
    let jz = clinic("jinzhou");
    index
        .commit_verified(&[instance(&jz, 1, "1.2.3.4.1", true)])
        .unwrap();
    let first = index.forward_inbox().unwrap()[0].0;
    drop(index);
    let index = reopen();
    index
        .commit_verified(&[instance(&jz, 2, "1.2.3.4.2", true)])
        .unwrap();
    let ids: Vec<u64> = index.forward_inbox().unwrap().iter().map(|e| e.0).collect();
    assert_eq!(ids.len(), 2);
    assert!(ids[1] > first, "{ids:?}");
}

fn by_study((index, reopen): Subject) {
    let (jz, pl) = (clinic("jinzhou"), clinic("pulandian"));
    let mut other = instance(&jz, 3, "9.9.9.1", false);
    other.key.study = "9.9".into();
    let (a, b) = (
        instance(&jz, 1, "1.2.3.4.1", false),
        instance(&jz, 2, "1.2.3.4.2", false),
    );
    index
        .commit_verified(&[
            a.clone(),
            other,
            b.clone(),
            instance(&pl, 4, "1.2.3.4.9", false),
        ])
        .unwrap();
    drop(index);
    let index = reopen();
    assert_eq!(
        index.study(&jz, "1.2.3").unwrap(),
        vec![(a.key, a.record), (b.key, b.record)]
    );
    assert_eq!(index.study(&jz, "9.9").unwrap().len(), 1);
    assert_eq!(index.study(&pl, "1.2.3").unwrap().len(), 1);
    assert!(
        index.study(&jz, "1.2").unwrap().is_empty(),
        "not a prefix match"
    );
    // Several studies in one go, each with its clinic, as one at a time would list them.
    let wanted = [
        (pl.clone(), "1.2.3".to_owned()),
        (jz.clone(), "1.2.3".to_owned()),
        (jz.clone(), "9.9".to_owned()),
        (jz.clone(), "1.2.3".to_owned()),
        (jz.clone(), "absent".to_owned()),
    ];
    let one_by_one: Vec<_> = [(&jz, "1.2.3"), (&jz, "9.9"), (&pl, "1.2.3")]
        .into_iter()
        .flat_map(|(c, s)| {
            index
                .study(c, s)
                .unwrap()
                .into_iter()
                .map(move |(k, r)| (c.clone(), k, r))
        })
        .collect();
    assert_eq!(index.studies(&wanted).unwrap(), one_by_one);
    assert!(index.studies(&[]).unwrap().is_empty());
}
