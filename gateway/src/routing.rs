//! Who reads a consultation: `routing.toml` (specialists, pools, rules, SLAs) and the decisions
//! made from it. Pure: the caller passes the time and each specialist's load, so every decision
//! can be replayed and tested on a virtual clock, and each one comes with its explanation.
//!
//! - A request's specialty is read through the roster's specialties and their names in
//!   Chinese and English and aliases (`[[specialty]]`, and every specialist's own): one it
//!   does not know is never assigned by any rule — it waits, unrouted, with an alert.
//! - A request matches the first rule whose conditions (specialty, modality, urgency, clinic)
//!   all hold; the rule names a pool. A rule with neither a specialty nor a modality condition
//!   catches only the specialties its pool serves, and a rule naming a specialty its pool does
//!   not serve is refused when the roster is read.
//! - Among the pool's members on duty now, not excluded (they declined it, or it is being taken
//!   from them), the one with the fewest open cases is chosen; ties go to the one idle longest.
//! - Nobody on duty: the pool's lead, with an alert. The lead excluded too: no decision, and an
//!   alert that names the pool.
//! - Not accepted within the SLA of its urgency: escalate, routed again without the assignee.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::time::Duration;

use daemon::config::{self, ConfigError};
use proto::consult::Urgency;
use proto::hours::{parse_time_of_day, parse_utc_offset};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRouting {
    #[serde(default)]
    sla: RawSla,
    #[serde(default, rename = "specialist")]
    specialists: Vec<RawSpecialist>,
    #[serde(default, rename = "pool")]
    pools: Vec<RawPool>,
    #[serde(default, rename = "rule")]
    rules: Vec<RawRule>,
    #[serde(default, rename = "specialty")]
    specialties: Vec<RawSpecialty>,
    #[serde(default, rename = "template")]
    templates: Vec<Template>,
}

/// A report template: the text a specialist starts a report of a specialty from.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Template {
    /// Its specialty, by any of the specialty's names (the id once the roster is read).
    pub specialty: String,
    /// What the specialist chooses it by, e.g. "头颅 CT 未见异常".
    pub name: String,
    #[serde(default)]
    pub findings: String,
    #[serde(default)]
    pub impression: String,
    #[serde(default)]
    pub recommendation: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpecialty {
    id: String,
    /// Its names as doctors type them: Chinese, English, abbreviations.
    #[serde(default)]
    names: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSla {
    emergency_accept_minutes: Option<u64>,
    urgent_accept_minutes: Option<u64>,
    routine_accept_minutes: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpecialist {
    id: String,
    name: String,
    specialties: Vec<String>,
    qualification: String,
    years_independent: u32,
    /// `+08:00`: the offset from UTC of the specialist's working hours.
    utc_offset: String,
    /// `mon-fri 08:00-17:00`, `sat 08:00-12:00`, `daily 20:00-08:00`, …
    duty: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPool {
    id: String,
    members: Vec<String>,
    lead: String,
    /// The specialties the pool reads (default: its members' and lead's).
    #[serde(default)]
    specialties: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    id: String,
    pool: String,
    specialty: Option<Vec<String>>,
    modality: Option<Vec<String>>,
    urgency: Option<Vec<Urgency>>,
    clinic: Option<Vec<String>>,
}

/// A specialist as the roster describes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Specialist {
    pub id: String,
    pub name: String,
    pub specialties: Vec<String>,
    pub qualification: String,
    pub years_independent: u32,
    /// Seconds east of UTC.
    pub utc_offset_secs: i64,
    pub duty: Vec<Shift>,
}

/// A weekly shift in the specialist's local time: `days` (Monday = 0) from `start` to `end`
/// minutes after midnight; an `end` before `start` runs past midnight into the next day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shift {
    pub days: BTreeSet<u8>,
    pub start: u16,
    pub end: u16,
}

impl std::fmt::Display for Shift {
    /// The file's syntax: `mon-fri 08:00-17:00`, `sat,sun 09:00-12:00`, `daily 20:00-08:00`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.days.len() == 7 {
            f.write_str("daily")?;
        } else {
            // Runs of consecutive days, Monday first.
            let mut runs: Vec<(u8, u8)> = Vec::new();
            for &d in &self.days {
                match runs.last_mut() {
                    Some((_, end)) if *end + 1 == d => *end = d,
                    _ => runs.push((d, d)),
                }
            }
            let name = |d: u8| DAYS.get(usize::from(d)).copied().unwrap_or("?");
            let parts: Vec<String> = runs
                .iter()
                .map(|&(a, b)| match b - a {
                    0 => name(a).to_owned(),
                    1 => format!("{},{}", name(a), name(b)),
                    _ => format!("{}-{}", name(a), name(b)),
                })
                .collect();
            f.write_str(&parts.join(","))?;
        }
        let hm = |m: u16| format!("{:02}:{:02}", m / 60, m % 60);
        write!(f, " {}-{}", hm(self.start), hm(self.end))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    pub id: String,
    pub members: Vec<String>,
    pub lead: String,
    /// Specialty ids the pool reads.
    pub specialties: BTreeSet<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub id: String,
    pub pool: String,
    pub specialty: Option<Vec<String>>,
    pub modality: Option<Vec<String>>,
    pub urgency: Option<Vec<Urgency>>,
    pub clinic: Option<Vec<String>>,
}

/// The specialties `pools` read, named by `listed`: a name with a Chinese character is the
/// Chinese name, one without the English name (the first of each).
fn catalog(
    listed: &[RawSpecialty],
    pools: &BTreeMap<String, Pool>,
) -> Vec<proto::frame::Specialty> {
    let read: BTreeSet<&String> = pools.values().flat_map(|p| &p.specialties).collect();
    let mut out: Vec<proto::frame::Specialty> = listed
        .iter()
        .filter(|sp| read.contains(&sp.id))
        .map(|sp| {
            let chinese = |n: &&String| n.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c));
            proto::frame::Specialty {
                id: sp.id.clone(),
                zh: sp.names.iter().find(chinese).cloned(),
                en: sp.names.iter().find(|n| !chinese(n)).cloned(),
            }
        })
        .collect();
    for id in read {
        if !out.iter().any(|s| &s.id == id) {
            out.push(proto::frame::Specialty {
                id: id.clone(),
                zh: None,
                en: None,
            });
        }
    }
    out
}

/// The validated `routing.toml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roster {
    /// Every name a specialty is known by (lower case) → its id.
    pub specialty_names: BTreeMap<String, String>,
    pub specialists: BTreeMap<String, Specialist>,
    pub pools: BTreeMap<String, Pool>,
    pub rules: Vec<Rule>,
    /// Time to accept, per urgency.
    pub sla: BTreeMap<Urgency, Duration>,
    /// The specialties some pool reads, as clinics' forms offer them: the `[[specialty]]`
    /// entries first, in the file's order, then specialists' own.
    pub catalog: Vec<proto::frame::Specialty>,
    /// Report templates, by specialty id, in the file's order.
    pub templates: Vec<Template>,
}

/// What is being routed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<'a> {
    pub clinic: &'a str,
    pub specialty: &'a str,
    /// Modalities of the attached studies (may be empty when no image has arrived yet).
    pub modalities: &'a [String],
    pub urgency: Urgency,
    /// Never chosen: specialists who declined it, and the one it is being taken from.
    pub exclude: &'a [String],
}

/// A specialist's current load, from the consultations the gateway holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Load {
    pub open_cases: u32,
    /// Unix ms since which the specialist has had nothing to do (no open case); `None` when
    /// busy or never assigned.
    pub idle_since_ms: Option<i64>,
}

/// A routing decision and its explanation, recorded in the consultation's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub specialist: String,
    pub rule: String,
    pub reason: String,
    /// Set when an administrator should look (nobody on duty: the lead was chosen).
    pub alert: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("specialty '{specialty}' is not in the roster: no rule may guess who reads it; add it (or the name the clinic used) under [[specialty]] in routing.toml, or assign the case by hand")]
    UnknownSpecialty { specialty: String },
    #[error("no routing rule matches specialty '{specialty}', urgency {urgency}, clinic {clinic}; add a rule for it to routing.toml, with a pool that reads it")]
    NoRule {
        specialty: String,
        urgency: &'static str,
        clinic: String,
    },
    #[error("rule {rule}: nobody in pool {pool} can take it (members off duty or excluded, and the lead {lead} excluded); an administrator must assign it")]
    NobodyAvailable {
        rule: String,
        pool: String,
        lead: String,
    },
}

/// `routing.toml` problems, each naming the file and the entry.
#[derive(Debug, thiserror::Error)]
pub enum RosterError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{file}: {entry}: {problem}")]
    Invalid {
        file: String,
        entry: String,
        problem: String,
    },
}

/// Time to accept when `routing.toml` does not say: 30 min, 4 h, 48 h (in `proto`, so the
/// clinic counts down with the same table).
pub use proto::consult::default_sla;

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

impl Roster {
    pub fn load(path: &Path) -> Result<Self, RosterError> {
        let raw: RawRouting = config::read(path)?;
        Self::validate(path, raw)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Self, RosterError> {
        let raw: RawRouting = config::parse(path, text)?;
        Self::validate(path, raw)
    }

    fn validate(path: &Path, raw: RawRouting) -> Result<Self, RosterError> {
        let bad = |entry: String, problem: String| RosterError::Invalid {
            file: path.display().to_string(),
            entry,
            problem,
        };
        // Names → ids: each [[specialty]]'s id and names, then specialists' own specialties.
        let mut specialty_names: BTreeMap<String, String> = BTreeMap::new();
        for sp in &raw.specialties {
            let entry = format!("specialty {}", sp.id);
            if sp.id.trim().is_empty() {
                return Err(bad("specialty".into(), "id is empty".into()));
            }
            for name in std::iter::once(&sp.id).chain(&sp.names) {
                let key = name.trim().to_lowercase();
                match specialty_names.insert(key, sp.id.clone()) {
                    Some(other) if other != sp.id => {
                        return Err(bad(
                            entry,
                            format!("the name '{name}' is also specialty {other}'s; a name means one specialty"),
                        ))
                    }
                    _ => {}
                }
            }
        }
        for s in &raw.specialists {
            for name in &s.specialties {
                specialty_names
                    .entry(name.trim().to_lowercase())
                    .or_insert_with(|| name.trim().to_owned());
            }
        }
        let canonical = |name: &str| specialty_names.get(&name.trim().to_lowercase()).cloned();
        let mut specialists = BTreeMap::new();
        for s in raw.specialists {
            let entry = format!("specialist {}", s.id);
            if s.id.trim().is_empty() {
                return Err(bad("specialist".into(), "id is empty".into()));
            }
            if s.specialties.is_empty() {
                return Err(bad(entry, "specialties is empty; list at least one".into()));
            }
            let utc_offset_secs =
                parse_utc_offset(&s.utc_offset).map_err(|p| bad(entry.clone(), p))?;
            let duty = s
                .duty
                .iter()
                .map(|d| parse_shift(d))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|p| bad(entry.clone(), p))?;
            let specialist = Specialist {
                id: s.id.clone(),
                name: s.name,
                specialties: s.specialties,
                qualification: s.qualification,
                years_independent: s.years_independent,
                utc_offset_secs,
                duty,
            };
            if specialists.insert(s.id.clone(), specialist).is_some() {
                return Err(bad(entry, "the id is used twice".into()));
            }
        }
        let mut pools = BTreeMap::new();
        for p in raw.pools {
            let entry = format!("pool {}", p.id);
            if p.members.is_empty() {
                return Err(bad(entry, "members is empty".into()));
            }
            for m in p.members.iter().chain([&p.lead]) {
                if !specialists.contains_key(m) {
                    return Err(bad(
                        entry,
                        format!("{m} is not a [[specialist]] id; add them or fix the name"),
                    ));
                }
            }
            let specialties = match &p.specialties {
                Some(list) => list
                    .iter()
                    .map(|name| {
                        canonical(name).ok_or_else(|| {
                            bad(
                                entry.clone(),
                                format!(
                                    "specialty '{name}' is not a [[specialty]] or any specialist's"
                                ),
                            )
                        })
                    })
                    .collect::<Result<BTreeSet<_>, _>>()?,
                None => p
                    .members
                    .iter()
                    .chain([&p.lead])
                    .filter_map(|m| specialists.get(m))
                    .flat_map(|s: &Specialist| s.specialties.iter())
                    .filter_map(|name| canonical(name))
                    .collect(),
            };
            let pool = Pool {
                id: p.id.clone(),
                members: p.members,
                lead: p.lead,
                specialties,
            };
            if pools.insert(p.id, pool).is_some() {
                return Err(bad(entry, "the id is used twice".into()));
            }
        }
        let mut rule_ids = BTreeSet::new();
        let mut rules = Vec::new();
        for r in raw.rules {
            let entry = format!("rule {}", r.id);
            let Some(pool) = pools.get(&r.pool) else {
                return Err(bad(entry, format!("pool {} is not a [[pool]] id", r.pool)));
            };
            let specialty = match &r.specialty {
                None => None,
                Some(list) => {
                    let mut ids = Vec::new();
                    for name in list {
                        let id = canonical(name).ok_or_else(|| {
                            bad(
                                entry.clone(),
                                format!("specialty '{name}' is not a [[specialty]] or any specialist's; add it"),
                            )
                        })?;
                        if !pool.specialties.contains(&id) {
                            return Err(bad(
                                entry,
                                format!(
                                    "it sends {id} to pool {}, which reads {}; send it to a pool that reads it, or add it to the pool's specialties",
                                    pool.id,
                                    pool.specialties.iter().cloned().collect::<Vec<_>>().join(", ")
                                ),
                            ));
                        }
                        ids.push(id);
                    }
                    Some(ids)
                }
            };
            if !rule_ids.insert(r.id.clone()) {
                return Err(bad(entry, "the id is used twice".into()));
            }
            rules.push(Rule {
                id: r.id,
                pool: r.pool,
                specialty,
                modality: r.modality,
                urgency: r.urgency,
                clinic: r.clinic,
            });
        }
        let minutes = |v: Option<u64>, u: Urgency| {
            // Saturating: TOML allows minutes whose seconds overflow (found by the fuzz
            // targets).
            v.map_or(default_sla(u), |m| {
                Duration::from_secs(m.max(1).saturating_mul(60))
            })
        };
        let sla = BTreeMap::from([
            (
                Urgency::Emergency,
                minutes(raw.sla.emergency_accept_minutes, Urgency::Emergency),
            ),
            (
                Urgency::Urgent,
                minutes(raw.sla.urgent_accept_minutes, Urgency::Urgent),
            ),
            (
                Urgency::Routine,
                minutes(raw.sla.routine_accept_minutes, Urgency::Routine),
            ),
        ]);
        let catalog = catalog(&raw.specialties, &pools);
        let mut templates = Vec::new();
        for mut t in raw.templates {
            let entry = format!("template {}", t.name);
            if t.name.trim().is_empty() {
                return Err(bad("template".into(), "name is empty".into()));
            }
            t.specialty = canonical(&t.specialty).ok_or_else(|| {
                bad(
                    entry.clone(),
                    format!(
                        "specialty '{}' is not a [[specialty]] or any specialist's",
                        t.specialty
                    ),
                )
            })?;
            if templates
                .iter()
                .any(|o: &Template| o.specialty == t.specialty && o.name == t.name)
            {
                return Err(bad(
                    entry,
                    "the name is used twice for this specialty".into(),
                ));
            }
            templates.push(t);
        }
        Ok(Self {
            specialty_names,
            specialists,
            pools,
            rules,
            sla,
            catalog,
            templates,
        })
    }

    /// Time allowed to accept a consultation of this urgency.
    pub fn sla(&self, urgency: Urgency) -> Duration {
        self.sla
            .get(&urgency)
            .copied()
            .unwrap_or_else(|| default_sla(urgency))
    }

    /// Whether `specialist` is on duty at `now_ms` (Unix ms).
    pub fn on_duty(&self, specialist: &str, now_ms: i64) -> bool {
        let Some(s) = self.specialists.get(specialist) else {
            return false;
        };
        let local = now_ms.div_euclid(1000) + s.utc_offset_secs;
        let day = local.div_euclid(86_400);
        // 1970-01-01 was a Thursday (Monday = 0).
        let weekday = (day + 3).rem_euclid(7) as u8;
        let yesterday = (weekday + 6) % 7;
        let minute = (local.rem_euclid(86_400) / 60) as u16;
        s.duty.iter().any(|shift| {
            if shift.start < shift.end {
                shift.days.contains(&weekday) && (shift.start..shift.end).contains(&minute)
            } else {
                // Overnight: the evening part today, the morning part from yesterday's shift.
                (shift.days.contains(&weekday) && minute >= shift.start)
                    || (shift.days.contains(&yesterday) && minute < shift.end)
            }
        })
    }

    /// How people read the specialty `name` (in Chinese with `zh`): its catalog name, or `name`
    /// as given when the roster does not know it.
    pub fn specialty_shown(&self, name: &str, zh: bool) -> String {
        self.specialty(name)
            .and_then(|id| self.catalog.iter().find(|s| s.id == id))
            .map_or_else(|| name.to_owned(), |s| s.name(zh).to_owned())
    }

    /// The specialty id a name (Chinese, English, an alias; any case) stands for.
    pub fn specialty(&self, name: &str) -> Option<&str> {
        self.specialty_names
            .get(&name.trim().to_lowercase())
            .map(String::as_str)
    }

    /// The report templates of the specialty a request names.
    pub fn templates(&self, specialty: &str) -> Vec<&Template> {
        let Some(id) = self.specialty(specialty) else {
            return Vec::new();
        };
        self.templates
            .iter()
            .filter(|t| t.specialty == id)
            .collect()
    }

    /// The first rule matching `request`; none for a specialty the roster does not know.
    pub fn rule_for(&self, request: &Request<'_>) -> Option<&Rule> {
        let specialty = self.specialty(request.specialty)?;
        let any = |list: &Option<Vec<String>>, value: &str| {
            list.as_ref()
                .is_none_or(|l| l.iter().any(|v| v.eq_ignore_ascii_case(value)))
        };
        self.rules.iter().find(|r| {
            let specialty_holds = match &r.specialty {
                Some(ids) => ids.iter().any(|id| id == specialty),
                // Routing by modality is explicit; a rule with neither condition catches
                // only what its pool reads.
                None => {
                    r.modality.is_some()
                        || self
                            .pools
                            .get(&r.pool)
                            .is_some_and(|p| p.specialties.contains(specialty))
                }
            };
            specialty_holds
                && any(&r.clinic, request.clinic)
                && r.urgency
                    .as_ref()
                    .is_none_or(|u| u.contains(&request.urgency))
                && r.modality.as_ref().is_none_or(|m| {
                    request
                        .modalities
                        .iter()
                        .any(|have| m.iter().any(|want| want.eq_ignore_ascii_case(have)))
                })
        })
    }

    /// Chooses who reads `request` now, with the reason.
    pub fn route(
        &self,
        request: &Request<'_>,
        loads: &HashMap<String, Load>,
        now_ms: i64,
    ) -> Result<Decision, RouteError> {
        if self.specialty(request.specialty).is_none() {
            return Err(RouteError::UnknownSpecialty {
                specialty: request.specialty.to_owned(),
            });
        }
        let rule = self.rule_for(request).ok_or_else(|| RouteError::NoRule {
            specialty: request.specialty.to_owned(),
            urgency: request.urgency.label(),
            clinic: request.clinic.to_owned(),
        })?;
        let pool = self
            .pools
            .get(&rule.pool)
            .ok_or_else(|| RouteError::NobodyAvailable {
                rule: rule.id.clone(),
                pool: rule.pool.clone(),
                lead: String::new(),
            })?;
        let excluded = |id: &String| request.exclude.contains(id);
        let none = Load::default();
        let load = |id: &String| loads.get(id).unwrap_or(&none);
        let candidates: Vec<&String> = pool
            .members
            .iter()
            .filter(|m| !excluded(m) && self.on_duty(m, now_ms))
            .collect();
        // Fewest open cases; then idle longest (an earlier idle_since wins; busy ones last).
        let best = candidates.iter().min_by_key(|m| {
            let l = load(m);
            (
                l.open_cases,
                l.idle_since_ms.unwrap_or(i64::MAX),
                m.as_str(),
            )
        });
        if let Some(best) = best {
            let l = load(best);
            let others: Vec<String> = candidates
                .iter()
                .filter(|m| **m != *best)
                .map(|m| format!("{m} ({} open)", load(m).open_cases))
                .collect();
            let tie = candidates
                .iter()
                .any(|m| *m != *best && load(m).open_cases == l.open_cases);
            let reason = format!(
                "rule {} → pool {}; on duty and not excluded: {best} ({} open){}{}; chose {best}: fewest open cases{}",
                rule.id,
                pool.id,
                l.open_cases,
                if others.is_empty() { "" } else { ", " },
                others.join(", "),
                if tie { ", idle longest among the tied" } else { "" },
            );
            return Ok(Decision {
                specialist: (*best).clone(),
                rule: rule.id.clone(),
                reason,
                alert: None,
            });
        }
        if excluded(&pool.lead) {
            return Err(RouteError::NobodyAvailable {
                rule: rule.id.clone(),
                pool: pool.id.clone(),
                lead: pool.lead.clone(),
            });
        }
        Ok(Decision {
            specialist: pool.lead.clone(),
            rule: rule.id.clone(),
            reason: format!(
                "rule {} → pool {}; nobody on duty and not excluded; fell back to the pool's lead {}",
                rule.id, pool.id, pool.lead
            ),
            alert: Some(format!(
                "pool {}: nobody on duty; a {} consultation went to the lead {}",
                pool.id,
                request.urgency.label(),
                pool.lead
            )),
        })
    }

    /// When a consultation assigned at `assigned_at_ms` and still not accepted must be
    /// escalated: routed again without its assignee.
    pub fn escalation_due_ms(&self, urgency: Urgency, assigned_at_ms: i64) -> i64 {
        let sla_ms = i64::try_from(self.sla(urgency).as_millis()).unwrap_or(i64::MAX);
        assigned_at_ms.saturating_add(sla_ms)
    }
}

/// `mon-fri 08:00-17:00`, `sat,sun 09:00-12:00`, `daily 20:00-08:00`.
fn parse_shift(text: &str) -> Result<Shift, String> {
    let err = |why: &str| {
        format!("duty '{text}': {why}; write it like 'mon-fri 08:00-17:00' or 'daily 20:00-08:00'")
    };
    let (days_part, hours) = text
        .trim()
        .split_once(char::is_whitespace)
        .ok_or_else(|| err("days and hours are needed"))?;
    let day = |d: &str| {
        DAYS.iter()
            .position(|x| x.eq_ignore_ascii_case(d.trim()))
            .map(|i| i as u8)
            .ok_or_else(|| err(&format!("'{d}' is not a day (mon … sun)")))
    };
    let mut days = BTreeSet::new();
    if days_part.eq_ignore_ascii_case("daily") {
        days.extend(0..7);
    } else {
        for part in days_part.split(',') {
            match part.split_once('-') {
                Some((a, b)) => {
                    let (a, b) = (day(a)?, day(b)?);
                    let mut d = a;
                    loop {
                        days.insert(d);
                        if d == b {
                            break;
                        }
                        d = (d + 1) % 7;
                    }
                }
                None => {
                    days.insert(day(part)?);
                }
            }
        }
    }
    let (start, end) = hours
        .trim()
        .split_once('-')
        .ok_or_else(|| err("hours must be a range"))?;
    let minute = |hm: &str| parse_time_of_day(hm).map_err(|why| err(&why));
    let (start, end) = (minute(start)?, minute(end)?);
    if start == end {
        return Err(err("the shift starts and ends at the same time"));
    }
    Ok(Shift { days, start, end })
}

#[cfg(test)]
mod tests;
