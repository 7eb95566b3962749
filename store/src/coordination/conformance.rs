//! The leases' and notifications' conformance suites, run by every adapter's tests (memory
//! here, and PostgreSQL against its real server in `tests/postgres.rs`).

// A test suite compiled into the library so that every adapter's crate can run it: a failed
// step panics, as in any test.
#![allow(clippy::unwrap_used)]

use super::{Leases, Notifier};

/// A fresh store, and a function that opens another handle on it (another node).
pub type LeaseSubject = (Box<dyn Leases>, Box<dyn Fn() -> Box<dyn Leases>>);
/// The same for notifications.
pub type NotifySubject = (Box<dyn Notifier>, Box<dyn Fn() -> Box<dyn Notifier>>);

/// Runs every lease case, each on a store from `fresh`; panics with the case's name.
pub fn run_leases(mut fresh: impl FnMut() -> LeaseSubject) {
    let cases: [crate::conformance::Case<LeaseSubject>; 4] = [
        ("one holder at a time until it runs out", one_holder),
        ("a release frees it, only by its holder", release),
        ("another handle agrees", other_handle),
        ("of many asking at once exactly one gets it", race),
    ];
    crate::conformance::run("leases", &cases, &mut fresh);
}

/// Runs every notification case, each on a store from `fresh`; panics with the case's name.
pub fn run_notifications(mut fresh: impl FnMut() -> NotifySubject) {
    let cases: [crate::conformance::Case<NotifySubject>; 2] = [
        ("a notification wakes its topic's subscribers only", topics),
        (
            "another handle's notification wakes, many wake once",
            coalesced,
        ),
    ];
    crate::conformance::run("notifications", &cases, &mut fresh);
}

fn one_holder((leases, _): LeaseSubject) {
    assert_eq!(leases.holder("router", 0).unwrap(), None);
    assert!(leases.hold("router", "a", 1_000, 500).unwrap());
    assert!(
        !leases.hold("router", "b", 1_200, 500).unwrap(),
        "a holds it"
    );
    assert!(
        leases.hold("other", "b", 1_200, 500).unwrap(),
        "leases are apart"
    );
    // Renewed at 1,400, it lasts until 1,900.
    assert!(leases.hold("router", "a", 1_400, 500).unwrap());
    assert!(!leases.hold("router", "b", 1_800, 500).unwrap());
    assert_eq!(
        leases.holder("router", 1_800).unwrap().as_deref(),
        Some("a")
    );
    assert_eq!(leases.holder("router", 1_900).unwrap(), None, "ran out");
    assert!(leases.hold("router", "b", 1_900, 500).unwrap());
    assert!(
        !leases.hold("router", "a", 2_000, 500).unwrap(),
        "b has it now"
    );
}

fn release((leases, _): LeaseSubject) {
    assert!(leases.hold("router", "a", 0, 10_000).unwrap());
    leases.release("router", "b").unwrap();
    assert!(
        !leases.hold("router", "b", 1, 10_000).unwrap(),
        "only a releases"
    );
    leases.release("router", "a").unwrap();
    assert_eq!(leases.holder("router", 2).unwrap(), None);
    assert!(leases.hold("router", "b", 2, 10_000).unwrap());
}

fn other_handle((a, again): LeaseSubject) {
    let b = again();
    assert!(a.hold("sweep", "node-a", 0, 1_000).unwrap());
    assert!(!b.hold("sweep", "node-b", 10, 1_000).unwrap());
    assert_eq!(b.holder("sweep", 10).unwrap().as_deref(), Some("node-a"));
    a.release("sweep", "node-a").unwrap();
    assert!(b.hold("sweep", "node-b", 20, 1_000).unwrap());
    assert!(!a.hold("sweep", "node-a", 30, 1_000).unwrap());
}

fn race((leases, again): LeaseSubject) {
    for round in 0..20 {
        let name = format!("task{round}");
        let won: usize = std::thread::scope(|scope| {
            let asks: Vec<_> = (0..4)
                .map(|n| {
                    let (handle, name) = (again(), name.clone());
                    scope.spawn(move || handle.hold(&name, &format!("node{n}"), 0, 60_000).unwrap())
                })
                .collect();
            asks.into_iter()
                .map(|a| usize::from(a.join().unwrap()))
                .sum()
        });
        assert_eq!(won, 1, "round {round}");
        assert!(leases.holder(&name, 1).unwrap().is_some());
    }
}

/// Whether `sub` is woken within a few seconds: a database delivers a notification a moment
/// after it is sent.
fn woken(sub: &crate::coordination::Subscription) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        if sub.has_changed().unwrap() {
            return true;
        }
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

fn topics((notifier, _): NotifySubject) {
    let mut events = notifier.subscribe("events");
    let mut events_too = notifier.subscribe("events");
    let inbox = notifier.subscribe("inbox");
    assert!(!events.has_changed().unwrap(), "nothing yet");
    notifier.notify("events");
    assert!(woken(&events));
    assert!(woken(&events_too), "every subscriber");
    assert!(!inbox.has_changed().unwrap(), "not another topic");
    events.borrow_and_update();
    events_too.borrow_and_update();
    notifier.notify("inbox");
    assert!(woken(&inbox));
    assert!(!events.has_changed().unwrap(), "not another topic");
}

fn coalesced((a, again): NotifySubject) {
    let b = again();
    let mut sub = a.subscribe("events");
    let marker = a.subscribe("marker");
    for _ in 0..100 {
        b.notify("events");
    }
    // Delivered in the order sent: once the marker is here, so are the hundred.
    b.notify("marker");
    assert!(woken(&marker));
    assert!(sub.has_changed().unwrap(), "woken by the other handle");
    sub.borrow_and_update();
    assert!(!sub.has_changed().unwrap(), "once for all of them");
    b.notify("events");
    assert!(woken(&sub));
}
