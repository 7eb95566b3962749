//! The one schema of a case both sites answer with (`GET /api/v1/consultations/{id}` at the
//! gateway and at a clinic, `docs/api.md`): the consultation as its events make it, its
//! timeline, the events set aside, and its studies and previews as the answering site knows
//! them — at the hospital, what has arrived; at the clinic, what the hospital has receipted.

use proto::consult::{Arrival, Attachment, Consultation, Event, Preview, SetAside};
use serde::{Deserialize, Serialize};
use store::consult::ConsultError;

/// Why a case could not be read, made or acted on, at either site: typed, with no status
/// codes (the HTTP layer maps it, `daemon::api`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CaseError {
    /// No such case, or one the caller may not see.
    #[error("{0}")]
    NotFound(String),
    /// Nobody is signed in.
    #[error("{0}")]
    Unauthenticated(String),
    /// The caller may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// The request lacks something, names something unknown or carries something unusable.
    #[error("{0}")]
    Invalid(String),
    /// The case's own rules refuse it now, or the studies name another patient.
    #[error("{0}")]
    Refused(String),
    /// Signing before every image has arrived needs the specialist's confirmation.
    #[error("{0}")]
    ImagesIncomplete(String),
    /// What is asked for has not arrived from the clinic yet.
    #[error("{0}")]
    NotArrived(String),
    /// This agent's certificate names no clinic: there are no consultations to keep.
    #[error(
        "this agent's certificate names no clinic; install the clinic's bundle from `certs clinic`"
    )]
    NoClinic,
    /// After a restore, the hospital awaits the clinic's events.
    #[error("{0}")]
    Awaiting(String),
    #[error("{0}")]
    Internal(String),
}

impl CaseError {
    pub fn internal(e: impl std::fmt::Display) -> Self {
        CaseError::Internal(e.to_string())
    }
    pub fn not_found(e: impl std::fmt::Display) -> Self {
        CaseError::NotFound(e.to_string())
    }
    pub fn forbidden(e: impl std::fmt::Display) -> Self {
        CaseError::Forbidden(e.to_string())
    }
    pub fn invalid(e: impl std::fmt::Display) -> Self {
        CaseError::Invalid(e.to_string())
    }
    pub fn refused(e: impl std::fmt::Display) -> Self {
        CaseError::Refused(e.to_string())
    }
}

impl From<ConsultError> for CaseError {
    fn from(e: ConsultError) -> Self {
        match e {
            ConsultError::NotFound(id) => CaseError::NotFound(format!("no consultation {id}")),
            ConsultError::Refused(r) => CaseError::refused(r),
            ConsultError::TooLarge { .. } => CaseError::invalid(e),
            ConsultError::AwaitingClinic(_) => CaseError::Awaiting(e.to_string()),
            other => CaseError::internal(other),
        }
    }
}

/// A case as one site shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CaseDetail {
    pub consultation: Consultation,
    /// Both sides' events, in the order both sites fold them.
    pub timeline: Vec<Event>,
    /// Events that no longer applied when both sides' events met (shown struck through, with
    /// why).
    #[serde(default)]
    pub superseded: Vec<SetAside>,
    /// Each attached study.
    #[serde(default)]
    pub studies: Vec<StudyArrival>,
    /// The clinic's previews of an urgent case's series, with how much of each series the
    /// hospital holds (empty at the clinic).
    #[serde(default)]
    pub previews: Vec<PreviewArrival>,
    /// At the hospital: the pool the case waits in, when the reader is a member who may take
    /// it.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub waiting_in_pool: Option<String>,
}

/// One attached study.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StudyArrival {
    pub study_instance_uid: String,
    /// At the hospital, what has arrived; at the clinic, what the hospital has receipted (with
    /// `expected_instances` the instances the clinic holds). `None` while nothing has.
    pub arrived: Option<StudyRow>,
}

/// A study's instances, series and bytes at one site.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StudyRow {
    pub study_instance_uid: String,
    pub modality: Option<String>,
    pub instances: u64,
    /// Instances the clinic holds (at the hospital: as the clinic last said).
    pub expected_instances: Option<u64>,
    /// Every instance the clinic holds is at the hospital.
    pub complete: bool,
    pub series: u64,
    pub bytes: u64,
    /// Unix seconds of the latest instance.
    pub received_at: i64,
}

/// A series' preview and how much of the series itself has arrived.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PreviewArrival {
    pub attachment: Attachment,
    pub preview: Preview,
    /// The preview image itself is here.
    pub viewable: bool,
    /// Instances and bytes of the series held here.
    pub instances: u64,
    pub bytes: u64,
    /// At the clinic's recent rate, until the rest of the series is here; `None` when it
    /// all is, or no rate is known.
    pub seconds_left: Option<u64>,
}

impl PreviewArrival {
    /// Every instance the clinic held when it made the preview is here.
    pub fn complete(&self) -> bool {
        self.instances >= u64::from(self.preview.instances)
    }
}

/// How much of a case's images has arrived, when not all of it has: what a report signed
/// now records. A study with no instance here yet counts as missing.
pub fn incomplete(studies: &[StudyArrival]) -> Option<Arrival> {
    let all_here = studies
        .iter()
        .all(|s| s.arrived.as_ref().is_some_and(|r| r.complete));
    (!all_here).then(|| Arrival {
        instances: studies
            .iter()
            .filter_map(|s| s.arrived.as_ref())
            .map(|r| r.instances)
            .sum(),
        expected: studies
            .iter()
            .map(|s| s.arrived.as_ref().and_then(|r| r.expected_instances))
            .sum(),
    })
}
