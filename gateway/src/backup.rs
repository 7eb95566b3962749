//! Online backup and offline restore of the gateway's data folder.
//!
//! A backup is a folder: `index.export` (every sled tree but the partial uploads, in a
//! length-prefixed format of our own), `objects/` (the verified files, hard-linked when the
//! backup is on the same file system: they never change), `accounts.json`, `audit.log` and
//! `backup.json` (what it holds). It is taken while the gateway runs:
//!
//! - The index is exported first, then the files are copied. A file is placed before its index
//!   entry is written, so every entry of the export finds its file; files that arrive later
//!   are extra and harmless.
//! - The index is exported as one consistent cut: writers that change several trees at once
//!   (an event and its indexes, a verified instance and its forwarding entry, an entry moving
//!   from the inbox to its queues) hold the index's write gate, and the export holds it alone.
//!   Writes wait for the export (seconds), never the other way round.
//! - What happened after the backup is not lost by a restore: the restored gateway appends
//!   nothing for a clinic until that clinic's link is back, takes back from it the gateway's
//!   own events the backup lacked (sealed, so a clinic cannot forge them), and has it offer
//!   every object again (`docs/protocol.md`, "After a restore").
//! - Partial uploads are left out (their files are not copied); agents send those objects
//!   again from the start.
//!
//! Restore writes a backup into an empty data folder, with the gateway stopped.

use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

pub const EXPORT_FILE: &str = "index.export";
pub const MANIFEST_FILE: &str = "backup.json";
const MAGIC: &[u8] = b"TPG-INDEX-EXPORT 1\n";
/// Trees not kept: partial uploads, whose files are not copied.
const SKIPPED_TREES: &[&[u8]] = &[b"partials"];
/// Files of the data folder copied as they are.
const FILES: &[&str] = &[
    crate::ACCOUNTS_FILE,
    crate::AUDIT_FILE,
    crate::consult::SEAL_FILE,
];
/// The export while it is written, in the data folder (never copied into a backup).
const STAGED_EXPORT: &str = "backup-export.staged";
/// Ends a tree's entries in the export.
const END_OF_TREE: u32 = u32::MAX;

/// What a backup holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub created_at_ms: i64,
    pub gateway_version: String,
    pub trees: u64,
    pub entries: u64,
    pub objects: u64,
    pub object_bytes: u64,
    /// The audit log copied: its records and its last record's hash (the restored gateway's
    /// anchor).
    #[serde(default)]
    pub audit_records: u64,
    #[serde(default)]
    pub audit_last_hash: String,
}

fn write_chunk(out: &mut impl Write, bytes: &[u8]) -> std::io::Result<()> {
    out.write_all(&(bytes.len() as u32).to_le_bytes())?;
    out.write_all(bytes)
}

fn read_u32(input: &mut impl Read) -> std::io::Result<u32> {
    let mut b = [0u8; 4];
    input.read_exact(&mut b)?;
    Ok(u32::from_le_bytes(b))
}

fn read_chunk(input: &mut impl Read, len: u32) -> anyhow::Result<Vec<u8>> {
    anyhow::ensure!(
        len < 1 << 30,
        "a record of {len} bytes: the export is damaged"
    );
    let mut v = vec![0u8; len as usize];
    input.read_exact(&mut v)?;
    Ok(v)
}

fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    store::blob::sync_dir(dir).map_err(anyhow::Error::from)
}

/// Copies (or hard-links) every file under `from` into `to`, keeping the layout; returns
/// (files, bytes).
fn copy_tree(from: &Path, to: &Path) -> anyhow::Result<(u64, u64)> {
    let (mut files, mut bytes) = (0, 0);
    if !from.exists() {
        return Ok((0, 0));
    }
    fs::create_dir_all(to).with_context(|| format!("cannot create {}", to.display()))?;
    for entry in fs::read_dir(from).with_context(|| format!("cannot read {}", from.display()))? {
        let entry = entry?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        if entry.file_type()?.is_dir() {
            let (f, b) = copy_tree(&src, &dst)?;
            files += f;
            bytes += b;
        } else {
            if fs::hard_link(&src, &dst).is_err() {
                fs::copy(&src, &dst).with_context(|| {
                    format!("cannot copy {} to {}", src.display(), dst.display())
                })?;
                File::open(&dst)?.sync_all()?;
            }
            files += 1;
            bytes += entry.metadata()?.len();
        }
    }
    sync_dir(to)?;
    Ok((files, bytes))
}

fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    daemon::private::write_file(path, bytes)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Writes a consistent backup of the running gateway's data (`db` is its open index, `gate`
/// its write gate) into the new folder `to`, readable by the gateway's user only.
pub fn backup(
    db: &sled::Db,
    gate: &store::gate::WriteGate,
    data_dir: &Path,
    to: &Path,
) -> anyhow::Result<Manifest> {
    if to.exists()
        && fs::read_dir(to)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        bail!("{} is not empty; back up into a new folder", to.display());
    }
    let data = data_dir
        .canonicalize()
        .unwrap_or_else(|_| data_dir.to_path_buf());
    daemon::private::create_dir(to).with_context(|| format!("cannot create {}", to.display()))?;
    if to.canonicalize()?.starts_with(&data) {
        let _ = fs::remove_dir(to);
        bail!(
            "{} is inside the data folder; back up somewhere else",
            to.display()
        );
    }
    // The index first: every entry exported names a file already in place.
    db.flush()?;
    let (mut trees, mut entries) = (0u64, 0u64);
    let export = to.join(EXPORT_FILE);
    let tmp = export.with_extension("tmp");
    // Written first on the data folder's own disk, where writing is fast: writers wait for
    // this export only, never for a slow backup disk.
    let staged = data_dir.join(STAGED_EXPORT);
    {
        let _ = fs::remove_file(&staged);
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut out = BufWriter::new(
            options
                .open(&staged)
                .with_context(|| format!("cannot write {}", staged.display()))?,
        );
        out.write_all(MAGIC)?;
        let frozen = gate.freeze();
        for (kind, name, items) in db.export() {
            if SKIPPED_TREES.contains(&name.as_slice()) {
                continue;
            }
            write_chunk(&mut out, &kind)?;
            write_chunk(&mut out, &name)?;
            for item in items {
                out.write_all(&(item.len() as u32).to_le_bytes())?;
                for part in &item {
                    write_chunk(&mut out, part)?;
                }
                entries += 1;
            }
            out.write_all(&END_OF_TREE.to_le_bytes())?;
            trees += 1;
        }
        out.flush()?;
        drop(frozen);
    }
    let copied = fs::rename(&staged, &tmp).or_else(|_| {
        fs::copy(&staged, &tmp)?;
        fs::remove_file(&staged)
    });
    copied.with_context(|| format!("cannot write {}", tmp.display()))?;
    File::open(&tmp)?.sync_all()?;
    fs::rename(&tmp, &export)?;
    for name in FILES {
        let src = data_dir.join(name);
        if src.exists() {
            let mut bytes =
                fs::read(&src).with_context(|| format!("cannot read {}", src.display()))?;
            if *name == crate::AUDIT_FILE {
                // The log only grows, a record a line: up to its last complete line, the copy
                // is a valid prefix of its chain even while a record is being appended.
                let end = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
                bytes.truncate(end);
            }
            write_atomically(&to.join(name), &bytes)?;
        }
    }
    let (audit_records, audit_last_hash) =
        crate::audit::verify(&to.join(crate::AUDIT_FILE)).context("the audit log copied")?;
    let (objects, object_bytes) = copy_tree(&data_dir.join("objects"), &to.join("objects"))?;
    let manifest = Manifest {
        audit_records,
        audit_last_hash,
        created_at_ms: daemon::now_ms(),
        gateway_version: env!("CARGO_PKG_VERSION").to_owned(),
        trees,
        entries,
        objects,
        object_bytes,
    };
    write_atomically(
        &to.join(MANIFEST_FILE),
        &serde_json::to_vec_pretty(&manifest)?,
    )?;
    sync_dir(to)?;
    Ok(manifest)
}

type Collection = (Vec<u8>, Vec<u8>, Vec<Vec<Vec<u8>>>);

fn read_export(path: &Path) -> anyhow::Result<Vec<Collection>> {
    let mut input = BufReader::new(
        File::open(path).with_context(|| format!("cannot read {}", path.display()))?,
    );
    let mut magic = vec![0u8; MAGIC.len()];
    input.read_exact(&mut magic)?;
    anyhow::ensure!(
        magic == MAGIC,
        "{} is not a gateway index export",
        path.display()
    );
    let mut out = Vec::new();
    loop {
        let len = match read_u32(&mut input) {
            Ok(len) => len,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(out),
            Err(e) => return Err(e.into()),
        };
        let kind = read_chunk(&mut input, len)?;
        anyhow::ensure!(
            kind == b"tree",
            "a collection of unknown kind: the export is damaged"
        );
        let len = read_u32(&mut input)?;
        let name = read_chunk(&mut input, len)?;
        let mut items = Vec::new();
        loop {
            let parts = read_u32(&mut input)?;
            if parts == END_OF_TREE {
                break;
            }
            anyhow::ensure!(
                parts <= 16,
                "an entry of {parts} parts: the export is damaged"
            );
            let mut item = Vec::with_capacity(parts as usize);
            for _ in 0..parts {
                let len = read_u32(&mut input)?;
                item.push(read_chunk(&mut input, len)?);
            }
            items.push(item);
        }
        out.push((kind, name, items));
    }
}

/// Restores the backup in `from` into `data_dir`, which must hold no gateway data yet.
pub fn restore(from: &Path, data_dir: &Path) -> anyhow::Result<Manifest> {
    let manifest: Manifest =
        serde_json::from_slice(&fs::read(from.join(MANIFEST_FILE)).with_context(|| {
            format!(
                "{} is not a gateway backup (no {MANIFEST_FILE})",
                from.display()
            )
        })?)?;
    let index = data_dir.join("index");
    if index.exists() || data_dir.join("objects").exists() {
        bail!(
            "{} already holds gateway data; restore into an empty data_dir (stop the gateway and move the old folder aside)",
            data_dir.display()
        );
    }
    let collections = read_export(&from.join(EXPORT_FILE))?;
    let entries: u64 = collections.iter().map(|c| c.2.len() as u64).sum();
    if collections.len() as u64 != manifest.trees || entries != manifest.entries {
        bail!(
            "{} holds {} trees and {entries} entries where {MANIFEST_FILE} says {} and {}: the backup is incomplete",
            from.join(EXPORT_FILE).display(),
            collections.len(),
            manifest.trees,
            manifest.entries
        );
    }
    anyhow::ensure!(
        from.join(crate::consult::SEAL_FILE).exists(),
        "{} holds no {}: without the key that sealed its events the restored gateway cannot take them back from the clinics; restore a backup taken whole",
        from.display(),
        crate::consult::SEAL_FILE
    );
    daemon::private::create_dir(data_dir)
        .with_context(|| format!("cannot create {}", data_dir.display()))?;
    let db = sled::open(&index).with_context(|| format!("cannot create {}", index.display()))?;
    db.import(
        collections
            .into_iter()
            .map(|(kind, name, items)| (kind, name, items.into_iter()))
            .collect::<Vec<_>>(),
    );
    // Every clinic is awaited until its link is back: it may hold what the backup lacks.
    store::consult::ConsultLog::open(&db)?.mark_restored()?;
    // The audit log restored is the one the manifest names: it becomes the anchor.
    let anchor = (manifest.audit_records > 0).then(|| crate::audit::Anchor {
        seq: manifest.audit_records - 1,
        hash: manifest.audit_last_hash.clone(),
    });
    let anchor_tree = crate::audit::anchor_tree(&db)?;
    anchor_tree.clear()?;
    if let Some(a) = &anchor {
        crate::audit::set_anchor(&anchor_tree, a)?;
    }
    db.flush()?;
    drop(db);
    for name in FILES {
        let src = from.join(name);
        if src.exists() {
            write_atomically(&data_dir.join(name), &fs::read(&src)?)?;
        }
    }
    let (records, _) =
        crate::audit::verify_against(&data_dir.join(crate::AUDIT_FILE), anchor.as_ref())
            .context("the backup's audit log does not match its manifest")?;
    anyhow::ensure!(
        records == manifest.audit_records,
        "the backup's audit log holds {records} records where its manifest says {}: the backup was altered",
        manifest.audit_records
    );
    copy_tree(&from.join("objects"), &data_dir.join("objects"))?;
    sync_dir(data_dir)?;
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    use proto::consult::{ConsultationId, EventKind, Patient, Side, Urgency};
    use proto::ClinicId;
    use store::consult::ConsultLog;
    use store::gate::WriteGate;

    use super::*;

    fn created(n: u64) -> EventKind {
        EventKind::Created {
            patient: Patient {
                id: format!("P-{n}"),
                name: String::new(),
                sex: String::new(),
                birth_date: String::new(),
            },
            clinical_summary: String::new(),
            question: "?".into(),
            specialty: "radiology".into(),
            urgency: Urgency::Routine,
            number: None,
        }
    }

    fn tree<'a>(collections: &'a [Collection], name: &str) -> &'a [Vec<Vec<u8>>] {
        collections
            .iter()
            .find(|c| c.1 == name.as_bytes())
            .map_or(&[], |c| c.2.as_slice())
    }

    /// Backups taken while consultations are being written each hold every event with its
    /// indexes: the export is one cut, not tree after tree.
    #[test]
    fn a_backup_taken_during_writes_is_one_consistent_cut() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let db = sled::open(data.join("index")).unwrap();
        let gate = WriteGate::default();
        let log = Arc::new(ConsultLog::open_gated(&db, gate.clone()).unwrap());
        let jz = ClinicId::new("jinzhou").unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let writer = std::thread::spawn({
            let (log, stop, jz) = (log.clone(), stop.clone(), jz.clone());
            move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) || n < 2_000 {
                    n += 1;
                    let id = ConsultationId::new(1_790_000_000_000 + n, [1; 10]);
                    log.append(&jz, Side::Clinic, &id, "dr.wang", 1, created(n))
                        .unwrap();
                }
            }
        });
        for i in 0..8 {
            std::thread::sleep(std::time::Duration::from_millis(20));
            let to = dir.path().join(format!("backup-{i}"));
            backup(&db, &gate, &data, &to).unwrap();
            let collections = read_export(&to.join(EXPORT_FILE)).unwrap();
            let owners: BTreeSet<&[u8]> = tree(&collections, "consult_owners")
                .iter()
                .map(|kv| kv[0].as_slice())
                .collect();
            let indexed = tree(&collections, "consult_by_consultation").len();
            let events = tree(&collections, "consult_events").len();
            assert_eq!(events, indexed, "backup {i}: every event with its index");
            assert_eq!(
                events,
                owners.len(),
                "backup {i}: every case with its owner"
            );
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
                assert_eq!(mode(&to), 0o700, "a backup holds patient data");
                assert_eq!(mode(&to.join(EXPORT_FILE)), 0o600);
                assert_eq!(mode(&to.join(MANIFEST_FILE)), 0o600);
            }
        }
        stop.store(true, Ordering::Relaxed);
        writer.join().unwrap();
    }
}
