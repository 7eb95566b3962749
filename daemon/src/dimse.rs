//! DIMSE command sets (DICOM PS3.7 §9.3, §E): always Implicit VR Little Endian, small, and
//! parsed here without a general parser. C-ECHO and C-STORE only: requests for the gateway's
//! forwarding (and the pilot's modality), responses for the agent's SCP.

use std::collections::HashMap;

pub const C_STORE_RQ: u16 = 0x0001;
pub const C_STORE_RSP: u16 = 0x8001;
pub const C_ECHO_RQ: u16 = 0x0030;
pub const C_ECHO_RSP: u16 = 0x8030;
/// (0000,0800) value meaning "no data set follows".
pub const NO_DATA_SET: u16 = 0x0101;

pub const STATUS_SUCCESS: u16 = 0x0000;
/// Refused: out of resources (PS3.4 Annex B.2.3).
pub const STATUS_OUT_OF_RESOURCES: u16 = 0xA700;
/// Error: cannot understand.
pub const STATUS_CANNOT_UNDERSTAND: u16 = 0xC000;

const AFFECTED_SOP_CLASS: u16 = 0x0002;
const COMMAND_FIELD: u16 = 0x0100;
const MESSAGE_ID: u16 = 0x0110;
const MESSAGE_ID_RESPONDED: u16 = 0x0120;
const DATA_SET_TYPE: u16 = 0x0800;
const PRIORITY: u16 = 0x0700;
const STATUS: u16 = 0x0900;
const AFFECTED_SOP_INSTANCE: u16 = 0x1000;

/// A received command set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub field: u16,
    pub message_id: u16,
    pub sop_class: String,
    pub sop_instance: String,
    /// True when a data set follows (C-STORE-RQ).
    pub has_data_set: bool,
    /// The status of a response.
    pub status: Option<u16>,
    /// The request a response answers.
    pub responds_to: Option<u16>,
}

/// Parses a command set; the error names what is wrong.
pub fn parse(bytes: &[u8]) -> Result<Command, String> {
    let mut values: HashMap<u16, &[u8]> = HashMap::new();
    let mut pos = 0usize;
    while pos < bytes.len() {
        let header = bytes
            .get(pos..pos + 8)
            .ok_or("command set ends inside an element header")?;
        let group = u16::from_le_bytes([header[0], header[1]]);
        let element = u16::from_le_bytes([header[2], header[3]]);
        let len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
        pos += 8;
        if group != 0x0000 {
            return Err(format!(
                "command set holds element ({group:04X},{element:04X}) outside group 0000"
            ));
        }
        let value = bytes
            .get(
                pos..pos
                    .checked_add(len)
                    .ok_or("command element length overflows")?,
            )
            .ok_or_else(|| {
                format!(
                    "command element (0000,{element:04X}) declares {len} bytes, more than remain"
                )
            })?;
        values.insert(element, value);
        pos += len;
    }
    let us = |e: u16| -> Result<u16, String> {
        let v = values
            .get(&e)
            .ok_or_else(|| format!("command set lacks (0000,{e:04X})"))?;
        if v.len() != 2 {
            return Err(format!("(0000,{e:04X}) is not a 2-byte US"));
        }
        Ok(u16::from_le_bytes([v[0], v[1]]))
    };
    let ui = |e: u16| -> String {
        values
            .get(&e)
            .map(|v| {
                String::from_utf8_lossy(v)
                    .trim_end_matches(['\0', ' '])
                    .to_owned()
            })
            .unwrap_or_default()
    };
    Ok(Command {
        field: us(COMMAND_FIELD)?,
        message_id: us(MESSAGE_ID).unwrap_or(0),
        sop_class: ui(AFFECTED_SOP_CLASS),
        sop_instance: ui(AFFECTED_SOP_INSTANCE),
        has_data_set: us(DATA_SET_TYPE).map(|t| t != NO_DATA_SET).unwrap_or(false),
        status: us(STATUS).ok(),
        responds_to: us(MESSAGE_ID_RESPONDED).ok(),
    })
}

/// The command group with its group length first (PS3.7 §E.1).
fn with_group_length(body: Vec<u8>) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 12);
    push(&mut out, 0x0000, &(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// A C-ECHO-RQ.
pub fn echo_request(message_id: u16) -> Vec<u8> {
    let mut body = Vec::new();
    push(&mut body, AFFECTED_SOP_CLASS, &uid(VERIFICATION_SOP_CLASS));
    push(&mut body, COMMAND_FIELD, &C_ECHO_RQ.to_le_bytes());
    push(&mut body, MESSAGE_ID, &message_id.to_le_bytes());
    push(&mut body, DATA_SET_TYPE, &NO_DATA_SET.to_le_bytes());
    with_group_length(body)
}

/// A C-STORE-RQ at medium priority; the data set follows.
pub fn store_request(message_id: u16, sop_class: &str, sop_instance: &str) -> Vec<u8> {
    let mut body = Vec::new();
    push(&mut body, AFFECTED_SOP_CLASS, &uid(sop_class));
    push(&mut body, COMMAND_FIELD, &C_STORE_RQ.to_le_bytes());
    push(&mut body, MESSAGE_ID, &message_id.to_le_bytes());
    push(&mut body, PRIORITY, &0u16.to_le_bytes());
    push(&mut body, DATA_SET_TYPE, &0u16.to_le_bytes());
    push(&mut body, AFFECTED_SOP_INSTANCE, &uid(sop_instance));
    with_group_length(body)
}

/// The Verification SOP Class (C-ECHO).
pub const VERIFICATION_SOP_CLASS: &str = "1.2.840.10008.1.1";

/// Whether a C-STORE status means the peer holds the instance: success; a warning (PS3.4
/// B.2.3: coercion, elements discarded, data set does not match the SOP class; PS3.7 C:
/// attribute list error, value out of range), which still stores it; or "duplicate SOP
/// instance" (0111), which a PACS answers when it already has it (a resend after a crash).
pub fn stored(status: u16) -> bool {
    matches!(status, STATUS_SUCCESS | 0x0001 | 0x0107 | 0x0111 | 0x0116)
        || status & 0xF000 == 0xB000
}

/// A C-STORE status for people (PS3.4 B.2.3, PS3.7 C).
pub fn status_text(status: u16) -> &'static str {
    match status {
        STATUS_SUCCESS => "success",
        0x0001 | 0x0107 | 0x0116 | 0xB000..=0xBFFF => "warning (stored)",
        0x0111 => "duplicate: the peer already holds this instance",
        0xA700..=0xA7FF => "refused: out of resources",
        0xA900..=0xA9FF => "error: data set does not match the SOP class",
        0xC000..=0xCFFF => "error: cannot understand",
        0x0122 => "refused: SOP class not supported",
        0x0124 => "refused: not authorized",
        0x0211 => "unrecognized operation",
        0x0212 => "mistyped argument",
        0x0117 => "invalid object instance",
        0x0110 => "processing failure",
        _ => "failure",
    }
}

fn push(out: &mut Vec<u8>, element: u16, value: &[u8]) {
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&element.to_le_bytes());
    out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    out.extend_from_slice(value);
}

fn uid(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    if v.len() % 2 == 1 {
        v.push(0);
    }
    v
}

/// Encodes a response to `request` with `field` (e.g. C-STORE-RSP) and `status`, with the
/// command group length first (PS3.7 §E.1).
pub fn response(request: &Command, field: u16, status: u16) -> Vec<u8> {
    let mut body = Vec::new();
    if !request.sop_class.is_empty() {
        push(&mut body, AFFECTED_SOP_CLASS, &uid(&request.sop_class));
    }
    push(&mut body, COMMAND_FIELD, &field.to_le_bytes());
    push(
        &mut body,
        MESSAGE_ID_RESPONDED,
        &request.message_id.to_le_bytes(),
    );
    push(&mut body, DATA_SET_TYPE, &NO_DATA_SET.to_le_bytes());
    push(&mut body, STATUS, &status.to_le_bytes());
    if !request.sop_instance.is_empty() {
        push(
            &mut body,
            AFFECTED_SOP_INSTANCE,
            &uid(&request.sop_instance),
        );
    }
    with_group_length(body)
}

/// The 128-byte preamble, `DICM` and the file meta group (PS3.10 §7.1) for an instance
/// received over the network in `transfer_syntax`.
pub fn file_header(sop_class: &str, sop_instance: &str, transfer_syntax: &str) -> Vec<u8> {
    fn explicit(out: &mut Vec<u8>, element: u16, vr: &[u8; 2], value: &[u8]) {
        out.extend_from_slice(&0x0002u16.to_le_bytes());
        out.extend_from_slice(&element.to_le_bytes());
        out.extend_from_slice(vr);
        if vr == b"OB" {
            out.extend_from_slice(&[0, 0]);
            out.extend_from_slice(&(value.len() as u32).to_le_bytes());
        } else {
            out.extend_from_slice(&(value.len() as u16).to_le_bytes());
        }
        out.extend_from_slice(value);
    }
    let mut name = b"TPG_AGENT".to_vec();
    name.push(b' ');
    let mut group = Vec::new();
    explicit(&mut group, 0x0001, b"OB", &[0, 1]);
    explicit(&mut group, 0x0002, b"UI", &uid(sop_class));
    explicit(&mut group, 0x0003, b"UI", &uid(sop_instance));
    explicit(&mut group, 0x0010, b"UI", &uid(transfer_syntax));
    explicit(&mut group, 0x0012, b"UI", &uid(IMPLEMENTATION_CLASS_UID));
    explicit(&mut group, 0x0013, b"SH", &name);
    let mut out = vec![0u8; 128];
    out.extend_from_slice(b"DICM");
    explicit(&mut out, 0x0000, b"UL", &(group.len() as u32).to_le_bytes());
    out.extend_from_slice(&group);
    out
}

/// This implementation's class UID (2.25 root, derived from a fixed UUID).
pub const IMPLEMENTATION_CLASS_UID: &str = "2.25.302051216519364287146227632218150735451";

#[cfg(test)]
mod tests {
    use super::*;

    fn request(field: u16, with_data: bool) -> Vec<u8> {
        let mut b = Vec::new();
        push(
            &mut b,
            AFFECTED_SOP_CLASS,
            &uid("1.2.840.10008.5.1.4.1.1.2"),
        );
        push(&mut b, COMMAND_FIELD, &field.to_le_bytes());
        push(&mut b, MESSAGE_ID, &7u16.to_le_bytes());
        push(
            &mut b,
            DATA_SET_TYPE,
            &(if with_data { 0x0000u16 } else { NO_DATA_SET }).to_le_bytes(),
        );
        push(&mut b, AFFECTED_SOP_INSTANCE, &uid("1.2.3.4.5"));
        b
    }

    #[test]
    fn parses_a_store_request_and_answers_with_its_message_id() {
        let cmd = parse(&request(C_STORE_RQ, true)).unwrap();
        assert_eq!(cmd.field, C_STORE_RQ);
        assert_eq!(cmd.message_id, 7);
        assert_eq!(cmd.sop_instance, "1.2.3.4.5");
        assert!(cmd.has_data_set);
        let rsp = parse(&response(&cmd, C_STORE_RSP, STATUS_SUCCESS)).unwrap();
        assert_eq!(rsp.field, C_STORE_RSP);
        assert!(!rsp.has_data_set);
        assert_eq!(rsp.sop_instance, "1.2.3.4.5");
        assert_eq!(
            (rsp.status, rsp.responds_to),
            (Some(STATUS_SUCCESS), Some(7))
        );
    }

    #[test]
    fn requests_parse_back_as_what_they_ask() {
        let store = parse(&store_request(9, "1.2.840.10008.5.1.4.1.1.2", "1.2.3")).unwrap();
        assert_eq!(store.field, C_STORE_RQ);
        assert_eq!(store.message_id, 9);
        assert!(store.has_data_set);
        assert_eq!(
            (store.sop_class.as_str(), store.sop_instance.as_str()),
            ("1.2.840.10008.5.1.4.1.1.2", "1.2.3")
        );
        let echo = parse(&echo_request(3)).unwrap();
        assert_eq!((echo.field, echo.has_data_set), (C_ECHO_RQ, false));
        assert!(stored(0) && stored(0xB007) && stored(0x0111));
        assert!(!stored(0xA700) && !stored(0xC000) && !stored(0x0122));
    }

    #[test]
    fn malformed_command_sets_are_errors() {
        assert!(parse(&[1, 2, 3]).is_err());
        let mut b = request(C_ECHO_RQ, false);
        b[4] = 0xff;
        b[5] = 0xff;
        assert!(parse(&b).unwrap_err().contains("more than remain"));
        let mut b = Vec::new();
        push(&mut b, MESSAGE_ID, &1u16.to_le_bytes());
        assert!(parse(&b).unwrap_err().contains("lacks (0000,0100)"));
    }
}
