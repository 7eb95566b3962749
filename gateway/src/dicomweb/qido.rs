//! QIDO-RS searches (DICOM PS3.18 §10.6) without I/O: the query's matching keys, `limit`,
//! `offset`, `includefield` and `fuzzymatching` parsed, values matched as PS3.4 §C.2.2.2
//! says (universal, single value, wildcards, UID lists, date and time ranges), and which
//! attributes each level answers with.

use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
use dicom_core::{Tag, VR};
use dicom_dictionary_std::{tags, StandardDataDictionary};

/// What a search lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Study,
    Series,
    Instance,
}

/// The answer's attributes beyond each level's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Include {
    /// `includefield=all`: every top-level attribute of the entry's first instance at its
    /// level (no bulk data).
    All,
    Tags(Vec<Tag>),
}

/// A parsed search.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// Matching keys and their values, as sent.
    pub keys: Vec<(Tag, String)>,
    pub include: Include,
    pub limit: Option<usize>,
    pub offset: usize,
    pub fuzzy: bool,
}

/// Why a search cannot be run (400), in words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadQuery(pub String);

/// A tag as a query names it: its keyword (`PatientName`) or eight hex digits (`00100010`).
fn tag_named(name: &str) -> Option<Tag> {
    daemon::dicomweb::parse_tag_key(name)
        .or_else(|| StandardDataDictionary.by_name(name).map(|e| e.tag()))
}

/// A tag's VR by the standard dictionary (`UN` for a tag it does not know).
pub fn vr_of(tag: Tag) -> VR {
    StandardDataDictionary
        .by_tag(tag)
        .map_or(VR::UN, |e| e.vr().relaxed())
}

impl Query {
    /// Parses a query string's pairs.
    pub fn parse(pairs: &[(String, String)]) -> Result<Self, BadQuery> {
        let mut query = Query {
            keys: Vec::new(),
            include: Include::Tags(Vec::new()),
            limit: None,
            offset: 0,
            fuzzy: false,
        };
        for (name, value) in pairs {
            match name.as_str() {
                "limit" => {
                    let limit: usize = value.parse().map_err(|_| {
                        BadQuery(format!("limit={value} is not a count; send limit=100"))
                    })?;
                    if limit == 0 {
                        return Err(BadQuery(
                            "limit=0 asks for no match; send limit=1 or more".into(),
                        ));
                    }
                    query.limit = Some(limit);
                }
                "offset" => {
                    query.offset = value.parse().map_err(|_| {
                        BadQuery(format!("offset={value} is not a count; send offset=0"))
                    })?
                }
                "fuzzymatching" => query.fuzzy = value == "true",
                "includefield" => {
                    for field in value.split(',').map(str::trim).filter(|f| !f.is_empty()) {
                        if field == "all" {
                            query.include = Include::All;
                            continue;
                        }
                        let tag = tag_named(field).ok_or_else(|| {
                            BadQuery(format!(
                                "includefield names {field}, which is neither a DICOM keyword \
                                 nor a tag; name attributes as PatientName or 00100010"
                            ))
                        })?;
                        if let Include::Tags(list) = &mut query.include {
                            list.push(tag);
                        }
                    }
                }
                // A cache-busting parameter some viewers add.
                "_" => {}
                key => {
                    let tag = tag_named(key).ok_or_else(|| {
                        BadQuery(format!(
                            "the search key {key} is neither a DICOM keyword nor a tag, nor one \
                             of limit, offset, includefield, fuzzymatching"
                        ))
                    })?;
                    query.keys.push((tag, value.clone()));
                }
            }
        }
        Ok(query)
    }

    /// The value asked of `tag`, if it is a matching key.
    pub fn key(&self, tag: Tag) -> Option<&str> {
        self.keys
            .iter()
            .find(|(t, _)| *t == tag)
            .map(|(_, v)| v.as_str())
    }
}

/// Whether `values` (an attribute's values as text; empty when absent) match the key `asked`
/// for an attribute of `vr` (PS3.4 §C.2.2.2). An empty key matches anything.
pub fn matches(vr: VR, asked: &str, values: &[String], fuzzy: bool) -> bool {
    let asked = asked.trim();
    if asked.is_empty() || asked == "*" {
        return true;
    }
    match vr {
        VR::UI => {
            let wanted: Vec<&str> = asked
                .split([',', '\\'])
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect();
            values.iter().any(|v| wanted.contains(&v.as_str()))
        }
        VR::DA | VR::TM | VR::DT => values.iter().any(|v| in_range(vr, asked, v)),
        VR::PN => values.iter().any(|v| name_matches(asked, v, fuzzy)),
        _ => {
            let alternatives: Vec<&str> = asked.split('\\').collect();
            values.iter().any(|v| {
                alternatives
                    .iter()
                    .any(|a| wildcard(a.trim().as_bytes(), v.trim().as_bytes()))
            })
        }
    }
}

/// Date, time and date-time matching: one value, or a range `from-to` with either end open.
fn in_range(vr: VR, asked: &str, value: &str) -> bool {
    let norm = |s: &str| -> String {
        let s: String = s.chars().filter(|c| !matches!(c, ':' | ' ')).collect();
        // Times compare by their digits; a shorter one means the start of its unit.
        if vr == VR::TM {
            s.split('.').next().unwrap_or("").to_owned()
        } else {
            s
        }
    };
    let value = norm(value);
    if value.is_empty() {
        return false;
    }
    let Some((from, to)) = asked.split_once('-') else {
        let asked = norm(asked);
        return value.starts_with(&asked) || asked.starts_with(&value);
    };
    let (from, to) = (norm(from), norm(to));
    let cut = |s: &str, n: usize| s.get(..n.min(s.len())).unwrap_or(s).to_owned();
    (from.is_empty() || cut(&value, from.len()) >= from)
        && (to.is_empty() || cut(&value, to.len()) <= to)
}

/// Person name matching: the key's wildcards against the whole name or any of its
/// representations (alphabetic, ideographic, phonetic), ignoring case and the padding of empty
/// components; with fuzzy matching, also a key matching the start of any one name part
/// (family, given, middle).
fn name_matches(asked: &str, name: &str, fuzzy: bool) -> bool {
    let asked = asked.to_lowercase();
    let tidy = |s: &str| s.trim().trim_end_matches('^').to_lowercase();
    name.split('=').map(tidy).any(|group| {
        if wildcard(asked.as_bytes(), group.as_bytes()) {
            return true;
        }
        fuzzy
            && group.split(['^', ' ']).any(|part| {
                let pattern = format!("{}*", asked.trim_end_matches('*'));
                wildcard(pattern.as_bytes(), part.as_bytes())
            })
    })
}

/// `*` (any run) and `?` (one character) wildcard matching over bytes; a `?` stands for one
/// UTF-8 character.
fn wildcard(pattern: &[u8], text: &[u8]) -> bool {
    let pattern = String::from_utf8_lossy(pattern);
    let text = String::from_utf8_lossy(text);
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// The attributes a level answers with (PS3.18 Tables 10.6.3-3 to 10.6.3-5), besides the
/// matching keys and the included fields. Series and instances carry their study's and
/// patient's attributes too, as Orthanc's answers do, so a flat search is self-contained.
pub fn answered(level: Level) -> Vec<Tag> {
    const PATIENT_STUDY: &[Tag] = &[
        tags::SPECIFIC_CHARACTER_SET,
        tags::STUDY_DATE,
        tags::STUDY_TIME,
        tags::ACCESSION_NUMBER,
        tags::REFERRING_PHYSICIAN_NAME,
        tags::TIMEZONE_OFFSET_FROM_UTC,
        tags::RETRIEVE_URL,
        tags::PATIENT_NAME,
        tags::PATIENT_ID,
        tags::PATIENT_BIRTH_DATE,
        tags::PATIENT_SEX,
        tags::STUDY_INSTANCE_UID,
        tags::STUDY_ID,
    ];
    const STUDY: &[Tag] = &[
        tags::INSTANCE_AVAILABILITY,
        tags::MODALITIES_IN_STUDY,
        tags::STUDY_DESCRIPTION,
        tags::NUMBER_OF_STUDY_RELATED_SERIES,
        tags::NUMBER_OF_STUDY_RELATED_INSTANCES,
    ];
    const SERIES: &[Tag] = &[
        tags::MODALITY,
        tags::SERIES_DESCRIPTION,
        tags::SERIES_INSTANCE_UID,
        tags::SERIES_NUMBER,
        tags::NUMBER_OF_SERIES_RELATED_INSTANCES,
        tags::PERFORMED_PROCEDURE_STEP_START_DATE,
        tags::PERFORMED_PROCEDURE_STEP_START_TIME,
    ];
    const INSTANCE: &[Tag] = &[
        tags::SOP_CLASS_UID,
        tags::SOP_INSTANCE_UID,
        tags::INSTANCE_AVAILABILITY,
        tags::INSTANCE_NUMBER,
        tags::ROWS,
        tags::COLUMNS,
        tags::BITS_ALLOCATED,
        tags::NUMBER_OF_FRAMES,
    ];
    let mut out = PATIENT_STUDY.to_vec();
    match level {
        Level::Study => out.extend_from_slice(STUDY),
        Level::Series => out.extend_from_slice(SERIES),
        Level::Instance => {
            out.extend_from_slice(SERIES);
            out.extend_from_slice(INSTANCE);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Vec<String> {
        vec![v.to_owned()]
    }

    #[test]
    fn names_match_with_wildcards_any_case_and_any_representation() {
        assert!(matches(VR::PN, "doe*", &s("Doe^John"), false));
        assert!(matches(VR::PN, "*JOHN", &s("Doe^John"), false));
        assert!(matches(VR::PN, "D?e^John", &s("Doe^John^^"), false));
        assert!(!matches(VR::PN, "john", &s("Doe^John"), false));
        assert!(matches(VR::PN, "john", &s("Doe^John"), true));
        assert!(matches(VR::PN, "王*", &s("Wang^Wei=王^伟"), false));
        assert!(!matches(VR::PN, "li*", &s("Wang^Wei=王^伟"), true));
        assert!(!matches(VR::PN, "doe", &[], false));
        assert!(
            matches(VR::PN, "", &[], false),
            "an empty key matches anything"
        );
    }

    #[test]
    fn dates_match_single_values_and_open_or_closed_ranges() {
        let d = s("20260315");
        assert!(matches(VR::DA, "20260315", &d, false));
        assert!(matches(VR::DA, "20260301-20260331", &d, false));
        assert!(matches(VR::DA, "20260301-", &d, false));
        assert!(matches(VR::DA, "-20260315", &d, false));
        assert!(!matches(VR::DA, "20260316-", &d, false));
        assert!(!matches(VR::DA, "-20260314", &d, false));
        assert!(matches(VR::TM, "0800-1200", &s("093015.123"), false));
        assert!(!matches(VR::TM, "1000-1200", &s("093015"), false));
    }

    #[test]
    fn uids_match_a_list_and_strings_match_exactly_or_by_wildcard() {
        let uid = s("1.2.3");
        assert!(matches(VR::UI, "1.2.4,1.2.3", &uid, false));
        assert!(matches(VR::UI, "1.2.4\\1.2.3", &uid, false));
        assert!(!matches(VR::UI, "1.2", &uid, false));
        assert!(matches(VR::CS, "CT\\MR", &s("MR"), false));
        assert!(!matches(VR::CS, "CT", &s("CTX"), false));
        assert!(matches(VR::SH, "ACC*", &s("ACC123"), false));
    }

    #[test]
    fn a_query_takes_keywords_or_tags_and_names_what_it_does_not_know() {
        let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter()
                .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
                .collect()
        };
        let q = Query::parse(&pairs(&[
            ("PatientName", "Doe*"),
            ("00080061", "CT"),
            ("includefield", "00081030,StudyDescription"),
            ("limit", "10"),
            ("offset", "5"),
            ("fuzzymatching", "true"),
        ]))
        .unwrap();
        assert_eq!(q.key(tags::PATIENT_NAME), Some("Doe*"));
        assert_eq!(q.key(tags::MODALITIES_IN_STUDY), Some("CT"));
        assert_eq!(
            q.include,
            Include::Tags(vec![tags::STUDY_DESCRIPTION, tags::STUDY_DESCRIPTION])
        );
        assert_eq!((q.limit, q.offset, q.fuzzy), (Some(10), 5, true));
        let e = Query::parse(&pairs(&[("PatientNmae", "x")])).unwrap_err();
        assert!(e.0.contains("PatientNmae"), "{e}");
        assert!(Query::parse(&pairs(&[("limit", "ten")])).is_err());
        assert_eq!(
            Query::parse(&pairs(&[("includefield", "all")]))
                .unwrap()
                .include,
            Include::All
        );
    }
}
