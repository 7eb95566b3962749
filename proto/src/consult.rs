//! Consultations: a township doctor's request for a specialist's signed opinion, kept as an
//! append-only log of events per consultation. State is derived from the events, never stored
//! beside them ([`Consultation::from_events`]); whether a new event may be appended is decided
//! by the same fold ([`Consultation::check`]), so both sites agree on what happened and why.
//!
//! Each side appends only its own kinds of events ([`EventKind::origin`]). Events are numbered
//! per clinic and per side ([`EventId`]); replication keeps a durable cursor per direction, so
//! applying an event twice has no effect ([`Log::apply`]).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::sync::Priority;
use crate::ClinicId;

/// How urgent a consultation is; its attached studies sync at this priority.
pub type Urgency = Priority;

/// A consultation's id: sortable by creation time and globally unique without coordination —
/// 48 bits of Unix milliseconds and 80 random bits, in Crockford base 32 (26 characters).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ConsultationId(String);

const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

impl ConsultationId {
    /// Builds an id from the creation time and 80 random bits (the caller's clock and
    /// randomness: this crate reads neither).
    pub fn new(unix_ms: u64, random: [u8; 10]) -> Self {
        let mut value: u128 = u128::from(unix_ms & 0xFFFF_FFFF_FFFF) << 80;
        for (i, b) in random.iter().enumerate() {
            value |= u128::from(*b) << (72 - 8 * i);
        }
        let text = (0..26)
            .rev()
            .map(|i| CROCKFORD[((value >> (5 * i)) & 31) as usize] as char)
            .collect();
        Self(text)
    }

    pub fn parse(s: &str) -> Option<Self> {
        (s.len() == 26 && s.as_bytes()[0] <= b'7' && s.bytes().all(|b| CROCKFORD.contains(&b)))
            .then(|| Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ConsultationId {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::parse(&s).ok_or_else(|| {
            format!("'{s}' is not a consultation id (26 characters of Crockford base 32)")
        })
    }
}

impl From<ConsultationId> for String {
    fn from(id: ConsultationId) -> String {
        id.0
    }
}

impl fmt::Display for ConsultationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ConsultationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConsultationId({})", self.0)
    }
}

/// Which site appended an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Clinic,
    Gateway,
}

impl Side {
    /// The site at the other end of the link.
    pub fn other(self) -> Side {
        match self {
            Side::Clinic => Side::Gateway,
            Side::Gateway => Side::Clinic,
        }
    }
}

/// An event's identity: the clinic it concerns, the side that appended it, and that side's
/// sequence number for the clinic (1, 2, 3, … without gaps). Replication cursors are these
/// numbers.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EventId {
    pub clinic: ClinicId,
    pub side: Side,
    pub seq: u64,
}

/// The patient as the clinic knows them. Patient data: never logged, never in metrics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Patient {
    /// The clinic's own patient id (scoped to the clinic).
    pub id: String,
    pub name: String,
    /// `M`, `F` or `O` as in DICOM (0010,0040); empty when unknown.
    pub sex: String,
    /// `YYYY-MM-DD`, empty when unknown.
    pub birth_date: String,
}

/// The patient's consent to remote consultation, required before a request is sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consent {
    /// Who gave it: the patient, or a named guardian.
    pub given_by: String,
    /// How: `written`, `verbal` (witnessed) or `electronic`.
    pub method: String,
    /// Unix milliseconds.
    pub at_ms: i64,
}

/// A file attached to a request besides DICOM studies (a referral letter, a photo).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// Content address of the bytes (they travel like any object).
    pub object: crate::sync::ObjectId,
    pub name: String,
    /// `application/pdf` or `image/jpeg`.
    pub media_type: String,
    /// Set when the clinic made this image as a preview of one series (minor version
    /// addition: absent on letters and photos, ignored by older sites).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview: Option<Preview>,
}

/// A preview of one series of an urgent case, made at the clinic and sent ahead of every full
/// image: a few key frames, downsampled and windowed to 8 bits. Not for diagnosis; the
/// original images follow unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preview {
    pub study_instance_uid: String,
    pub series_instance_uid: String,
    pub modality: Option<String>,
    /// Frames shown, and the instances and bytes of the series the clinic held when it made
    /// the preview: what the hospital waits for.
    pub frames: u32,
    pub instances: u32,
    pub bytes: u64,
}

/// A signed report. Immutable once signed: corrections are addenda.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub findings: String,
    pub impression: String,
    pub recommendation: String,
    pub signer_name: String,
    pub signer_qualification: String,
    /// Unix milliseconds.
    pub signed_at_ms: i64,
    /// Set when the specialist signed before every image of the case had arrived, and
    /// confirmed doing so (minor version addition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_before_complete: Option<Arrival>,
}

/// How much of a case's images the hospital held at a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Arrival {
    pub instances: u64,
    /// What the clinic holds; `None` when no instance (and so no count) has arrived.
    pub expected: Option<u64>,
}

impl Arrival {
    /// "12 of 40", or "12" when the total is not known yet.
    pub fn describe(&self) -> String {
        match self.expected {
            Some(e) => format!("{} of {e}", self.instances),
            None => self.instances.to_string(),
        }
    }
}

/// What happened. Each kind is appended by one side only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventKind {
    Created {
        patient: Patient,
        clinical_summary: String,
        question: String,
        specialty: String,
        urgency: Urgency,
        /// The short case number people say on the phone (`JZ-2026-0042`), given by the
        /// clinic when it creates the case ([`crate::find::CaseNumber`]). Minor version
        /// addition: absent on cases created before it, ignored by older sites.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        number: Option<String>,
    },
    ConsentRecorded {
        consent: Consent,
    },
    /// The clinic corrected the patient's details. Once a specialist has accepted the case,
    /// a change of who the patient is (id, name, birth date, sex) is a correction that needs
    /// its `reason` and is shown to the specialist (minor version addition).
    PatientUpdated {
        patient: Patient,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    StudiesAttached {
        study_instance_uids: Vec<String>,
        #[serde(default)]
        attachments: Vec<Attachment>,
    },
    /// The request was sent to the hospital (the clinic's doctor pressed "send").
    Submitted,
    /// The gateway holds the request durably.
    Delivered,
    Assigned {
        specialist: String,
        rule: String,
        reason: String,
    },
    Accepted {
        specialist: String,
    },
    QuestionAsked {
        specialist: String,
        text: String,
    },
    QuestionAnswered {
        /// The `seq` of the question's event (gateway side).
        question: u64,
        text: String,
    },
    Reported {
        specialist: String,
        report: Report,
    },
    Addendum {
        specialist: String,
        text: String,
        signed_at_ms: i64,
    },
    ReportAcknowledged,
    Declined {
        specialist: String,
        reason: String,
    },
    Reassigned {
        from: String,
        to: String,
        reason: String,
    },
    Escalated {
        from: String,
        to: String,
        reason: String,
    },
    Cancelled {
        reason: String,
    },
    /// Routing could not give the case to anyone (a specialty the roster does not know, no
    /// pool reads it, nobody may take it): it waits for an administrator, with why (minor
    /// version addition).
    Unrouted {
        reason: String,
    },
}

impl EventKind {
    /// The side allowed to append this kind.
    pub fn origin(&self) -> Side {
        match self {
            EventKind::Created { .. }
            | EventKind::ConsentRecorded { .. }
            | EventKind::PatientUpdated { .. }
            | EventKind::StudiesAttached { .. }
            | EventKind::Submitted
            | EventKind::QuestionAnswered { .. }
            | EventKind::ReportAcknowledged
            | EventKind::Cancelled { .. } => Side::Clinic,
            EventKind::Delivered
            | EventKind::Assigned { .. }
            | EventKind::Accepted { .. }
            | EventKind::QuestionAsked { .. }
            | EventKind::Reported { .. }
            | EventKind::Addendum { .. }
            | EventKind::Declined { .. }
            | EventKind::Reassigned { .. }
            | EventKind::Escalated { .. }
            | EventKind::Unrouted { .. } => Side::Gateway,
        }
    }

    /// A short name, for timelines and errors.
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::Created { .. } => "created",
            EventKind::ConsentRecorded { .. } => "consent recorded",
            EventKind::PatientUpdated { .. } => "patient updated",
            EventKind::StudiesAttached { .. } => "studies attached",
            EventKind::Submitted => "submitted",
            EventKind::Delivered => "delivered",
            EventKind::Assigned { .. } => "assigned",
            EventKind::Accepted { .. } => "accepted",
            EventKind::QuestionAsked { .. } => "question asked",
            EventKind::QuestionAnswered { .. } => "question answered",
            EventKind::Reported { .. } => "reported",
            EventKind::Addendum { .. } => "addendum",
            EventKind::ReportAcknowledged => "report acknowledged",
            EventKind::Declined { .. } => "declined",
            EventKind::Reassigned { .. } => "reassigned",
            EventKind::Escalated { .. } => "escalated",
            EventKind::Cancelled { .. } => "cancelled",
            EventKind::Unrouted { .. } => "unrouted",
        }
    }
}

/// One entry of a consultation's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub id: EventId,
    /// How many of the other side's events (for this clinic) its author had applied when it
    /// appended this one: what it may have been a reaction to. It fixes the order both sites
    /// fold events in ([`canonical_order`]).
    pub seen: u64,
    pub consultation: ConsultationId,
    /// Unix milliseconds, by the appending side's clock.
    pub at_ms: i64,
    /// The authenticated user who caused it (`system` for routing decisions).
    pub actor: String,
    #[serde(flatten)]
    pub kind: EventKind,
    /// The gateway's seal on its own events (HMAC-SHA256 of the event without it, under a
    /// key only the gateway and its backups hold), so that a restored gateway can take its
    /// lost events back from a clinic knowing the clinic did not write them (minor version
    /// addition; absent on clinic events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seal: Option<String>,
}

/// Where a consultation stands, derived from its events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Created at the clinic, not sent yet.
    Draft,
    /// Sent by the clinic, not yet held by the gateway.
    Submitted,
    /// Held by the gateway, waiting for routing.
    Delivered,
    /// Assigned to a specialist who has not accepted yet.
    Assigned,
    /// Accepted by its specialist, being worked on.
    Accepted,
    /// The specialist asked the clinic a question not answered yet.
    AwaitingAnswer,
    /// A signed report exists.
    Reported,
    /// The clinic has read the report.
    Acknowledged,
    Cancelled,
}

impl State {
    pub const ALL: [State; 9] = [
        State::Draft,
        State::Submitted,
        State::Delivered,
        State::Assigned,
        State::Accepted,
        State::AwaitingAnswer,
        State::Reported,
        State::Acknowledged,
        State::Cancelled,
    ];

    pub fn label(self) -> &'static str {
        match self {
            State::Draft => "draft",
            State::Submitted => "submitted",
            State::Delivered => "delivered",
            State::Assigned => "assigned",
            State::Accepted => "accepted",
            State::AwaitingAnswer => "awaiting_answer",
            State::Reported => "reported",
            State::Acknowledged => "acknowledged",
            State::Cancelled => "cancelled",
        }
    }

    /// Still needs someone at the hospital to act.
    pub fn is_open(self) -> bool {
        matches!(
            self,
            State::Submitted
                | State::Delivered
                | State::Assigned
                | State::Accepted
                | State::AwaitingAnswer
        )
    }
}

/// Time to accept a case of `urgency` when the hospital's roster does not say (30 min, 4 h,
/// 48 h): the gateway's roster may set its own (`routing.toml`), and the clinic, which does
/// not hold the roster, counts down with these.
pub fn default_sla(urgency: Urgency) -> std::time::Duration {
    let minutes = match urgency {
        Urgency::Emergency => 30,
        Urgency::Urgent => 4 * 60,
        Urgency::Routine => 48 * 60,
    };
    std::time::Duration::from_secs(60 * minutes)
}

/// Why an event may not be appended; the message says what to do instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("a {kind} event is appended by the {origin:?} side only")]
    WrongSide { kind: &'static str, origin: Side },
    #[error("the consultation must start with a created event")]
    NotCreated,
    #[error("the consultation was already created")]
    AlreadyCreated,
    #[error("the patient's consent is not recorded: record who gave it, how and when before sending the request")]
    NoConsent,
    #[error("the consultation is {state}; a {kind} event does not apply now")]
    NotNow {
        state: &'static str,
        kind: &'static str,
    },
    #[error("only the assigned specialist ({assigned}) may do this; {actor} is not assigned")]
    NotAssigned { assigned: String, actor: String },
    #[error("{0} already declined this consultation; it must go to someone else")]
    DeclinedBefore(String),
    #[error("no open question {0} to answer")]
    NoSuchQuestion(u64),
    #[error("a {0} field is empty")]
    Empty(&'static str),
    #[error("a signed report stands: the case cannot be cancelled once reported (a cancel that crossed the report on the link is kept, set aside)")]
    ReportStands,
    #[error("a specialist has accepted this case: changing who the patient is is a correction — give its reason, and the specialist is shown it")]
    CorrectionNeedsReason,
}

/// A change of the patient's identity after acceptance: when, why, and what it was before.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Correction {
    pub at_ms: i64,
    pub by: String,
    pub reason: String,
    pub before: Patient,
}

/// A consultation as its events make it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consultation {
    pub id: ConsultationId,
    /// The short case number from its created event; `None` for cases created before
    /// numbers existed.
    #[serde(default)]
    pub number: Option<String>,
    pub clinic: ClinicId,
    pub state: State,
    pub patient: Patient,
    pub clinical_summary: String,
    pub question: String,
    pub specialty: String,
    pub urgency: Urgency,
    pub consent: Option<Consent>,
    pub studies: Vec<String>,
    pub attachments: Vec<Attachment>,
    /// The specialist it is assigned to, if any.
    pub assignee: Option<String>,
    /// Specialists who declined it: never assigned it again.
    pub declined_by: Vec<String>,
    /// Question events (gateway `seq`) still unanswered.
    pub open_questions: Vec<u64>,
    pub report: Option<Report>,
    pub addenda: Vec<String>,
    /// Changes of who the patient is made after a specialist accepted the case, shown to
    /// the specialist.
    #[serde(default)]
    pub corrections: Vec<Correction>,
    /// Why routing could not give the delivered case to anyone, while it waits.
    #[serde(default)]
    pub unrouted: Option<String>,
    pub created_at_ms: i64,
    pub delivered_at_ms: Option<i64>,
    /// When the current assignee was given it (the SLA to accept runs from here).
    pub assigned_at_ms: Option<i64>,
    pub accepted_at_ms: Option<i64>,
    pub reported_at_ms: Option<i64>,
    /// When the clinic last answered a question of the specialist who has not acted on the
    /// case since (asked again, reported, declined, or the case moved to someone else): the
    /// worklist's "answer received".
    #[serde(default)]
    pub answered_at_ms: Option<i64>,
    /// Events applied, in order.
    pub events: usize,
}

impl Consultation {
    /// Assigned to `specialist`, who has not accepted it yet: new on their worklist.
    pub fn is_new_for(&self, specialist: &str) -> bool {
        self.state == State::Assigned && self.assignee.as_deref() == Some(specialist)
    }

    /// The clinic answered the specialist's question and the specialist has not acted on
    /// the case since.
    pub fn answer_received(&self) -> bool {
        self.answered_at_ms.is_some()
            && matches!(self.state, State::Accepted | State::AwaitingAnswer)
    }

    /// When the case must be accepted by, with `sla` for its urgency: while it waits for a
    /// specialist (delivered, or assigned and not accepted); at the clinic, from when it was
    /// sent while the hospital has not said more.
    pub fn accept_by_ms(&self, sla: std::time::Duration) -> Option<i64> {
        let since = match self.state {
            State::Assigned => self.assigned_at_ms,
            State::Delivered => self.delivered_at_ms,
            _ => None,
        }?;
        Some(since.saturating_add(i64::try_from(sla.as_millis()).unwrap_or(i64::MAX)))
    }

    /// Folds a consultation's events (in log order) into its state. An event the fold would
    /// refuse is an error: a log only ever holds events that were checked when appended.
    pub fn from_events<'a>(events: impl IntoIterator<Item = &'a Event>) -> Result<Self, Refusal> {
        let mut events = events.into_iter();
        let first = events.next().ok_or(Refusal::NotCreated)?;
        let mut c = Self::created(first)?;
        for e in events {
            c.apply(e)?;
        }
        Ok(c)
    }

    fn created(e: &Event) -> Result<Self, Refusal> {
        let EventKind::Created {
            patient,
            clinical_summary,
            question,
            specialty,
            urgency,
            number,
        } = &e.kind
        else {
            return Err(Refusal::NotCreated);
        };
        check_origin(e)?;
        for (value, name) in [
            (&patient.id, "patient id"),
            (question, "question"),
            (specialty, "specialty"),
        ] {
            if value.trim().is_empty() {
                return Err(Refusal::Empty(name));
            }
        }
        Ok(Self {
            id: e.consultation.clone(),
            number: number.clone(),
            clinic: e.id.clinic.clone(),
            state: State::Draft,
            patient: patient.clone(),
            clinical_summary: clinical_summary.clone(),
            question: question.clone(),
            specialty: specialty.clone(),
            urgency: *urgency,
            consent: None,
            studies: Vec::new(),
            attachments: Vec::new(),
            assignee: None,
            declined_by: Vec::new(),
            open_questions: Vec::new(),
            report: None,
            addenda: Vec::new(),
            corrections: Vec::new(),
            unrouted: None,
            created_at_ms: e.at_ms,
            delivered_at_ms: None,
            assigned_at_ms: None,
            accepted_at_ms: None,
            reported_at_ms: None,
            answered_at_ms: None,
            events: 1,
        })
    }

    /// Whether `kind`, appended by `actor`, is allowed now.
    pub fn check(&self, actor: &str, kind: &EventKind) -> Result<(), Refusal> {
        let not_now = || Refusal::NotNow {
            state: self.state.label(),
            kind: kind.name(),
        };
        let assigned_only = || match &self.assignee {
            Some(a) if a == actor => Ok(()),
            Some(a) => Err(Refusal::NotAssigned {
                assigned: a.clone(),
                actor: actor.to_owned(),
            }),
            None => Err(not_now()),
        };
        use State as S;
        match kind {
            EventKind::Created { .. } => Err(Refusal::AlreadyCreated),
            EventKind::ConsentRecorded { consent } => {
                if consent.given_by.trim().is_empty() {
                    return Err(Refusal::Empty("consent given_by"));
                }
                if consent.method.trim().is_empty() {
                    return Err(Refusal::Empty("consent method"));
                }
                (self.state == S::Draft).then_some(()).ok_or_else(not_now)
            }
            EventKind::StudiesAttached { .. } => {
                (!matches!(self.state, S::Reported | S::Acknowledged | S::Cancelled))
                    .then_some(())
                    .ok_or_else(not_now)
            }
            EventKind::PatientUpdated { patient, .. } => {
                if patient.id.trim().is_empty() {
                    return Err(Refusal::Empty("patient id"));
                }
                (!matches!(self.state, S::Reported | S::Acknowledged | S::Cancelled))
                    .then_some(())
                    .ok_or_else(not_now)
            }
            EventKind::Submitted => {
                if self.state != S::Draft {
                    return Err(not_now());
                }
                self.consent
                    .is_some()
                    .then_some(())
                    .ok_or(Refusal::NoConsent)
            }
            EventKind::Delivered => (self.state == S::Submitted)
                .then_some(())
                .ok_or_else(not_now),
            EventKind::Assigned { specialist, .. } => {
                if !matches!(self.state, S::Delivered) {
                    return Err(not_now());
                }
                self.not_declined(specialist)
            }
            EventKind::Reassigned { to, .. } | EventKind::Escalated { to, .. } => {
                if !matches!(self.state, S::Assigned | S::Accepted | S::AwaitingAnswer) {
                    return Err(not_now());
                }
                self.not_declined(to)
            }
            EventKind::Accepted { specialist } => {
                if self.state != S::Assigned {
                    return Err(not_now());
                }
                assigned_only()?;
                (specialist == actor)
                    .then_some(())
                    .ok_or_else(|| Refusal::NotAssigned {
                        assigned: specialist.clone(),
                        actor: actor.to_owned(),
                    })
            }
            EventKind::Declined { reason, .. } => {
                if !matches!(self.state, S::Assigned | S::Accepted) {
                    return Err(not_now());
                }
                if reason.trim().is_empty() {
                    return Err(Refusal::Empty("reason"));
                }
                assigned_only()
            }
            EventKind::QuestionAsked { text, .. } => {
                if !matches!(self.state, S::Accepted | S::AwaitingAnswer) {
                    return Err(not_now());
                }
                if text.trim().is_empty() {
                    return Err(Refusal::Empty("question"));
                }
                assigned_only()
            }
            EventKind::QuestionAnswered { question, text } => {
                if text.trim().is_empty() {
                    return Err(Refusal::Empty("answer"));
                }
                self.open_questions
                    .contains(question)
                    .then_some(())
                    .ok_or(Refusal::NoSuchQuestion(*question))
            }
            EventKind::Reported { report, .. } => {
                if !matches!(self.state, S::Accepted | S::AwaitingAnswer) {
                    return Err(not_now());
                }
                for (value, name) in [
                    (&report.impression, "impression"),
                    (&report.signer_name, "signer name"),
                    (&report.signer_qualification, "signer qualification"),
                ] {
                    if value.trim().is_empty() {
                        return Err(Refusal::Empty(name));
                    }
                }
                assigned_only()
            }
            EventKind::Addendum { text, .. } => {
                if !matches!(self.state, S::Reported | S::Acknowledged) {
                    return Err(not_now());
                }
                if text.trim().is_empty() {
                    return Err(Refusal::Empty("addendum"));
                }
                assigned_only()
            }
            EventKind::ReportAcknowledged => (self.state == S::Reported)
                .then_some(())
                .ok_or_else(not_now),
            EventKind::Unrouted { reason } => {
                if reason.trim().is_empty() {
                    return Err(Refusal::Empty("reason"));
                }
                (self.state == S::Delivered)
                    .then_some(())
                    .ok_or_else(not_now)
            }
            EventKind::Cancelled { .. } => match self.state {
                S::Reported | S::Acknowledged => Err(Refusal::ReportStands),
                s if s == S::Draft || s.is_open() => Ok(()),
                _ => Err(not_now()),
            },
        }
    }

    /// Whether a site may append `kind` now: [`Self::check`], and the rules for new events only
    /// (a log written before a rule existed still folds as it did): a change of who the
    /// patient is after acceptance needs its reason.
    pub fn admits(&self, actor: &str, kind: &EventKind) -> Result<(), Refusal> {
        self.check(actor, kind)?;
        if let EventKind::PatientUpdated { patient, reason } = kind {
            let correcting = self.accepted_at_ms.is_some() && *patient != self.patient;
            if correcting && reason.as_deref().is_none_or(|r| r.trim().is_empty()) {
                return Err(Refusal::CorrectionNeedsReason);
            }
        }
        Ok(())
    }

    fn not_declined(&self, specialist: &str) -> Result<(), Refusal> {
        if self.declined_by.iter().any(|d| d == specialist) {
            return Err(Refusal::DeclinedBefore(specialist.to_owned()));
        }
        Ok(())
    }

    /// Applies one more event after checking it.
    pub fn apply(&mut self, e: &Event) -> Result<(), Refusal> {
        check_origin(e)?;
        self.check(&e.actor, &e.kind)?;
        match &e.kind {
            EventKind::Created { .. } => return Err(Refusal::AlreadyCreated),
            EventKind::ConsentRecorded { consent } => self.consent = Some(consent.clone()),
            EventKind::PatientUpdated { patient, reason } => {
                if self.accepted_at_ms.is_some() && *patient != self.patient {
                    self.corrections.push(Correction {
                        at_ms: e.at_ms,
                        by: e.actor.clone(),
                        reason: reason.clone().unwrap_or_default(),
                        before: self.patient.clone(),
                    });
                }
                self.patient = patient.clone();
            }
            EventKind::StudiesAttached {
                study_instance_uids,
                attachments,
            } => {
                for uid in study_instance_uids {
                    if !self.studies.contains(uid) {
                        self.studies.push(uid.clone());
                    }
                }
                for a in attachments {
                    if !self.attachments.contains(a) {
                        self.attachments.push(a.clone());
                    }
                }
            }
            EventKind::Submitted => self.state = State::Submitted,
            EventKind::Delivered => {
                self.state = State::Delivered;
                self.delivered_at_ms = Some(e.at_ms);
            }
            EventKind::Assigned { specialist, .. } => {
                self.state = State::Assigned;
                self.assignee = Some(specialist.clone());
                self.assigned_at_ms = Some(e.at_ms);
                self.unrouted = None;
            }
            EventKind::Reassigned { to, .. } | EventKind::Escalated { to, .. } => {
                self.state = State::Assigned;
                self.assignee = Some(to.clone());
                self.assigned_at_ms = Some(e.at_ms);
                self.accepted_at_ms = None;
                self.answered_at_ms = None;
            }
            EventKind::Accepted { .. } => {
                self.state = State::Accepted;
                self.accepted_at_ms = Some(e.at_ms);
            }
            EventKind::Declined { specialist, .. } => {
                self.declined_by.push(specialist.clone());
                self.assignee = None;
                self.assigned_at_ms = None;
                self.accepted_at_ms = None;
                self.answered_at_ms = None;
                // Back to routing: the gateway assigns someone else next.
                self.state = State::Delivered;
            }
            EventKind::QuestionAsked { .. } => {
                self.open_questions.push(e.id.seq);
                self.state = State::AwaitingAnswer;
                self.answered_at_ms = None;
            }
            EventKind::QuestionAnswered { question, .. } => {
                self.open_questions.retain(|q| q != question);
                self.answered_at_ms = Some(e.at_ms);
                if self.open_questions.is_empty() && self.state == State::AwaitingAnswer {
                    self.state = State::Accepted;
                }
            }
            EventKind::Reported { report, .. } => {
                self.report = Some(report.clone());
                self.state = State::Reported;
                self.reported_at_ms = Some(e.at_ms);
                self.answered_at_ms = None;
            }
            EventKind::Addendum { text, .. } => self.addenda.push(text.clone()),
            EventKind::ReportAcknowledged => self.state = State::Acknowledged,
            EventKind::Cancelled { .. } => self.state = State::Cancelled,
            EventKind::Unrouted { reason } => self.unrouted = Some(reason.clone()),
        }
        self.events += 1;
        Ok(())
    }
}

fn check_origin(e: &Event) -> Result<(), Refusal> {
    let origin = e.kind.origin();
    if e.id.side != origin {
        return Err(Refusal::WrongSide {
            kind: e.kind.name(),
            origin,
        });
    }
    Ok(())
}

/// Orders events from both sides the same way at both sites: each side's events keep their
/// sequence order, an event comes after the other side's events its author had seen, and events
/// appended concurrently put the clinic's first — except a cancel, which goes after the
/// gateway's events it did not see: a report signed while the clinic cancelled offline is a
/// report, and the cancel that crossed it is set aside ([`Refusal::ReportStands`]). Every site holding the same events therefore
/// folds them identically, whatever order they arrived in.
///
/// The slices are one side's events each, in sequence order: a clinic's whole log, or only the
/// events of one consultation (the rule compares sequence numbers, so it needs no others).
pub fn canonical_order<'a>(clinic: &'a [Event], gateway: &'a [Event]) -> Vec<&'a Event> {
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::with_capacity(clinic.len() + gateway.len());
    while i < clinic.len() || j < gateway.len() {
        // An event may go once every event of the other side it saw is out.
        let clinic_ready = clinic
            .get(i)
            .is_some_and(|c| gateway.get(j).is_none_or(|g| g.id.seq > c.seen));
        let gateway_ready = gateway
            .get(j)
            .is_some_and(|g| clinic.get(i).is_none_or(|c| c.id.seq > g.seen));
        let cancel_waits = gateway_ready
            && clinic
                .get(i)
                .is_some_and(|c| matches!(c.kind, EventKind::Cancelled { .. }));
        if (clinic_ready && !cancel_waits) || (!gateway_ready && i < clinic.len()) {
            // The second branch only runs on logs that each claim to have seen the other's
            // next event (corrupt): keep going in sequence order rather than stall.
            out.push(&clinic[i]);
            i += 1;
        } else {
            out.push(&gateway[j]);
            j += 1;
        }
    }
    out
}

/// A consultation folded from events in canonical order, with the events that did not apply
/// (one side acted on a state the other had already changed, e.g. an acceptance crossing a
/// cancellation). Both sites reach the same result from the same events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Folded {
    pub consultation: Consultation,
    /// Events that were refused, with why: shown in the timeline as superseded.
    pub superseded: Vec<(EventId, Refusal)>,
}

/// An event the fold set aside, with why in words: what both sites' pages and APIs show.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetAside {
    pub event: EventId,
    pub reason: String,
}

impl Folded {
    /// The superseded events with their reasons in words.
    pub fn set_aside(&self) -> Vec<SetAside> {
        self.superseded
            .iter()
            .map(|(event, why)| SetAside {
                event: event.clone(),
                reason: why.to_string(),
            })
            .collect()
    }

    /// Folds one consultation's events (already in canonical order); `None` without its
    /// created event.
    pub fn fold<'a>(events: impl IntoIterator<Item = &'a Event>) -> Option<Self> {
        let mut events = events.into_iter();
        let mut superseded = Vec::new();
        let mut consultation = loop {
            let e = events.next()?;
            match Consultation::created(e) {
                Ok(c) => break c,
                Err(r) => superseded.push((e.id.clone(), r)),
            }
        };
        for e in events {
            if let Err(r) = consultation.apply(e) {
                superseded.push((e.id.clone(), r));
            }
        }
        Some(Self {
            consultation,
            superseded,
        })
    }
}

/// What applying a replicated event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// New: it was appended.
    Appended,
    /// Already applied (its sequence number is at or below the cursor): nothing changed.
    Duplicate,
}

/// Why a replicated event cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplicationError {
    #[error("event {got} from the {side:?} side arrived before event {expected}; the sender must resend from the cursor")]
    Gap { side: Side, expected: u64, got: u64 },
    #[error("event for clinic {got} on the link of clinic {expected}")]
    OtherClinic { expected: String, got: String },
    #[error("a {got:?}-side event in the {expected:?}-side log")]
    WrongDirection { expected: Side, got: Side },
    #[error("a {kind} event from the {side:?} side: only the {origin:?} side appends those")]
    WrongOrigin {
        kind: &'static str,
        side: Side,
        origin: Side,
    },
}

/// The receiving end of one direction of replication for one clinic: the cursor is the last
/// sequence number applied, kept durably with the events by the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Log {
    pub clinic: ClinicId,
    pub side: Side,
    pub cursor: u64,
}

impl Log {
    /// Decides whether `event` (from `self.side`) is new, a duplicate, or out of order. The
    /// caller stores a new event and the new cursor in one durable write.
    pub fn apply(&mut self, event: &Event) -> Result<Applied, ReplicationError> {
        if event.id.clinic != self.clinic {
            return Err(ReplicationError::OtherClinic {
                expected: self.clinic.to_string(),
                got: event.id.clinic.to_string(),
            });
        }
        if event.id.side != self.side {
            return Err(ReplicationError::WrongDirection {
                expected: self.side,
                got: event.id.side,
            });
        }
        if event.id.seq <= self.cursor {
            return Ok(Applied::Duplicate);
        }
        // A site's fold already sets such an event aside; refusing it here keeps it out of
        // the log, so no later reading of it (an assignment names who may see a case) can
        // take it at its word.
        if event.kind.origin() != event.id.side {
            return Err(ReplicationError::WrongOrigin {
                kind: event.kind.name(),
                side: event.id.side,
                origin: event.kind.origin(),
            });
        }
        if event.id.seq != self.cursor + 1 {
            return Err(ReplicationError::Gap {
                side: self.side,
                expected: self.cursor + 1,
                got: event.id.seq,
            });
        }
        self.cursor = event.id.seq;
        Ok(Applied::Appended)
    }
}

#[cfg(test)]
mod tests;
