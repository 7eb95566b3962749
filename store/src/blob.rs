//! Content-addressed files: `objects/ab/abcdef…` named by the SHA-256 of their bytes, written
//! to `tmp/` first, fsynced, then renamed (and the folder fsynced), so a crash leaves either
//! nothing or a complete, verified file.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use proto::sync::ObjectId;
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: String,
        source: io::Error,
    },
    #[error("content of {path} hashes to {actual}, not {expected}; the file was discarded")]
    HashMismatch {
        path: String,
        expected: ObjectId,
        actual: ObjectId,
    },
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> BlobError + 'a {
    move |source| BlobError::Io {
        action,
        path: path.display().to_string(),
        source,
    }
}

/// The blob folder of one daemon.
#[derive(Debug, Clone)]
pub struct BlobStore {
    root: PathBuf,
}

/// A file being written under a temporary name, hashed as it goes.
#[derive(Debug)]
pub struct TempBlob {
    path: PathBuf,
    file: File,
    hasher: Sha256,
    len: u64,
    /// Set once the file has been handed on (committed, moved); otherwise dropping the
    /// `TempBlob` deletes the file, so an error path never leaves a temp file behind.
    kept: bool,
}

impl Drop for TempBlob {
    fn drop(&mut self) {
        if !self.kept {
            let _ = fs::remove_file(&self.path);
        }
    }
}

const COPY_BUF: usize = 256 * 1024;

impl BlobStore {
    /// Opens (creating) `root/objects` with its 256 shard folders, and `root/tmp`. Leftover
    /// temporary files from a crash are removed: nothing was acknowledged for them.
    pub fn open(root: &Path) -> Result<Self, BlobError> {
        for sub in ["objects", "tmp"] {
            let dir = root.join(sub);
            fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
        }
        let store = Self {
            root: root.to_path_buf(),
        };
        store.create_shards()?;
        if let Ok(entries) = fs::read_dir(store.tmp_dir()) {
            for entry in entries.flatten() {
                let _ = fs::remove_file(entry.path());
            }
        }
        Ok(store)
    }

    /// Creates the shard folders (`objects/00` … `objects/ff`) that are missing, and makes
    /// them durable. Done once when the store opens, so storing an object never waits for a
    /// new folder and its parent's fsync (a fresh store would otherwise pay that for most of
    /// its first few hundred objects).
    fn create_shards(&self) -> Result<(), BlobError> {
        let objects = self.root.join("objects");
        let mut created = false;
        for shard in 0..=u8::MAX {
            let dir = objects.join(format!("{shard:02x}"));
            match fs::create_dir(&dir) {
                Ok(()) => created = true,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io_err("create", &dir)(e)),
            }
        }
        if created {
            sync_dir(&objects)?;
            sync_dir(&self.root)?;
        }
        Ok(())
    }

    fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// Where the blob with this id lives (whether or not it exists).
    pub fn path(&self, id: &ObjectId) -> PathBuf {
        let s = id.as_str();
        self.root.join("objects").join(&s[..2]).join(s)
    }

    pub fn contains(&self, id: &ObjectId) -> bool {
        self.path(id).is_file()
    }

    /// Starts a new temporary file.
    pub fn create_temp(&self) -> Result<TempBlob, BlobError> {
        TempBlob::create_in(&self.tmp_dir())
    }

    /// Copies `reader` into a temporary blob, hashing as it streams (bounded memory).
    pub fn write_temp(&self, reader: impl Read) -> Result<TempBlob, BlobError> {
        let mut temp = self.create_temp()?;
        temp.fill(reader)?;
        Ok(temp)
    }

    /// Fsyncs the temporary blob and renames it to its content address. If the blob exists
    /// already the temporary file is dropped. Returns the id.
    pub fn commit(&self, temp: TempBlob) -> Result<ObjectId, BlobError> {
        let (id, path) = temp.finish()?;
        self.place(&path, &id)?;
        Ok(id)
    }

    /// Moves a fully written and already fsynced file (`path`, on the same file system) to
    /// `id`'s place after checking that its content hashes to `id`.
    /// `hashed` is the content's SHA-256 when the caller computed it while writing; `None`
    /// reads the file back.
    pub fn commit_verified(
        &self,
        path: &Path,
        id: &ObjectId,
        hashed: Option<ObjectId>,
    ) -> Result<(), BlobError> {
        self.verify(path, id, hashed)?;
        self.place(path, id)
    }

    /// Checks that `path` hashes to `id` (`hashed`: the SHA-256 computed while writing, or
    /// `None` to read the file back); a file that does not is deleted.
    pub fn verify(
        &self,
        path: &Path,
        id: &ObjectId,
        hashed: Option<ObjectId>,
    ) -> Result<(), BlobError> {
        let actual = match hashed {
            Some(h) => h,
            None => hash_file(path)?,
        };
        if &actual != id {
            let _ = fs::remove_file(path);
            return Err(BlobError::HashMismatch {
                path: path.display().to_string(),
                expected: id.clone(),
                actual,
            });
        }
        Ok(())
    }

    fn place(&self, path: &Path, id: &ObjectId) -> Result<(), BlobError> {
        sync_dir(&self.place_unsynced(path, id)?)
    }

    /// Renames a verified, fsynced file to `id`'s place (or drops it when the blob is there
    /// already) and returns the folder that must be fsynced with [`sync_dir`] before the blob
    /// counts as stored. An existing blob's folder is returned too: another writer may have
    /// renamed it in without having synced the folder yet.
    pub fn place_unsynced(&self, path: &Path, id: &ObjectId) -> Result<PathBuf, BlobError> {
        let dest = self.path(id);
        let dir = dest.parent().unwrap_or(&self.root).to_path_buf();
        if dest.is_file() {
            let _ = fs::remove_file(path);
            return Ok(dir);
        }
        match fs::rename(path, &dest) {
            // The store made every shard folder when it opened; one removed by hand since is
            // made again, and is durable before its first file counts.
            Err(e) if e.kind() == io::ErrorKind::NotFound && !dir.is_dir() => {
                fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
                sync_dir(&self.root.join("objects"))?;
                fs::rename(path, &dest).map_err(io_err("rename into", &dest))?;
            }
            renamed => renamed.map_err(io_err("rename into", &dest))?,
        }
        Ok(dir)
    }

    pub fn open_blob(&self, id: &ObjectId) -> Result<File, BlobError> {
        let path = self.path(id);
        File::open(&path).map_err(io_err("open", &path))
    }

    /// A folder on the same file system as the blobs, for partial uploads and quarantine.
    pub fn root(&self) -> &Path {
        &self.root
    }
}

impl TempBlob {
    /// Starts a new temporary file in `dir`.
    pub fn create_in(dir: &Path) -> Result<Self, BlobError> {
        let name = format!("{}-{}", std::process::id(), unique());
        let path = dir.join(name);
        let file = File::create(&path).map_err(io_err("create", &path))?;
        Ok(TempBlob {
            path,
            file,
            hasher: Sha256::new(),
            len: 0,
            kept: false,
        })
    }

    /// Appends everything `reader` yields, hashing as it streams (bounded memory).
    pub fn fill(&mut self, mut reader: impl Read) -> Result<(), BlobError> {
        let mut buf = vec![0u8; COPY_BUF];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_err("read the source of", &self.path)(e)),
            };
            self.write(&buf[..n])?;
        }
    }

    pub fn write(&mut self, bytes: &[u8]) -> Result<(), BlobError> {
        self.file
            .write_all(bytes)
            .map_err(io_err("write", &self.path))?;
        self.hasher.update(bytes);
        self.len += bytes.len() as u64;
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The id the content will have.
    pub fn id(&self) -> ObjectId {
        ObjectId::from_digest(&self.hasher.clone().finalize().into())
    }

    /// Fsyncs and returns the id and the temporary path.
    fn finish(mut self) -> Result<(ObjectId, PathBuf), BlobError> {
        self.file.sync_all().map_err(io_err("fsync", &self.path))?;
        self.kept = true;
        let digest = std::mem::take(&mut self.hasher).finalize();
        Ok((
            ObjectId::from_digest(&digest.into()),
            std::mem::take(&mut self.path),
        ))
    }

    /// Fsyncs and moves the file to `dest` (e.g. a quarantine folder).
    pub fn persist_at(self, dest: &Path) -> Result<(), BlobError> {
        let (_, path) = self.finish()?;
        if let Some(dir) = dest.parent() {
            fs::create_dir_all(dir).map_err(io_err("create", dir))?;
        }
        fs::rename(&path, dest).map_err(io_err("rename into", dest))?;
        dest.parent().map_or(Ok(()), sync_dir)
    }

    pub fn discard(self) {
        // Dropping deletes the file.
    }
}

/// SHA-256 of a file, streamed.
pub fn hash_file(path: &Path) -> Result<ObjectId, BlobError> {
    let mut file = File::open(path).map_err(io_err("open", path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; COPY_BUF];
    loop {
        let n = file.read(&mut buf).map_err(io_err("read", path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(ObjectId::from_digest(&hasher.finalize().into()))
}

/// Makes a rename or a new file in `dir` durable (POSIX: fsync the directory).
pub fn sync_dir(dir: &Path) -> Result<(), BlobError> {
    #[cfg(unix)]
    {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err("fsync", dir))?;
    }
    Ok(())
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    (NEXT.fetch_add(1, Ordering::Relaxed) << 32) | u64::from(nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_names_the_file_by_its_sha256_and_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let id = store
            .commit(store.write_temp(&b"hello"[..]).unwrap())
            .unwrap();
        assert_eq!(
            id.as_str(),
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(fs::read(store.path(&id)).unwrap(), b"hello");
        let again = store
            .commit(store.write_temp(&b"hello"[..]).unwrap())
            .unwrap();
        assert_eq!(again, id);
        assert_eq!(
            fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0,
            "no temp file left"
        );
    }

    #[test]
    fn verified_commit_refuses_a_file_whose_content_does_not_match() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let partial = dir.path().join("partial");
        fs::write(&partial, b"tampered").unwrap();
        let expected = hash_file(&{
            let p = dir.path().join("orig");
            fs::write(&p, b"original").unwrap();
            p
        })
        .unwrap();
        let err = store
            .commit_verified(&partial, &expected, None)
            .unwrap_err();
        assert!(matches!(err, BlobError::HashMismatch { .. }), "{err}");
        assert!(!store.contains(&expected));
        assert!(!partial.exists(), "the bad partial is discarded");
    }

    #[test]
    fn leftover_temp_files_from_a_crash_are_cleared_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let temp = store.write_temp(&b"half"[..]).unwrap();
        let path = temp.path().to_path_buf();
        std::mem::forget(temp);
        assert!(path.exists());
        BlobStore::open(dir.path()).unwrap();
        assert!(!path.exists());
    }

    #[test]
    fn every_shard_folder_exists_once_the_store_is_open_and_a_lost_one_comes_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let objects = dir.path().join("objects");
        let shards = || {
            fs::read_dir(&objects)
                .unwrap()
                .filter(|e| e.as_ref().unwrap().path().is_dir())
                .count()
        };
        assert_eq!(shards(), 256);
        let id = store
            .commit(store.write_temp(&b"hello"[..]).unwrap())
            .unwrap();
        assert_eq!(store.path(&id).parent().unwrap(), objects.join("2c"));
        // A shard removed by hand is made again at the next start, and the store keeps working.
        fs::remove_file(store.path(&id)).unwrap();
        fs::remove_dir(objects.join("2c")).unwrap();
        assert_eq!(shards(), 255);
        let store = BlobStore::open(dir.path()).unwrap();
        assert_eq!(shards(), 256);
        store
            .commit(store.write_temp(&b"hello"[..]).unwrap())
            .unwrap();
        assert_eq!(fs::read(store.path(&id)).unwrap(), b"hello");
    }

    #[test]
    fn a_shard_folder_removed_while_the_store_runs_is_made_again() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        fs::remove_dir(dir.path().join("objects").join("2c")).unwrap();
        let id = store
            .commit(store.write_temp(&b"hello"[..]).unwrap())
            .unwrap();
        assert_eq!(fs::read(store.path(&id)).unwrap(), b"hello");
    }
}
