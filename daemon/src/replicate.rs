//! Consultation events over an events stream, the same at both sites (`docs/protocol.md`,
//! "Events streams"): each side says how far it holds the other's events, sends its own events
//! the peer lacks and then each new one as it is appended, and applies the peer's events
//! once and in sequence. A broken stream loses nothing: the next link starts again from the
//! stored cursors.

use std::sync::Arc;

use proto::consult::{Applied, Event, Side};
use proto::{ClinicId, ControlFrame};
use store::consult::ConsultLog;
use store::coordination::{Notifier, Subscription};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

/// The topic a site's own appended events are notified on (any clinic's).
pub const EVENTS: &str = "consultation-events";

/// The topic one clinic's appended events are notified on: its events stream's sender waits
/// on it, so an event wakes the one stream that sends it, not every clinic's.
pub fn clinic_topic(clinic: &ClinicId) -> String {
    format!("{EVENTS}:{clinic}")
}

/// Events sent per read of the log.
const BATCH: usize = 64;
/// How long a restored gateway waits for the next of its events a clinic gives back.
const TAKE_BACK_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| format!("storage task failed: {e}"))
}

/// What happened on an events stream that a site may react to.
#[derive(Debug, Clone, Copy)]
pub enum Trigger<'a> {
    /// A stream with this clinic began (the cursors were exchanged, and a restored
    /// gateway's lost events taken back).
    Connected(&'a ClinicId),
    /// The peer's event was stored.
    Applied(&'a Event),
    /// A restored gateway asked this clinic to offer its delivered objects again: put them
    /// back in the outbox, durably, before the stream says so.
    Reoffer(&'a ClinicId),
}

/// What a site does on its own on an events stream (the gateway answers a stored submission
/// with `delivered`, and at each connection catches up on any it had not answered; the agent
/// re-queues its objects when a restored gateway asks). An error ends the stream with it.
pub type OnApplied = Arc<dyn Fn(&Site, Trigger<'_>) -> Result<(), String> + Send + Sync>;

/// [`OnApplied`] bound to its site, as one events stream runs it.
pub type Hook = Arc<dyn Fn(Trigger<'_>) -> Result<(), String> + Send + Sync>;

/// One site's consultation log with what events streams need: appends wake the streams'
/// senders (a notification on [`EVENTS`] through the site's notifier), and `on_applied` runs
/// for each event the peer sends.
#[derive(Clone)]
pub struct Site {
    pub log: Arc<ConsultLog>,
    pub local: Side,
    notifier: Arc<dyn Notifier>,
    on_applied: OnApplied,
}

impl Site {
    pub fn new(
        log: Arc<ConsultLog>,
        local: Side,
        notifier: Arc<dyn Notifier>,
        on_applied: OnApplied,
    ) -> Self {
        Self {
            log,
            local,
            notifier,
            on_applied,
        }
    }

    /// Appends this site's event (checked, durable) and wakes the events streams.
    pub fn append(
        &self,
        clinic: &ClinicId,
        consultation: &proto::consult::ConsultationId,
        actor: &str,
        at_ms: i64,
        kind: proto::consult::EventKind,
    ) -> Result<Event, store::consult::ConsultError> {
        let event = self
            .log
            .append(clinic, self.local, consultation, actor, at_ms, kind)?;
        self.wake(clinic);
        Ok(event)
    }

    /// Appends a created event with the clinic's next case number under `prefix` (given
    /// under the log's append lock: `ConsultLog::append_numbered`) and wakes the events
    /// streams.
    pub fn append_numbered(
        &self,
        clinic: &ClinicId,
        consultation: &proto::consult::ConsultationId,
        actor: &str,
        at_ms: i64,
        kind: proto::consult::EventKind,
        prefix: &str,
    ) -> Result<Event, store::consult::ConsultError> {
        let event = self.log.append_numbered(
            clinic,
            self.local,
            consultation,
            actor,
            at_ms,
            kind,
            prefix,
        )?;
        self.wake(clinic);
        Ok(event)
    }

    /// Wakes the tasks that watch every append, and `clinic`'s events stream.
    fn wake(&self, clinic: &ClinicId) {
        self.notifier.notify(EVENTS);
        self.notifier.notify(&clinic_topic(clinic));
    }

    /// Changes after every append of this site's own events: for tasks that react to them
    /// (the gateway's router wakes on `delivered`).
    pub fn subscribe(&self) -> Subscription {
        self.notifier.subscribe(EVENTS)
    }

    /// This site's part in the events stream with `clinic`.
    pub fn replica(&self, clinic: &ClinicId) -> Replica {
        let (site, hook) = (self.clone(), self.on_applied.clone());
        Replica {
            log: self.log.clone(),
            local: self.local,
            appended: self.notifier.subscribe(&clinic_topic(clinic)),
            on_applied: Arc::new(move |t: Trigger<'_>| hook(&site, t)),
        }
    }
}

/// One side's part in events streams.
#[derive(Clone)]
pub struct Replica {
    pub log: Arc<ConsultLog>,
    pub local: Side,
    /// Changes after every local append: wakes the senders.
    pub appended: Subscription,
    /// Runs on the blocking pool when the stream begins and after each new event from the
    /// peer is stored.
    pub on_applied: Hook,
}

/// The first frame of an events stream: how far each side holds the other's events and its
/// own, and whether a restored gateway wants the clinic's objects offered again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Opening {
    pub have: u64,
    pub own: Option<u64>,
    pub reoffer: bool,
}

impl Opening {
    /// The opening a `replicate` frame carries; `None` for any other frame.
    pub fn of(frame: &ControlFrame) -> Option<Self> {
        match *frame {
            ControlFrame::Replicate { have, own, reoffer } => Some(Self { have, own, reoffer }),
            _ => None,
        }
    }
}

async fn write(send: &mut (impl AsyncWrite + Unpin), frame: &ControlFrame) -> Result<(), String> {
    send.write_all(&frame.encode())
        .await
        .map_err(|e| format!("events stream: {e}"))
}

/// Runs one events stream for `clinic` until it ends or breaks. `peer` is the peer's
/// `replicate` frame when the caller has already read it (the gateway reads a stream's first
/// frame to tell events streams from object streams).
///
/// Before the usual exchange, a gateway restored from a backup is made whole
/// (`docs/protocol.md`, "After a restore"): the clinic sends back the gateway's events the
/// gateway no longer holds, which the gateway takes only under its own seal, and re-queues its
/// delivered objects when asked.
pub async fn run(
    mut send: impl AsyncWrite + Unpin + Send,
    recv: impl AsyncRead + Unpin + Send + 'static,
    clinic: ClinicId,
    replica: Replica,
    peer: Option<Opening>,
) -> Result<(), String> {
    let Replica {
        log,
        local,
        mut appended,
        on_applied,
    } = replica;
    let (l, c) = (log.clone(), clinic.clone());
    let (have, own, awaiting) = blocking(move || {
        Ok::<_, store::consult::ConsultError>((
            l.cursor(&c, local.other())?,
            l.cursor(&c, local)?,
            l.awaiting(&c)?,
        ))
    })
    .await?
    .map_err(|e| e.to_string())?;
    let opening = ControlFrame::Replicate {
        have,
        own: Some(own),
        reoffer: awaiting.objects,
    };
    write(&mut send, &opening).await?;
    let (tx, mut rx) = mpsc::channel(BATCH);
    let reader = tokio::spawn(crate::frames::read_frames(recv, tx));
    let peer = match peer {
        Some(opening) => opening,
        None => match rx.recv().await {
            Some(Ok(frame)) => Opening::of(&frame)
                .ok_or_else(|| format!("events stream began with frame `{}`", frame.name()))?,
            Some(Err(e)) => return Err(e),
            None => return Err("events stream ended before it began".into()),
        },
    };
    if local == Side::Clinic {
        // The gateway lost some of its own events (restored from a backup): give them back,
        // as it sealed them, before anything else.
        if let Some(gateway_own) = peer.own.filter(|o| *o < have) {
            let mut sent = gateway_own;
            while sent < have {
                let (l, c) = (log.clone(), clinic.clone());
                let batch = blocking(move || l.events_after(&c, local.other(), sent, BATCH))
                    .await?
                    .map_err(|e| e.to_string())?;
                let Some(last) = batch.last() else { break };
                sent = last.id.seq;
                for event in batch {
                    write(
                        &mut send,
                        &ControlFrame::Event {
                            event: Box::new(event),
                        },
                    )
                    .await?;
                }
            }
        }
        if peer.reoffer {
            let (hook, c) = (on_applied.clone(), clinic.clone());
            blocking(move || hook(Trigger::Reoffer(&c))).await??;
            write(&mut send, &ControlFrame::Reoffered).await?;
        }
    } else if peer.have > own {
        // This gateway holds fewer of its own events than the clinic does: take them back,
        // until the log itself holds them all (a repeated frame changes nothing), or give up
        // and stay awaiting when the clinic stops sending them.
        let mut own = own;
        while own < peer.have {
            let frame = tokio::time::timeout(TAKE_BACK_WAIT, rx.recv())
                .await
                .map_err(|_| {
                    format!(
                        "the clinic sent none of this gateway's events {} to {} back for {} s",
                        own + 1,
                        peer.have,
                        TAKE_BACK_WAIT.as_secs()
                    )
                })?;
            let event = match frame {
                Some(Ok(ControlFrame::Event { event })) if event.id.side == local => event,
                Some(Ok(other)) => {
                    return Err(format!(
                        "expected this gateway's events {} to {} back first, got frame `{}`",
                        own + 1,
                        peer.have,
                        other.name()
                    ))
                }
                Some(Err(e)) => return Err(e),
                None => return Err("events stream ended while taking events back".into()),
            };
            let (l, c) = (log.clone(), clinic.clone());
            own = blocking(move || {
                l.apply_returned(&c, local, &event)?;
                l.cursor(&c, local)
            })
            .await?
            .map_err(|e| e.to_string())?;
        }
    }
    if local == Side::Gateway && awaiting.events {
        let (l, c) = (log.clone(), clinic.clone());
        blocking(move || l.events_reconciled(&c))
            .await?
            .map_err(|e| e.to_string())?;
    }
    let (hook, c) = (on_applied.clone(), clinic.clone());
    blocking(move || hook(Trigger::Connected(&c))).await??;
    // Applying runs apart from sending, so two sides with long backlogs never wait on each
    // other's reading.
    let (l, c) = (log.clone(), clinic.clone());
    let applier = tokio::spawn(async move {
        while let Some(frame) = rx.recv().await {
            match frame? {
                ControlFrame::Event { event } => {
                    let (l, c, hook) = (l.clone(), c.clone(), on_applied.clone());
                    blocking(move || -> Result<(), String> {
                        if l.apply_replicated(&c, local, &event)
                            .map_err(|e| e.to_string())?
                            == Applied::Appended
                        {
                            hook(Trigger::Applied(&event))?;
                        }
                        Ok(())
                    })
                    .await??;
                }
                ControlFrame::Reoffered if local == Side::Gateway => {
                    let (l, c) = (l.clone(), c.clone());
                    blocking(move || l.objects_reconciled(&c))
                        .await?
                        .map_err(|e| e.to_string())?;
                }
                ControlFrame::Unknown => {}
                other => {
                    return Err(format!(
                        "unexpected frame `{}` on an events stream",
                        other.name()
                    ))
                }
            }
        }
        Ok::<(), String>(())
    });
    let mut sent = peer.have;
    let sender = async {
        loop {
            let (l, c) = (log.clone(), clinic.clone());
            let batch = blocking(move || l.events_after(&c, local, sent, BATCH))
                .await?
                .map_err(|e| e.to_string())?;
            for event in &batch {
                let frame = ControlFrame::Event {
                    event: Box::new(event.clone()),
                };
                write(&mut send, &frame).await?;
                sent = event.id.seq;
            }
            if batch.is_empty() && appended.changed().await.is_err() {
                return Ok::<(), String>(());
            }
        }
    };
    let outcome = tokio::select! {
        r = sender => r,
        r = applier => r.map_err(|e| e.to_string()).and_then(|r| r),
    };
    reader.abort();
    outcome
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use proto::consult::{Consent, ConsultationId, EventKind, Patient, State, Urgency};

    use super::*;

    fn open(dir: &std::path::Path) -> Arc<ConsultLog> {
        let db = sled::open(dir.join("index")).unwrap();
        Arc::new(ConsultLog::open(&db).unwrap())
    }

    fn notifier() -> Arc<dyn Notifier> {
        Arc::new(store::coordination::memory::MemoryNotifier::default())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn both_sides_converge_and_the_gateway_answers_a_submission_with_delivered() {
        let (a, g) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (agent, gateway) = (open(a.path()), open(g.path()));
        let jz = ClinicId::new("jinzhou").unwrap();
        let id = ConsultationId::new(1_790_000_000_000, [3; 10]);
        // Written while the link was down.
        for kind in [
            EventKind::Created {
                patient: Patient {
                    id: "P-9".into(),
                    name: "Test^Patient".into(),
                    sex: "F".into(),
                    birth_date: String::new(),
                },
                clinical_summary: "fall".into(),
                question: "fracture?".into(),
                specialty: "radiology".into(),
                urgency: Urgency::Urgent,
                number: None,
            },
            EventKind::ConsentRecorded {
                consent: Consent {
                    given_by: "patient".into(),
                    method: "written".into(),
                    at_ms: 1,
                },
            },
            EventKind::Submitted,
        ] {
            agent
                .append(&jz, Side::Clinic, &id, "dr.wang", 1, kind)
                .unwrap();
        }
        // The gateway holds a submitted request durably: it says so.
        let gateway_site = Site::new(
            gateway.clone(),
            Side::Gateway,
            notifier(),
            Arc::new(|site: &Site, t: Trigger<'_>| {
                if let Trigger::Applied(e) = t {
                    if e.kind == EventKind::Submitted {
                        site.append(
                            &e.id.clinic,
                            &e.consultation,
                            "system",
                            2,
                            EventKind::Delivered,
                        )
                        .unwrap();
                    }
                }
                Ok(())
            }),
        );
        let agent_site = Site::new(
            agent.clone(),
            Side::Clinic,
            notifier(),
            Arc::new(|_: &Site, _: Trigger<'_>| Ok(())),
        );
        let (agent_end, gateway_end) = tokio::io::duplex(64 * 1024);
        let (ar, aw) = tokio::io::split(agent_end);
        let (gr, gw) = tokio::io::split(gateway_end);
        let at_agent = tokio::spawn(run(aw, ar, jz.clone(), agent_site.replica(&jz), None));
        let at_gateway = tokio::spawn(run(gw, gr, jz.clone(), gateway_site.replica(&jz), None));
        let delivered = async {
            loop {
                if agent.get(&id).unwrap().map(|f| f.consultation.state) == Some(State::Delivered) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), delivered)
            .await
            .expect("the clinic sees its request delivered");
        assert_eq!(agent.timeline(&id).unwrap(), gateway.timeline(&id).unwrap());
        at_agent.abort();
        at_gateway.abort();
    }

    /// A peer whose events stream begins with an event (not `replicate`) gets an error that
    /// names the frame, never its contents: errors are logged, and events carry patients.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stream_that_begins_wrong_is_refused_without_echoing_the_patient() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path());
        let jz = ClinicId::new("jinzhou").unwrap();
        let id = ConsultationId::new(1_790_000_000_000, [5; 10]);
        let event = log
            .append(
                &jz,
                Side::Clinic,
                &id,
                "dr.wang",
                1,
                EventKind::Created {
                    patient: Patient {
                        id: "P-SECRET".into(),
                        name: "Secret^Name".into(),
                        sex: String::new(),
                        birth_date: String::new(),
                    },
                    clinical_summary: String::new(),
                    question: "?".into(),
                    specialty: "radiology".into(),
                    urgency: Urgency::Routine,
                    number: None,
                },
            )
            .unwrap();
        let site = Site::new(
            open(&dir.path().join("g")),
            Side::Gateway,
            notifier(),
            Arc::new(|_: &Site, _: Trigger<'_>| Ok(())),
        );
        let (ours, theirs) = tokio::io::duplex(64 * 1024);
        let (r, w) = tokio::io::split(ours);
        let (_tr, mut tw) = tokio::io::split(theirs);
        tw.write_all(
            &ControlFrame::Event {
                event: Box::new(event),
            }
            .encode(),
        )
        .await
        .unwrap();
        let error = run(w, r, jz.clone(), site.replica(&jz), None)
            .await
            .unwrap_err();
        assert!(error.contains("frame `event`"), "{error}");
        assert!(
            !error.contains("SECRET") && !error.contains("Secret"),
            "{error}"
        );
    }
}
