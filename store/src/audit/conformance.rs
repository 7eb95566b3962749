//! The audit log's conformance suite, run by every adapter's tests (memory here, the
//! gateway's file log in `gateway::audit`; the database adapter of later work against its
//! real server).

// A test suite compiled into the library so that every adapter's crate can run it: a failed
// step panics, as in any test.
#![allow(clippy::unwrap_used)]

use super::{chain_break, AuditLog, GENESIS};

/// A fresh log, and a function that opens the same log again.
pub type Subject = (Box<dyn AuditLog>, Box<dyn Fn() -> Box<dyn AuditLog>>);

/// Runs every case, each on a log from `fresh`; panics with the case's name on a failure.
pub fn run(mut fresh: impl FnMut() -> Subject) {
    let cases: [crate::conformance::Case<Subject>; 3] = [
        ("records form one chain, kept across a reopening", chain),
        ("records from several threads form one chain", threads),
        ("an empty log verifies", empty),
    ];
    crate::conformance::run("audit log", &cases, &mut fresh);
}

fn chain((log, reopen): Subject) {
    let first = log.record(1, "li", "10.0.0.7", "view", "case-1").unwrap();
    assert_eq!((first.seq, first.prev.as_str()), (0, GENESIS));
    let second = log.record(2, "li", "10.0.0.7", "accept", "case-1").unwrap();
    assert_eq!(second.prev, first.hash);
    drop(log);
    let log = reopen();
    let third = log
        .record(3, "boss", "10.0.0.9", "assign", "case-1")
        .unwrap();
    assert_eq!((third.seq, third.prev.as_str()), (2, second.hash.as_str()));
    let records = log.records().unwrap();
    assert_eq!(records, vec![first, second, third.clone()]);
    assert_eq!(chain_break(&records), None);
    assert_eq!(log.verify().unwrap(), (3, third.hash));
}

fn threads((log, _): Subject) {
    std::thread::scope(|scope| {
        for t in 0..4 {
            let log = &log;
            scope.spawn(move || {
                for n in 0..10 {
                    log.record(n, &format!("user{t}"), "-", "view", "case")
                        .unwrap();
                }
            });
        }
    });
    let records = log.records().unwrap();
    assert_eq!(records.len(), 40);
    assert_eq!(chain_break(&records), None, "one chain");
    assert_eq!(log.verify().unwrap().0, 40);
}

fn empty((log, _): Subject) {
    assert_eq!(log.verify().unwrap(), (0, GENESIS.to_owned()));
    assert!(log.records().unwrap().is_empty());
}
