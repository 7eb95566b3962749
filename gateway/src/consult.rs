//! The gateway's consultations: the shared log (`store::consult`) in the gateway's database,
//! events streams with each clinic (`daemon::replicate`), and what the gateway does on its own
//! when a clinic's event arrives — a submitted request, once stored, is answered with
//! `delivered`.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use daemon::replicate::{Site, Trigger};
use proto::consult::{EventKind, Side, State};
use proto::ClinicId;
use store::consult::ConsultLog;
use tracing::{info, warn};

pub use daemon::now_ms;

/// The file in the data folder holding the key that seals the gateway's own events (kept in
/// backups with the index it belongs to).
pub const SEAL_FILE: &str = "event-seal.key";
const SEAL_BYTES: usize = 32;

/// The gateway's site in the consultation logs, sealing its events with the data folder's
/// key (made on first start) and writing under the index's write gate.
pub fn open(ports: &crate::storage::Ports, data_dir: &Path) -> anyhow::Result<Site> {
    let (log, key) = match &ports.kept {
        crate::storage::Kept::Embedded(e) => (
            ConsultLog::open_gated(&e.db, e.gate.clone())?,
            seal_key(data_dir)?,
        ),
        crate::storage::Kept::Postgres(db) => (
            ConsultLog::new(Arc::new(store::postgres::events::PgEvents::new(db.clone()))),
            shared_seal_key(db)?,
        ),
    };
    Ok(Site::new(
        Arc::new(log.sealed(&key)),
        Side::Gateway,
        ports.notifier.clone(),
        Arc::new(on_clinic_event),
    ))
}

/// A key for `purpose` derived from the seal key (HMAC-SHA-256 of the purpose under it): the
/// same on every node sharing the store, kept and backed up with it, and telling nothing of
/// the seal key itself.
pub fn derived_key(
    ports: &crate::storage::Ports,
    data_dir: &Path,
    purpose: &str,
) -> anyhow::Result<Vec<u8>> {
    let seal = match &ports.kept {
        crate::storage::Kept::Embedded(_) => seal_key(data_dir)?,
        crate::storage::Kept::Postgres(db) => shared_seal_key(db)?,
    };
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &seal);
    Ok(ring::hmac::sign(&key, purpose.as_bytes()).as_ref().to_vec())
}

/// The name of the seal key among the database's settings.
pub const SEAL_SETTING: &str = "event-seal-key";

/// The seal key every node on the database shares: made by the first node to ask (or brought
/// in by `gateway migrate` from the pilot's file).
fn shared_seal_key(db: &store::postgres::Pg) -> anyhow::Result<Vec<u8>> {
    let key = db.setting(SEAL_SETTING, new_key()?)?;
    if key.len() != SEAL_BYTES {
        anyhow::bail!(
            "the database's {SEAL_SETTING} holds {} bytes where a key of {SEAL_BYTES} is expected: restore it from the database's backup",
            key.len()
        );
    }
    Ok(key)
}

fn new_key() -> anyhow::Result<Vec<u8>> {
    let mut key = vec![0u8; SEAL_BYTES];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut key)
        .map_err(|_| anyhow::anyhow!("no randomness for the event seal key"))?;
    Ok(key)
}

/// The embedded folder's seal key file, made on first start.
pub fn seal_key(data_dir: &Path) -> anyhow::Result<Vec<u8>> {
    let path = data_dir.join(SEAL_FILE);
    match std::fs::read(&path) {
        Ok(key) if key.len() == SEAL_BYTES => Ok(key),
        Ok(key) => anyhow::bail!(
            "{} holds {} bytes where a key of {SEAL_BYTES} is expected: restore it from the backup this data folder came from",
            path.display(),
            key.len()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = new_key()?;
            daemon::private::write_file(&path, &key)
                .with_context(|| format!("cannot write {}", path.display()))?;
            Ok(key)
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// What the gateway does on its own on a clinic's events stream: a stored submission is
/// answered with `delivered`. At each connection it also answers any submission stored
/// before a crash cut it off from its answer (a replayed event is a duplicate and triggers
/// nothing).
fn on_clinic_event(site: &Site, trigger: Trigger<'_>) -> Result<(), String> {
    let clinic = match trigger {
        Trigger::Applied(e) if e.kind == EventKind::Submitted => &e.id.clinic,
        Trigger::Applied(_) | Trigger::Reoffer(_) => return Ok(()),
        Trigger::Connected(clinic) => clinic,
    };
    deliver_pending(site, clinic);
    Ok(())
}

/// Appends `delivered` to every consultation of `clinic` still waiting for it.
fn deliver_pending(site: &Site, clinic: &ClinicId) {
    let waiting = match site.log.list(clinic) {
        Ok(all) => all.into_iter().filter(|c| c.state == State::Submitted),
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
