//! The clinic identifier: the only name the gateway trusts for a clinic, carried in the clinic's
//! certificate as a URI subject alternative name.

use std::fmt;
use std::str::FromStr;

/// URI SAN prefix that marks a clinic certificate: `urn:tpg:clinic:<id>`.
pub const CLINIC_URI_PREFIX: &str = "urn:tpg:clinic:";
/// URI SAN that marks the gateway certificate.
pub const GATEWAY_URI: &str = "urn:tpg:gateway";
/// Longest accepted clinic id; it must fit a DNS label so it can be used in host names.
pub const MAX_LEN: usize = 63;

/// A validated clinic id: 1 to 63 lowercase ASCII letters, digits and `-`, not starting or
/// ending with `-` (for example `jinzhou-03`).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ClinicId(String);

impl TryFrom<String> for ClinicId {
    type Error = ClinicIdError;
    fn try_from(s: String) -> Result<Self, ClinicIdError> {
        Self::new(&s)
    }
}

impl From<ClinicId> for String {
    fn from(id: ClinicId) -> String {
        id.0
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ClinicIdError {
    #[error("clinic id is empty; use lowercase letters, digits and '-', e.g. 'jinzhou-03'")]
    Empty,
    #[error("clinic id '{0}' is longer than {MAX_LEN} characters; choose a shorter id")]
    TooLong(String),
    #[error(
        "clinic id '{id}' contains '{bad}'; use only lowercase letters a-z, digits 0-9 and '-', \
         e.g. 'jinzhou-03'"
    )]
    BadChar { id: String, bad: char },
    #[error("clinic id '{0}' starts or ends with '-'; put letters or digits at both ends")]
    EdgeDash(String),
}

impl ClinicId {
    pub fn new(id: &str) -> Result<Self, ClinicIdError> {
        if id.is_empty() {
            return Err(ClinicIdError::Empty);
        }
        if id.len() > MAX_LEN {
            return Err(ClinicIdError::TooLong(id.to_owned()));
        }
        if let Some(bad) = id
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
        {
            return Err(ClinicIdError::BadChar {
                id: id.to_owned(),
                bad,
            });
        }
        if id.starts_with('-') || id.ends_with('-') {
            return Err(ClinicIdError::EdgeDash(id.to_owned()));
        }
        Ok(Self(id.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The URI SAN that carries this id in a certificate.
    pub fn to_uri(&self) -> String {
        format!("{CLINIC_URI_PREFIX}{}", self.0)
    }

    /// Reads a clinic id back from a URI SAN; `None` when the URI is not a clinic URI or the
    /// id in it is invalid.
    pub fn from_uri(uri: &str) -> Option<Self> {
        uri.strip_prefix(CLINIC_URI_PREFIX)
            .and_then(|id| Self::new(id).ok())
    }
}

impl FromStr for ClinicId {
    type Err = ClinicIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl fmt::Display for ClinicId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ClinicId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClinicId({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_lowercase_digits_and_inner_dashes() {
        for ok in ["a", "jinzhou", "jinzhou-03", "0", "a-b-c"] {
            assert_eq!(ClinicId::new(ok).map(|c| c.to_string()), Ok(ok.to_owned()));
        }
    }

    #[test]
    fn refuses_each_kind_of_bad_id_with_its_own_message() {
        assert_eq!(ClinicId::new(""), Err(ClinicIdError::Empty));
        assert!(matches!(
            ClinicId::new("Jinzhou"),
            Err(ClinicIdError::BadChar { bad: 'J', .. })
        ));
        assert!(matches!(
            ClinicId::new("jin zhou"),
            Err(ClinicIdError::BadChar { bad: ' ', .. })
        ));
        assert!(matches!(
            ClinicId::new("jin_zhou"),
            Err(ClinicIdError::BadChar { bad: '_', .. })
        ));
        assert!(matches!(
            ClinicId::new("金州"),
            Err(ClinicIdError::BadChar { .. })
        ));
        assert_eq!(
            ClinicId::new("-a"),
            Err(ClinicIdError::EdgeDash("-a".into()))
        );
        assert_eq!(
            ClinicId::new("a-"),
            Err(ClinicIdError::EdgeDash("a-".into()))
        );
        let long = "a".repeat(64);
        assert_eq!(ClinicId::new(&long), Err(ClinicIdError::TooLong(long)));
        assert!(ClinicId::new(&"a".repeat(63)).is_ok());
    }

    #[test]
    fn uri_round_trip_and_rejects_other_uris() {
        let id = ClinicId::new("pulandian").unwrap();
        assert_eq!(id.to_uri(), "urn:tpg:clinic:pulandian");
        assert_eq!(ClinicId::from_uri(&id.to_uri()), Some(id));
        assert_eq!(ClinicId::from_uri(GATEWAY_URI), None);
        assert_eq!(ClinicId::from_uri("urn:tpg:clinic:Bad"), None);
        assert_eq!(ClinicId::from_uri("https://example"), None);
    }
}
