//! Both session state machines driven against each other on a virtual clock: a simulated
//! network with delay, partitions and gateway restarts, and no sockets or sleeps.

use super::*;
use crate::frame::MAX_SPECIALTY_NAME;

const MS: Duration = Duration::from_millis(1);
const SEC: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
enum Msg {
    Frame(ControlFrame),
    Close(String),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Dir {
    ToGateway,
    ToAgent,
}

struct Sim {
    now: Instant,
    one_way: Duration,
    agent: AgentSession,
    gateway_major: u32,
    gateway_running: bool,
    /// While partitioned every packet is lost and dials time out.
    partitioned: bool,
    gateway: Option<GatewaySession>,
    generation: u64,
    in_flight: Vec<(Instant, Dir, u64, Msg)>,
    dial_done_at: Option<Instant>,
    dials: Vec<Instant>,
    agent_events: Vec<(Instant, AgentEvent)>,
    gateway_events: Vec<(Instant, GatewayEvent)>,
}

fn config(major: u32) -> SessionConfig {
    SessionConfig {
        major,
        minor: 0,
        software_version: "test".into(),
        heartbeat: HeartbeatConfig {
            interval: 5 * SEC,
            timeout: 20 * SEC,
        },
        handshake_timeout: 10 * SEC,
    }
}

impl Sim {
    fn new(agent_major: u32, gateway_major: u32) -> Self {
        let now = Instant::now();
        Self {
            now,
            one_way: 150 * MS,
            agent: AgentSession::new(config(agent_major), BackoffConfig::default(), 7, now),
            gateway_major,
            gateway_running: true,
            partitioned: false,
            gateway: None,
            generation: 0,
            in_flight: Vec::new(),
            dial_done_at: None,
            dials: Vec::new(),
            agent_events: Vec::new(),
            gateway_events: Vec::new(),
        }
    }

    fn send(&mut self, dir: Dir, msg: Msg) {
        if !self.partitioned {
            let gen = self.generation;
            self.in_flight
                .push((self.now + self.one_way, dir, gen, msg));
        }
    }

    fn drain(&mut self) {
        loop {
            let mut progressed = false;
            while let Some(action) = self.agent.poll_action() {
                progressed = true;
                match action {
                    Action::Dial => {
                        self.dials.push(self.now);
                        self.dial_done_at = Some(self.now + 2 * self.one_way);
                    }
                    Action::Send(f) => self.send(Dir::ToGateway, Msg::Frame(f)),
                    Action::Close(_, reason) => {
                        self.send(Dir::ToGateway, Msg::Close(reason));
                        self.generation += 1;
                    }
                }
            }
            while let Some(e) = self.agent.poll_event() {
                self.agent_events.push((self.now, e));
            }
            if let Some(gw) = self.gateway.as_mut() {
                // The driver's part: an agent that says hello is admitted at once.
                while let Some(e) = gw.poll_event() {
                    if matches!(e, GatewayEvent::Up { .. }) {
                        gw.admit(self.now);
                    }
                    self.gateway_events.push((self.now, e));
                }
                let mut out = Vec::new();
                while let Some(action) = gw.poll_action() {
                    out.push(action);
                }
                for action in out {
                    progressed = true;
                    match action {
                        Action::Send(f) => self.send(Dir::ToAgent, Msg::Frame(f)),
                        Action::Close(_, reason) => {
                            self.send(Dir::ToAgent, Msg::Close(reason));
                            self.gateway = None;
                        }
                        Action::Dial => unreachable!("the gateway never dials"),
                    }
                }
            }
            if !progressed {
                return;
            }
        }
    }

    fn next_time(&self) -> Option<Instant> {
        [
            self.agent.poll_timeout(),
            self.gateway.as_ref().and_then(|g| g.poll_timeout()),
            self.in_flight.iter().map(|m| m.0).min(),
            self.dial_done_at,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Runs the simulation until `until`, processing everything due on the way.
    fn run_until(&mut self, until: Instant) {
        self.drain();
        while let Some(t) = self.next_time().filter(|t| *t <= until) {
            self.now = self.now.max(t);
            if self.dial_done_at.is_some_and(|d| d <= self.now) {
                self.dial_done_at = None;
                if self.gateway_running && !self.partitioned {
                    self.generation += 1;
                    let negotiated = if self.agent.config.major == self.gateway_major {
                        Negotiated::Major(self.gateway_major)
                    } else {
                        Negotiated::Discovery
                    };
                    self.gateway = Some(GatewaySession::new(
                        config(self.gateway_major),
                        negotiated,
                        "jinzhou".into(),
                        self.now,
                    ));
                    self.agent.handle_dialed(self.now);
                } else {
                    self.agent.handle_dial_failed(self.now, "timed out".into());
                }
            }
            let now = self.now;
            let (due, later): (Vec<_>, Vec<_>) = self.in_flight.drain(..).partition(|m| m.0 <= now);
            self.in_flight = later;
            for (_, dir, gen, msg) in due {
                if gen != self.generation {
                    continue;
                }
                match (dir, msg) {
                    (Dir::ToAgent, Msg::Frame(f)) => self.agent.handle_frame(now, f),
                    (Dir::ToAgent, Msg::Close(reason)) => self.agent.handle_closed(now, reason),
                    (Dir::ToGateway, Msg::Frame(f)) => {
                        if let Some(gw) = self.gateway.as_mut() {
                            gw.handle_frame(now, f);
                        }
                    }
                    (Dir::ToGateway, Msg::Close(_)) => self.gateway = None,
                }
            }
            self.agent.handle_timeout(now);
            if let Some(gw) = self.gateway.as_mut() {
                gw.handle_timeout(now);
            }
            self.drain();
        }
        self.now = until;
    }

    fn advance(&mut self, by: Duration) {
        let until = self.now + by;
        self.run_until(until);
    }

    fn restart_gateway(&mut self, down_for: Duration) {
        if let Some(gw) = self.gateway.as_mut() {
            gw.close(CloseCode::Shutdown, "gateway shutting down".into());
        }
        self.drain();
        self.gateway_running = false;
        self.advance(down_for);
        self.gateway_running = true;
    }

    fn ups(&self) -> usize {
        self.agent_events
            .iter()
            .filter(|(_, e)| matches!(e, AgentEvent::Up { .. }))
            .count()
    }
}

#[test]
fn link_comes_up_and_both_ends_measure_the_round_trip() {
    let mut sim = Sim::new(1, 1);
    sim.advance(12 * SEC);
    assert!(sim.agent.is_up());
    assert_eq!(sim.ups(), 1);
    let (up_at, _) = sim.agent_events[0].clone();
    // Dial (one round trip), hello, welcome: up after two round trips.
    assert_eq!(up_at - sim.dials[0], 4 * sim.one_way);
    let agent_rtts: Vec<_> = sim
        .agent_events
        .iter()
        .filter_map(|(_, e)| match e {
            AgentEvent::Rtt { sample, .. } => Some(*sample),
            _ => None,
        })
        .collect();
    assert_eq!(
        agent_rtts,
        vec![300 * MS; 3],
        "one ping at up, then every 5 s"
    );
    assert!(sim.gateway_events.iter().any(|(_, e)| matches!(
        e,
        GatewayEvent::Rtt { smoothed, .. } if *smoothed == 300 * MS
    )));
    assert!(matches!(
        &sim.agent_events[0].1,
        AgentEvent::Up { clinic, .. } if clinic == "jinzhou"
    ));
}

#[test]
fn unreachable_gateway_is_retried_forever_with_capped_backoff() {
    let mut sim = Sim::new(1, 1);
    sim.gateway_running = false;
    sim.advance(Duration::from_secs(600));
    assert!(!sim.agent.is_up());
    let gaps: Vec<Duration> = sim.dials.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps.len() > 15, "kept dialling: {} dials", sim.dials.len());
    // Each gap is the dial's own round trip plus the backoff delay, which never exceeds 30 s.
    assert!(
        gaps.iter().all(|g| *g <= 30 * SEC + 2 * sim.one_way),
        "{gaps:?}"
    );
    assert!(gaps[0] < 2 * SEC, "first retry is quick: {:?}", gaps[0]);
    assert!(
        gaps.last().is_some_and(|g| *g >= 15 * SEC),
        "later retries back off: {gaps:?}"
    );

    sim.gateway_running = true;
    sim.advance(31 * SEC);
    assert!(
        sim.agent.is_up(),
        "comes up within one capped backoff of the gateway returning"
    );
}

#[test]
fn gateway_restart_is_followed_by_automatic_reconnect() {
    let mut sim = Sim::new(1, 1);
    sim.advance(5 * SEC);
    assert!(sim.agent.is_up());
    sim.restart_gateway(10 * SEC);
    assert!(!sim.agent.is_up());
    assert!(sim.agent_events.iter().any(|(_, e)| matches!(
        e,
        AgentEvent::Down { reason, .. } if reason == "gateway shutting down"
    )));
    sim.advance(30 * SEC);
    assert!(sim.agent.is_up());
    assert_eq!(sim.ups(), 2);

    // A successful link resets the backoff: the next outage starts with a short retry.
    sim.restart_gateway(Duration::ZERO);
    sim.advance(3 * SEC);
    assert!(
        sim.agent.is_up(),
        "reconnected quickly after the backoff reset"
    );
    assert_eq!(sim.ups(), 3);
}

#[test]
fn silent_partition_is_detected_by_heartbeats_on_both_ends() {
    let mut sim = Sim::new(1, 1);
    sim.advance(5 * SEC);
    assert!(sim.agent.is_up());
    sim.partitioned = true;
    sim.in_flight.clear();
    sim.advance(25 * SEC);
    assert!(!sim.agent.is_up());
    assert!(sim.agent_events.iter().any(|(_, e)| matches!(
        e,
        AgentEvent::Down { reason, .. } if reason.starts_with("no heartbeat from the gateway")
    )));
    assert!(sim.gateway_events.iter().any(|(_, e)| matches!(
        e,
        GatewayEvent::Closed {
            code: CloseCode::HeartbeatTimeout,
            ..
        }
    )));
    sim.partitioned = false;
    sim.advance(40 * SEC);
    assert!(sim.agent.is_up(), "the link heals by itself");
}

#[test]
fn older_agent_is_told_to_upgrade_and_keeps_trying() {
    let mut sim = Sim::new(1, 2);
    sim.advance(120 * SEC);
    assert!(!sim.agent.is_up());
    let messages: Vec<_> = sim
        .agent_events
        .iter()
        .filter_map(|(_, e)| match e {
            AgentEvent::VersionMismatch { message } => Some(message.clone()),
            _ => None,
        })
        .collect();
    assert!(messages.len() > 1, "never gives up: {messages:?}");
    assert_eq!(
        messages[0],
        "gateway speaks tpg/2, agent speaks tpg/1: upgrade the agent"
    );
    assert!(sim
        .gateway_events
        .iter()
        .any(|(_, e)| *e == GatewayEvent::VersionMismatch { agent_major: 1 }));

    // Once the agent matches the gateway (upgraded), it connects.
    sim.agent.config.major = 2;
    sim.advance(31 * SEC);
    assert!(sim.agent.is_up());
}

#[test]
fn newer_agent_is_told_the_gateway_needs_upgrading() {
    let mut sim = Sim::new(3, 1);
    sim.advance(5 * SEC);
    assert!(sim.agent_events.iter().any(|(_, e)| matches!(
        e,
        AgentEvent::VersionMismatch { message } if message.starts_with("gateway speaks tpg/1, agent speaks tpg/3: upgrade the gateway")
    )));
}

#[test]
fn gateway_closes_a_connection_that_never_says_hello() {
    let t0 = Instant::now();
    let mut gw = GatewaySession::new(config(1), Negotiated::Major(1), "x".into(), t0);
    assert_eq!(gw.poll_timeout(), Some(t0 + 10 * SEC));
    gw.handle_timeout(t0 + 9 * SEC);
    assert_eq!(gw.poll_action(), None);
    gw.handle_timeout(t0 + 10 * SEC);
    assert_eq!(
        gw.poll_action(),
        Some(Action::Close(
            CloseCode::ProtocolError,
            "agent sent no hello in time".into()
        ))
    );
    assert!(gw.is_closed());
}

#[test]
fn out_of_order_frames_are_protocol_errors_and_unknown_ones_are_ignored() {
    let t0 = Instant::now();
    let mut gw = GatewaySession::new(config(1), Negotiated::Major(1), "x".into(), t0);
    gw.handle_frame(t0, ControlFrame::Unknown);
    assert!(!gw.is_closed());
    gw.handle_frame(t0, ControlFrame::Ping { seq: 1 });
    assert_eq!(
        gw.poll_action(),
        Some(Action::Close(
            CloseCode::ProtocolError,
            "expected hello, got ping".into()
        ))
    );

    let mut agent = AgentSession::new(config(1), BackoffConfig::default(), 1, t0);
    agent.handle_timeout(t0);
    assert_eq!(agent.poll_action(), Some(Action::Dial));
    agent.handle_dialed(t0);
    assert!(matches!(
        agent.poll_action(),
        Some(Action::Send(ControlFrame::Hello { major: 1, .. }))
    ));
    agent.handle_frame(
        t0,
        ControlFrame::Hello {
            major: 1,
            minor: 0,
            agent_version: String::new(),
        },
    );
    assert!(matches!(
        agent.poll_action(),
        Some(Action::Close(CloseCode::ProtocolError, r)) if r == "unexpected hello frame while waiting for welcome"
    ));
    assert!(!agent.is_up());
}

#[test]
fn shutdown_closes_politely_only_when_connected() {
    let t0 = Instant::now();
    let mut agent = AgentSession::new(config(1), BackoffConfig::default(), 1, t0);
    agent.shutdown();
    assert_eq!(agent.poll_action(), None);
    agent.handle_timeout(t0);
    let _ = agent.poll_action();
    agent.handle_dialed(t0);
    let _ = agent.poll_action();
    agent.shutdown();
    assert!(matches!(
        agent.poll_action(),
        Some(Action::Close(CloseCode::Shutdown, _))
    ));
}

#[test]
fn the_gateways_specialties_reach_the_agent_without_what_it_cannot_mean() {
    let t0 = Instant::now();
    let mut agent = AgentSession::new(config(1), BackoffConfig::default(), 1, t0);
    agent.handle_timeout(t0);
    assert_eq!(agent.poll_action(), Some(Action::Dial));
    agent.handle_dialed(t0);
    agent.handle_frame(
        t0,
        ControlFrame::Welcome {
            major: 1,
            minor: 2,
            gateway_version: "test".into(),
            clinic: "jinzhou".into(),
        },
    );
    assert!(agent.is_up());
    let cardiology = Specialty {
        id: "cardiology".into(),
        zh: Some("心内科".into()),
        en: Some("Cardiology".into()),
    };
    let mut list = vec![
        cardiology.clone(),
        Specialty {
            id: " ".into(),
            zh: None,
            en: None,
        },
        Specialty {
            id: "x".into(),
            zh: Some("a\u{7}b".into()),
            en: None,
        },
        Specialty {
            id: "y".repeat(MAX_SPECIALTY_NAME + 1),
            zh: None,
            en: None,
        },
    ];
    list.extend((0..MAX_SPECIALTIES).map(|n| Specialty {
        id: format!("s{n}"),
        zh: None,
        en: None,
    }));
    agent.handle_frame(t0, ControlFrame::Specialties { list });
    assert!(agent.is_up(), "a list is not a protocol error");
    let got = std::iter::from_fn(|| agent.poll_event())
        .find_map(|e| match e {
            AgentEvent::Specialties(list) => Some(list),
            _ => None,
        })
        .expect("the list is handed on");
    assert_eq!(got.len(), MAX_SPECIALTIES);
    assert_eq!(got[0], cardiology);
    assert_eq!(got[1].id, "s0", "empty, control and overlong names dropped");
    assert_eq!(cardiology.name(true), "心内科");
    assert_eq!(cardiology.name(false), "Cardiology");
    assert_eq!(got[1].name(true), "s0", "no name: its id");
}

#[test]
fn a_hello_is_welcomed_only_once_the_gateway_admits_the_agent() {
    let t0 = Instant::now();
    let mut gw = GatewaySession::new(config(1), Negotiated::Major(1), "jinzhou".into(), t0);
    gw.handle_frame(
        t0,
        ControlFrame::Hello {
            major: 1,
            minor: 2,
            agent_version: "x".into(),
        },
    );
    assert!(matches!(
        gw.poll_event(),
        Some(GatewayEvent::Up { minor: 2, .. })
    ));
    assert_eq!(gw.poll_action(), None, "no welcome before admission");
    // A refused agent is closed without ever being welcomed.
    let mut refused = GatewaySession::new(config(1), Negotiated::Major(1), "x".into(), t0);
    refused.handle_frame(
        t0,
        ControlFrame::Hello {
            major: 1,
            minor: 2,
            agent_version: "x".into(),
        },
    );
    refused.close(CloseCode::Revoked, "revoked".into());
    assert!(matches!(
        refused.poll_action(),
        Some(Action::Close(CloseCode::Revoked, _))
    ));
    gw.admit(t0);
    assert!(matches!(
        gw.poll_action(),
        Some(Action::Send(ControlFrame::Welcome { clinic, .. })) if clinic == "jinzhou"
    ));
    gw.admit(t0);
    assert!(
        !std::iter::from_fn(|| gw.poll_action())
            .any(|a| matches!(a, Action::Send(ControlFrame::Welcome { .. }))),
        "welcomed once"
    );
}
