//! The controller against a simulated line on a virtual clock: a bottleneck with a rate and a
//! drop-tail queue of one bandwidth-delay product, delay both ways, seeded random loss, and a
//! sender that always has data. Losses are declared when the packet's acknowledgement would
//! have come, as QUIC's time threshold roughly does.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::*;
use crate::rng::Rng;

const PACKET: u64 = 1_200;

struct Line {
    rate_bps: f64,
    one_way: Duration,
    queue_bytes: f64,
    loss: f64,
    /// Delay every packet meets besides our own queue: a queue someone else keeps full.
    others_queue: Duration,
}

#[derive(Default, Debug)]
struct Outcome {
    /// Bytes acknowledged per second over the measured part of the run.
    goodput_bps: f64,
    /// Mean time a packet waited in the bottleneck's queue.
    mean_queueing: Duration,
    /// Window at the end of the run.
    window: u64,
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    Ack { packet: u64, sent: Instant },
    Lost { packet: u64 },
}

/// Runs the controller for `secs` of virtual time; `change` may alter the line at a time.
/// Goodput and queueing are measured over the last half of the run.
fn simulate(
    mut line: Line,
    secs: u64,
    seed: u64,
    change: impl Fn(Duration, &mut Line),
) -> (Outcome, Controller) {
    let start = Instant::now();
    let end = start + Duration::from_secs(secs);
    let measure_from = start + Duration::from_secs(secs / 2);
    let mut cc = Controller::new(Config::default(), PACKET as u16);
    let mut rng = Rng::new(seed);
    let mut events: BinaryHeap<Reverse<(Instant, Event)>> = BinaryHeap::new();
    let (mut now, mut next_packet, mut in_flight) = (start, 0u64, 0u64);
    let mut busy_until = start;
    let (mut acked, mut queued, mut delivered) = (0u64, Duration::ZERO, 0u32);
    // The sender paces at 1.25 × window ÷ RTT, as quinn does, so the queue reflects the
    // window and not the size of its bursts.
    let mut next_send = start;
    while now < end {
        change(now - start, &mut line);
        if in_flight + PACKET <= cc.window() && next_send <= now {
            let packet = next_packet;
            next_packet += 1;
            in_flight += PACKET;
            cc.handle_sent(packet);
            let srtt = cc.base_rtt().unwrap_or(line.one_way * 2) + Duration::from_millis(5);
            let gap = srtt.as_secs_f64() * PACKET as f64 / (1.25 * cc.window() as f64);
            next_send = now + Duration::from_secs_f64(gap);
            let begin = busy_until.max(now);
            let wait = begin - now;
            let backlog = wait.as_secs_f64() * line.rate_bps / 8.0;
            let answer_at = if backlog + PACKET as f64 > line.queue_bytes {
                // Dropped at the queue: noticed about a round trip later.
                Reverse((now + line.one_way * 2 + wait, Event::Lost { packet }))
            } else {
                busy_until = begin + Duration::from_secs_f64(PACKET as f64 * 8.0 / line.rate_bps);
                if rng.next_unit() < line.loss {
                    Reverse((
                        busy_until + line.one_way * 2 + line.others_queue,
                        Event::Lost { packet },
                    ))
                } else {
                    if now >= measure_from {
                        queued += wait;
                        delivered += 1;
                    }
                    Reverse((
                        busy_until + line.one_way * 2 + line.others_queue,
                        Event::Ack { packet, sent: now },
                    ))
                }
            };
            events.push(answer_at);
            continue;
        }
        let wake = events.peek().map(|Reverse((at, _))| *at);
        let wake = match (wake, in_flight + PACKET <= cc.window()) {
            (Some(at), true) => at.min(next_send),
            (Some(at), false) => at,
            (None, _) => next_send.max(now),
        };
        now = wake.max(now);
        while let Some(Reverse((at, _))) = events.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((_, event))) = events.pop() else {
                break;
            };
            in_flight -= PACKET;
            match event {
                Event::Ack { packet, sent } => {
                    cc.handle_ack(now, sent, PACKET, false);
                    cc.handle_end_acks(now, Some(packet));
                    if now >= measure_from {
                        acked += PACKET;
                    }
                }
                Event::Lost { .. } => cc.handle_loss(now, PACKET, false),
            }
        }
    }
    let measured = (end - measure_from).as_secs_f64();
    let outcome = Outcome {
        goodput_bps: acked as f64 * 8.0 / measured,
        mean_queueing: queued.checked_div(delivered).unwrap_or_default(),
        window: cc.window(),
    };
    (outcome, cc)
}

fn line(mbps: f64, rtt_ms: u64, loss: f64) -> Line {
    let rate_bps = mbps * 1e6;
    Line {
        rate_bps,
        one_way: Duration::from_millis(rtt_ms / 2),
        queue_bytes: rate_bps / 8.0 * rtt_ms as f64 / 1000.0,
        loss,
        others_queue: Duration::ZERO,
    }
}

#[test]
fn keeps_its_rate_under_two_percent_random_loss() {
    for (mbps, rtt, seed) in [(10.0, 100, 1), (5.0, 200, 2), (20.0, 50, 3), (2.0, 300, 4)] {
        let (out, _) = simulate(line(mbps, rtt, 0.02), 60, seed, |_, _| {});
        let share = out.goodput_bps / (mbps * 1e6);
        // Lost packets still used the line, so 2 % of it is gone before any controller acts.
        assert!(
            share > 0.92,
            "{mbps} Mbit/s, {rtt} ms: {share:.3} of the line"
        );
    }
}

#[test]
fn holds_the_queue_well_under_one_round_trip() {
    let (out, cc) = simulate(line(10.0, 100, 0.01), 60, 5, |_, _| {});
    assert!(out.goodput_bps > 0.95 * 10e6, "{out:?}");
    assert!(out.mean_queueing < Duration::from_millis(40), "{out:?}");
    assert_eq!(cc.phase(), Phase::Steady);
    // The base is the round trip plus one packet's time on the line (0.96 ms).
    let base = cc.base_rtt().unwrap();
    assert!(
        base >= Duration::from_millis(100) && base < Duration::from_millis(102),
        "{base:?}"
    );
}

#[test]
fn backs_off_when_the_line_gets_slower() {
    // 10 Mbit/s, then from the 20th second the line carries only 2 (a neighbour's flow, a
    // worse radio channel): the window must follow, or the queue would stay full.
    let (out, _) = simulate(line(10.0, 100, 0.0), 60, 6, |t, l| {
        if t >= Duration::from_secs(20) {
            l.rate_bps = 2e6;
        }
    });
    assert!(out.goodput_bps > 0.9 * 2e6, "{out:?}");
    assert!(out.goodput_bps <= 2e6 * 1.001, "{out:?}");
    // One BDP at 10 Mbit/s would be 100 ms of queue at 2: the controller keeps well under it.
    assert!(out.mean_queueing < Duration::from_millis(50), "{out:?}");
    assert!(out.window < 40_000, "{out:?}");
}

#[test]
fn a_loss_based_window_collapses_where_this_one_does_not() {
    // The reason for this module: a loss-based sender gets at most the Mathis bound here.
    let (ours, _) = simulate(line(10.0, 100, 0.01), 60, 7, |_, _| {});
    let mathis = (PACKET as f64 * 8.0 / 0.1) * 1.22 / 0.01f64.sqrt();
    assert!(ours.goodput_bps > 5.0 * mathis, "{ours:?} vs {mathis}");
}

#[test]
fn heavy_loss_in_a_round_shrinks_the_window() {
    let now = Instant::now();
    let mut cc = Controller::new(Config::default(), 1200);
    for p in 0..10 {
        cc.handle_sent(p);
    }
    cc.handle_ack(now, now - Duration::from_millis(100), 6_000, false);
    let before = cc.window();
    cc.handle_loss(now, 6_000, false);
    cc.handle_end_acks(now, Some(9));
    assert!(cc.window() < before, "{} !< {before}", cc.window());
    assert_eq!(cc.phase(), Phase::Steady);
}

#[test]
fn an_outage_starts_again_from_a_small_window() {
    let (_, mut cc) = simulate(line(10.0, 100, 0.0), 20, 8, |_, _| {});
    assert!(cc.window() > 100_000);
    cc.handle_loss(Instant::now(), 50_000, true);
    assert_eq!(cc.window(), 4 * 1200);
    assert_eq!(cc.phase(), Phase::SlowStart);
}

#[test]
fn the_base_rtt_forgets_samples_older_than_its_window() {
    let start = Instant::now();
    let mut base = BaseRtt::default();
    base.sample(start, Duration::from_millis(50));
    base.sample(start + Duration::from_secs(5), Duration::from_millis(80));
    assert_eq!(base.get(), Some(Duration::from_millis(50)));
    base.sample(start + Duration::from_secs(12), Duration::from_millis(90));
    assert_eq!(base.get(), Some(Duration::from_millis(80)));
}

#[test]
fn sparse_acknowledgements_do_not_end_slow_start() {
    // While the sender has little to send, acknowledgements come late (delayed ACKs): those
    // samples are no sign of a queue.
    let start = Instant::now();
    let mut cc = Controller::new(Config::default(), 1200);
    for p in 0..4 {
        cc.handle_sent(p);
        let at = start + Duration::from_millis(100 * p);
        cc.handle_ack(at + Duration::from_millis(50), at, 1200, true);
        cc.handle_end_acks(at + Duration::from_millis(50), Some(p));
    }
    let at = start + Duration::from_secs(1);
    cc.handle_sent(4);
    cc.handle_ack(at + Duration::from_millis(75), at, 1200, true);
    cc.handle_end_acks(at + Duration::from_millis(75), Some(4));
    assert_eq!(cc.phase(), Phase::SlowStart);
    // The first acknowledgement of a busy sender does not end it either.
    cc.handle_sent(5);
    cc.handle_ack(at + Duration::from_millis(200), at, 1200, false);
    cc.handle_end_acks(at + Duration::from_millis(200), Some(5));
    assert_eq!(cc.phase(), Phase::SlowStart);
    assert_eq!(cc.window(), Config::default().initial_window + 1200);
}

#[test]
fn a_queue_someone_else_keeps_makes_it_compete_and_one_that_empties_ends_that() {
    // From the 20th second another flow keeps 40 ms of queue whatever we do.
    let (_, cc) = simulate(line(20.0, 50, 0.0), 30, 9, |t, l| {
        if t >= Duration::from_secs(20) {
            l.others_queue = Duration::from_millis(40);
        }
    });
    assert_eq!(cc.phase(), Phase::Compete);
    // It left again at the 20th second: a drain shows the empty queue.
    let (out, cc) = simulate(line(20.0, 50, 0.0), 40, 9, |t, l| {
        if (Duration::from_secs(10)..Duration::from_secs(20)).contains(&t) {
            l.others_queue = Duration::from_millis(40);
        } else {
            l.others_queue = Duration::ZERO;
        }
    });
    assert_eq!(cc.phase(), Phase::Steady);
    assert!(out.goodput_bps > 0.9 * 20e6, "{out:?}");
}

#[test]
fn alone_on_a_lossy_line_it_never_thinks_it_has_company() {
    for (mbps, rtt, loss, seed) in [
        (10.0, 100, 0.01, 10),
        (5.0, 200, 0.02, 11),
        (2.0, 300, 0.05, 12),
    ] {
        let start = Instant::now();
        let mut phases = Vec::new();
        let (_, cc) = simulate(line(mbps, rtt, loss), 60, seed, |t, _| {
            let _ = (start, t);
        });
        phases.push(cc.phase());
        assert_ne!(cc.phase(), Phase::Compete, "{mbps} Mbit/s {rtt} ms {loss}");
    }
}
