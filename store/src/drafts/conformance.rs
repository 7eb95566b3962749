//! The drafts' conformance suite, run by every adapter's tests (sled and memory here).

// A test suite compiled into the library so that every adapter's crate can run it: a failed
// step panics, as in any test.
#![allow(clippy::unwrap_used)]

use super::{Draft, DraftKey, DraftStore};

/// A fresh store, and a function that opens it again (a restart after a clean stop).
pub type Subject = (Box<dyn DraftStore>, Box<dyn Fn() -> Box<dyn DraftStore>>);

/// Runs every case, each on a store from `fresh`; panics with the case's name.
pub fn run(mut fresh: impl FnMut() -> Subject) {
    let cases: [crate::conformance::Case<Subject>; 3] = [
        ("a draft is replaced, read back and kept", kept),
        ("keys are apart", apart),
        ("a removed draft is gone", removed),
    ];
    crate::conformance::run("drafts", &cases, &mut fresh);
}

fn key(user: &str, case: &str, form: &str) -> DraftKey {
    DraftKey {
        user: user.into(),
        case: case.into(),
        form: form.into(),
    }
}

fn draft(at: i64, text: &str) -> Draft {
    Draft {
        saved_at_ms: at,
        fields: [("impression".to_owned(), text.to_owned())].into(),
    }
}

fn kept((store, reopen): Subject) {
    let k = key("li", "01CASE", "report");
    assert_eq!(store.get(&k).unwrap(), None);
    store.put(&k, &draft(1, "no bleed")).unwrap();
    store.put(&k, &draft(2, "no bleed; 出血")).unwrap();
    assert_eq!(store.get(&k).unwrap(), Some(draft(2, "no bleed; 出血")));
    assert_eq!(
        store.all().unwrap(),
        vec![(k.clone(), draft(2, "no bleed; 出血"))]
    );
    drop(store);
    assert_eq!(reopen().get(&k).unwrap(), Some(draft(2, "no bleed; 出血")));
}

fn apart((store, _): Subject) {
    store
        .put(&key("li", "01CASE", "report"), &draft(1, "mine"))
        .unwrap();
    // Names that would run together if the key were their concatenation.
    for other in [
        key("l", "i01CASE", "report"),
        key("li", "01CAS", "Ereport"),
        key("zhang", "01CASE", "report"),
        key("li", "02CASE", "report"),
        key("li", "01CASE", "ask"),
    ] {
        assert_eq!(store.get(&other).unwrap(), None, "{other:?}");
    }
}

fn removed((store, reopen): Subject) {
    let k = key("li", "01CASE", "report");
    store.remove(&k).unwrap();
    store.put(&k, &draft(1, "x")).unwrap();
    store.remove(&k).unwrap();
    assert_eq!(store.get(&k).unwrap(), None);
    assert_eq!(reopen().get(&k).unwrap(), None);
}
