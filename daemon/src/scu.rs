//! A DICOM SCU over dicom-ul: C-ECHO, and C-STORE of data sets streamed from a reader (a
//! Part 10 file's data set is sent as it lies on disk). The gateway forwards to the hospital
//! PACS with it; the pilot plays a modality with it.

use std::io::Read;
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use dicom_ul::association::client::{ClientAssociation, ClientAssociationOptions};
use dicom_ul::pdu::{PDataValue, PDataValueType, Pdu, PresentationContextResultReason};

use crate::dimse;

/// Explicit VR Little Endian: every SCP accepts it, and anything can be re-encoded into it.
pub const EXPLICIT_VR_LE: &str = "1.2.840.10008.1.2.1";
/// Implicit VR Little Endian: the default every SCP must accept (PS3.5 §10.1).
pub const IMPLICIT_VR_LE: &str = "1.2.840.10008.1.2";

/// Largest command set accepted in a response.
const MAX_COMMAND: usize = 64 * 1024;

/// A remote application entity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// The called AE title.
    pub ae_title: String,
    /// `host:port`.
    pub address: String,
    /// Our AE title.
    pub calling_ae: String,
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.ae_title, self.address)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ScuError {
    #[error("cannot open an association with {peer}: {detail}")]
    Associate { peer: String, detail: String },
    #[error("{peer} accepts no transfer syntax offered for SOP class {sop_class}")]
    NotAccepted { peer: String, sop_class: String },
    #[error("DICOM exchange with {peer} failed: {detail}")]
    Exchange { peer: String, detail: String },
}

/// An open association.
pub struct Association {
    inner: ClientAssociation<TcpStream>,
    peer: String,
    next_message: u16,
}

/// Opens an association proposing, for each SOP class, its transfer syntaxes (preferred
/// first), plus Verification.
pub fn open(
    peer: &Peer,
    proposals: &[(String, Vec<String>)],
    timeout: Duration,
) -> Result<Association, ScuError> {
    let mut options = ClientAssociationOptions::new()
        .calling_ae_title(peer.calling_ae.as_str())
        .called_ae_title(peer.ae_title.as_str())
        .with_presentation_context(dimse::VERIFICATION_SOP_CLASS, vec![IMPLICIT_VR_LE])
        .read_timeout(timeout)
        .write_timeout(timeout)
        .connection_timeout(timeout);
    for (class, syntaxes) in proposals {
        options = options.with_presentation_context(
            class.as_str(),
            syntaxes.iter().map(String::as_str).collect(),
        );
    }
    let inner = options
        .establish(peer.address.as_str())
        .map_err(|e| ScuError::Associate {
            peer: peer.to_string(),
            detail: chain(&e),
        })?;
    Ok(Association {
        inner,
        peer: peer.to_string(),
        next_message: 1,
    })
}

/// C-ECHO: opens an association, verifies, releases.
pub fn echo(peer: &Peer, timeout: Duration) -> Result<(), ScuError> {
    let mut association = open(peer, &[], timeout)?;
    association.echo()?;
    association.release();
    Ok(())
}

impl Association {
    fn failed_at(&self, e: &dyn std::error::Error) -> ScuError {
        self.failed(chain(e))
    }

    fn failed(&self, detail: impl std::fmt::Display) -> ScuError {
        ScuError::Exchange {
            peer: self.peer.clone(),
            detail: detail.to_string(),
        }
    }

    /// The accepted presentation contexts of `sop_class`: (context id, transfer syntax).
    pub fn accepted(&self, sop_class: &str) -> Vec<(u8, String)> {
        self.inner
            .presentation_contexts()
            .iter()
            .filter(|pc| {
                pc.reason == PresentationContextResultReason::Acceptance
                    && pc.abstract_syntax.trim_end_matches('\0') == sop_class
            })
            .map(|pc| (pc.id, pc.transfer_syntax.trim_end_matches('\0').to_owned()))
            .collect()
    }

    fn message_id(&mut self) -> u16 {
        let id = self.next_message;
        self.next_message = self.next_message.wrapping_add(1).max(1);
        id
    }

    fn send_command(&mut self, context: u8, bytes: Vec<u8>) -> Result<(), ScuError> {
        self.inner
            .send(&Pdu::PData {
                data: vec![PDataValue {
                    presentation_context_id: context,
                    value_type: PDataValueType::Command,
                    is_last: true,
                    data: bytes,
                }],
            })
            .map_err(|e| self.failed_at(&e))
    }

    /// Reads P-DATA until a whole command set has arrived: the response.
    fn response(&mut self, expected: u16, message_id: u16) -> Result<dimse::Command, ScuError> {
        let mut bytes = Vec::new();
        loop {
            match self.inner.receive().map_err(|e| self.failed_at(&e))? {
                Pdu::PData { data } => {
                    for pdv in data {
                        if pdv.value_type != PDataValueType::Command {
                            return Err(self.failed("a data set where a response was due"));
                        }
                        bytes.extend_from_slice(&pdv.data);
                        if bytes.len() > MAX_COMMAND {
                            return Err(self.failed("response command set too large"));
                        }
                        if pdv.is_last {
                            let command = dimse::parse(&bytes).map_err(|e| self.failed(e))?;
                            if command.field != expected
                                || command.responds_to.is_some_and(|id| id != message_id)
                            {
                                return Err(self.failed(format!(
                                    "unexpected response 0x{:04X} to message {message_id}",
                                    command.field
                                )));
                            }
                            return Ok(command);
                        }
                    }
                }
                Pdu::AbortRQ { source } => {
                    return Err(
                        self.failed(format!("the peer aborted the association ({source:?})"))
                    )
                }
                other => return Err(self.failed(format!("unexpected PDU {}", pdu_name(&other)))),
            }
        }
    }

    /// C-ECHO on the open association.
    pub fn echo(&mut self) -> Result<(), ScuError> {
        let (context, _) = self
            .accepted(dimse::VERIFICATION_SOP_CLASS)
            .into_iter()
            .next()
            .ok_or_else(|| ScuError::NotAccepted {
                peer: self.peer.clone(),
                sop_class: dimse::VERIFICATION_SOP_CLASS.into(),
            })?;
        let id = self.message_id();
        self.send_command(context, dimse::echo_request(id))?;
        let response = self.response(dimse::C_ECHO_RSP, id)?;
        match response.status {
            Some(dimse::STATUS_SUCCESS) => Ok(()),
            other => Err(self.failed(format!("C-ECHO answered with status {other:?}"))),
        }
    }

    /// C-STORE of the data set read from `dataset`, encoded in the transfer syntax of
    /// `context`; returns the peer's status.
    pub fn store(
        &mut self,
        context: u8,
        sop_class: &str,
        sop_instance: &str,
        dataset: &mut dyn Read,
    ) -> Result<u16, ScuError> {
        let id = self.message_id();
        self.send_command(context, dimse::store_request(id, sop_class, sop_instance))?;
        let mut writer = self.inner.send_pdata(context);
        match std::io::copy(dataset, &mut writer) {
            Ok(_) => writer.finish().map_err(|e| self.failed(e))?,
            Err(e) => {
                // Never let the peer take a cut data set for a whole one: no last fragment is
                // sent, and the caller drops the association.
                writer.abandon();
                return Err(self.failed(format!("reading the data set to send: {e}")));
            }
        }
        let response = self.response(dimse::C_STORE_RSP, id)?;
        response
            .status
            .ok_or_else(|| self.failed("C-STORE response without a status"))
    }

    /// Releases the association (an error only means the peer hung up first).
    pub fn release(self) {
        let _ = self.inner.release();
    }
}

/// An error with its causes: dicom-ul's own messages ("could not connect to server") say
/// what failed, their sources say why ("Connection refused").
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

fn pdu_name(pdu: &Pdu) -> &'static str {
    match pdu {
        Pdu::ReleaseRQ => "A-RELEASE-RQ",
        Pdu::ReleaseRP => "A-RELEASE-RP",
        Pdu::AssociationRQ(_) => "A-ASSOCIATE-RQ",
        Pdu::AssociationAC(_) => "A-ASSOCIATE-AC",
        Pdu::AssociationRJ(_) => "A-ASSOCIATE-RJ",
        _ => "PDU",
    }
}

/// C-STORE of Part 10 files as they are (each in its own transfer syntax, which the peer
/// must accept), in one association; the first failure stops the sending. Returns how many
/// were stored.
pub fn store_files(peer: &Peer, files: &[&Path], timeout: Duration) -> Result<usize, ScuError> {
    let io = |e: std::io::Error| ScuError::Exchange {
        peer: peer.to_string(),
        detail: e.to_string(),
    };
    let mut summaries = Vec::with_capacity(files.len());
    for path in files {
        let s = store::dicom::summarize(path).map_err(|e| ScuError::Exchange {
            peer: peer.to_string(),
            detail: format!("{}: {e}", path.display()),
        })?;
        summaries.push(s);
    }
    let mut proposals: Vec<(String, Vec<String>)> = Vec::new();
    for s in &summaries {
        match proposals.iter_mut().find(|(c, _)| *c == s.sop_class_uid) {
            Some((_, ts)) if !ts.contains(&s.transfer_syntax) => ts.push(s.transfer_syntax.clone()),
            Some(_) => {}
            None => proposals.push((s.sop_class_uid.clone(), vec![s.transfer_syntax.clone()])),
        }
    }
    let mut association = open(peer, &proposals, timeout)?;
    for (path, s) in files.iter().zip(&summaries) {
        let context = association
            .accepted(&s.sop_class_uid)
            .into_iter()
            .find(|(_, ts)| *ts == s.transfer_syntax)
            .map(|(id, _)| id)
            .ok_or_else(|| ScuError::NotAccepted {
                peer: peer.to_string(),
                sop_class: s.sop_class_uid.clone(),
            })?;
        let mut reader = store::dicom::data_set(path, s).map_err(io)?;
        let status =
            association.store(context, &s.sop_class_uid, &s.sop_instance_uid, &mut reader)?;
        if !dimse::stored(status) {
            return Err(ScuError::Exchange {
                peer: peer.to_string(),
                detail: format!(
                    "C-STORE of {} answered 0x{status:04X} ({})",
                    path.display(),
                    dimse::status_text(status)
                ),
            });
        }
    }
    association.release();
    Ok(files.len())
}
