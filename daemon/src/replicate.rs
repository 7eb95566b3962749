//! Consultation events over an events stream, the same at both sites (`docs/protocol.md`,
//! "Events streams"): each side says how far it holds the other's events, sends its own events
//! the peer lacks and then each new one as it is appended, and applies the peer's events
//! once and in sequence. A broken stream loses nothing: the next link starts again from the
//! stored cursors.

use std::sync::Arc;

use proto::consult::{Applied, Event, Side};
use proto::{ClinicId, ControlFrame};
use store::consult::ConsultLog;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};

/// Events sent per read of the log.
const BATCH: usize = 64;

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| format!("storage task failed: {e}"))
}

/// What happened on an events stream that a site may react to.
#[derive(Debug, Clone, Copy)]
pub enum Trigger<'a> {
    /// A stream with this clinic began (the cursors were exchanged).
    Connected(&'a ClinicId),
    /// The peer's event was stored.
    Applied(&'a Event),
}

/// What a site does on its own on an events stream (the gateway answers a stored submission
/// with `delivered`, and at each connection catches up on any it had not answered).
pub type OnApplied = Arc<dyn Fn(&Site, Trigger<'_>) + Send + Sync>;

/// One site's consultation log with what events streams need: appends wake the streams'
/// senders, and `on_applied` runs for each event the peer sends.
#[derive(Clone)]
pub struct Site {
    pub log: Arc<ConsultLog>,
    pub local: Side,
    appended: Arc<watch::Sender<u64>>,
    on_applied: OnApplied,
}

impl Site {
    pub fn new(log: Arc<ConsultLog>, local: Side, on_applied: OnApplied) -> Self {
        Self {
            log,
            local,
            appended: Arc::new(watch::channel(0).0),
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
        self.appended.send_modify(|n| *n += 1);
        Ok(event)
    }

    /// Changes after every append of this site's own events: for tasks that react to them
    /// (the gateway's router wakes on `delivered`).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.appended.subscribe()
    }

    /// This site's part in one events stream.
    pub fn replica(&self) -> Replica {
        let (site, hook) = (self.clone(), self.on_applied.clone());
        Replica {
            log: self.log.clone(),
            local: self.local,
            appended: self.appended.subscribe(),
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
    pub appended: watch::Receiver<u64>,
    /// Runs on the blocking pool when the stream begins and after each new event from the
    /// peer is stored.
    pub on_applied: Arc<dyn Fn(Trigger<'_>) + Send + Sync>,
}

/// Runs one events stream for `clinic` until it ends or breaks. `peer_have` is the peer's
/// `replicate` frame when the caller has already read it (the gateway reads a stream's first
/// frame to tell events streams from object streams).
pub async fn run(
    mut send: impl AsyncWrite + Unpin + Send,
    recv: impl AsyncRead + Unpin + Send + 'static,
    clinic: ClinicId,
    replica: Replica,
    peer_have: Option<u64>,
) -> Result<(), String> {
    let Replica {
        log,
        local,
        mut appended,
        on_applied,
    } = replica;
    let (l, c) = (log.clone(), clinic.clone());
    let have = blocking(move || l.cursor(&c, local.other()))
        .await?
        .map_err(|e| e.to_string())?;
    send.write_all(&ControlFrame::Replicate { have }.encode())
        .await
        .map_err(|e| format!("events stream: {e}"))?;
    let (tx, mut rx) = mpsc::channel(BATCH);
    let reader = tokio::spawn(crate::frames::read_frames(recv, tx));
    let peer_have = match peer_have {
        Some(have) => have,
        None => match rx.recv().await {
            Some(Ok(ControlFrame::Replicate { have })) => have,
            Some(Ok(other)) => return Err(format!("events stream began with {other:?}")),
            Some(Err(e)) => return Err(e),
            None => return Err("events stream ended before it began".into()),
        },
    };
    let (hook, c) = (on_applied.clone(), clinic.clone());
    blocking(move || hook(Trigger::Connected(&c))).await?;
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
                            hook(Trigger::Applied(&event));
                        }
                        Ok(())
                    })
                    .await??;
                }
                ControlFrame::Unknown => {}
                other => return Err(format!("unexpected {other:?} on an events stream")),
            }
        }
        Ok::<(), String>(())
    });
    let mut sent = peer_have;
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
                send.write_all(&frame.encode())
                    .await
                    .map_err(|e| format!("events stream: {e}"))?;
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
            }),
        );
        let agent_site = Site::new(
            agent.clone(),
            Side::Clinic,
            Arc::new(|_: &Site, _: Trigger<'_>| {}),
        );
        let (agent_end, gateway_end) = tokio::io::duplex(64 * 1024);
        let (ar, aw) = tokio::io::split(agent_end);
        let (gr, gw) = tokio::io::split(gateway_end);
        let at_agent = tokio::spawn(run(aw, ar, jz.clone(), agent_site.replica(), None));
        let at_gateway = tokio::spawn(run(gw, gr, jz.clone(), gateway_site.replica(), None));
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
}
