//! A seeded link emulator: what a township line does to packets, one direction at a time — a
//! rate limit with a drop-tail queue, one-way delay, random and bursty (Gilbert–Elliott) loss,
//! outages on a schedule, optional reordering. The model is pure ([`Pipe::admit`] takes the
//! time and a packet's length and answers when it arrives, or why it is lost), so the same
//! impairment serves the in-process UDP relay of the tests ([`crate::relay`]) and the bench's
//! TUN relay between network namespaces, where TCP contenders meet it too.
//!
//! Deterministic: given a seed and the same sequence of packets at the same times, every
//! decision is the same. Loss happens after the packet has used the line (as on a radio or
//! DSL link, where a corrupted frame still took its time), so lost packets cost capacity.

use std::time::{Duration, Instant};

use proto::rng::Rng;

/// Loss on one direction of a line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Loss {
    None,
    /// Each packet is lost with this probability, independently of the others.
    Random(f64),
    /// Gilbert–Elliott: a good state that loses nothing and a bad state that loses every
    /// packet; `average` of the packets are lost, in bursts of `mean_burst` packets on average.
    Bursty {
        average: f64,
        mean_burst: f64,
    },
}

/// One direction of a line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PathSpec {
    /// Line rate in bits per second (0: unlimited).
    pub rate_bps: u64,
    /// One-way propagation delay.
    pub delay: Duration,
    /// Drop-tail queue in bytes before the line (packets arriving to a fuller queue are lost).
    pub queue_bytes: u64,
    pub loss: Loss,
    /// Probability that a packet is held back by an extra few milliseconds (reordering).
    pub reorder: f64,
}

impl PathSpec {
    /// A line of `mbps` Mbit/s with `delay` one way, no loss, and a queue of one
    /// bandwidth-delay product of the round trip (`2 × delay`).
    pub fn new(mbps: f64, delay: Duration) -> Self {
        let rate_bps = (mbps * 1e6) as u64;
        let bdp = (rate_bps as f64 / 8.0 * 2.0 * delay.as_secs_f64()) as u64;
        Self {
            rate_bps,
            delay,
            queue_bytes: bdp.max(16 * 1500),
            loss: Loss::None,
            reorder: 0.0,
        }
    }

    /// Loopback: no rate limit, no delay, no loss.
    pub fn unlimited() -> Self {
        Self {
            rate_bps: 0,
            delay: Duration::ZERO,
            queue_bytes: u64::MAX,
            loss: Loss::None,
            reorder: 0.0,
        }
    }

    pub fn with_loss(mut self, loss: Loss) -> Self {
        self.loss = loss;
        self
    }
}

/// Outages on a schedule: the line is dead for `length` every `every`, the first starting
/// `first` after the emulator starts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outages {
    pub first: Duration,
    pub every: Duration,
    pub length: Duration,
}

impl Outages {
    /// Whether the line is dead `elapsed` after the start.
    pub fn active(&self, elapsed: Duration) -> bool {
        if elapsed < self.first || self.every.is_zero() {
            return false;
        }
        let into = (elapsed - self.first).as_nanos() % self.every.as_nanos();
        into < self.length.as_nanos()
    }
}

/// A whole line: the clinic's upload direction, the download direction, and what both share.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkSpec {
    /// Clinic → hospital.
    pub up: PathSpec,
    /// Hospital → clinic.
    pub down: PathSpec,
    pub outages: Option<Outages>,
    /// Largest packet the line carries, in bytes of IP packet (larger ones are dropped, as a
    /// path drops "don't fragment" packets over its MTU).
    pub mtu: usize,
    pub seed: u64,
}

impl LinkSpec {
    /// The same line both ways.
    pub fn symmetric(path: PathSpec) -> Self {
        Self {
            up: path,
            down: path,
            outages: None,
            mtu: usize::MAX,
            seed: 1,
        }
    }

    /// Loopback with nothing done to the packets.
    pub fn unlimited() -> Self {
        Self::symmetric(PathSpec::unlimited())
    }

    /// The benchmark links of `shared/brief/BENCHMARKS.md` (`L1` … `L5`), with a 1,500-byte MTU.
    pub fn named(name: &str) -> Option<Self> {
        let ms = Duration::from_millis;
        let spec = match name {
            "L1" => Self::symmetric(PathSpec::new(20.0, ms(25))),
            "L2" => Self::symmetric(PathSpec::new(10.0, ms(50)).with_loss(Loss::Random(0.01))),
            "L3" => Self::symmetric(PathSpec::new(5.0, ms(100)).with_loss(Loss::Bursty {
                average: 0.02,
                mean_burst: 4.0,
            })),
            "L4" => Self {
                up: PathSpec::new(2.0, ms(150)).with_loss(Loss::Random(0.05)),
                down: PathSpec::new(8.0, ms(150)).with_loss(Loss::Random(0.05)),
                outages: None,
                mtu: usize::MAX,
                seed: 1,
            },
            "L5" => Self {
                // The first outage comes early, so that a run of a few minutes meets one.
                outages: Some(Outages {
                    first: Duration::from_secs(10),
                    every: Duration::from_secs(300),
                    length: Duration::from_secs(30),
                }),
                ..Self::named("L2")?
            },
            _ => return None,
        };
        Some(Self { mtu: 1500, ..spec })
    }

    /// The round trip with empty queues.
    pub fn base_rtt(&self) -> Duration {
        self.up.delay + self.down.delay
    }

    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// The two directions' pipes, seeded apart.
    pub fn pipes(&self, start: Instant) -> (Pipe, Pipe) {
        (
            Pipe::new(self.up, self.outages, self.mtu, self.seed, start),
            Pipe::new(
                self.down,
                self.outages,
                self.mtu,
                self.seed ^ 0x9e37_79b9_7f4a_7c15,
                start,
            ),
        )
    }
}

/// Why a packet did not arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// The line was in an outage.
    Outage,
    /// The queue before the line was full.
    Queue,
    /// Lost on the line (random or in a burst).
    Loss,
    /// Larger than the path's MTU.
    TooBig,
}

/// What a pipe has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PipeStats {
    pub packets: u64,
    pub bytes: u64,
    pub delivered: u64,
    /// Bytes of the delivered packets.
    pub delivered_bytes: u64,
    pub outage: u64,
    pub queue: u64,
    pub loss: u64,
    pub too_big: u64,
    /// Sum of the time delivered packets waited in the queue, for the mean queueing delay.
    pub queued: Duration,
    /// The longest any packet waited in the queue.
    pub max_queued: Duration,
    /// The largest packet offered, in bytes.
    pub largest: usize,
}

impl PipeStats {
    /// Mean time a delivered packet waited in the queue: the standing queue a sender builds.
    pub fn mean_queueing(&self) -> Duration {
        if self.delivered == 0 {
            return Duration::ZERO;
        }
        self.queued / self.delivered as u32
    }
}

/// One direction of an emulated line.
#[derive(Debug)]
pub struct Pipe {
    spec: PathSpec,
    outages: Option<Outages>,
    mtu: usize,
    rng: Rng,
    bad: bool,
    start: Instant,
    /// When the line finishes sending what is already queued.
    busy_until: Instant,
    /// A manual cut (an outage the test decides), on top of the schedule.
    pub cut: bool,
    pub stats: PipeStats,
}

impl Pipe {
    pub fn new(
        spec: PathSpec,
        outages: Option<Outages>,
        mtu: usize,
        seed: u64,
        start: Instant,
    ) -> Self {
        Self {
            spec,
            outages,
            mtu,
            rng: Rng::new(seed),
            bad: false,
            start,
            busy_until: start,
            cut: false,
            stats: PipeStats::default(),
        }
    }

    pub fn spec(&self) -> &PathSpec {
        &self.spec
    }

    /// Sets the largest packet the line carries from now on.
    pub fn set_mtu(&mut self, mtu: usize) {
        self.mtu = mtu;
    }

    /// Whether the line is dead at `now` (a scheduled outage or a manual cut).
    pub fn down(&self, now: Instant) -> bool {
        self.cut
            || self
                .outages
                .is_some_and(|o| o.active(now.saturating_duration_since(self.start)))
    }

    /// A packet of `len` bytes (as the line counts them) enters the line at `now`: when it
    /// arrives at the other end, or why it never does.
    pub fn admit(&mut self, now: Instant, len: usize) -> Result<Instant, Dropped> {
        self.stats.packets += 1;
        self.stats.bytes += len as u64;
        self.stats.largest = self.stats.largest.max(len);
        if len > self.mtu {
            self.stats.too_big += 1;
            return Err(Dropped::TooBig);
        }
        if self.down(now) {
            self.stats.outage += 1;
            return Err(Dropped::Outage);
        }
        let begin = self.busy_until.max(now);
        let waited = begin - now;
        if self.spec.rate_bps > 0 {
            let backlog = waited.as_secs_f64() * self.spec.rate_bps as f64 / 8.0;
            if backlog + len as f64 > self.spec.queue_bytes as f64 {
                self.stats.queue += 1;
                return Err(Dropped::Queue);
            }
            let on_line = Duration::from_secs_f64(len as f64 * 8.0 / self.spec.rate_bps as f64);
            self.busy_until = begin + on_line;
        }
        if self.lost() {
            self.stats.loss += 1;
            return Err(Dropped::Loss);
        }
        self.stats.delivered += 1;
        self.stats.delivered_bytes += len as u64;
        self.stats.queued += waited;
        self.stats.max_queued = self.stats.max_queued.max(waited);
        let mut at = self.busy_until.max(now) + self.spec.delay;
        if self.spec.reorder > 0.0 && chance(&mut self.rng, self.spec.reorder) {
            at += Duration::from_micros(1_000 + self.rng.next_u64() % 4_000);
        }
        Ok(at)
    }

    fn lost(&mut self) -> bool {
        match self.spec.loss {
            Loss::None => false,
            Loss::Random(p) => chance(&mut self.rng, p),
            Loss::Bursty {
                average,
                mean_burst,
            } => {
                // Leave the bad state with probability r (bursts last 1/r packets on average);
                // enter it with p chosen so the bad state's share, p / (p + r), is `average`.
                let r = 1.0 / mean_burst.max(1.0);
                let average = average.clamp(0.0, 0.99);
                let p = average * r / (1.0 - average);
                self.bad = if self.bad {
                    !chance(&mut self.rng, r)
                } else {
                    chance(&mut self.rng, p)
                };
                self.bad
            }
        }
    }
}

/// True with probability `p`.
fn chance(rng: &mut Rng, p: f64) -> bool {
    rng.next_unit() < p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(
        pipe: &mut Pipe,
        start: Instant,
        packets: usize,
        gap: Duration,
    ) -> Vec<Option<Instant>> {
        (0..packets)
            .map(|i| pipe.admit(start + gap * i as u32, 1500).ok())
            .collect()
    }

    #[test]
    fn a_line_delivers_at_its_rate_after_its_delay() {
        let start = Instant::now();
        let spec = PathSpec::new(12.0, Duration::from_millis(50));
        let mut pipe = Pipe::new(spec, None, usize::MAX, 1, start);
        // 1,000 packets offered at once: the queue (one BDP, 150 KB) takes 100, the rest drop.
        let got = feed(&mut pipe, start, 1000, Duration::ZERO);
        let delivered: Vec<Instant> = got.iter().flatten().copied().collect();
        assert_eq!(delivered.len(), 100);
        assert_eq!(pipe.stats.queue, 900);
        // Each 1,500-byte packet takes 1 ms at 12 Mbit/s.
        assert_eq!(delivered[0] - start, Duration::from_millis(51));
        assert_eq!(delivered[99] - start, Duration::from_millis(150));
    }

    #[test]
    fn random_loss_is_near_its_rate_and_the_same_for_a_seed() {
        let start = Instant::now();
        let spec = PathSpec::new(10.0, Duration::from_millis(50)).with_loss(Loss::Random(0.01));
        let run = |seed| {
            let mut pipe = Pipe::new(spec, None, usize::MAX, seed, start);
            feed(&mut pipe, start, 100_000, Duration::from_millis(2));
            pipe.stats
        };
        let (a, b, c) = (run(7), run(7), run(8));
        assert_eq!(a, b);
        assert_ne!(a.loss, c.loss);
        assert!((900..1100).contains(&a.loss), "{}", a.loss);
    }

    #[test]
    fn bursty_loss_has_its_average_in_bursts() {
        let start = Instant::now();
        let loss = Loss::Bursty {
            average: 0.02,
            mean_burst: 4.0,
        };
        let spec = PathSpec::new(5.0, Duration::from_millis(100)).with_loss(loss);
        let mut pipe = Pipe::new(spec, None, usize::MAX, 3, start);
        let got = feed(&mut pipe, start, 200_000, Duration::from_millis(3));
        let lost = got.iter().filter(|g| g.is_none()).count();
        assert!((3_400..4_600).contains(&lost), "{lost}");
        let bursts = got
            .windows(2)
            .filter(|w| w[0].is_some() && w[1].is_none())
            .count();
        let mean_burst = lost as f64 / bursts as f64;
        assert!((3.0..5.0).contains(&mean_burst), "{mean_burst}");
    }

    #[test]
    fn an_outage_drops_everything_while_it_lasts() {
        let start = Instant::now();
        let outages = Outages {
            first: Duration::from_secs(10),
            every: Duration::from_secs(60),
            length: Duration::from_secs(5),
        };
        let spec = PathSpec::new(10.0, Duration::from_millis(50));
        let mut pipe = Pipe::new(spec, Some(outages), usize::MAX, 1, start);
        let at = |s: u64| start + Duration::from_millis(s);
        assert!(pipe.admit(at(9_999), 100).is_ok());
        assert_eq!(pipe.admit(at(10_000), 100), Err(Dropped::Outage));
        assert_eq!(pipe.admit(at(14_999), 100), Err(Dropped::Outage));
        assert!(pipe.admit(at(15_000), 100).is_ok());
        assert_eq!(pipe.admit(at(70_001), 100), Err(Dropped::Outage));
    }

    #[test]
    fn the_benchmark_links_are_as_the_brief_describes() {
        let l2 = LinkSpec::named("L2").unwrap();
        assert_eq!(l2.base_rtt(), Duration::from_millis(100));
        assert_eq!(l2.up.rate_bps, 10_000_000);
        assert_eq!(l2.up.queue_bytes, 125_000);
        let l4 = LinkSpec::named("L4").unwrap();
        assert_eq!((l4.up.rate_bps, l4.down.rate_bps), (2_000_000, 8_000_000));
        assert_eq!(l4.base_rtt(), Duration::from_millis(300));
        assert!(LinkSpec::named("L5").unwrap().outages.is_some());
        assert!(LinkSpec::named("L9").is_none());
    }
}
