//! The forwarding queues port: the verified instances waiting for each PACS destination. The
//! archive index fills its forwarding inbox in the same write as each instance's entry
//! ([`crate::archive::ArchiveIndex::commit_verified`]); the fan-out moves the inbox into the
//! queues of the destinations each entry is for, and each destination's senders take their
//! queue oldest first. The adapters are the archive index's own (`sled`, `memory`): the inbox
//! and the queues must live in one engine for an entry to move between them safely.
//!
//! The contract, checked by [`conformance`]:
//! - `fan_out` puts each inbox entry in every queue `route` names for it before it leaves the
//!   inbox (an entry for no destination just leaves), and is durable when it returns; run again
//!   over an entry already queued (a crash between the two), it queues it no second time;
//! - `queued` answers a destination's entries oldest first, skipping those the caller is
//!   sending or holding back, at most `limit`;
//! - `update` changes an entry only while it is queued, `done` removes it once; neither is
//!   durable before `sync` (a lost `done` sends an instance again, which a PACS answers as a
//!   duplicate);
//! - counts add up under concurrent senders and survive a restart after `sync`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{IndexError, ToForward};

pub mod conformance;

/// An instance waiting for one destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Queued {
    #[serde(flatten)]
    pub item: ToForward,
    /// Unix seconds when it was queued.
    pub queued_at: i64,
    pub attempts: u32,
    pub last_error: Option<String>,
}

impl Queued {
    /// `item` as the fan-out queues it at `now` (unix seconds): not tried yet.
    pub fn new(item: ToForward, now: i64) -> Self {
        Self {
            item,
            queued_at: now,
            attempts: 0,
            last_error: None,
        }
    }
}

/// A destination's counts, kept across restarts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub sent: u64,
    pub failures: u64,
}

/// What one fan-out did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FannedOut {
    /// Inbox entries moved.
    pub moved: usize,
    /// New queue entries, per destination.
    pub added: BTreeMap<String, u64>,
    /// Inbox entries that cannot be read (a damaged disk), left in the inbox.
    pub unreadable: usize,
}

/// A queue entry by its id, or why it cannot be read.
pub type Entry = (u64, Result<Queued, String>);

/// Which destinations an inbox entry is for.
pub type Route<'a> = &'a dyn Fn(&ToForward) -> Vec<String>;

pub trait ForwardQueues: Send + Sync + std::fmt::Debug {
    /// Moves the inbox into the queues `route` names, each entry queued at `now` (unix
    /// seconds).
    fn fan_out(&self, route: Route<'_>, now: i64) -> Result<FannedOut, IndexError>;
    /// Up to `limit` of the destination's entries, oldest first, without those `skip` names;
    /// an entry that cannot be read is answered as its problem.
    fn queued(
        &self,
        destination: &str,
        limit: usize,
        skip: &dyn Fn(u64) -> bool,
    ) -> Result<Vec<Entry>, IndexError>;
    /// Entries in the destination's queue.
    fn len(&self, destination: &str) -> Result<u64, IndexError>;
    /// The destination's oldest entry.
    fn oldest(&self, destination: &str) -> Result<Option<Queued>, IndexError>;
    /// Keeps `queued` (its attempts, its last error) for the entry, while it is queued.
    fn update(&self, destination: &str, id: u64, queued: &Queued) -> Result<(), IndexError>;
    /// Removes a sent entry; whether it was there.
    fn done(&self, destination: &str, id: u64) -> Result<bool, IndexError>;
    fn counts(&self, destination: &str) -> Result<Counts, IndexError>;
    /// Adds to the destination's counts.
    fn count(&self, destination: &str, sent: u64, failures: u64) -> Result<(), IndexError>;
    /// Makes every queue change so far durable.
    fn sync(&self) -> Result<(), IndexError>;
}
