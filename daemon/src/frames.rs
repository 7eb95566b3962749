//! Reading control frames off a stream (`docs/protocol.md`, "Control stream"): a
//! [`tokio_util::codec::Decoder`] over `proto::frame`'s framing, so that tokio-util's
//! [`FramedRead`] does the buffering and the reading.

use bytes::{Buf, BytesMut};
use futures_util::StreamExt;
use proto::frame::{FrameError, LEN_PREFIX};
use proto::ControlFrame;
use tokio::io::AsyncRead;
use tokio::sync::mpsc;
use tokio_util::codec::{Decoder, FramedRead};

/// Cuts control frames out of the bytes read from a stream, with `proto::frame`'s size bound
/// and errors.
#[derive(Debug, Default, Clone, Copy)]
pub struct ControlCodec;

/// Why no frame could be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadFrameError {
    /// The peer sent something that is not a control frame.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The stream ended inside a frame.
    #[error("the stream ended inside a control frame ({pending} bytes of it arrived)")]
    Truncated { pending: usize },
    /// The stream broke (a QUIC stream's own error is inside: `quinn::ReadError`).
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl Decoder for ControlCodec {
    type Item = ControlFrame;
    type Error = ReadFrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<ControlFrame>, ReadFrameError> {
        let Some(len) = proto::frame::whole_frame_len(src)? else {
            // Room for the rest of a frame whose length is known (the bound is checked).
            if let Some(prefix) = src.first_chunk::<LEN_PREFIX>() {
                let whole = LEN_PREFIX + u32::from_be_bytes(*prefix) as usize;
                src.reserve(whole.saturating_sub(src.len()));
            }
            return Ok(None);
        };
        let frame = proto::frame::parse_body(&src[LEN_PREFIX..len]);
        src.advance(len);
        Ok(Some(frame?))
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<ControlFrame>, ReadFrameError> {
        match self.decode(src)? {
            Some(frame) => Ok(Some(frame)),
            None if src.is_empty() => Ok(None),
            None => Err(ReadFrameError::Truncated { pending: src.len() }),
        }
    }
}

/// Control frames read from `stream`.
pub fn control_frames<R: AsyncRead>(stream: R) -> FramedRead<R, ControlCodec> {
    FramedRead::new(stream, ControlCodec)
}

/// Stops reading frames: the stream, and the bytes already read past the last frame (on an
/// object stream, the first of the object's bytes that follow its `offer`).
pub fn into_stream_and_rest<R>(frames: FramedRead<R, ControlCodec>) -> (R, BytesMut) {
    let parts = frames.into_parts();
    (parts.io, parts.read_buf)
}

/// Reads frames from `stream` into `tx` until the stream ends, breaks, or sends a bad frame
/// (which is passed on as `Err` with the problem, and ends the reading).
pub async fn read_frames(
    stream: impl AsyncRead + Unpin,
    tx: mpsc::Sender<Result<ControlFrame, String>>,
) {
    let mut frames = control_frames(stream);
    while let Some(item) = frames.next().await {
        let item = match item {
            Ok(frame) => Ok(frame),
            Err(ReadFrameError::Frame(e)) => Err(e.to_string()),
            // A broken stream, or one ending inside a frame, ends the reading quietly: the
            // link notices the connection's end itself.
            Err(ReadFrameError::Io(_) | ReadFrameError::Truncated { .. }) => return,
        };
        let fatal = item.is_err();
        if tx.send(item).await.is_err() || fatal {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_then_end_of_stream() {
        let mut wire = ControlFrame::Ping { seq: 1 }.encode();
        wire.extend(ControlFrame::Pong { seq: 2 }.encode());
        let (tx, mut rx) = mpsc::channel(4);
        read_frames(wire.as_slice(), tx).await;
        assert_eq!(rx.recv().await, Some(Ok(ControlFrame::Ping { seq: 1 })));
        assert_eq!(rx.recv().await, Some(Ok(ControlFrame::Pong { seq: 2 })));
        assert_eq!(rx.recv().await, None);
    }

    #[tokio::test]
    async fn garbage_is_reported_once_and_reading_stops() {
        let wire = [0xffu8, 0xff, 0xff, 0xff, 1, 2, 3];
        let (tx, mut rx) = mpsc::channel(4);
        read_frames(&wire[..], tx).await;
        assert!(matches!(rx.recv().await, Some(Err(e)) if e.contains("exceeds")));
        assert_eq!(rx.recv().await, None);
    }

    #[tokio::test]
    async fn a_stream_ending_inside_a_frame_ends_the_reading_quietly() {
        let mut wire = ControlFrame::Ping { seq: 1 }.encode();
        wire.extend(&ControlFrame::Pong { seq: 2 }.encode()[..6]);
        let (tx, mut rx) = mpsc::channel(4);
        read_frames(wire.as_slice(), tx).await;
        assert_eq!(rx.recv().await, Some(Ok(ControlFrame::Ping { seq: 1 })));
        assert_eq!(rx.recv().await, None);
    }

    #[test]
    fn frames_survive_being_split_at_every_byte() {
        let frames = [
            ControlFrame::Ping { seq: 7 },
            ControlFrame::Reoffered,
            ControlFrame::Pong { seq: u64::MAX },
        ];
        let wire: Vec<u8> = frames.iter().flat_map(|f| f.encode()).collect();
        for split in 0..wire.len() {
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            for part in [&wire[..split], &wire[split..]] {
                buf.extend_from_slice(part);
                while let Some(f) = ControlCodec.decode(&mut buf).unwrap() {
                    got.push(f);
                }
            }
            assert_eq!(got, frames, "split at {split}");
            assert!(buf.is_empty());
        }
    }

    #[tokio::test]
    async fn an_end_inside_a_frame_says_how_much_of_it_came() {
        let mut frames = control_frames(&[0u8, 0, 0, 9, b'{'][..]);
        let e = frames.next().await.unwrap().unwrap_err();
        assert!(matches!(e, ReadFrameError::Truncated { pending: 5 }), "{e}");
        assert!(frames.next().await.is_none());
    }

    #[test]
    fn a_malformed_frame_is_an_error_and_its_bytes_are_gone() {
        let mut buf = BytesMut::from(&[0, 0, 0, 9][..]);
        buf.extend_from_slice(br#"{"seq":1}"#);
        buf.extend_from_slice(&ControlFrame::Ping { seq: 1 }.encode());
        assert!(matches!(
            ControlCodec.decode(&mut buf),
            Err(ReadFrameError::Frame(FrameError::Malformed(_)))
        ));
        assert_eq!(buf.as_ref(), &ControlFrame::Ping { seq: 1 }.encode()[..]);
    }

    #[tokio::test]
    async fn the_bytes_after_an_offer_stay_for_the_object() {
        let offer = ControlFrame::Offer {
            object: proto::sync::ObjectId::parse(&"ab".repeat(32)).unwrap(),
            size: 12,
            study: None,
            encoding: None,
        };
        let mut wire = offer.encode();
        wire.extend_from_slice(b"object bytes");
        let mut frames = control_frames(wire.as_slice());
        assert_eq!(frames.next().await.transpose().unwrap(), Some(offer));
        let (rest_of_stream, read_ahead) = into_stream_and_rest(frames);
        let mut all = read_ahead.to_vec();
        all.extend_from_slice(rest_of_stream);
        assert_eq!(all, b"object bytes");
    }
}
