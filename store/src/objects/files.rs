//! The object store on local files: verified objects in `objects/ab/abcdef…` ([`BlobStore`]),
//! partial uploads in `partials/<scope>/<object id>` — the layout the daemons have always
//! written, so an existing data folder opens unchanged.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use proto::sync::ObjectId;

use super::{LocalFile, ObjectError, ObjectStore, PartialUpload, Placed, TempBlob, UploadKey};
use crate::blob::{self, BlobError, BlobStore};

#[derive(Debug, Clone)]
pub struct FileObjects {
    blobs: BlobStore,
    partials: PathBuf,
}

fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> ObjectError + 'a {
    move |e| ObjectError::Io {
        action,
        what: path.display().to_string(),
        detail: e.to_string(),
    }
}

impl FileObjects {
    /// Opens (creating) the objects under `root`.
    pub fn open(root: &Path) -> Result<Self, ObjectError> {
        Ok(Self {
            blobs: BlobStore::open(root)?,
            partials: root.join("partials"),
        })
    }

    /// The blob files underneath, for what still reads them by path.
    pub fn blobs(&self) -> &BlobStore {
        &self.blobs
    }

    /// Where `key`'s partial upload is kept.
    pub fn partial_path(&self, key: &UploadKey) -> PathBuf {
        self.partials.join(&key.scope).join(key.id.as_str())
    }
}

struct FilePartial {
    file: File,
    path: PathBuf,
    len: u64,
}

impl PartialUpload for FilePartial {
    fn append(&mut self, bytes: &[u8]) -> Result<(), ObjectError> {
        self.file
            .write_all(bytes)
            .map_err(io("write", &self.path))?;
        self.len += bytes.len() as u64;
        Ok(())
    }

    fn sync(&mut self) -> Result<(), ObjectError> {
        self.file.sync_data().map_err(io("fsync", &self.path))
    }

    fn len(&self) -> u64 {
        self.len
    }
}

impl ObjectStore for FileObjects {
    fn open_partial(
        &self,
        key: &UploadKey,
        committed: u64,
    ) -> Result<(u64, Box<dyn PartialUpload>), ObjectError> {
        let path = self.partial_path(key);
        let open = || {
            OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(false)
                .open(&path)
        };
        let mut file = match open() {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let dir = path.parent().unwrap_or(&self.partials);
                fs::create_dir_all(dir).map_err(io("create", dir))?;
                open().map_err(io("create", &path))?
            }
            other => other.map_err(io("open", &path))?,
        };
        let on_disk = file.metadata().map_err(io("read", &path))?.len();
        let kept = committed.min(on_disk);
        // Bytes past the committed offset were never acknowledged: drop them.
        if on_disk > kept {
            file.set_len(kept).map_err(io("trim", &path))?;
        }
        file.seek(SeekFrom::Start(kept))
            .map_err(io("seek", &path))?;
        Ok((
            kept,
            Box::new(FilePartial {
                file,
                path,
                len: kept,
            }),
        ))
    }

    fn place(&self, key: &UploadKey, hashed: Option<ObjectId>) -> Result<Placed, ObjectError> {
        let path = self.partial_path(key);
        if !path.is_file() {
            return Err(ObjectError::NoPartial(key.id.clone()));
        }
        match self.blobs.verify(&path, &key.id, hashed) {
            Ok(()) => {}
            Err(BlobError::HashMismatch { actual, .. }) => return Ok(Placed::Mismatch { actual }),
            Err(e) => return Err(e.into()),
        }
        self.blobs.place_unsynced(&path, &key.id)?;
        Ok(Placed::Placed)
    }

    fn sync_placed(&self, ids: &[ObjectId]) -> Result<(), ObjectError> {
        // The bytes first (the receive path does not sync an object's last chunk as a
        // partial), then the names.
        for id in ids {
            let path = self.blobs.path(id);
            File::open(&path)
                .and_then(|f| f.sync_data())
                .map_err(io("fsync", &path))?;
        }
        let folders: std::collections::BTreeSet<PathBuf> = ids
            .iter()
            .filter_map(|id| self.blobs.path(id).parent().map(Path::to_path_buf))
            .collect();
        for folder in folders {
            blob::sync_dir(&folder)?;
        }
        Ok(())
    }

    fn discard_partial(&self, key: &UploadKey) -> Result<(), ObjectError> {
        let path = self.partial_path(key);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io("remove", &path)(e)),
            _ => Ok(()),
        }
    }

    fn idle_partials(&self, idle: Duration) -> Result<Vec<UploadKey>, ObjectError> {
        let mut out = Vec::new();
        let Ok(scopes) = fs::read_dir(&self.partials) else {
            return Ok(out);
        };
        for scope in scopes.flatten() {
            let name = scope.file_name().to_string_lossy().into_owned();
            for entry in fs::read_dir(scope.path()).into_iter().flatten().flatten() {
                let Some(id) = ObjectId::parse(&entry.file_name().to_string_lossy()) else {
                    continue;
                };
                let stale = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age > idle);
                if stale {
                    out.push(UploadKey::new(name.clone(), id));
                }
            }
        }
        Ok(out)
    }

    fn stage(&self) -> Result<TempBlob, ObjectError> {
        Ok(self.blobs.create_temp()?)
    }

    fn put_staged(&self, staged: TempBlob) -> Result<ObjectId, ObjectError> {
        Ok(self.blobs.commit(staged)?)
    }

    fn contains(&self, id: &ObjectId) -> Result<bool, ObjectError> {
        Ok(self.blobs.contains(id))
    }

    fn size(&self, id: &ObjectId) -> Result<Option<u64>, ObjectError> {
        match fs::metadata(self.blobs.path(id)) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io("read", &self.blobs.path(id))(e)),
        }
    }

    fn read_range(&self, id: &ObjectId, offset: u64, len: u64) -> Result<Vec<u8>, ObjectError> {
        let path = self.blobs.path(id);
        let mut file = match File::open(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ObjectError::Missing(id.clone()))
            }
            other => other.map_err(io("open", &path))?,
        };
        let size = file.metadata().map_err(io("read", &path))?.len();
        super::starts_within(id, offset, len, size)?;
        file.seek(SeekFrom::Start(offset))
            .map_err(io("seek", &path))?;
        let mut out = Vec::with_capacity(len.min(size - offset) as usize);
        file.take(len)
            .read_to_end(&mut out)
            .map_err(io("read", &path))?;
        Ok(out)
    }

    fn local_file(&self, id: &ObjectId) -> Result<LocalFile, ObjectError> {
        let path = self.blobs.path(id);
        if !path.is_file() {
            return Err(ObjectError::Missing(id.clone()));
        }
        Ok(LocalFile::kept(path))
    }

    fn location(&self) -> String {
        format!("the file system of {}", self.blobs.root().display())
    }

    fn free_bytes(&self) -> Option<u64> {
        let stat = rustix::fs::statvfs(self.blobs.root()).ok()?;
        Some(stat.f_bavail.saturating_mul(stat.f_frsize))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_objects_keep_the_port_contract() {
        let dir = tempfile::tempdir().unwrap();
        let mut n = 0;
        super::super::conformance::run(|| {
            n += 1;
            let root = dir.path().join(n.to_string());
            let store = FileObjects::open(&root).unwrap();
            (
                Box::new(store) as Box<dyn ObjectStore>,
                Box::new(move || {
                    Box::new(FileObjects::open(&root).unwrap()) as Box<dyn ObjectStore>
                }) as Box<dyn Fn() -> Box<dyn ObjectStore>>,
            )
        });
    }

    #[test]
    fn an_existing_data_folder_keeps_its_objects_and_partials() {
        // Written the way the daemons always have: objects/ab/<id>, partials/<clinic>/<id>.
        let dir = tempfile::tempdir().unwrap();
        let id = blob::hash_file(&{
            let p = dir.path().join("seed");
            fs::write(&p, b"stored bytes").unwrap();
            p
        })
        .unwrap();
        let shard = dir.path().join("objects").join(&id.as_str()[..2]);
        fs::create_dir_all(&shard).unwrap();
        fs::write(shard.join(id.as_str()), b"stored bytes").unwrap();
        let half = ObjectId::from_digest(&[9u8; 32]);
        let partial = dir.path().join("partials/jinzhou").join(half.as_str());
        fs::create_dir_all(partial.parent().unwrap()).unwrap();
        fs::write(&partial, b"0123456789").unwrap();
        let store = FileObjects::open(dir.path()).unwrap();
        assert_eq!(
            super::super::read_all(&store, &id).unwrap(),
            b"stored bytes"
        );
        let (kept, _) = store
            .open_partial(&UploadKey::new("jinzhou", half), 6)
            .unwrap();
        assert_eq!(kept, 6);
        assert_eq!(fs::read(&partial).unwrap(), b"012345");
    }
}
