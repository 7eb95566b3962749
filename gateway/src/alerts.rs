//! The administrators' alerts: what needs a person now, computed from the link board, the
//! consultations, forwarding, the routing roster, the revocation list and the disk against the
//! thresholds of `[alerts]`. Pure of HTTP: the alerts page renders what [`raised`] answers.

use std::path::Path;

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
            });
        }
        if !l.online && l.since_ms > 0 && now - l.since_ms > t.link_down_minutes as i64 * 60_000 {
            alerts.push(Alert {
                kind: "alerts.link_down",
                about: clinic.to_string(),
                detail: format!("{} min", (now - l.since_ms) / 60_000),
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
                });
            }
            if b.quarantined > 0 {
                alerts.push(Alert {
                    kind: "alerts.quarantine",
                    about: clinic.to_string(),
                    detail: b.quarantined.to_string(),
                });
            }
        }
        if let Some(exp) = l.cert_expires_ms {
            if exp - now < t.cert_expiry_days as i64 * 86_400_000 {
                alerts.push(Alert {
                    kind: "alerts.cert",
                    about: clinic.to_string(),
                    detail: daemon::client::utc(exp),
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
            });
        }
    }
    for c in s.cases.consult.log.all().map_err(CaseError::internal)? {
        if let (proto::consult::State::Delivered, Some(why)) = (c.state, &c.unrouted) {
            alerts.push(Alert {
                kind: "alerts.unrouted",
                about: c.id.to_string(),
                detail: numbered(&c.number, format!("{} · {why}", c.clinic)),
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
                });
            }
        }
    }
    if let Some(why) = s.cases.router.as_ref().and_then(|r| r.refused()) {
        alerts.push(Alert {
            kind: "alerts.roster",
            about: "routing.toml".into(),
            detail: why,
        });
    }
    let crl = s.cases.board.crl();
    if let Some((at, reason)) = crl.refused {
        alerts.push(Alert {
            kind: "alerts.crl_refused",
            about: "crl.pem".into(),
            detail: format!("{} · {reason}", daemon::client::utc(at)),
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
        });
    }
    if let Some(pct) = disk_used_percent(s.data_dir) {
        if pct >= t.disk_percent {
            alerts.push(Alert {
                kind: "alerts.disk",
                about: s.data_dir.display().to_string(),
                detail: format!("{pct} %"),
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
