//! The link board in PostgreSQL: `board_facts` (clinic → facts, JSON) and `board_history`
//! (one row per clinic and minute).

use proto::ClinicId;

use crate::board::{BoardError, BoardStore, Facts, Sample};

use super::Pg;

#[derive(Debug, Clone)]
pub struct PgBoard {
    pg: Pg,
}

impl PgBoard {
    pub fn new(pg: Pg) -> Self {
        Self { pg }
    }
}

fn err(e: impl std::fmt::Display) -> BoardError {
    BoardError(e.to_string())
}

impl BoardStore for PgBoard {
    fn clinics(&self) -> Result<Vec<(ClinicId, Facts)>, BoardError> {
        let rows = self
            .pg
            .run(|c| {
                Ok(c.query(
                    "SELECT clinic, facts::text FROM board_facts ORDER BY clinic",
                    &[],
                )?)
            })
            .map_err(err)?;
        // A row that cannot be read is skipped: the clinic's next link writes it again.
        Ok(rows
            .iter()
            .filter_map(|r| {
                let clinic = ClinicId::new(&r.get::<_, String>(0)).ok()?;
                let facts = serde_json::from_str(&r.get::<_, String>(1)).ok()?;
                Some((clinic, facts))
            })
            .collect())
    }

    fn keep(&self, clinic: &ClinicId, facts: &Facts) -> Result<(), BoardError> {
        let (clinic, json) = (
            clinic.to_string(),
            serde_json::to_string(facts).map_err(err)?,
        );
        self.pg
            .run(move |c| {
                c.execute(
                    "INSERT INTO board_facts (clinic, facts) VALUES ($1, $2::text::jsonb)
                     ON CONFLICT (clinic) DO UPDATE SET facts = EXCLUDED.facts",
                    &[&clinic, &json],
                )?;
                Ok(())
            })
            .map_err(err)
    }

    fn history(&self, clinic: &ClinicId, since_ms: i64) -> Result<Vec<Sample>, BoardError> {
        let clinic = clinic.to_string();
        let rows = self
            .pg
            .run(move |c| {
                Ok(c.query(
                    "SELECT at_ms, throughput_bps, rtt_ms, backlog_items FROM board_history
                     WHERE clinic = $1 AND at_ms >= $2 ORDER BY at_ms",
                    &[&clinic, &since_ms],
                )?)
            })
            .map_err(err)?;
        Ok(rows
            .iter()
            .map(|r| Sample {
                at_ms: r.get(0),
                throughput_bps: r.get(1),
                rtt_ms: r.get(2),
                backlog_items: u64::try_from(r.get::<_, i64>(3)).unwrap_or(0),
            })
            .collect())
    }

    fn sample(&self, clinic: &ClinicId, sample: &Sample) -> Result<(), BoardError> {
        let (clinic, s) = (clinic.to_string(), *sample);
        let items = i64::try_from(s.backlog_items).unwrap_or(i64::MAX);
        self.pg
            .run(move |c| {
                c.execute(
                    "INSERT INTO board_history (clinic, at_ms, throughput_bps, rtt_ms, backlog_items)
                     VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (clinic, at_ms) DO UPDATE SET throughput_bps = EXCLUDED.throughput_bps,
                        rtt_ms = EXCLUDED.rtt_ms, backlog_items = EXCLUDED.backlog_items",
                    &[&clinic, &s.at_ms, &s.throughput_bps, &s.rtt_ms, &items],
                )?;
                Ok(())
            })
            .map_err(err)
    }

    fn prune(&self, clinic: &ClinicId, before_ms: i64) -> Result<(), BoardError> {
        let clinic = clinic.to_string();
        self.pg
            .run(move |c| {
                c.execute(
                    "DELETE FROM board_history WHERE clinic = $1 AND at_ms < $2",
                    &[&clinic, &before_ms],
                )?;
                Ok(())
            })
            .map_err(err)
    }
}
