//! The administrators' alerts: what needs a person now, computed from the link board, the
//! consultations, forwarding, the routing roster, the revocation list and the disk against the
//! thresholds of `[alerts]`. Pure of HTTP: the alerts page renders what [`raised`] answers,
//! through a [`Ledger`] that remembers when each alert was first raised and who acknowledged
//! it.
//!
//! The ledger is kept in the alerts' store (sled in the embedded gateway, PostgreSQL when
//! nodes share one), so an acknowledgement holds whichever node answers next and across a
//! restart. Each alert is dated from the time its source records (a link down since, an SLA
//! due, a CRL refused) or else from the first time any node computed it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use store::alerts::AlertStore;
use tracing::warn;

use daemon::accounts::User;

use crate::access::{Action, Task};
use crate::cases::{CaseError, Cases};
use crate::config::AlertsConfig;
use crate::forward::Forwarder;

/// One alert: its kind (a message key of the pages), what it is about (a clinic, a case id, a
/// destination, a file) and a short detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    pub kind: &'static str,
    pub about: String,
    pub detail: String,
    /// When the condition began, where its source records it (unix milliseconds).
    pub since_ms: Option<i64>,
}

/// What an alert is about, for a link to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject<'a> {
    /// A consultation, by id.
    Case(&'a str),
    /// A clinic's row on the link board.
    Clinic(&'a str),
    /// A PACS destination's row on the link board.
    Destination(&'a str),
    /// The routing roster.
    Roster,
    /// A file or folder of the gateway's host (the CRL, the data folder): nothing to link to.
    Host(&'a str),
}

/// An alert's identity: the same kind about the same thing is the same alert while it stays
/// raised.
pub use store::alerts::Key;

impl Alert {
    pub fn key(&self) -> Key {
        (self.kind.to_owned(), self.about.clone())
    }

    /// What the alert is about, by its kind.
    pub fn subject(&self) -> Subject<'_> {
        let about = self.about.as_str();
        match self.kind {
            "alerts.sla" | "alerts.unrouted" => Subject::Case(about),
            "alerts.awaiting" | "alerts.link_down" | "alerts.backlog_age" | "alerts.quarantine"
            | "alerts.cert" => Subject::Clinic(about),
            "alerts.pacs" => Subject::Destination(about),
            "alerts.roster" => Subject::Roster,
            _ => Subject::Host(about),
        }
    }
}

pub use store::alerts::Ack;

/// An alert as the page lists it: since when it is raised, and its acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub alert: Alert,
    pub raised_ms: i64,
    pub ack: Option<Ack>,
}

/// Why an acknowledgement was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AckError {
    #[error("alert {kind} about {about} is not raised now, or not since the page showed it; reload the alerts page")]
    NotRaised { kind: String, about: String },
    #[error("the acknowledgement could not be kept ({0}); try again, and if it persists check the gateway's storage")]
    Store(String),
}

/// Kinds computed from what one node alone knows: its forwarding (only the node holding the
/// fan-out's lease sends), its copy of the roster and of the CRL, its own disk. The ledger
/// keeps them per node, so that another node, which does not raise them, does not forget them
/// (nor their acknowledgement) at each look.
const NODE_KINDS: [&str; 5] = [
    "alerts.pacs",
    "alerts.roster",
    "alerts.crl_refused",
    "alerts.crl_stale",
    "alerts.disk",
];

/// A node's lasting name for the ledger: its host and data folder, the same across restarts
/// and apart for two nodes on one host.
pub fn node_name(data_dir: &Path) -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    format!("{host}:{}", data_dir.display())
}

/// Between a node's name and what a node's alert is about, in the store's key.
const NODE_SEP: char = '\u{1f}';

/// The alerts raised at the last look: when each was first raised and who acknowledged it,
/// kept in the alerts' store (`store::alerts`), which every node of a gateway shares. An
/// alert that clears is forgotten with its acknowledgement, so a new occurrence alerts again.
#[derive(Debug, Clone)]
pub struct Ledger {
    store: Arc<dyn AlertStore>,
    /// This node's lasting name (the same across its restarts), for [`NODE_KINDS`].
    node: String,
}

impl Ledger {
    pub fn new(store: Arc<dyn AlertStore>, node: &str) -> Self {
        Self {
            store,
            node: node.to_owned(),
        }
    }

    /// The key `key` is kept under: this node's own for [`NODE_KINDS`].
    fn stored(&self, key: &Key) -> Key {
        if NODE_KINDS.contains(&key.0.as_str()) {
            (key.0.clone(), format!("{}{NODE_SEP}{}", self.node, key.1))
        } else {
            key.clone()
        }
    }

    /// Whether this node decides when the stored alert `key` has cleared.
    fn decides(&self, key: &Key) -> bool {
        !NODE_KINDS.contains(&key.0.as_str())
            || key
                .1
                .split_once(NODE_SEP)
                .is_some_and(|(node, _)| node == self.node)
    }

    /// Takes in the alerts raised at `now`: new ones are dated, cleared ones forgotten. Answers
    /// them unacknowledged first, then acknowledged, each group in the order given. Blocking.
    /// When the store cannot be read, every alert is listed unacknowledged: an alert must be
    /// seen even then.
    pub fn observe(&self, raised: Vec<Alert>, now: i64) -> Vec<Listed> {
        let seen = match self.remember(&raised, now) {
            Ok(seen) => seen,
            Err(e) => {
                warn!(error = %e, "the alerts' acknowledgements cannot be read; listing every alert as new");
                BTreeMap::new()
            }
        };
        let mut listed: Vec<Listed> = raised
            .into_iter()
            .map(|alert| {
                let first = alert.since_ms.map_or(now, |t| t.min(now));
                let (raised_ms, ack) = seen
                    .get(&self.stored(&alert.key()))
                    .map_or((first, None), |s| (s.first_ms, s.ack.clone()));
                Listed {
                    raised_ms,
                    ack,
                    alert,
                }
            })
            .collect();
        listed.sort_by_key(|l| l.ack.is_some());
        listed
    }

    /// Forgets the alerts no longer raised (of those this node decides), dates the new ones,
    /// and answers what is kept, by stored key.
    fn remember(
        &self,
        raised: &[Alert],
        now: i64,
    ) -> Result<BTreeMap<Key, store::alerts::Seen>, store::alerts::AlertError> {
        let keys: BTreeSet<Key> = raised.iter().map(|a| self.stored(&a.key())).collect();
        let mut seen = self.store.all()?;
        for cleared in seen
            .keys()
            .filter(|k| !keys.contains(*k) && self.decides(k))
        {
            self.store.forget(cleared)?;
        }
        let new: Vec<&Alert> = raised
            .iter()
            .filter(|a| !seen.contains_key(&self.stored(&a.key())))
            .collect();
        if new.is_empty() {
            seen.retain(|k, _| keys.contains(k));
            return Ok(seen);
        }
        for alert in new {
            self.store.raise(
                &self.stored(&alert.key()),
                alert.since_ms.map_or(now, |t| t.min(now)),
            )?;
        }
        // Read again: another node may have dated one first.
        let mut seen = self.store.all()?;
        seen.retain(|k, _| keys.contains(k));
        Ok(seen)
    }

    /// When the alert `key` was first raised, if it is raised now. Blocking.
    pub fn raised_since(&self, key: &Key) -> Result<Option<i64>, AckError> {
        Ok(self
            .store
            .all()
            .map_err(|e| AckError::Store(e.0))?
            .get(&self.stored(key))
            .map(|s| s.first_ms))
    }

    /// Whether the alert `key` is raised now, since `raised_ms` (as a page showed it).
    pub fn check(&self, key: &Key, raised_ms: i64) -> Result<(), AckError> {
        if self.raised_since(key)? == Some(raised_ms) {
            Ok(())
        } else {
            Err(AckError::NotRaised {
                kind: key.0.clone(),
                about: key.1.clone(),
            })
        }
    }

    /// `by` acknowledges the alert `key` at `now`, as the page showed it: raised since
    /// `raised_ms` (so an occurrence that cleared and came back since is not acknowledged
    /// unseen). It must be raised now. Blocking.
    pub fn acknowledge(
        &self,
        key: &Key,
        raised_ms: i64,
        by: &str,
        now: i64,
    ) -> Result<(), AckError> {
        self.check(key, raised_ms)?;
        let stored = self.stored(key);
        let not_raised = || AckError::NotRaised {
            kind: key.0.clone(),
            about: key.1.clone(),
        };
        let ack = Ack {
            by: by.to_owned(),
            at_ms: now,
        };
        match self.store.acknowledge(&stored, &ack) {
            Ok(true) => Ok(()),
            Ok(false) => Err(not_raised()),
            Err(e) => Err(AckError::Store(e.0)),
        }
    }
}

/// What the alerts are computed from.
pub struct Sources<'a> {
    pub cases: &'a Cases,
    pub forward: Option<&'a Forwarder>,
    pub thresholds: &'a AlertsConfig,
    /// The data folder, whose file system's fill is watched.
    pub data_dir: &'a Path,
}

fn age(secs: Option<u64>) -> String {
    secs.map_or_else(|| "—".into(), daemon::span)
}

/// The alerts raised at `now` (unix milliseconds), for `admin` (the access policy's
/// administrators only).
pub fn raised(s: &Sources<'_>, admin: &User, now: i64) -> Result<Vec<Alert>, CaseError> {
    crate::access::check(admin, Action::Run(Task::Alerts))?;
    let t = s.thresholds;
    let mut alerts = Vec::new();
    for (clinic, l) in s.cases.clinics()? {
        if s.cases
            .consult
            .log
            .awaiting(&clinic)
            .is_ok_and(|w| w.events)
        {
            alerts.push(Alert {
                kind: "alerts.awaiting",
                about: clinic.to_string(),
                detail: "restored from a backup: its cases wait until its link is back".into(),
                since_ms: None,
            });
        }
        if !l.online && l.since_ms > 0 && now - l.since_ms > t.link_down_minutes as i64 * 60_000 {
            alerts.push(Alert {
                kind: "alerts.link_down",
                about: clinic.to_string(),
                detail: format!("{} min", (now - l.since_ms) / 60_000),
                since_ms: Some(l.since_ms + t.link_down_minutes as i64 * 60_000),
            });
        }
        if let Some(b) = &l.backlog {
            let sla = crate::routing::default_sla(proto::consult::Urgency::Routine).as_secs();
            if b.oldest_pending_secs
                .is_some_and(|s| s > t.backlog_age_minutes.unwrap_or(sla / 60) * 60)
            {
                alerts.push(Alert {
                    kind: "alerts.backlog_age",
                    about: clinic.to_string(),
                    detail: age(b.oldest_pending_secs),
                    since_ms: None,
                });
            }
            if b.quarantined > 0 {
                alerts.push(Alert {
                    kind: "alerts.quarantine",
                    about: clinic.to_string(),
                    detail: b.quarantined.to_string(),
                    since_ms: None,
                });
            }
        }
        if let Some(exp) = l.cert_expires_ms {
            if exp - now < t.cert_expiry_days as i64 * 86_400_000 {
                alerts.push(Alert {
                    kind: "alerts.cert",
                    about: clinic.to_string(),
                    detail: daemon::client::utc(exp),
                    since_ms: None,
                });
            }
        }
    }
    // A case's short number leads its detail: what people say on the phone.
    let numbered = |number: &Option<String>, rest: String| match number {
        Some(n) => format!("{n} · {rest}"),
        None => rest,
    };
    let search = proto::find::Search::default();
    for row in s.cases.worklist(admin, false, &search, None)?.rows {
        if row.accept_by_ms.is_some_and(|by| by < now) {
            alerts.push(Alert {
                kind: "alerts.sla",
                about: row.id.to_string(),
                detail: numbered(&row.number, format!("{} · {}", row.clinic, row.specialty)),
                since_ms: row.accept_by_ms,
            });
        }
    }
    for c in s.cases.consult.log.all().map_err(CaseError::internal)? {
        if let (proto::consult::State::Delivered, Some(why)) = (c.state, &c.unrouted) {
            alerts.push(Alert {
                kind: "alerts.unrouted",
                about: c.id.to_string(),
                detail: numbered(&c.number, format!("{} · {why}", c.clinic)),
                since_ms: None,
            });
        }
    }
    if let Some(f) = s.forward {
        for d in f.status() {
            if let (true, Some(e)) = (d.queued > 0, &d.last_error) {
                alerts.push(Alert {
                    kind: "alerts.pacs",
                    about: d.name.clone(),
                    detail: format!("{} queued · {e}", d.queued),
                    since_ms: None,
                });
            }
        }
    }
    if let Some(why) = s.cases.router.as_ref().and_then(|r| r.refused()) {
        alerts.push(Alert {
            kind: "alerts.roster",
            about: "routing.toml".into(),
            detail: why,
            since_ms: None,
        });
    }
    let crl = s.cases.board.crl();
    if let Some((at, reason)) = crl.refused {
        alerts.push(Alert {
            kind: "alerts.crl_refused",
            about: "crl.pem".into(),
            detail: format!("{} · {reason}", daemon::client::utc(at)),
            since_ms: Some(at),
        });
    }
    if let Some(due) = crl.next_update_ms.filter(|due| *due < now) {
        alerts.push(Alert {
            kind: "alerts.crl_stale",
            about: "crl.pem".into(),
            detail: format!(
                "{} · certs crl --dir CA_FOLDER, then copy crl.pem to the gateway",
                daemon::client::utc(due)
            ),
            since_ms: Some(due),
        });
    }
    if let Some(pct) = disk_used_percent(s.data_dir) {
        if pct >= t.disk_percent {
            alerts.push(Alert {
                kind: "alerts.disk",
                about: s.data_dir.display().to_string(),
                detail: format!("{pct} %"),
                since_ms: None,
            });
        }
    }
    Ok(alerts)
}

/// How full the file system holding `dir` is, in whole percent as `df -P` shows it (POSIX
/// `df`, "Capacity"): the blocks in use out of those in use plus those available to
/// unprivileged users, rounded up. `None` when the file system cannot be asked or reports no
/// blocks.
fn disk_used_percent(dir: &Path) -> Option<u64> {
    let stat = rustix::fs::statvfs(dir).ok()?;
    let used = u128::from(stat.f_blocks.saturating_sub(stat.f_bfree));
    let usable = used + u128::from(stat.f_bavail);
    if usable == 0 {
        return None;
    }
    u64::try_from((used * 100).div_ceil(usable)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(kind: &'static str, about: &str, since_ms: Option<i64>) -> Alert {
        Alert {
            kind,
            about: about.into(),
            detail: String::new(),
            since_ms,
        }
    }

    #[test]
    fn an_acknowledged_alert_stays_listed_below_until_it_clears_and_then_alerts_again() {
        let ledger = Ledger::new(
            Arc::new(store::alerts::memory::MemoryAlerts::default()),
            "node-a",
        );
        let down = alert("alerts.link_down", "jinzhou", Some(500));
        let disk = alert("alerts.disk", "/data", None);
        let listed = ledger.observe(vec![down.clone(), disk.clone()], 1000);
        assert_eq!(listed[0].raised_ms, 500, "dated by its source");
        assert_eq!(listed[1].raised_ms, 1000, "dated when first computed");
        // Nothing not raised can be acknowledged.
        let other = ("alerts.cert".to_owned(), "jinzhou".to_owned());
        assert!(ledger.acknowledge(&other, 1000, "chen", 1100).is_err());
        // Not as the page showed it (it cleared and came back since): refused.
        assert!(ledger.acknowledge(&down.key(), 999, "chen", 1100).is_err());
        ledger.acknowledge(&down.key(), 500, "chen", 1100).unwrap();
        let listed = ledger.observe(vec![down.clone(), disk.clone()], 2000);
        assert_eq!(listed[0].alert, disk, "the unacknowledged one first");
        assert_eq!(listed[0].raised_ms, 1000, "its first time is kept");
        assert_eq!(
            listed[1].ack,
            Some(Ack {
                by: "chen".into(),
                at_ms: 1100
            })
        );
        // It clears, then comes back: a new alert, unacknowledged, newly dated.
        ledger.observe(vec![disk.clone()], 3000);
        let back = alert("alerts.link_down", "jinzhou", None);
        let listed = ledger.observe(vec![back, disk], 4000);
        assert_eq!((listed[0].raised_ms, listed[0].ack.clone()), (4000, None));
    }

    /// An alert only one node can see (its disk, its forwarding) is that node's to clear:
    /// another node's look, which does not raise it, leaves it and its acknowledgement; the
    /// alerts every node computes alike are cleared by any.
    #[test]
    fn another_node_does_not_clear_what_only_one_node_sees() {
        let shared = Arc::new(store::alerts::memory::MemoryAlerts::default());
        let a = Ledger::new(shared.clone(), "host-a:/data");
        let b = Ledger::new(shared, "host-b:/data");
        let disk = alert("alerts.disk", "/data", None);
        let down = alert("alerts.link_down", "jinzhou", Some(500));
        a.observe(vec![disk.clone(), down.clone()], 1000);
        a.acknowledge(&disk.key(), 1000, "chen", 1100).unwrap();
        // B's disk is fine and the link came back: B clears the link alert, not A's disk.
        assert!(b.observe(Vec::new(), 2000).is_empty());
        let listed = a.observe(vec![disk.clone()], 3000);
        assert_eq!(listed[0].raised_ms, 1000, "still first raised at 1000");
        assert_eq!(listed[0].ack.as_ref().map(|a| a.by.as_str()), Some("chen"));
        assert_eq!(b.raised_since(&down.key()).unwrap(), None, "cleared by B");
        // B's own disk alert is B's: apart from A's.
        let on_b = b.observe(vec![disk.clone()], 4000);
        assert_eq!((on_b[0].raised_ms, on_b[0].ack.clone()), (4000, None));
    }

    /// The embedded gateway keeps its ledger in its database: a restart forgets neither when
    /// an alert was first raised nor who acknowledged it.
    #[test]
    fn an_acknowledgement_and_the_first_time_outlive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let down = alert("alerts.link_down", "jinzhou", None);
        let open = || {
            let db = sled::open(dir.path().join("index")).unwrap();
            let ledger = Ledger::new(
                Arc::new(store::alerts::sled::SledAlerts::open(&db).unwrap()),
                "node-a",
            );
            (db, ledger)
        };
        let (db, ledger) = open();
        ledger.observe(vec![down.clone()], 1000);
        ledger.acknowledge(&down.key(), 1000, "chen", 1100).unwrap();
        db.flush().unwrap();
        drop((db, ledger));
        let (_db, ledger) = open();
        let listed = ledger.observe(vec![down], 9000);
        assert_eq!(listed[0].raised_ms, 1000);
        assert_eq!(listed[0].ack.as_ref().map(|a| a.by.as_str()), Some("chen"));
    }

    #[test]
    fn each_alert_links_to_what_it_is_about() {
        assert_eq!(
            alert("alerts.unrouted", "x", None).subject(),
            Subject::Case("x")
        );
        assert_eq!(
            alert("alerts.quarantine", "jz", None).subject(),
            Subject::Clinic("jz")
        );
        assert_eq!(
            alert("alerts.pacs", "main", None).subject(),
            Subject::Destination("main")
        );
        assert_eq!(
            alert("alerts.roster", "routing.toml", None).subject(),
            Subject::Roster
        );
        assert_eq!(
            alert("alerts.disk", "/d", None).subject(),
            Subject::Host("/d")
        );
    }

    /// The alert's figure is the one an operator sees with `df -P` on the same folder (give or
    /// take a point, should the disk fill between the two looks).
    #[test]
    fn the_disk_alert_shows_what_df_shows() {
        let dir = tempfile::tempdir().unwrap();
        let ours = disk_used_percent(dir.path()).expect("statvfs of a temporary folder");
        assert!(ours <= 100, "{ours}");
        let Ok(out) = std::process::Command::new("df")
            .arg("-P")
            .arg(dir.path())
            .output()
        else {
            return; // no df on this machine: nothing to compare with
        };
        let text = String::from_utf8_lossy(&out.stdout);
        let theirs: u64 = text
            .lines()
            .nth(1)
            .unwrap()
            .split_whitespace()
            .nth(4)
            .unwrap()
            .trim_end_matches('%')
            .parse()
            .unwrap();
        assert!(
            ours.abs_diff(theirs) <= 1,
            "statvfs {ours} %, df {theirs} %"
        );
    }
}
