//! The object store on S3-compatible object storage (Garage, Ceph RGW, MinIO, a cloud's S3),
//! for gateway nodes that share one bucket.
//!
//! Layout in the bucket, under an optional prefix:
//! - `objects/ab/abcdef…`: verified objects, named by the SHA-256 of their bytes, as in the
//!   files adapter;
//! - `partials/<scope>/<object id>/<offset>`: the synced segments of a partial upload, one per
//!   [`PartialUpload::sync`], named by the offset they start at (20 digits, so they list in
//!   order).
//!
//! A partial is staged in a file on this node's disk as it arrives, and each sync also sends
//! the bytes appended since the last one to the bucket as a segment: the receive path syncs
//! once per chunk (1 MiB), so whichever node a clinic fails over to finds every committed byte
//! there, and at most the chunk in flight is sent again. A node reopening a partial it holds
//! locally only reads back what it lacks. Placing verifies the local file and keeps it on this
//! disk; [`ObjectStore::sync_placed`] is the durability point: it sends each placed object to
//! `objects/…` (in 8 MiB parts when larger: S3 parts are at least 5 MiB) and only then removes
//! its segments and the local copy. An object of one chunk or less therefore crosses to the
//! bucket once; a larger one twice (as segments, then whole).
//!
//! The port is blocking and is called from any thread, including a runtime's: each operation
//! runs on this adapter's own small runtime and the caller waits on a channel.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::future::Future;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path as FsPath, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::TryStreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::{Path, PathPart};
use object_store::{ObjectStore as _, PutPayload};
use proto::sync::ObjectId;
use tokio::io::AsyncWriteExt;

use super::{LocalFile, ObjectError, ObjectStore, PartialUpload, Placed, TempBlob, UploadKey};
use crate::blob;

/// Objects larger than this go up in parts of this size.
const PART: usize = 8 * 1024 * 1024;

/// The most bytes of objects read back that a node keeps on its disk for the next reader (the
/// viewer asks for one frame after another of the same file).
const CACHE_BYTES: u64 = 1 << 30;

/// Objects read back from the bucket, kept on this node's disk (`cache/<id>`), the least
/// recently used dropped first. Readers get a link of their own, so dropping one never pulls a
/// file from under a reader.
#[derive(Debug, Default)]
struct Cache {
    /// id → (last use, size).
    files: HashMap<ObjectId, (u64, u64)>,
    total: u64,
    uses: u64,
}

/// Where the bucket is and how to sign for it.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Config {
    pub bucket: String,
    /// A folder inside the bucket ("" for its root).
    pub prefix: String,
    /// `http(s)://host:port` of the S3 API; `None` for AWS itself.
    pub endpoint: Option<String>,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

impl S3Config {
    /// Reads `s3://bucket[/prefix]`.
    pub fn parse_url(url: &str) -> Option<(String, String)> {
        let rest = url.strip_prefix("s3://")?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let valid = bucket.len() >= 3
            && bucket.len() <= 63
            && bucket
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
        valid.then(|| (bucket.to_owned(), prefix.trim_matches('/').to_owned()))
    }
}

/// Owns the runtime the S3 client runs on; shut down without waiting, so dropping the store
/// inside another runtime is allowed.
#[derive(Debug)]
struct Driver(Option<tokio::runtime::Runtime>);

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

#[derive(Debug)]
struct Inner {
    client: AmazonS3,
    driver: Driver,
    prefix: Vec<String>,
    /// This node's staging folder: `partials/`, `placed/`, `tmp/`.
    local: PathBuf,
    /// Placed here, not yet in the bucket: id → (local file, the partial's key).
    placed: Mutex<HashMap<ObjectId, (PathBuf, UploadKey)>>,
    /// Partials this node knows to have segments in the bucket: the others (most objects are
    /// one chunk) are placed without listing them.
    segmented: Mutex<HashSet<UploadKey>>,
    cache: Mutex<Cache>,
    location: String,
}

#[derive(Debug, Clone)]
pub struct S3Objects {
    inner: Arc<Inner>,
}

fn io(action: &'static str, path: &FsPath) -> impl FnOnce(std::io::Error) -> ObjectError {
    let what = path.display().to_string();
    move |e| ObjectError::Io {
        action,
        what,
        detail: e.to_string(),
    }
}

fn remote(action: &'static str, what: &Path) -> impl FnOnce(object_store::Error) -> ObjectError {
    let what = what.to_string();
    move |e| ObjectError::Io {
        action,
        what,
        detail: e.to_string(),
    }
}

fn is_not_found(e: &object_store::Error) -> bool {
    matches!(e, object_store::Error::NotFound { .. })
}

impl S3Objects {
    /// Connects to the bucket (checking that it answers) with `local` as this node's staging
    /// folder. Partial uploads left in `local/tmp` by a crash are removed.
    pub fn open(config: &S3Config, local: &FsPath) -> Result<Self, ObjectError> {
        for sub in ["partials", "placed", "tmp", "cache"] {
            let dir = local.join(sub);
            fs::create_dir_all(&dir).map_err(io("create", &dir))?;
        }
        for sub in ["placed", "tmp", "cache"] {
            for entry in fs::read_dir(local.join(sub))
                .into_iter()
                .flatten()
                .flatten()
            {
                let _ = fs::remove_file(entry.path());
            }
        }
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&config.bucket)
            .with_region(&config.region)
            .with_access_key_id(&config.access_key_id)
            .with_secret_access_key(&config.secret_access_key)
            .with_disable_tagging(true);
        if let Some(endpoint) = &config.endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"))
                .with_virtual_hosted_style_request(false);
        }
        let client = builder.build().map_err(|e| ObjectError::Io {
            action: "configure",
            what: format!("the bucket {}", config.bucket),
            detail: e.to_string(),
        })?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("s3-objects")
            .enable_all()
            .build()
            .map_err(|e| ObjectError::Io {
                action: "start",
                what: "the S3 client's runtime".into(),
                detail: e.to_string(),
            })?;
        let location = format!(
            "the bucket {} at {}",
            config.bucket,
            config.endpoint.as_deref().unwrap_or("AWS S3")
        );
        let store = Self {
            inner: Arc::new(Inner {
                client,
                driver: Driver(Some(runtime)),
                prefix: config
                    .prefix
                    .split('/')
                    .filter(|p| !p.is_empty())
                    .map(str::to_owned)
                    .collect(),
                local: local.to_path_buf(),
                placed: Mutex::new(HashMap::new()),
                segmented: Mutex::new(HashSet::new()),
                cache: Mutex::default(),
                location,
            }),
        };
        // A first call that fails says so at start, not at the first upload.
        let probe = store.path(["objects"]);
        let client = store.inner.client.clone();
        store.run(async move {
            client
                .list_with_delimiter(Some(&probe))
                .await
                .map(|_| ())
                .map_err(remote("list", &probe))
        })?;
        Ok(store)
    }

    /// Runs `work` on the adapter's runtime and waits for it, from any thread.
    fn run<T: Send + 'static>(
        &self,
        work: impl Future<Output = Result<T, ObjectError>> + Send + 'static,
    ) -> Result<T, ObjectError> {
        let Some(runtime) = self.inner.driver.0.as_ref() else {
            return Err(ObjectError::Crashed);
        };
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        runtime.spawn(async move {
            let _ = tx.send(work.await);
        });
        rx.recv().map_err(|_| ObjectError::Io {
            action: "reach",
            what: self.inner.location.clone(),
            detail: "the S3 client stopped".into(),
        })?
    }

    fn path<'a>(&self, parts: impl IntoIterator<Item = &'a str>) -> Path {
        self.inner
            .prefix
            .iter()
            .map(|p| PathPart::from(p.clone()))
            .chain(parts.into_iter().map(|p| PathPart::from(p.to_owned())))
            .collect()
    }

    fn object_path(&self, id: &ObjectId) -> Path {
        let s = id.as_str();
        self.path(["objects", &s[..2], s])
    }

    fn segments_dir(&self, key: &UploadKey) -> Path {
        self.path(["partials", &key.scope, key.id.as_str()])
    }

    fn segment_path(&self, key: &UploadKey, offset: u64) -> Path {
        self.path([
            "partials",
            &key.scope,
            key.id.as_str(),
            &format!("{offset:020}"),
        ])
    }

    fn local_partial(&self, key: &UploadKey) -> PathBuf {
        self.inner
            .local
            .join("partials")
            .join(&key.scope)
            .join(key.id.as_str())
    }

    /// Everything in the bucket under `dir`.
    fn list(&self, dir: Path) -> Result<Vec<object_store::ObjectMeta>, ObjectError> {
        let client = self.inner.client.clone();
        self.run(async move {
            client
                .list(Some(&dir))
                .try_collect::<Vec<_>>()
                .await
                .map_err(remote("list", &dir))
        })
    }

    /// The segments of `key`'s partial in the bucket: start offset → (path, length).
    fn segments(&self, key: &UploadKey) -> Result<BTreeMap<u64, (Path, u64)>, ObjectError> {
        let listed = self.list(self.segments_dir(key))?;
        Ok(listed
            .into_iter()
            .filter_map(|meta| {
                let start = meta.location.filename()?.parse::<u64>().ok()?;
                Some((start, (meta.location, meta.size)))
            })
            .collect())
    }

    /// Appends to `file` (holding `have` bytes) what the segments hold past `have`, up to
    /// `upto`; returns the new length.
    fn fill_from_segments(
        &self,
        key: &UploadKey,
        file: &mut File,
        have: u64,
        upto: u64,
    ) -> Result<u64, ObjectError> {
        let mut at = have;
        for (start, (path, len)) in self.segments(key)? {
            if at >= upto || start > at {
                break;
            }
            let end = (start + len).min(upto);
            if end <= at {
                continue;
            }
            let (client, from, to) = (self.inner.client.clone(), at - start, end - start);
            let bytes = self.run(async move {
                client
                    .get_range(&path, from..to)
                    .await
                    .map_err(remote("read", &path))
            })?;
            file.write_all(&bytes)
                .map_err(io("write", &self.local_partial(key)))?;
            at = end;
        }
        Ok(at)
    }

    /// Notes that `key`'s partial has (or may have) segments in the bucket.
    fn note_segmented(&self, key: &UploadKey) {
        let mut segmented = self
            .inner
            .segmented
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        segmented.insert(key.clone());
    }

    fn delete_segments(&self, key: &UploadKey) -> Result<(), ObjectError> {
        {
            let mut segmented = self
                .inner
                .segmented
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            segmented.remove(key);
        }
        let segments = self.segments(key)?;
        let client = self.inner.client.clone();
        self.run(async move {
            for (path, _) in segments.into_values() {
                match client.delete(&path).await {
                    Err(e) if !is_not_found(&e) => return Err(remote("delete", &path)(e)),
                    _ => {}
                }
            }
            Ok(())
        })
    }

    /// Sends a file on this disk to the bucket as `id`, unless it is there already (stored
    /// objects are never replaced; the same id is the same bytes).
    fn upload(&self, file: &FsPath, id: &ObjectId) -> Result<(), ObjectError> {
        let (client, dest, source) = (
            self.inner.client.clone(),
            self.object_path(id),
            file.to_path_buf(),
        );
        self.run(async move {
            match client.head(&dest).await {
                Ok(_) => return Ok(()),
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(remote("look up", &dest)(e)),
            }
            let mut reader = tokio::fs::File::open(&source)
                .await
                .map_err(io("open", &source))?;
            let mut writer = object_store::buffered::BufWriter::with_capacity(
                Arc::new(client),
                dest.clone(),
                PART,
            );
            let sent = async {
                tokio::io::copy(&mut reader, &mut writer).await?;
                writer.shutdown().await
            }
            .await;
            if let Err(e) = sent {
                let _ = writer.abort().await;
                return Err(ObjectError::Io {
                    action: "upload",
                    what: dest.to_string(),
                    detail: e.to_string(),
                });
            }
            Ok(())
        })
    }

    fn cached(&self, id: &ObjectId) -> Option<PathBuf> {
        let mut cache = self.inner.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.uses += 1;
        let now = cache.uses;
        let (used, _) = cache.files.get_mut(id)?;
        *used = now;
        Some(self.inner.local.join("cache").join(id.as_str()))
    }

    /// Keeps a second name for `file` (the object `id`, just read back) in the cache, dropping
    /// the least recently used objects past [`CACHE_BYTES`].
    fn keep_cached(&self, id: &ObjectId, file: &FsPath) {
        let Ok(size) = fs::metadata(file).map(|m| m.len()) else {
            return;
        };
        let dir = self.inner.local.join("cache");
        if size > CACHE_BYTES / 4 || fs::hard_link(file, dir.join(id.as_str())).is_err() {
            return;
        }
        let mut cache = self.inner.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.uses += 1;
        let now = cache.uses;
        if cache.files.insert(id.clone(), (now, size)).is_none() {
            cache.total += size;
        }
        while cache.total > CACHE_BYTES {
            let Some(oldest) = cache
                .files
                .iter()
                .min_by_key(|(_, (used, _))| *used)
                .map(|(id, _)| id.clone())
            else {
                break;
            };
            if let Some((_, size)) = cache.files.remove(&oldest) {
                cache.total -= size;
                let _ = fs::remove_file(dir.join(oldest.as_str()));
            }
        }
    }

    /// `len` bytes from `offset` of a file on this disk holding object `id`.
    fn read_file_range(
        id: &ObjectId,
        path: &FsPath,
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>, ObjectError> {
        let mut file = File::open(path).map_err(io("open", path))?;
        let size = file.metadata().map_err(io("read", path))?.len();
        super::starts_within(id, offset, len, size)?;
        file.seek(SeekFrom::Start(offset))
            .map_err(io("seek", path))?;
        let mut out = Vec::new();
        file.take(len)
            .read_to_end(&mut out)
            .map_err(io("read", path))?;
        Ok(out)
    }

    fn placed_file(&self, id: &ObjectId) -> Option<PathBuf> {
        let placed = self.inner.placed.lock().unwrap_or_else(|p| p.into_inner());
        placed.get(id).map(|(path, _)| path.clone())
    }
}

/// A partial staged on this node's disk, its synced bytes also in the bucket as segments.
struct S3Partial {
    store: S3Objects,
    key: UploadKey,
    file: File,
    path: PathBuf,
    len: u64,
    /// Bytes appended since the last sync: the next segment, starting at `len - pending.len()`.
    pending: Vec<u8>,
}

impl PartialUpload for S3Partial {
    fn append(&mut self, bytes: &[u8]) -> Result<(), ObjectError> {
        self.file
            .write_all(bytes)
            .map_err(io("write", &self.path))?;
        self.pending.extend_from_slice(bytes);
        self.len += bytes.len() as u64;
        Ok(())
    }

    fn sync(&mut self) -> Result<(), ObjectError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let start = self.len - self.pending.len() as u64;
        let (client, path) = (
            self.store.inner.client.clone(),
            self.store.segment_path(&self.key, start),
        );
        let payload = PutPayload::from(std::mem::take(&mut self.pending));
        self.store.run(async move {
            client
                .put(&path, payload)
                .await
                .map(|_| ())
                .map_err(remote("upload", &path))
        })?;
        self.store.note_segmented(&self.key);
        // The local copy is what this node places from: it must hold what the bucket holds
        // after a power loss too.
        self.file.sync_data().map_err(io("fsync", &self.path))
    }

    fn len(&self) -> u64 {
        self.len
    }
}

impl ObjectStore for S3Objects {
    fn open_partial(
        &self,
        key: &UploadKey,
        committed: u64,
    ) -> Result<(u64, Box<dyn PartialUpload>), ObjectError> {
        let path = self.local_partial(key);
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(io("create", dir))?;
        }
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .write(true)
            .truncate(false)
            .open(&path)
            .map_err(io("open", &path))?;
        let here = file.metadata().map_err(io("read", &path))?.len();
        let kept = if here >= committed {
            // Bytes past the committed offset were never acknowledged: drop them.
            file.set_len(committed).map_err(io("trim", &path))?;
            committed
        } else {
            // Another node received the rest (a failover), or this one lost its disk: read
            // back from the bucket what this copy lacks.
            file.seek(SeekFrom::Start(here))
                .map_err(io("seek", &path))?;
            let kept = self.fill_from_segments(key, &mut file, here, committed)?;
            file.sync_data().map_err(io("fsync", &path))?;
            kept
        };
        file.seek(SeekFrom::Start(kept))
            .map_err(io("seek", &path))?;
        if kept > 0 {
            self.note_segmented(key);
        }
        Ok((
            kept,
            Box::new(S3Partial {
                store: self.clone(),
                key: key.clone(),
                file,
                path,
                len: kept,
                pending: Vec::new(),
            }),
        ))
    }

    fn place(&self, key: &UploadKey, hashed: Option<ObjectId>) -> Result<Placed, ObjectError> {
        let path = self.local_partial(key);
        if !path.is_file() {
            // Placing on a node that never opened it: everything is in the segments.
            if self.segments(key)?.is_empty() {
                return Err(ObjectError::NoPartial(key.id.clone()));
            }
            let (_, mut partial) = self.open_partial(key, u64::MAX)?;
            partial.sync()?;
        }
        let actual = match hashed {
            Some(h) => h,
            None => blob::hash_file(&path)?,
        };
        if actual != key.id {
            self.discard_partial(key)?;
            return Ok(Placed::Mismatch { actual });
        }
        let dest =
            self.inner
                .local
                .join("placed")
                .join(format!("{}-{}", key.scope, key.id.as_str()));
        fs::rename(&path, &dest).map_err(io("rename into", &dest))?;
        let mut placed = self.inner.placed.lock().unwrap_or_else(|p| p.into_inner());
        placed.insert(key.id.clone(), (dest, key.clone()));
        Ok(Placed::Placed)
    }

    fn sync_placed(&self, ids: &[ObjectId]) -> Result<(), ObjectError> {
        for id in ids {
            let entry = {
                let placed = self.inner.placed.lock().unwrap_or_else(|p| p.into_inner());
                placed.get(id).cloned()
            };
            // Not placed here: stored already (by `put`, or by another node).
            let Some((file, key)) = entry else { continue };
            self.upload(&file, id)?;
            let segmented = {
                let set = self
                    .inner
                    .segmented
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                set.contains(&key)
            };
            // A partial left with segments this node does not know of (trimmed to nothing
            // after a crash) is removed by the sweep of idle partials.
            if segmented {
                self.delete_segments(&key)?;
            }
            let mut placed = self.inner.placed.lock().unwrap_or_else(|p| p.into_inner());
            placed.remove(id);
            let _ = fs::remove_file(&file);
        }
        Ok(())
    }

    fn discard_partial(&self, key: &UploadKey) -> Result<(), ObjectError> {
        let path = self.local_partial(key);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(io("remove", &path)(e))
            }
            _ => {}
        }
        self.delete_segments(key)
    }

    fn idle_partials(&self, idle: Duration) -> Result<Vec<UploadKey>, ObjectError> {
        let listed = self.list(self.path(["partials"]))?;
        // The newest segment of each partial says when it was last written to.
        let depth = self.inner.prefix.len();
        let mut newest: BTreeMap<UploadKey, i64> = BTreeMap::new();
        for meta in listed {
            let parts: Vec<String> = meta
                .location
                .parts()
                .map(|p| p.as_ref().to_owned())
                .collect();
            let [scope, id, _] = &parts[depth + 1..] else {
                continue;
            };
            let Some(id) = ObjectId::parse(id) else {
                continue;
            };
            let at = meta.last_modified.timestamp_millis();
            let entry = newest
                .entry(UploadKey::new(scope.clone(), id))
                .or_insert(at);
            *entry = (*entry).max(at);
        }
        // Partials opened here with nothing synced yet have no segment: their local file
        // says when.
        let local = self.inner.local.join("partials");
        for scope in fs::read_dir(&local).into_iter().flatten().flatten() {
            let name = scope.file_name().to_string_lossy().into_owned();
            for entry in fs::read_dir(scope.path()).into_iter().flatten().flatten() {
                let Some(id) = ObjectId::parse(&entry.file_name().to_string_lossy()) else {
                    continue;
                };
                let Some(at) = entry.metadata().and_then(|m| m.modified()).ok().map(millis) else {
                    continue;
                };
                let entry = newest.entry(UploadKey::new(name.clone(), id)).or_insert(at);
                *entry = (*entry).max(at);
            }
        }
        let now = millis(std::time::SystemTime::now());
        let idle = i64::try_from(idle.as_millis()).unwrap_or(i64::MAX);
        Ok(newest
            .into_iter()
            .filter(|(_, at)| now.saturating_sub(*at) > idle)
            .map(|(key, _)| key)
            .collect())
    }

    fn stage(&self) -> Result<TempBlob, ObjectError> {
        Ok(TempBlob::create_in(&self.inner.local.join("tmp"))?)
    }

    fn put_staged(&self, staged: TempBlob) -> Result<ObjectId, ObjectError> {
        let id = staged.id();
        self.upload(staged.path(), &id)?;
        Ok(id)
    }

    fn contains(&self, id: &ObjectId) -> Result<bool, ObjectError> {
        Ok(self.size(id)?.is_some())
    }

    fn size(&self, id: &ObjectId) -> Result<Option<u64>, ObjectError> {
        if let Some(file) = self.placed_file(id) {
            return Ok(Some(fs::metadata(&file).map_err(io("read", &file))?.len()));
        }
        let (client, path) = (self.inner.client.clone(), self.object_path(id));
        self.run(async move {
            match client.head(&path).await {
                Ok(meta) => Ok(Some(meta.size)),
                Err(e) if is_not_found(&e) => Ok(None),
                Err(e) => Err(remote("look up", &path)(e)),
            }
        })
    }

    fn read_range(&self, id: &ObjectId, offset: u64, len: u64) -> Result<Vec<u8>, ObjectError> {
        if let Some(path) = self.placed_file(id) {
            return Self::read_file_range(id, &path, offset, len);
        }
        if let Some(path) = self.cached(id) {
            // Dropped from the cache since: read the bucket.
            if let Ok(bytes) = Self::read_file_range(id, &path, offset, len) {
                return Ok(bytes);
            }
        }
        let size = self
            .size(id)?
            .ok_or_else(|| ObjectError::Missing(id.clone()))?;
        super::starts_within(id, offset, len, size)?;
        let end = offset.saturating_add(len).min(size);
        if end == offset {
            return Ok(Vec::new());
        }
        let (client, path) = (self.inner.client.clone(), self.object_path(id));
        self.run(async move {
            client
                .get_range(&path, offset..end)
                .await
                .map(|b| b.to_vec())
                .map_err(remote("read", &path))
        })
    }

    fn local_file(&self, id: &ObjectId) -> Result<LocalFile, ObjectError> {
        let copy = tempfile::Builder::new()
            .prefix("read-")
            .tempfile_in(self.inner.local.join("tmp"))
            .map_err(io("create", &self.inner.local))?
            .into_temp_path();
        if let Some(here) = self.placed_file(id).or_else(|| self.cached(id)) {
            // A name of the reader's own: it outlives the upload or the eviction that removes
            // the first.
            let _ = fs::remove_file(&copy);
            if fs::hard_link(&here, &copy).is_ok() {
                return Ok(LocalFile::copy(copy));
            }
        }
        let (client, path, dest) = (
            self.inner.client.clone(),
            self.object_path(id),
            copy.to_path_buf(),
        );
        let found = self.run(async move {
            let got = match client.get(&path).await {
                Ok(got) => got,
                Err(e) if is_not_found(&e) => return Ok(false),
                Err(e) => return Err(remote("read", &path)(e)),
            };
            let mut out = tokio::fs::File::create(&dest)
                .await
                .map_err(io("create", &dest))?;
            let mut stream = got.into_stream();
            while let Some(bytes) = stream.try_next().await.map_err(remote("read", &path))? {
                out.write_all(&bytes).await.map_err(io("write", &dest))?;
            }
            out.flush().await.map_err(io("write", &dest))?;
            Ok(true)
        })?;
        if !found {
            return Err(ObjectError::Missing(id.clone()));
        }
        self.keep_cached(id, &copy);
        Ok(LocalFile::copy(copy))
    }

    fn location(&self) -> String {
        self.inner.location.clone()
    }

    /// The staging disk's free bytes: partials and placed objects wait there.
    fn free_bytes(&self) -> Option<u64> {
        let stat = rustix::fs::statvfs(&self.inner.local).ok()?;
        Some(stat.f_bavail.saturating_mul(stat.f_frsize))
    }
}

/// Milliseconds since the Unix epoch.
fn millis(at: std::time::SystemTime) -> i64 {
    at.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
