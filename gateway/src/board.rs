//! The administrator's link board: what the gateway knows about each clinic's link (online
//! since / offline since, RTT, loss, throughput, the backlog the agent reports, last sync,
//! agent version, certificate expiry) and a per-clinic history of the last 24 hours (one
//! sample a minute), drawn as inline SVG. Also the alerts page, computed from the same facts
//! plus the consultation log, against thresholds in `[alerts]`.
//!
//! The facts and the history are kept in sled beside the archive, so a restarted gateway
//! still shows yesterday's charts and each clinic offline since it was last heard from.

// A refused page is a whole response, built once per request; boxing it buys nothing.
#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use tracing::warn;

use proto::frame::Backlog;
use proto::ClinicId;

/// One history point.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub at_ms: i64,
    pub throughput_bps: f64,
    pub rtt_ms: f64,
    pub backlog_items: u64,
}

pub const HISTORY_MS: i64 = 24 * 3600 * 1000;
const SAMPLE_EVERY_MS: i64 = 60 * 1000;

/// What the board shows for one clinic.
#[derive(Debug, Clone, Default)]
pub struct ClinicLink {
    pub online: bool,
    /// When it came online, or went offline.
    pub since_ms: i64,
    pub agent_version: String,
    pub cert_expires_ms: Option<i64>,
    pub rtt_ms: Option<f64>,
    pub loss: Option<f64>,
    /// Received bytes per second over the last sampling period.
    pub throughput_bps: f64,
    pub backlog: Option<Backlog>,
    pub history: VecDeque<Sample>,
    /// (time, received bytes) at the last throughput sample.
    rx: Option<(i64, u64)>,
}

/// What survives a restart of a clinic's row, besides its history.
#[derive(Debug, Serialize, Deserialize)]
struct Facts {
    agent_version: String,
    cert_expires_ms: Option<i64>,
    /// The last time the clinic was online (at most a minute old while it is).
    last_seen_ms: i64,
    backlog: Option<Backlog>,
}

pub struct Board {
    clinics: Mutex<BTreeMap<ClinicId, ClinicLink>>,
    /// The revocation list in force, as the link's CRL watcher last found it.
    crl: Mutex<CrlStatus>,
    /// Clinic → [`Facts`] (JSON).
    facts: sled::Tree,
    /// `clinic/at_ms` (big-endian) → throughput, RTT (f64) and backlog items (u64).
    history: sled::Tree,
}

/// The CRL in force: when a newer one is due, and the last refused reload since it loaded.
#[derive(Debug, Clone, Default)]
pub struct CrlStatus {
    pub next_update_ms: Option<i64>,
    pub refused: Option<(i64, String)>,
}

impl std::fmt::Debug for Board {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Board").finish_non_exhaustive()
    }
}

fn history_key(clinic: &ClinicId, at_ms: i64) -> Vec<u8> {
    let mut key = history_prefix(clinic);
    key.extend_from_slice(&at_ms.to_be_bytes());
    key
}

fn history_prefix(clinic: &ClinicId) -> Vec<u8> {
    let mut key = clinic.as_str().as_bytes().to_vec();
    key.push(b'/');
    key
}

fn encode(s: &Sample) -> [u8; 24] {
    let mut v = [0u8; 24];
    v[..8].copy_from_slice(&s.throughput_bps.to_be_bytes());
    v[8..16].copy_from_slice(&s.rtt_ms.to_be_bytes());
    v[16..].copy_from_slice(&s.backlog_items.to_be_bytes());
    v
}

fn decode(at_ms: i64, v: &[u8]) -> Option<Sample> {
    let part = |r: std::ops::Range<usize>| <[u8; 8]>::try_from(v.get(r)?).ok();
    Some(Sample {
        at_ms,
        throughput_bps: f64::from_be_bytes(part(0..8)?),
        rtt_ms: f64::from_be_bytes(part(8..16)?),
        backlog_items: u64::from_be_bytes(part(16..24)?),
    })
}

impl Board {
    /// Opens the board's trees in `db` and loads every clinic known from an earlier run, as
    /// offline since it was last seen, with its last 24 hours.
    pub fn open(db: &sled::Db, now_ms: i64) -> anyhow::Result<Self> {
        let board = Self {
            clinics: Mutex::default(),
            crl: Mutex::default(),
            facts: db.open_tree("board_facts")?,
            history: db.open_tree("board_history")?,
        };
        let mut clinics = BTreeMap::new();
        for entry in board.facts.iter() {
            let (k, v) = entry?;
            let (Some(clinic), Ok(facts)) = (
                std::str::from_utf8(&k)
                    .ok()
                    .and_then(|k| ClinicId::new(k).ok()),
                serde_json::from_slice::<Facts>(&v),
            ) else {
                continue;
            };
            board.prune(&clinic, now_ms);
            let prefix = history_prefix(&clinic);
            let history = board
                .history
                .scan_prefix(&prefix)
                .filter_map(|kv| {
                    let (k, v) = kv.ok()?;
                    let at = i64::from_be_bytes(k.get(prefix.len()..)?.try_into().ok()?);
                    decode(at, &v)
                })
                .collect();
            clinics.insert(
                clinic,
                ClinicLink {
                    online: false,
                    since_ms: facts.last_seen_ms,
                    agent_version: facts.agent_version,
                    cert_expires_ms: facts.cert_expires_ms,
                    backlog: facts.backlog,
                    history,
                    ..Default::default()
                },
            );
        }
        *board.clinics.lock().unwrap_or_else(|p| p.into_inner()) = clinics;
        Ok(board)
    }

    fn with<T>(&self, clinic: &ClinicId, f: impl FnOnce(&mut ClinicLink) -> T) -> T {
        let mut all = self.clinics.lock().unwrap_or_else(|p| p.into_inner());
        f(all.entry(clinic.clone()).or_default())
    }

    /// Writes a clinic's facts (sled flushes them in the background: a board is not worth an
    /// fsync, and a lost minute only makes "last seen" a minute older).
    fn keep(&self, clinic: &ClinicId, c: &ClinicLink, last_seen_ms: i64) {
        let facts = Facts {
            agent_version: c.agent_version.clone(),
            cert_expires_ms: c.cert_expires_ms,
            last_seen_ms,
            backlog: c.backlog.clone(),
        };
        let written = serde_json::to_vec(&facts)
            .map_err(anyhow::Error::from)
            .and_then(|v| Ok(self.facts.insert(clinic.as_str(), v)?));
        if let Err(e) = written {
            warn!(%clinic, error = %e, "cannot keep the link board's facts");
        }
    }

    /// Drops history older than 24 hours.
    fn prune(&self, clinic: &ClinicId, now_ms: i64) {
        let old = self
            .history
            .range(history_key(clinic, 0)..history_key(clinic, now_ms - HISTORY_MS))
            .keys();
        for key in old.flatten() {
            let _ = self.history.remove(key);
        }
    }

    pub fn up(
        &self,
        clinic: &ClinicId,
        now_ms: i64,
        agent_version: &str,
        cert_expires_ms: Option<i64>,
    ) {
        self.with(clinic, |c| {
            c.online = true;
            c.since_ms = now_ms;
            c.agent_version = agent_version.to_owned();
            c.cert_expires_ms = cert_expires_ms;
            c.rx = None;
            self.keep(clinic, c, now_ms);
        });
    }

    pub fn down(&self, clinic: &ClinicId, now_ms: i64) {
        self.with(clinic, |c| {
            c.online = false;
            c.since_ms = now_ms;
            c.throughput_bps = 0.0;
            c.rx = None;
            self.keep(clinic, c, now_ms);
        });
    }

    /// A reading of the live connection: smoothed RTT, loss ratio, total bytes received.
    pub fn sample(
        &self,
        clinic: &ClinicId,
        now_ms: i64,
        rtt_ms: f64,
        loss: Option<f64>,
        rx_bytes: u64,
    ) {
        self.with(clinic, |c| {
            c.rtt_ms = Some(rtt_ms);
            c.loss = loss;
            if let Some((t, b)) = c.rx {
                let secs = (now_ms - t) as f64 / 1000.0;
                if secs > 0.0 {
                    c.throughput_bps = rx_bytes.saturating_sub(b) as f64 / secs;
                }
            }
            c.rx = Some((now_ms, rx_bytes));
            let due = c
                .history
                .back()
                .is_none_or(|s| now_ms - s.at_ms >= SAMPLE_EVERY_MS);
            if due {
                let sample = Sample {
                    at_ms: now_ms,
                    throughput_bps: c.throughput_bps,
                    rtt_ms,
                    backlog_items: c.backlog.as_ref().map_or(0, |b| b.items),
                };
                c.history.push_back(sample);
                while c
                    .history
                    .front()
                    .is_some_and(|s| now_ms - s.at_ms > HISTORY_MS)
                {
                    c.history.pop_front();
                }
                if let Err(e) = self
                    .history
                    .insert(history_key(clinic, now_ms), &encode(&sample))
                {
                    warn!(%clinic, error = %e, "cannot keep the link board's history");
                }
                self.prune(clinic, now_ms);
                self.keep(clinic, c, now_ms);
            }
        });
    }

    /// The agent's own account of what it still has to send (kept for the next run with the
    /// minute's sample and when the link goes down).
    pub fn backlog(&self, clinic: &ClinicId, backlog: Backlog) {
        self.with(clinic, |c| c.backlog = Some(backlog));
    }

    /// The CRL in force was (re)loaded; a newer one is due at `next_update_ms`.
    pub fn crl_loaded(&self, next_update_ms: Option<i64>) {
        *self.crl.lock().unwrap_or_else(|p| p.into_inner()) = CrlStatus {
            next_update_ms,
            refused: None,
        };
    }

    /// A changed `crl.pem` was refused at `at_ms` (the one in force stays) for `reason`.
    pub fn crl_refused(&self, at_ms: i64, reason: String) {
        self.crl.lock().unwrap_or_else(|p| p.into_inner()).refused = Some((at_ms, reason));
    }

    pub fn crl(&self) -> CrlStatus {
        self.crl.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn snapshot(&self) -> BTreeMap<ClinicId, ClinicLink> {
        self.clinics
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reopened_board_keeps_the_last_day_and_shows_the_clinic_offline_since_last_seen() {
        let dir = tempfile::tempdir().unwrap();
        let jz = ClinicId::new("jinzhou").unwrap();
        let day = HISTORY_MS;
        let t0 = 1_795_000_000_000;
        {
            let db = sled::open(dir.path()).unwrap();
            let board = Board::open(&db, t0).unwrap();
            board.up(&jz, t0, "0.1.0", Some(t0 + 10 * day));
            board.backlog(
                &jz,
                Backlog {
                    items: 7,
                    bytes: 7000,
                    ..Default::default()
                },
            );
            // A sample a minute for 25 hours: the first hour falls out of the window.
            for minute in 0..25 * 60 {
                let now = t0 + minute * SAMPLE_EVERY_MS;
                board.sample(&jz, now, 40.0, Some(0.01), minute as u64 * 60_000);
            }
            db.flush().unwrap();
        }
        let last = t0 + (25 * 60 - 1) * SAMPLE_EVERY_MS;
        // sled's flusher thread lets go of the file lock a moment after the last handle is
        // dropped; a busy machine can make that moment long.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let db = loop {
            match sled::open(dir.path()) {
                Ok(db) => break db,
                Err(_) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) => panic!("cannot reopen the board's database: {e}"),
            }
        };
        let board = Board::open(&db, last + 1000).unwrap();
        let c = &board.snapshot()[&jz];
        assert!(!c.online);
        assert_eq!(c.since_ms, last, "offline since last seen");
        assert_eq!(c.agent_version, "0.1.0");
        assert_eq!(c.cert_expires_ms, Some(t0 + 10 * day));
        assert_eq!(c.backlog.as_ref().map(|b| b.items), Some(7));
        assert_eq!(c.history.len(), 24 * 60, "the last 24 hours, one a minute");
        let newest = c.history.back().unwrap();
        assert_eq!(
            (newest.at_ms, newest.rtt_ms, newest.backlog_items),
            (last, 40.0, 7)
        );
        assert!((newest.throughput_bps - 1000.0).abs() < 1e-6, "{newest:?}");
        assert!(c.history.iter().all(|s| last - s.at_ms <= day));
        assert_eq!(
            board.history.len(),
            24 * 60,
            "older samples leave the disk too"
        );
    }
}
