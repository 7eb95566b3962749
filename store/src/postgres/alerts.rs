//! The alerts' ledger in PostgreSQL: the table `alerts`, one row per raised alert, with its
//! first time and its acknowledgement.

use std::collections::BTreeMap;

use crate::alerts::{Ack, AlertError, AlertStore, Key, Seen};

use super::Pg;

#[derive(Debug, Clone)]
pub struct PgAlerts {
    pg: Pg,
}

impl PgAlerts {
    pub fn new(pg: Pg) -> Self {
        Self { pg }
    }
}

fn err(e: impl std::fmt::Display) -> AlertError {
    AlertError(e.to_string())
}

impl AlertStore for PgAlerts {
    fn all(&self) -> Result<BTreeMap<Key, Seen>, AlertError> {
        let rows = self
            .pg
            .run(|c| {
                Ok(c.query(
                    "SELECT kind, about, first_ms, ack_by, ack_at_ms FROM alerts",
                    &[],
                )?)
            })
            .map_err(err)?;
        Ok(rows
            .iter()
            .map(|r| {
                let ack = match (r.get::<_, Option<String>>(3), r.get::<_, Option<i64>>(4)) {
                    (Some(by), Some(at_ms)) => Some(Ack { by, at_ms }),
                    _ => None,
                };
                (
                    (r.get(0), r.get(1)),
                    Seen {
                        first_ms: r.get(2),
                        ack,
                    },
                )
            })
            .collect())
    }

    fn raise(&self, key: &Key, first_ms: i64) -> Result<(), AlertError> {
        let k = key.clone();
        self.pg
            .run(move |c| {
                c.execute(
                    "INSERT INTO alerts (kind, about, first_ms) VALUES ($1, $2, $3)
                     ON CONFLICT (kind, about) DO NOTHING",
                    &[&k.0, &k.1, &first_ms],
                )?;
                Ok(())
            })
            .map_err(err)
    }

    fn acknowledge(&self, key: &Key, ack: &Ack) -> Result<bool, AlertError> {
        let (k, a) = (key.clone(), ack.clone());
        let changed = self
            .pg
            .run(move |c| {
                Ok(c.execute(
                    "UPDATE alerts SET ack_by = $3, ack_at_ms = $4 WHERE kind = $1 AND about = $2",
                    &[&k.0, &k.1, &a.by, &a.at_ms],
                )?)
            })
            .map_err(err)?;
        Ok(changed > 0)
    }

    fn forget(&self, key: &Key) -> Result<(), AlertError> {
        let k = key.clone();
        self.pg
            .run(move |c| {
                c.execute(
                    "DELETE FROM alerts WHERE kind = $1 AND about = $2",
                    &[&k.0, &k.1],
                )?;
                Ok(())
            })
            .map_err(err)
    }
}
