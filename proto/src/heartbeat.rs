//! Heartbeats on the control stream: both ends ping every `interval`, answer the other's
//! pings, measure the round-trip time and declare the peer gone after `timeout` of silence.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::frame::ControlFrame;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeartbeatConfig {
    pub interval: Duration,
    /// Silence (no frame at all from the peer) after which the link is declared dead.
    pub timeout: Duration,
}

impl Default for HeartbeatConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(60),
        }
    }
}

/// Most pings kept waiting for an answer; older ones are forgotten (their pongs then give no
/// sample), which bounds memory whatever the peer does.
const MAX_OUTSTANDING: usize = 64;

#[derive(Debug)]
pub struct Heartbeat {
    config: HeartbeatConfig,
    next_seq: u64,
    next_ping_at: Instant,
    last_heard: Instant,
    outstanding: VecDeque<(u64, Instant)>,
    smoothed: Option<Duration>,
}

/// What a received frame meant to the heartbeat.
#[derive(Debug, PartialEq, Eq)]
pub enum Heard {
    /// A ping: send this pong back.
    Reply(ControlFrame),
    /// A pong to one of our pings: a new round-trip sample.
    Rtt(Duration),
    /// A pong we no longer wait for, or a frame the heartbeat does not handle.
    Nothing,
}

impl Heartbeat {
    pub fn new(config: HeartbeatConfig, now: Instant) -> Self {
        Self {
            config,
            next_seq: 0,
            next_ping_at: now,
            last_heard: now,
            outstanding: VecDeque::new(),
            smoothed: None,
        }
    }

    /// Any frame from the peer proves it alive.
    pub fn on_frame(&mut self, now: Instant, frame: &ControlFrame) -> Heard {
        self.last_heard = now;
        match *frame {
            ControlFrame::Ping { seq } => Heard::Reply(ControlFrame::Pong { seq }),
            ControlFrame::Pong { seq } => {
                let Some(pos) = self.outstanding.iter().position(|(s, _)| *s == seq) else {
                    return Heard::Nothing;
                };
                let (_, sent) = self.outstanding[pos];
                // Earlier pings still outstanding were overtaken; they will never be answered
                // on an ordered stream, so drop them too.
                self.outstanding.drain(..=pos);
                let sample = now.saturating_duration_since(sent);
                // RFC 6298 style smoothing with gain 1/8.
                self.smoothed = Some(match self.smoothed {
                    None => sample,
                    Some(s) => (s * 7 + sample) / 8,
                });
                Heard::Rtt(sample)
            }
            _ => Heard::Nothing,
        }
    }

    /// A ping to send now, if one is due.
    pub fn poll_ping(&mut self, now: Instant) -> Option<ControlFrame> {
        if now < self.next_ping_at {
            return None;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.next_ping_at = now + self.config.interval;
        if self.outstanding.len() == MAX_OUTSTANDING {
            self.outstanding.pop_front();
        }
        self.outstanding.push_back((seq, now));
        Some(ControlFrame::Ping { seq })
    }

    pub fn is_dead(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.last_heard) >= self.config.timeout
    }

    pub fn poll_timeout(&self) -> Instant {
        self.next_ping_at.min(self.last_heard + self.config.timeout)
    }

    /// Smoothed round-trip time, once a sample exists.
    pub fn rtt(&self) -> Option<Duration> {
        self.smoothed
    }

    pub fn silence(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.last_heard)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn measures_rtt_and_smooths_it() {
        let t0 = Instant::now();
        let cfg = HeartbeatConfig {
            interval: 1000 * MS,
            timeout: 5000 * MS,
        };
        let mut hb = Heartbeat::new(cfg, t0);
        let Some(ControlFrame::Ping { seq }) = hb.poll_ping(t0) else {
            panic!("first ping is due at once")
        };
        assert_eq!(hb.poll_ping(t0 + 999 * MS), None);
        assert_eq!(
            hb.on_frame(t0 + 80 * MS, &ControlFrame::Pong { seq }),
            Heard::Rtt(80 * MS)
        );
        assert_eq!(hb.rtt(), Some(80 * MS));
        let Some(ControlFrame::Ping { seq }) = hb.poll_ping(t0 + 1000 * MS) else {
            panic!("second ping after one interval")
        };
        assert_eq!(
            hb.on_frame(t0 + 1160 * MS, &ControlFrame::Pong { seq }),
            Heard::Rtt(160 * MS)
        );
        assert_eq!(hb.rtt(), Some(90 * MS));
        // A duplicate pong gives no second sample.
        assert_eq!(
            hb.on_frame(t0 + 1200 * MS, &ControlFrame::Pong { seq }),
            Heard::Nothing
        );
    }

    #[test]
    fn answers_pings_and_declares_silence_dead() {
        let t0 = Instant::now();
        let cfg = HeartbeatConfig {
            interval: 1000 * MS,
            timeout: 3000 * MS,
        };
        let mut hb = Heartbeat::new(cfg, t0);
        assert_eq!(
            hb.on_frame(t0 + 10 * MS, &ControlFrame::Ping { seq: 9 }),
            Heard::Reply(ControlFrame::Pong { seq: 9 })
        );
        assert!(!hb.is_dead(t0 + 3009 * MS));
        assert!(hb.is_dead(t0 + 3010 * MS));
    }

    #[test]
    fn outstanding_pings_stay_bounded_when_never_answered() {
        let t0 = Instant::now();
        let mut hb = Heartbeat::new(HeartbeatConfig::default(), t0);
        for i in 0..1000u32 {
            let _ = hb.poll_ping(t0 + Duration::from_secs(5) * i);
        }
        assert!(hb.outstanding.len() <= MAX_OUTSTANDING);
    }
}
