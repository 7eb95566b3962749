//! The link session state machines: [`AgentSession`] (dial, hello, heartbeats, reconnect
//! forever) and [`GatewaySession`] (one per accepted connection: version check, heartbeats).
//!
//! Both follow the same shape: the I/O layer reports what happened with `handle_*(now, ..)`,
//! then drains `poll_action()` (things to do on the wire) and `poll_event()` (things to tell
//! logs, metrics and status), and sleeps until `poll_timeout()`. No sockets, no clocks.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::backoff::{Backoff, BackoffConfig};
use crate::close::CloseCode;
use crate::frame::{ControlFrame, Specialty, MAX_SPECIALTIES};
use crate::heartbeat::{Heard, Heartbeat, HeartbeatConfig};
use crate::version::{self, Negotiated};

/// What the I/O layer must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Open a new connection (agent only) and its control stream, then call `handle_dialed`.
    Dial,
    Send(ControlFrame),
    /// Close the connection with this application code and reason.
    Close(CloseCode, String),
}

/// Settings shared by both ends.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub major: u32,
    pub minor: u32,
    /// This end's software version, sent in hello/welcome.
    pub software_version: String,
    pub heartbeat: HeartbeatConfig,
    /// How long to wait for the peer's hello (gateway) or welcome (agent).
    pub handshake_timeout: Duration,
}

impl SessionConfig {
    /// This build's protocol version with the given timings; the heartbeat silence limit is
    /// the idle timeout, so both ends give up on a silent peer when QUIC would.
    pub fn new(
        software_version: &str,
        heartbeat_interval: Duration,
        idle_timeout: Duration,
        handshake_timeout: Duration,
    ) -> Self {
        Self {
            software_version: software_version.to_owned(),
            heartbeat: HeartbeatConfig {
                interval: heartbeat_interval,
                timeout: idle_timeout,
            },
            handshake_timeout,
            ..Self::default()
        }
    }
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            major: version::PROTOCOL_MAJOR,
            minor: version::PROTOCOL_MINOR,
            software_version: String::new(),
            heartbeat: HeartbeatConfig::default(),
            handshake_timeout: Duration::from_secs(15),
        }
    }
}

/// What the agent's link did, for logs, metrics and the status page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentEvent {
    Up {
        clinic: String,
        gateway_version: String,
    },
    Rtt {
        sample: Duration,
        smoothed: Duration,
    },
    /// The link went down or a dial failed; the next dial is in `retry_in`.
    Down { reason: String, retry_in: Duration },
    /// The gateway speaks no version we speak; the message says who must upgrade.
    VersionMismatch { message: String },
    /// The roster's specialties, as the gateway sent them (entries a peer cannot mean are
    /// dropped, and the list is cut at [`MAX_SPECIALTIES`]).
    Specialties(Vec<Specialty>),
}

#[derive(Debug)]
enum AgentState {
    Waiting { until: Instant },
    Dialing,
    Handshaking { since: Instant },
    Up { heartbeat: Heartbeat },
}

/// The clinic side of the link: keeps one connection to the gateway up, forever.
#[derive(Debug)]
pub struct AgentSession {
    config: SessionConfig,
    backoff: Backoff,
    state: AgentState,
    actions: VecDeque<Action>,
    events: VecDeque<AgentEvent>,
}

impl AgentSession {
    /// Starts wanting a connection at once. `seed` varies the jitter between clinics.
    pub fn new(config: SessionConfig, backoff: BackoffConfig, seed: u64, now: Instant) -> Self {
        Self {
            config,
            backoff: Backoff::new(backoff, seed),
            state: AgentState::Waiting { until: now },
            actions: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    pub fn is_up(&self) -> bool {
        matches!(self.state, AgentState::Up { .. })
    }

    /// Queues a report (a backlog) on the control stream; dropped while the link is not up.
    pub fn report(&mut self, frame: ControlFrame) {
        if self.is_up() {
            self.actions.push_back(Action::Send(frame));
        }
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<AgentEvent> {
        self.events.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.state {
            AgentState::Waiting { until } => Some(*until),
            AgentState::Dialing => None,
            AgentState::Handshaking { since } => Some(*since + self.config.handshake_timeout),
            AgentState::Up { heartbeat } => Some(heartbeat.poll_timeout()),
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        match &mut self.state {
            AgentState::Waiting { until } if now >= *until => {
                self.state = AgentState::Dialing;
                self.actions.push_back(Action::Dial);
            }
            AgentState::Handshaking { since } if now >= *since + self.config.handshake_timeout => {
                self.fail(
                    now,
                    CloseCode::ProtocolError,
                    "gateway sent no welcome in time".into(),
                );
            }
            AgentState::Up { heartbeat } => {
                if heartbeat.is_dead(now) {
                    let silence = heartbeat.silence(now);
                    self.fail(
                        now,
                        CloseCode::HeartbeatTimeout,
                        format!("no heartbeat from the gateway for {}s", silence.as_secs()),
                    );
                } else if let Some(ping) = heartbeat.poll_ping(now) {
                    self.actions.push_back(Action::Send(ping));
                }
            }
            _ => {}
        }
    }

    /// The connection and its control stream are open: say hello.
    pub fn handle_dialed(&mut self, now: Instant) {
        if !matches!(self.state, AgentState::Dialing) {
            return;
        }
        self.state = AgentState::Handshaking { since: now };
        self.actions.push_back(Action::Send(ControlFrame::Hello {
            major: self.config.major,
            minor: self.config.minor,
            agent_version: self.config.software_version.clone(),
        }));
    }

    pub fn handle_dial_failed(&mut self, now: Instant, reason: String) {
        if matches!(self.state, AgentState::Dialing) {
            self.wait(now, reason);
        }
    }

    /// The connection is gone (closed by the peer, lost, or refused after the handshake).
    pub fn handle_closed(&mut self, now: Instant, reason: String) {
        if !matches!(self.state, AgentState::Waiting { .. }) {
            self.wait(now, reason);
        }
    }

    pub fn handle_frame(&mut self, now: Instant, frame: ControlFrame) {
        match (&mut self.state, frame) {
            (
                AgentState::Handshaking { .. },
                ControlFrame::Welcome {
                    major,
                    clinic,
                    gateway_version,
                    ..
                },
            ) if major == self.config.major => {
                let mut heartbeat = Heartbeat::new(self.config.heartbeat, now);
                if let Some(ping) = heartbeat.poll_ping(now) {
                    self.actions.push_back(Action::Send(ping));
                }
                self.state = AgentState::Up { heartbeat };
                self.backoff.reset();
                self.events.push_back(AgentEvent::Up {
                    clinic,
                    gateway_version,
                });
            }
            (
                AgentState::Handshaking { .. },
                ControlFrame::VersionMismatch {
                    gateway_majors,
                    agent_major: _,
                },
            ) => {
                let gateway = gateway_majors.iter().copied().max().unwrap_or(0);
                let message = version::mismatch_message(gateway, self.config.major);
                self.events.push_back(AgentEvent::VersionMismatch {
                    message: message.clone(),
                });
                self.fail(now, CloseCode::VersionMismatch, message);
            }
            (AgentState::Up { heartbeat }, frame) => match heartbeat.on_frame(now, &frame) {
                Heard::Reply(pong) => self.actions.push_back(Action::Send(pong)),
                Heard::Rtt(sample) => {
                    let smoothed = heartbeat.rtt().unwrap_or(sample);
                    self.events.push_back(AgentEvent::Rtt { sample, smoothed });
                }
                Heard::Nothing => match frame {
                    ControlFrame::Specialties { mut list } => {
                        list.retain(Specialty::is_sane);
                        list.truncate(MAX_SPECIALTIES);
                        self.events.push_back(AgentEvent::Specialties(list));
                    }
                    ControlFrame::Pong { .. } | ControlFrame::Unknown => {}
                    frame => self.fail(
                        now,
                        CloseCode::ProtocolError,
                        format!("unexpected {} frame from the gateway", frame.name()),
                    ),
                },
            },
            (AgentState::Handshaking { .. }, ControlFrame::Unknown) => {}
            (AgentState::Handshaking { .. }, frame) => self.fail(
                now,
                CloseCode::ProtocolError,
                format!(
                    "unexpected {} frame while waiting for welcome",
                    frame.name()
                ),
            ),
            // Frames of a connection we already gave up on.
            (AgentState::Waiting { .. } | AgentState::Dialing, _) => {}
        }
    }

    /// The process is stopping: close the connection politely.
    pub fn shutdown(&mut self) {
        if matches!(
            self.state,
            AgentState::Handshaking { .. } | AgentState::Up { .. }
        ) {
            self.actions.push_back(Action::Close(
                CloseCode::Shutdown,
                "clinic agent shutting down".into(),
            ));
        }
    }

    fn fail(&mut self, now: Instant, code: CloseCode, reason: String) {
        self.actions.push_back(Action::Close(code, reason.clone()));
        self.wait(now, reason);
    }

    fn wait(&mut self, now: Instant, reason: String) {
        let retry_in = self.backoff.next_delay();
        self.state = AgentState::Waiting {
            until: now + retry_in,
        };
        self.events.push_back(AgentEvent::Down { reason, retry_in });
    }
}

/// What a gateway connection did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayEvent {
    Up {
        agent_version: String,
        minor: u32,
    },
    Rtt {
        sample: Duration,
        smoothed: Duration,
    },
    /// The agent reported its backlog.
    Backlog(crate::frame::Backlog),
    /// The agent speaks another major version; it has been told.
    VersionMismatch {
        agent_major: u32,
    },
    /// The session ended from this side with this code.
    Closed {
        code: CloseCode,
        reason: String,
    },
}

#[derive(Debug)]
enum GatewayState {
    AwaitHello {
        since: Instant,
    },
    /// The agent said hello; the gateway checks it may be admitted before it welcomes it.
    Admitting,
    Up {
        heartbeat: Heartbeat,
    },
    Closed,
}

/// The hospital side of one agent connection.
#[derive(Debug)]
pub struct GatewaySession {
    config: SessionConfig,
    negotiated: Negotiated,
    clinic: String,
    state: GatewayState,
    actions: VecDeque<Action>,
    events: VecDeque<GatewayEvent>,
}

impl GatewaySession {
    /// `clinic` is the id read from the agent's certificate.
    pub fn new(
        config: SessionConfig,
        negotiated: Negotiated,
        clinic: String,
        now: Instant,
    ) -> Self {
        Self {
            config,
            negotiated,
            clinic,
            state: GatewayState::AwaitHello { since: now },
            actions: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<GatewayEvent> {
        self.events.pop_front()
    }

    pub fn is_closed(&self) -> bool {
        matches!(self.state, GatewayState::Closed)
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.state {
            GatewayState::AwaitHello { since } => Some(*since + self.config.handshake_timeout),
            GatewayState::Up { heartbeat } => Some(heartbeat.poll_timeout()),
            // The driver admits or refuses at once, in the same turn.
            GatewayState::Admitting | GatewayState::Closed => None,
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        match &mut self.state {
            GatewayState::AwaitHello { since } if now >= *since + self.config.handshake_timeout => {
                self.close(
                    CloseCode::ProtocolError,
                    "agent sent no hello in time".into(),
                );
            }
            GatewayState::Up { heartbeat } => {
                if heartbeat.is_dead(now) {
                    let secs = heartbeat.silence(now).as_secs();
                    self.close(
                        CloseCode::HeartbeatTimeout,
                        format!("no heartbeat from the agent for {secs}s"),
                    );
                } else if let Some(ping) = heartbeat.poll_ping(now) {
                    self.actions.push_back(Action::Send(ping));
                }
            }
            _ => {}
        }
    }

    /// Welcomes the agent that said hello (after the driver's admission checks): the link is
    /// up from here.
    pub fn admit(&mut self, now: Instant) {
        if !matches!(self.state, GatewayState::Admitting) {
            return;
        }
        self.actions.push_back(Action::Send(ControlFrame::Welcome {
            major: self.config.major,
            minor: self.config.minor,
            gateway_version: self.config.software_version.clone(),
            clinic: self.clinic.clone(),
        }));
        let mut heartbeat = Heartbeat::new(self.config.heartbeat, now);
        if let Some(ping) = heartbeat.poll_ping(now) {
            self.actions.push_back(Action::Send(ping));
        }
        self.state = GatewayState::Up { heartbeat };
    }

    pub fn handle_frame(&mut self, now: Instant, frame: ControlFrame) {
        match (&mut self.state, frame) {
            (
                GatewayState::AwaitHello { .. },
                ControlFrame::Hello {
                    major,
                    minor,
                    agent_version,
                },
            ) => {
                if self.negotiated != Negotiated::Major(self.config.major)
                    || major != self.config.major
                {
                    self.actions
                        .push_back(Action::Send(ControlFrame::VersionMismatch {
                            gateway_majors: vec![self.config.major],
                            agent_major: major,
                        }));
                    self.events
                        .push_back(GatewayEvent::VersionMismatch { agent_major: major });
                    self.close(
                        CloseCode::VersionMismatch,
                        version::mismatch_message(self.config.major, major),
                    );
                    return;
                }
                // No welcome yet: the driver admits the agent ([`Self::admit`]) once its own
                // checks pass, so a refused agent is never welcomed.
                self.state = GatewayState::Admitting;
                self.events.push_back(GatewayEvent::Up {
                    agent_version,
                    minor,
                });
            }
            (GatewayState::Admitting, ControlFrame::Unknown) => {}
            (GatewayState::Admitting, frame) => self.close(
                CloseCode::ProtocolError,
                format!("unexpected {} frame before the welcome", frame.name()),
            ),
            (GatewayState::AwaitHello { .. }, ControlFrame::Unknown) => {}
            (GatewayState::AwaitHello { .. }, frame) => self.close(
                CloseCode::ProtocolError,
                format!("expected hello, got {}", frame.name()),
            ),
            (GatewayState::Up { heartbeat }, frame) => match heartbeat.on_frame(now, &frame) {
                Heard::Reply(pong) => self.actions.push_back(Action::Send(pong)),
                Heard::Rtt(sample) => {
                    let smoothed = heartbeat.rtt().unwrap_or(sample);
                    self.events
                        .push_back(GatewayEvent::Rtt { sample, smoothed });
                }
                Heard::Nothing => match frame {
                    ControlFrame::Backlog(b) => self.events.push_back(GatewayEvent::Backlog(b)),
                    ControlFrame::Pong { .. } | ControlFrame::Unknown => {}
                    frame => {
                        self.close(
                            CloseCode::ProtocolError,
                            format!("unexpected {} frame from the agent", frame.name()),
                        );
                    }
                },
            },
            (GatewayState::Closed, _) => {}
        }
    }

    /// Closes from this side (shutdown, revocation, replaced by a newer connection).
    pub fn close(&mut self, code: CloseCode, reason: String) {
        if self.is_closed() {
            return;
        }
        self.state = GatewayState::Closed;
        self.actions.push_back(Action::Close(code, reason.clone()));
        self.events.push_back(GatewayEvent::Closed { code, reason });
    }
}

#[cfg(test)]
mod tests;
