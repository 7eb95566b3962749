//! The consultations as the hospital works them, pure of HTTP: worklists, a case as a user may
//! see it, and the specialists' and administrators' actions, each checked by the access policy
//! (`crate::access`) and recorded in the audit log before it happens. Errors are [`CaseError`]s;
//! the JSON API and the pages turn them into answers.

use std::sync::Arc;

use daemon::accounts::User;
use daemon::replicate::Site;
use proto::consult::{Consultation, ConsultationId, Event, EventKind, Report, State as CaseState};
use proto::find::Search;
use serde::{Deserialize, Serialize};

use crate::access::{self, Action, CaseAction, Denied};
use crate::archive::GatewayArchive;
use crate::consult::now_ms;

pub use daemon::cases::{incomplete, CaseDetail, PreviewArrival, StudyArrival};

pub use daemon::cases::CaseError;

impl From<Denied> for CaseError {
    /// A case the user may not see does not exist for them.
    fn from(d: Denied) -> Self {
        match d {
            Denied::Hidden => CaseError::NotFound("no such consultation".into()),
            Denied::Forbidden(why) => CaseError::Forbidden(why),
        }
    }
}

/// The hospital's work on consultations: what the API, the pages and the tests call.
#[derive(Clone)]
pub struct Cases {
    /// Every view or change of patient data is recorded here first.
    pub audit: Arc<dyn store::audit::AuditLog>,
    /// The router, when `[routing]` is configured: its roster's SLAs date the worklist, its
    /// pools say who may take a case nobody holds.
    pub router: Option<Arc<crate::router::Router>>,
    pub metrics: Arc<crate::Metrics>,
    pub archive: Arc<GatewayArchive>,
    pub consult: Site,
    pub board: Arc<crate::board::Board>,
}

/// One row of a worklist.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct CaseRow {
    pub id: ConsultationId,
    /// The clinic's short case number (`JZ-2026-0042`); `None` for cases from before numbers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<String>,
    pub clinic: String,
    pub state: CaseState,
    pub urgency: proto::consult::Urgency,
    pub specialty: String,
    pub question: String,
    /// DICOM sex (M, F, O) and birth date (YYYYMMDD), for the specialist's first look.
    pub patient_sex: String,
    pub patient_birth_date: String,
    #[serde(default)]
    pub patient_name: String,
    #[serde(default)]
    pub patient_id: String,
    /// The modalities of the attached studies that have arrived.
    #[serde(default)]
    pub modalities: Vec<String>,
    pub assignee: Option<String>,
    pub created_at_ms: i64,
    /// When it must be accepted by (assigned and not accepted yet, or waiting in the pool).
    pub accept_by_ms: Option<i64>,
    /// Assigned to the reading specialist, who has not accepted it yet.
    #[serde(default)]
    pub new: bool,
    /// The clinic answered the specialist's question, and the specialist has not acted since.
    #[serde(default)]
    pub answer_received: bool,
    /// Unassigned and waiting in this pool, of which the user is a member: any member may
    /// take it.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub waiting_in_pool: Option<String>,
}

/// A worklist's rows, and how many cases matched (more than the rows when cut short).
#[derive(Debug, PartialEq)]
pub struct Worklist {
    pub rows: Vec<CaseRow>,
    pub matched: usize,
}

/// What an action carries (the texts of a question, a report, a reason; whom to assign).
#[derive(Debug, Default, Deserialize)]
pub struct ActionBody {
    pub text: Option<String>,
    pub reason: Option<String>,
    pub findings: Option<String>,
    pub impression: Option<String>,
    pub recommendation: Option<String>,
    /// `assign`: the specialist id to give it to.
    pub specialist: Option<String>,
    /// `report`: the specialist signs before every image has arrived, knowingly.
    #[serde(default)]
    pub confirm_incomplete: bool,
    /// `report` from the pages: the signer's password, asked again (a script's token is its
    /// own proof). Checked by the page, never kept.
    #[serde(default)]
    pub password: Option<Password>,
}

/// A password typed into a form: never shown by `Debug`, so never in a log.
#[derive(Default, Deserialize)]
#[serde(transparent)]
pub struct Password(pub String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(…)")
    }
}

impl Cases {
    /// Every clinic the gateway has heard of (connected this run, or holding cases), with its
    /// link as the board shows it.
    pub fn clinics(
        &self,
    ) -> Result<std::collections::BTreeMap<proto::ClinicId, crate::board::ClinicLink>, CaseError>
    {
        let mut out = self.board.snapshot();
        for c in self.consult.log.clinics().map_err(CaseError::internal)? {
            out.entry(c).or_default();
        }
        Ok(out)
    }

    /// How people read the specialty a request names (`zh`: in Chinese): the roster's name
    /// for it, or the name as the clinic sent it when the roster does not know it.
    /// The roster in force is read once, for every name asked of the answer.
    pub fn specialty_names(&self, zh: bool) -> impl Fn(&str) -> String {
        let roster = self.router.as_ref().and_then(|r| r.reload().ok());
        move |name| {
            roster
                .as_ref()
                .map_or_else(|| name.to_owned(), |r| r.specialty_shown(name, zh))
        }
    }

    /// The cases `user` works on that `search` asks for, most urgent first, then the least
    /// time left to accept, then oldest (or in the order `search` asks for); `all` adds
    /// finished ones. With `limit`, only the first rows are made; [`Worklist::matched`]
    /// counts them all. The search only narrows what the policy lets `user` list.
    pub fn worklist(
        &self,
        user: &User,
        all_scope: bool,
        search: &Search,
        limit: Option<usize>,
    ) -> Result<Worklist, CaseError> {
        let roster = self.router.as_ref().and_then(|r| r.reload().ok());
        let sla = |u: proto::consult::Urgency| {
            roster
                .as_ref()
                .map_or(crate::routing::default_sla(u), |r| r.sla(u))
        };
        let mut listed = Vec::new();
        let cases = if all_scope {
            self.consult.log.all()
        } else {
            self.consult.log.open_cases(None)
        };
        for c in cases.map_err(CaseError::internal)? {
            let waiting_in_pool = self.waiting_in_my_pool(user, &c);
            let row = access::Case {
                consultation: &c,
                timeline: &[],
                my_pool: waiting_in_pool.as_deref(),
            };
            if access::check(user, Action::List(row)).is_err() || !search.matches(&c) {
                continue;
            }
            let accept_by_ms = c.accept_by_ms(sla(c.urgency));
            listed.push((c, waiting_in_pool, accept_by_ms));
        }
        // Most urgent first, then the least time left to accept, then oldest; a sort asked
        // for goes first, this order breaking its ties.
        listed.sort_by_key(|(c, _, by)| {
            (
                std::cmp::Reverse(c.urgency),
                by.unwrap_or(i64::MAX),
                c.created_at_ms,
            )
        });
        listed.sort_by(|(a, ..), (b, ..)| search.compare(&a.into(), &b.into()));
        let matched = listed.len();
        listed.truncate(limit.unwrap_or(usize::MAX));
        let me = user.specialist.as_deref();
        // Every row's studies read in one go, not a query per row.
        let asked: Vec<(&proto::ClinicId, &[String])> = listed
            .iter()
            .map(|(c, ..)| (&c.clinic, c.studies.as_slice()))
            .collect();
        let modalities = self.archive.modalities_of(&asked);
        let rows = listed
            .into_iter()
            .zip(modalities)
            .map(|((c, waiting_in_pool, accept_by_ms), modalities)| CaseRow {
                new: me.is_some_and(|me| c.is_new_for(me)),
                answer_received: c.answer_received()
                    && me.is_some_and(|me| c.assignee.as_deref() == Some(me)),
                modalities,
                id: c.id,
                number: c.number,
                clinic: c.clinic.to_string(),
                state: c.state,
                urgency: c.urgency,
                specialty: c.specialty,
                question: c.question,
                patient_sex: c.patient.sex,
                patient_birth_date: c.patient.birth_date,
                patient_name: c.patient.name,
                patient_id: c.patient.id,
                assignee: c.assignee,
                created_at_ms: c.created_at_ms,
                accept_by_ms,
                waiting_in_pool,
            })
            .collect();
        Ok(Worklist { rows, matched })
    }

    /// The readable case whose short number is `number` (`JZ-2026-0042`): `None` when no case
    /// `user` may list has it, or when cases of several clinics do (then the worklist's
    /// search shows them all).
    pub fn by_number(
        &self,
        user: &User,
        number: &str,
    ) -> Result<Option<ConsultationId>, CaseError> {
        let search = Search {
            q: Some(number.to_owned()),
            ..Search::default()
        };
        let found: Vec<CaseRow> = self
            .worklist(user, true, &search, None)?
            .rows
            .into_iter()
            .filter(|r| {
                r.number
                    .as_deref()
                    .is_some_and(|n| n.eq_ignore_ascii_case(number))
            })
            .collect();
        Ok(match found.as_slice() {
            [one] => Some(one.id.clone()),
            _ => None,
        })
    }

    /// The pool a delivered case waits in because the router found nobody it may give it to,
    /// when `user` is one of its members (or its lead) and has not declined it.
    pub fn waiting_in_my_pool(&self, user: &User, c: &Consultation) -> Option<String> {
        if c.state != CaseState::Delivered || c.assignee.is_some() {
            return None;
        }
        let me = user.specialist.as_ref()?;
        if c.declined_by.contains(me) {
            return None;
        }
        let router = self.router.as_ref()?;
        if !router.is_unroutable(&c.id) {
            return None;
        }
        let pool = router.pool_of(c)?;
        (pool.members.contains(me) || &pool.lead == me).then_some(pool.id)
    }

    /// A case's fold and timeline, if `user` may see it (not found otherwise). Not audited:
    /// the caller records what it shows.
    pub fn visible(
        &self,
        user: &User,
        id: &ConsultationId,
    ) -> Result<(proto::consult::Folded, Vec<Event>), CaseError> {
        // A closure, not the variant itself: it must take a case of any lifetime.
        #[allow(clippy::redundant_closure)]
        self.allowed(user, None, id, |case| Action::Read(case))
    }

    /// [`Self::visible`] for a request by `user` from `from` to read the case: a refusal of a
    /// case that exists is recorded in the audit log (`refused_view`).
    pub fn readable(
        &self,
        user: &User,
        from: std::net::SocketAddr,
        id: &ConsultationId,
    ) -> Result<(proto::consult::Folded, Vec<Event>), CaseError> {
        #[allow(clippy::redundant_closure)]
        self.allowed(user, Some(from), id, |case| Action::Read(case))
    }

    /// A case's fold and timeline, if the policy lets `user` do `action` to it. With `from`
    /// (a request, not a filter over many cases), a refusal of a case that exists is recorded
    /// in the audit log as `refused_view` or `refused_<action>`, before it is answered.
    pub fn allowed(
        &self,
        user: &User,
        from: Option<std::net::SocketAddr>,
        id: &ConsultationId,
        action: impl for<'a> FnOnce(access::Case<'a>) -> Action<'a>,
    ) -> Result<(proto::consult::Folded, Vec<Event>), CaseError> {
        let timeline = self.consult.log.timeline(id).map_err(CaseError::from)?;
        let folded = proto::consult::Folded::fold(&timeline)
            .ok_or_else(|| CaseError::not_found(format!("no consultation {id}")))?;
        let pool = self.waiting_in_my_pool(user, &folded.consultation);
        let case = access::Case {
            consultation: &folded.consultation,
            timeline: &timeline,
            my_pool: pool.as_deref(),
        };
        let action = action(case);
        let refused = match action {
            Action::Act(_, a) => format!("refused_{}", a.name()),
            _ => "refused_view".to_owned(),
        };
        if let Err(denied) = access::check(user, action) {
            if let Some(from) = from {
                self.audited(user, from, &refused, id)?;
            }
            return Err(match denied {
                Denied::Hidden => CaseError::not_found(format!("no consultation {id}")),
                other => other.into(),
            });
        }
        Ok((folded, timeline))
    }

    /// Records an access to patient data before it happens; no record, no access.
    pub fn audited(
        &self,
        user: &User,
        from: std::net::SocketAddr,
        action: &str,
        id: &ConsultationId,
    ) -> Result<(), CaseError> {
        self.audited_target(user, from, action, id.as_str())
    }

    /// [`Self::audited`] for a read whose target is not one case: the cases of a worklist,
    /// a frame of a case, a clinic's studies (ids only, never patient data).
    pub fn audited_target(
        &self,
        user: &User,
        from: std::net::SocketAddr,
        action: &str,
        target: &str,
    ) -> Result<(), CaseError> {
        self.audit
            .record(now_ms(), &user.name, &from.ip().to_string(), action, target)
            .map(|_| ())
            .map_err(CaseError::internal)
    }

    /// The worklist as `user` reads it (the API and the page): its rows hold patient data
    /// (question, age, sex), so the read is recorded with the cases it shows.
    pub fn read_worklist(
        &self,
        user: &User,
        from: std::net::SocketAddr,
        all_scope: bool,
        search: &Search,
        limit: Option<usize>,
    ) -> Result<Worklist, CaseError> {
        let list = self.worklist(user, all_scope, search, limit)?;
        if !list.rows.is_empty() {
            let ids: Vec<&str> = list.rows.iter().map(|r| r.id.as_str()).collect();
            self.audited_target(user, from, "view_worklist", &ids.join(","))?;
        }
        Ok(list)
    }

    /// A case as `user` may see it (not found otherwise), recorded in the audit log.
    pub fn case(
        &self,
        user: &User,
        from: std::net::SocketAddr,
        id: &ConsultationId,
    ) -> Result<CaseDetail, CaseError> {
        let (folded, timeline) = self.readable(user, from, id)?;
        self.audited(user, from, "view", id)?;
        Ok(CaseDetail {
            waiting_in_pool: self.waiting_in_my_pool(user, &folded.consultation),
            superseded: folded.set_aside(),
            studies: self.arrivals(&folded.consultation),
            previews: self.previews(&folded.consultation),
            consultation: folded.consultation,
            timeline,
        })
    }

    /// Each attached study as it stands here.
    pub fn arrivals(&self, c: &proto::consult::Consultation) -> Vec<StudyArrival> {
        let arrived = self
            .archive
            .study_rows(&c.clinic, &c.studies)
            .unwrap_or_else(|e| {
                tracing::warn!(clinic = %c.clinic, error = %e, "the archive index could not be read");
                Vec::new()
            });
        c.studies
            .iter()
            .map(|uid| StudyArrival {
                study_instance_uid: uid.clone(),
                arrived: arrived
                    .iter()
                    .find(|s| &s.study_instance_uid == uid)
                    .cloned(),
            })
            .collect()
    }

    /// The case's previews, each with its series' arrival and the time left at the clinic's
    /// recent rate.
    pub fn previews(&self, c: &proto::consult::Consultation) -> Vec<PreviewArrival> {
        let previews: Vec<_> = c
            .attachments
            .iter()
            .filter_map(|a| Some((a, a.preview.clone()?)))
            .collect();
        if previews.is_empty() {
            return Vec::new();
        }
        let studies: Vec<String> = previews
            .iter()
            .map(|(_, p)| p.study_instance_uid.clone())
            .collect();
        let instances = self
            .archive
            .study_instances(&c.clinic, &studies)
            .unwrap_or_default();
        let rate = self
            .board
            .snapshot()
            .get(&c.clinic)
            .map_or(0.0, |l| l.throughput_bps);
        previews
            .into_iter()
            .map(|(a, p)| {
                let (count, bytes) = instances
                    .iter()
                    .filter(|([_, study, series, _], _)| {
                        *study == p.study_instance_uid && *series == p.series_instance_uid
                    })
                    .fold((0, 0), |(n, b), (_, r)| (n + 1, b + r.size));
                let mut arrival = PreviewArrival {
                    attachment: a.clone(),
                    viewable: self.archive.has(&c.clinic, &a.object).unwrap_or(false),
                    instances: count,
                    bytes,
                    seconds_left: None,
                    preview: p,
                };
                if !arrival.complete() && rate > 0.0 {
                    let left = arrival.preview.bytes.saturating_sub(bytes) as f64 / rate;
                    arrival.seconds_left = Some(left.ceil() as u64);
                }
                arrival
            })
            .collect()
    }

    /// `user` acts on a case: accept, ask, report, addendum, decline, or (administrators)
    /// assign. Recorded in the audit log before it is appended.
    pub fn act(
        &self,
        user: &User,
        from: std::net::SocketAddr,
        id: &ConsultationId,
        action: CaseAction,
        body: ActionBody,
    ) -> Result<Event, CaseError> {
        let (folded, _) = self.allowed(user, Some(from), id, |case| Action::Act(case, action))?;
        let c = folded.consultation;
        let need = |v: Option<String>, what: &str| {
            v.filter(|s| !s.trim().is_empty())
                .ok_or_else(|| CaseError::invalid(format!("{what} is required")))
        };
        // The specialist acting is the authenticated one (the policy checked the link).
        let specialist = || {
            user.specialist
                .clone()
                .ok_or_else(|| CaseError::forbidden("only specialists do this"))
        };
        let (actor, kind) = match action {
            CaseAction::Accept => {
                let me = specialist()?;
                (me.clone(), EventKind::Accepted { specialist: me })
            }
            CaseAction::Take => {
                let me = specialist()?;
                let pool = self.waiting_in_my_pool(user, &c).ok_or_else(|| {
                    CaseError::refused(
                        "only a delivered case nobody holds can be taken, by a member of its pool",
                    )
                })?;
                (
                    me.clone(),
                    EventKind::Assigned {
                        specialist: me,
                        rule: format!("pool:{pool}"),
                        reason: format!("taken from pool {pool} by {}", user.display_name),
                    },
                )
            }
            CaseAction::Ask => {
                let me = specialist()?;
                let text = need(body.text, "text")?;
                (
                    me.clone(),
                    EventKind::QuestionAsked {
                        specialist: me,
                        text,
                    },
                )
            }
            CaseAction::Report => {
                let me = specialist()?;
                let qualification = user
                    .qualification
                    .clone()
                    .ok_or_else(|| CaseError::forbidden("a qualification is needed to sign"))?;
                let impression = need(body.impression, "impression")?;
                let signed_before_complete = incomplete(&self.arrivals(&c));
                if let Some(a) = signed_before_complete {
                    if !body.confirm_incomplete {
                        return Err(CaseError::ImagesIncomplete(format!(
                                "{} of this case's images have arrived; to sign now, confirm that you sign before the rest has arrived (confirm_incomplete), or wait for them",
                                a.describe()
                            ),
                        ));
                    }
                }
                let report = Report {
                    findings: body.findings.unwrap_or_default(),
                    impression,
                    recommendation: body.recommendation.unwrap_or_default(),
                    signer_name: user.display_name.clone(),
                    signer_qualification: qualification,
                    signed_at_ms: now_ms(),
                    signed_before_complete,
                };
                (
                    me.clone(),
                    EventKind::Reported {
                        specialist: me,
                        report,
                    },
                )
            }
            CaseAction::Addendum => {
                let me = specialist()?;
                let text = need(body.text, "text")?;
                (
                    me.clone(),
                    EventKind::Addendum {
                        specialist: me,
                        text,
                        signed_at_ms: now_ms(),
                    },
                )
            }
            CaseAction::Decline => {
                let me = specialist()?;
                let reason = need(body.reason, "reason")?;
                (
                    me.clone(),
                    EventKind::Declined {
                        specialist: me,
                        reason,
                    },
                )
            }
            CaseAction::Assign => {
                let to = need(body.specialist, "specialist")?;
                let reason = body
                    .reason
                    .unwrap_or_else(|| format!("assigned by {}", user.name));
                let kind = match (&c.state, &c.assignee) {
                    (CaseState::Delivered, _) => EventKind::Assigned {
                        specialist: to,
                        rule: "manual".into(),
                        reason,
                    },
                    (_, Some(from)) => EventKind::Reassigned {
                        from: from.clone(),
                        to,
                        reason,
                    },
                    _ => {
                        return Err(CaseError::refused(format!(
                            "the consultation is {}; it cannot be assigned now",
                            c.state.label()
                        )))
                    }
                };
                (format!("admin:{}", user.name), kind)
            }
        };
        self.audited(user, from, action.name(), &c.id)?;
        let event = self
            .consult
            .append(&c.clinic, &c.id, &actor, now_ms(), kind)
            .map_err(CaseError::from)?;
        // Time from delivery, for the hospital's service figures.
        let since_delivery = c
            .delivered_at_ms
            .map(|d| (event.at_ms - d).max(0) as f64 / 1000.0);
        match (&event.kind, since_delivery) {
            (EventKind::Accepted { .. }, Some(s)) => self.metrics.time_to_accept.observe(s),
            (EventKind::Reported { .. }, Some(s)) => self.metrics.time_to_report.observe(s),
            _ => {}
        }
        Ok(event)
    }

    /// A clinic's studies (patient ids and names among them): an administrator sees all of
    /// them, a specialist only those attached to cases they may see. The read is recorded.
    pub fn studies(
        &self,
        user: &User,
        from: std::net::SocketAddr,
        clinic: &proto::ClinicId,
    ) -> Result<Vec<crate::archive::StudyRow>, CaseError> {
        access::check(user, Action::Studies)?;
        let mut studies = self.archive.studies(clinic);
        if user.role != daemon::accounts::Role::Admin {
            let mut allowed = std::collections::BTreeSet::new();
            for case in self.consult.log.list(clinic)? {
                if self.visible(user, &case.id).is_ok() {
                    allowed.extend(case.studies);
                }
            }
            studies.retain(|s| allowed.contains(&s.study_instance_uid));
        }
        self.audited_target(user, from, "view_studies", clinic.as_str())?;
        Ok(studies)
    }

    /// The studies `user` may read through DICOMweb, each with its clinic: an administrator
    /// every study of every clinic, a specialist those of the cases the policy lets them list.
    /// Not audited: the caller records what it answers with.
    pub fn readable_studies(
        &self,
        user: &User,
    ) -> Result<Vec<(proto::ClinicId, String)>, CaseError> {
        let mut out = std::collections::BTreeSet::new();
        if user.role == daemon::accounts::Role::Admin {
            for clinic in self.archive.clinics().map_err(CaseError::internal)? {
                for row in self.archive.studies(&clinic) {
                    out.insert((clinic.clone(), row.study_instance_uid));
                }
            }
        } else {
            for c in self.listable(user)? {
                out.extend(c.studies.iter().map(|s| (c.clinic.clone(), s.clone())));
            }
        }
        Ok(out.into_iter().collect())
    }

    /// The studies `user` may add instances to over DICOMweb (a key image, a structured
    /// report): those of the cases they hold, accepted and not cancelled, each with its clinic
    /// and the case's patient id.
    pub fn storable_studies(
        &self,
        user: &User,
    ) -> Result<Vec<(proto::ClinicId, String, String)>, CaseError> {
        let Some(me) = user.specialist.as_deref() else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for c in self.listable(user)? {
            let holds = c.assignee.as_deref() == Some(me)
                && c.accepted_at_ms.is_some()
                && c.state != CaseState::Cancelled;
            if holds {
                for study in &c.studies {
                    out.push((c.clinic.clone(), study.clone(), c.patient.id.clone()));
                }
            }
        }
        Ok(out)
    }

    /// Every case `user` may list, open or finished, in the log's order. Not audited: the
    /// caller records what it answers with.
    pub fn listable(&self, user: &User) -> Result<Vec<Consultation>, CaseError> {
        let mut out = Vec::new();
        for c in self.consult.log.all().map_err(CaseError::internal)? {
            let pool = self.waiting_in_my_pool(user, &c);
            let row = access::Case {
                consultation: &c,
                timeline: &[],
                my_pool: pool.as_deref(),
            };
            if access::check(user, Action::List(row)).is_ok() {
                out.push(c);
            }
        }
        Ok(out)
    }

    /// An attachment of a case the user may see, once it has arrived: its media type (only
    /// the two kinds a clinic can attach, whatever an event claims), file name and bytes. The
    /// read is recorded.
    pub fn attachment(
        &self,
        user: &User,
        from: std::net::SocketAddr,
        id: &ConsultationId,
        object: &str,
    ) -> Result<(String, String, Vec<u8>), CaseError> {
        let c = self.readable(user, from, id)?.0.consultation;
        let a = c
            .attachments
            .iter()
            .find(|a| a.object.as_str() == object)
            .ok_or_else(|| CaseError::not_found(format!("no attachment {object} on {id}")))?;
        if !self
            .archive
            .has(&c.clinic, &a.object)
            .map_err(CaseError::internal)?
        {
            return Err(CaseError::NotArrived(format!(
                "{} has not arrived from the clinic yet",
                a.name
            )));
        }
        self.audited(user, from, "view_attachment", id)?;
        let bytes = self
            .archive
            .object_bytes(&a.object)
            .map_err(CaseError::internal)?;
        let media_type = match a.media_type.as_str() {
            t @ ("application/pdf" | "image/jpeg") => t.to_owned(),
            _ => "application/octet-stream".to_owned(),
        };
        Ok((media_type, a.name.clone(), bytes))
    }
}

/// How long a user's DICOMweb scope is reused: a viewer asks for a study's frames one request
/// each, and each would otherwise fold every case again. A case routed away from a specialist
/// stays readable to them over DICOMweb this much longer at most.
pub const SCOPE_KEPT: std::time::Duration = std::time::Duration::from_secs(5);

/// A user's readable studies, each with its clinic.
pub type Studies = Arc<Vec<(proto::ClinicId, String)>>;

/// Each user's readable studies, as last computed, and when.
#[derive(Debug, Default)]
pub struct Scopes(
    std::sync::Mutex<std::collections::HashMap<String, (std::time::Instant, Studies)>>,
);

impl Scopes {
    /// [`Cases::readable_studies`], computed at most [`SCOPE_KEPT`] ago. Keyed by what the
    /// policy reads of the user, so a changed role or specialty is not answered from an older
    /// scope.
    pub fn readable(&self, cases: &Cases, user: &User) -> Result<Studies, CaseError> {
        let key = format!("{}\0{:?}\0{:?}", user.name, user.role, user.specialist);
        let now = std::time::Instant::now();
        {
            let kept = self.0.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((at, studies)) = kept.get(&key) {
                if now.duration_since(*at) < SCOPE_KEPT {
                    return Ok(studies.clone());
                }
            }
        }
        let studies = Arc::new(cases.readable_studies(user)?);
        let mut kept = self.0.lock().unwrap_or_else(|p| p.into_inner());
        kept.retain(|_, (at, _)| now.duration_since(*at) < SCOPE_KEPT);
        kept.insert(key, (now, studies.clone()));
        Ok(studies)
    }
}
