//! Application close codes carried in QUIC CONNECTION_CLOSE frames (RFC 9000 §19.19), so the
//! peer and the logs can tell a shutdown from a refusal.

/// Why one end closed the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseCode {
    /// Orderly shutdown of the sending process; reconnect later.
    Shutdown,
    /// The peer broke the protocol (bad frame, wrong order, no hello in time).
    ProtocolError,
    /// No common protocol version; the reason text says who must upgrade.
    VersionMismatch,
    /// The clinic's certificate was revoked while it was connected.
    Revoked,
    /// Heartbeats went unanswered for too long.
    HeartbeatTimeout,
    /// The same clinic connected again; the older connection is closed.
    Replaced,
}

impl CloseCode {
    pub const ALL: [CloseCode; 6] = [
        CloseCode::Shutdown,
        CloseCode::ProtocolError,
        CloseCode::VersionMismatch,
        CloseCode::Revoked,
        CloseCode::HeartbeatTimeout,
        CloseCode::Replaced,
    ];

    pub fn code(self) -> u32 {
        match self {
            CloseCode::Shutdown => 0,
            CloseCode::ProtocolError => 1,
            CloseCode::VersionMismatch => 2,
            CloseCode::Revoked => 3,
            CloseCode::HeartbeatTimeout => 4,
            CloseCode::Replaced => 5,
        }
    }

    pub fn from_code(code: u64) -> Option<Self> {
        Self::ALL.into_iter().find(|c| u64::from(c.code()) == code)
    }

    /// Short label for logs and metrics.
    pub fn label(self) -> &'static str {
        match self {
            CloseCode::Shutdown => "shutdown",
            CloseCode::ProtocolError => "protocol_error",
            CloseCode::VersionMismatch => "version_mismatch",
            CloseCode::Revoked => "revoked",
            CloseCode::HeartbeatTimeout => "heartbeat_timeout",
            CloseCode::Replaced => "replaced",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_and_round_trip() {
        for c in CloseCode::ALL {
            assert_eq!(CloseCode::from_code(c.code().into()), Some(c));
        }
        assert_eq!(CloseCode::from_code(99), None);
    }
}
