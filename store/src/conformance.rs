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
