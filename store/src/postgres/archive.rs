//! The archive index and the forwarding queues in PostgreSQL, one engine as the port asks:
//! `claims` (what each clinic sent), `instances` (every version, by patient, study, series and
//! instance), `partials`, `expected`, the forwarding `inbox` (numbered from a sequence, so ids
//! only grow) and each destination's `queues` and `forward_counts`. A verified object's claim,
//! instance and inbox entry are one transaction; a clinic's claim is taken by an insert that
//! only one node can win, so an object committed by two nodes at once is indexed once.

use proto::sync::ObjectId;
use proto::ClinicId;

use crate::archive::forwarding::{Counts, Entry, FannedOut, ForwardQueues, Queued, Route};
use crate::archive::{
    ArchiveIndex, IndexError, InstanceKey, InstanceRecord, PartialRecord, ToForward, Verified,
};

use super::{Pg, PgError};

fn err(e: PgError) -> IndexError {
    IndexError::Engine(e.to_string())
}

fn corrupt(e: impl std::fmt::Display) -> IndexError {
    IndexError::Corrupt(e.to_string())
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

#[derive(Debug, Clone)]
pub struct PgIndex {
    pg: Pg,
}

impl PgIndex {
    pub fn new(pg: Pg) -> Self {
        Self { pg }
    }

    fn listed(
        &self,
        clinic: &ClinicId,
        study: Option<&str>,
    ) -> Result<Vec<(InstanceKey, InstanceRecord)>, IndexError> {
        let clinic = clinic.as_str().to_owned();
        let study = study.map(str::to_owned);
        let rows = self
            .pg
            .run(move |c| {
                Ok(c.query(
                    "SELECT patient, study, series, sop, record::text FROM instances
                     WHERE clinic = $1 AND ($2::text IS NULL OR study = $2)
                     ORDER BY patient COLLATE \"C\", study COLLATE \"C\", series COLLATE \"C\",
                              sop COLLATE \"C\", object COLLATE \"C\"",
                    &[&clinic, &study],
                )?)
            })
            .map_err(err)?;
        rows.iter().map(instance_row).collect()
    }
}

fn instance_row(r: &postgres::Row) -> Result<(InstanceKey, InstanceRecord), IndexError> {
    Ok((
        InstanceKey {
            patient: r.get(0),
            study: r.get(1),
            series: r.get(2),
            sop: r.get(3),
        },
        serde_json::from_str(&r.get::<_, String>(4)).map_err(corrupt)?,
    ))
}

impl ArchiveIndex for PgIndex {
    fn holds(&self, clinic: &ClinicId, id: &ObjectId) -> Result<bool, IndexError> {
        let (clinic, id) = (clinic.as_str().to_owned(), id.as_str().to_owned());
        self.pg
            .run(move |c| {
                Ok(c.query_opt(
                    "SELECT 1 FROM claims WHERE clinic = $1 AND object = $2",
                    &[&clinic, &id],
                )?
                .is_some())
            })
            .map_err(err)
    }

    fn partial(
        &self,
        clinic: &ClinicId,
        id: &ObjectId,
    ) -> Result<Option<PartialRecord>, IndexError> {
        let (clinic, id) = (clinic.as_str().to_owned(), id.as_str().to_owned());
        let row = self
            .pg
            .run(move |c| {
                Ok(c.query_opt(
                    "SELECT size, committed FROM partials WHERE clinic = $1 AND object = $2",
                    &[&clinic, &id],
                )?)
            })
            .map_err(err)?;
        Ok(row.map(|r| PartialRecord {
            size: to_u64(r.get(0)),
            committed: to_u64(r.get(1)),
        }))
    }

    fn record_partial(
        &self,
        clinic: &ClinicId,
        id: &ObjectId,
        record: PartialRecord,
    ) -> Result<(), IndexError> {
        let (clinic, id) = (clinic.as_str().to_owned(), id.as_str().to_owned());
        let (size, committed) = (to_i64(record.size), to_i64(record.committed));
        self.pg
            .run(move |c| {
                c.execute(
                    "INSERT INTO partials (clinic, object, size, committed) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (clinic, object) DO UPDATE SET size = EXCLUDED.size, committed = EXCLUDED.committed",
                    &[&clinic, &id, &size, &committed],
                )?;
                Ok(())
            })
            .map_err(err)
    }

    fn forget_partial(&self, clinic: &ClinicId, id: &ObjectId) -> Result<(), IndexError> {
        let (clinic, id) = (clinic.as_str().to_owned(), id.as_str().to_owned());
        self.pg
            .run(move |c| {
                c.execute(
                    "DELETE FROM partials WHERE clinic = $1 AND object = $2",
                    &[&clinic, &id],
                )?;
                Ok(())
            })
            .map_err(err)
    }

    fn commit_verified(&self, batch: &[Verified]) -> Result<(), IndexError> {
        let mut rows = Vec::with_capacity(batch.len());
        for v in batch {
            let record =
                serde_json::to_string(&v.record).map_err(|e| IndexError::Engine(e.to_string()))?;
            let forward = v
                .forward
                .as_ref()
                .map(serde_json::to_string)
                .transpose()
                .map_err(|e| IndexError::Engine(e.to_string()))?;
            rows.push((
                v.clinic.as_str().to_owned(),
                v.record.object.as_str().to_owned(),
                v.key.clone(),
                record,
                forward,
            ));
        }
        self.pg
            .run(move |c| {
                let mut tx = c.transaction()?;
                for (clinic, object, key, record, forward) in &rows {
                    tx.execute(
                        "DELETE FROM partials WHERE clinic = $1 AND object = $2",
                        &[clinic, object],
                    )?;
                    // Whoever inserts the claim indexes it; an object held already stays as it is.
                    let claimed = tx.execute(
                        "INSERT INTO claims (clinic, object) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                        &[clinic, object],
                    )?;
                    if claimed == 0 {
                        continue;
                    }
                    tx.execute(
                        "INSERT INTO instances (clinic, patient, study, series, sop, object, record)
                         VALUES ($1, $2, $3, $4, $5, $6, $7::text::jsonb)
                         ON CONFLICT (clinic, patient, study, series, sop, object) DO UPDATE SET record = EXCLUDED.record",
                        &[clinic, &key.patient, &key.study, &key.series, &key.sop, object, record],
                    )?;
                    if let Some(forward) = forward {
                        tx.execute(
                            "INSERT INTO inbox (id, item) VALUES (nextval('forward_ids'), $1::text::jsonb)",
                            &[forward],
                        )?;
                    }
                }
                tx.commit()?;
                Ok(())
            })
            .map_err(err)
    }

    fn note_expected(
        &self,
        clinic: &ClinicId,
        study: &str,
        instances: u32,
    ) -> Result<(), IndexError> {
        let (clinic, study, n) = (
            clinic.as_str().to_owned(),
            study.to_owned(),
            i64::from(instances),
        );
        self.pg
            .run(move |c| {
                c.execute(
                    "INSERT INTO expected (clinic, study, instances) VALUES ($1, $2, $3)
                     ON CONFLICT (clinic, study) DO UPDATE SET instances = GREATEST(expected.instances, EXCLUDED.instances)",
                    &[&clinic, &study, &n],
                )?;
                Ok(())
            })
            .map_err(err)
    }

    fn expected(&self, clinic: &ClinicId, study: &str) -> Result<Option<u32>, IndexError> {
        let (clinic, study) = (clinic.as_str().to_owned(), study.to_owned());
        let row = self
            .pg
            .run(move |c| {
                Ok(c.query_opt(
                    "SELECT instances FROM expected WHERE clinic = $1 AND study = $2",
                    &[&clinic, &study],
                )?)
            })
            .map_err(err)?;
        Ok(row.map(|r| u32::try_from(r.get::<_, i64>(0)).unwrap_or(u32::MAX)))
    }

    fn instances(
        &self,
        clinic: &ClinicId,
    ) -> Result<Vec<(InstanceKey, InstanceRecord)>, IndexError> {
        self.listed(clinic, None)
    }

    fn study(
        &self,
        clinic: &ClinicId,
        study: &str,
    ) -> Result<Vec<(InstanceKey, InstanceRecord)>, IndexError> {
        self.listed(clinic, Some(study))
    }

    fn studies(
        &self,
        wanted: &[(ClinicId, String)],
    ) -> Result<Vec<(ClinicId, InstanceKey, InstanceRecord)>, IndexError> {
        let wanted: std::collections::BTreeSet<&(ClinicId, String)> = wanted.iter().collect();
        let (clinics, studies): (Vec<String>, Vec<String>) = wanted
            .into_iter()
            .map(|(c, s)| (c.as_str().to_owned(), s.clone()))
            .unzip();
        if clinics.is_empty() {
            return Ok(Vec::new());
        }
        let rows = self
            .pg
            .run(move |c| {
                Ok(c.query(
                    "SELECT i.patient, i.study, i.series, i.sop, i.record::text, i.clinic
                     FROM instances i
                     JOIN unnest($1::text[], $2::text[]) AS w(clinic, study)
                       ON i.clinic = w.clinic AND i.study = w.study
                     ORDER BY i.clinic COLLATE \"C\", i.study COLLATE \"C\",
                              i.patient COLLATE \"C\", i.series COLLATE \"C\",
                              i.sop COLLATE \"C\", i.object COLLATE \"C\"",
                    &[&clinics, &studies],
                )?)
            })
            .map_err(err)?;
        rows.iter()
            .map(|r| {
                let clinic = ClinicId::new(&r.get::<_, String>(5)).map_err(corrupt)?;
                let (key, record) = instance_row(r)?;
                Ok((clinic, key, record))
            })
            .collect()
    }

    fn instance(
        &self,
        clinic: &ClinicId,
        id: &ObjectId,
    ) -> Result<Option<(InstanceKey, InstanceRecord)>, IndexError> {
        let (clinic, id) = (clinic.as_str().to_owned(), id.as_str().to_owned());
        let row = self
            .pg
            .run(move |c| {
                Ok(c.query_opt(
                    "SELECT patient, study, series, sop, record::text FROM instances
                     WHERE clinic = $1 AND object = $2 LIMIT 1",
                    &[&clinic, &id],
                )?)
            })
            .map_err(err)?;
        row.as_ref().map(instance_row).transpose()
    }

    fn forward_inbox(&self) -> Result<Vec<(u64, ToForward)>, IndexError> {
        let rows = self
            .pg
            .run(|c| Ok(c.query("SELECT id, item::text FROM inbox ORDER BY id", &[])?))
            .map_err(err)?;
        rows.iter()
            .map(|r| {
                Ok((
                    to_u64(r.get(0)),
                    serde_json::from_str(&r.get::<_, String>(1)).map_err(corrupt)?,
                ))
            })
            .collect()
    }

    fn clinics(&self) -> Result<Vec<ClinicId>, IndexError> {
        let rows = self
            .pg
            .run(|c| {
                Ok(c.query(
                    "SELECT DISTINCT clinic COLLATE \"C\" AS clinic FROM claims ORDER BY 1",
                    &[],
                )?)
            })
            .map_err(err)?;
        Ok(rows
            .iter()
            .filter_map(|r| ClinicId::new(&r.get::<_, String>(0)).ok())
            .collect())
    }
}

impl ForwardQueues for PgIndex {
    fn fan_out(&self, route: Route<'_>, now: i64) -> Result<FannedOut, IndexError> {
        let inbox = self.forward_inbox_raw()?;
        let mut out = FannedOut::default();
        let mut moves: Vec<(i64, Vec<(String, String)>)> = Vec::new();
        for (id, item) in inbox {
            match item {
                Ok(item) => {
                    let mut queued = Vec::new();
                    for destination in route(&item) {
                        let q = serde_json::to_string(&Queued::new(item.clone(), now))
                            .map_err(|e| IndexError::Engine(e.to_string()))?;
                        queued.push((destination, q));
                    }
                    moves.push((id, queued));
                }
                Err(_) => out.unreadable += 1,
            }
        }
        let added = self
            .pg
            .run(move |c| {
                let mut tx = c.transaction()?;
                let mut added: Vec<String> = Vec::new();
                let mut moved = 0usize;
                for (id, queued) in &moves {
                    for (destination, q) in queued {
                        // Queued before it leaves the inbox, and never twice.
                        let n = tx.execute(
                            "INSERT INTO queues (destination, id, queued) VALUES ($1, $2, $3::text::jsonb)
                             ON CONFLICT DO NOTHING",
                            &[destination, id, q],
                        )?;
                        if n > 0 {
                            added.push(destination.clone());
                        }
                    }
                    moved += tx.execute("DELETE FROM inbox WHERE id = $1", &[id])? as usize;
                }
                tx.commit()?;
                Ok((moved, added))
            })
            .map_err(err)?;
        out.moved = added.0;
        for destination in added.1 {
            *out.added.entry(destination).or_default() += 1;
        }
        Ok(out)
    }

    fn queued(
        &self,
        destination: &str,
        limit: usize,
        skip: &dyn Fn(u64) -> bool,
    ) -> Result<Vec<Entry>, IndexError> {
        let mut out = Vec::new();
        let mut after = 0i64;
        // Page through the queue until `limit` entries not skipped are found.
        while out.len() < limit {
            let (d, from) = (destination.to_owned(), after);
            let rows = self
                .pg
                .run(move |c| {
                    Ok(c.query(
                        "SELECT id, queued::text FROM queues WHERE destination = $1 AND id > $2
                         ORDER BY id LIMIT 256",
                        &[&d, &from],
                    )?)
                })
                .map_err(err)?;
            if rows.is_empty() {
                break;
            }
            for r in &rows {
                let id: i64 = r.get(0);
                after = id;
                if skip(to_u64(id)) || out.len() >= limit {
                    continue;
                }
                let entry = serde_json::from_str::<Queued>(&r.get::<_, String>(1))
                    .map_err(|e| e.to_string());
                out.push((to_u64(id), entry));
            }
        }
        Ok(out)
    }

    fn len(&self, destination: &str) -> Result<u64, IndexError> {
        let d = destination.to_owned();
        let n = self
            .pg
            .run(move |c| {
                Ok(
                    c.query_one("SELECT count(*) FROM queues WHERE destination = $1", &[&d])?
                        .get::<_, i64>(0),
                )
            })
            .map_err(err)?;
        Ok(to_u64(n))
    }

    fn oldest(&self, destination: &str) -> Result<Option<Queued>, IndexError> {
        let d = destination.to_owned();
        let row = self
            .pg
            .run(move |c| {
                Ok(c.query_opt(
                    "SELECT queued::text FROM queues WHERE destination = $1 ORDER BY id LIMIT 1",
                    &[&d],
                )?)
            })
            .map_err(err)?;
        row.map(|r| serde_json::from_str(&r.get::<_, String>(0)).map_err(corrupt))
            .transpose()
    }

    fn update(&self, destination: &str, id: u64, queued: &Queued) -> Result<(), IndexError> {
        let (d, id) = (destination.to_owned(), to_i64(id));
        let q = serde_json::to_string(queued).map_err(|e| IndexError::Engine(e.to_string()))?;
        self.pg
            .run(move |c| {
                c.execute(
                    "UPDATE queues SET queued = $3::text::jsonb WHERE destination = $1 AND id = $2",
                    &[&d, &id, &q],
                )?;
                Ok(())
            })
            .map_err(err)
    }

    fn done(&self, destination: &str, id: u64) -> Result<bool, IndexError> {
        let (d, id) = (destination.to_owned(), to_i64(id));
        self.pg
            .run(move |c| {
                Ok(c.execute(
                    "DELETE FROM queues WHERE destination = $1 AND id = $2",
                    &[&d, &id],
                )? > 0)
            })
            .map_err(err)
    }

    fn counts(&self, destination: &str) -> Result<Counts, IndexError> {
        let d = destination.to_owned();
        let row = self
            .pg
            .run(move |c| {
                Ok(c.query_opt(
                    "SELECT sent, failures FROM forward_counts WHERE destination = $1",
                    &[&d],
                )?)
            })
            .map_err(err)?;
        Ok(row.map_or_else(Counts::default, |r| Counts {
            sent: to_u64(r.get(0)),
            failures: to_u64(r.get(1)),
        }))
    }

    fn count(&self, destination: &str, sent: u64, failures: u64) -> Result<(), IndexError> {
        let (d, sent, failures) = (destination.to_owned(), to_i64(sent), to_i64(failures));
        self.pg
            .run(move |c| {
                c.execute(
                    "INSERT INTO forward_counts (destination, sent, failures) VALUES ($1, $2, $3)
                     ON CONFLICT (destination) DO UPDATE SET sent = forward_counts.sent + EXCLUDED.sent,
                        failures = forward_counts.failures + EXCLUDED.failures",
                    &[&d, &sent, &failures],
                )?;
                Ok(())
            })
            .map_err(err)
    }

    fn sync(&self) -> Result<(), IndexError> {
        // Every change above is committed when it returns.
        Ok(())
    }
}

/// An inbox entry by its id, read or its problem.
type InboxEntry = (i64, Result<ToForward, String>);

impl PgIndex {
    /// Brings in forwarding inbox entries under their own ids (a migration), and moves the
    /// id sequence past them; an id already here is left as it is.
    pub fn import_inbox(&self, entries: &[(u64, ToForward)]) -> Result<(), IndexError> {
        let mut rows = Vec::new();
        for (id, item) in entries {
            let json =
                serde_json::to_string(item).map_err(|e| IndexError::Engine(e.to_string()))?;
            rows.push((to_i64(*id), json));
        }
        self.pg
            .run(move |c| {
                let mut tx = c.transaction()?;
                for (id, json) in &rows {
                    tx.execute(
                        "INSERT INTO inbox (id, item) VALUES ($1, $2::text::jsonb) ON CONFLICT DO NOTHING",
                        &[id, json],
                    )?;
                }
                tx.batch_execute(
                    "SELECT setval('forward_ids', GREATEST((SELECT COALESCE(MAX(id), 0) FROM inbox),
                        (SELECT COALESCE(MAX(id), 0) FROM queues), (SELECT last_value FROM forward_ids)))",
                )?;
                tx.commit()?;
                Ok(())
            })
            .map_err(err)
    }

    /// Brings in a destination's queue entries under their own ids (a migration); an entry
    /// already here is left as it is.
    pub fn import_queue(
        &self,
        destination: &str,
        entries: &[(u64, Queued)],
    ) -> Result<(), IndexError> {
        let mut rows = Vec::new();
        for (id, q) in entries {
            let json = serde_json::to_string(q).map_err(|e| IndexError::Engine(e.to_string()))?;
            rows.push((to_i64(*id), json));
        }
        let d = destination.to_owned();
        self.pg
            .run(move |c| {
                let mut tx = c.transaction()?;
                for (id, json) in &rows {
                    tx.execute(
                        "INSERT INTO queues (destination, id, queued) VALUES ($1, $2, $3::text::jsonb) ON CONFLICT DO NOTHING",
                        &[&d, id, json],
                    )?;
                }
                tx.batch_execute(
                    "SELECT setval('forward_ids', GREATEST((SELECT COALESCE(MAX(id), 0) FROM queues), (SELECT last_value FROM forward_ids)))",
                )?;
                tx.commit()?;
                Ok(())
            })
            .map_err(err)
    }

    /// The inbox, each entry read or its problem.
    fn forward_inbox_raw(&self) -> Result<Vec<InboxEntry>, IndexError> {
        let rows = self
            .pg
            .run(|c| Ok(c.query("SELECT id, item::text FROM inbox ORDER BY id", &[])?))
            .map_err(err)?;
        Ok(rows
            .iter()
            .map(|r| {
                (
                    r.get::<_, i64>(0),
                    serde_json::from_str(&r.get::<_, String>(1)).map_err(|e| e.to_string()),
                )
            })
            .collect())
    }
}
