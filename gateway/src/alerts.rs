//! The administrators' alerts: what needs a person now, computed from the link board, the
//! consultations, forwarding, the routing roster, the revocation list and the disk against the
//! thresholds of `[alerts]`. Pure of HTTP: the alerts page renders what [`raised`] answers,
//! through a [`Ledger`] that remembers when each alert was first raised and who acknowledged
//! it.
//!
//! The ledger lives in memory: a restarted gateway forgets acknowledgements (every alert
//! still raised alerts again, which errs on the side of being seen) and dates each alert from
//! the time its source records (a link down since, an SLA due, a CRL refused) or else from the
//! first time it is computed after the start.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

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
pub type Key = (String, String);

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

/// Who acknowledged an alert, and when (unix milliseconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    pub by: String,
    pub at_ms: i64,
}

/// An alert as the page lists it: since when it is raised, and its acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub alert: Alert,
    pub raised_ms: i64,
    pub ack: Option<Ack>,
}

#[derive(Debug, Clone)]
struct Seen {
    first_ms: i64,
    ack: Option<Ack>,
}

/// Why an acknowledgement was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AckError {
    #[error("alert {kind} about {about} is not raised now; reload the alerts page")]
    NotRaised { kind: String, about: String },
}

/// The alerts raised at the last look: when each was first raised and who acknowledged it.
/// An alert that clears is forgotten with its acknowledgement, so a new occurrence alerts
/// again.
#[derive(Debug, Default)]
pub struct Ledger {
    seen: Mutex<BTreeMap<Key, Seen>>,
}

impl Ledger {
    /// Takes in the alerts raised at `now`: new ones are dated, cleared ones forgotten. Answers
    /// them unacknowledged first, then acknowledged, each group in the order given.
    pub fn observe(&self, raised: Vec<Alert>, now: i64) -> Vec<Listed> {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let keys: std::collections::BTreeSet<Key> = raised.iter().map(Alert::key).collect();
        seen.retain(|k, _| keys.contains(k));
        let mut listed: Vec<Listed> = raised
            .into_iter()
            .map(|alert| {
                let s = seen.entry(alert.key()).or_insert_with(|| Seen {
                    first_ms: alert.since_ms.map_or(now, |t| t.min(now)),
                    ack: None,
                });
                Listed {
                    raised_ms: s.first_ms,
                    ack: s.ack.clone(),
                    alert,
                }
            })
            .collect();
        listed.sort_by_key(|l| l.ack.is_some());
        listed
    }

    /// `by` acknowledges the alert `key` at `now`; it must have been raised at the last look.
    pub fn acknowledge(&self, key: &Key, by: &str, now: i64) -> Result<(), AckError> {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let s = seen.get_mut(key).ok_or_else(|| AckError::NotRaised {
            kind: key.0.clone(),
            about: key.1.clone(),
        })?;
        s.ack = Some(Ack {
            by: by.to_owned(),
            at_ms: now,
        });
        Ok(())
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
        let ledger = Ledger::default();
        let down = alert("alerts.link_down", "jinzhou", Some(500));
        let disk = alert("alerts.disk", "/data", None);
        let listed = ledger.observe(vec![down.clone(), disk.clone()], 1000);
        assert_eq!(listed[0].raised_ms, 500, "dated by its source");
        assert_eq!(listed[1].raised_ms, 1000, "dated when first computed");
        // Nothing not raised can be acknowledged.
        let other = ("alerts.cert".to_owned(), "jinzhou".to_owned());
        assert!(ledger.acknowledge(&other, "chen", 1100).is_err());
        ledger.acknowledge(&down.key(), "chen", 1100).unwrap();
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
