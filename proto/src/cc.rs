//! The link's congestion controller: how many bytes may be in flight, decided from queueing
//! delay instead of from loss.
//!
//! A township line loses 1–5 % of its packets at random (radio, old copper) while it is far
//! from full. A loss-based controller (quinn's default Cubic, TCP's Reno and Cubic) takes every
//! loss for congestion and cuts its window, so its rate follows the Mathis bound,
//! (MSS/RTT)·1.22/√p: about 1.4 Mbit/s on a 10 Mbit/s, 100 ms, 1 % line. What does tell a full
//! line from a lossy one is the queue in front of it: when the sender outruns the line, packets
//! wait and the round trip grows; random loss leaves the round trip alone.
//!
//! So this controller, once per round trip, compares the round's smallest RTT sample with the
//! line's base RTT (the smallest sample of the last ten seconds). The difference is the queue
//! this connection keeps. It steers that queue towards a small target (a quarter of the base
//! RTT, at least [`MIN_TARGET`]): with the queue never empty the line is always busy, and with
//! it small the round trip stays close to the base, so the clinic's other traffic (the HIS,
//! the internet) does not wait behind ours. Loss counts only when it is heavy (more than
//! [`LOSS_TOLERANCE`] of a round's packets), as when a queue too short to show delay
//! overflows, and an outage (QUIC's persistent congestion) starts again from a small window.
//!
//! Against a loss-based flow sharing the line a purely delay-based sender starves: the other
//! flow fills the queue whatever this one does, and it shrinks to nothing (measured: 4 % of the
//! line beside one TCP-Cubic flow). So when the queue stays well above the target for several
//! rounds although the window was cut each time, the queue is someone else's, and the
//! controller competes as they do (a datagram more each round, 30 % less in a round with
//! loss) until a drain shows the queue empty again.
//!
//! Sans-IO like the rest of `proto`: time comes in as `now`; `daemon::quic` adapts it to
//! quinn's `Controller` trait. See `docs/protocol.md`, "Congestion control".

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The smallest queueing delay the controller aims for: below it, timer and acknowledgement
/// noise (a receiver acknowledges every second packet or after up to 25 ms) would look like
/// an empty queue or a full one.
pub const MIN_TARGET: Duration = Duration::from_millis(10);

/// How long a base RTT sample is trusted: a route change that makes the line slower shows
/// within this time.
pub const BASE_RTT_WINDOW: Duration = Duration::from_secs(10);

/// The share of a round's packets that may be lost before loss counts as congestion: above
/// the random loss of the worst lines we serve (5 %) with room for a burst.
pub const LOSS_TOLERANCE: f64 = 0.15;

/// How often the controller empties its own queue to see the base RTT again: a queue held at
/// its target never empties by itself, and a base RTT that ages out of [`BASE_RTT_WINDOW`]
/// without a fresh sample would take the queue for the line (and the queue would grow).
pub const PROBE_INTERVAL: Duration = Duration::from_secs(8);

/// Settings of one connection's controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Window of a new connection, in bytes.
    pub initial_window: u64,
    /// Smallest window, in datagrams.
    pub min_datagrams: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            // Forty 1,200-byte datagrams: four times TCP's ten segments (RFC 6928). The link
            // is one long-lived connection that exists to move bulk data, and every clinic
            // line we serve carries this much within one round trip (2 Mbit/s × 300 ms is
            // 75 KB); it saves two round trips of slow start, half a second on a 200 ms line.
            initial_window: 48_000,
            min_datagrams: 4,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Doubling the window every round trip until the queue starts to grow.
    SlowStart,
    /// Steering the queue towards its target.
    Steady,
    /// Sending below the line's rate for [`DRAIN_ROUNDS`] rounds so the queue empties and
    /// the base RTT shows; then back to `resume`, in `Compete` again when it came from there
    /// and the queue did not empty.
    Drain {
        rounds_left: u8,
        resume: u64,
        compete: bool,
    },
    /// Someone else keeps a queue this controller cannot drain (a loss-based flow on the
    /// same line fills it whatever we do): holding back would leave the line to them, so the
    /// window grows a few datagrams a round and shrinks by 30 % in a round with loss, as
    /// theirs does. Every drain checks whether the queue empties again (they left).
    Compete,
}

/// Rounds in a row the queue must stay above one and a half targets, although the window
/// was cut each time, before the queue counts as someone else's.
const CROWDED_ROUNDS: u32 = 6;

/// Datagrams the window grows a round while competing: a little faster than Reno's one, as
/// TCP Cubic grows faster than Reno back towards the window it had before a loss.
const COMPETE_GROWTH: u64 = 3;

/// Rounds a drain lasts at most: one to empty the queue, one to see the empty queue's RTT. It
/// ends sooner when a sample shows the queue empty.
const DRAIN_ROUNDS: u8 = 2;

/// One connection's congestion controller.
#[derive(Debug, Clone)]
pub struct Controller {
    config: Config,
    datagram: u64,
    window: u64,
    phase: Phase,
    base: BaseRtt,
    delivery: Delivery,
    round: Round,
    /// Packet number of the last packet sent so far.
    last_sent: Option<u64>,
    /// When the next drain is due (set when slow start ends).
    next_drain: Option<Instant>,
    /// Rounds in a row that ended with the queue above one and a half targets.
    crowded: u32,
    /// The latest RTT samples while the sender used its window, newest last: the queue as it
    /// is now, not as it was when the round began.
    recent: [Duration; RECENT],
}

/// Samples that must all show a queue before it counts: one alone may carry the receiver's
/// acknowledgement delay.
const RECENT: usize = 4;

/// What one round trip showed.
#[derive(Debug, Clone, Default)]
struct Round {
    /// The round ends when this packet (the last one sent when it began) is acknowledged.
    ends_after: Option<u64>,
    lost: u64,
    acked: u64,
    /// Whether the sender had less to send than the window allowed at some point.
    app_limited: bool,
}

impl Controller {
    pub fn new(config: Config, datagram: u16) -> Self {
        let datagram = u64::from(datagram).max(1200);
        Self {
            config,
            datagram,
            window: config.initial_window.max(config.min_datagrams * datagram),
            phase: Phase::SlowStart,
            base: BaseRtt::default(),
            delivery: Delivery::default(),
            round: Round::default(),
            last_sent: None,
            next_drain: None,
            crowded: 0,
            recent: [Duration::MAX; RECENT],
        }
    }

    /// Bytes that may be in flight.
    pub fn window(&self) -> u64 {
        self.window
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The line's round trip with an empty queue, as far as the controller knows it.
    pub fn base_rtt(&self) -> Option<Duration> {
        self.base.get()
    }

    pub fn initial_window(&self) -> u64 {
        self.config.initial_window
    }

    fn min_window(&self) -> u64 {
        self.config.min_datagrams * self.datagram
    }

    /// The path's datagram size changed (path MTU discovery).
    pub fn handle_mtu(&mut self, datagram: u16) {
        self.datagram = u64::from(datagram).max(1200);
        self.window = self.window.max(self.min_window());
    }

    /// Packets up to number `packet` were sent.
    pub fn handle_sent(&mut self, packet: u64) {
        self.last_sent = Some(packet);
        if self.round.ends_after.is_none() {
            self.round.ends_after = Some(packet);
        }
    }

    /// A packet of `bytes` sent at `sent` was acknowledged at `now`.
    pub fn handle_ack(&mut self, now: Instant, sent: Instant, bytes: u64, app_limited: bool) {
        let rtt = now.saturating_duration_since(sent);
        self.round.acked += bytes;
        self.round.app_limited |= app_limited;
        self.base.sample(now, rtt);
        self.delivery.add(bytes);
        if app_limited {
            // Sparse packets are acknowledged late (a receiver waits up to 25 ms for a
            // second one), which would look like a queue.
            return;
        }
        self.recent.rotate_left(1);
        self.recent[RECENT - 1] = rtt;
        if self.phase == Phase::SlowStart {
            self.window += bytes;
        }
    }

    /// A batch of acknowledgements ends; `largest_acked` is the newest packet acknowledged.
    pub fn handle_end_acks(&mut self, now: Instant, largest_acked: Option<u64>) {
        let Some(base) = self.base.get() else {
            return;
        };
        self.delivery.mark(now, base);
        if let Phase::Drain { resume, .. } = self.phase {
            if self.queue() < MIN_TARGET / 4 {
                // The queue emptied: it was ours alone, whatever phase the drain came from.
                self.phase = Phase::Steady;
                self.crowded = 0;
                self.window = resume.max(self.min_window());
                self.next_drain = Some(now + PROBE_INTERVAL);
            }
        }
        // Leave slow start as soon as the queue shows, not a round later: by then the
        // doubled window would have overfilled it.
        if self.phase == Phase::SlowStart && self.queue() > self.target(base) / 2 {
            self.phase = Phase::Steady;
            self.next_drain = Some(now + PROBE_INTERVAL);
            if let Some(ideal) = self.ideal(now, base) {
                self.window = ideal.max(self.min_window());
            }
        }
        let (Some(largest), Some(ends_after)) = (largest_acked, self.round.ends_after) else {
            return;
        };
        if largest < ends_after {
            return;
        }
        let round = std::mem::take(&mut self.round);
        self.round.ends_after = self.last_sent.filter(|&p| p > largest);
        self.end_round(now, base, round);
    }

    /// `lost_bytes` of packets sent up to `sent` were declared lost; `persistent` when
    /// everything sent over several round trips was (an outage).
    pub fn handle_loss(&mut self, _now: Instant, lost_bytes: u64, persistent: bool) {
        self.round.lost += lost_bytes;
        if persistent {
            self.window = self.min_window();
            self.phase = Phase::SlowStart;
            self.round = Round::default();
            self.recent = [Duration::MAX; RECENT];
        }
    }

    fn target(&self, base: Duration) -> Duration {
        (base / 4).max(MIN_TARGET)
    }

    /// The queue this connection keeps now, as its latest samples show it.
    /// Zero until [`RECENT`] samples have come.
    fn queue(&self) -> Duration {
        if self.recent.contains(&Duration::MAX) {
            return Duration::ZERO;
        }
        let latest = self.recent.iter().min().copied().unwrap_or_default();
        latest.saturating_sub(self.base.get().unwrap_or(latest))
    }

    /// The window that holds the queue at its target: the rate the line delivered over the
    /// last base RTT times the base RTT plus the target.
    fn ideal(&self, now: Instant, base: Duration) -> Option<u64> {
        let rate = self.delivery.rate(now, base)?;
        Some((rate * (base + self.target(base)).as_secs_f64()) as u64)
    }

    fn end_round(&mut self, now: Instant, base: Duration, round: Round) {
        let sent = round.acked + round.lost;
        let heavy_loss = sent > 0 && round.lost as f64 > LOSS_TOLERANCE * sent as f64;
        let competing = matches!(
            self.phase,
            Phase::Compete | Phase::Drain { compete: true, .. }
        );
        if heavy_loss && !competing {
            // A queue too short to show delay overflowed: back off as a loss-based sender
            // would, but once a round, not once per loss.
            if self.phase == Phase::SlowStart {
                self.next_drain = Some(now + PROBE_INTERVAL);
            }
            self.phase = Phase::Steady;
            self.window = ((self.window as f64 * 0.7) as u64).max(self.min_window());
            return;
        }
        let drain_due = self.next_drain.is_some_and(|at| now >= at);
        match self.phase {
            Phase::SlowStart => {}
            Phase::Steady | Phase::Compete if drain_due => {
                // A little less than the line's bandwidth-delay product: the queue empties
                // within a round and the line idles only briefly.
                let bdp = self.delivery.rate(now, base).unwrap_or(0.0) * base.as_secs_f64();
                self.phase = Phase::Drain {
                    rounds_left: DRAIN_ROUNDS,
                    resume: self.window,
                    compete: self.phase == Phase::Compete,
                };
                self.window = ((bdp * 0.85) as u64)
                    .min(self.window)
                    .max(self.min_window());
            }
            Phase::Steady => {
                // A queue that stays well above the target although the window is cut each
                // round is not ours.
                if self.queue() > self.target(base) * 3 / 2 {
                    self.crowded += 1;
                } else {
                    self.crowded = 0;
                }
                if self.crowded >= CROWDED_ROUNDS {
                    self.phase = Phase::Compete;
                } else {
                    self.steer(now, base, round.app_limited);
                }
            }
            Phase::Compete => {
                self.window = if round.lost > 0 {
                    ((self.window as f64 * 0.7) as u64).max(self.min_window())
                } else if round.app_limited {
                    self.window
                } else {
                    self.window + COMPETE_GROWTH * self.datagram
                };
            }
            Phase::Drain {
                rounds_left,
                resume,
                compete,
            } => {
                if rounds_left > 1 {
                    self.phase = Phase::Drain {
                        rounds_left: rounds_left - 1,
                        resume,
                        compete,
                    };
                } else {
                    // The queue did not empty (else the drain would have ended early).
                    self.phase = if compete {
                        Phase::Compete
                    } else {
                        Phase::Steady
                    };
                    self.window = resume.max(self.min_window());
                    self.next_drain = Some(now + PROBE_INTERVAL);
                }
            }
        }
    }

    /// Once a round: above the target, straight down to the window that holds the queue at
    /// it (a cut shows within one round, so no damping is needed); below it, half way up
    /// towards it, at most 25 % a round and at least one datagram, unless the sender did
    /// not use the window it had.
    fn steer(&mut self, now: Instant, base: Duration, app_limited: bool) {
        let Some(ideal) = self.ideal(now, base) else {
            return;
        };
        let window = self.window;
        let next = if self.queue() > self.target(base) {
            ideal.max(window / 2)
        } else if app_limited {
            window
        } else {
            let up = window + ideal.saturating_sub(window) / 2;
            up.max(window + self.datagram).min(window + window / 4)
        };
        self.window = next.max(self.min_window());
    }
}

/// Bytes acknowledged over time, for the rate the line delivers.
#[derive(Debug, Clone, Default)]
struct Delivery {
    /// Bytes acknowledged so far.
    total: u64,
    /// (when, total then), oldest first, kept for two base RTTs.
    marks: VecDeque<(Instant, u64)>,
}

impl Delivery {
    fn add(&mut self, bytes: u64) {
        self.total += bytes;
    }

    fn mark(&mut self, now: Instant, base: Duration) {
        self.marks.push_back((now, self.total));
        while self.marks.len() > 2 {
            match self.marks.get(1) {
                Some((t, _)) if now.saturating_duration_since(*t) > base * 2 => {
                    self.marks.pop_front();
                }
                _ => break,
            }
        }
    }

    /// Bytes per second acknowledged over about the last `over`.
    fn rate(&self, now: Instant, over: Duration) -> Option<f64> {
        let (at, then) = self
            .marks
            .iter()
            .rev()
            .find(|(t, _)| now.saturating_duration_since(*t) >= over)
            .or(self.marks.front())?;
        let elapsed = now.saturating_duration_since(*at).as_secs_f64();
        (elapsed > 0.0).then(|| (self.total - then) as f64 / elapsed)
    }
}

/// The smallest RTT sample of the last [`BASE_RTT_WINDOW`], kept as one minimum per second.
#[derive(Debug, Clone, Default)]
struct BaseRtt {
    seconds: VecDeque<(Instant, Duration)>,
}

impl BaseRtt {
    fn sample(&mut self, now: Instant, rtt: Duration) {
        match self.seconds.back_mut() {
            Some((since, min))
                if now.saturating_duration_since(*since) < Duration::from_secs(1) =>
            {
                *min = (*min).min(rtt);
            }
            _ => self.seconds.push_back((now, rtt)),
        }
        while let Some((since, _)) = self.seconds.front() {
            if now.saturating_duration_since(*since) > BASE_RTT_WINDOW {
                self.seconds.pop_front();
            } else {
                break;
            }
        }
    }

    fn get(&self) -> Option<Duration> {
        self.seconds.iter().map(|(_, m)| *m).min()
    }
}

#[cfg(test)]
mod tests;
