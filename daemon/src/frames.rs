//! Reading control frames off a stream (`docs/protocol.md`, "Control stream").

use proto::frame::FrameDecoder;
use proto::ControlFrame;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;

/// Reads frames from `stream` into `tx` until the stream ends, breaks, or sends a bad frame
/// (which is passed on as `Err` with the problem, and ends the reading).
pub async fn read_frames(
    mut stream: impl AsyncRead + Unpin,
    tx: mpsc::Sender<Result<ControlFrame, String>>,
) {
    let mut decoder = FrameDecoder::default();
    let mut buf = vec![0u8; 4096];
    while let Ok(n @ 1..) = stream.read(&mut buf).await {
        decoder.push(&buf[..n]);
        loop {
            let item = match decoder.next_frame() {
                Ok(Some(frame)) => Ok(frame),
                Ok(None) => break,
                Err(e) => Err(e.to_string()),
            };
            let fatal = item.is_err();
            if tx.send(item).await.is_err() || fatal {
                return;
            }
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
}
