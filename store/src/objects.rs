//! The object store port: verified, content-addressed objects and the partial uploads they
//! grow from. The archive services talk to this trait, never to files; an adapter decides where
//! bytes live (`files`: today's `objects/` and `partials/` folders; `memory`: in memory, with a
//! crash model for tests).
//!
//! The contract every adapter keeps, checked by [`conformance`]:
//! - a partial's bytes up to its length are durable once [`PartialUpload::sync`] returns, as
//!   long as the partial itself survives: a crash may take a partial away altogether (its name
//!   is not synced, which would cost an fsync per object), and reopening then finds it empty;
//! - reopening a partial keeps at most its first `committed` bytes (bytes past the recorded
//!   offset were never acknowledged, so they are dropped, whatever a crash left there) and says
//!   how many it kept;
//! - [`ObjectStore::place`] verifies the bytes against the id before anything is stored (the
//!   partial's last bytes need not be synced first); a mismatch removes the partial; a placed
//!   object is readable at once and durable, every byte of it, only once
//!   [`ObjectStore::sync_placed`] covering it has returned — the index must not name an object
//!   before that;
//! - stored objects are never overwritten: placing bytes already stored keeps the stored copy.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use proto::sync::ObjectId;

pub use crate::blob::TempBlob;

pub mod conformance;
pub mod files;
pub mod memory;
pub mod s3;

/// Who is uploading what: one partial per scope (a clinic) and object.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UploadKey {
    /// A clinic id: a partial is never shared between senders.
    pub scope: String,
    pub id: ObjectId,
}

impl UploadKey {
    pub fn new(scope: impl Into<String>, id: ObjectId) -> Self {
        Self {
            scope: scope.into(),
            id,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    #[error("cannot {action} {what}: {detail}")]
    Io {
        action: &'static str,
        what: String,
        detail: String,
    },
    #[error("object {0} is not stored")]
    Missing(ObjectId),
    #[error("no partial upload of {0}")]
    NoPartial(ObjectId),
    #[error("the range {offset}+{len} is past the end of object {id} ({size} bytes)")]
    Range {
        id: ObjectId,
        offset: u64,
        len: u64,
        size: u64,
    },
    /// The in-memory adapter's simulated power loss: nothing after it happened.
    #[error("the storage crashed (simulated)")]
    Crashed,
}

impl From<crate::blob::BlobError> for ObjectError {
    fn from(e: crate::blob::BlobError) -> Self {
        ObjectError::Io {
            action: "store",
            what: "an object".into(),
            detail: e.to_string(),
        }
    }
}

/// A partial upload open for appending at its end.
pub trait PartialUpload: Send {
    /// Appends `bytes` at the end (not durable yet).
    fn append(&mut self, bytes: &[u8]) -> Result<(), ObjectError>;
    /// Makes every byte appended so far durable.
    fn sync(&mut self) -> Result<(), ObjectError>;
    /// Bytes written so far.
    fn len(&self) -> u64;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The outcome of placing a partial as an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placed {
    /// Verified and readable; durable after `sync_placed`.
    Placed,
    /// The bytes hash to `actual`, not to the key's id: the partial was removed.
    Mismatch { actual: ObjectId },
}

/// A stored object as a file on this machine, for readers that need one (dicom-rs, the
/// structural walk): the object's own file, or a copy removed when this is dropped.
#[derive(Debug)]
pub struct LocalFile {
    path: PathBuf,
    _copy: Option<tempfile::TempPath>,
}

impl LocalFile {
    /// The store's own file, kept after this is dropped.
    pub fn kept(path: PathBuf) -> Self {
        Self { path, _copy: None }
    }

    /// A copy, removed when this is dropped.
    pub fn copy(copy: tempfile::TempPath) -> Self {
        Self {
            path: copy.to_path_buf(),
            _copy: Some(copy),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

pub trait ObjectStore: Send + Sync + std::fmt::Debug {
    /// Opens `key`'s partial upload, creating it empty, keeping at most its first `committed`
    /// bytes; returns the length kept (`committed`, or less when fewer bytes survived) and the
    /// partial, open for appending there.
    fn open_partial(
        &self,
        key: &UploadKey,
        committed: u64,
    ) -> Result<(u64, Box<dyn PartialUpload>), ObjectError>;

    /// Verifies the partial against `key.id` (`hashed`: the SHA-256 computed while its bytes
    /// arrived, covering all of them; `None` reads them back) and places it as that object.
    fn place(&self, key: &UploadKey, hashed: Option<ObjectId>) -> Result<Placed, ObjectError>;

    /// Makes the placed objects `ids` durable, their bytes and their names (one call for a
    /// group of them).
    fn sync_placed(&self, ids: &[ObjectId]) -> Result<(), ObjectError>;

    /// Removes a partial upload and its bytes (absent: nothing to do).
    fn discard_partial(&self, key: &UploadKey) -> Result<(), ObjectError>;

    /// Partial uploads nobody has written to for `idle`.
    fn idle_partials(&self, idle: Duration) -> Result<Vec<UploadKey>, ObjectError>;

    /// Starts a new object on this machine's disk, hashed as it is written, to be read (a
    /// DICOM file is checked before it is kept) and then stored with [`Self::put_staged`] or
    /// dropped (which removes it).
    fn stage(&self) -> Result<TempBlob, ObjectError>;
    /// Stores a staged object under the id its bytes hashed to, durably; returns the id.
    /// Bytes already stored keep the stored copy.
    fn put_staged(&self, staged: TempBlob) -> Result<ObjectId, ObjectError>;
    /// Stores the bytes `reader` yields as a verified object, durably; returns its id.
    fn put(&self, reader: &mut dyn Read) -> Result<ObjectId, ObjectError> {
        let mut staged = self.stage()?;
        staged.fill(reader)?;
        self.put_staged(staged)
    }

    /// Whether the object is stored.
    fn contains(&self, id: &ObjectId) -> Result<bool, ObjectError>;

    /// The object's size, when it is stored.
    fn size(&self, id: &ObjectId) -> Result<Option<u64>, ObjectError>;

    /// `len` bytes of the object from `offset` (fewer only at its end).
    fn read_range(&self, id: &ObjectId, offset: u64, len: u64) -> Result<Vec<u8>, ObjectError>;

    /// The object as a file on this machine.
    fn local_file(&self, id: &ObjectId) -> Result<LocalFile, ObjectError>;

    /// Bytes still free where objects are written, when the store can tell.
    fn free_bytes(&self) -> Option<u64> {
        None
    }

    /// Where the objects are, in words, for errors ("the file system of /var/lib/tpg").
    fn location(&self) -> String {
        "the object store".into()
    }
}

/// Refuses a read that starts past the object's end (one that runs past it is cut short).
fn starts_within(id: &ObjectId, offset: u64, len: u64, size: u64) -> Result<(), ObjectError> {
    if offset > size {
        return Err(ObjectError::Range {
            id: id.clone(),
            offset,
            len,
            size,
        });
    }
    Ok(())
}

/// The whole object, read through the port.
pub fn read_all(store: &dyn ObjectStore, id: &ObjectId) -> Result<Vec<u8>, ObjectError> {
    let size = store
        .size(id)?
        .ok_or_else(|| ObjectError::Missing(id.clone()))?;
    store.read_range(id, 0, size)
}
