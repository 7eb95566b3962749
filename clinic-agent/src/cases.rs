//! The consultations as the clinic works them, pure of HTTP: the doctor creates a request
//! (patient, consent, question, studies, a letter), sends it, answers the specialist's
//! questions, reads and acknowledges the report — offline too: everything is appended to the
//! clinic's log and travels when the link is up. Each call asks the access policy
//! (`crate::access`) first; errors are [`CaseError`]s, which the JSON API and the pages turn
//! into answers. The acting doctor is always the authenticated one.

use daemon::accounts::User;
use daemon::now_ms;
use proto::consult::{Consent, ConsultationId, Event, EventKind, Folded, Patient, Urgency};
use proto::ClinicId;
use serde::{Deserialize, Serialize};

use crate::access::{self, Action, Caller, ClinicAction, Denied};
use crate::Handle;

pub use daemon::cases::CaseDetail;

/// The largest attachment accepted.
pub const MAX_ATTACHMENT: usize = 20 * 1024 * 1024;

pub use daemon::cases::CaseError;

impl From<Denied> for CaseError {
    /// A case the caller may not see does not exist for them.
    fn from(d: Denied) -> Self {
        match d {
            Denied::Unauthenticated => CaseError::Unauthenticated(d.to_string()),
            Denied::Hidden => CaseError::NotFound("no such consultation".into()),
            Denied::Forbidden(why) => CaseError::Forbidden(why),
        }
    }
}

/// Consent as a request carries it.
#[derive(Debug, Deserialize)]
pub struct ConsentBody {
    pub given_by: String,
    pub method: String,
}

/// A new consultation as the API and the new-case form send it.
#[derive(Debug, Deserialize)]
pub struct NewConsultation {
    pub patient: Patient,
    #[serde(default)]
    pub clinical_summary: String,
    pub question: String,
    pub specialty: String,
    pub urgency: Urgency,
    pub consent: Option<ConsentBody>,
    #[serde(default)]
    pub studies: Vec<String>,
    /// Send it at once (needs `consent`).
    #[serde(default)]
    pub submit: bool,
}

/// A PDF or a JPEG to attach, as it was received.
#[derive(Debug)]
pub struct NewAttachment {
    pub name: String,
    /// The media type it claims (`application/pdf` or `image/jpeg`); its first bytes must agree.
    pub media_type: String,
    pub bytes: Vec<u8>,
}

/// What an action carries.
#[derive(Debug, Default, Deserialize)]
pub struct ActionBody {
    pub patient: Option<Patient>,
    pub given_by: Option<String>,
    pub method: Option<String>,
    pub study_instance_uids: Option<Vec<String>>,
    pub question: Option<u64>,
    pub text: Option<String>,
    pub reason: Option<String>,
}

/// One row of the clinic's list.
#[derive(Debug, Serialize, Deserialize)]
pub struct CaseRow {
    pub id: ConsultationId,
    /// The short case number (`JZ-2026-0042`); `None` for cases from before numbers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<String>,
    pub state: proto::consult::State,
    pub urgency: Urgency,
    pub specialty: String,
    pub question: String,
    pub patient_id: String,
    #[serde(default)]
    pub patient_name: String,
    /// DICOM sex (M, F, O) and birth date, as the case holds them.
    #[serde(default)]
    pub patient_sex: String,
    #[serde(default)]
    pub patient_birth_date: String,
    pub assignee: Option<String>,
    pub created_at_ms: i64,
    /// Open questions from the specialist waiting for an answer.
    pub open_questions: usize,
    /// The studies attached, by Study Instance UID.
    pub studies: Vec<String>,
    /// The modalities of the attached studies held here.
    #[serde(default)]
    pub modalities: Vec<String>,
    /// When the hospital should accept it by, while it waits for a specialist (delivered, or
    /// assigned and not accepted), by the default time of its urgency
    /// (`proto::consult::default_sla`): the clinic does not hold the hospital's roster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accept_by_ms: Option<i64>,
}

/// A consultation id as a path names it; an id that cannot be one names no case.
/// The draft form of the answer to question `question`.
fn answer_form(question: u64) -> String {
    format!("answer-{question}")
}

pub fn parse_id(id: &str) -> Result<ConsultationId, CaseError> {
    ConsultationId::parse(id).ok_or_else(|| CaseError::NotFound(format!("no consultation {id}")))
}

/// Refuses what cannot be attached: anything but a PDF or a JPEG (by its first bytes), or a
/// file without a usable name.
pub fn check_attachment(name: &str, media_type: &str, body: &[u8]) -> Result<(), CaseError> {
    let magic_ok = match media_type {
        "application/pdf" => body.starts_with(b"%PDF-"),
        "image/jpeg" => body.starts_with(&[0xFF, 0xD8, 0xFF]),
        _ => {
            return Err(CaseError::invalid(
                "attach a PDF (Content-Type: application/pdf) or a JPEG photo (image/jpeg)",
            ))
        }
    };
    if !magic_ok {
        return Err(CaseError::invalid(format!(
            "the file is not a {media_type}: its first bytes do not match"
        )));
    }
    if name.trim().is_empty() || name.len() > 200 {
        return Err(CaseError::invalid("name the file: ?name=letter.pdf"));
    }
    Ok(())
}

/// The clinic's work on consultations: what the API, the pages and the tests call.
#[derive(Clone, Copy)]
pub struct Cases<'a> {
    handle: &'a Handle,
}

impl<'a> Cases<'a> {
    pub fn new(handle: &'a Handle) -> Self {
        Self { handle }
    }

    /// This clinic's id; without one (a certificate that names no clinic) there are no
    /// consultations to keep.
    pub fn here(&self) -> Result<&'a ClinicId, CaseError> {
        self.handle.clinic.as_ref().ok_or(CaseError::NoClinic)
    }

    /// This clinic's consultations that `search` asks for, newest first unless it asks for
    /// another order.
    pub fn list(
        &self,
        user: &User,
        search: &proto::find::Search,
    ) -> Result<Vec<CaseRow>, CaseError> {
        access::check(Caller::User(user), Action::List)?;
        let mut all = self.handle.consult.log.list(self.here()?)?;
        all.retain(|c| search.matches(c));
        all.reverse();
        all.sort_by(|a, b| search.compare(&a.into(), &b.into()));
        let modalities = if all.iter().any(|c| !c.studies.is_empty()) {
            self.handle.store.study_modalities()
        } else {
            Default::default()
        };
        Ok(all
            .into_iter()
            .map(|c| {
                let sla = proto::consult::default_sla(c.urgency);
                let mut shown: Vec<String> = c
                    .studies
                    .iter()
                    .filter_map(|uid| modalities.get(uid).cloned())
                    .collect();
                shown.dedup();
                CaseRow {
                    accept_by_ms: c.accept_by_ms(sla),
                    id: c.id,
                    number: c.number,
                    state: c.state,
                    urgency: c.urgency,
                    specialty: c.specialty,
                    question: c.question,
                    patient_id: c.patient.id,
                    patient_name: c.patient.name,
                    patient_sex: c.patient.sex,
                    patient_birth_date: c.patient.birth_date,
                    assignee: c.assignee,
                    created_at_ms: c.created_at_ms,
                    open_questions: c.open_questions.len(),
                    studies: c.studies,
                    modalities: shown,
                }
            })
            .collect())
    }

    /// The case whose short number is `number` (`JZ-2026-0042`), if this clinic holds one
    /// and `user` may list cases.
    pub fn by_number(
        &self,
        user: &User,
        number: &str,
    ) -> Result<Option<ConsultationId>, CaseError> {
        access::check(Caller::User(user), Action::List)?;
        Ok(self
            .handle
            .consult
            .log
            .list(self.here()?)?
            .into_iter()
            .find(|c| {
                c.number
                    .as_deref()
                    .is_some_and(|n| n.eq_ignore_ascii_case(number))
            })
            .map(|c| c.id))
    }

    /// A case's fold and timeline, if the policy lets `user` do `action` to it (not found
    /// for a case this clinic does not hold).
    fn allowed(
        &self,
        user: &User,
        id: &ConsultationId,
        action: impl for<'c> FnOnce(access::Case<'c>) -> Action<'c>,
    ) -> Result<(Folded, Vec<Event>), CaseError> {
        let here = self.here()?;
        let timeline = self.handle.consult.log.timeline(id)?;
        let folded = Folded::fold(&timeline);
        let case = access::Case {
            clinic: folded.as_ref().map(|f| &f.consultation.clinic),
            here,
        };
        access::check(Caller::User(user), action(case)).map_err(|d| match d {
            Denied::Hidden => CaseError::NotFound(format!("no consultation {id}")),
            other => other.into(),
        })?;
        let folded = folded.ok_or_else(|| CaseError::NotFound(format!("no consultation {id}")))?;
        Ok((folded, timeline))
    }

    /// A case as the doctor sees it, with its studies as the hospital has receipted them.
    pub fn detail(&self, user: &User, id: &ConsultationId) -> Result<CaseDetail, CaseError> {
        // A closure, not the variant itself: it must take a case of any lifetime.
        #[allow(clippy::redundant_closure)]
        let (folded, timeline) = self.allowed(user, id, |case| Action::Read(case))?;
        Ok(self.shown(folded, timeline))
    }

    fn shown(&self, folded: Folded, timeline: Vec<Event>) -> CaseDetail {
        CaseDetail {
            superseded: folded.set_aside(),
            studies: self
                .handle
                .store
                .study_arrivals(&folded.consultation.studies),
            previews: Vec::new(),
            waiting_in_pool: None,
            consultation: folded.consultation,
            timeline,
        }
    }

    /// A case just changed by a caller the policy let through.
    fn current(&self, id: &ConsultationId) -> Result<CaseDetail, CaseError> {
        let timeline = self.handle.consult.log.timeline(id)?;
        let folded = Folded::fold(&timeline)
            .ok_or_else(|| CaseError::NotFound(format!("no consultation {id}")))?;
        Ok(self.shown(folded, timeline))
    }

    fn append(
        &self,
        user: &User,
        id: &ConsultationId,
        kind: EventKind,
    ) -> Result<Event, CaseError> {
        Ok(self
            .handle
            .consult
            .append(self.here()?, id, &user.name, now_ms(), kind)?)
    }

    /// Keeps what `user` typed into the answer to question `question` of a case they may
    /// answer.
    pub fn save_answer_draft(
        &self,
        user: &User,
        id: &ConsultationId,
        question: u64,
        text: &str,
    ) -> Result<(), CaseError> {
        self.allowed(user, id, |case| Action::Act(case, ClinicAction::Answer))?;
        self.handle
            .drafts
            .save(
                &user.name,
                id.as_str(),
                &answer_form(question),
                [("text", text)],
                now_ms(),
            )
            .map_err(|e| CaseError::invalid(e.to_string()))
    }

    /// What `user` has typed and not sent into the answer to each of `questions`.
    pub fn answer_drafts(
        &self,
        user: &User,
        id: &ConsultationId,
        questions: impl IntoIterator<Item = u64>,
    ) -> std::collections::BTreeMap<u64, String> {
        questions
            .into_iter()
            .filter_map(|q| {
                let text = self
                    .handle
                    .drafts
                    .load(&user.name, id.as_str(), &answer_form(q))
                    .remove("text")?;
                Some((q, text))
            })
            .collect()
    }

    /// Creates a consultation (and sends it when asked and consent is recorded); nothing is
    /// stored when the request is refused.
    pub fn create(&self, user: &User, req: NewConsultation) -> Result<CaseDetail, CaseError> {
        access::check(Caller::User(user), Action::Create)?;
        if req.submit && req.consent.is_none() {
            return Err(CaseError::refused(proto::consult::Refusal::NoConsent));
        }
        let mut random = [0u8; 10];
        getrandom::getrandom(&mut random).map_err(CaseError::internal)?;
        let id = ConsultationId::new(now_ms() as u64, random);
        let urgency = req.urgency;
        let patient = self.with_study_demographics(req.patient, &req.studies)?;
        let mut steps = vec![EventKind::Created {
            patient,
            clinical_summary: req.clinical_summary,
            question: req.question,
            specialty: req.specialty,
            urgency,
            number: None,
        }];
        if let Some(c) = req.consent {
            steps.push(EventKind::ConsentRecorded {
                consent: Consent {
                    given_by: c.given_by,
                    method: c.method,
                    at_ms: now_ms(),
                },
            });
        }
        if !req.studies.is_empty() {
            steps.push(EventKind::StudiesAttached {
                study_instance_uids: req.studies.clone(),
                attachments: Vec::new(),
            });
        }
        if req.submit {
            steps.push(EventKind::Submitted);
        }
        // The first step checks the request itself; nothing is stored if it is refused. The
        // created event gets the clinic's next case number as it is appended.
        for kind in steps {
            if matches!(kind, EventKind::Created { .. }) {
                self.handle.consult.append_numbered(
                    self.here()?,
                    &id,
                    &user.name,
                    now_ms(),
                    kind,
                    &self.handle.case_prefix,
                )?;
            } else {
                self.append(user, &id, kind)?;
            }
        }
        // Previews first: queued ahead of everything, they leave before the raised images do.
        self.previews(user, &id);
        self.raise(&req.studies, urgency);
        self.current(&id)
    }

    /// Creates a consultation with a letter or a photo on it (the new-case form): the file is
    /// checked before anything is stored, and the request is sent, when asked, only once the
    /// file is on the case, so that it travels with it.
    pub fn create_with_attachment(
        &self,
        user: &User,
        mut req: NewConsultation,
        attachment: NewAttachment,
    ) -> Result<CaseDetail, CaseError> {
        access::check(Caller::User(user), Action::Create)?;
        check_attachment(&attachment.name, &attachment.media_type, &attachment.bytes)?;
        if req.submit && req.consent.is_none() {
            return Err(CaseError::refused(proto::consult::Refusal::NoConsent));
        }
        let submit = std::mem::take(&mut req.submit);
        let id = self.create(user, req)?.consultation.id;
        let detail = self.attach(user, &id, attachment)?;
        if submit {
            return self.act(user, &id, ClinicAction::Submit, ActionBody::default());
        }
        Ok(detail)
    }

    /// Attaches a PDF or a JPEG (checked by its first bytes, whatever it claims to be). Its
    /// bytes travel to the hospital like images, at the consultation's urgency.
    pub fn attach(
        &self,
        user: &User,
        id: &ConsultationId,
        attachment: NewAttachment,
    ) -> Result<CaseDetail, CaseError> {
        #[allow(clippy::redundant_closure)]
        let (folded, _) = self.allowed(user, id, |case| Action::Attach(case))?;
        let NewAttachment {
            name,
            media_type,
            bytes,
        } = attachment;
        check_attachment(&name, &media_type, &bytes)?;
        let object = self
            .handle
            .store_attachment(&bytes, folded.consultation.urgency, false)
            .map_err(CaseError::internal)?;
        let kind = EventKind::StudiesAttached {
            study_instance_uids: Vec::new(),
            attachments: vec![proto::consult::Attachment {
                object,
                name,
                media_type,
                preview: None,
            }],
        };
        self.append(user, id, kind)?;
        self.current(id)
    }

    /// The doctor acts on a case: consent, studies, submit, patient, answer, acknowledge,
    /// cancel.
    pub fn act(
        &self,
        user: &User,
        id: &ConsultationId,
        action: ClinicAction,
        body: ActionBody,
    ) -> Result<CaseDetail, CaseError> {
        let current = self
            .allowed(user, id, |case| Action::Act(case, action))?
            .0
            .consultation;
        let need = |v: Option<String>, what: &str| {
            v.filter(|s| !s.trim().is_empty())
                .ok_or_else(|| CaseError::invalid(format!("{what} is required")))
        };
        let kind = match action {
            ClinicAction::Consent => EventKind::ConsentRecorded {
                consent: Consent {
                    given_by: need(body.given_by, "given_by")?,
                    method: need(body.method, "method")?,
                    at_ms: now_ms(),
                },
            },
            ClinicAction::Studies => {
                let uids = body
                    .study_instance_uids
                    .filter(|u| !u.is_empty())
                    .ok_or_else(|| CaseError::invalid("study_instance_uids is required"))?;
                self.with_study_demographics(current.patient.clone(), &uids)?;
                EventKind::StudiesAttached {
                    study_instance_uids: uids,
                    attachments: Vec::new(),
                }
            }
            ClinicAction::Submit => EventKind::Submitted,
            ClinicAction::Patient => {
                let patient = body
                    .patient
                    .ok_or_else(|| CaseError::invalid("patient is required"))?;
                self.same_patient_as_studies(&patient, &current.studies)?;
                EventKind::PatientUpdated {
                    patient,
                    reason: body.reason.filter(|r| !r.trim().is_empty()),
                }
            }
            ClinicAction::Answer => {
                let question =
                    match body.question {
                        Some(q) => q,
                        // The one open question, when there is exactly one.
                        None => match current.open_questions.as_slice() {
                            [q] => *q,
                            _ => return Err(CaseError::invalid(
                                "question is required (the number of the question being answered)",
                            )),
                        },
                    };
                EventKind::QuestionAnswered {
                    question,
                    text: need(body.text, "text")?,
                }
            }
            ClinicAction::Acknowledge => EventKind::ReportAcknowledged,
            ClinicAction::Cancel => EventKind::Cancelled {
                reason: need(body.reason, "reason")?,
            },
        };
        let attached = match &kind {
            EventKind::StudiesAttached {
                study_instance_uids,
                ..
            } => Some(study_instance_uids.clone()),
            _ => None,
        };
        let sent_images = attached.is_some() || kind == EventKind::Submitted;
        let answered = match &kind {
            EventKind::QuestionAnswered { question, .. } => Some(*question),
            _ => None,
        };
        self.append(user, id, kind)?;
        if let Some(q) = answered {
            self.handle
                .drafts
                .clear(&user.name, id.as_str(), &answer_form(q));
        }
        // Previews first: queued ahead of everything, they leave before the raised images do.
        if sent_images {
            self.previews(user, id);
        }
        if let Some(uids) = attached {
            self.raise(&uids, current.urgency);
        }
        self.current(id)
    }

    /// Sends an urgent case's previews ahead of its images (`preview`); the case itself is
    /// already recorded, so a preview that cannot be made is logged, not refused.
    fn previews(&self, user: &User, id: &ConsultationId) {
        if let Err(e) = crate::preview::ensure(self.handle, &user.name, id) {
            tracing::warn!(case = %id, error = %e, "cannot make the case's previews");
        }
    }

    /// A study takes the highest urgency of the consultations it is attached to.
    fn raise(&self, studies: &[String], urgency: Urgency) {
        for uid in studies {
            if let Err(e) = self.handle.raise_study_priority(uid, urgency) {
                tracing::warn!(error = %e, "cannot raise an attached study's sync priority");
            }
        }
    }

    /// Fills what the doctor left empty from the first attached study's DICOM header, and
    /// refuses a study of another patient: attaching the wrong patient's images is the error
    /// to catch.
    fn with_study_demographics(
        &self,
        mut patient: Patient,
        studies: &[String],
    ) -> Result<Patient, CaseError> {
        for uid in studies {
            let Some(s) = self.handle.store.study_patient(uid) else {
                continue;
            };
            if patient.id.trim().is_empty() {
                patient.id = s.patient_id.clone();
            } else if patient.id != s.patient_id {
                return Err(CaseError::refused(format!(
                    "study {uid} belongs to another patient id than {}; check the study before attaching it",
                    patient.id
                )));
            }
            let fill = |field: &mut String, from: Option<String>| {
                if field.trim().is_empty() {
                    *field = from.unwrap_or_default();
                }
            };
            fill(&mut patient.name, s.patient_name);
            fill(&mut patient.sex, s.patient_sex);
            fill(&mut patient.birth_date, s.patient_birth_date);
        }
        Ok(patient)
    }

    /// Refuses a patient id that contradicts a study already attached to the case: the images
    /// say whose they are, and a case must not be moved onto another patient under them.
    fn same_patient_as_studies(
        &self,
        patient: &Patient,
        studies: &[String],
    ) -> Result<(), CaseError> {
        for uid in studies {
            if let Some(s) = self.handle.store.study_patient(uid) {
                if s.patient_id != patient.id {
                    return Err(CaseError::refused(format!(
                        "the attached study {uid} belongs to another patient id than {}; a case keeps the patient of its images (start a new case for another patient)",
                        patient.id
                    )));
                }
            }
        }
        Ok(())
    }
}
