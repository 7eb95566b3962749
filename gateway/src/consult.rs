//! The gateway's consultations: the shared log (`store::consult`) in the gateway's database,
//! events streams with each clinic (`daemon::replicate`), and what the gateway does on its own
//! when a clinic's event arrives — a submitted request, once stored, is answered with
//! `delivered`.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use daemon::replicate::Site;
use proto::consult::{Event, EventKind, Side};
use store::consult::{ConsultError, ConsultLog};
use tracing::{info, warn};

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The gateway's site in the consultation logs.
pub fn open(db: &sled::Db) -> Result<Site, ConsultError> {
    Ok(Site::new(
        Arc::new(ConsultLog::open(db)?),
        Side::Gateway,
        Arc::new(on_clinic_event),
    ))
}

/// What the gateway does on its own when a clinic's event is stored.
fn on_clinic_event(site: &Site, e: &Event) {
    if e.kind != EventKind::Submitted {
        return;
    }
    match site.append(
        &e.id.clinic,
        &e.consultation,
        "system",
        now_ms(),
        EventKind::Delivered,
    ) {
        Ok(_) => {
            info!(clinic = %e.id.clinic, consultation = %e.consultation, "consultation delivered")
        }
        Err(err) => {
            warn!(clinic = %e.id.clinic, consultation = %e.consultation, %err, "cannot mark the consultation delivered")
        }
    }
}
