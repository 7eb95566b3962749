//! A light clinic for the scale benchmark: the clinic agent's own link, sync and replication
//! (`clinic_agent::link::run` with its `Sync` uploader and the consultation log's events
//! stream), over the storage ports' memory adapters instead of sled and files, and without
//! the agent's web, DICOM and metrics listeners. Each clinic has its own QUIC endpoint (its
//! own UDP socket, as a clinic PC has) and its own certificate from the pilot's CA; a
//! thousand of them run in one process.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use clinic_agent::archive::{AgentStore, Ingested};
use clinic_agent::config::LinkConfig;
use clinic_agent::link::{self, LinkOptions, Traffic};
use clinic_agent::sync::{self, SharedSync, SyncCommand};
use clinic_agent::{specialties, status, Metrics, SharedStatus};
use daemon::replicate::Site;
use proto::consult::{Consent, ConsultationId, EventKind, Patient, Side, State, Urgency};
use proto::sync::QueuedObject;
use proto::ClinicId;
use store::coordination::memory::MemoryNotifier;
use store::crash::Machine;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// One clinic's agent, linked (or linking) to the gateway nodes.
pub struct Clinic {
    pub id: ClinicId,
    store: Arc<AgentStore>,
    site: Site,
    commands: mpsc::UnboundedSender<SyncCommand>,
    status: SharedStatus,
    case_prefix: String,
    /// The study, stored at the clinic and not yet handed to the uploader.
    held: Vec<QueuedObject>,
    pub task: JoinHandle<anyhow::Result<()>>,
}

impl Clinic {
    /// Starts the clinic's link with `config` (its certificate, the gateway nodes in the order
    /// it dials them); `scratch` is a folder of its own for the little the agent keeps in
    /// files (the specialties the gateway sends, the quarantine).
    pub fn start(
        id: ClinicId,
        config: LinkConfig,
        scratch: &Path,
        seed: u64,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(scratch)?;
        // Never crashed: the memory adapters are used only because they are light.
        let machine = Machine::new(seed);
        let store = Arc::new(AgentStore::new(
            Arc::new(store::objects::memory::MemoryObjects::new(&machine)),
            Arc::new(store::outbox::memory::MemoryOutbox::new(&machine)),
            scratch.join("quarantine"),
        ));
        let site = Site::new(
            Arc::new(store::consult::ConsultLog::new(Arc::new(
                store::events::memory::MemoryEvents::new(&machine),
            ))),
            Side::Clinic,
            Arc::new(MemoryNotifier::default()),
            // A restored gateway's re-offer does not happen in this benchmark.
            Arc::new(|_, _| Ok(())),
        );
        let metrics = Arc::new(Metrics::new());
        let status = SharedStatus::default();
        let (commands, queued) = mpsc::unbounded_channel();
        let uploader = sync::Sync::new(
            proto::sync::UploaderConfig::default(),
            config.upload_limit,
            config.routine,
            store.clone(),
            metrics.clone(),
            SharedSync::default(),
            seed,
        );
        let backlog = {
            let store = store.clone();
            link::watch_backlog(move || status::backlog(&store), shutdown.clone())
        };
        let traffic = Traffic {
            sync: uploader,
            commands: queued,
            consult: site.clone(),
            backlog,
            specialties: Arc::new(specialties::Specialties::open(scratch)),
        };
        let task = tokio::spawn(link::run(
            config,
            LinkOptions::default(),
            metrics,
            status.clone(),
            traffic,
            shutdown,
        ));
        Ok(Self {
            case_prefix: proto::find::CaseNumber::prefix_of(&id),
            id,
            store,
            site,
            commands,
            status,
            held: Vec::new(),
            task,
        })
    }

    pub fn is_up(&self) -> bool {
        self.status.lock().map(|s| s.up).unwrap_or(false)
    }

    /// Stores the study's files at the clinic (as a modality's C-STORE would: checked,
    /// indexed, queued in the outbox) without handing them to the uploader yet, so that
    /// [`Clinic::send`] starts the transfer at a moment of the benchmark's choosing. Blocking.
    pub fn store_study(&mut self, files: &[PathBuf]) -> anyhow::Result<()> {
        for file in files {
            let Ingested::Stored { id, .. } = self.store.ingest_file(file)? else {
                anyhow::bail!("{} was not stored as a new instance", file.display());
            };
            let record = self.store.object(&id)?.context("stored, not indexed")?;
            self.held.push(record.queued(id));
        }
        Ok(())
    }

    /// The doctor sends the case: the study goes to the uploader, and a routine consultation
    /// with the study attached is created and submitted, as the new-case form does
    /// (`clinic_agent::cases::Cases::create`). Returns the consultation's id.
    pub fn send(
        &mut self,
        study_uid: &str,
        patient_id: &str,
        random: [u8; 10],
    ) -> anyhow::Result<ConsultationId> {
        for object in self.held.drain(..) {
            self.commands
                .send(SyncCommand::Enqueue(object))
                .map_err(|_| anyhow::anyhow!("the clinic's link has stopped"))?;
        }
        let now = daemon::now_ms();
        let id = ConsultationId::new(now as u64, random);
        self.site.append_numbered(
            &self.id,
            &id,
            "doctor",
            now,
            EventKind::Created {
                patient: Patient {
                    id: patient_id.into(),
                    name: String::new(),
                    sex: String::new(),
                    birth_date: String::new(),
                },
                clinical_summary: "cough for three weeks".into(),
                question: "pneumonia?".into(),
                specialty: "radiology".into(),
                urgency: Urgency::Routine,
                number: None,
            },
            &self.case_prefix,
        )?;
        for kind in [
            EventKind::ConsentRecorded {
                consent: Consent {
                    given_by: "patient".into(),
                    method: "written".into(),
                    at_ms: now,
                },
            },
            EventKind::StudiesAttached {
                study_instance_uids: vec![study_uid.to_owned()],
                attachments: Vec::new(),
            },
            EventKind::Submitted,
        ] {
            self.site.append(&self.id, &id, "doctor", now, kind)?;
        }
        Ok(id)
    }

    /// Whether every object of the study has its durable receipt from the gateway.
    pub fn study_stored(&self) -> bool {
        self.held.is_empty() && self.store.outbox().is_empty()
    }

    /// The consultation's state as the clinic knows it: the gateway's `delivered` and
    /// `assigned` events come back over the events stream.
    pub fn case_state(&self, id: &ConsultationId) -> Option<State> {
        self.site.log.state(id).ok().flatten().map(|c| c.state)
    }
}
