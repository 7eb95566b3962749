//! Routing decisions over a table of cases on a virtual clock, escalation and decline
//! re-routing, and `routing.toml` validation.

use super::*;

const ROSTER: &str = r#"
[sla]
emergency_accept_minutes = 30

[[specialist]]
id = "li"
name = "Li Wei"
specialties = ["radiology"]
qualification = "attending radiologist"
years_independent = 12
utc_offset = "+08:00"
duty = ["mon-fri 08:00-17:00"]

[[specialist]]
id = "chen"
name = "Chen Jing"
specialties = ["radiology"]
qualification = "attending radiologist"
years_independent = 8
utc_offset = "+08:00"
duty = ["mon-fri 08:00-17:00"]

[[specialist]]
id = "zhao"
name = "Zhao Min"
specialties = ["radiology"]
qualification = "radiologist"
years_independent = 5
utc_offset = "+08:00"
duty = ["mon-fri 17:00-08:00"]

[[specialist]]
id = "head"
name = "Head of Radiology"
specialties = ["radiology"]
qualification = "chief radiologist"
years_independent = 25
utc_offset = "+08:00"
duty = ["mon-fri 09:00-12:00"]

[[specialist]]
id = "sun"
name = "Sun Lei"
specialties = ["cardiology"]
qualification = "cardiologist"
years_independent = 15
utc_offset = "+08:00"
duty = ["mon-fri 08:00-17:00"]

[[specialist]]
id = "ali"
name = "Ali Khan"
specialties = ["cardiology"]
qualification = "cardiologist"
years_independent = 9
utc_offset = "+05:00"
duty = ["mon-fri 08:00-17:00"]

[[specialty]]
id = "radiology"
names = ["放射科", "影像科", "Radiology"]

[[specialty]]
id = "cardiology"
names = ["心内科", "心血管内科", "Cardiology", "cardio"]

[[specialty]]
id = "pulmonology"
names = ["呼吸科"]

[[pool]]
id = "radiology"
members = ["li", "chen", "zhao"]
lead = "head"
specialties = ["radiology", "pulmonology"]

[[pool]]
id = "cardiology"
members = ["sun", "ali"]
lead = "sun"

[[rule]]
id = "ecg"
pool = "cardiology"
modality = ["ECG"]

[[rule]]
id = "cardiology"
pool = "cardiology"
specialty = ["cardiology"]

[[rule]]
id = "radiology"
pool = "radiology"
specialty = ["radiology", "pulmonology"]
"#;

fn roster() -> Roster {
    Roster::parse(Path::new("routing.toml"), ROSTER).unwrap()
}

/// Unix ms of a local time at +08:00 in the week of Monday 2026-11-23.
fn at(weekday: &str, hh: i64, mm: i64) -> i64 {
    let monday_utc_midnight = time::macros::datetime!(2026-11-23 00:00 UTC).unix_timestamp();
    let d = DAYS.iter().position(|x| *x == weekday).unwrap() as i64;
    (monday_utc_midnight + d * 86_400 + hh * 3600 + mm * 60 - 8 * 3600) * 1000
}

fn load(open: u32, idle_since: Option<i64>) -> Load {
    Load {
        open_cases: open,
        idle_since_ms: idle_since,
    }
}

struct Case {
    name: &'static str,
    specialty: &'static str,
    modalities: &'static [&'static str],
    urgency: Urgency,
    when: i64,
    loads: Vec<(&'static str, Load)>,
    exclude: &'static [&'static str],
    expect: Result<(&'static str, &'static str), &'static str>,
    /// Words the explanation must contain.
    because: &'static [&'static str],
    alert: bool,
}

#[test]
fn routing_table() {
    let r = roster();
    let cases = [
        Case {
            name: "weekday morning: fewest open cases wins",
            specialty: "radiology",
            modalities: &["CT"],
            urgency: Urgency::Routine,
            when: at("wed", 10, 0),
            loads: vec![("li", load(2, None)), ("chen", load(1, None))],
            exclude: &[],
            expect: Ok(("chen", "radiology")),
            because: &["fewest open cases", "li (2 open)"],
            alert: false,
        },
        Case {
            name: "a tie goes to the one idle longest",
            specialty: "radiology",
            modalities: &["CR"],
            urgency: Urgency::Urgent,
            when: at("wed", 10, 0),
            loads: vec![
                ("li", load(0, Some(at("wed", 9, 0)))),
                ("chen", load(0, Some(at("wed", 8, 30)))),
            ],
            exclude: &[],
            expect: Ok(("chen", "radiology")),
            because: &["idle longest"],
            alert: false,
        },
        Case {
            name: "a specialist who declined is never chosen again",
            specialty: "radiology",
            modalities: &["CT"],
            urgency: Urgency::Routine,
            when: at("wed", 10, 0),
            loads: vec![("li", load(5, None)), ("chen", load(0, None))],
            exclude: &["chen"],
            expect: Ok(("li", "radiology")),
            because: &["li (5 open)"],
            alert: false,
        },
        Case {
            name: "at night only the night shift is on duty",
            specialty: "radiology",
            modalities: &["CT"],
            urgency: Urgency::Emergency,
            when: at("wed", 22, 0),
            loads: vec![("zhao", load(4, None))],
            exclude: &[],
            expect: Ok(("zhao", "radiology")),
            because: &["zhao (4 open)"],
            alert: false,
        },
        Case {
            name: "an overnight shift covers the next morning until it ends",
            specialty: "radiology",
            modalities: &[],
            urgency: Urgency::Urgent,
            when: at("thu", 7, 59),
            loads: vec![],
            exclude: &[],
            expect: Ok(("zhao", "radiology")),
            because: &[],
            alert: false,
        },
        Case {
            name: "and hands over when the day shift starts",
            specialty: "radiology",
            modalities: &[],
            urgency: Urgency::Urgent,
            when: at("thu", 8, 0),
            loads: vec![("li", load(1, None)), ("chen", load(2, None))],
            exclude: &[],
            expect: Ok(("li", "radiology")),
            because: &["chen (2 open)"],
            alert: false,
        },
        Case {
            name: "nobody on duty on Saturday: the lead, with an alert",
            specialty: "radiology",
            modalities: &["DX"],
            urgency: Urgency::Emergency,
            when: at("sat", 10, 0),
            loads: vec![],
            exclude: &[],
            expect: Ok(("head", "radiology")),
            because: &["nobody on duty", "lead head"],
            alert: true,
        },
        Case {
            name: "the lead excluded too: nobody",
            specialty: "radiology",
            modalities: &[],
            urgency: Urgency::Routine,
            when: at("sat", 10, 0),
            loads: vec![],
            exclude: &["head"],
            expect: Err("nobody in pool radiology"),
            because: &[],
            alert: false,
        },
        Case {
            name: "an ECG goes to cardiology whatever the specialty asked",
            specialty: "radiology",
            modalities: &["ECG"],
            urgency: Urgency::Routine,
            when: at("wed", 10, 0),
            loads: vec![],
            exclude: &[],
            expect: Ok(("sun", "ecg")),
            because: &["rule ecg"],
            alert: false,
        },
        Case {
            name: "another time zone: 10:00 in Beijing is 07:00 for ali, off duty",
            specialty: "cardiology",
            modalities: &[],
            urgency: Urgency::Routine,
            when: at("wed", 10, 0),
            loads: vec![("sun", load(3, None)), ("ali", load(0, None))],
            exclude: &[],
            expect: Ok(("sun", "cardiology")),
            because: &["sun (3 open)"],
            alert: false,
        },
        Case {
            name: "14:00 in Beijing is 11:00 for ali, on duty and less loaded",
            specialty: "cardiology",
            modalities: &[],
            urgency: Urgency::Routine,
            when: at("wed", 14, 0),
            loads: vec![("sun", load(3, None)), ("ali", load(0, None))],
            exclude: &[],
            expect: Ok(("ali", "cardiology")),
            because: &["sun (3 open)"],
            alert: false,
        },
        Case {
            name: "a specialty the roster does not know is never guessed",
            specialty: "dermatology",
            modalities: &[],
            urgency: Urgency::Routine,
            when: at("wed", 10, 0),
            loads: vec![],
            exclude: &[],
            expect: Err("specialty 'dermatology' is not in the roster"),
            because: &[],
            alert: false,
        },
        Case {
            name: "neurology with no neurology pool is not assigned",
            specialty: "neurology",
            modalities: &["CT"],
            urgency: Urgency::Emergency,
            when: at("wed", 10, 0),
            loads: vec![],
            exclude: &[],
            expect: Err("specialty 'neurology' is not in the roster"),
            because: &[],
            alert: false,
        },
        Case {
            name: "an emergency ECG typed in Chinese goes to the cardiologist",
            specialty: "心内科",
            modalities: &["ECG"],
            urgency: Urgency::Emergency,
            when: at("wed", 10, 0),
            loads: vec![],
            exclude: &[],
            expect: Ok(("sun", "ecg")),
            because: &["rule ecg"],
            alert: false,
        },
        Case {
            name: "a Chinese name or an alias finds its specialty's rule",
            specialty: " Cardio ",
            modalities: &[],
            urgency: Urgency::Urgent,
            when: at("wed", 10, 0),
            loads: vec![],
            exclude: &[],
            expect: Ok(("sun", "cardiology")),
            because: &["rule cardiology"],
            alert: false,
        },
        Case {
            name: "a pool reads the specialties it declares",
            specialty: "呼吸科",
            modalities: &["CR"],
            urgency: Urgency::Routine,
            when: at("wed", 10, 0),
            loads: vec![("li", load(1, None)), ("chen", load(0, None))],
            exclude: &[],
            expect: Ok(("chen", "radiology")),
            because: &["rule radiology"],
            alert: false,
        },
    ];
    for case in cases {
        let modalities: Vec<String> = case.modalities.iter().map(|m| m.to_string()).collect();
        let exclude: Vec<String> = case.exclude.iter().map(|m| m.to_string()).collect();
        let loads: HashMap<String, Load> = case
            .loads
            .iter()
            .map(|(id, l)| (id.to_string(), l.clone()))
            .collect();
        let request = Request {
            clinic: "jinzhou",
            specialty: case.specialty,
            modalities: &modalities,
            urgency: case.urgency,
            exclude: &exclude,
        };
        let got = r.route(&request, &loads, case.when);
        match (case.expect, got) {
            (Ok((who, rule)), Ok(d)) => {
                assert_eq!(
                    (d.specialist.as_str(), d.rule.as_str()),
                    (who, rule),
                    "{}: {}",
                    case.name,
                    d.reason
                );
                for word in case.because {
                    assert!(
                        d.reason.contains(word),
                        "{}: '{}' lacks '{word}'",
                        case.name,
                        d.reason
                    );
                }
                assert_eq!(d.alert.is_some(), case.alert, "{}: alert", case.name);
            }
            (Err(text), Err(e)) => {
                assert!(e.to_string().contains(text), "{}: {e}", case.name)
            }
            (want, got) => panic!("{}: wanted {want:?}, got {got:?}", case.name),
        }
    }
}

#[test]
fn an_unaccepted_case_escalates_after_its_sla_to_someone_else() {
    let r = roster();
    let assigned_at = at("wed", 10, 0);
    assert_eq!(
        r.escalation_due_ms(Urgency::Emergency, assigned_at),
        assigned_at + 30 * 60_000
    );
    assert_eq!(
        r.escalation_due_ms(Urgency::Urgent, assigned_at),
        assigned_at + 4 * 3_600_000,
        "default SLA for urgent"
    );
    assert_eq!(
        r.escalation_due_ms(Urgency::Routine, assigned_at),
        assigned_at + 48 * 3_600_000
    );
    // At the deadline the case is routed again without its assignee.
    let exclude = vec!["chen".to_string()];
    let loads = HashMap::from([("li".to_string(), load(9, None))]);
    let d = r
        .route(
            &Request {
                clinic: "jinzhou",
                specialty: "radiology",
                modalities: &[],
                urgency: Urgency::Emergency,
                exclude: &exclude,
            },
            &loads,
            r.escalation_due_ms(Urgency::Emergency, assigned_at),
        )
        .unwrap();
    assert_eq!(d.specialist, "li");
}

#[test]
fn roster_errors_name_the_entry_and_the_fix() {
    let cases = [
        (
            ROSTER.replace(
                r#"members = ["li", "chen", "zhao"]"#,
                r#"members = ["li", "wu"]"#,
            ),
            "pool radiology: wu is not a [[specialist]] id",
        ),
        (
            ROSTER.replace(
                r#"pool = "cardiology"
modality"#,
                r#"pool = "cardio"
modality"#,
            ),
            "rule ecg: pool cardio is not a [[pool]] id",
        ),
        (
            ROSTER.replace("mon-fri 17:00-08:00", "weekdays 17:00-08:00"),
            "specialist zhao: duty 'weekdays 17:00-08:00': 'weekdays' is not a day",
        ),
        (
            ROSTER.replace(r#"utc_offset = "+05:00""#, r#"utc_offset = "Asia/Karachi""#),
            "specialist ali: utc_offset 'Asia/Karachi' is not an offset like +08:00",
        ),
        (
            ROSTER.replace(r#"id = "chen""#, r#"id = "li""#),
            "specialist li: the id is used twice",
        ),
        (
            ROSTER.replace(
                "years_independent = 12",
                "years_independent = 12\nshift = 3",
            ),
            "unknown field `shift`",
        ),
    ];
    let more = [
        (
            ROSTER.replace(
                r#"id = "cardiology"
pool = "cardiology""#,
                r#"id = "cardiology"
pool = "radiology""#,
            ),
            "rule cardiology: it sends cardiology to pool radiology, which reads pulmonology, radiology",
        ),
        (
            ROSTER.replace(r#"names = ["呼吸科"]"#, r#"names = ["心内科"]"#),
            "specialty pulmonology: the name '心内科' is also specialty cardiology's",
        ),
        (
            ROSTER.replace(
                r#"specialty = ["radiology", "pulmonology"]"#,
                r#"specialty = ["radiology", "neurology"]"#,
            ),
            "rule radiology: specialty 'neurology' is not a [[specialty]]",
        ),
    ];
    for (text, want) in cases.into_iter().chain(more) {
        let err = Roster::parse(Path::new("routing.toml"), &text).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(want), "{msg}\nlacks: {want}");
        assert!(msg.starts_with("routing.toml"), "{msg}");
    }
}

/// A last rule without conditions catches only what its pool reads: a known specialty of
/// another pool, or one the roster does not know, is not handed to it.
#[test]
fn a_catch_all_rule_catches_only_what_its_pool_reads() {
    let text = ROSTER.replace(
        r#"[[rule]]
id = "ecg""#,
        r#"[[rule]]
id = "everything-radiology-reads"
pool = "radiology"

[[rule]]
id = "ecg""#,
    );
    let r = Roster::parse(Path::new("routing.toml"), &text).unwrap();
    let route = |specialty: &str| {
        r.route(
            &Request {
                clinic: "jinzhou",
                specialty,
                modalities: &[],
                urgency: Urgency::Urgent,
                exclude: &[],
            },
            &HashMap::new(),
            at("wed", 10, 0),
        )
    };
    assert_eq!(route("放射科").unwrap().rule, "everything-radiology-reads");
    assert_eq!(route("cardiology").unwrap().specialist, "sun");
    assert!(matches!(
        route("neurology"),
        Err(RouteError::UnknownSpecialty { .. })
    ));
}

/// What the clinics' forms offer: each specialty some pool reads, once, named in Chinese and
/// English from its names, in the file's order.
#[test]
fn the_catalog_offers_what_the_pools_read_with_their_chinese_and_english_names() {
    let r = roster();
    let ids: Vec<&str> = r.catalog.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["radiology", "cardiology", "pulmonology"]);
    let cardiology = &r.catalog[1];
    assert_eq!(cardiology.name(true), "心内科");
    assert_eq!(cardiology.name(false), "Cardiology");

    // A specialty no pool reads is not offered: no case could be routed to it.
    let text = format!("{ROSTER}\n[[specialty]]\nid = \"neurology\"\nnames = [\"神经内科\"]\n");
    let r = Roster::parse(Path::new("routing.toml"), &text).unwrap();
    assert!(r.catalog.iter().all(|s| s.id != "neurology"));
}

/// The roster page shows duty hours as the file writes them, and what it shows reads back
/// as the same shift.
#[test]
fn a_shift_is_written_back_in_the_files_syntax() {
    for text in [
        "mon-fri 08:00-17:00",
        "sat,sun 09:00-12:00",
        "daily 20:00-08:00",
        "mon,wed,fri 00:00-24:00",
        "tue-thu,sun 07:30-12:15",
    ] {
        let shift = parse_shift(text).unwrap();
        assert_eq!(shift.to_string(), text);
        assert_eq!(parse_shift(&shift.to_string()).unwrap(), shift);
    }
}
