//! The accounts and sessions ports: who may log in to a daemon, and the tokens that stand for
//! them. The rules (password hashing, throttling, when a token is honoured) are the daemon's
//! (`daemon::accounts`); these ports only keep the records, so that the same rules run on
//! the embedded file and on a shared database.
//!
//! - [`AccountStore`] keeps the accounts (each with its argon2 password hash) and the
//!   long-lived script tokens. Adapters: the data folder's `accounts.json` ([`file`], changed
//!   under a lock by the daemon and the `user` commands at once) and [`memory`].
//! - [`SessionStore`] keeps login sessions. Adapter: [`memory`], the embedded default, so a
//!   restart asks people to log in again (a shared database keeps them for every node).
//!
//! Tokens are never stored: each is kept under its key, the SHA-256 of the token in hex, so
//! nothing these stores hold logs in by itself.
//!
//! The contract, checked by [`conformance`]:
//! - an account is added once (`Exists` after) unless replaced, and read back whole;
//! - deactivating an unknown account is `NoSuchUser`, as is a grant for one;
//! - a grant is read back by its key until revoked; granting drops the grants of the same
//!   store that expired before `now`;
//! - another handle on the same store (another process, another node) sees every change, and
//!   changes made through two handles at once are all kept.

use serde::{Deserialize, Serialize};

pub mod conformance;
pub mod file;
pub mod memory;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Hospital: reads, asks, reports. Linked to a specialist id in `routing.toml`.
    Specialist,
    /// Clinic: creates consultations, answers, reads reports.
    Doctor,
    /// Either site: everything, including assigning and managing accounts.
    Admin,
}

impl Role {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "specialist" => Some(Role::Specialist),
            "doctor" => Some(Role::Doctor),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    /// Its name, as [`Role::parse`] reads it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Specialist => "specialist",
            Role::Doctor => "doctor",
            Role::Admin => "admin",
        }
    }
}

/// A user as the API sees them (no password hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Login name.
    pub name: String,
    pub role: Role,
    /// The name printed on reports and in timelines.
    pub display_name: String,
    /// Specialists: their id in `routing.toml`.
    pub specialist: Option<String>,
    /// Specialists: the qualification printed on reports.
    pub qualification: Option<String>,
    /// A deactivated account cannot log in and its sessions and tokens stop working; its
    /// name stays on the reports and timelines it signed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deactivated: bool,
}

/// An account as stored: the user and their password's argon2 hash (a PHC string).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub user: User,
    pub hash: String,
}

/// What a token grants: who it stands for, until when, and under which password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub user: String,
    /// Unix seconds; `None` only for script tokens made before they expired.
    pub expires: Option<i64>,
    /// The password the token was issued under (a fingerprint of its hash): a new password
    /// ends every session and token made before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub under: Option<String>,
}

impl Grant {
    /// Whether the grant has run out at `now` (unix seconds); one without an end has.
    pub fn expired(&self, now: i64) -> bool {
        self.expires.is_none_or(|t| t <= now)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AccountStoreError {
    #[error("{0}")]
    Io(String),
    #[error("user {0} exists; pass --replace to set a new password")]
    Exists(String),
    #[error("no user {0}")]
    NoSuchUser(String),
}

impl From<crate::crash::Crashed> for AccountStoreError {
    fn from(_: crate::crash::Crashed) -> Self {
        AccountStoreError::Io("the machine lost power".into())
    }
}

/// The accounts and their script tokens.
pub trait AccountStore: Send + Sync + std::fmt::Debug {
    /// Every account, by name.
    fn accounts(&self) -> Result<Vec<Account>, AccountStoreError>;
    fn account(&self, name: &str) -> Result<Option<Account>, AccountStoreError>;
    /// Adds `account`; with `replace`, also replaces one of the same name.
    fn put_account(&self, account: Account, replace: bool) -> Result<(), AccountStoreError>;
    fn set_deactivated(&self, name: &str, deactivated: bool) -> Result<(), AccountStoreError>;
    /// Keeps a script token's grant under `key`, dropping the tokens expired at `now`.
    fn grant(&self, key: &str, grant: Grant, now: i64) -> Result<(), AccountStoreError>;
    fn granted(&self, key: &str) -> Result<Option<Grant>, AccountStoreError>;
    /// Removes a script token; whether it was there.
    fn revoke(&self, key: &str) -> Result<bool, AccountStoreError>;
    /// Every script token's grant, by key (a migration's walk).
    fn grants(&self) -> Result<Vec<(String, Grant)>, AccountStoreError>;
}

/// Login sessions.
pub trait SessionStore: Send + Sync + std::fmt::Debug {
    /// Keeps a session's grant under `key`, dropping the sessions expired at `now`.
    fn grant(&self, key: &str, grant: Grant, now: i64) -> Result<(), AccountStoreError>;
    fn granted(&self, key: &str) -> Result<Option<Grant>, AccountStoreError>;
    /// Ends a session; whether it was there.
    fn revoke(&self, key: &str) -> Result<bool, AccountStoreError>;
}
