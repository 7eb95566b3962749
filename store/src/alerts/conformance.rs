//! The alerts' ledger conformance suite, run by every adapter's tests (sled and memory here,
//! PostgreSQL in `tests/tests/postgres.rs`).

// A test suite compiled into the library so that every adapter's crate can run it: a failed
// step panics, as in any test.
#![allow(clippy::unwrap_used)]

use super::{Ack, AlertStore, Key, Seen};

/// A fresh store, and a function that opens it again (a restart, or another node).
pub type Subject = (Box<dyn AlertStore>, Box<dyn Fn() -> Box<dyn AlertStore>>);

/// Runs every case, each on a store from `fresh`; panics with the case's name.
pub fn run(mut fresh: impl FnMut() -> Subject) {
    let cases: [crate::conformance::Case<Subject>; 3] = [
        (
            "an alert keeps its first time and its acknowledgement",
            kept,
        ),
        (
            "only a remembered alert is acknowledged; keys are apart",
            apart,
        ),
        (
            "a forgotten alert is gone with its acknowledgement",
            forgotten,
        ),
    ];
    crate::conformance::run("alerts", &cases, &mut fresh);
}

fn key(kind: &str, about: &str) -> Key {
    (kind.to_owned(), about.to_owned())
}

fn ack(by: &str, at_ms: i64) -> Ack {
    Ack {
        by: by.to_owned(),
        at_ms,
    }
}

fn kept((store, reopen): Subject) {
    let down = key("alerts.link_down", "jinzhou");
    assert!(store.all().unwrap().is_empty());
    store.raise(&down, 1000).unwrap();
    store.raise(&down, 2000).unwrap();
    assert!(store.acknowledge(&down, &ack("chen", 3000)).unwrap());
    // Raised again by another node: the first time and the acknowledgement stay.
    let other = reopen();
    other.raise(&down, 4000).unwrap();
    let expected = Seen {
        first_ms: 1000,
        ack: Some(ack("chen", 3000)),
    };
    assert_eq!(other.all().unwrap().get(&down), Some(&expected));
    drop(store);
    drop(other);
    assert_eq!(
        reopen().all().unwrap().into_iter().collect::<Vec<_>>(),
        vec![(down, expected)]
    );
}

fn apart((store, _): Subject) {
    let down = key("alerts.link_down", "jinzhou");
    assert!(!store.acknowledge(&down, &ack("chen", 1)).unwrap());
    assert!(store.all().unwrap().is_empty(), "nothing raised by it");
    store.raise(&down, 10).unwrap();
    // Names that would run together if the key were their concatenation.
    for other in [
        key("alerts.link_dow", "njinzhou"),
        key("alerts.link_down", "jinzhou-2"),
        key("alerts.backlog_age", "jinzhou"),
    ] {
        assert!(
            !store.acknowledge(&other, &ack("chen", 2)).unwrap(),
            "{other:?}"
        );
    }
    store
        .raise(&key("alerts.link_down", "jinzhou-2"), 20)
        .unwrap();
    let all = store.all().unwrap();
    assert_eq!(all.len(), 2);
    assert!(all.values().all(|s| s.ack.is_none()));
}

fn forgotten((store, reopen): Subject) {
    let down = key("alerts.link_down", "jinzhou");
    store.forget(&down).unwrap();
    store.raise(&down, 10).unwrap();
    store.acknowledge(&down, &ack("chen", 20)).unwrap();
    store.forget(&down).unwrap();
    assert!(store.all().unwrap().is_empty());
    // Raised again: a new alert, unacknowledged, newly dated.
    store.raise(&down, 30).unwrap();
    assert_eq!(
        reopen().all().unwrap().get(&down),
        Some(&Seen {
            first_ms: 30,
            ack: None
        })
    );
}
