//! The uploader and receivers driven together on a virtual clock: priorities, preemption,
//! retries, and resume across link cuts and gateway restarts with bounded resending.

use std::collections::{HashMap, HashSet};

use super::*;

const MS: Duration = Duration::from_millis(1);

fn id(n: u32) -> ObjectId {
    let mut d = [0u8; 32];
    d[..4].copy_from_slice(&n.to_be_bytes());
    ObjectId::from_digest(&d)
}

fn obj(n: u32, size: u64, priority: Priority) -> QueuedObject {
    QueuedObject {
        id: id(n),
        size,
        priority,
        seq: u64::from(n),
        ahead: false,
    }
}

fn offers(u: &mut Uploader) -> Vec<ObjectId> {
    let mut v = Vec::new();
    while let Some(a) = u.poll_action() {
        if let UploadAction::Offer { id, .. } = a {
            v.push(id);
        }
    }
    v
}

/// An uploader with two sending slots, both busy with the first of `count` large objects.
fn two_slots_busy(count: u32, priority: Priority) -> (Instant, Uploader) {
    let t = Instant::now();
    let mut u = Uploader::new(
        UploaderConfig {
            max_in_flight: 2,
            ..Default::default()
        },
        1,
    );
    u.handle_link_up(t);
    for n in 1..=count {
        u.enqueue(t, obj(n, 1 << 30, priority));
    }
    assert_eq!(offers(&mut u), vec![id(1), id(2)]);
    (t, u)
}

/// The next two actions: `paused` yields its slot to `offered`.
fn assert_preempted(u: &mut Uploader, paused: u32, offered: u32, size: u64) {
    assert_eq!(
        u.poll_action(),
        Some(UploadAction::Pause { id: id(paused) })
    );
    assert_eq!(
        u.poll_action(),
        Some(UploadAction::Offer {
            id: id(offered),
            size
        })
    );
}

#[test]
fn object_ids_are_validated_hex() {
    assert!(ObjectId::parse(&"a".repeat(64)).is_some());
    assert!(ObjectId::parse(&"A".repeat(64)).is_none());
    assert!(ObjectId::parse("abc").is_none());
    assert!(serde_json::from_str::<ObjectId>("\"xyz\"").is_err());
}

#[test]
fn emergency_goes_first_then_urgent_then_routine_oldest_first() {
    let t = Instant::now();
    let mut u = Uploader::new(
        UploaderConfig {
            max_in_flight: 1,
            ..Default::default()
        },
        1,
    );
    u.enqueue(t, obj(1, 10, Priority::Routine));
    u.enqueue(t, obj(2, 10, Priority::Routine));
    u.enqueue(t, obj(3, 10, Priority::Urgent));
    u.enqueue(t, obj(4, 10, Priority::Emergency));
    u.enqueue(t, obj(5, 10, Priority::Urgent));
    assert!(
        offers(&mut u).is_empty(),
        "nothing is offered while the link is down"
    );
    u.handle_link_up(t);
    let mut order = Vec::new();
    for _ in 0..5 {
        let o = offers(&mut u);
        assert_eq!(o.len(), 1);
        u.handle_receipt(t, &o[0]);
        order.push(o[0].clone());
    }
    assert_eq!(order, vec![id(4), id(3), id(5), id(1), id(2)]);
}

#[test]
fn a_waiting_emergency_pauses_the_newest_routine_transfer() {
    let (t, mut u) = two_slots_busy(5, Priority::Routine);
    u.enqueue(t, obj(9, 100, Priority::Emergency));
    assert_preempted(&mut u, 2, 9, 100);
    u.handle_receipt(t, &id(9));
    // The paused object resumes next, ahead of younger routine objects.
    assert_eq!(offers(&mut u), vec![id(2)]);
}

#[test]
fn a_preview_goes_ahead_of_older_emergency_objects_and_pauses_one_when_the_slots_are_full() {
    let (t, mut u) = two_slots_busy(4, Priority::Emergency);
    // The preview is younger than every full object and of the same priority.
    let preview = QueuedObject {
        ahead: true,
        ..obj(9, 40_000, Priority::Emergency)
    };
    u.enqueue(t, preview);
    assert_preempted(&mut u, 2, 9, 40_000);
    u.handle_receipt(t, &id(9));
    assert_eq!(offers(&mut u), vec![id(2)]);
    // The preview of an urgent case also goes ahead of the emergency images waiting.
    let second = QueuedObject {
        ahead: true,
        ..obj(10, 40_000, Priority::Urgent)
    };
    u.enqueue(t, second);
    assert_preempted(&mut u, 2, 10, 40_000);
}

#[test]
fn a_wholly_sent_object_frees_its_sending_slot_while_it_waits_for_the_receipt() {
    let t = Instant::now();
    let mut u = Uploader::new(
        UploaderConfig {
            max_in_flight: 2,
            max_awaiting_receipt: 1,
            ..Default::default()
        },
        1,
    );
    u.handle_link_up(t);
    for n in 1..=5 {
        u.enqueue(t, obj(n, 100, Priority::Routine));
    }
    assert_eq!(offers(&mut u), vec![id(1), id(2)]);
    u.handle_accept(&id(1), 0);
    u.handle_sent(t, &id(1), 40);
    assert!(
        offers(&mut u).is_empty(),
        "a partly sent object keeps its slot"
    );
    u.handle_sent(t, &id(1), 100);
    assert_eq!(
        offers(&mut u),
        vec![id(3)],
        "the next object starts at once"
    );
    assert_eq!((u.in_flight(), u.sending()), (3, 2));
    u.handle_sent(t, &id(2), 100);
    assert!(
        offers(&mut u).is_empty(),
        "objects waiting for receipts are bounded too"
    );
    // An emergency pauses a transfer still sending, never one waiting for its receipt.
    u.enqueue(t, obj(9, 100, Priority::Emergency));
    assert!(u.poll_action().is_none(), "no room even by pausing: {u:?}");
    u.handle_receipt(t, &id(1));
    assert_eq!(offers(&mut u), vec![id(9)]);
    u.handle_receipt(t, &id(2));
    assert!(offers(&mut u).is_empty(), "3 and 9 hold both sending slots");
    u.handle_sent(t, &id(3), 100);
    assert_eq!(offers(&mut u), vec![id(4)]);
}

#[test]
fn a_retry_due_while_every_slot_is_busy_waits_for_a_slot_without_a_timer() {
    let t = Instant::now();
    let mut u = Uploader::new(
        UploaderConfig {
            max_in_flight: 1,
            max_awaiting_receipt: 0,
            ..Default::default()
        },
        3,
    );
    u.handle_link_up(t);
    u.enqueue(t, obj(1, 10, Priority::Routine));
    u.enqueue(t, obj(2, 10, Priority::Routine));
    assert_eq!(offers(&mut u), vec![id(1)]);
    u.handle_failed(t, &id(1), "link lost".into());
    assert_eq!(
        offers(&mut u),
        vec![id(2)],
        "the other object takes the slot"
    );
    let due = u.poll_timeout().expect("a retry is scheduled");
    u.handle_timeout(due);
    assert!(offers(&mut u).is_empty(), "no slot yet");
    assert_eq!(
        u.poll_timeout(),
        None,
        "a retry already due must not ask to be woken again (the link loop would spin)"
    );
    u.handle_receipt(due, &id(2));
    assert_eq!(offers(&mut u), vec![id(1)]);
}

#[test]
fn raising_a_queued_objects_priority_moves_it_forward() {
    let t = Instant::now();
    let mut u = Uploader::new(
        UploaderConfig {
            max_in_flight: 1,
            ..Default::default()
        },
        1,
    );
    for n in 1..=3 {
        u.enqueue(t, obj(n, 10, Priority::Routine));
    }
    u.reprioritize(t, &id(3), Priority::Urgent);
    u.handle_link_up(t);
    assert_eq!(offers(&mut u), vec![id(3)]);
}

#[test]
fn a_failed_object_is_retried_after_its_backoff_and_never_dropped() {
    let t = Instant::now();
    let mut u = Uploader::new(
        UploaderConfig {
            max_in_flight: 1,
            ..Default::default()
        },
        3,
    );
    u.handle_link_up(t);
    u.enqueue(t, obj(1, 10, Priority::Routine));
    assert_eq!(offers(&mut u), vec![id(1)]);
    let mut now = t;
    for attempt in 0..50 {
        u.handle_failed(now, &id(1), format!("attempt {attempt}"));
        let Some(UploadEvent::Failed { retry_in, .. }) = u.poll_event() else {
            panic!("failure reported")
        };
        assert!(retry_in <= Duration::from_secs(60));
        assert!(offers(&mut u).is_empty(), "not retried before its backoff");
        let due = u.poll_timeout().expect("a retry is scheduled");
        assert_eq!(due, now + retry_in);
        now = due;
        u.handle_timeout(now);
        assert_eq!(offers(&mut u), vec![id(1)], "retried at {attempt}");
    }
    assert_eq!(u.last_failure(&id(1)), Some("attempt 49"));
}

#[test]
fn receiver_commits_every_chunk_and_refuses_wrong_lengths() {
    let mut r = Receiver::new(2500, 0, 1000);
    assert_eq!(r.want(), 1000);
    assert_eq!(r.handle_data(600), Ok(ReceiveStep::Continue));
    assert_eq!(r.want(), 400);
    assert_eq!(r.handle_data(400), Ok(ReceiveStep::Commit { upto: 1000 }));
    assert_eq!(r.handle_data(1000), Ok(ReceiveStep::Commit { upto: 2000 }));
    assert_eq!(r.want(), 500);
    assert!(matches!(
        r.handle_end(),
        Err(ReceiveError::Truncated { got: 2000, .. })
    ));
    assert_eq!(r.handle_data(500), Ok(ReceiveStep::Commit { upto: 2500 }));
    assert_eq!(r.handle_end(), Ok(ReceiveStep::Verify));

    let mut r = Receiver::new(100, 60, 1000);
    assert_eq!(r.resume_offset(), 60);
    assert!(matches!(
        r.handle_data(41),
        Err(ReceiveError::TooLong { .. })
    ));
}

/// A simulated gateway: durable committed offsets and stored objects survive restarts;
/// received-but-uncommitted bytes do not.
#[derive(Default)]
struct Gateway {
    committed: HashMap<ObjectId, u64>,
    stored: HashSet<ObjectId>,
    receivers: HashMap<ObjectId, Receiver>,
    stored_twice: usize,
}

struct Sim {
    now: Instant,
    uploader: Uploader,
    gateway: Gateway,
    sizes: HashMap<ObjectId, u64>,
    /// Objects the clinic is streaming, with the next offset to send.
    sending: HashMap<ObjectId, u64>,
    delivered: Vec<ObjectId>,
    resent: u64,
    rng: crate::rng::Rng,
}

const CHUNK: u64 = 64 * 1024;

impl Sim {
    fn new(max_in_flight: usize) -> Self {
        let now = Instant::now();
        Self {
            now,
            uploader: Uploader::new(
                UploaderConfig {
                    max_in_flight,
                    ..Default::default()
                },
                5,
            ),
            gateway: Gateway::default(),
            sizes: HashMap::new(),
            sending: HashMap::new(),
            delivered: Vec::new(),
            resent: 0,
            rng: crate::rng::Rng::new(11),
        }
    }

    fn drain(&mut self) {
        while let Some(a) = self.uploader.poll_action() {
            match a {
                UploadAction::Offer { id, size } => {
                    if self.gateway.stored.contains(&id) {
                        self.uploader.handle_receipt(self.now, &id);
                        continue;
                    }
                    let committed = self.gateway.committed.get(&id).copied().unwrap_or(0);
                    let r = Receiver::new(size, committed, CHUNK);
                    let offset = r.resume_offset();
                    self.gateway.receivers.insert(id.clone(), r);
                    self.uploader.handle_accept(&id, offset);
                }
                UploadAction::SendFrom { id, offset } => {
                    self.sending.insert(id, offset);
                }
                UploadAction::Pause { id } => {
                    self.sending.remove(&id);
                    self.gateway.receivers.remove(&id);
                }
            }
        }
        while let Some(e) = self.uploader.poll_event() {
            match e {
                UploadEvent::Delivered { id } => self.delivered.push(id),
                UploadEvent::Resent { bytes, .. } => self.resent += bytes,
                UploadEvent::Failed { .. } => {}
            }
        }
    }

    /// Moves up to `budget` bytes for each object being sent.
    fn step(&mut self, budget: u64) {
        self.now += 10 * MS;
        let ids: Vec<_> = self.sending.keys().cloned().collect();
        for id in ids {
            let Some(r) = self.gateway.receivers.get_mut(&id) else {
                continue;
            };
            let mut left = budget;
            let mut offset = self.sending[&id];
            let mut done = false;
            while left > 0 && r.want() > 0 {
                let n = r.want().min(left).min(1 + self.rng.next_u64() % 20_000);
                left -= n;
                offset += n;
                match r.handle_data(n).expect("never past the size") {
                    ReceiveStep::Commit { upto } => {
                        self.gateway.committed.insert(id.clone(), upto);
                    }
                    ReceiveStep::Continue | ReceiveStep::Verify => {}
                }
            }
            self.uploader.handle_sent(self.now, &id, offset);
            self.sending.insert(id.clone(), offset);
            if r.want() == 0 && r.handle_end() == Ok(ReceiveStep::Verify) {
                done = true;
            }
            if done {
                if !self.gateway.stored.insert(id.clone()) {
                    self.gateway.stored_twice += 1;
                }
                self.gateway.receivers.remove(&id);
                self.gateway.committed.remove(&id);
                self.sending.remove(&id);
                self.uploader.handle_receipt(self.now, &id);
            }
        }
        self.uploader.handle_timeout(self.now);
        self.drain();
    }

    /// The link drops (or the gateway restarts): uncommitted bytes are lost at the gateway.
    fn outage(&mut self) -> u64 {
        let in_flight = self.uploader.in_flight() as u64;
        self.gateway.receivers.clear();
        self.sending.clear();
        self.uploader.handle_link_down(self.now);
        self.now += Duration::from_secs(30);
        self.uploader.handle_link_up(self.now);
        self.drain();
        in_flight
    }
}

#[test]
fn every_object_arrives_exactly_once_across_outages_with_at_most_a_chunk_resent_per_flight() {
    let mut sim = Sim::new(4);
    let t = sim.now;
    sim.uploader.handle_link_up(t);
    for n in 0..60u32 {
        let size = 1 + sim.rng.next_u64() % (600 * 1024);
        let priority = [Priority::Routine, Priority::Urgent, Priority::Emergency][n as usize % 3];
        sim.sizes.insert(id(n), size);
        sim.uploader.enqueue(t, obj(n, size, priority));
    }
    sim.drain();
    let mut outages = 0;
    for round in 0..20_000 {
        if sim.delivered.len() == 60 {
            break;
        }
        sim.step(16 * 1024);
        if round % 9 == 8 {
            let before = sim.resent;
            let in_flight = sim.outage();
            outages += 1;
            // Resent bytes show up when the objects are re-offered: run a step and check.
            sim.step(0);
            assert!(
                sim.resent - before <= in_flight * CHUNK,
                "outage {outages}: resent {} bytes for {in_flight} objects in flight",
                sim.resent - before
            );
        }
    }
    assert!(outages > 10, "the test exercised outages: {outages}");
    assert_eq!(sim.delivered.len(), 60, "everything delivered");
    let unique: HashSet<_> = sim.delivered.iter().collect();
    assert_eq!(unique.len(), 60, "nothing delivered twice");
    assert_eq!(sim.gateway.stored_twice, 0);
    assert!(sim.resent > 0, "outages really cut transfers mid-way");
}

#[test]
fn an_object_the_gateway_already_has_is_delivered_without_sending_bytes() {
    let mut sim = Sim::new(2);
    sim.gateway.stored.insert(id(7));
    let t = sim.now;
    sim.uploader.handle_link_up(t);
    sim.uploader
        .enqueue(t, obj(7, 1_000_000, Priority::Routine));
    sim.drain();
    assert_eq!(sim.delivered, vec![id(7)]);
    assert!(sim.sending.is_empty());
}
