//! Leases and notifications in PostgreSQL, shared by every gateway node on the database: a
//! lease is a row of `leases` taken or renewed by one conditional upsert (so of several nodes
//! asking at once exactly one gets it), and a notification is a NOTIFY on the schema's channel
//! with the topic as its payload, which each handle's listening connection turns into a wake-up
//! of its subscribers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use crate::coordination::{CoordinationError, Leases, Notifier, Subscription};

use super::{Pg, PgError};

fn err(e: impl std::fmt::Display) -> CoordinationError {
    CoordinationError(e.to_string())
}

#[derive(Debug, Clone)]
pub struct PgLeases {
    pg: Pg,
}

impl PgLeases {
    pub fn new(pg: Pg) -> Self {
        Self { pg }
    }
}

impl Leases for PgLeases {
    fn hold(
        &self,
        name: &str,
        holder: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<bool, CoordinationError> {
        let (name, holder) = (name.to_owned(), holder.to_owned());
        let until = now_ms.saturating_add(ttl_ms);
        self.pg
            .run(move |c| {
                // Taken when free or run out, renewed by its holder; otherwise no row comes back.
                let row = c.query_opt(
                    "INSERT INTO leases (name, holder, until_ms) VALUES ($1, $2, $3)
                     ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, until_ms = EXCLUDED.until_ms
                     WHERE leases.holder = EXCLUDED.holder OR leases.until_ms <= $4
                     RETURNING holder",
                    &[&name, &holder, &until, &now_ms],
                )?;
                Ok(row.is_some())
            })
            .map_err(err)
    }

    fn release(&self, name: &str, holder: &str) -> Result<(), CoordinationError> {
        let (name, holder) = (name.to_owned(), holder.to_owned());
        self.pg
            .run(move |c| {
                c.execute(
                    "DELETE FROM leases WHERE name = $1 AND holder = $2",
                    &[&name, &holder],
                )?;
                Ok(())
            })
            .map_err(err)
    }

    fn holder(&self, name: &str, now_ms: i64) -> Result<Option<String>, CoordinationError> {
        let name = name.to_owned();
        self.pg
            .run(move |c| {
                Ok(c.query_opt(
                    "SELECT holder FROM leases WHERE name = $1 AND until_ms > $2",
                    &[&name, &now_ms],
                )?
                .map(|r| r.get(0)))
            })
            .map_err(err)
    }
}

type Topics = Mutex<HashMap<String, tokio::sync::watch::Sender<u64>>>;

/// Notifications through the database. Each handle has one listening connection, on a thread
/// that ends with the handle.
#[derive(Debug, Clone)]
pub struct PgNotifier {
    pg: Pg,
    channel: Arc<str>,
    topics: Arc<Topics>,
}

fn wake(topics: &Topics, topic: &str) {
    let mut topics = topics.lock().unwrap_or_else(|p| p.into_inner());
    topics
        .entry(topic.to_owned())
        .or_insert_with(|| tokio::sync::watch::channel(0).0)
        .send_modify(|n| *n = n.wrapping_add(1));
}

impl PgNotifier {
    /// Listens on the schema's channel from a connection of its own; returns once listening,
    /// so no notification sent after it is missed.
    pub fn new(pg: Pg) -> Result<Self, PgError> {
        let channel: Arc<str> = format!("tpg_{}", pg.schema()).into();
        let topics: Arc<Topics> = Arc::default();
        let watched: Weak<Topics> = Arc::downgrade(&topics);
        let listen = format!("LISTEN {channel}");
        pg.dedicated(
            &format!("pg-listen-{}", pg.schema()),
            move |client| Ok(client.batch_execute(&listen)?),
            move |mut client| loop {
                let Some(topics) = watched.upgrade() else {
                    return;
                };
                // Each notification wakes its subscribers as it comes: a busy channel never
                // goes quiet, so waiting for a quiet moment first would hold every wake-up
                // back for as long as the burst lasts. The timeout only lets the loop see
                // that nobody listens any more.
                let mut notifications = client.notifications();
                let mut it = notifications.timeout_iter(Duration::from_millis(500));
                match postgres::fallible_iterator::FallibleIterator::next(&mut it) {
                    Ok(Some(n)) => wake(&topics, n.payload()),
                    Ok(None) => {}
                    // The connection is gone: subscribers fall back on their own periodic
                    // passes.
                    Err(_) => return,
                }
            },
        )?;
        Ok(Self {
            pg,
            channel,
            topics,
        })
    }
}

impl Notifier for PgNotifier {
    fn notify(&self, topic: &str) {
        let (channel, topic) = (self.channel.clone(), topic.to_owned());
        // A lost notification delays a wake-up until the subscriber's next periodic pass; it
        // loses nothing.
        let _ = self.pg.run(move |c| {
            c.execute("SELECT pg_notify($1, $2)", &[&channel.as_ref(), &topic])?;
            Ok(())
        });
    }

    fn subscribe(&self, topic: &str) -> Subscription {
        let mut topics = self.topics.lock().unwrap_or_else(|p| p.into_inner());
        topics
            .entry(topic.to_owned())
            .or_insert_with(|| tokio::sync::watch::channel(0).0)
            .subscribe()
    }
}
