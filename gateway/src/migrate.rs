//! `gateway migrate --to CONFIG`: copies a stopped gateway's embedded data folder into the
//! PostgreSQL that CONFIG's `[storage] index` names, so a pilot grows into the city deployment
//! without a clinic resending anything. Everything goes through the ports: the archive index
//! (with the forwarding inbox, each destination's queue and counts), the consultation events
//! and their projections, the accounts and script tokens, the audit log (its records as they
//! are, so the chain goes on), the link board, the drafts and the alerts' acknowledgements. When CONFIG names a bucket
//! (`[storage] objects`), every object file goes there too, hashed on the way: one whose bytes
//! do not hash to its name stops the migration. Without one, the objects stay where they are:
//! the new deployment's `data_dir` must be (or hold a copy of) the same objects folder.
//!
//! Every step writes what is not there yet and leaves what is, so a migration cut off part way
//! is run again to finish; at the end, what was copied is counted on both sides and must agree.

use std::sync::Arc;

use anyhow::{bail, Context};
use proto::consult::Side;
use store::archive::{ArchiveIndex, Verified};
use store::postgres as pg;

use crate::config::GatewayConfig;

/// What a migration copied, as counted on the new side.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Migrated {
    pub clinics: usize,
    pub instances: usize,
    pub events: usize,
    pub consultations: usize,
    pub accounts: usize,
    pub audit_records: u64,
    pub queued: usize,
    /// Objects in the bucket afterwards (those already there included); 0 without a bucket.
    pub objects: usize,
}

/// Copies the embedded folder of `from` into `to`'s PostgreSQL.
pub fn migrate(from: &GatewayConfig, to: &GatewayConfig) -> anyhow::Result<Migrated> {
    let Some(url) = &to.storage.index else {
        bail!("the target configuration has no [storage] index: name the PostgreSQL database to migrate into");
    };
    if from.storage.index.is_some() {
        bail!("the source configuration already keeps its index in PostgreSQL; migrate from the embedded one");
    }
    let embedded = crate::storage::Embedded::open(&from.data_dir).with_context(|| {
        format!(
            "cannot open the embedded data folder {} (is the gateway stopped?)",
            from.data_dir.display()
        )
    })?;
    let db = pg::Pg::connect(url, &to.storage.schema, 2)?;
    let mut out = Migrated::default();

    // The key that seals the gateway's own events goes first: the events copied below were
    // sealed with it, and every node of the new deployment verifies with it.
    let key = crate::consult::seal_key(&from.data_dir)?;
    if db.setting(crate::consult::SEAL_SETTING, key.clone())? != key {
        bail!("the database already holds another deployment's event seal key: migrate into an empty schema");
    }

    // The archive index, clinic by clinic: a claim already there is left as it is.
    let index = pg::archive::PgIndex::new(db.clone());
    for clinic in embedded.index.clinics()? {
        let instances = embedded.index.instances(&clinic)?;
        out.instances += instances.len();
        for chunk in instances.chunks(500) {
            let batch: Vec<Verified> = chunk
                .iter()
                .map(|(key, record)| Verified {
                    clinic: clinic.clone(),
                    key: key.clone(),
                    record: record.clone(),
                    forward: None,
                })
                .collect();
            index.commit_verified(&batch)?;
        }
        out.clinics += 1;
    }
    index.import_inbox(&embedded.index.forward_inbox()?)?;
    {
        use store::archive::forwarding::ForwardQueues;
        for d in &from.forwards {
            let queued: Vec<_> = embedded
                .index
                .queued(&d.name, usize::MAX, &|_| false)?
                .into_iter()
                .filter_map(|(id, q)| q.ok().map(|q| (id, q)))
                .collect();
            out.queued += queued.len();
            index.import_queue(&d.name, &queued)?;
            // Counts are added once: a run again finds them there.
            if index.counts(&d.name)? == Default::default() {
                let c = embedded.index.counts(&d.name)?;
                index.count(&d.name, c.sent, c.failures)?;
            }
        }
    }

    // The consultations: every event, then each consultation's projection.
    {
        use store::events::EventStore;
        let source = store::events::sled::SledEvents::open(&embedded.db, embedded.gate.clone())?;
        let target = pg::events::PgEvents::new(db.clone());
        for clinic in source.clinics()? {
            for side in [Side::Clinic, Side::Gateway] {
                for event in source.events_after(&clinic, side, 0, usize::MAX)? {
                    target.store(&event, None)?;
                    out.events += 1;
                }
            }
        }
        for projection in source.projections(None)? {
            let (clinic_side, gateway_side) = source.events_of(&projection.id)?;
            if let Some(last) = gateway_side.last().or(clinic_side.last()) {
                target.store(last, Some(&projection))?;
                out.consultations += 1;
            }
        }
    }

    // The accounts and script tokens (sessions end: people log in again).
    {
        use store::accounts::AccountStore;
        let accounts_file = from.data_dir.join(crate::ACCOUNTS_FILE);
        if accounts_file.exists() {
            let source = store::accounts::file::FileAccounts::open(&accounts_file)?;
            let target = pg::accounts::PgAccounts::new(db.clone());
            for account in source.accounts()? {
                target.put_account(account, true)?;
                out.accounts += 1;
            }
            let now = daemon::now_ms() / 1000;
            for (key, grant) in source.grants()? {
                if !grant.expired(now) {
                    target.grant(&key, grant, now)?;
                }
            }
        }
    }

    // The audit log, record for record: the chain goes on from its last hash.
    {
        use store::audit::AuditLog;
        let source = crate::audit::Audit::open_anchored(
            &from.data_dir.join(crate::AUDIT_FILE),
            crate::audit::anchor_tree(&embedded.db)?,
        )?;
        let records = source.records()?;
        let target = pg::audit::PgAudit::new(db.clone());
        target.import(&records)?;
        let (theirs, ours) = (source.verify()?, target.verify()?);
        if theirs != ours {
            bail!(
                "the audit log in PostgreSQL ({} records) does not end where the file's does ({} records): it holds records the file does not; migrate into an empty schema",
                ours.0,
                theirs.0
            );
        }
        out.audit_records = ours.0;
    }

    // The link board, the drafts and the alerts' ledger.
    {
        use store::alerts::AlertStore;
        use store::board::BoardStore;
        use store::drafts::DraftStore;
        let board = pg::board::PgBoard::new(db.clone());
        for (clinic, facts) in embedded.board.clinics()? {
            board.keep(&clinic, &facts)?;
            for sample in embedded.board.history(&clinic, 0)? {
                board.sample(&clinic, &sample)?;
            }
        }
        let drafts = pg::drafts::PgDrafts::new(db.clone());
        for (key, draft) in embedded.drafts.all()? {
            drafts.put(&key, &draft)?;
        }
        let alerts = pg::alerts::PgAlerts::new(db.clone());
        for (key, seen) in embedded.alerts.all()? {
            alerts.raise(&key, seen.first_ms)?;
            if let Some(ack) = &seen.ack {
                alerts.acknowledge(&key, ack)?;
            }
        }
    }

    if let Some(bucket) = &to.storage.objects {
        let target = crate::storage::open_bucket(bucket, &to.data_dir)?;
        out.objects = copy_objects(&embedded.objects, &target)?;
    }

    check(&embedded.index, &index, &out)?;
    Ok(out)
}

/// Copies every object file of the folder into the bucket (one already there is left; the same
/// name is the same bytes), checking each one's bytes against its name on the way and its size
/// in the bucket after. Returns how many the bucket holds.
fn copy_objects(
    source: &store::objects::files::FileObjects,
    target: &dyn store::objects::ObjectStore,
) -> anyhow::Result<usize> {
    use store::objects::ObjectStore;
    let root = source.blobs().root().join("objects");
    let mut copied = 0;
    for shard in std::fs::read_dir(&root)
        .with_context(|| format!("cannot list {}", root.display()))?
        .flatten()
    {
        for entry in std::fs::read_dir(shard.path())?.flatten() {
            let Some(id) = proto::sync::ObjectId::parse(&entry.file_name().to_string_lossy())
            else {
                continue;
            };
            if !target.contains(&id)? {
                let path = entry.path();
                let mut file = std::fs::File::open(&path)
                    .with_context(|| format!("cannot open {}", path.display()))?;
                let stored = target.put(&mut file)?;
                if stored != id {
                    bail!(
                        "{} hashes to {stored}, not to its name: the folder is damaged there; restore that file from a backup and run the migration again",
                        path.display()
                    );
                }
            }
            let size = source.size(&id)?;
            if target.size(&id)? != size {
                bail!("object {id} has another size in the bucket than in the folder; remove it from the bucket and run the migration again");
            }
            copied += 1;
        }
    }
    Ok(copied)
}

/// The instances each clinic holds agree on both sides.
fn check(
    source: &Arc<store::archive::sled::SledIndex>,
    target: &pg::archive::PgIndex,
    out: &Migrated,
) -> anyhow::Result<()> {
    let mut counted = 0;
    for clinic in source.clinics()? {
        let (theirs, ours) = (source.instances(&clinic)?, target.instances(&clinic)?);
        if theirs.len() > ours.len() {
            bail!(
                "clinic {clinic}: {} instances in the folder, {} in PostgreSQL after the copy; run the migration again",
                theirs.len(),
                ours.len()
            );
        }
        counted += theirs.len();
    }
    if counted != out.instances {
        bail!(
            "{counted} instances counted where {} were copied",
            out.instances
        );
    }
    Ok(())
}
