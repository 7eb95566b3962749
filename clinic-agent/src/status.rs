//! What `clinic-agent status` shows: the link, and the queue by state and priority, with the
//! age of the oldest pending item and every undelivered item's progress and last failure.
//! Ids, counts and sizes only. Also the estimates of time left that the doctors' case list
//! shows: the queue's bytes in the uploader's order over the recent upload rate.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use proto::sync::Priority;
use serde::{Deserialize, Serialize};

use crate::archive::{now_unix, AgentStore};
use crate::metrics::Metrics;
use crate::sync::SharedSync;

/// What the agent knows about its link, for status displays and tests.
#[derive(Debug, Clone, Default)]
pub struct LinkStatus {
    pub up: bool,
    /// When the link last changed between up and down.
    pub since: Option<SystemTime>,
    pub rtt: Option<Duration>,
    /// Why the link last went down, in words (kept while it stays down).
    pub down_reason: Option<String>,
    /// The most recent failure (a refused or failed dial, or the loss of the link).
    pub last_error: Option<String>,
    pub gateway_version: Option<String>,
    /// The clinic id the gateway read from our certificate.
    pub clinic: Option<String>,
}

pub type SharedStatus = Arc<Mutex<LinkStatus>>;

/// Delivered items listed individually (the most recent ones).
const RECENT_DELIVERED: usize = 20;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusReport {
    pub link: LinkReport,
    /// One row per (state, priority) that has items.
    pub queue: Vec<QueueRow>,
    /// Priority → age in seconds of its oldest undelivered item.
    pub oldest_pending_seconds: BTreeMap<String, i64>,
    /// Undelivered items, then the most recently delivered ones.
    pub items: Vec<ItemRow>,
    pub quarantined: usize,
    /// Object bytes per second over the last minute (none sent in it: `None`).
    #[serde(default)]
    pub upload_bytes_per_sec: Option<f64>,
    /// Seconds until everything queued is delivered at that rate, while the link is up.
    #[serde(default)]
    pub seconds_to_drain: Option<u64>,
    /// The routine limit and whether it holds now, in a sentence (`[link]
    /// routine_limit_kib_per_sec`); `None` when there is none.
    #[serde(default)]
    pub routine_limit: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LinkReport {
    pub up: bool,
    /// Unix seconds of the last change between up and down.
    pub since: Option<i64>,
    pub rtt_ms: Option<f64>,
    pub down_reason: Option<String>,
    pub last_error: Option<String>,
    pub clinic: Option<String>,
    pub gateway_version: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueRow {
    pub state: String,
    pub priority: String,
    pub items: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ItemRow {
    pub object: String,
    pub state: String,
    pub priority: String,
    pub size: u64,
    /// Bytes sent so far while sending.
    pub sent: Option<u64>,
    /// Unix seconds of the gateway's receipt.
    pub delivered_at: Option<i64>,
    pub last_failure: Option<String>,
}

impl StatusReport {
    /// Sets the queue gauges from a fresh status report (every state and priority is set,
    /// so a series drops to 0 rather than keeping a stale value).
    pub fn publish(&self, metrics: &Metrics) {
        for state in ["queued", "sending", "delivered"] {
            let mut bytes = 0;
            for priority in proto::sync::Priority::ALL {
                let row = self
                    .queue
                    .iter()
                    .find(|r| r.state == state && r.priority == priority.label());
                bytes += row.map_or(0, |r| r.bytes);
                let labels = crate::metrics::QueueLabels {
                    state: state.into(),
                    priority: priority.label().into(),
                };
                metrics
                    .queue_items
                    .get_or_create(&labels)
                    .set(row.map_or(0, |r| r.items as i64));
            }
            metrics
                .queue_bytes
                .get_or_create(&crate::metrics::StateLabel {
                    state: state.into(),
                })
                .set(bytes as i64);
        }
        for priority in proto::sync::Priority::ALL {
            let age = self
                .oldest_pending_seconds
                .get(priority.label())
                .copied()
                .unwrap_or(0);
            metrics
                .oldest_pending_seconds
                .get_or_create(&crate::metrics::PriorityLabel {
                    priority: priority.label().into(),
                })
                .set(age);
        }
        metrics.quarantined.set(self.quarantined as i64);
    }
}

pub fn report(store: &AgentStore, link: &LinkStatus, sync: &SharedSync) -> StatusReport {
    let sync = sync
        .lock()
        .map(|s| s.clone())
        .unwrap_or_else(|p| p.into_inner().clone());
    let now = now_unix();
    let mut rows: BTreeMap<(String, Priority), (u64, u64)> = BTreeMap::new();
    let mut oldest: BTreeMap<String, i64> = BTreeMap::new();
    let mut pending = Vec::new();
    let mut delivered = Vec::new();
    let mut left = 0;
    for (id, rec) in store.objects() {
        let sending = sync.sending.get(&id).copied();
        let state = match (rec.delivered_at, sending) {
            (Some(_), _) => "delivered",
            (None, Some(_)) => "sending",
            (None, None) => "queued",
        };
        let row = rows.entry((state.to_owned(), rec.priority)).or_default();
        row.0 += 1;
        row.1 += rec.size;
        let item = ItemRow {
            object: id.to_string(),
            state: state.to_owned(),
            priority: rec.priority.label().to_owned(),
            size: rec.size,
            sent: sending.map(|(sent, _)| sent),
            delivered_at: rec.delivered_at,
            last_failure: sync.last_failure.get(&id).cloned(),
        };
        if rec.delivered_at.is_none() {
            left += rec.size.saturating_sub(item.sent.unwrap_or(0));
            let age = (now - rec.stored_at).max(0);
            let entry = oldest.entry(rec.priority.label().to_owned()).or_insert(age);
            *entry = (*entry).max(age);
            pending.push((rec.priority, rec.seq, item));
        } else {
            delivered.push((rec.delivered_at, item));
        }
    }
    pending.sort_by_key(|(p, seq, _)| (std::cmp::Reverse(*p), *seq));
    delivered.sort_by_key(|(at, _)| std::cmp::Reverse(*at));
    let items = pending
        .into_iter()
        .map(|(_, _, i)| i)
        .chain(delivered.into_iter().take(RECENT_DELIVERED).map(|(_, i)| i))
        .collect();
    let rate = sync.throughput.per_sec(Instant::now());
    StatusReport {
        routine_limit: sync
            .routine_limit
            .as_ref()
            .map(|l| crate::sync::describe_routine_limit(l, now)),
        upload_bytes_per_sec: rate,
        seconds_to_drain: seconds_left(link.up, rate, left).filter(|_| left > 0),
        link: LinkReport {
            up: link.up,
            since: link
                .since
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map(|d| d.as_secs() as i64),
            rtt_ms: link.rtt.map(|r| r.as_secs_f64() * 1000.0),
            down_reason: link.down_reason.clone(),
            last_error: link.last_error.clone(),
            clinic: link.clinic.clone(),
            gateway_version: link.gateway_version.clone(),
        },
        queue: rows
            .into_iter()
            .map(|((state, priority), (items, bytes))| QueueRow {
                state,
                priority: priority.label().to_owned(),
                items,
                bytes,
            })
            .collect(),
        oldest_pending_seconds: oldest,
        items,
        quarantined: store.quarantined(),
    }
}

/// What the agent has not delivered yet, as the hospital's link board shows it: one pass over
/// the index, without the per-item rows of [`report`].
pub fn backlog(store: &AgentStore) -> proto::frame::Backlog {
    let now = now_unix();
    let age = |stored_at: i64| (now - stored_at).max(0) as u64;
    let mut b = proto::frame::Backlog {
        quarantined: store.quarantined() as u64,
        ..Default::default()
    };
    for (_, rec) in store
        .objects()
        .into_iter()
        .filter(|(_, r)| r.delivered_at.is_none())
    {
        b.items += 1;
        b.bytes += rec.size;
        b.oldest_pending_secs = b.oldest_pending_secs.max(Some(age(rec.stored_at)));
        if rec.priority == Priority::Emergency {
            b.oldest_emergency_secs = b.oldest_emergency_secs.max(Some(age(rec.stored_at)));
        }
    }
    b
}

/// An undelivered object: its place in the uploader's order (priority, then enqueue order),
/// the bytes still to send, and its study (empty for an attachment).
#[derive(Debug, Clone)]
pub struct Pending {
    pub priority: Priority,
    pub seq: u64,
    pub left: u64,
    pub study: String,
}

/// Per study, the bytes the uploader still sends before that study is through: what is left
/// of its own objects and of every object ahead of its last one.
pub fn bytes_until_through(mut pending: Vec<Pending>) -> HashMap<String, u64> {
    pending.sort_by_key(|p| (std::cmp::Reverse(p.priority), p.seq));
    let mut through = HashMap::new();
    let mut sum = 0;
    for p in pending {
        sum += p.left;
        if !p.study.is_empty() {
            through.insert(p.study, sum);
        }
    }
    through
}

/// Seconds to send `bytes` at `rate`, while the link is up and a rate is known.
pub fn seconds_left(up: bool, rate: Option<f64>, bytes: u64) -> Option<u64> {
    let rate = rate.filter(|r| up && *r > 0.0)?;
    Some((bytes as f64 / rate).ceil() as u64)
}

impl StatusReport {
    /// Items and bytes in a state, over all priorities.
    pub fn count(&self, state: &str) -> (u64, u64) {
        self.queue
            .iter()
            .filter(|r| r.state == state)
            .fold((0, 0), |(i, b), r| (i + r.items, b + r.bytes))
    }

    /// The human-readable form `clinic-agent status` prints.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let link = &self.link;
        let state = if link.up { "UP" } else { "DOWN" };
        out.push_str(&format!(
            "link      {state}{}{}\n",
            link.clinic
                .as_deref()
                .map(|c| format!("  clinic {c}"))
                .unwrap_or_default(),
            link.rtt_ms
                .map(|r| format!("  rtt {r:.1} ms"))
                .unwrap_or_default(),
        ));
        if let Some(reason) = link.last_error.as_deref().or(link.down_reason.as_deref()) {
            if !link.up {
                out.push_str(&format!("          {reason}\n"));
            }
        }
        for state in ["queued", "sending", "delivered"] {
            let (items, bytes) = self.count(state);
            out.push_str(&format!(
                "{state:<9} {items:>6} items {:>12}\n",
                human_bytes(bytes)
            ));
        }
        if let Some(rate) = self.upload_bytes_per_sec {
            out.push_str(&format!(
                "sending at {}/s{}\n",
                human_bytes(rate as u64),
                self.seconds_to_drain
                    .map(|s| format!(", all queued through in about {}", daemon::span(s)))
                    .unwrap_or_default()
            ));
        }
        if let Some(limit) = &self.routine_limit {
            out.push_str(&format!("{limit}\n"));
        }
        for (priority, age) in &self.oldest_pending_seconds {
            out.push_str(&format!("oldest pending {priority}: {age} s\n"));
        }
        if self.quarantined > 0 {
            out.push_str(&format!(
                "quarantined {} files (see data_dir/quarantine/*/reason.json)\n",
                self.quarantined
            ));
        }
        for item in self.items.iter().filter(|i| i.state != "delivered") {
            let progress = match item.sent {
                Some(sent) => format!("{}/{}", human_bytes(sent), human_bytes(item.size)),
                None => human_bytes(item.size),
            };
            out.push_str(&format!(
                "  {} {:<9} {:<9} {progress}{}\n",
                &item.object[..16],
                item.state,
                item.priority,
                item.last_failure
                    .as_deref()
                    .map(|f| format!("  last failure: {f}"))
                    .unwrap_or_default()
            ));
        }
        out
    }
}

pub use daemon::human_bytes;

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(priority: Priority, seq: u64, left: u64, study: &str) -> Pending {
        Pending {
            priority,
            seq,
            left,
            study: study.into(),
        }
    }

    #[test]
    fn a_study_waits_for_what_is_ahead_of_it_in_the_queue() {
        let through = bytes_until_through(vec![
            pending(Priority::Routine, 1, 100, "old-routine"),
            pending(Priority::Routine, 5, 10, "new-routine"),
            pending(Priority::Emergency, 9, 50, "emergency"),
            pending(Priority::Emergency, 10, 5, ""),
            pending(Priority::Emergency, 8, 20, "emergency"),
        ]);
        // The emergency's objects go first; the attachment queued after them does not count.
        assert_eq!(through["emergency"], 70);
        assert_eq!(through["old-routine"], 175);
        assert_eq!(through["new-routine"], 185);
        assert!(!through.contains_key(""));
    }

    #[test]
    fn no_estimate_while_the_link_is_down_or_nothing_moves() {
        assert_eq!(seconds_left(true, Some(100.0), 1050), Some(11));
        assert_eq!(seconds_left(false, Some(100.0), 1050), None);
        assert_eq!(seconds_left(true, None, 1050), None);
        assert_eq!(seconds_left(true, Some(0.0), 1050), None);
    }
}
