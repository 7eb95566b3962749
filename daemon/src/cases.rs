//! The one schema of a case both sites answer with (`GET /api/v1/consultations/{id}` at the
//! gateway and at a clinic, `docs/api.md`): the consultation as its events make it, its
//! timeline, the events set aside, and its studies and previews as the answering site knows
//! them — at the hospital, what has arrived; at the clinic, what the hospital has receipted.

use proto::consult::{Arrival, Attachment, Consultation, Event, Preview, SetAside};
use serde::{Deserialize, Serialize};

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
