//! Drafts of what people type on a case (a report, a question, an answer, an addendum): the
//! pages save them as they are typed and fill the form with them again, so neither a page's
//! refresh, a reload, another PC nor a restart loses typing. Each daemon keeps them behind the
//! drafts port ([`store::drafts`]) and asks its own access policy before a save; a draft is
//! only ever read back by its author.

use std::collections::BTreeMap;
use std::sync::Arc;

use store::drafts::{Draft, DraftKey, DraftStore};
use tracing::warn;

/// The forms that keep drafts, and the fields each keeps. An answer's form is `answer-<n>`,
/// one per question.
const FORMS: &[(&str, &[&str])] = &[
    ("report", &["findings", "impression", "recommendation"]),
    ("ask", &["text"]),
    ("addendum", &["text"]),
    ("answer", &["text"]),
];

/// The longest field a draft keeps, in characters (a report is a few thousand).
pub const MAX_FIELD_CHARS: usize = 20_000;

/// A form name a draft may be kept under, and the fields it keeps; `None` for any other.
pub fn fields_of(form: &str) -> Option<&'static [&'static str]> {
    let base = match form.split_once('-') {
        Some((base, n))
            if !n.is_empty() && n.len() <= 12 && n.bytes().all(|b| b.is_ascii_digit()) =>
        {
            base
        }
        Some(_) => return None,
        None => form,
    };
    FORMS
        .iter()
        .find(|(name, _)| *name == base)
        .filter(|(name, _)| (*name == "answer") == (base.len() != form.len()))
        .map(|(_, fields)| *fields)
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DraftProblem {
    #[error(
        "no form '{0}' keeps drafts; the forms are report, ask, addendum and answer-<question>"
    )]
    NoSuchForm(String),
    #[error("the field '{0}' is longer than {MAX_FIELD_CHARS} characters; shorten it")]
    TooLong(String),
    #[error("{0}")]
    Store(String),
}

#[derive(Clone)]
pub struct Drafts {
    store: Arc<dyn DraftStore>,
}

fn key(user: &str, case: &str, form: &str) -> DraftKey {
    DraftKey {
        user: user.to_owned(),
        case: case.to_owned(),
        form: form.to_owned(),
    }
}

impl Drafts {
    pub fn new(store: Arc<dyn DraftStore>) -> Self {
        Self { store }
    }

    /// Keeps `user`'s draft of `form` on `case`: the form's own fields of `fields`, the rest
    /// ignored. A draft with nothing typed is dropped. The caller has checked that `user`
    /// may work on the case. Blocking.
    pub fn save<'a>(
        &self,
        user: &str,
        case: &str,
        form: &str,
        fields: impl IntoIterator<Item = (&'a str, &'a str)>,
        now_ms: i64,
    ) -> Result<(), DraftProblem> {
        let kept = fields_of(form).ok_or_else(|| DraftProblem::NoSuchForm(form.to_owned()))?;
        let mut draft = Draft {
            saved_at_ms: now_ms,
            fields: BTreeMap::new(),
        };
        for (name, value) in fields {
            if !kept.contains(&name) {
                continue;
            }
            if value.chars().count() > MAX_FIELD_CHARS {
                return Err(DraftProblem::TooLong(name.to_owned()));
            }
            if !value.trim().is_empty() {
                draft.fields.insert(name.to_owned(), value.to_owned());
            }
        }
        let k = key(user, case, form);
        let stored = if draft.fields.is_empty() {
            self.store.remove(&k)
        } else {
            self.store.put(&k, &draft)
        };
        stored.map_err(|e| DraftProblem::Store(e.to_string()))
    }

    /// `user`'s draft of `form` on `case`: its fields, empty when there is none (or it cannot
    /// be read, which is logged: a page still shows). Blocking.
    pub fn load(&self, user: &str, case: &str, form: &str) -> BTreeMap<String, String> {
        match self.store.get(&key(user, case, form)) {
            Ok(d) => d.map(|d| d.fields).unwrap_or_default(),
            Err(e) => {
                warn!(error = %e, "cannot read a draft; the form shows empty");
                BTreeMap::new()
            }
        }
    }

    /// Drops the draft once what it was for has been sent. Blocking.
    pub fn clear(&self, user: &str, case: &str, form: &str) {
        if let Err(e) = self.store.remove(&key(user, case, form)) {
            warn!(error = %e, "cannot drop a sent draft");
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn drafts() -> Drafts {
        Drafts::new(Arc::new(store::drafts::memory::MemoryDrafts::default()))
    }

    #[test]
    fn only_known_forms_and_their_own_fields_are_kept() {
        assert!(fields_of("report").is_some());
        assert!(fields_of("answer-3").is_some());
        for bad in [
            "answer", "report-1", "answer-", "answer-x", "sign", "../x", "",
        ] {
            assert_eq!(fields_of(bad), None, "{bad}");
        }
        let d = drafts();
        d.save(
            "li",
            "C",
            "report",
            [("impression", "normal"), ("csrf", "t"), ("password", "p")],
            1,
        )
        .unwrap();
        let kept = d.load("li", "C", "report");
        assert_eq!(kept.len(), 1, "{kept:?}");
        assert_eq!(kept["impression"], "normal");
        assert_eq!(
            d.save("li", "C", "sign", [("text", "x")], 1),
            Err(DraftProblem::NoSuchForm("sign".into()))
        );
        let long = "x".repeat(MAX_FIELD_CHARS + 1);
        assert!(matches!(
            d.save("li", "C", "ask", [("text", long.as_str())], 1),
            Err(DraftProblem::TooLong(_))
        ));
    }

    #[test]
    fn an_emptied_draft_and_a_sent_one_are_dropped() {
        let d = drafts();
        d.save("li", "C", "ask", [("text", "which side?")], 1)
            .unwrap();
        assert_eq!(
            d.load("zhang", "C", "ask").len(),
            0,
            "another's draft is not read"
        );
        d.save("li", "C", "ask", [("text", "  ")], 2).unwrap();
        assert!(d.load("li", "C", "ask").is_empty());
        d.save("li", "C", "ask", [("text", "again")], 3).unwrap();
        d.clear("li", "C", "ask");
        assert!(d.load("li", "C", "ask").is_empty());
    }
}
