//! What the ports' conformance suites share: each case runs on a fresh subject from the
//! adapter, and a failing case panics with the suite's and the case's names.

/// A case's name and body.
pub type Case<S> = (&'static str, fn(S));

/// Runs every case of `suite`, each on a subject from `fresh`.
pub fn run<S>(suite: &str, cases: &[Case<S>], mut fresh: impl FnMut() -> S) {
    for (name, case) in cases {
        let subject = fresh();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| case(subject)));
        if let Err(e) = outcome {
            let why = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!("{suite} conformance: {name}: {why}");
        }
    }
}

/// Fresh subjects for a sled adapter's suite: each on a database of its own in `dir`, with
/// the adapter `open` makes on it, and a function that opens the adapter again on the same
/// database after a flush (a clean restart).
#[allow(clippy::unwrap_used, clippy::type_complexity)] // A test helper: a failure panics.
pub fn sled_subjects<T: ?Sized + 'static>(
    dir: &std::path::Path,
    open: fn(&sled::Db) -> Box<T>,
) -> impl FnMut() -> (Box<T>, Box<dyn Fn() -> Box<T>>) {
    let dir = dir.to_path_buf();
    let mut n = 0;
    move || {
        n += 1;
        let db = sled::open(dir.join(n.to_string())).unwrap();
        let subject = open(&db);
        let reopen = move || {
            db.flush().unwrap();
            open(&db)
        };
        (subject, Box::new(reopen) as Box<dyn Fn() -> Box<T>>)
    }
}
