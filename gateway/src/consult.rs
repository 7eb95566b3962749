//! The gateway's consultations: the shared log (`store::consult`) in the gateway's database,
//! events streams with each clinic (`daemon::replicate`), and what the gateway does on its own
//! when a clinic's event arrives — a submitted request, once stored, is answered with
//! `delivered`.

use std::sync::Arc;

use daemon::replicate::{Site, Trigger};
use proto::consult::{EventKind, Side, State};
use proto::ClinicId;
use store::consult::{ConsultError, ConsultLog};
use tracing::{info, warn};

pub use daemon::now_ms;

/// The gateway's site in the consultation logs.
pub fn open(db: &sled::Db) -> Result<Site, ConsultError> {
    Ok(Site::new(
        Arc::new(ConsultLog::open(db)?),
        Side::Gateway,
        Arc::new(on_clinic_event),
    ))
}

/// What the gateway does on its own on a clinic's events stream: a stored submission is
/// answered with `delivered`. At each connection it also answers any submission stored
/// before a crash cut it off from its answer (a replayed event is a duplicate and triggers
/// nothing).
fn on_clinic_event(site: &Site, trigger: Trigger<'_>) {
    let clinic = match trigger {
        Trigger::Applied(e) if e.kind == EventKind::Submitted => &e.id.clinic,
        Trigger::Applied(_) => return,
        Trigger::Connected(clinic) => clinic,
    };
    deliver_pending(site, clinic);
}

/// Appends `delivered` to every consultation of `clinic` still waiting for it.
fn deliver_pending(site: &Site, clinic: &ClinicId) {
    let waiting = match site.log.list(clinic) {
        Ok(all) => all
            .into_iter()
            .map(|f| f.consultation)
            .filter(|c| c.state == State::Submitted),
        Err(err) => {
            warn!(%clinic, %err, "cannot read the consultations");
            return;
        }
    };
    for c in waiting {
        match site.append(clinic, &c.id, "system", now_ms(), EventKind::Delivered) {
            Ok(_) => info!(%clinic, consultation = %c.id, "consultation delivered"),
            Err(err) => {
                warn!(%clinic, consultation = %c.id, %err, "cannot mark the consultation delivered")
            }
        }
    }
}
