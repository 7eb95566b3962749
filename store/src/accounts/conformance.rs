//! The accounts' and sessions' conformance suites, run by every adapter's tests (the file and
//! memory here; the database adapter of later work against its real server).

// A test suite compiled into the library so that every adapter's crate can run it: a failed
// step panics, as in any test.
#![allow(clippy::unwrap_used)]

use super::{Account, AccountStore, AccountStoreError, Grant, Role, SessionStore, User};

/// A fresh store, and a function that opens another handle on it (another process or node).
pub type Subject = (
    Box<dyn AccountStore>,
    Box<dyn Fn() -> Box<dyn AccountStore>>,
);
/// The same for sessions.
pub type Sessions = (
    Box<dyn SessionStore>,
    Box<dyn Fn() -> Box<dyn SessionStore>>,
);

/// Runs every accounts case, each on a store from `fresh`; panics with the case's name.
pub fn run(mut fresh: impl FnMut() -> Subject) {
    let cases: [crate::conformance::Case<Subject>; 5] = [
        ("an account is added once and read back whole", added_once),
        ("changes and grants need the account", need_the_account),
        ("a grant holds until revoked; expired ones go", grants),
        ("another handle sees every change", other_handle),
        ("two handles writing at once lose nothing", two_writers),
    ];
    crate::conformance::run("accounts", &cases, &mut fresh);
}

/// Runs every sessions case, each on a store from `fresh`; panics with the case's name.
pub fn run_sessions(mut fresh: impl FnMut() -> Sessions) {
    let cases: [crate::conformance::Case<Sessions>; 1] =
        [("a session holds until revoked; expired ones go", sessions)];
    crate::conformance::run("sessions", &cases, &mut fresh);
}

fn account(name: &str, hash: &str) -> Account {
    Account {
        user: User {
            name: name.into(),
            role: Role::Specialist,
            display_name: format!("Dr {name}"),
            specialist: Some(name.into()),
            qualification: Some("attending".into()),
            deactivated: false,
        },
        hash: hash.into(),
    }
}

fn grant(user: &str, expires: i64) -> Grant {
    Grant {
        user: user.into(),
        expires: Some(expires),
        under: Some("fingerprint".into()),
    }
}

fn added_once((store, _): Subject) {
    assert!(store.accounts().unwrap().is_empty());
    assert_eq!(store.account("li").unwrap(), None);
    store.put_account(account("li", "h1"), false).unwrap();
    store.put_account(account("bo", "h2"), false).unwrap();
    assert_eq!(store.account("li").unwrap(), Some(account("li", "h1")));
    let names: Vec<String> = store
        .accounts()
        .unwrap()
        .into_iter()
        .map(|a| a.user.name)
        .collect();
    assert_eq!(names, ["bo", "li"], "every account, by name");
    assert!(matches!(
        store.put_account(account("li", "h3"), false),
        Err(AccountStoreError::Exists(n)) if n == "li"
    ));
    assert_eq!(store.account("li").unwrap().unwrap().hash, "h1");
    store.put_account(account("li", "h3"), true).unwrap();
    assert_eq!(store.account("li").unwrap().unwrap().hash, "h3");
}

fn need_the_account((store, _): Subject) {
    assert!(matches!(
        store.set_deactivated("ghost", true),
        Err(AccountStoreError::NoSuchUser(_))
    ));
    assert!(matches!(
        store.grant("k", grant("ghost", 100), 0),
        Err(AccountStoreError::NoSuchUser(_))
    ));
    assert_eq!(store.granted("k").unwrap(), None);
    store.put_account(account("li", "h"), false).unwrap();
    store.set_deactivated("li", true).unwrap();
    assert!(store.account("li").unwrap().unwrap().user.deactivated);
    store.set_deactivated("li", false).unwrap();
    assert!(!store.account("li").unwrap().unwrap().user.deactivated);
}

fn grants((store, _): Subject) {
    store.put_account(account("li", "h"), false).unwrap();
    store.grant("old", grant("li", 100), 50).unwrap();
    store.grant("new", grant("li", 1_000), 50).unwrap();
    assert_eq!(store.granted("old").unwrap(), Some(grant("li", 100)));
    // Granting at 200 drops what ran out by then.
    store.grant("newer", grant("li", 2_000), 200).unwrap();
    assert_eq!(store.granted("old").unwrap(), None);
    assert_eq!(store.granted("new").unwrap(), Some(grant("li", 1_000)));
    assert!(store.revoke("new").unwrap());
    assert!(!store.revoke("new").unwrap(), "gone already");
    assert_eq!(store.granted("new").unwrap(), None);
    assert!(store.granted("newer").unwrap().is_some());
    assert_eq!(
        store.grants().unwrap(),
        vec![("newer".to_owned(), grant("li", 2_000))],
        "every grant kept, by key"
    );
}

fn other_handle((a, again): Subject) {
    let b = again();
    a.put_account(account("li", "h"), false).unwrap();
    assert_eq!(b.account("li").unwrap(), Some(account("li", "h")));
    // Changes back and forth, each seen at once by the other handle (no waiting for a
    // clock to tick between them).
    for round in 0..20 {
        let (writer, reader) = if round % 2 == 0 { (&a, &b) } else { (&b, &a) };
        writer.set_deactivated("li", round % 4 < 2).unwrap();
        assert_eq!(
            reader.account("li").unwrap().unwrap().user.deactivated,
            round % 4 < 2,
            "round {round}"
        );
        let key = format!("token{round}");
        writer.grant(&key, grant("li", i64::MAX), 0).unwrap();
        assert!(reader.granted(&key).unwrap().is_some(), "round {round}");
        assert!(reader.revoke(&key).unwrap());
        assert_eq!(writer.granted(&key).unwrap(), None, "round {round}");
    }
    assert!(matches!(
        b.put_account(account("li", "h2"), false),
        Err(AccountStoreError::Exists(_))
    ));
}

fn two_writers((a, again): Subject) {
    let b = again();
    a.put_account(account("li", "h"), false).unwrap();
    std::thread::scope(|scope| {
        for (side, store) in [(0, &a), (1, &b)] {
            scope.spawn(move || {
                for n in 0..20 {
                    store
                        .grant(&format!("{side}-{n}"), grant("li", i64::MAX), 0)
                        .unwrap();
                    store.set_deactivated("li", n % 2 == 0).unwrap();
                }
            });
        }
    });
    let c = again();
    for side in 0..2 {
        for n in 0..20 {
            assert!(
                c.granted(&format!("{side}-{n}")).unwrap().is_some(),
                "grant {side}-{n} kept"
            );
        }
    }
}

fn sessions((store, again): Sessions) {
    let other = again();
    store.grant("old", grant("li", 100), 50).unwrap();
    store.grant("new", grant("li", 1_000), 50).unwrap();
    assert_eq!(other.granted("old").unwrap(), Some(grant("li", 100)));
    other.grant("newer", grant("bo", 2_000), 200).unwrap();
    assert_eq!(store.granted("old").unwrap(), None, "ran out by 200");
    assert!(store.revoke("new").unwrap());
    assert!(!other.revoke("new").unwrap());
    assert_eq!(other.granted("new").unwrap(), None);
    assert_eq!(store.granted("newer").unwrap(), Some(grant("bo", 2_000)));
}
