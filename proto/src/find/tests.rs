//! Case numbers and the worklists' search.

use super::*;
use crate::consult::{ConsultationId, Patient};

fn case(name: &str, patient_id: &str, number: Option<&str>, created_at_ms: i64) -> Consultation {
    let events = [crate::consult::Event {
        id: crate::consult::EventId {
            clinic: ClinicId::new("jinzhou-03").unwrap(),
            side: crate::consult::Side::Clinic,
            seq: 1,
        },
        seen: 0,
        consultation: ConsultationId::new(created_at_ms as u64, [9; 10]),
        at_ms: created_at_ms,
        actor: "dr".into(),
        kind: crate::consult::EventKind::Created {
            patient: Patient {
                id: patient_id.into(),
                name: name.into(),
                sex: "F".into(),
                birth_date: String::new(),
            },
            clinical_summary: String::new(),
            question: "?".into(),
            specialty: "radiology".into(),
            urgency: Urgency::Urgent,
            number: number.map(str::to_owned),
        },
        seal: None,
    }];
    Consultation::from_events(&events).unwrap()
}

fn q(text: &str) -> Search {
    Search {
        q: Some(text.into()),
        ..Search::default()
    }
}

/// 2026-12-04T12:00:00Z.
const DEC_4: i64 = 1_796_385_600_000;

#[test]
fn years_and_dates_are_counted_in_the_civil_calendar() {
    assert_eq!(year_of(0), 1970);
    assert_eq!(year_of(DEC_4), 2026);
    assert_eq!(year_of(-1), 1969);
    let new_year = parse_date("2027-01-01").unwrap() * DAY_MS;
    assert_eq!(year_of(new_year - 1), 2026);
    assert_eq!(year_of(new_year), 2027);
    assert_eq!(parse_date("1970-01-01"), Some(0));
    assert_eq!(parse_date("2026-12-04"), Some(DEC_4.div_euclid(DAY_MS)));
    assert_eq!(parse_date("2024-02-29"), Some(19_782));
    for bad in [
        "2026-02-29",
        "2026-13-01",
        "2026-1-01",
        "",
        "yesterday",
        "2026-12-00",
    ] {
        assert_eq!(parse_date(bad), None, "{bad}");
    }
}

#[test]
fn a_prefix_comes_from_the_clinic_id_or_its_configuration() {
    let prefix = |id: &str| CaseNumber::prefix_of(&ClinicId::new(id).unwrap());
    assert_eq!(prefix("jinzhou-03"), "J03");
    assert_eq!(prefix("xiao-he"), "XH");
    assert_eq!(prefix("jinzhou"), "JI");
    assert_eq!(prefix("a-very-long-name-of-a-clinic-12345"), "AVLNOA");
    assert_eq!(CaseNumber::check_prefix(" jz ").unwrap(), "JZ");
    assert!(CaseNumber::check_prefix("").is_err());
    assert!(CaseNumber::check_prefix("J-Z").is_err());
    assert!(CaseNumber::check_prefix("TOOLONGX").is_err());
}

#[test]
fn numbers_count_per_prefix_and_year() {
    assert_eq!(CaseNumber::next("JZ", 2026, []), "JZ-2026-0001");
    let existing = [
        "JZ-2026-0001",
        "JZ-2026-0041",
        "JZ-2025-0100",
        "XH-2026-0500",
        "junk",
    ];
    assert_eq!(CaseNumber::next("JZ", 2026, existing), "JZ-2026-0042");
    assert_eq!(CaseNumber::next("JZ", 2027, existing), "JZ-2027-0001");
    assert_eq!(
        CaseNumber::next("JZ", 2026, ["JZ-2026-9999"]),
        "JZ-2026-10000",
        "past 9999 the number grows a digit"
    );
    assert_eq!(CaseNumber::parse("JZ-2026-0042"), Some(("JZ", 2026, 42)));
    for bad in [
        "JZ-26-0042",
        "-2026-0042",
        "JZ-2026-",
        "JZ 2026 0042",
        "J-Z-2026-x",
    ] {
        assert_eq!(CaseNumber::parse(bad), None, "{bad}");
    }
}

#[test]
fn free_text_finds_a_patient_by_any_part_of_the_name_or_id() {
    let c = case("Wang^Xiaoming", "P-1234", Some("J03-2026-0042"), DEC_4);
    for hit in [
        "wang",
        "XIAOMING",
        "xiaoming wang",
        "Wang^Xiao",
        "  wang   xiao ",
        "p-12",
        "0042",
        "j03-2026",
        &c.id.as_str()[..8].to_ascii_lowercase(),
    ] {
        assert!(q(hit).matches(&c), "{hit}");
    }
    for miss in ["li", "wang li", "P-9", "0043", &c.id.as_str()[2..10]] {
        assert!(!q(miss).matches(&c), "{miss}");
    }
    let chinese = case("王小明", "P-1", None, DEC_4);
    assert!(q("小明").matches(&chinese));
    assert!(!q("0042").matches(&chinese), "a case without a number");
}

#[test]
fn filters_narrow_by_date_urgency_state_clinic_and_specialty() {
    let c = case("Wang^Xiaoming", "P-1", None, DEC_4);
    let with = |f: fn(&mut Search)| {
        let mut s = Search::default();
        f(&mut s);
        s.matches(&c)
    };
    assert!(Search::default().is_empty());
    assert!(with(|s| s.from = Some("2026-12-04".into())));
    assert!(with(|s| s.to = Some("2026-12-04".into())));
    assert!(!with(|s| s.from = Some("2026-12-05".into())));
    assert!(!with(|s| s.to = Some("2026-12-03".into())));
    assert!(!with(|s| s.to = Some("not a date".into())));
    assert!(
        with(|s| s.from = Some(String::new())),
        "an empty field filters nothing"
    );
    assert!(with(|s| s.urgency = Some("urgent".into())));
    assert!(!with(|s| s.urgency = Some("routine".into())));
    assert!(with(|s| s.state = Some("draft".into())));
    assert!(!with(|s| s.state = Some("assigned".into())));
    assert!(with(|s| s.clinic = Some("jinzhou-03".into())));
    assert!(!with(|s| s.clinic = Some("jinzhou".into())));
    assert!(with(|s| s.specialty = Some("radiology".into())));
    assert!(!with(|s| s.specialty = Some("cardiology".into())));
}

#[test]
fn sorting_follows_the_key_and_direction_asked_for() {
    let old = SortFields {
        created_at_ms: 1,
        urgency: Urgency::Emergency,
        state: State::Reported,
    };
    let new = SortFields {
        created_at_ms: 2,
        urgency: Urgency::Routine,
        state: State::Assigned,
    };
    let by = |sort: &str, dir: &str| Search {
        sort: Some(sort.into()),
        dir: Some(dir.into()),
        ..Search::default()
    };
    assert_eq!(
        by("created", "").compare(&new, &old),
        Ordering::Less,
        "newest first"
    );
    assert_eq!(by("created", "asc").compare(&new, &old), Ordering::Greater);
    assert_eq!(
        by("urgency", "").compare(&old, &new),
        Ordering::Less,
        "most urgent first"
    );
    assert_eq!(by("state", "").compare(&new, &old), Ordering::Less);
    assert_eq!(by("state", "desc").compare(&new, &old), Ordering::Greater);
    assert_eq!(by("nonsense", "").compare(&new, &old), Ordering::Equal);
    assert_eq!(Search::default().order(), None);
}
