//! Object bytes in blocks, for sending them compressed (`docs/protocol.md`, "Compressed
//! object streams").
//!
//! When the agent offers an encoding and the gateway accepts it, the object's bytes from the
//! accepted offset travel as blocks: a 9-byte header (kind, length of the original bytes,
//! length on the wire, both big-endian `u32`), then the block's bytes. Each block holds at most
//! [`MAX_BLOCK`] original bytes and is compressed on its own, so the transfer can resume at any
//! block boundary the gateway committed, and neither end holds more than one block. A block
//! that would not shrink goes as it is (kind [`Kind::Raw`]).
//!
//! What to compress is decided here, from what the agent knows: the transfer syntax (pixel
//! data that is already compressed never shrinks again), a sample block (uncompressed pixels
//! of noise do not shrink either), and the link's rate (a line faster than the compressor
//! would only wait for it).

use serde::{Deserialize, Serialize};

/// The encodings an object stream can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// Blocks compressed with zstd, each a complete zstd frame.
    Zstd,
}

/// Most original bytes in one block.
pub const MAX_BLOCK: u32 = 256 * 1024;

/// Most bytes one block may take on the wire: zstd's worst case for [`MAX_BLOCK`] is a little
/// over the input; anything larger is a protocol error.
pub const MAX_WIRE_BLOCK: u32 = MAX_BLOCK + MAX_BLOCK / 64 + 1024;

pub const HEADER_LEN: usize = 9;

/// How a block's bytes are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The original bytes as they are.
    Raw = 0,
    /// One zstd frame.
    Zstd = 1,
}

/// A block's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub kind: Kind,
    /// Original bytes in the block.
    pub raw_len: u32,
    /// Bytes that follow the header.
    pub wire_len: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    #[error("unknown block kind {0}; the agent speaks a newer protocol than this gateway")]
    UnknownKind(u8),
    #[error("block of {raw} original bytes exceeds the {MAX_BLOCK}-byte limit")]
    TooLarge { raw: u32 },
    #[error("block of {wire} bytes on the wire for {raw} original bytes is out of bounds")]
    BadWireLength { raw: u32, wire: u32 },
    #[error("a block holds {got} original bytes where its header declares {declared}")]
    LengthMismatch { declared: u32, got: usize },
    #[error("a block does not decompress: {0}")]
    Corrupt(String),
}

impl Header {
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0] = self.kind as u8;
        out[1..5].copy_from_slice(&self.raw_len.to_be_bytes());
        out[5..9].copy_from_slice(&self.wire_len.to_be_bytes());
        out
    }

    /// Reads and checks a header: a peer cannot make the reader allocate past the bounds.
    pub fn decode(bytes: &[u8; HEADER_LEN]) -> Result<Self, BlockError> {
        let kind = match bytes[0] {
            0 => Kind::Raw,
            1 => Kind::Zstd,
            other => return Err(BlockError::UnknownKind(other)),
        };
        let raw_len = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
        let wire_len = u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]);
        if raw_len == 0 || raw_len > MAX_BLOCK {
            return Err(BlockError::TooLarge { raw: raw_len });
        }
        let fits = match kind {
            Kind::Raw => wire_len == raw_len,
            Kind::Zstd => wire_len > 0 && wire_len <= MAX_WIRE_BLOCK,
        };
        if !fits {
            return Err(BlockError::BadWireLength {
                raw: raw_len,
                wire: wire_len,
            });
        }
        Ok(Self {
            kind,
            raw_len,
            wire_len,
        })
    }
}

/// Transfer syntaxes whose pixel data is stored as it is (PS3.5 §A.1–A.3, and the deflated
/// one, whose data set is compressed as a whole already: PS3.5 §A.5).
const UNCOMPRESSED: [&str; 3] = [
    "1.2.840.10008.1.2",   // Implicit VR Little Endian
    "1.2.840.10008.1.2.1", // Explicit VR Little Endian
    "1.2.840.10008.1.2.2", // Explicit VR Big Endian (retired)
];

/// Whether an object with this transfer syntax may be worth compressing. `None` (not DICOM,
/// or not known) is left to the sample: a PDF or a photo shows it does not shrink.
pub fn may_compress(transfer_syntax: Option<&str>) -> bool {
    transfer_syntax.is_none_or(|ts| UNCOMPRESSED.contains(&ts.trim_end_matches('\0').trim()))
}

/// Whether a sample of `raw` bytes that compressed to `compressed` shrank enough (10 %) to be
/// worth the work at both ends.
pub fn worth_it(raw: usize, compressed: usize) -> bool {
    (compressed as u64) * 10 <= (raw as u64) * 9
}

/// Above this estimated link rate (bytes per second) the agent sends raw: zstd's fastest
/// level compresses a few hundred MB/s per core, and a line this fast gains less from fewer
/// bytes than it loses waiting for the compressor (a LAN, or loopback in tests). Clinic lines
/// of 2–20 Mbit/s are far below it.
pub const FAST_LINK_BYTES_PER_SEC: f64 = 12.5e6;

/// Whether to offer compression over a link delivering `bytes_per_sec` (as its congestion
/// window over its round trip estimates it).
pub fn link_is_slow(bytes_per_sec: f64) -> bool {
    bytes_per_sec < FAST_LINK_BYTES_PER_SEC
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip() {
        for h in [
            Header {
                kind: Kind::Raw,
                raw_len: MAX_BLOCK,
                wire_len: MAX_BLOCK,
            },
            Header {
                kind: Kind::Zstd,
                raw_len: 1,
                wire_len: 13,
            },
        ] {
            assert_eq!(Header::decode(&h.encode()), Ok(h));
        }
    }

    #[test]
    fn a_header_past_the_bounds_is_refused_before_anything_is_allocated() {
        let bad = |kind: u8, raw: u32, wire: u32| {
            let mut b = [0u8; HEADER_LEN];
            b[0] = kind;
            b[1..5].copy_from_slice(&raw.to_be_bytes());
            b[5..9].copy_from_slice(&wire.to_be_bytes());
            Header::decode(&b)
        };
        assert_eq!(bad(7, 1, 1), Err(BlockError::UnknownKind(7)));
        assert_eq!(
            bad(1, u32::MAX, 10),
            Err(BlockError::TooLarge { raw: u32::MAX })
        );
        assert_eq!(bad(0, 0, 0), Err(BlockError::TooLarge { raw: 0 }));
        assert!(matches!(
            bad(0, 10, 11),
            Err(BlockError::BadWireLength { .. })
        ));
        assert!(matches!(
            bad(1, 10, MAX_WIRE_BLOCK + 1),
            Err(BlockError::BadWireLength { .. })
        ));
    }

    #[test]
    fn compressed_transfer_syntaxes_are_never_compressed_again() {
        assert!(may_compress(Some("1.2.840.10008.1.2.1")));
        assert!(may_compress(Some("1.2.840.10008.1.2\0")));
        assert!(may_compress(None));
        for compressed in [
            "1.2.840.10008.1.2.4.50",  // JPEG baseline
            "1.2.840.10008.1.2.4.70",  // JPEG lossless
            "1.2.840.10008.1.2.4.80",  // JPEG-LS lossless
            "1.2.840.10008.1.2.4.90",  // JPEG 2000 lossless
            "1.2.840.10008.1.2.5",     // RLE
            "1.2.840.10008.1.2.4.102", // MPEG-4
            "1.2.840.10008.1.2.1.99",  // deflated
        ] {
            assert!(!may_compress(Some(compressed)), "{compressed}");
        }
    }

    #[test]
    fn a_sample_must_shrink_by_a_tenth() {
        assert!(worth_it(1000, 900));
        assert!(!worth_it(1000, 901));
        assert!(link_is_slow(20e6 / 8.0));
        assert!(!link_is_slow(1e9));
    }
}
