//! Finding cases, the same way at both sites: the short case number people say on the phone
//! ([`CaseNumber`]), and the worklists' search, filters and sorting ([`Search`]), which only
//! ever narrow what the site's access policy already let the user see.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

use crate::consult::{Consultation, State, Urgency};
use crate::ClinicId;

const DAY_MS: i64 = 86_400_000;

/// Days since 1970-01-01 of a proleptic Gregorian date (the civil-from-days arithmetic of
/// 400-year eras: 146,097 days each, years counted from March so the leap day comes last).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let m = i64::from(month);
    let day_of_year = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The year (UTC) of a Unix time in milliseconds.
pub fn year_of(unix_ms: i64) -> i64 {
    let days = unix_ms.div_euclid(DAY_MS) + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let year = year_of_era + era * 400;
    // Months counted from March: January and February belong to the next civil year.
    if mp >= 10 {
        year + 1
    } else {
        year
    }
}

/// A `YYYY-MM-DD` date as days since 1970-01-01; `None` for anything else.
pub fn parse_date(text: &str) -> Option<i64> {
    let mut parts = text.trim().splitn(3, '-');
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    if y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    let (year, month, day): (i64, u32, u32) = (y.parse().ok()?, m.parse().ok()?, d.parse().ok()?);
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    (1..=days_in_month)
        .contains(&day)
        .then(|| days_from_civil(year, month, day))
}

/// The short case number: `<prefix>-<year>-<sequence>`, e.g. `JZ-2026-0042`. The clinic gives
/// it when it creates the case (offline too), counting its own cases of that year under the
/// lock that appends the created event, so two cases of one clinic never share one.
///
/// The prefix is the clinic's `[clinic] case_prefix` when configured, else derived from its
/// id ([`CaseNumber::prefix_of`]). The year is the UTC year of the creation. The long
/// consultation id stays the key (in URLs and on the link); the number is for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaseNumber;

/// The longest prefix accepted (a short code is the point).
pub const MAX_PREFIX: usize = 6;

impl CaseNumber {
    /// A prefix from a clinic id: the first letter of each part of the id (split at `-`, `_`
    /// and `.`), with a part made only of digits kept whole, uppercased, at most
    /// [`MAX_PREFIX`] characters: `jinzhou-03` → `J03`, `xiao-he` → `XH`. An id of one part
    /// gives its first two characters: `jinzhou` → `JI`.
    pub fn prefix_of(clinic: &ClinicId) -> String {
        let id = clinic.as_str();
        let parts: Vec<&str> = id
            .split(['-', '_', '.'])
            .filter(|p| !p.is_empty())
            .collect();
        let mut prefix = String::new();
        if parts.len() > 1 {
            for part in parts {
                if part.bytes().all(|b| b.is_ascii_digit()) {
                    prefix.push_str(part);
                } else if let Some(c) = part.chars().find(|c| c.is_ascii_alphanumeric()) {
                    prefix.push(c);
                }
            }
        }
        if prefix.chars().count() < 2 {
            prefix = id
                .chars()
                .filter(|c| c.is_ascii_alphanumeric())
                .take(2)
                .collect();
        }
        let mut prefix: String = prefix.to_ascii_uppercase();
        prefix.truncate(MAX_PREFIX);
        if prefix.is_empty() {
            prefix.push('C');
        }
        prefix
    }

    /// A configured prefix, uppercased: 1 to [`MAX_PREFIX`] ASCII letters and digits.
    pub fn check_prefix(text: &str) -> Result<String, String> {
        let t = text.trim();
        if t.is_empty() || t.len() > MAX_PREFIX || !t.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(format!(
                "a case prefix is 1 to {MAX_PREFIX} letters or digits (e.g. \"JZ\"), not '{text}'"
            ));
        }
        Ok(t.to_ascii_uppercase())
    }

    /// `JZ-2026-0042`.
    pub fn format(prefix: &str, year: i64, sequence: u64) -> String {
        format!("{prefix}-{year:04}-{sequence:04}")
    }

    /// The prefix, year and sequence of a case number; `None` for any other text.
    pub fn parse(text: &str) -> Option<(&str, i64, u64)> {
        let mut parts = text.rsplitn(3, '-');
        let (seq, year, prefix) = (parts.next()?, parts.next()?, parts.next()?);
        let digits = |s: &str, min: usize, max: usize| {
            (min..=max).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
        };
        if !digits(seq, 1, 9)
            || !digits(year, 4, 4)
            || prefix.is_empty()
            || prefix.len() > MAX_PREFIX
            || !prefix.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return None;
        }
        Some((prefix, year.parse().ok()?, seq.parse().ok()?))
    }

    /// The next number of `prefix` in `year`, after the `existing` numbers of the clinic's
    /// cases (others, and numbers of other prefixes or years, are ignored).
    pub fn next<'a>(
        prefix: &str,
        year: i64,
        existing: impl IntoIterator<Item = &'a str>,
    ) -> String {
        let last = existing
            .into_iter()
            .filter_map(Self::parse)
            .filter(|(p, y, _)| p.eq_ignore_ascii_case(prefix) && *y == year)
            .map(|(_, _, s)| s)
            .max()
            .unwrap_or(0);
        Self::format(prefix, year, last + 1)
    }
}

/// What a worklist is narrowed and ordered by: the query parameters of both sites'
/// worklists (`?q=wang&state=assigned&sort=created&dir=desc`). Every field is optional and an
/// empty one is no filter, so a plain HTML form can send them all; a value that names nothing
/// (an unknown state, a malformed date) matches nothing rather than being ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Search {
    /// Free text: every word must be found in the patient's name (case-insensitive, DICOM's
    /// `Family^Given` read with spaces), the patient id, the case number, or the start of the
    /// long id.
    pub q: Option<String>,
    /// Created on or after this day (`YYYY-MM-DD`, UTC).
    pub from: Option<String>,
    /// Created on or before this day (`YYYY-MM-DD`, UTC).
    pub to: Option<String>,
    /// `emergency`, `urgent` or `routine`.
    pub urgency: Option<String>,
    /// A state's label (`assigned`, `awaiting_answer`, …).
    pub state: Option<String>,
    /// A clinic id (the gateway's worklist).
    pub clinic: Option<String>,
    /// A specialty as the request names it.
    pub specialty: Option<String>,
    /// `created`, `urgency` or `state`; none: the site's own order.
    pub sort: Option<String>,
    /// `asc` or `desc` (the default for `created` and `urgency`: newest or most urgent first).
    pub dir: Option<String>,
}

/// Lowercase, `^` (DICOM's name separator) and runs of white space as one space.
fn normalize(text: &str) -> String {
    text.replace('^', " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

fn given(field: &Option<String>) -> Option<&str> {
    field.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// How a worklist is sorted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    Created,
    Urgency,
    State,
}

impl Search {
    /// No filter given: the worklist as it was.
    pub fn is_empty(&self) -> bool {
        [
            &self.q,
            &self.from,
            &self.to,
            &self.urgency,
            &self.state,
            &self.clinic,
            &self.specialty,
        ]
        .into_iter()
        .all(|f| given(f).is_none())
    }

    /// Whether `c` is one of the cases asked for.
    pub fn matches(&self, c: &Consultation) -> bool {
        if let Some(q) = given(&self.q) {
            let name = normalize(&c.patient.name);
            let id = c.patient.id.to_lowercase();
            let number = c.number.as_deref().unwrap_or_default().to_lowercase();
            let long = c.id.as_str();
            let every_word = normalize(q).split(' ').all(|word| {
                name.contains(word)
                    || id.contains(word)
                    || number.contains(word)
                    || (word.len() >= 4 && long.starts_with(&word.to_ascii_uppercase()))
            });
            if !every_word {
                return false;
            }
        }
        let day = c.created_at_ms.div_euclid(DAY_MS);
        if let Some(from) = given(&self.from) {
            if parse_date(from).is_none_or(|d| day < d) {
                return false;
            }
        }
        if let Some(to) = given(&self.to) {
            if parse_date(to).is_none_or(|d| day > d) {
                return false;
            }
        }
        if given(&self.urgency).is_some_and(|u| u != c.urgency.label()) {
            return false;
        }
        if given(&self.state).is_some_and(|s| s != c.state.label()) {
            return false;
        }
        if given(&self.clinic).is_some_and(|k| k != c.clinic.as_str()) {
            return false;
        }
        if given(&self.specialty).is_some_and(|s| !s.eq_ignore_ascii_case(c.specialty.trim())) {
            return false;
        }
        true
    }

    /// The sort asked for and whether it runs descending; `None`: the site's own order.
    pub fn order(&self) -> Option<(SortKey, bool)> {
        let key = match given(&self.sort)? {
            "created" => SortKey::Created,
            "urgency" => SortKey::Urgency,
            "state" => SortKey::State,
            _ => return None,
        };
        let desc = match given(&self.dir) {
            Some("asc") => false,
            Some("desc") => true,
            // Newest and most urgent first; states in their order through a case's life.
            _ => key != SortKey::State,
        };
        Some((key, desc))
    }

    /// Compares two cases by the sort asked for (ties keep the order they came in when the
    /// sort is stable); `Equal` when no sort was asked for.
    pub fn compare(&self, a: &SortFields, b: &SortFields) -> Ordering {
        let Some((key, desc)) = self.order() else {
            return Ordering::Equal;
        };
        let ordering = match key {
            SortKey::Created => a.created_at_ms.cmp(&b.created_at_ms),
            SortKey::Urgency => a
                .urgency
                .cmp(&b.urgency)
                .then(b.created_at_ms.cmp(&a.created_at_ms)),
            SortKey::State => a.state.cmp(&b.state),
        };
        if desc {
            ordering.reverse()
        } else {
            ordering
        }
    }
}

/// What a worklist row is sorted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SortFields {
    pub created_at_ms: i64,
    pub urgency: Urgency,
    pub state: State,
}

impl From<&Consultation> for SortFields {
    fn from(c: &Consultation) -> Self {
        Self {
            created_at_ms: c.created_at_ms,
            urgency: c.urgency,
            state: c.state,
        }
    }
}

#[cfg(test)]
mod tests;
