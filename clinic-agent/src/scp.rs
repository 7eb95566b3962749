//! The agent's DICOM listener for the clinic's modalities: C-ECHO and C-STORE SCP (PS3.4
//! Annexes A and B) over the dicom-rs upper layer, one blocking thread per association.
//!
//! Each instance is streamed to a temporary blob as its PDVs arrive (never held whole in
//! memory), then stored through the archive; the C-STORE response is sent only after the
//! instance is durable, with a failure status when it is not.

use std::io::ErrorKind;
use std::net::TcpStream;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use dicom_ul::association::server::{AccessControl, ServerAssociationOptions};
use dicom_ul::pdu::{
    AssociationRJServiceUserReason, PDataValue, PDataValueType, Pdu, UserIdentity,
};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::archive::Ingested;
use crate::config::DicomConfig;
use crate::dimse::{self, Command};
use crate::Handle;

const VERIFICATION: &str = "1.2.840.10008.1.1";
/// Largest PDU a modality may send us: large enough for throughput, small enough that one PDU
/// in memory per association is nothing.
const MAX_PDU: u32 = 256 * 1024;
/// A DIMSE command set is a few hundred bytes; anything near this is not a command.
const MAX_COMMAND: usize = 64 * 1024;
/// Associations served at once; more are closed at once (a modality retries later).
const MAX_ASSOCIATIONS: usize = 32;

/// The listener's places: [`MAX_ASSOCIATIONS`] in all, and a limit per address so that one
/// machine on the LAN (a broken modality, a port scanner) cannot take them all.
#[derive(Debug, Default)]
struct Places(std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>);

impl Places {
    fn take(&self, peer: std::net::IpAddr, per_peer: usize) -> Result<(), String> {
        let mut held = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if held.values().sum::<usize>() >= MAX_ASSOCIATIONS {
            return Err("too many DICOM associations at once".into());
        }
        let mine = held.entry(peer).or_default();
        if *mine >= per_peer {
            return Err(format!(
                "this address already holds {per_peer} DICOM associations ([dicom] max_associations_per_peer)"
            ));
        }
        *mine += 1;
        Ok(())
    }

    fn give_back(&self, peer: std::net::IpAddr) {
        let mut held = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = held.get_mut(&peer) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                held.remove(&peer);
            }
        }
    }
}

/// Calling AE titles allowed to associate; empty allows any.
#[derive(Debug, Clone)]
struct AllowList(Arc<Vec<String>>);

impl AccessControl for AllowList {
    fn check_access(
        &self,
        this_ae_title: &str,
        calling_ae_title: &str,
        called_ae_title: &str,
        _user_identity: Option<&UserIdentity>,
    ) -> Result<(), AssociationRJServiceUserReason> {
        if called_ae_title.trim() != this_ae_title.trim() {
            return Err(AssociationRJServiceUserReason::CalledAETitleNotRecognized);
        }
        if self.0.is_empty() || self.0.iter().any(|a| a == calling_ae_title.trim()) {
            Ok(())
        } else {
            Err(AssociationRJServiceUserReason::CallingAETitleNotRecognized)
        }
    }
}

/// Serves associations on `listener` until `shutdown` is cancelled.
pub fn spawn(
    listener: std::net::TcpListener,
    config: DicomConfig,
    handle: Handle,
    shutdown: CancellationToken,
) -> anyhow::Result<JoinHandle<()>> {
    listener.set_nonblocking(true)?;
    let allow = AllowList(Arc::new(config.allowed_calling_ae_titles.clone()));
    if allow.0.is_empty() {
        info!(ae_title = %config.ae_title, "DICOM listener accepts any calling AE title; set [dicom] allowed_calling_ae_titles to restrict");
    }
    let active = Arc::new(Places::default());
    Ok(std::thread::Builder::new()
        .name("dicom-listener".into())
        .spawn(move || {
            while !shutdown.is_cancelled() {
                match listener.accept() {
                    Ok((stream, peer)) => {
                        if let Err(why) = active.take(peer.ip(), config.max_associations_per_peer) {
                            handle.metrics.dicom_associations_rejected.inc();
                            warn!(%peer, "{why}; connection closed");
                            continue;
                        }
                        let (config, handle, allow, places) = (
                            config.clone(),
                            handle.clone(),
                            allow.clone(),
                            active.clone(),
                        );
                        let spawned = std::thread::Builder::new()
                            .name("dicom-assoc".into())
                            .spawn(move || {
                                if let Err(e) = serve(stream, &config, &handle, allow) {
                                    debug!(%peer, error = %e, "association ended with an error");
                                }
                                places.give_back(peer.ip());
                            });
                        if spawned.is_err() {
                            active.give_back(peer.ip());
                            warn!(%peer, "cannot start a thread for a DICOM association");
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(100))
                    }
                    Err(e) => {
                        warn!(error = %e, "DICOM listener accept failed");
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            }
        })?)
}

/// An instance being received. `temp` holds why storing it failed once it has (a full disk):
/// the rest of its bytes are read and dropped, and the request is answered "out of resources"
/// on the same association, so the modality learns which instance to send again.
struct Incoming {
    command: Command,
    context: u8,
    temp: Result<store::blob::TempBlob, String>,
}

impl Incoming {
    fn discard(self) {
        if let Ok(temp) = self.temp {
            temp.discard();
        }
    }
}

fn serve(
    stream: TcpStream,
    config: &DicomConfig,
    handle: &Handle,
    allow: AllowList,
) -> anyhow::Result<()> {
    stream.set_nonblocking(false)?;
    // Also while the association is being negotiated: a socket that sends nothing is closed.
    stream.set_read_timeout(Some(config.idle_timeout))?;
    stream.set_write_timeout(Some(config.idle_timeout))?;
    let options = ServerAssociationOptions::new()
        .ae_access_control(allow)
        .ae_title(config.ae_title.as_str())
        .with_abstract_syntax(VERIFICATION)
        .promiscuous(true)
        .max_pdu_length(MAX_PDU)
        .read_timeout(config.idle_timeout)
        .write_timeout(config.idle_timeout);
    let mut association = match options.establish(stream) {
        Ok(a) => a,
        Err(e) => {
            handle.metrics.dicom_associations_rejected.inc();
            warn!(error = %e, "DICOM association refused");
            return Ok(());
        }
    };
    let calling = dicom_ul::association::Association::peer_ae_title(&association).to_owned();
    debug!(calling_ae = %calling, "DICOM association accepted");
    let contexts: Vec<(u8, String)> = association
        .presentation_contexts()
        .iter()
        .map(|pc| (pc.id, pc.transfer_syntax.clone()))
        .collect();
    let mut command_bytes = Vec::new();
    let mut incoming: Option<Incoming> = None;
    loop {
        let pdu = match association.receive() {
            Ok(p) => p,
            Err(e) => {
                if let Some(i) = incoming.take() {
                    i.discard();
                }
                return Err(e.into());
            }
        };
        match pdu {
            Pdu::PData { data } => {
                for pdv in data {
                    match pdv.value_type {
                        PDataValueType::Command => {
                            command_bytes.extend_from_slice(&pdv.data);
                            if command_bytes.len() > MAX_COMMAND {
                                anyhow::bail!("command set larger than {MAX_COMMAND} bytes");
                            }
                            if !pdv.is_last {
                                continue;
                            }
                            let command = dimse::parse(&std::mem::take(&mut command_bytes))
                                .map_err(anyhow::Error::msg)?;
                            match command.field {
                                dimse::C_ECHO_RQ => {
                                    let rsp = dimse::response(
                                        &command,
                                        dimse::C_ECHO_RSP,
                                        dimse::STATUS_SUCCESS,
                                    );
                                    send_command(
                                        &mut association,
                                        pdv.presentation_context_id,
                                        rsp,
                                    )?;
                                }
                                dimse::C_STORE_RQ if command.has_data_set => {
                                    if command.sop_instance.len() > 64
                                        || command.sop_class.len() > 64
                                    {
                                        anyhow::bail!("C-STORE request with a UID longer than 64 characters (PS3.5 §9.1)");
                                    }
                                    let ts = contexts
                                        .iter()
                                        .find(|(id, _)| *id == pdv.presentation_context_id)
                                        .map(|(_, ts)| ts.clone())
                                        .unwrap_or_default();
                                    let header = dimse::file_header(
                                        &command.sop_class,
                                        &command.sop_instance,
                                        &ts,
                                    );
                                    let temp = handle
                                        .store
                                        .stage()
                                        .and_then(|mut temp| {
                                            temp.write(&header).map(|()| temp).map_err(Into::into)
                                        })
                                        .map_err(|e| e.to_string());
                                    incoming = Some(Incoming {
                                        command,
                                        context: pdv.presentation_context_id,
                                        temp,
                                    });
                                }
                                other => anyhow::bail!("unsupported DIMSE command 0x{other:04X}"),
                            }
                        }
                        PDataValueType::Data => {
                            let Some(current) = incoming.as_mut() else {
                                anyhow::bail!("data set without a C-STORE request");
                            };
                            let failed = match &mut current.temp {
                                Ok(temp) => temp.write(&pdv.data).err(),
                                Err(_) => None,
                            };
                            if let Some(e) = failed {
                                // Dropping the temporary file deletes it.
                                current.temp = Err(e.to_string());
                            }
                            if pdv.is_last {
                                if let Some(done) = incoming.take() {
                                    let status = match done.temp {
                                        Ok(temp) => store_instance(handle, temp),
                                        Err(e) => {
                                            warn!(error = %e, "could not write a received instance; answering with a failure status");
                                            dimse::STATUS_OUT_OF_RESOURCES
                                        }
                                    };
                                    let rsp =
                                        dimse::response(&done.command, dimse::C_STORE_RSP, status);
                                    send_command(&mut association, done.context, rsp)?;
                                }
                            }
                        }
                    }
                }
            }
            Pdu::ReleaseRQ => {
                association.send(&Pdu::ReleaseRP)?;
                debug!(calling_ae = %calling, "DICOM association released");
                return Ok(());
            }
            Pdu::AbortRQ { .. } => {
                if let Some(i) = incoming.take() {
                    i.discard();
                }
                return Ok(());
            }
            other => anyhow::bail!("unexpected PDU {other:?}"),
        }
    }
}

/// Stores the received instance durably and returns the C-STORE status to answer with.
fn store_instance(handle: &Handle, temp: store::blob::TempBlob) -> u16 {
    match handle.ingest_temp(temp, "c-store") {
        Ok(Ingested::Stored { .. }) | Ok(Ingested::Duplicate { .. }) => {
            handle.metrics.dicom_instances_received.inc();
            dimse::STATUS_SUCCESS
        }
        Ok(Ingested::Skipped { .. }) | Ok(Ingested::Quarantined { .. }) => {
            dimse::STATUS_CANNOT_UNDERSTAND
        }
        Err(e) => {
            warn!(error = %e, "could not store a received instance; answering with a failure status");
            dimse::STATUS_OUT_OF_RESOURCES
        }
    }
}

fn send_command(
    association: &mut dicom_ul::association::server::ServerAssociation<TcpStream>,
    context: u8,
    bytes: Vec<u8>,
) -> anyhow::Result<()> {
    association.send(&Pdu::PData {
        data: vec![PDataValue {
            presentation_context_id: context,
            value_type: PDataValueType::Command,
            is_last: true,
            data: bytes,
        }],
    })?;
    Ok(())
}
