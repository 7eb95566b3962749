//! Who may do what at the clinic: one policy over typed actions, asked by the consultation
//! API, the operator's API, the pages and the case service alike, and tested on its own
//! (`tests` below) as well as over HTTP (the route matrix in `tests/tests/consult.rs`). It
//! holds no HTTP: a refusal is [`Denied`], which the HTTP layer turns into 401, 404 (a case
//! this clinic does not hold does not exist for the caller) or 403.
//!
//! The rules:
//! - the clinic's doctors and administrators list, create, read, attach to and act on this
//!   clinic's cases and upload studies from the browser; a specialist account (the hospital's
//!   role) does none of that here;
//! - a case this agent does not hold, or one of another clinic, is answered as absent,
//!   whatever the action;
//! - the operator's calls of `clinic-agent status` and `import` need no account from the
//!   clinic PC itself, where the CLI runs; from elsewhere, the status and a study's priority
//!   need a signed-in user of any role, and import by path is refused (it reads the agent's
//!   own disk: a browser uploads instead);
//! - whether an action fits the case's state (submit only with consent, acknowledge only a
//!   report, …) is the consultation's own rule (`proto::consult`), checked when the event is
//!   appended.

use daemon::accounts::{Role, User};
use proto::ClinicId;
use serde::Deserialize;

/// The roles accounts have at a clinic.
pub const ROLES: &[Role] = &[Role::Doctor, Role::Admin];

/// What a doctor does to a case (`/consultations/{id}/{action}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClinicAction {
    Consent,
    Studies,
    Submit,
    Patient,
    Answer,
    Acknowledge,
    Cancel,
}

impl ClinicAction {
    /// Every action, in the order the API documents them.
    pub const ALL: [ClinicAction; 7] = [
        ClinicAction::Consent,
        ClinicAction::Studies,
        ClinicAction::Submit,
        ClinicAction::Patient,
        ClinicAction::Answer,
        ClinicAction::Acknowledge,
        ClinicAction::Cancel,
    ];

    /// The action named in a path.
    pub fn parse(name: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::String(name.to_owned())).ok()
    }

    /// Its name in paths.
    pub fn name(self) -> &'static str {
        match self {
            ClinicAction::Consent => "consent",
            ClinicAction::Studies => "studies",
            ClinicAction::Submit => "submit",
            ClinicAction::Patient => "patient",
            ClinicAction::Answer => "answer",
            ClinicAction::Acknowledge => "acknowledge",
            ClinicAction::Cancel => "cancel",
        }
    }
}

/// Running the agent: the operator's calls and the browser's import.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    /// The queue and link report (`clinic-agent status`).
    Status,
    /// Pushing a study's objects ahead of the backlog.
    Priority,
    /// Importing a file by its path on the agent's own disk (`clinic-agent import`).
    ImportPath,
    /// Uploading studies from the browser (the import page).
    Upload,
    /// Seeing the files set aside and giving an id-less study its patient.
    Reconcile,
    /// Storing instances over HTTP (STOW-RS): a reporting tool on this PC, or a modality or
    /// cart with a doctor's or administrator's token.
    Stow,
}

/// Who asks.
#[derive(Debug, Clone, Copy)]
pub enum Caller<'a> {
    /// The CLI on the clinic PC itself, which has no account.
    ThisPc,
    /// A signed-in user, on this PC or elsewhere.
    User(&'a User),
    /// Nobody signed in, from another computer.
    Nobody,
}

/// A case as the policy sees it: whose it is, if this agent holds it at all.
#[derive(Debug, Clone, Copy)]
pub struct Case<'a> {
    /// The clinic the case belongs to; `None` when the log holds no such case.
    pub clinic: Option<&'a ClinicId>,
    /// This agent's clinic.
    pub here: &'a ClinicId,
}

#[derive(Debug, Clone, Copy)]
pub enum Action<'a> {
    /// This clinic's list of cases (the API's list, the home page).
    List,
    /// The new-case form and creating a case.
    Create,
    /// A case's detail, timeline and print view.
    Read(Case<'a>),
    /// Attaching a PDF or a JPEG to a case.
    Attach(Case<'a>),
    Act(Case<'a>, ClinicAction),
    Run(Task),
}

/// Why the policy says no.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// Nobody is signed in, and the action needs an account.
    #[error("nobody is signed in; sign in with an account of this clinic")]
    Unauthenticated,
    /// The case does not exist for this caller.
    #[error("no such consultation")]
    Hidden,
    #[error("{0}")]
    Forbidden(String),
}

/// Whether `caller` may do `action`.
pub fn check(caller: Caller<'_>, action: Action<'_>) -> Result<(), Denied> {
    match action {
        Action::Run(Task::ImportPath) => match caller {
            Caller::ThisPc => Ok(()),
            Caller::User(_) | Caller::Nobody => Err(Denied::Forbidden(
                "import by path works only on the clinic PC itself (`clinic-agent import`); \
                 from another computer, upload the files on the import page"
                    .into(),
            )),
        },
        Action::Run(Task::Status | Task::Priority) => match caller {
            Caller::ThisPc | Caller::User(_) => Ok(()),
            Caller::Nobody => Err(Denied::Unauthenticated),
        },
        Action::Run(Task::Stow) => match caller {
            Caller::ThisPc => Ok(()),
            Caller::User(_) | Caller::Nobody => doctor(caller, action),
        },
        Action::Run(Task::Upload | Task::Reconcile) | Action::List | Action::Create => {
            doctor(caller, action)
        }
        Action::Read(case) | Action::Attach(case) | Action::Act(case, _) => {
            doctor(caller, action)?;
            match case.clinic {
                Some(clinic) if clinic == case.here => Ok(()),
                _ => Err(Denied::Hidden),
            }
        }
    }
}

/// The clinic's doctors and administrators; a specialist account is refused, saying what it
/// cannot do here.
fn doctor(caller: Caller<'_>, action: Action<'_>) -> Result<(), Denied> {
    let user = match caller {
        Caller::User(user) => user,
        Caller::ThisPc | Caller::Nobody => return Err(Denied::Unauthenticated),
    };
    match user.role {
        Role::Doctor | Role::Admin => Ok(()),
        Role::Specialist => Err(Denied::Forbidden(format!(
            "{} is a specialist's account; {} (an administrator adds one with `clinic-agent user add --role doctor`)",
            user.name,
            match action {
                Action::Run(_) => "studies are imported here by the clinic's doctors",
                _ => "clinic consultations are created and answered by the clinic's doctors",
            }
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, role: Role) -> User {
        User {
            name: name.into(),
            role,
            display_name: name.into(),
            specialist: None,
            qualification: None,
            deactivated: false,
        }
    }

    fn outcome(result: Result<(), Denied>) -> &'static str {
        match result {
            Ok(()) => "ok",
            Err(Denied::Unauthenticated) => "sign in",
            Err(Denied::Hidden) => "hidden",
            Err(Denied::Forbidden(_)) => "forbidden",
        }
    }

    /// Every (caller, action) pair, for a case of this clinic, one of another clinic and one
    /// the agent does not hold: allowed, hidden, forbidden, or sign in first.
    #[test]
    fn the_policy_matrix() {
        let here = ClinicId::new("jinzhou").unwrap();
        let there = ClinicId::new("pulandian").unwrap();
        let ours = Case {
            clinic: Some(&here),
            here: &here,
        };
        let theirs = Case {
            clinic: Some(&there),
            here: &here,
        };
        let absent = Case {
            clinic: None,
            here: &here,
        };
        let (doctor, admin, specialist) = (
            user("wang", Role::Doctor),
            user("boss", Role::Admin),
            user("li", Role::Specialist),
        );
        let callers = [
            ("this pc", Caller::ThisPc),
            ("nobody", Caller::Nobody),
            ("doctor", Caller::User(&doctor)),
            ("admin", Caller::User(&admin)),
            ("specialist", Caller::User(&specialist)),
        ];
        let mut actions: Vec<(String, Action, [&str; 5])> = Vec::new();
        // Expected outcome for: this PC, nobody, a doctor, an administrator, a specialist.
        let doctors = ["sign in", "sign in", "ok", "ok", "forbidden"];
        let hidden = ["sign in", "sign in", "hidden", "hidden", "forbidden"];
        actions.push(("list".into(), Action::List, doctors));
        actions.push(("create".into(), Action::Create, doctors));
        actions.push(("upload".into(), Action::Run(Task::Upload), doctors));
        actions.push(("reconcile".into(), Action::Run(Task::Reconcile), doctors));
        let operator = ["ok", "sign in", "ok", "ok", "ok"];
        actions.push(("status".into(), Action::Run(Task::Status), operator));
        actions.push((
            "stow".into(),
            Action::Run(Task::Stow),
            ["ok", "sign in", "ok", "ok", "forbidden"],
        ));
        actions.push(("priority".into(), Action::Run(Task::Priority), operator));
        actions.push((
            "import by path".into(),
            Action::Run(Task::ImportPath),
            ["ok", "forbidden", "forbidden", "forbidden", "forbidden"],
        ));
        for (label, case, expected) in [("ours", ours, doctors), ("theirs", theirs, hidden)] {
            actions.push((format!("read {label}"), Action::Read(case), expected));
            actions.push((format!("attach {label}"), Action::Attach(case), expected));
            for act in ClinicAction::ALL {
                actions.push((
                    format!("{} {label}", act.name()),
                    Action::Act(case, act),
                    expected,
                ));
            }
        }
        actions.push(("read absent".into(), Action::Read(absent), hidden));
        actions.push((
            "cancel absent".into(),
            Action::Act(absent, ClinicAction::Cancel),
            hidden,
        ));
        for (label, action, expected) in &actions {
            for ((who, caller), want) in callers.iter().zip(expected) {
                assert_eq!(
                    outcome(check(*caller, *action)),
                    *want,
                    "{who} asking for {label}"
                );
            }
        }
    }

    /// A refusal says what the caller is and what to do.
    #[test]
    fn a_specialist_is_told_who_does_this_here_and_how_to_get_an_account() {
        let li = user("li", Role::Specialist);
        let Err(Denied::Forbidden(why)) = check(Caller::User(&li), Action::Create) else {
            panic!("a specialist creates no case at the clinic");
        };
        assert!(why.contains("li is a specialist's account"), "{why}");
        assert!(why.contains("clinic-agent user add --role doctor"), "{why}");
    }

    #[test]
    fn actions_are_named_as_in_their_paths() {
        for a in ClinicAction::ALL {
            assert_eq!(ClinicAction::parse(a.name()), Some(a));
        }
        assert_eq!(ClinicAction::parse("nonsense"), None);
        assert_eq!(ClinicAction::parse("Submit"), None);
    }
}
