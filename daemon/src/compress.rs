//! zstd for object blocks (`proto::sync::block`): the agent compresses a block when it shrinks
//! enough, the gateway checks each block against its header while decompressing it, so a
//! block can never expand past the bounds the header was checked against.

use proto::sync::block::{worth_it, BlockError, Header, Kind};

/// zstd's default level: on CT pixels it gets nearly all the compression of the slower levels
/// at a few hundred MB/s, far above any clinic line.
pub const LEVEL: i32 = 3;

/// One block ready to send: the header and the bytes that follow it.
#[derive(Debug)]
pub struct Encoded {
    pub header: Header,
    pub bytes: bytes::Bytes,
}

/// Encodes `raw` (at most `MAX_BLOCK` bytes) as a zstd block when `compress` is asked and it
/// shrinks by a tenth, else as a raw block.
pub fn encode(raw: bytes::Bytes, compress: bool) -> Encoded {
    let raw_len = u32::try_from(raw.len()).unwrap_or(u32::MAX);
    if compress {
        if let Ok(packed) = zstd::bulk::compress(&raw, LEVEL) {
            if worth_it(raw.len(), packed.len()) {
                return Encoded {
                    header: Header {
                        kind: Kind::Zstd,
                        raw_len,
                        wire_len: packed.len() as u32,
                    },
                    bytes: packed.into(),
                };
            }
        }
    }
    Encoded {
        header: Header {
            kind: Kind::Raw,
            raw_len,
            wire_len: raw_len,
        },
        bytes: raw,
    }
}

/// The original bytes of a block whose `wire` bytes followed `header`.
pub fn decode(header: &Header, wire: Vec<u8>) -> Result<Vec<u8>, BlockError> {
    let raw = match header.kind {
        Kind::Raw => wire,
        Kind::Zstd => zstd::bulk::decompress(&wire, header.raw_len as usize)
            .map_err(|e| BlockError::Corrupt(e.to_string()))?,
    };
    if raw.len() != header.raw_len as usize {
        return Err(BlockError::LengthMismatch {
            declared: header.raw_len,
            got: raw.len(),
        });
    }
    Ok(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_compressible_block_round_trips_smaller() {
        let raw: Vec<u8> = (0..200_000u32).map(|i| (i / 1000) as u8).collect();
        let block = encode(raw.clone().into(), true);
        assert_eq!(block.header.kind, Kind::Zstd);
        assert!(block.bytes.len() < raw.len() / 10);
        assert_eq!(decode(&block.header, block.bytes.to_vec()).unwrap(), raw);
    }

    #[test]
    fn a_block_that_does_not_shrink_goes_raw() {
        let mut state = 0x2545_f491_u64;
        let noise: Vec<u8> = (0..100_000)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        let block = encode(noise.clone().into(), true);
        assert_eq!(block.header.kind, Kind::Raw);
        assert_eq!(block.bytes, noise);
    }

    #[test]
    fn a_block_that_expands_past_its_header_is_refused() {
        let raw = vec![7u8; 100_000];
        let block = encode(raw.into(), true);
        let lying = Header {
            raw_len: 1_000,
            ..block.header
        };
        assert!(decode(&lying, block.bytes.to_vec()).is_err());
        let garbage = Header {
            kind: Kind::Zstd,
            raw_len: 10,
            wire_len: 4,
        };
        assert!(matches!(
            decode(&garbage, vec![1, 2, 3, 4]),
            Err(BlockError::Corrupt(_))
        ));
    }
}
