//! Who may do what at the gateway: one policy over typed actions, asked by the JSON API, the
//! pages and the CLIs alike, and tested on its own (`tests` below) as well as over HTTP (the
//! route matrix in `tests/tests/consult.rs`). It holds no HTTP: a refusal is [`Denied`], which
//! the HTTP layer turns into 404 (a case the user may not see does not exist for them) or 403.
//!
//! The rules:
//! - administrators run the gateway (users, audit log, link board, alerts, forwarding,
//!   backups, the routing roster's pools and duty hours) and read and assign every case; they
//!   do not accept, ask, report or decline;
//! - a specialist reads the cases assigned to them now or before, and a delivered case nobody
//!   holds that waits in a pool they belong to (which they may then take); acting on a case needs
//!   an account linked to a specialist of the roster, and signing a report a qualification on
//!   record;
//! - a case the user may not read is answered as absent, whatever the action, so that nobody
//!   learns which cases exist by trying them;
//! - whether an action fits the case's state (accept only when assigned to you, report once
//!   accepted, …) is the consultation's own rule (`proto::consult`), checked when the event is
//!   appended.

use daemon::accounts::{Role, User};
use proto::consult::{Consultation, Event, EventKind};

/// The roles accounts have at the gateway.
pub const ROLES: &[Role] = &[Role::Specialist, Role::Admin];

/// What a specialist does to a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaseAction {
    Accept,
    /// Take a case waiting in one's pool.
    Take,
    Ask,
    Report,
    Addendum,
    Decline,
    /// Give the case to a specialist (administrators).
    Assign,
}

impl CaseAction {
    /// The action named in a path (`/consultations/{id}/{action}`).
    pub fn parse(name: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::String(name.to_owned())).ok()
    }

    /// Its name in paths and in the audit log.
    pub fn name(self) -> &'static str {
        match self {
            CaseAction::Accept => "accept",
            CaseAction::Take => "take",
            CaseAction::Ask => "ask",
            CaseAction::Report => "report",
            CaseAction::Addendum => "addendum",
            CaseAction::Decline => "decline",
            CaseAction::Assign => "assign",
        }
    }
}

/// Running the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    Users,
    Audit,
    Links,
    Alerts,
    Forwarding,
    Backup,
    /// The routing roster's pools and duty hours (`routing.toml`), read and changed.
    Roster,
}

/// A case as the policy sees it: its state, who held it, and whether it waits in a pool of
/// the user's (the router's knowledge, found by the caller).
#[derive(Debug, Clone, Copy)]
pub struct Case<'a> {
    pub consultation: &'a Consultation,
    pub timeline: &'a [Event],
    /// The pool it waits in, when the user is a member who may take it.
    pub my_pool: Option<&'a str>,
}

#[derive(Debug, Clone, Copy)]
pub enum Action<'a> {
    /// Its detail, timeline, images, attachments.
    Read(Case<'a>),
    Act(Case<'a>, CaseAction),
    /// One row of a worklist (open cases only, or `all`).
    List(Case<'a>),
    /// A clinic's list of studies (each row filtered by `Read` of its cases).
    Studies,
    Run(Task),
}

/// Why the policy says no.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// The case does not exist for this user.
    #[error("no such consultation")]
    Hidden,
    #[error("{0}")]
    Forbidden(String),
}

/// Whether `user` may do `action`.
pub fn check(user: &User, action: Action<'_>) -> Result<(), Denied> {
    let admin = user.role == Role::Admin;
    match action {
        Action::Run(task) => {
            if admin {
                Ok(())
            } else {
                Err(Denied::Forbidden(format!(
                    "only administrators {}",
                    match task {
                        Task::Users => "manage accounts",
                        Task::Audit => "read the audit log",
                        Task::Links => "see the link board",
                        Task::Alerts => "see the alerts",
                        Task::Forwarding => "see forwarding",
                        Task::Backup => "take backups",
                        Task::Roster => "change the routing roster",
                    }
                )))
            }
        }
        Action::Studies => Ok(()),
        Action::Read(case) | Action::List(case) => reads(user, case),
        Action::Act(case, CaseAction::Assign) => {
            reads(user, case)?;
            if admin {
                Ok(())
            } else {
                Err(Denied::Forbidden("only administrators assign".into()))
            }
        }
        Action::Act(case, act) => {
            reads(user, case)?;
            if user.specialist.is_none() {
                return Err(Denied::Forbidden(format!(
                    "{} is not linked to a specialist in routing.toml; only specialists do this",
                    user.name
                )));
            }
            if act == CaseAction::Report && user.qualification.is_none() {
                return Err(Denied::Forbidden(format!(
                    "{} has no qualification on record; an administrator sets it with `gateway user add --replace --qualification`",
                    user.name
                )));
            }
            Ok(())
        }
    }
}

/// Administrators read every case; a specialist the cases assigned to them now or before, and
/// those waiting in their pool.
fn reads(user: &User, case: Case<'_>) -> Result<(), Denied> {
    if user.role == Role::Admin || case.my_pool.is_some() {
        return Ok(());
    }
    let Some(me) = &user.specialist else {
        return Err(Denied::Hidden);
    };
    let held = case.consultation.assignee.as_ref() == Some(me)
        || case.timeline.iter().any(|e| match &e.kind {
            EventKind::Assigned { specialist, .. } => specialist == me,
            EventKind::Reassigned { to, .. } | EventKind::Escalated { to, .. } => to == me,
            _ => false,
        });
    if held {
        Ok(())
    } else {
        Err(Denied::Hidden)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::consult::{ConsultationId, EventId, Folded, Patient, Side, Urgency};
    use proto::ClinicId;

    fn user(name: &str, role: Role, specialist: Option<&str>, qualified: bool) -> User {
        User {
            name: name.into(),
            role,
            display_name: name.into(),
            specialist: specialist.map(str::to_owned),
            qualification: qualified.then(|| "radiologist".to_owned()),
            deactivated: false,
        }
    }

    /// A delivered case assigned to `sun`, then reassigned to `zhou`.
    fn timeline() -> Vec<Event> {
        let jz = ClinicId::new("jinzhou").unwrap();
        let id = ConsultationId::new(1_790_000_000_000, [1; 10]);
        let event = |side, seq, kind| Event {
            id: EventId {
                clinic: jz.clone(),
                side,
                seq,
            },
            seen: 0,
            consultation: id.clone(),
            at_ms: 1_790_000_000_000 + seq as i64,
            actor: "x".into(),
            kind,
            seal: None,
        };
        vec![
            event(
                Side::Clinic,
                1,
                EventKind::Created {
                    patient: Patient {
                        id: "P-1".into(),
                        name: "A^B".into(),
                        sex: "F".into(),
                        birth_date: String::new(),
                    },
                    clinical_summary: "s".into(),
                    question: "q".into(),
                    specialty: "radiology".into(),
                    urgency: Urgency::Routine,
                    number: None,
                },
            ),
            event(
                Side::Clinic,
                2,
                EventKind::ConsentRecorded {
                    consent: proto::consult::Consent {
                        given_by: "patient".into(),
                        method: "verbal".into(),
                        at_ms: 1,
                    },
                },
            ),
            event(Side::Clinic, 3, EventKind::Submitted),
            event(Side::Gateway, 1, EventKind::Delivered),
            event(
                Side::Gateway,
                2,
                EventKind::Assigned {
                    specialist: "sun".into(),
                    rule: "r".into(),
                    reason: "on duty".into(),
                },
            ),
            event(
                Side::Gateway,
                3,
                EventKind::Reassigned {
                    from: "sun".into(),
                    to: "zhou".into(),
                    reason: "leave".into(),
                },
            ),
        ]
    }

    /// Every (user, action) pair: allowed, hidden, or forbidden.
    #[test]
    fn the_policy_matrix() {
        let events = timeline();
        let folded = Folded::fold(&events).unwrap();
        let c = &folded.consultation;
        let case = Case {
            consultation: c,
            timeline: &events,
            my_pool: None,
        };
        let in_pool = Case {
            my_pool: Some("chest"),
            ..case
        };
        let admin = user("boss", Role::Admin, None, false);
        let holder = user("zhou", Role::Specialist, Some("zhou"), true);
        let before = user("sun", Role::Specialist, Some("sun"), true);
        let stranger = user("li", Role::Specialist, Some("li"), true);
        let unqualified = user("zhou2", Role::Specialist, Some("zhou"), false);
        let unlinked = user("temp", Role::Specialist, None, true);
        use CaseAction::*;
        // (who, action, expected): Ok, "hidden" or "forbidden".
        let cases: Vec<(&User, Action, &str)> = vec![
            (&admin, Action::Read(case), "ok"),
            (&admin, Action::Act(case, Assign), "ok"),
            (&admin, Action::Act(case, Accept), "forbidden"),
            (&admin, Action::Run(Task::Backup), "ok"),
            (&holder, Action::Read(case), "ok"),
            (&holder, Action::List(case), "ok"),
            (&holder, Action::Act(case, Accept), "ok"),
            (&holder, Action::Act(case, Report), "ok"),
            (&holder, Action::Act(case, Assign), "forbidden"),
            // Whether it waits in a pool is the case's state: the service says 409.
            (&holder, Action::Act(case, Take), "ok"),
            (&holder, Action::Run(Task::Users), "forbidden"),
            (&admin, Action::Run(Task::Roster), "ok"),
            (&holder, Action::Run(Task::Roster), "forbidden"),
            (&unlinked, Action::Run(Task::Roster), "forbidden"),
            (&holder, Action::Studies, "ok"),
            (&before, Action::Read(case), "ok"),
            (&stranger, Action::Read(case), "hidden"),
            (&stranger, Action::List(case), "hidden"),
            (&stranger, Action::Act(case, Accept), "hidden"),
            (&stranger, Action::Act(case, Report), "hidden"),
            (&stranger, Action::Act(case, Assign), "hidden"),
            (&stranger, Action::Read(in_pool), "ok"),
            (&stranger, Action::Act(in_pool, Take), "ok"),
            (&unqualified, Action::Act(case, Report), "forbidden"),
            (&unqualified, Action::Act(case, Accept), "ok"),
            (&unlinked, Action::Read(case), "hidden"),
            (&unlinked, Action::Read(in_pool), "ok"),
            (&unlinked, Action::Act(in_pool, Take), "forbidden"),
            (&unlinked, Action::Run(Task::Audit), "forbidden"),
        ];
        for (who, action, expected) in cases {
            let got = match check(who, action) {
                Ok(()) => "ok",
                Err(Denied::Hidden) => "hidden",
                Err(Denied::Forbidden(_)) => "forbidden",
            };
            assert_eq!(got, expected, "{} {action:?}", who.name);
        }
    }

    #[test]
    fn actions_are_named_as_in_their_paths() {
        for a in [
            CaseAction::Accept,
            CaseAction::Take,
            CaseAction::Ask,
            CaseAction::Report,
            CaseAction::Addendum,
            CaseAction::Decline,
            CaseAction::Assign,
        ] {
            assert_eq!(CaseAction::parse(a.name()), Some(a));
        }
        assert_eq!(CaseAction::parse("nonsense"), None);
        assert_eq!(CaseAction::parse("Accept"), None);
    }
}
