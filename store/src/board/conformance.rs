//! The link board's conformance suite, run by every adapter's tests (sled and memory here).

// A test suite compiled into the library so that every adapter's crate can run it: a failed
// step panics, as in any test.
#![allow(clippy::unwrap_used)]

use proto::frame::Backlog;
use proto::ClinicId;

use super::{BoardStore, Facts, Sample};

/// A fresh board, and a function that opens it again (a restart after a clean stop).
pub type Subject = (Box<dyn BoardStore>, Box<dyn Fn() -> Box<dyn BoardStore>>);

/// Runs every case, each on a board from `fresh`; panics with the case's name.
pub fn run(mut fresh: impl FnMut() -> Subject) {
    let cases: [crate::conformance::Case<Subject>; 3] = [
        ("facts are kept per clinic and replaced", kept_facts),
        (
            "history is a clinic's own, oldest first, from a time on",
            history,
        ),
        (
            "pruning drops the old samples, a restart keeps the rest",
            prune,
        ),
    ];
    crate::conformance::run("link board", &cases, &mut fresh);
}

fn clinic(name: &str) -> ClinicId {
    ClinicId::new(name).unwrap()
}

fn facts(seen: i64) -> Facts {
    Facts {
        agent_version: "0.1.0".into(),
        cert_expires_ms: Some(1_800_000_000_000),
        last_seen_ms: seen,
        backlog: Some(Backlog {
            items: 3,
            bytes: 1_000,
            ..Backlog::default()
        }),
        online_since_ms: Some(seen - 5_000),
        rtt_ms: Some(105.5),
        loss: Some(0.01),
        throughput_bps: 1.25e6,
    }
}

fn sample(at_ms: i64) -> Sample {
    Sample {
        at_ms,
        throughput_bps: 1.25e6,
        rtt_ms: 101.5,
        backlog_items: at_ms as u64 % 7,
    }
}

fn kept_facts((board, _): Subject) {
    assert!(board.clinics().unwrap().is_empty());
    board.keep(&clinic("jinzhou"), &facts(1)).unwrap();
    board.keep(&clinic("pulandian"), &facts(2)).unwrap();
    board.keep(&clinic("jinzhou"), &facts(3)).unwrap();
    let mut all = board.clinics().unwrap();
    all.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
    assert_eq!(
        all,
        vec![
            (clinic("jinzhou"), facts(3)),
            (clinic("pulandian"), facts(2))
        ]
    );
}

fn history((board, _): Subject) {
    let (jz, pl) = (clinic("jinzhou"), clinic("pulandian"));
    for at in [180_000, 60_000, 120_000] {
        board.sample(&jz, &sample(at)).unwrap();
    }
    board.sample(&pl, &sample(90_000)).unwrap();
    assert_eq!(
        board.history(&jz, 0).unwrap(),
        vec![sample(60_000), sample(120_000), sample(180_000)]
    );
    assert_eq!(
        board.history(&jz, 120_000).unwrap(),
        vec![sample(120_000), sample(180_000)]
    );
    assert_eq!(board.history(&pl, 0).unwrap(), vec![sample(90_000)]);
    assert!(board.history(&clinic("dalian"), 0).unwrap().is_empty());
}

fn prune((board, reopen): Subject) {
    let (jz, pl) = (clinic("jinzhou"), clinic("pulandian"));
    for at in [60_000, 120_000, 180_000] {
        board.sample(&jz, &sample(at)).unwrap();
        board.sample(&pl, &sample(at)).unwrap();
    }
    board.keep(&jz, &facts(180_000)).unwrap();
    board.prune(&jz, 120_000).unwrap();
    drop(board);
    let board = reopen();
    assert_eq!(
        board.history(&jz, 0).unwrap(),
        vec![sample(120_000), sample(180_000)]
    );
    assert_eq!(
        board.history(&pl, 0).unwrap().len(),
        3,
        "another clinic's stay"
    );
    assert_eq!(board.clinics().unwrap(), vec![(jz, facts(180_000))]);
}
