//! Control-stream frames and their framing: a 4-byte big-endian length, then that many bytes
//! of UTF-8 JSON with a `type` field (`docs/protocol.md`, "Control stream").
//!
//! JSON keeps the control stream readable in a packet capture and easy to implement twice;
//! bulk bytes travel on their own streams and never pass through this codec.

use serde::{Deserialize, Serialize};

/// Largest control frame body accepted; anything bigger is a protocol error, so a peer
/// speaking garbage cannot make us allocate without bound.
pub const MAX_FRAME_LEN: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ControlFrame {
    /// First frame from the agent. Frozen: also sent on the discovery ALPN.
    Hello {
        major: u32,
        minor: u32,
        /// The agent's software version, for the admin board.
        agent_version: String,
    },
    /// The gateway's answer when the versions match.
    Welcome {
        major: u32,
        minor: u32,
        gateway_version: String,
        /// The clinic id read from the agent's certificate: what the gateway knows it as.
        clinic: String,
    },
    /// The gateway's answer on the discovery ALPN. Frozen.
    VersionMismatch {
        gateway_majors: Vec<u32>,
        agent_major: u32,
    },
    /// Heartbeat request; either side sends them.
    Ping { seq: u64 },
    /// Heartbeat answer, echoing the ping's sequence number.
    Pong { seq: u64 },
    /// First frame of an object stream (agent): the object's SHA-256 and size. After the
    /// gateway's `accept`, the agent sends the object's bytes from the accepted offset to the
    /// end, as raw bytes or in the encoding both agreed on, and finishes the stream.
    Offer {
        object: crate::sync::ObjectId,
        size: u64,
        /// The DICOM study the object belongs to and how many instances of it the clinic
        /// holds now, so the gateway can tell a complete study from a partial one (minor
        /// version addition: absent from older agents).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        study: Option<StudyHint>,
        /// The encoding the agent would like to send the bytes in (minor version addition:
        /// an older gateway ignores it and answers without one, and gets raw bytes).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        encoding: Option<crate::sync::block::Encoding>,
    },
    /// The gateway's answer to `offer`: send the bytes from `offset` (its durable offset), in
    /// `encoding` when it names the one offered, else raw.
    Accept {
        object: crate::sync::ObjectId,
        offset: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        encoding: Option<crate::sync::block::Encoding>,
    },
    /// The gateway stored the object durably (fsynced and indexed); the agent may mark it
    /// delivered. Also the answer to an offer of an object the gateway already holds.
    Receipt { object: crate::sync::ObjectId },
    /// The received bytes do not hash to the object id: the partial is discarded and the
    /// agent must send the object again from offset 0.
    Mismatch { object: crate::sync::ObjectId },
    /// First frame of an events stream, from each side: the highest sequence number of the
    /// other side's consultation events it holds for this clinic. Each side then sends its own
    /// events after the peer's `have`, and new ones as they are appended.
    Replicate {
        have: u64,
        /// The highest of its own events the sender holds (minor version addition). A gateway
        /// restored from a backup holds fewer than its clinic: the clinic sends the missing
        /// ones back first, sealed as the gateway wrote them.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        own: Option<u64>,
        /// Sent by a gateway restored from a backup (minor version addition): the agent puts
        /// every object it has delivered back in its outbox, answers `reoffered` once that is
        /// durable, and the gateway receipts at once those it holds.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        reoffer: bool,
    },
    /// The agent's answer to `reoffer` on the events stream: its delivered objects are back in
    /// its outbox, durably (minor version addition).
    Reoffered,
    /// One consultation event on an events stream.
    Event { event: Box<crate::consult::Event> },
    /// The agent's account of what it still has to send, every few seconds on the control
    /// stream (minor version addition), for the hospital's link board.
    Backlog(Backlog),
    /// The specialties the hospital's roster routes, with the names doctors read, on the
    /// control stream when the link comes up and whenever the roster changes (gateway, minor
    /// version 2). The agent keeps the last list, so its form works offline.
    Specialties { list: Vec<Specialty> },
    /// A frame type from a newer minor version; ignored.
    #[serde(other)]
    Unknown,
}

/// What an agent has not delivered yet.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Backlog {
    pub items: u64,
    pub bytes: u64,
    /// Age of the oldest undelivered item.
    #[serde(default)]
    pub oldest_pending_secs: Option<u64>,
    /// Age of the oldest undelivered emergency item.
    #[serde(default)]
    pub oldest_emergency_secs: Option<u64>,
    /// Files the agent refused and set aside.
    #[serde(default)]
    pub quarantined: u64,
}

/// A specialty a consultation can ask for: the id the request carries, and its names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Specialty {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zh: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub en: Option<String>,
}

/// At most this many specialties in a list, and this many characters in an id or a name.
pub const MAX_SPECIALTIES: usize = 200;
pub const MAX_SPECIALTY_NAME: usize = 64;

impl Specialty {
    /// Its name in Chinese (`zh == true`) or English, the other when it has only one, else its
    /// id.
    pub fn name(&self, zh: bool) -> &str {
        let (first, second) = if zh {
            (&self.zh, &self.en)
        } else {
            (&self.en, &self.zh)
        };
        first.as_deref().or(second.as_deref()).unwrap_or(&self.id)
    }

    /// Whether a peer's entry can be kept: a non-empty id, names of bounded length, no control
    /// characters.
    pub fn is_sane(&self) -> bool {
        let ok = |s: &str| {
            !s.trim().is_empty()
                && s.chars().count() <= MAX_SPECIALTY_NAME
                && !s.chars().any(char::is_control)
        };
        ok(&self.id) && self.zh.as_deref().is_none_or(ok) && self.en.as_deref().is_none_or(ok)
    }
}

/// A study and the number of its instances the clinic holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StudyHint {
    pub uid: String,
    pub instances: u32,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("control frame of {0} bytes exceeds the {MAX_FRAME_LEN}-byte limit; the peer is not speaking this protocol")]
    TooLarge(usize),
    #[error("control frame is not valid JSON for this protocol: {0}")]
    Malformed(String),
}

impl ControlFrame {
    /// The frame's type, for messages and logs: never its contents (an event carries
    /// patient data).
    pub fn name(&self) -> &'static str {
        match self {
            ControlFrame::Hello { .. } => "hello",
            ControlFrame::Welcome { .. } => "welcome",
            ControlFrame::VersionMismatch { .. } => "version_mismatch",
            ControlFrame::Ping { .. } => "ping",
            ControlFrame::Pong { .. } => "pong",
            ControlFrame::Offer { .. } => "offer",
            ControlFrame::Accept { .. } => "accept",
            ControlFrame::Receipt { .. } => "receipt",
            ControlFrame::Mismatch { .. } => "mismatch",
            ControlFrame::Replicate { .. } => "replicate",
            ControlFrame::Reoffered => "reoffered",
            ControlFrame::Event { .. } => "event",
            ControlFrame::Backlog(_) => "backlog",
            ControlFrame::Specialties { .. } => "specialties",
            ControlFrame::Unknown => "unknown",
        }
    }
}

impl ControlFrame {
    /// Encodes the frame with its length prefix.
    pub fn encode(&self) -> Vec<u8> {
        // Serialising these plain enums to JSON cannot fail: no maps with non-string keys.
        let body = serde_json::to_vec(self).unwrap_or_default();
        let len = u32::try_from(body.len()).unwrap_or(u32::MAX);
        let mut out = Vec::with_capacity(4 + body.len());
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&body);
        out
    }
}

/// Bytes of the length prefix in front of every frame body.
pub const LEN_PREFIX: usize = 4;

/// The length, prefix included, of the frame at the start of `buf` once all of it is there;
/// `Ok(None)` while bytes are missing. A prefix over [`MAX_FRAME_LEN`] is an error as soon as
/// it arrives, before anything is buffered for it.
pub fn whole_frame_len(buf: &[u8]) -> Result<Option<usize>, FrameError> {
    let Some(prefix) = buf.first_chunk::<LEN_PREFIX>() else {
        return Ok(None);
    };
    let len = u32::from_be_bytes(*prefix) as usize;
    if len > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge(len));
    }
    Ok((buf.len() >= LEN_PREFIX + len).then_some(LEN_PREFIX + len))
}

/// Reads a frame body (the bytes after the length prefix).
pub fn parse_body(body: &[u8]) -> Result<ControlFrame, FrameError> {
    serde_json::from_slice(body).map_err(|e| FrameError::Malformed(e.to_string()))
}

/// Collects bytes from a stream and cuts them into frames.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buf: Vec<u8>,
}

impl FrameDecoder {
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete frame, `Ok(None)` when more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<ControlFrame>, FrameError> {
        let Some(len) = whole_frame_len(&self.buf)? else {
            return Ok(None);
        };
        let frame = parse_body(&self.buf[LEN_PREFIX..len]);
        self.buf.drain(..len);
        frame.map(Some)
    }

    /// Takes the bytes after the last complete frame: on an object stream, the raw object
    /// bytes that follow the `offer` frame.
    pub fn take_remaining(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }

    /// Bytes received but not yet part of a complete frame.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_frames() -> Vec<ControlFrame> {
        vec![
            ControlFrame::Hello {
                major: 1,
                minor: 0,
                agent_version: "0.1.0".into(),
            },
            ControlFrame::Welcome {
                major: 1,
                minor: 0,
                gateway_version: "0.1.0".into(),
                clinic: "jinzhou".into(),
            },
            ControlFrame::VersionMismatch {
                gateway_majors: vec![1],
                agent_major: 2,
            },
            ControlFrame::Ping { seq: 7 },
            ControlFrame::Pong { seq: u64::MAX },
            ControlFrame::Replicate {
                have: 12,
                own: None,
                reoffer: false,
            },
            ControlFrame::Replicate {
                have: 3,
                own: Some(9),
                reoffer: true,
            },
            ControlFrame::Reoffered,
            ControlFrame::Backlog(Backlog {
                items: 3,
                bytes: 1 << 40,
                oldest_pending_secs: Some(90),
                oldest_emergency_secs: None,
                quarantined: 1,
            }),
        ]
    }

    #[test]
    fn frames_survive_being_split_at_every_byte() {
        let wire: Vec<u8> = all_frames().iter().flat_map(|f| f.encode()).collect();
        for split in 0..wire.len() {
            let mut dec = FrameDecoder::default();
            let mut got = Vec::new();
            for part in [&wire[..split], &wire[split..]] {
                dec.push(part);
                while let Some(f) = dec.next_frame().unwrap() {
                    got.push(f);
                }
            }
            assert_eq!(got, all_frames(), "split at {split}");
            assert_eq!(dec.pending(), 0);
        }
    }

    #[test]
    fn wire_form_is_documented_json() {
        let bytes = ControlFrame::Ping { seq: 3 }.encode();
        assert_eq!(&bytes[..4], &[0, 0, 0, 23]);
        assert_eq!(&bytes[4..], br#"{"type":"ping","seq":3}"#);
        // The backlog's fields sit beside its type, as docs/protocol.md shows them.
        let bytes = ControlFrame::Backlog(Backlog {
            items: 2,
            bytes: 10,
            ..Backlog::default()
        })
        .encode();
        assert_eq!(
            &bytes[4..],
            br#"{"type":"backlog","items":2,"bytes":10,"oldest_pending_secs":null,"oldest_emergency_secs":null,"quarantined":0}"#
        );
    }

    #[test]
    fn offers_round_trip_with_and_without_the_study_hint() {
        let id = crate::sync::ObjectId::parse(&"ab".repeat(32)).unwrap();
        for study in [
            None,
            Some(StudyHint {
                uid: "1.2.3".into(),
                instances: 7,
            }),
        ] {
            let frame = ControlFrame::Offer {
                object: id.clone(),
                size: 9,
                study,
                encoding: Some(crate::sync::block::Encoding::Zstd),
            };
            let mut dec = FrameDecoder::default();
            dec.push(&frame.encode());
            assert_eq!(dec.next_frame(), Ok(Some(frame)));
        }
        // An older agent's offer has no "study" field.
        let body = format!(
            r#"{{"type":"offer","object":"{}","size":9}}"#,
            "ab".repeat(32)
        );
        let mut dec = FrameDecoder::default();
        dec.push(&(body.len() as u32).to_be_bytes());
        dec.push(body.as_bytes());
        assert!(matches!(
            dec.next_frame(),
            Ok(Some(ControlFrame::Offer {
                study: None,
                encoding: None,
                ..
            }))
        ));
    }

    #[test]
    fn unknown_frame_types_are_tolerated() {
        let body = br#"{"type":"from_the_future","x":1}"#;
        let mut dec = FrameDecoder::default();
        dec.push(&(body.len() as u32).to_be_bytes());
        dec.push(body);
        assert_eq!(dec.next_frame(), Ok(Some(ControlFrame::Unknown)));
    }

    #[test]
    fn garbage_and_oversized_frames_are_errors_not_panics() {
        let mut dec = FrameDecoder::default();
        dec.push(&[0xff, 0xff, 0xff, 0xff]);
        assert_eq!(
            dec.next_frame(),
            Err(FrameError::TooLarge(u32::MAX as usize))
        );

        let mut dec = FrameDecoder::default();
        dec.push(&[0, 0, 0, 3, b'{', 0xc3, b'}']);
        assert!(matches!(dec.next_frame(), Err(FrameError::Malformed(_))));

        let mut dec = FrameDecoder::default();
        dec.push(&[0, 0, 0, 9]);
        dec.push(br#"{"seq":1}"#);
        assert!(matches!(dec.next_frame(), Err(FrameError::Malformed(_))));
    }
}
