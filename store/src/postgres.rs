//! The PostgreSQL adapters of the ports (issue 17: the scale-out deployment), over the
//! blocking client. Each connection lives on a thread of its own and runs the closures sent
//! to it, so a port's caller may block on it from anywhere — a blocking-pool thread, a test,
//! or, like a sled call, a runtime's worker — without the client's own runtime ever running
//! inside another.
//!
//! Everything lives in one schema (`tpg` unless told), created with its tables by the
//! migrations at connect, each applied once and recorded in `schema_migrations`.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

pub mod accounts;
pub mod alerts;
pub mod archive;
pub mod audit;
pub mod board;
pub mod coordination;
pub mod drafts;
pub mod events;

#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error("cannot connect to PostgreSQL at {url}: {detail}; check [storage] index and that the server is up")]
    Connect { url: String, detail: String },
    #[error("PostgreSQL: {0}")]
    Query(String),
    #[error("the PostgreSQL connection thread is gone; the daemon must be restarted")]
    Gone,
}

impl From<postgres::Error> for PgError {
    fn from(e: postgres::Error) -> Self {
        PgError::Query(e.to_string())
    }
}

type Job = Box<dyn FnOnce(&mut postgres::Client) + Send>;

/// Connections to one database and schema. Clones share them.
#[derive(Clone)]
pub struct Pg {
    jobs: Arc<Mutex<mpsc::Sender<Job>>>,
    url: Arc<str>,
    schema: Arc<str>,
}

impl std::fmt::Debug for Pg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password: only the schema is shown.
        f.debug_struct("Pg").field("schema", &self.schema).finish()
    }
}

/// The schema's tables, in order; each entry is applied once.
const MIGRATIONS: &[(i32, &str)] = &[
    (
        1,
        "CREATE TABLE drafts (
        user_name text NOT NULL, case_id text NOT NULL, form text NOT NULL,
        draft jsonb NOT NULL,
        PRIMARY KEY (user_name, case_id, form));
     CREATE TABLE board_facts (clinic text PRIMARY KEY, facts jsonb NOT NULL);
     CREATE TABLE board_history (
        clinic text NOT NULL, at_ms bigint NOT NULL,
        throughput_bps double precision NOT NULL, rtt_ms double precision NOT NULL,
        backlog_items bigint NOT NULL,
        PRIMARY KEY (clinic, at_ms));
     CREATE TABLE leases (name text PRIMARY KEY, holder text NOT NULL, until_ms bigint NOT NULL);
     CREATE TABLE audit (
        seq bigint PRIMARY KEY, at_ms bigint NOT NULL, user_name text NOT NULL,
        address text NOT NULL, action text NOT NULL, target text NOT NULL,
        prev text NOT NULL, hash text NOT NULL);
     CREATE TABLE accounts (name text PRIMARY KEY, account jsonb NOT NULL);
     CREATE TABLE tokens (key text PRIMARY KEY, grant_json jsonb NOT NULL, expires bigint);
     CREATE TABLE sessions (key text PRIMARY KEY, grant_json jsonb NOT NULL, expires bigint);
     CREATE TABLE events (
        clinic text NOT NULL, side smallint NOT NULL, seq bigint NOT NULL,
        consultation text NOT NULL, event jsonb NOT NULL,
        PRIMARY KEY (clinic, side, seq));
     CREATE INDEX events_by_consultation ON events (consultation);
     CREATE TABLE owners (consultation text PRIMARY KEY, clinic text NOT NULL);
     CREATE TABLE projections (
        clinic text NOT NULL, consultation text NOT NULL, state jsonb NOT NULL,
        open boolean NOT NULL, patient_id text NOT NULL,
        PRIMARY KEY (clinic, consultation));
     CREATE INDEX projections_open ON projections (open) WHERE open;
     CREATE INDEX projections_by_patient ON projections (clinic, patient_id);
     CREATE TABLE marks (mark bytea PRIMARY KEY);
     CREATE TABLE claims (clinic text NOT NULL, object text NOT NULL, PRIMARY KEY (clinic, object));
     CREATE TABLE instances (
        clinic text NOT NULL, patient text NOT NULL, study text NOT NULL, series text NOT NULL,
        sop text NOT NULL, object text NOT NULL, record jsonb NOT NULL,
        PRIMARY KEY (clinic, patient, study, series, sop, object));
     CREATE INDEX instances_by_study ON instances (clinic, study);
     CREATE INDEX instances_by_object ON instances (clinic, object);
     CREATE TABLE partials (
        clinic text NOT NULL, object text NOT NULL, size bigint NOT NULL, committed bigint NOT NULL,
        PRIMARY KEY (clinic, object));
     CREATE TABLE expected (
        clinic text NOT NULL, study text NOT NULL, instances bigint NOT NULL,
        PRIMARY KEY (clinic, study));
     CREATE SEQUENCE forward_ids START 1;
     CREATE TABLE inbox (id bigint PRIMARY KEY, item jsonb NOT NULL);
     CREATE TABLE queues (
        destination text NOT NULL, id bigint NOT NULL, queued jsonb NOT NULL,
        PRIMARY KEY (destination, id));
     CREATE TABLE forward_counts (
        destination text PRIMARY KEY, sent bigint NOT NULL, failures bigint NOT NULL);",
    ),
    (
        2,
        "CREATE TABLE settings (name text PRIMARY KEY, value bytea NOT NULL);",
    ),
    (
        3,
        "CREATE TABLE alerts (
        kind text NOT NULL, about text NOT NULL, first_ms bigint NOT NULL,
        ack_by text, ack_at_ms bigint,
        PRIMARY KEY (kind, about));",
    ),
];

fn valid_schema(schema: &str) -> bool {
    !schema.is_empty()
        && schema.len() <= 48
        && schema
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !schema.as_bytes()[0].is_ascii_digit()
}

impl Pg {
    /// Opens `connections` connections to `url` (a `postgres://` URL or key=value string),
    /// working in `schema`, and applies the migrations not yet applied.
    pub fn connect(url: &str, schema: &str, connections: usize) -> Result<Self, PgError> {
        if !valid_schema(schema) {
            return Err(PgError::Query(format!(
                "the schema name '{schema}' must be lower-case letters, digits and '_'"
            )));
        }
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for n in 0..connections.max(1) {
            // Each connection is made on its own thread: the blocking client must never run
            // its runtime inside a caller's.
            let (ready_tx, ready) = mpsc::channel::<Result<(), PgError>>();
            let (url, schema, rx) = (url.to_owned(), schema.to_owned(), rx.clone());
            std::thread::Builder::new()
                .name(format!("pg-{schema}-{n}"))
                .spawn(move || {
                    let connected = open_client(&url).and_then(|mut client| {
                        if n == 0 {
                            migrate(&mut client, &schema)?;
                        }
                        client.batch_execute(&format!("SET search_path TO {schema}"))?;
                        Ok(client)
                    });
                    let mut client = match connected {
                        Ok(client) => {
                            let _ = ready_tx.send(Ok(()));
                            client
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    loop {
                        let job = match rx.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => job(&mut client),
                            Err(_) => return,
                        }
                    }
                })
                .map_err(|e| PgError::Query(format!("cannot start a connection thread: {e}")))?;
            ready.recv().map_err(|_| PgError::Gone)??;
        }
        Ok(Self {
            jobs: Arc::new(Mutex::new(tx)),
            url: url.into(),
            schema: schema.into(),
        })
    }

    /// Runs `f` on a connection and waits for its answer.
    pub fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut postgres::Client) -> Result<T, PgError> + Send + 'static,
    ) -> Result<T, PgError> {
        let (tx, rx) = mpsc::channel();
        let job: Job = Box::new(move |client| {
            let _ = tx.send(f(client));
        });
        self.jobs
            .lock()
            .map_err(|_| PgError::Gone)?
            .send(job)
            .map_err(|_| PgError::Gone)?;
        rx.recv().map_err(|_| PgError::Gone)?
    }

    /// Runs `f` with a new connection of its own (for LISTEN), in this schema, on a thread of
    /// its own; answers once `f` says it is ready, with what it said.
    pub fn dedicated<T: Send + 'static>(
        &self,
        name: &str,
        ready: impl FnOnce(&mut postgres::Client) -> Result<T, PgError> + Send + 'static,
        then: impl FnOnce(postgres::Client) + Send + 'static,
    ) -> Result<T, PgError> {
        let (url, schema) = (self.url.clone(), self.schema.clone());
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                let opened = open_client(&url).and_then(|mut client| {
                    client.batch_execute(&format!("SET search_path TO {schema}"))?;
                    let answer = ready(&mut client)?;
                    Ok((client, answer))
                });
                match opened {
                    Ok((client, answer)) => {
                        let _ = tx.send(Ok(answer));
                        then(client);
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            })
            .map_err(|e| PgError::Query(format!("cannot start a connection thread: {e}")))?;
        rx.recv().map_err(|_| PgError::Gone)?
    }

    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// The setting `name`; when it has none yet, `made` (made once, by whichever node asks
    /// first: every node then reads the same).
    pub fn setting(&self, name: &str, made: Vec<u8>) -> Result<Vec<u8>, PgError> {
        let name = name.to_owned();
        self.run(move |c| {
            c.execute(
                "INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&name, &made],
            )?;
            Ok(
                c.query_one("SELECT value FROM settings WHERE name = $1", &[&name])?
                    .get(0),
            )
        })
    }
}

fn open_client(url: &str) -> Result<postgres::Client, PgError> {
    postgres::Client::connect(url, postgres::NoTls).map_err(|e| PgError::Connect {
        url: redacted(url),
        detail: e.to_string(),
    })
}

/// The URL without its password, for messages.
fn redacted(url: &str) -> String {
    if !url.contains("://") {
        // key=value form: every password=… word hidden.
        return url
            .split(' ')
            .map(|w| {
                if w.starts_with("password=") {
                    "password=***"
                } else {
                    w
                }
            })
            .collect::<Vec<_>>()
            .join(" ");
    }
    match (url.find("://"), url.find('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let auth = &url[scheme + 3..at];
            match auth.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

fn migrate(client: &mut postgres::Client, schema: &str) -> Result<(), PgError> {
    let mut tx = client.transaction()?;
    // One migrator at a time, whichever node starts first.
    tx.batch_execute("SELECT pg_advisory_xact_lock(7415)")?;
    tx.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS {schema};
         SET LOCAL search_path TO {schema};
         CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now());"
    ))?;
    for (version, sql) in MIGRATIONS {
        let done = tx
            .query_opt(
                "SELECT 1 FROM schema_migrations WHERE version = $1",
                &[version],
            )?
            .is_some();
        if !done {
            tx.batch_execute(sql)?;
            tx.execute(
                "INSERT INTO schema_migrations (version) VALUES ($1)",
                &[version],
            )?;
        }
    }
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_never_shows_and_schema_names_are_plain() {
        assert_eq!(
            redacted("postgres://tpg:secret@db:5432/tpg"),
            "postgres://tpg:***@db:5432/tpg"
        );
        assert_eq!(redacted("host=/tmp user=tpg"), "host=/tmp user=tpg");
        assert_eq!(
            redacted("host=db user=tpg password=secret"),
            "host=db user=tpg password=***"
        );
        assert!(valid_schema("tpg_case_3"));
        for bad in ["", "3x", "Tpg", "a;drop", "a-b"] {
            assert!(!valid_schema(bad), "{bad}");
        }
    }
}
