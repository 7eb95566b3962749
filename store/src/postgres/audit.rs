//! The audit log in PostgreSQL: the table `audit`, one row per record. Every node appends to
//! the one chain: a record is numbered and chained inside a transaction that holds the table's
//! lock, so two nodes recording at once still make no number twice and no gap; it is durable
//! when its transaction commits, before `record` returns.

use crate::audit::{AuditError, AuditLog, Record, GENESIS};

use super::Pg;

#[derive(Debug, Clone)]
pub struct PgAudit {
    pg: Pg,
}

impl PgAudit {
    pub fn new(pg: Pg) -> Self {
        Self { pg }
    }

    /// Brings in another log's records as they are (a migration): the chain goes on from
    /// them. Records already here (by number) are left; each must follow the one before.
    pub fn import(&self, records: &[Record]) -> Result<(), AuditError> {
        let records = records.to_vec();
        self.pg
            .run(move |c| {
                let mut tx = c.transaction()?;
                tx.batch_execute("LOCK TABLE audit IN EXCLUSIVE MODE")?;
                for r in &records {
                    let seq = i64::try_from(r.seq).unwrap_or(i64::MAX);
                    tx.execute(
                        "INSERT INTO audit (seq, at_ms, user_name, address, action, target, prev, hash)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (seq) DO NOTHING",
                        &[&seq, &r.at_ms, &r.user, &r.address, &r.action, &r.target, &r.prev, &r.hash],
                    )?;
                }
                tx.commit()?;
                Ok(())
            })
            .map_err(err)?;
        self.verify().map(drop)
    }
}

/// Where the log is kept, for messages.
const TABLE: &str = "PostgreSQL table audit";

fn err(e: impl std::fmt::Display) -> AuditError {
    AuditError::Io {
        path: TABLE.into(),
        detail: e.to_string(),
    }
}

fn record_of(row: &postgres::Row) -> Record {
    Record {
        seq: u64::try_from(row.get::<_, i64>(0)).unwrap_or(u64::MAX),
        at_ms: row.get(1),
        user: row.get(2),
        address: row.get(3),
        action: row.get(4),
        target: row.get(5),
        prev: row.get(6),
        hash: row.get(7),
    }
}

impl AuditLog for PgAudit {
    fn record(
        &self,
        at_ms: i64,
        user: &str,
        address: &str,
        action: &str,
        target: &str,
    ) -> Result<Record, AuditError> {
        let (user, address, action, target) = (
            user.to_owned(),
            address.to_owned(),
            action.to_owned(),
            target.to_owned(),
        );
        self.pg
            .run(move |c| {
                let mut tx = c.transaction()?;
                // One writer at a time across every node; readers are not held up.
                tx.batch_execute("LOCK TABLE audit IN EXCLUSIVE MODE")?;
                let last =
                    tx.query_opt("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1", &[])?;
                let (seq, prev) = match last {
                    Some(row) => (
                        u64::try_from(row.get::<_, i64>(0)).unwrap_or(0) + 1,
                        row.get::<_, String>(1),
                    ),
                    None => (0, GENESIS.to_owned()),
                };
                let r = Record::chained(seq, &prev, at_ms, &user, &address, &action, &target);
                let seq_i = i64::try_from(r.seq).unwrap_or(i64::MAX);
                tx.execute(
                    "INSERT INTO audit (seq, at_ms, user_name, address, action, target, prev, hash)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    &[
                        &seq_i, &r.at_ms, &r.user, &r.address, &r.action, &r.target, &r.prev,
                        &r.hash,
                    ],
                )?;
                tx.commit()?;
                Ok(r)
            })
            .map_err(err)
    }

    fn records(&self) -> Result<Vec<Record>, AuditError> {
        let rows = self
            .pg
            .run(|c| {
                Ok(c.query(
                    "SELECT seq, at_ms, user_name, address, action, target, prev, hash FROM audit ORDER BY seq",
                    &[],
                )?)
            })
            .map_err(err)?;
        Ok(rows.iter().map(record_of).collect())
    }

    fn verify(&self) -> Result<(u64, String), AuditError> {
        crate::audit::verified(&self.records()?, TABLE)
    }
}
