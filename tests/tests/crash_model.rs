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
//! Two more models run the same way: consultations between a clinic and the hospital, both
//! losing power (acknowledged events held, no gaps, stored states are their events' fold, the
//! timelines meet); and the clinic's own archive, ingesting a study and an attachment and
//! sending its outbox to the hospital through crashes at both (every object the clinic
//! acknowledged is held with its bytes and indexed, nothing indexed is missing, nothing is
//! marked delivered without a receipt, and everything reaches the hospital exactly once).
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

/// The seeds `TPG_CRASH_SEEDS` asks for, if it does.
fn seeds() -> Option<u64> {
    std::env::var("TPG_CRASH_SEEDS").ok()?.parse().ok()
}

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
    machine.crash_after(1 + rng.next_u64() % 150);
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
                    machine.crash_after(1 + rng.next_u64() % 150);
                }
            }
        }
    }
    Err("no progress after 10,000 attempts".into())
}

#[test]
fn nothing_receipted_is_lost_or_forwarded_twice_through_crashes_at_seeded_points() {
    let seeds = seeds().unwrap_or(6_000);
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

/// One site's consultation log on its own machine, booted again after each crash.
struct Site {
    side: proto::consult::Side,
    machine: Machine,
    events: store::events::memory::MemoryEvents,
    log: store::consult::ConsultLog,
    /// Events this site said it holds (appended or applied), by side and number.
    acknowledged: BTreeSet<(u8, u64)>,
}

fn side_no(side: proto::consult::Side) -> u8 {
    match side {
        proto::consult::Side::Clinic => 0,
        proto::consult::Side::Gateway => 1,
    }
}

impl Site {
    fn new(side: proto::consult::Side, seed: u64) -> Self {
        let machine = Machine::new(seed);
        let events = store::events::memory::MemoryEvents::new(&machine);
        Self {
            side,
            log: store::consult::ConsultLog::new(Arc::new(events.clone())),
            machine,
            events,
            acknowledged: BTreeSet::new(),
        }
    }

    /// After a power loss: powered on, booted, and checked.
    fn reboot(&mut self, clinic: &ClinicId) -> Result<(), String> {
        self.machine.power_on();
        self.events = self.events.boot();
        self.log = store::consult::ConsultLog::new(Arc::new(self.events.clone()));
        self.check(clinic)
    }

    /// Every acknowledged event is held, numbers have no gaps, and each consultation's stored
    /// state is the fold of its events.
    fn check(&self, clinic: &ClinicId) -> Result<(), String> {
        use proto::consult::Side;
        for side in [Side::Clinic, Side::Gateway] {
            let held = self
                .log
                .events_after(clinic, side, 0, usize::MAX)
                .map_err(|e| e.to_string())?;
            for (i, e) in held.iter().enumerate() {
                if e.id.seq != i as u64 + 1 {
                    return Err(format!("{side:?} events have a gap at {}", i + 1));
                }
            }
            let numbers: BTreeSet<u64> = held.iter().map(|e| e.id.seq).collect();
            for (s, seq) in &self.acknowledged {
                if *s == side_no(side) && !numbers.contains(seq) {
                    return Err(format!(
                        "{:?} lost acknowledged {side:?} event {seq}",
                        self.side
                    ));
                }
            }
        }
        for c in self.log.all().map_err(|e| e.to_string())? {
            let folded = self.log.get(&c.id).map_err(|e| e.to_string())?;
            if folded.map(|f| f.consultation) != Some(c) {
                return Err(format!(
                    "{:?}: a stored state is not its events' fold",
                    self.side
                ));
            }
        }
        Ok(())
    }
}

enum Step {
    Done,
    Crash,
}

/// One seeded run of `cases` consultations between a clinic and the hospital, each side
/// losing power now and then; returns the crashes.
fn consult_run(seed: u64, cases: u64) -> Result<u64, String> {
    use proto::consult::{ConsultationId, EventKind, Report, Side, State, Urgency};
    let jz = ClinicId::new("jinzhou").unwrap();
    let mut rng = Rng::new(seed ^ 0x5eed);
    let mut sites = [
        Site::new(Side::Clinic, seed),
        Site::new(Side::Gateway, !seed),
    ];
    for s in &sites {
        s.machine.crash_after(1 + rng.next_u64() % 120);
    }
    let ids: Vec<ConsultationId> = (0..cases)
        .map(|n| ConsultationId::new(1_790_000_000_000 + n, [n as u8 + 1; 10]))
        .collect();
    let mut crashes = 0;
    for _ in 0..20_000 {
        let done = ids.iter().all(|id| {
            sites
                .iter()
                .all(|s| matches!(s.log.state(id), Ok(Some(c)) if c.state == State::Acknowledged))
        });
        if done {
            for s in &sites {
                s.machine.disarm();
                s.check(&jz)?;
            }
            let same = ids
                .iter()
                .all(|id| sites[0].log.timeline(id).ok() == sites[1].log.timeline(id).ok());
            return if same {
                Ok(crashes)
            } else {
                Err("the two sites' timelines differ".into())
            };
        }
        let id = &ids[(rng.next_u64() % cases) as usize];
        let choice = rng.next_u64() % 4;
        let outcome: Result<Step, String> = (|| {
            let fail = |site: &Site, e: store::consult::ConsultError| {
                if site.machine.is_down() {
                    Ok(Step::Crash)
                } else {
                    Err(e.to_string())
                }
            };
            match choice {
                // The clinic's doctor: writes, consents, sends, acknowledges.
                0 => {
                    let site = &mut sites[0];
                    let state = match site.log.state(id) {
                        Ok(s) => s,
                        Err(e) => return fail(site, e),
                    };
                    let kind = match state.map(|c| (c.state, c.consent.is_some())) {
                        None => harness::people::request("P-1", "radiology", Urgency::Urgent, 1)[0]
                            .clone(),
                        Some((State::Draft, false)) => {
                            harness::people::request("P-1", "radiology", Urgency::Urgent, 1)[1]
                                .clone()
                        }
                        Some((State::Draft, true)) => EventKind::Submitted,
                        Some((State::Reported, _)) => EventKind::ReportAcknowledged,
                        _ => return Ok(Step::Done),
                    };
                    match site.log.append(&jz, Side::Clinic, id, "dr.wang", 2, kind) {
                        Ok(e) => {
                            site.acknowledged.insert((0, e.id.seq));
                            Ok(Step::Done)
                        }
                        Err(e) => fail(site, e),
                    }
                }
                // The hospital: delivered, assigned, accepted, reported.
                1 => {
                    let site = &mut sites[1];
                    let state = match site.log.state(id) {
                        Ok(s) => s,
                        Err(e) => return fail(site, e),
                    };
                    let (actor, kind) = match state.map(|c| c.state) {
                        Some(State::Submitted) => ("system", EventKind::Delivered),
                        Some(State::Delivered) => (
                            "system",
                            EventKind::Assigned {
                                specialist: "li".into(),
                                rule: "r".into(),
                                reason: "on duty".into(),
                            },
                        ),
                        Some(State::Assigned) => (
                            "li",
                            EventKind::Accepted {
                                specialist: "li".into(),
                            },
                        ),
                        Some(State::Accepted) => (
                            "li",
                            EventKind::Reported {
                                specialist: "li".into(),
                                report: Report {
                                    findings: "clear".into(),
                                    impression: "normal".into(),
                                    recommendation: "none".into(),
                                    signer_name: "Li".into(),
                                    signer_qualification: "radiologist".into(),
                                    signed_at_ms: 3,
                                    signed_before_complete: None,
                                },
                            },
                        ),
                        _ => return Ok(Step::Done),
                    };
                    match site.log.append(&jz, Side::Gateway, id, actor, 3, kind) {
                        Ok(e) => {
                            site.acknowledged.insert((1, e.id.seq));
                            Ok(Step::Done)
                        }
                        Err(e) => fail(site, e),
                    }
                }
                // The link: one side's events to the other, from the receiver's cursor.
                _ => {
                    let (from, to) = if choice == 2 { (0, 1) } else { (1, 0) };
                    let side = sites[from].side;
                    let after = match sites[to].log.cursor(&jz, side) {
                        Ok(c) => c,
                        Err(e) => return fail(&sites[to], e),
                    };
                    let batch = match sites[from].log.events_after(&jz, side, after, 4) {
                        Ok(b) => b,
                        Err(e) => return fail(&sites[from], e),
                    };
                    let receiver = &mut sites[to];
                    for e in batch {
                        match receiver.log.apply_replicated(&jz, receiver.side, &e) {
                            Ok(_) => {
                                receiver.acknowledged.insert((side_no(side), e.id.seq));
                            }
                            Err(err) => return fail(receiver, err),
                        }
                    }
                    Ok(Step::Done)
                }
            }
        })();
        match outcome? {
            Step::Done => {}
            Step::Crash => {
                for s in sites.iter_mut() {
                    if s.machine.is_down() {
                        crashes += 1;
                        s.reboot(&jz)
                            .map_err(|e| format!("after crash {crashes}: {e}"))?;
                        if crashes < 6 && rng.next_u64() % 2 == 0 {
                            s.machine.crash_after(1 + rng.next_u64() % 120);
                        }
                    }
                }
            }
        }
    }
    Err("no progress after 20,000 steps".into())
}

#[test]
fn acknowledged_consultation_events_survive_crashes_at_both_sites_and_the_timelines_meet() {
    let seeds = seeds().map_or(1_500, |n| n / 4);
    let started = std::time::Instant::now();
    let mut crashes = 0;
    for seed in 0..seeds {
        crashes += consult_run(seed, 3).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    }
    println!(
        "crash model, consultations: {seeds} seeds, {crashes} crash points, {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(crashes >= seeds, "only {crashes} crashes in {seeds} seeds");
}

/// The clinic's side of one seeded run: its archive on its own machine.
struct Clinic {
    machine: Machine,
    objects: MemoryObjects,
    outbox: store::outbox::memory::MemoryOutbox,
    store: clinic_agent::archive::AgentStore,
}

impl Clinic {
    fn new(machine: Machine, quarantine: &std::path::Path) -> Self {
        let objects = MemoryObjects::new(&machine);
        let outbox = store::outbox::memory::MemoryOutbox::new(&machine);
        Self::on(machine, objects, outbox, quarantine)
    }

    fn on(
        machine: Machine,
        objects: MemoryObjects,
        outbox: store::outbox::memory::MemoryOutbox,
        quarantine: &std::path::Path,
    ) -> Self {
        let store = clinic_agent::archive::AgentStore::new(
            Arc::new(objects.clone()),
            Arc::new(outbox.clone()),
            quarantine.to_path_buf(),
        );
        Self {
            machine,
            objects,
            outbox,
            store,
        }
    }

    fn after_crash(&self, quarantine: &std::path::Path) -> Self {
        self.machine.power_on();
        Self::on(
            self.machine.clone(),
            self.objects.boot(),
            self.outbox.boot(),
            quarantine,
        )
    }

    /// What the modality and the doctor were told still holds: every acknowledged object is
    /// held with its bytes and indexed; every index entry names a held object; no object is
    /// marked delivered that the hospital did not receipt; the upload order has no repeats.
    fn check(
        &self,
        acknowledged: &BTreeMap<ObjectId, Vec<u8>>,
        receipts: &Receipts,
        clinic: &ClinicId,
    ) -> Result<(), String> {
        use store::outbox::Outbox;
        for (id, bytes) in acknowledged {
            if self.outbox.object(id).map_err(|e| e.to_string())?.is_none() {
                return Err(format!("the clinic lost acknowledged object {id}"));
            }
            if self.store.bytes(id).map_err(|e| e.to_string())? != *bytes {
                return Err(format!("acknowledged object {id} has other bytes"));
            }
        }
        let mut seqs = BTreeSet::new();
        for (id, record) in self.outbox.objects().map_err(|e| e.to_string())? {
            if !self.objects.contains(&id).map_err(|e| e.to_string())? {
                return Err(format!("the clinic's index names {id} it does not hold"));
            }
            if record.delivered_at.is_some() && !receipts.contains(&(clinic.clone(), id.clone())) {
                return Err(format!("{id} is marked delivered without a receipt"));
            }
            if !seqs.insert(record.seq) {
                return Err(format!("upload number {} given twice", record.seq));
            }
        }
        Ok(())
    }
}

/// One seeded run: a clinic ingests a study and an attachment and sends its outbox to the
/// hospital, both machines losing power now and then; at the end everything the clinic
/// acknowledged is at the hospital once and the outbox is empty. Returns the crashes.
fn clinic_run(seed: u64, files: &[Vec<u8>], quarantine: &std::path::Path) -> Result<u64, String> {
    let jz = ClinicId::new("jinzhou").unwrap();
    let mut rng = Rng::new(seed ^ 0xc11c);
    let (at_clinic, at_hospital) = (Machine::new(seed), Machine::new(!seed));
    let mut clinic = Clinic::new(at_clinic.clone(), quarantine);
    let mut hospital = Boot::new(
        MemoryObjects::new(&at_hospital),
        MemoryIndex::new(&at_hospital),
    );
    at_clinic.crash_after(1 + rng.next_u64() % 40);
    at_hospital.crash_after(1 + rng.next_u64() % 120);
    let mut acknowledged: BTreeMap<ObjectId, Vec<u8>> = BTreeMap::new();
    let mut receipts = Receipts::new();
    let mut crashes = 0;
    for _ in 0..10_000 {
        let all_in = files.iter().all(|f| acknowledged.values().any(|b| b == f));
        // The outbox, read as the uploader does (a read may meet the power loss too).
        let queued: Result<Vec<ObjectId>, Stop> = {
            use store::outbox::Outbox;
            match clinic.outbox.objects() {
                Ok(all) => Ok(all
                    .into_iter()
                    .filter(|(_, r)| r.delivered_at.is_none())
                    .map(|(id, _)| id)
                    .collect()),
                Err(_) if at_clinic.is_down() => Err(Stop::Crash),
                Err(e) => return Err(e.to_string()),
            }
        };
        let empty = queued.as_ref().is_ok_and(|q| q.is_empty());
        if all_in && empty {
            at_clinic.disarm();
            at_hospital.disarm();
            clinic.check(&acknowledged, &receipts, &jz)?;
            let sent: Vec<Object> = acknowledged
                .iter()
                .map(|(id, bytes)| Object {
                    clinic: jz.clone(),
                    id: id.clone(),
                    bytes: bytes.clone(),
                    dicom: bytes.len() > 600,
                })
                .collect();
            check(&hospital, &sent, &receipts)?;
            return match sent
                .iter()
                .find(|o| !receipts.contains(&(jz.clone(), o.id.clone())))
            {
                Some(o) => Err(format!("{} never reached the hospital", o.id)),
                None => Ok(crashes),
            };
        }
        let ingest = !all_in && (rng.next_u64() % 2 == 0 || empty);
        let outcome: Result<(), Stop> = if let Err(crash) = queued {
            Err(crash)
        } else if ingest {
            // The next file, or one acknowledged already (a modality sending again).
            let bytes = &files[(rng.next_u64() % files.len() as u64) as usize];
            let attachment = bytes.len() <= 600;
            let stored = if attachment {
                clinic
                    .store
                    .store_attachment(bytes, proto::sync::Priority::Routine, false)
                    .map(|(id, _)| id)
            } else {
                clinic
                    .store
                    .ingest(&bytes[..], "c-store")
                    .and_then(|i| match i {
                        clinic_agent::archive::Ingested::Stored { id, .. }
                        | clinic_agent::archive::Ingested::Duplicate { id } => Ok(id),
                        other => Err(clinic_agent::archive::StoreError::Index(format!(
                            "a valid instance was {other:?}"
                        ))),
                    })
            };
            match stored {
                Ok(id) => {
                    acknowledged.insert(id, bytes.clone());
                    Ok(())
                }
                Err(_) if at_clinic.is_down() => Err(Stop::Crash),
                Err(e) => Err(Stop::Broken(e.to_string())),
            }
        } else {
            // The uploader sends one object of the outbox; a receipt is marked.
            let queued = queued.unwrap_or_default();
            let next = &queued[(rng.next_u64() % queued.len() as u64) as usize];
            match clinic.store.bytes(next) {
                Err(_) if at_clinic.is_down() => Err(Stop::Crash),
                Err(e) => Err(Stop::Broken(e.to_string())),
                Ok(bytes) => {
                    let o = Object {
                        clinic: jz.clone(),
                        id: next.clone(),
                        dicom: bytes.len() > 600,
                        bytes,
                    };
                    let sent = attempt(&hospital, &at_hospital, &o, &mut rng, &mut receipts);
                    match sent {
                        Ok(()) if receipts.contains(&(jz.clone(), o.id.clone())) => {
                            match clinic.store.mark_delivered(&o.id) {
                                Err(_) if at_clinic.is_down() => Err(Stop::Crash),
                                Err(e) => Err(Stop::Broken(e.to_string())),
                                Ok(()) => Ok(()),
                            }
                        }
                        other => other,
                    }
                }
            }
        };
        match outcome {
            Ok(()) => {}
            Err(Stop::Broken(why)) => return Err(why),
            Err(Stop::Crash) => {
                crashes += 1;
                if at_clinic.is_down() {
                    clinic = clinic.after_crash(quarantine);
                    clinic
                        .check(&acknowledged, &receipts, &jz)
                        .map_err(|e| format!("after crash {crashes}, at the clinic: {e}"))?;
                    if crashes < 4 && rng.next_u64() % 2 == 0 {
                        at_clinic.crash_after(1 + rng.next_u64() % 40);
                    }
                }
                if at_hospital.is_down() {
                    at_hospital.power_on();
                    hospital = hospital.after_crash();
                    if crashes < 4 && rng.next_u64() % 2 == 0 {
                        at_hospital.crash_after(1 + rng.next_u64() % 120);
                    }
                }
            }
        }
    }
    Err("no progress after 10,000 steps".into())
}

#[test]
fn what_the_clinic_acknowledged_survives_crashes_and_reaches_the_hospital_once() {
    let seeds = seeds().map_or(2_500, |n| n / 3);
    let dir = tempfile::tempdir().unwrap();
    let study = harness::samples::write_ct_series(dir.path(), "P-2", 4, 600, 12).unwrap();
    let mut files: Vec<Vec<u8>> = study
        .files
        .iter()
        .map(|f| std::fs::read(f).unwrap())
        .collect();
    files.push(b"a referral letter, attached to the case".to_vec());
    let started = std::time::Instant::now();
    let mut crashes = 0;
    for seed in 0..seeds {
        crashes +=
            clinic_run(seed, &files, dir.path()).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    }
    println!(
        "crash model, clinic ingest and sync: {seeds} seeds, {crashes} crash points, {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(crashes >= seeds, "only {crashes} crashes in {seeds} seeds");
}
