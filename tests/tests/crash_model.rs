//! The crash model: the gateway's archive service, on the in-memory storage adapters of a
//! machine that loses power at a seeded step, receives objects from two clinics in resumable
//! chunks (uploads cut off, resumed, finished, interleaved) through several crashes. After
//! every crash the new boot is checked against what the clinics were told:
//! - every receipted object is held by its clinic, with its exact bytes;
//! - every index entry names an object the store holds (nothing dangling);
//! - every receipted DICOM instance has exactly one forwarding inbox entry, and every inbox
//!   entry belongs to an object its clinic holds;
//! - an offset the gateway resumes from is never past bytes it holds: no upload of correct
//!   bytes ever ends in a mismatch.
//!
//! `TPG_CRASH_SEEDS=100000 cargo test -p tpg-tests --release --test crash_model` runs more.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use gateway::archive::{Begin, Finished, GatewayArchive};
use proto::rng::Rng;
use proto::sync::ObjectId;
use proto::ClinicId;
use sha2::Digest;
use store::archive::memory::MemoryIndex;
use store::archive::ArchiveIndex;
use store::crash::Machine;
use store::objects::memory::MemoryObjects;
use store::objects::ObjectStore;

/// Bytes between commits (the link commits every 256 KiB; small here, so that an object has
/// several).
const CHUNK: u64 = 256;

struct Object {
    clinic: ClinicId,
    id: ObjectId,
    bytes: Vec<u8>,
    dicom: bool,
}

/// Two clinics: small CT instances (forwarded), other files (kept, not forwarded), and one
/// instance both clinics send.
fn workload() -> Vec<Object> {
    let dir = tempfile::tempdir().unwrap();
    let study = harness::samples::write_ct_series(dir.path(), "P-1", 4, 600, 11).unwrap();
    let dicom: Vec<Vec<u8>> = study
        .files
        .iter()
        .map(|f| std::fs::read(f).unwrap())
        .collect();
    let (jz, pl) = (
        ClinicId::new("jinzhou").unwrap(),
        ClinicId::new("pulandian").unwrap(),
    );
    let id = |b: &[u8]| ObjectId::from_digest(&sha2::Sha256::digest(b).into());
    let mut out = Vec::new();
    for (n, bytes) in dicom.into_iter().enumerate() {
        let clinics = match n {
            0 | 1 => vec![jz.clone()],
            2 => vec![pl.clone()],
            _ => vec![jz.clone(), pl.clone()],
        };
        for clinic in clinics {
            out.push(Object {
                clinic,
                id: id(&bytes),
                bytes: bytes.clone(),
                dicom: true,
            });
        }
    }
    for (clinic, size) in [(&jz, 700usize), (&pl, 1300)] {
        let bytes: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
        out.push(Object {
            clinic: clinic.clone(),
            id: id(&bytes),
            bytes,
            dicom: false,
        });
    }
    out
}

/// One boot of the gateway's storage and archive.
struct Boot {
    objects: MemoryObjects,
    index: MemoryIndex,
    archive: Arc<GatewayArchive>,
}

impl Boot {
    fn new(objects: MemoryObjects, index: MemoryIndex) -> Self {
        let archive = GatewayArchive::new(Arc::new(objects.clone()), Arc::new(index.clone()))
            .with_forwarding(true);
        Self {
            objects,
            index,
            archive: Arc::new(archive),
        }
    }

    fn after_crash(&self) -> Self {
        Self::new(self.objects.boot(), self.index.boot())
    }
}

enum Stop {
    /// The power went.
    Crash,
    /// The model was broken, or the store failed otherwise.
    Broken(String),
}

type Receipts = BTreeSet<(ClinicId, ObjectId)>;

/// One attempt at sending `o`, as the clinic's uploader would: offer, resume at the offset
/// answered, send pieces, commit at chunk ends; it may give up part-way (a dropped link).
fn attempt(
    boot: &Boot,
    machine: &Machine,
    o: &Object,
    rng: &mut Rng,
    receipts: &mut Receipts,
) -> Result<(), Stop> {
    let fail = |e: gateway::archive::ArchiveError| {
        if machine.is_down() {
            Stop::Crash
        } else {
            Stop::Broken(e.to_string())
        }
    };
    let size = o.bytes.len() as u64;
    let Some(_claim) = boot.archive.claim_upload(&o.clinic, &o.id) else {
        return Err(Stop::Broken("the upload is claimed by nobody else".into()));
    };
    let (mut at, mut receiving) = match boot
        .archive
        .begin(&o.clinic, &o.id, size, None)
        .map_err(fail)?
    {
        Begin::Stored => {
            receipts.insert((o.clinic.clone(), o.id.clone()));
            return Ok(());
        }
        Begin::Resume { offset, partial } => (offset, partial),
    };
    if at > size {
        return Err(Stop::Broken(format!("resumed at {at} of {size}")));
    }
    loop {
        let boundary = ((at / CHUNK) + 1) * CHUNK;
        let end = boundary.min(size).min(at + 1 + rng.next_u64() % CHUNK);
        let commit = (end == boundary || end == size).then_some(end);
        let piece = &o.bytes[at as usize..end as usize];
        let finished = boot
            .archive
            .receive(&o.clinic, &o.id, size, &mut receiving, piece, commit)
            .map_err(fail)?;
        at = end;
        match finished {
            Some(Finished::Stored) => {
                receipts.insert((o.clinic.clone(), o.id.clone()));
                return Ok(());
            }
            Some(Finished::Mismatch) => {
                return Err(Stop::Broken(format!(
                    "{}: correct bytes ended in a mismatch: the gateway resumed past bytes it did not hold",
                    o.id
                )))
            }
            None if at == size => return Err(Stop::Broken("complete but not finished".into())),
            // The link drops now and then: the next attempt resumes.
            None if rng.next_u64() % 10 == 0 => return Ok(()),
            None => {}
        }
    }
}

/// What the clinics were told still holds.
fn check(boot: &Boot, work: &[Object], receipts: &Receipts) -> Result<(), String> {
    for o in work {
        if !receipts.contains(&(o.clinic.clone(), o.id.clone())) {
            continue;
        }
        if !boot
            .archive
            .has(&o.clinic, &o.id)
            .map_err(|e| e.to_string())?
        {
            return Err(format!("{} lost a receipted object {}", o.clinic, o.id));
        }
        let held = boot
            .archive
            .object_bytes(&o.id)
            .map_err(|e| e.to_string())?;
        if held != o.bytes {
            return Err(format!("receipted object {} has other bytes", o.id));
        }
    }
    for clinic in work.iter().map(|o| &o.clinic).collect::<BTreeSet<_>>() {
        for (_, record) in boot.archive.instances(clinic) {
            if !boot
                .objects
                .contains(&record.object)
                .map_err(|e| e.to_string())?
            {
                return Err(format!("the index names {} the store lacks", record.object));
            }
        }
    }
    let mut inbox: BTreeMap<(ClinicId, ObjectId), usize> = BTreeMap::new();
    for (_, entry) in boot.index.forward_inbox().map_err(|e| e.to_string())? {
        let held = boot
            .archive
            .has(&entry.clinic, &entry.object)
            .map_err(|e| e.to_string())?;
        if !held {
            return Err(format!("an inbox entry for {} nobody holds", entry.object));
        }
        *inbox.entry((entry.clinic, entry.object)).or_default() += 1;
    }
    for o in work.iter().filter(|o| o.dicom) {
        let key = (o.clinic.clone(), o.id.clone());
        let n = inbox.get(&key).copied().unwrap_or(0);
        if receipts.contains(&key) && n != 1 {
            return Err(format!("{} {} is in the inbox {n} times", o.clinic, o.id));
        }
    }
    if let Some(((_, id), n)) = inbox.iter().find(|(_, n)| **n > 1) {
        return Err(format!("{id} is in the inbox {n} times"));
    }
    Ok(())
}

/// Runs one seed to the end; returns the crashes it went through.
fn run(seed: u64, work: &[Object]) -> Result<u64, String> {
    let machine = Machine::new(seed);
    let mut rng = Rng::new(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut boot = Boot::new(MemoryObjects::new(&machine), MemoryIndex::new(&machine));
    machine.crash_after(1 + rng.next_u64() % 160);
    let mut receipts = Receipts::new();
    let mut crashes = 0;
    for _ in 0..10_000 {
        let pending: Vec<&Object> = work
            .iter()
            .filter(|o| !receipts.contains(&(o.clinic.clone(), o.id.clone())))
            .collect();
        if pending.is_empty() {
            machine.disarm();
            check(&boot, work, &receipts)?;
            return Ok(crashes);
        }
        let o = pending[(rng.next_u64() % pending.len() as u64) as usize];
        match attempt(&boot, &machine, o, &mut rng, &mut receipts) {
            Ok(()) => {}
            Err(Stop::Broken(why)) => return Err(why),
            Err(Stop::Crash) => {
                crashes += 1;
                machine.power_on();
                boot = boot.after_crash();
                check(&boot, work, &receipts).map_err(|e| format!("after crash {crashes}: {e}"))?;
                if crashes < 4 && rng.next_u64() % 3 != 0 {
                    machine.crash_after(1 + rng.next_u64() % 160);
                }
            }
        }
    }
    Err("no progress after 10,000 attempts".into())
}

#[test]
fn nothing_receipted_is_lost_or_forwarded_twice_through_crashes_at_seeded_points() {
    let seeds: u64 = std::env::var("TPG_CRASH_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(6_000);
    let work = workload();
    let started = std::time::Instant::now();
    let mut crashes = 0;
    for seed in 0..seeds {
        crashes += run(seed, &work).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    }
    println!(
        "crash model: {seeds} seeds, {crashes} crash points, {} objects each, {:.1} s",
        work.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        crashes >= seeds.min(10_000) * 2,
        "only {crashes} crashes in {seeds} seeds"
    );
}
