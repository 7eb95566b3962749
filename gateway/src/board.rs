//! The administrator's link board: what the gateway knows about each clinic's link (online
//! since / offline since, RTT, loss, throughput, the backlog the agent reports, last sync,
//! agent version, certificate expiry) and a per-clinic history of the last 24 hours (one
//! sample a minute), drawn as inline SVG. Also the alerts page, computed from the same facts
//! plus the consultation log, against thresholds in `[alerts]`.
//!
//! The facts and the history are kept through the link board's port (`store::board`; sled
//! beside the archive when embedded), so a restarted gateway still shows yesterday's charts and
//! each clinic offline since it was last heard from.

// A refused page is a whole response, built once per request; boxing it buys nothing.
#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use tracing::warn;

use proto::frame::Backlog;
use proto::ClinicId;
pub use store::board::Sample;
use store::board::{BoardStore, Facts};

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
    /// (time, received bytes) at the last history sample: a history sample's throughput is
    /// the mean since the one before, not the reading of the moment it was taken.
    rx_history: Option<(i64, u64)>,
}

pub struct Board {
    /// The clinics this node has served.
    clinics: Mutex<BTreeMap<ClinicId, ClinicLink>>,
    /// Whether other gateway nodes share the store: then a clinic this node does not serve is
    /// shown from the facts the node serving it keeps.
    shared: bool,
    /// The history of clinics served elsewhere, as last read from the store (and when).
    elsewhere: Mutex<BTreeMap<ClinicId, (i64, VecDeque<Sample>)>>,
    /// The revocation list in force, as the link's CRL watcher last found it.
    crl: Mutex<CrlStatus>,
    /// The facts and the history, kept across restarts.
    store: Arc<dyn BoardStore>,
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

impl Board {
    /// The board kept in `store`, with every clinic known from an earlier run, as offline
    /// since it was last seen, with its last 24 hours.
    pub fn open(store: Arc<dyn BoardStore>, now_ms: i64) -> anyhow::Result<Self> {
        let mut clinics = BTreeMap::new();
        for (clinic, facts) in store.clinics()? {
            store.prune(&clinic, now_ms - HISTORY_MS)?;
            let history = store.history(&clinic, now_ms - HISTORY_MS)?.into();
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
        Ok(Self {
            clinics: Mutex::new(clinics),
            shared: false,
            elsewhere: Mutex::default(),
            crl: Mutex::default(),
            store,
        })
    }

    /// The board of one node of several sharing its store: clinics linked to another node are
    /// shown as that node keeps them (their facts at most a minute old).
    pub fn shared(mut self) -> Self {
        self.shared = true;
        self
    }

    fn with<T>(&self, clinic: &ClinicId, f: impl FnOnce(&mut ClinicLink) -> T) -> T {
        let mut all = self.clinics.lock().unwrap_or_else(|p| p.into_inner());
        f(all.entry(clinic.clone()).or_default())
    }

    /// Writes a clinic's facts (not synced: a board is not worth an fsync, and a lost minute
    /// only makes "last seen" a minute older).
    fn keep(&self, clinic: &ClinicId, c: &ClinicLink, last_seen_ms: i64) {
        let facts = Facts {
            agent_version: c.agent_version.clone(),
            cert_expires_ms: c.cert_expires_ms,
            last_seen_ms,
            backlog: c.backlog.clone(),
            online_since_ms: c.online.then_some(c.since_ms),
            rtt_ms: c.online.then_some(c.rtt_ms).flatten(),
            loss: c.online.then_some(c.loss).flatten(),
            throughput_bps: if c.online { c.throughput_bps } else { 0.0 },
        };
        if let Err(e) = self.store.keep(clinic, &facts) {
            warn!(%clinic, error = %e, "cannot keep the link board's facts");
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
            c.rx_history = None;
            self.keep(clinic, c, now_ms);
        });
    }

    pub fn down(&self, clinic: &ClinicId, now_ms: i64) {
        self.with(clinic, |c| {
            c.online = false;
            c.since_ms = now_ms;
            c.throughput_bps = 0.0;
            c.rx = None;
            c.rx_history = None;
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
                // The mean over the minute: a burst between two readings counts, and the
                // chart's maximum is a rate the link really carried over a minute.
                let throughput_bps = match c.rx_history {
                    Some((t, b)) if now_ms > t => {
                        rx_bytes.saturating_sub(b) as f64 * 1000.0 / (now_ms - t) as f64
                    }
                    _ => c.throughput_bps,
                };
                c.rx_history = Some((now_ms, rx_bytes));
                let sample = Sample {
                    at_ms: now_ms,
                    throughput_bps,
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
                let kept = self
                    .store
                    .sample(clinic, &sample)
                    .and_then(|()| self.store.prune(clinic, now_ms - HISTORY_MS));
                if let Err(e) = kept {
                    warn!(%clinic, error = %e, "cannot keep the link board's history");
                }
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

    /// Every clinic's link: as this node sees it, and with a shared store, the clinics linked
    /// to other nodes (or to none) as their facts say, without their history
    /// ([`Self::add_histories`]).
    pub fn snapshot(&self) -> BTreeMap<ClinicId, ClinicLink> {
        let mut out = self
            .clinics
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if self.shared {
            self.add_elsewhere(&mut out, crate::consult::now_ms());
        }
        out
    }

    fn add_elsewhere(&self, out: &mut BTreeMap<ClinicId, ClinicLink>, now_ms: i64) {
        let all = match self.store.clinics() {
            Ok(all) => all,
            Err(e) => {
                warn!(error = %e, "cannot read the other nodes' link board");
                return;
            }
        };
        for (clinic, facts) in all {
            if out.get(&clinic).is_some_and(|c| c.online) {
                continue;
            }
            // A node that died leaves its clinics "online": facts not renewed for three
            // minutes say offline since they were last renewed.
            let online = facts
                .online_since_ms
                .filter(|_| now_ms - facts.last_seen_ms <= 3 * SAMPLE_EVERY_MS);
            out.insert(
                clinic,
                ClinicLink {
                    online: online.is_some(),
                    since_ms: online.unwrap_or(facts.last_seen_ms),
                    agent_version: facts.agent_version,
                    cert_expires_ms: facts.cert_expires_ms,
                    rtt_ms: online.and(facts.rtt_ms),
                    loss: online.and(facts.loss),
                    throughput_bps: if online.is_some() {
                        facts.throughput_bps
                    } else {
                        0.0
                    },
                    backlog: facts.backlog,
                    ..Default::default()
                },
            );
        }
    }

    /// Fills in the 24-hour history of the clinics in `links` that this node does not serve,
    /// from the store: only the board's charts need it, so the snapshot every page takes
    /// leaves it out.
    pub fn add_histories(&self, links: &mut BTreeMap<ClinicId, ClinicLink>) {
        if !self.shared {
            return;
        }
        let now_ms = crate::consult::now_ms();
        let here = self.clinics.lock().unwrap_or_else(|p| p.into_inner());
        for (clinic, link) in links.iter_mut() {
            if !here.get(clinic).is_some_and(|c| c.online) {
                link.history = self.history_elsewhere(clinic, now_ms);
            }
        }
    }

    /// A clinic's history as another node keeps it, read again at most once a minute.
    fn history_elsewhere(&self, clinic: &ClinicId, now_ms: i64) -> VecDeque<Sample> {
        let mut cache = self.elsewhere.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((read_at, history)) = cache.get(clinic) {
            if now_ms - read_at < SAMPLE_EVERY_MS {
                return history.clone();
            }
        }
        let history: VecDeque<Sample> = self
            .store
            .history(clinic, now_ms - HISTORY_MS)
            .unwrap_or_default()
            .into();
        cache.insert(clinic.clone(), (now_ms, history.clone()));
        history
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use store::board::sled::SledBoard;

    #[test]
    fn a_node_sharing_the_store_shows_the_clinics_another_node_serves() {
        let store = Arc::new(store::board::memory::MemoryBoard::default());
        let now = crate::consult::now_ms();
        let (jz, pld) = (
            ClinicId::new("jinzhou").unwrap(),
            ClinicId::new("pulandian").unwrap(),
        );
        let a = Board::open(store.clone(), now).unwrap().shared();
        a.up(&jz, now - 5_000, "0.1.0", None);
        a.sample(&jz, now - 1_000, 105.0, Some(0.01), 4_000_000);
        // pulandian's node died ten minutes ago, its row still saying online.
        store
            .keep(
                &pld,
                &Facts {
                    agent_version: "0.1.0".into(),
                    cert_expires_ms: None,
                    last_seen_ms: now - 10 * SAMPLE_EVERY_MS,
                    backlog: None,
                    online_since_ms: Some(now - 60 * SAMPLE_EVERY_MS),
                    rtt_ms: Some(90.0),
                    loss: None,
                    throughput_bps: 1e5,
                },
            )
            .unwrap();
        let b = Board::open(store.clone(), now).unwrap().shared();
        let mut shown = b.snapshot();
        b.add_histories(&mut shown);
        let j = &shown[&jz];
        assert!(j.online, "{j:?}");
        assert_eq!((j.since_ms, j.rtt_ms), (now - 5_000, Some(105.0)));
        assert_eq!(j.history.len(), 1, "its history, from the store");
        let p = &shown[&pld];
        assert!(!p.online, "stale facts are offline: {p:?}");
        assert_eq!((p.since_ms, p.rtt_ms), (now - 10 * SAMPLE_EVERY_MS, None));
        // Not shared (embedded): a board shows only what it saw.
        let alone = Board::open(store, now).unwrap();
        assert!(!alone.snapshot()[&jz].online, "seen online only by node A");
    }

    #[test]
    fn a_reopened_board_keeps_the_last_day_and_shows_the_clinic_offline_since_last_seen() {
        let dir = tempfile::tempdir().unwrap();
        let jz = ClinicId::new("jinzhou").unwrap();
        let day = HISTORY_MS;
        let t0 = 1_795_000_000_000;
        {
            let db = sled::open(dir.path()).unwrap();
            let board = Board::open(Arc::new(SledBoard::open(&db).unwrap()), t0).unwrap();
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
        let board = Board::open(Arc::new(SledBoard::open(&db).unwrap()), last + 1000).unwrap();
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
            board.store.history(&jz, 0).unwrap().len(),
            24 * 60,
            "older samples leave the disk too"
        );
    }
}
