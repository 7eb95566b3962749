//! The consultation events and their projections in PostgreSQL, shared by every gateway node:
//! `events` (clinic, side, sequence number → the event as JSON), `owners` (consultation →
//! clinic), `projections` (each consultation as its events make it, with whether it is open
//! and its patient, for the worklists) and `marks`. An event, its owner and its projection are
//! one transaction. Orders are byte orders (`COLLATE "C"`), as the sled adapter's.

use proto::consult::{Consultation, ConsultationId, Event, Side};
use proto::ClinicId;

use crate::events::{EventError, EventStore};

use super::{Pg, PgError};

fn err(e: PgError) -> EventError {
    EventError::Engine(e.to_string())
}

fn side(side: Side) -> i16 {
    match side {
        Side::Clinic => 0,
        Side::Gateway => 1,
    }
}

fn event_of(text: &str) -> Result<Event, EventError> {
    serde_json::from_str(text).map_err(|e| EventError::Corrupt(e.to_string()))
}

fn consultation_of(text: &str) -> Result<Consultation, EventError> {
    serde_json::from_str(text).map_err(|e| EventError::Corrupt(e.to_string()))
}

#[derive(Debug, Clone)]
pub struct PgEvents {
    pg: Pg,
}

impl PgEvents {
    pub fn new(pg: Pg) -> Self {
        Self { pg }
    }

    fn projections_where(
        &self,
        condition: &'static str,
        clinic: Option<&ClinicId>,
        patient: Option<&str>,
    ) -> Result<Vec<Consultation>, EventError> {
        let clinic = clinic.map(|c| c.as_str().to_owned());
        let patient = patient.map(str::to_owned);
        let rows = self
            .pg
            .run(move |c| {
                Ok(c.query(
                    &format!(
                        "SELECT state::text FROM projections
                         WHERE ($1::text IS NULL OR clinic = $1) AND ($2::text IS NULL OR patient_id = $2) AND {condition}
                         ORDER BY clinic COLLATE \"C\", consultation COLLATE \"C\""
                    ),
                    &[&clinic, &patient],
                )?)
            })
            .map_err(err)?;
        rows.iter()
            .map(|r| consultation_of(&r.get::<_, String>(0)))
            .collect()
    }
}

impl EventStore for PgEvents {
    fn cursor(&self, clinic: &ClinicId, s: Side) -> Result<u64, EventError> {
        let (clinic, s) = (clinic.as_str().to_owned(), side(s));
        let max = self
            .pg
            .run(move |c| {
                Ok(c.query_one(
                    "SELECT COALESCE(MAX(seq), 0) FROM events WHERE clinic = $1 AND side = $2",
                    &[&clinic, &s],
                )?
                .get::<_, i64>(0))
            })
            .map_err(err)?;
        Ok(u64::try_from(max).unwrap_or(0))
    }

    fn events_after(
        &self,
        clinic: &ClinicId,
        s: Side,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Event>, EventError> {
        let (clinic, s) = (clinic.as_str().to_owned(), side(s));
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self
            .pg
            .run(move |c| {
                Ok(c.query(
                    "SELECT event::text FROM events WHERE clinic = $1 AND side = $2 AND seq > $3
                     ORDER BY seq LIMIT $4",
                    &[&clinic, &s, &after, &limit],
                )?)
            })
            .map_err(err)?;
        rows.iter()
            .map(|r| event_of(&r.get::<_, String>(0)))
            .collect()
    }

    fn owner(&self, consultation: &ConsultationId) -> Result<Option<ClinicId>, EventError> {
        let id = consultation.as_str().to_owned();
        let row = self
            .pg
            .run(move |c| {
                Ok(c.query_opt("SELECT clinic FROM owners WHERE consultation = $1", &[&id])?)
            })
            .map_err(err)?;
        row.map(|r| {
            ClinicId::new(&r.get::<_, String>(0)).map_err(|e| EventError::Corrupt(e.to_string()))
        })
        .transpose()
    }

    fn events_of(
        &self,
        consultation: &ConsultationId,
    ) -> Result<(Vec<Event>, Vec<Event>), EventError> {
        let id = consultation.as_str().to_owned();
        let rows = self
            .pg
            .run(move |c| {
                Ok(c.query(
                    "SELECT e.side, e.event::text FROM events e JOIN owners o
                       ON o.consultation = e.consultation AND o.clinic = e.clinic
                     WHERE e.consultation = $1 ORDER BY e.side, e.seq",
                    &[&id],
                )?)
            })
            .map_err(err)?;
        let (mut clinic, mut gateway) = (Vec::new(), Vec::new());
        for r in &rows {
            let event = event_of(&r.get::<_, String>(1))?;
            if r.get::<_, i16>(0) == 0 {
                clinic.push(event);
            } else {
                gateway.push(event);
            }
        }
        Ok((clinic, gateway))
    }

    fn store(&self, event: &Event, projection: Option<&Consultation>) -> Result<(), EventError> {
        let clinic = event.id.clinic.as_str().to_owned();
        let (s, seq) = (
            side(event.id.side),
            i64::try_from(event.id.seq).unwrap_or(i64::MAX),
        );
        let id = event.consultation.as_str().to_owned();
        let json = serde_json::to_string(event).map_err(|e| EventError::Engine(e.to_string()))?;
        let projected = projection
            .map(|p| {
                serde_json::to_string(p)
                    .map(|text| (text, p.state.is_open(), p.patient.id.clone()))
                    .map_err(|e| EventError::Engine(e.to_string()))
            })
            .transpose()?;
        self.pg
            .run(move |c| {
                let mut tx = c.transaction()?;
                // A number is taken once: another node that took it first keeps its event, and
                // this write is refused (the same event again, a replay, is no conflict).
                let inserted = tx.execute(
                    "INSERT INTO events (clinic, side, seq, consultation, event) VALUES ($1, $2, $3, $4, $5::text::jsonb)
                     ON CONFLICT (clinic, side, seq) DO NOTHING",
                    &[&clinic, &s, &seq, &id, &json],
                )?;
                if inserted == 0 {
                    let same = tx
                        .query_one(
                            "SELECT event = $4::text::jsonb FROM events WHERE clinic = $1 AND side = $2 AND seq = $3",
                            &[&clinic, &s, &seq, &json],
                        )?
                        .get::<_, bool>(0);
                    if !same {
                        return Err(PgError::Query(format!(
                            "event {seq} of clinic {clinic} was written by another node first; nothing was changed, try again"
                        )));
                    }
                }
                tx.execute(
                    "INSERT INTO owners (consultation, clinic) VALUES ($1, $2)
                     ON CONFLICT (consultation) DO UPDATE SET clinic = EXCLUDED.clinic",
                    &[&id, &clinic],
                )?;
                if let Some((state, open, patient)) = projected {
                    tx.execute(
                        "INSERT INTO projections (clinic, consultation, state, open, patient_id)
                         VALUES ($1, $2, $3::text::jsonb, $4, $5)
                         ON CONFLICT (clinic, consultation) DO UPDATE SET state = EXCLUDED.state,
                            open = EXCLUDED.open, patient_id = EXCLUDED.patient_id",
                        &[&clinic, &id, &state, &open, &patient],
                    )?;
                }
                tx.commit()?;
                Ok(())
            })
            .map_err(err)
    }

    fn projection(
        &self,
        consultation: &ConsultationId,
    ) -> Result<Option<Consultation>, EventError> {
        let id = consultation.as_str().to_owned();
        let row = self
            .pg
            .run(move |c| {
                Ok(c.query_opt(
                    "SELECT p.state::text FROM projections p JOIN owners o
                       ON o.consultation = p.consultation AND o.clinic = p.clinic
                     WHERE p.consultation = $1",
                    &[&id],
                )?)
            })
            .map_err(err)?;
        row.map(|r| consultation_of(&r.get::<_, String>(0)))
            .transpose()
    }

    fn projections(&self, clinic: Option<&ClinicId>) -> Result<Vec<Consultation>, EventError> {
        self.projections_where("true", clinic, None)
    }

    fn open_projections(&self, clinic: Option<&ClinicId>) -> Result<Vec<Consultation>, EventError> {
        self.projections_where("open", clinic, None)
    }

    fn patient_projections(
        &self,
        clinic: &ClinicId,
        patient_id: &str,
    ) -> Result<Vec<Consultation>, EventError> {
        self.projections_where("true", Some(clinic), Some(patient_id))
    }

    fn clinics(&self) -> Result<Vec<ClinicId>, EventError> {
        let rows = self
            .pg
            .run(|c| {
                Ok(c.query(
                    "SELECT DISTINCT clinic COLLATE \"C\" AS clinic FROM owners ORDER BY 1",
                    &[],
                )?)
            })
            .map_err(err)?;
        rows.iter()
            .map(|r| {
                ClinicId::new(&r.get::<_, String>(0))
                    .map_err(|e| EventError::Corrupt(e.to_string()))
            })
            .collect()
    }

    fn set_mark(&self, mark: &[u8]) -> Result<(), EventError> {
        let mark = mark.to_vec();
        self.pg
            .run(move |c| {
                c.execute(
                    "INSERT INTO marks (mark) VALUES ($1) ON CONFLICT DO NOTHING",
                    &[&mark],
                )?;
                Ok(())
            })
            .map_err(err)
    }

    fn has_mark(&self, mark: &[u8]) -> Result<bool, EventError> {
        let mark = mark.to_vec();
        self.pg
            .run(move |c| {
                Ok(
                    c.query_opt("SELECT 1 FROM marks WHERE mark = $1", &[&mark])?
                        .is_some(),
                )
            })
            .map_err(err)
    }

    fn clear_marks(&self) -> Result<(), EventError> {
        self.pg
            .run(|c| {
                c.execute("DELETE FROM marks", &[])?;
                Ok(())
            })
            .map_err(err)
    }
}
