//! Protocol versions and their ALPN names (`docs/protocol.md`, "Versioning").
//!
//! The ALPN token `tpg/<major>` names the protocol and its major version. Both ends also offer
//! the bare token `tpg`: a connection that can agree on nothing better lands there, and the
//! gateway uses it only to tell the agent which versions it speaks before closing. The frames
//! exchanged on `tpg` (`hello`, `version_mismatch`) are frozen for all time.

/// The major protocol version this build speaks; a change here is incompatible on the wire.
pub const PROTOCOL_MAJOR: u32 = 1;
/// Additions within a major version (new optional fields, new frame types) bump the minor.
pub const PROTOCOL_MINOR: u32 = 2;
/// The version-discovery ALPN token.
pub const DISCOVERY_ALPN: &[u8] = b"tpg";

/// ALPN token for one major version, e.g. `tpg/1`.
pub fn alpn(major: u32) -> Vec<u8> {
    format!("tpg/{major}").into_bytes()
}

/// ALPN tokens to offer, most preferred first.
pub fn offered_alpns(major: u32) -> Vec<Vec<u8>> {
    vec![alpn(major), DISCOVERY_ALPN.to_vec()]
}

/// What an ALPN token says about the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Negotiated {
    /// Both ends speak this major version.
    Major(u32),
    /// No shared major version: only the version exchange may happen.
    Discovery,
}

pub fn parse_alpn(token: &[u8]) -> Option<Negotiated> {
    if token == DISCOVERY_ALPN {
        return Some(Negotiated::Discovery);
    }
    let rest = token.strip_prefix(b"tpg/")?;
    let major = std::str::from_utf8(rest).ok()?.parse().ok()?;
    Some(Negotiated::Major(major))
}

/// The message a user sees when the two ends share no version. It names who must upgrade:
/// the older side.
pub fn mismatch_message(gateway_major: u32, agent_major: u32) -> String {
    let who = if agent_major < gateway_major {
        "upgrade the agent"
    } else {
        "upgrade the gateway (or install the agent version that matches it)"
    };
    format!("gateway speaks tpg/{gateway_major}, agent speaks tpg/{agent_major}: {who}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alpn_tokens_round_trip() {
        assert_eq!(alpn(1), b"tpg/1");
        assert_eq!(parse_alpn(b"tpg/1"), Some(Negotiated::Major(1)));
        assert_eq!(parse_alpn(b"tpg/12"), Some(Negotiated::Major(12)));
        assert_eq!(parse_alpn(b"tpg"), Some(Negotiated::Discovery));
        assert_eq!(parse_alpn(b"h3"), None);
        assert_eq!(parse_alpn(b"tpg/x"), None);
        assert_eq!(offered_alpns(3), vec![b"tpg/3".to_vec(), b"tpg".to_vec()]);
    }

    #[test]
    fn mismatch_message_names_the_side_to_upgrade() {
        assert_eq!(
            mismatch_message(2, 1),
            "gateway speaks tpg/2, agent speaks tpg/1: upgrade the agent"
        );
        assert!(mismatch_message(1, 2)
            .ends_with("upgrade the gateway (or install the agent version that matches it)"));
    }
}
