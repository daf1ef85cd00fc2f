//! Object storage on the local filesystem, for the local cloud.
//!
//! It holds every name Cloud Storage accepts (see [`super::name`]) and
//! refuses the others with [`StorageError::InvalidName`]. Layout under one
//! data directory `ROOT`:
//! - `ROOT/BUCKET/NAME` — each object is a plain file, so people and other
//!   local processes can read and write objects as files;
//! - `ROOT/.lifeboat/meta/BUCKET/NAME` — a JSON sidecar per object
//!   (generation, CRC32C, content type, metadata, and the file's identity:
//!   inode, size and mtime);
//! - `ROOT/.lifeboat/escaped/BUCKET/SHA256/` — an object whose name cannot
//!   be a path (`../x`, `a//b`, a segment over 255 bytes, a NUL, or `a`
//!   beside `a/b`): its name, data and sidecar (module `escaped`);
//! - `ROOT/.lifeboat/buckets/BUCKET.json` — the bucket's location;
//! - `ROOT/.lifeboat/tmp/` — files being written, renamed into place once
//!   complete and synced, so an object appears whole or not at all.
//!
//! A file whose sidecar is missing or describes another file (written by a
//! foreign process) is still an object: its CRC32C is computed from its
//! bytes and its generation derived from its mtime, then recorded.
//!
//! Bucket names cannot start with `.`, so `.lifeboat` is never a bucket and
//! never listed. Writes from this process are serialized per root when they
//! commit (the rename and the sidecar), whichever store opened it, which is
//! what makes generation preconditions hold; other processes sharing a root
//! only get the "foreign file" guarantees. Temporary files left by a crash
//! are removed by the next [`LocalStore::open`] once an hour old.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read, Seek};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

mod escaped;
mod listing;

use super::name::check_object_name;
use super::{
    ByteStream, CopyOptions, ListPage, ObjectMeta, ObjectRef, ObjectStore, PutOptions,
    StorageError, verified_stream,
};
use listing::PageWindow;

/// Objects per listing page unless told otherwise.
pub const DEFAULT_LIST_PAGE_SIZE: usize = 1000;

/// Read and write buffer for object content.
const CHUNK_BYTES: usize = 256 * 1024;

/// The folder under the root that holds everything but objects.
const SYSTEM_DIR: &str = ".lifeboat";

/// Object storage rooted at one data directory (see the module docs).
#[derive(Clone, Debug)]
pub struct LocalStore {
    root: Arc<PathBuf>,
    list_page_size: usize,
    /// Held while an object is replaced or removed, and while a sidecar is
    /// recorded, so a precondition check and the change it guards are one
    /// step for every store of this process on the same root.
    commit: Arc<Mutex<()>>,
}

/// What is recorded next to each object.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Sidecar {
    /// The file this record describes: a rename or a rewrite changes it.
    identity: FileIdentity,
    generation: i64,
    crc32c: u32,
    content_type: Option<String>,
    metadata: BTreeMap<String, String>,
    updated: DateTime<Utc>,
}

/// What tells one file content from another without reading it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct FileIdentity {
    inode: u64,
    size: u64,
    mtime_ns: i64,
}

impl FileIdentity {
    fn of(metadata: &fs::Metadata) -> Self {
        Self {
            inode: metadata.ino(),
            size: metadata.len(),
            mtime_ns: metadata
                .mtime()
                .saturating_mul(1_000_000_000)
                .saturating_add(metadata.mtime_nsec()),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct BucketRecord {
    location: String,
}

/// Removes a temporary file unless it was renamed into place, so a write
/// that fails or is dropped half-way leaves nothing behind.
struct TempFile {
    path: PathBuf,
    armed: bool,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if self.armed {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Writes `bytes` to `path` whole or not at all: into the temporary file
/// `temp`, then renamed into place.
fn write_whole(temp: PathBuf, path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut guard = TempFile {
        path: temp,
        armed: true,
    };
    fs::write(&guard.path, bytes)?;
    fs::rename(&guard.path, path)?;
    guard.armed = false;
    Ok(())
}

/// Bucket names as in Cloud Storage: 3 to 63 of `a-z 0-9 - _ .`, starting
/// and ending with a letter or digit.
fn bucket_problem(bucket: &str) -> Option<&'static str> {
    let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !(3..=63).contains(&bucket.len()) {
        return Some("a bucket name has 3 to 63 characters");
    }
    if !bucket
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
    {
        return Some("a bucket name has only lowercase letters, digits, `-`, `_` and `.`");
    }
    if !alnum(bucket.chars().next()) || !alnum(bucket.chars().last()) {
        return Some("a bucket name starts and ends with a letter or a digit");
    }
    None
}

fn io_error(context: &str, error: io::Error) -> StorageError {
    StorageError::Backend {
        context: context.to_string(),
        source: Box::new(error),
    }
}

/// A missing file, or a path through a file (`a/b/c` when `a/b` is an
/// object): either way no such object.
fn is_absent(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

fn now_ns() -> i64 {
    Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX)
}

/// Runs blocking filesystem work off the async threads.
async fn blocking<T: Send + 'static>(
    context: &str,
    work: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, StorageError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| StorageError::Backend {
            context: context.to_string(),
            source: Box::new(error),
        })?
}

impl LocalStore {
    /// A store keeping its buckets under `root`, created if missing.
    pub async fn open(root: impl Into<PathBuf>) -> Result<Self, StorageError> {
        let root: PathBuf = root.into();
        let context = format!("open local object store at {}", root.display());
        for dir in ["meta", "buckets", "tmp"] {
            tokio::fs::create_dir_all(root.join(SYSTEM_DIR).join(dir))
                .await
                .map_err(|error| io_error(&context, error))?;
        }
        let root = tokio::fs::canonicalize(&root)
            .await
            .map_err(|error| io_error(&context, error))?;
        let tmp = root.join(SYSTEM_DIR).join("tmp");
        blocking(&context.clone(), move || {
            remove_abandoned_temp_files(&tmp).map_err(|error| io_error(&context, error))
        })
        .await?;
        Ok(Self {
            commit: commit_lock(&root),
            root: Arc::new(root),
            list_page_size: DEFAULT_LIST_PAGE_SIZE,
        })
    }

    /// The same store answering at most `size` objects per listing page (at
    /// least 1).
    pub fn with_list_page_size(mut self, size: usize) -> Self {
        self.list_page_size = size.max(1);
        self
    }

    /// One listing page of `bucket`: the names `window` admits, walking
    /// `folder` (a folder of the bucket, "" for all of it, `None` for no
    /// plain path) and below, and the bucket's escaped names.
    async fn list_page(
        &self,
        context: String,
        bucket: &str,
        folder: Option<&str>,
        mut window: PageWindow,
    ) -> Result<ListPage, StorageError> {
        let dir = bucket_dir(&self.root, bucket)?;
        let store = self.clone();
        let start = folder.map(|folder| dir.join(folder));
        let escaped = escaped::bucket_folder(&self.root, bucket);
        let bucket = bucket.to_string();
        blocking(&context.clone(), move || {
            if !dir.is_dir() {
                return Err(StorageError::BucketNotFound { bucket });
            }
            if let Some(start) = start {
                window
                    .walk(&dir, &start)
                    .map_err(|error| io_error(&context, error))?;
            }
            window
                .offer_escaped(&escaped)
                .map_err(|error| io_error(&context, error))?;
            let (names, next_page_token) = window.into_page();
            let mut objects = Vec::with_capacity(names.len());
            for name in &names {
                let paths = Paths::of(&store.root, &ObjectRef::new(bucket.as_str(), name))?;
                match store.open_object(&paths, &context) {
                    Ok((meta, _)) => objects.push(meta),
                    // Deleted since the walk.
                    Err(StorageError::NotFound { .. }) => {}
                    Err(error) => return Err(error),
                }
            }
            Ok(ListPage {
                objects,
                next_page_token,
            })
        })
        .await
    }

    /// The data directory the store is rooted at.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.commit.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A fresh temporary file in the store's own folder (same filesystem as
    /// the buckets, outside them).
    fn temp_path(&self) -> PathBuf {
        self.root
            .join(SYSTEM_DIR)
            .join("tmp")
            .join(uuid::Uuid::new_v4().simple().to_string())
    }
}

/// How old a temporary file must be to count as left by a crash: far more
/// than any write takes between two chunks.
const ABANDONED_AFTER: std::time::Duration = std::time::Duration::from_secs(3600);

/// Removes the temporary files of writes that died with their process.
fn remove_abandoned_temp_files(tmp: &Path) -> io::Result<()> {
    for entry in fs::read_dir(tmp)? {
        let entry = entry?;
        let age = entry.metadata()?.modified()?.elapsed().unwrap_or_default();
        if age > ABANDONED_AFTER {
            match fs::remove_file(entry.path()) {
                Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
                _ => {}
            }
        }
    }
    Ok(())
}

/// The one commit lock of `root` in this process, shared by every store
/// opened on it.
fn commit_lock(root: &Path) -> Arc<Mutex<()>> {
    static LOCKS: std::sync::OnceLock<Mutex<BTreeMap<PathBuf, Arc<Mutex<()>>>>> =
        std::sync::OnceLock::new();
    let mut locks = LOCKS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    Arc::clone(locks.entry(root.to_path_buf()).or_default())
}

/// The bucket folder of a valid bucket name.
fn bucket_dir(root: &Path, bucket: &str) -> Result<PathBuf, StorageError> {
    if let Some(reason) = bucket_problem(bucket) {
        return Err(StorageError::InvalidName {
            object: ObjectRef::new(bucket, ""),
            reason: reason.to_string(),
        });
    }
    Ok(root.join(bucket))
}

/// Where one object's file and sidecar are: under its plain path, or in
/// its escaped folder (module `escaped`).
struct Paths {
    object: ObjectRef,
    bucket: PathBuf,
    data: PathBuf,
    sidecar: PathBuf,
    /// The file recording the name of an escaped object.
    name_record: Option<PathBuf>,
    /// Where removing emptied folders above the data and the sidecar stops.
    data_top: PathBuf,
    sidecar_top: PathBuf,
}

impl Paths {
    /// Where `object` is, or goes if new: its escaped folder when it is
    /// there or its name cannot be a path, else its plain path.
    fn of(root: &Path, object: &ObjectRef) -> Result<Self, StorageError> {
        bucket_dir(root, &object.bucket)?;
        check_object_name(object)?;
        let escaped = Self::escaped(root, object);
        if !escaped::fits_as_path(&object.name) || escaped.data.exists() {
            return Ok(escaped);
        }
        let bucket = root.join(&object.bucket);
        let meta_bucket = root.join(SYSTEM_DIR).join("meta").join(&object.bucket);
        Ok(Self {
            object: object.clone(),
            data: bucket.join(&object.name),
            sidecar: meta_bucket.join(&object.name),
            name_record: None,
            data_top: bucket.clone(),
            sidecar_top: meta_bucket,
            bucket,
        })
    }

    /// The escaped folder of `object` (whose names were checked).
    fn escaped(root: &Path, object: &ObjectRef) -> Self {
        let folder = escaped::object_folder(root, &object.bucket, &object.name);
        let top = escaped::bucket_folder(root, &object.bucket);
        Self {
            object: object.clone(),
            bucket: root.join(&object.bucket),
            data: folder.join(escaped::DATA_FILE),
            sidecar: folder.join(escaped::SIDECAR_FILE),
            name_record: Some(folder.join(escaped::NAME_FILE)),
            data_top: top.clone(),
            sidecar_top: top,
        }
    }

    /// The error for a missing file: the bucket's absence, else the object's.
    fn missing(&self) -> StorageError {
        if self.bucket.is_dir() {
            StorageError::NotFound {
                object: self.object.clone(),
            }
        } else {
            StorageError::BucketNotFound {
                bucket: self.object.bucket.clone(),
            }
        }
    }

    fn require_bucket(&self) -> Result<(), StorageError> {
        if self.bucket.is_dir() {
            Ok(())
        } else {
            Err(StorageError::BucketNotFound {
                bucket: self.object.bucket.clone(),
            })
        }
    }

    fn read_sidecar(&self) -> Option<Sidecar> {
        let bytes = fs::read(&self.sidecar).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Records `sidecar` atomically (temp file and rename); a lost sidecar
    /// only means the object is read as a foreign file next time.
    fn write_sidecar(&self, temp: PathBuf, sidecar: &Sidecar) -> io::Result<()> {
        if let Some(parent) = self.sidecar.parent() {
            fs::create_dir_all(parent)?;
        }
        let bytes = serde_json::to_vec(sidecar).map_err(io::Error::other)?;
        write_whole(temp, &self.sidecar, &bytes)
    }

    /// The generation of the file described by `metadata`: the recorded one
    /// when the sidecar describes this very file, else one derived from its
    /// mtime and larger than any generation recorded before.
    fn generation_of(&self, metadata: &fs::Metadata, sidecar: Option<&Sidecar>) -> i64 {
        let identity = FileIdentity::of(metadata);
        match sidecar {
            Some(recorded) if recorded.identity == identity => recorded.generation,
            Some(recorded) => identity.mtime_ns.max(recorded.generation.saturating_add(1)),
            None => identity.mtime_ns,
        }
    }

    /// Removes the now empty folders between the object and its bucket.
    fn prune_empty_parents(&self) {
        for (leaf, top) in [
            (&self.data, &self.data_top),
            (&self.sidecar, &self.sidecar_top),
        ] {
            let mut dir = leaf.parent();
            while let Some(current) = dir {
                if current == top.as_path() || fs::remove_dir(current).is_err() {
                    break;
                }
                dir = current.parent();
            }
        }
    }
}

impl LocalStore {
    /// The metadata of the file open as `file`, from its sidecar, or worked
    /// out from its bytes (and recorded) when it was written by someone
    /// else. Leaves `file` at its start.
    fn resolve(
        &self,
        paths: &Paths,
        file: &mut fs::File,
        context: &str,
    ) -> Result<ObjectMeta, StorageError> {
        let metadata = file.metadata().map_err(|error| io_error(context, error))?;
        let identity = FileIdentity::of(&metadata);
        let sidecar = paths.read_sidecar();
        if let Some(recorded) = sidecar.as_ref().filter(|s| s.identity == identity) {
            return Ok(meta_from(&paths.object, recorded));
        }
        let mut crc = 0;
        let mut buffer = vec![0; CHUNK_BYTES];
        loop {
            let read = file
                .read(&mut buffer)
                .map_err(|error| io_error(context, error))?;
            if read == 0 {
                break;
            }
            crc = crc32c::crc32c_append(crc, &buffer[..read]);
        }
        file.rewind().map_err(|error| io_error(context, error))?;
        let record = Sidecar {
            identity,
            generation: paths.generation_of(&metadata, sidecar.as_ref()),
            crc32c: crc,
            content_type: None,
            metadata: BTreeMap::new(),
            updated: DateTime::from_timestamp_nanos(identity.mtime_ns),
        };
        {
            let _commit = self.lock();
            // Record it only if the file is still the one read.
            let still = fs::metadata(&paths.data).map(|m| FileIdentity::of(&m));
            if still.ok() == Some(identity) {
                let _ = paths.write_sidecar(self.temp_path(), &record);
            }
        }
        Ok(meta_from(&paths.object, &record))
    }

    /// Opens the object's file and resolves its metadata.
    fn open_object(
        &self,
        paths: &Paths,
        context: &str,
    ) -> Result<(ObjectMeta, fs::File), StorageError> {
        let mut file = match fs::File::open(&paths.data) {
            Ok(file) => file,
            Err(error) if is_absent(&error) => return Err(paths.missing()),
            Err(error) => return Err(io_error(context, error)),
        };
        let metadata = file.metadata().map_err(|error| io_error(context, error))?;
        if !metadata.is_file() {
            // A folder holding other objects, not an object.
            return Err(StorageError::NotFound {
                object: paths.object.clone(),
            });
        }
        let meta = self.resolve(paths, &mut file, context)?;
        Ok((meta, file))
    }

    /// Moves the complete, synced file `temp` into place as the new
    /// generation of `object`, if the precondition holds. A plain path that
    /// collides with a folder of other objects, or runs through one of
    /// them, is escaped instead.
    fn commit(
        &self,
        object: &ObjectRef,
        mut temp: TempFile,
        written: Written,
        if_generation_match: Option<i64>,
        context: &str,
    ) -> Result<ObjectMeta, StorageError> {
        let _commit = self.lock();
        let mut paths = Paths::of(&self.root, object)?;
        paths.require_bucket()?;
        let current = match fs::metadata(&paths.data) {
            Ok(metadata) if metadata.is_file() => {
                Some(paths.generation_of(&metadata, paths.read_sidecar().as_ref()))
            }
            // A folder of other objects has this name.
            Ok(_) => {
                paths = Paths::escaped(&self.root, object);
                None
            }
            // One of the folders of this name is an object.
            Err(error) if error.kind() == io::ErrorKind::NotADirectory => {
                paths = Paths::escaped(&self.root, object);
                None
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => None,
            Err(error) => return Err(io_error(context, error)),
        };
        check_generation(object, if_generation_match, current)?;
        if let Some(parent) = paths.data.parent() {
            fs::create_dir_all(parent).map_err(|error| io_error(context, error))?;
        }
        if let Some(record) = &paths.name_record
            && !record.exists()
        {
            write_whole(self.temp_path(), record, object.name.as_bytes())
                .map_err(|error| io_error(context, error))?;
        }
        let generation = now_ns().max(current.map_or(i64::MIN, |g| g.saturating_add(1)));
        fs::rename(&temp.path, &paths.data).map_err(|error| io_error(context, error))?;
        temp.armed = false;
        if let Some(parent) = paths.data.parent() {
            fs::File::open(parent)
                .and_then(|dir| dir.sync_all())
                .map_err(|error| io_error(context, error))?;
        }
        let metadata = fs::metadata(&paths.data).map_err(|error| io_error(context, error))?;
        let record = Sidecar {
            identity: FileIdentity::of(&metadata),
            generation,
            crc32c: written.crc32c,
            content_type: written.content_type,
            metadata: written.metadata,
            updated: Utc::now(),
        };
        paths
            .write_sidecar(self.temp_path(), &record)
            .map_err(|error| io_error(context, error))?;
        Ok(meta_from(&paths.object, &record))
    }
}

/// What a write put into its temporary file.
struct Written {
    crc32c: u32,
    content_type: Option<String>,
    metadata: BTreeMap<String, String>,
}

fn meta_from(object: &ObjectRef, sidecar: &Sidecar) -> ObjectMeta {
    ObjectMeta {
        object: object.clone(),
        generation: sidecar.generation,
        size: sidecar.identity.size,
        crc32c: sidecar.crc32c,
        content_type: sidecar.content_type.clone(),
        metadata: sidecar.metadata.clone(),
        updated: sidecar.updated,
    }
}

fn check_generation(
    object: &ObjectRef,
    expected: Option<i64>,
    current: Option<i64>,
) -> Result<(), StorageError> {
    match (expected, current) {
        (None, _) | (Some(0), None) => Ok(()),
        (Some(expected), Some(current)) if expected == current => Ok(()),
        (Some(expected), current) => Err(StorageError::PreconditionFailed {
            object: object.clone(),
            detail: match current {
                Some(current) => format!("generation {expected} expected, {current} is live"),
                None => format!("generation {expected} expected, the object does not exist"),
            },
        }),
    }
}

#[async_trait]
impl ObjectStore for LocalStore {
    /// The location `bucket` was created in; `None` for a folder created by
    /// hand, which is a bucket of unknown location.
    async fn bucket_location(&self, bucket: &str) -> Result<Option<String>, StorageError> {
        let context = format!("bucket location of {bucket}");
        let root = Arc::clone(&self.root);
        let bucket = bucket.to_string();
        blocking(&context.clone(), move || {
            let dir = bucket_dir(&root, &bucket)?;
            let record = root
                .join(SYSTEM_DIR)
                .join("buckets")
                .join(format!("{bucket}.json"));
            match fs::read(&record) {
                Ok(bytes) => {
                    let record: BucketRecord = serde_json::from_slice(&bytes).map_err(|error| {
                        io_error(&context, io::Error::new(io::ErrorKind::InvalidData, error))
                    })?;
                    Ok(Some(record.location))
                }
                Err(error) if error.kind() == io::ErrorKind::NotFound => {
                    if dir.is_dir() {
                        Ok(None)
                    } else {
                        Err(StorageError::BucketNotFound { bucket })
                    }
                }
                Err(error) => Err(io_error(&context, error)),
            }
        })
        .await
    }

    async fn create_bucket(&self, bucket: &str, location: &str) -> Result<(), StorageError> {
        let context = format!("create bucket {bucket} in {location}");
        let root = Arc::clone(&self.root);
        let (bucket, location) = (bucket.to_string(), location.to_string());
        let temp = self.temp_path();
        blocking(&context.clone(), move || {
            let dir = bucket_dir(&root, &bucket)?;
            fs::create_dir_all(&dir).map_err(|error| io_error(&context, error))?;
            let record = root
                .join(SYSTEM_DIR)
                .join("buckets")
                .join(format!("{bucket}.json"));
            if !record.exists() {
                let bytes = serde_json::to_vec(&BucketRecord { location })
                    .map_err(|error| io_error(&context, io::Error::other(error)))?;
                write_whole(temp, &record, &bytes).map_err(|error| io_error(&context, error))?;
            }
            Ok(())
        })
        .await
    }

    async fn put(
        &self,
        object: &ObjectRef,
        mut body: ByteStream,
        options: PutOptions,
    ) -> Result<ObjectMeta, StorageError> {
        let context = format!("put {object} (local)");
        Paths::of(&self.root, object)?.require_bucket()?;
        let temp = TempFile {
            path: self.temp_path(),
            armed: true,
        };
        let mut file = tokio::fs::File::create(&temp.path)
            .await
            .map_err(|error| io_error(&context, error))?;
        let mut crc = 0;
        while let Some(chunk) = body.next().await {
            let chunk = chunk?;
            crc = crc32c::crc32c_append(crc, &chunk);
            file.write_all(&chunk)
                .await
                .map_err(|error| io_error(&context, error))?;
        }
        file.sync_all()
            .await
            .map_err(|error| io_error(&context, error))?;
        drop(file);
        let written = Written {
            crc32c: crc,
            content_type: options.content_type,
            metadata: options.metadata,
        };
        let store = self.clone();
        let object = object.clone();
        blocking(&context.clone(), move || {
            store.commit(
                &object,
                temp,
                written,
                options.if_generation_match,
                &context,
            )
        })
        .await
    }

    async fn get(&self, object: &ObjectRef) -> Result<(ObjectMeta, ByteStream), StorageError> {
        let context = format!("get {object} (local)");
        let paths = Paths::of(&self.root, object)?;
        let store = self.clone();
        let task_context = context.clone();
        let (meta, file) =
            blocking(&context, move || store.open_object(&paths, &task_context)).await?;
        let stream = tokio_util::io::ReaderStream::with_capacity(
            tokio::fs::File::from_std(file),
            CHUNK_BYTES,
        )
        .map_err(move |error| io_error(&context, error));
        Ok((meta.clone(), verified_stream(meta, Box::pin(stream))))
    }

    async fn head(&self, object: &ObjectRef) -> Result<ObjectMeta, StorageError> {
        let context = format!("head {object} (local)");
        let paths = Paths::of(&self.root, object)?;
        let store = self.clone();
        blocking(&context.clone(), move || {
            store.open_object(&paths, &context).map(|(meta, _)| meta)
        })
        .await
    }

    async fn list(
        &self,
        bucket: &str,
        prefix: &str,
        page_token: Option<&str>,
    ) -> Result<ListPage, StorageError> {
        let context = format!("list gs://{bucket}/{prefix}* (local)");
        // Only the folder the prefix names needs walking; a prefix whose
        // folders cannot be paths matches escaped names only.
        let folder = match prefix.rfind('/') {
            Some(end) if !escaped::fits_as_path(&prefix[..end]) => None,
            Some(end) => Some(&prefix[..end]),
            None => Some(""),
        };
        let window = PageWindow::new(prefix, page_token, self.list_page_size);
        self.list_page(context, bucket, folder, window).await
    }

    async fn list_range(
        &self,
        bucket: &str,
        first: &str,
        last: &str,
        page_token: Option<&str>,
    ) -> Result<ListPage, StorageError> {
        let context = format!("list gs://{bucket} from {first:?} to {last:?} (local)");
        let window = PageWindow::new("", page_token, self.list_page_size).between(first, last);
        self.list_page(context, bucket, Some(""), window).await
    }

    async fn delete(
        &self,
        object: &ObjectRef,
        if_generation_match: Option<i64>,
    ) -> Result<(), StorageError> {
        let context = format!("delete {object} (local)");
        let paths = Paths::of(&self.root, object)?;
        let store = self.clone();
        blocking(&context.clone(), move || {
            let _commit = store.lock();
            let metadata = match fs::metadata(&paths.data) {
                Ok(metadata) if metadata.is_file() => metadata,
                Ok(_) => {
                    return Err(StorageError::NotFound {
                        object: paths.object,
                    });
                }
                Err(error) if is_absent(&error) => return Err(paths.missing()),
                Err(error) => return Err(io_error(&context, error)),
            };
            let current = paths.generation_of(&metadata, paths.read_sidecar().as_ref());
            check_generation(&paths.object, if_generation_match, Some(current))?;
            fs::remove_file(&paths.data).map_err(|error| io_error(&context, error))?;
            for record in [Some(&paths.sidecar), paths.name_record.as_ref()]
                .into_iter()
                .flatten()
            {
                match fs::remove_file(record) {
                    Err(error) if error.kind() != io::ErrorKind::NotFound => {
                        return Err(io_error(&context, error));
                    }
                    _ => {}
                }
            }
            paths.prune_empty_parents();
            Ok(())
        })
        .await
    }

    async fn copy(
        &self,
        source: &ObjectRef,
        destination: &ObjectRef,
        options: CopyOptions,
    ) -> Result<ObjectMeta, StorageError> {
        let context = format!("copy {source} -> {destination} (local)");
        let from = Paths::of(&self.root, source)?;
        Paths::of(&self.root, destination)?.require_bucket()?;
        let store = self.clone();
        let task_context = context.clone();
        let (original, identity, from) = blocking(&context, move || {
            let (meta, file) = store.open_object(&from, &task_context)?;
            let metadata = file
                .metadata()
                .map_err(|error| io_error(&task_context, error))?;
            Ok((meta, FileIdentity::of(&metadata), from))
        })
        .await?;
        check_generation(
            source,
            options.if_source_generation_match,
            Some(original.generation),
        )?;
        let temp = TempFile {
            path: self.temp_path(),
            armed: true,
        };
        // The kernel copies (copy_file_range where it can); the bytes never
        // go through a buffer of ours.
        tokio::fs::copy(&from.data, &temp.path)
            .await
            .map_err(|error| io_error(&context, error))?;
        let copied = tokio::fs::OpenOptions::new()
            .write(true)
            .open(&temp.path)
            .await
            .map_err(|error| io_error(&context, error))?;
        copied
            .sync_all()
            .await
            .map_err(|error| io_error(&context, error))?;
        let copied_size = copied
            .metadata()
            .await
            .map_err(|error| io_error(&context, error))?
            .len();
        drop(copied);
        let after = tokio::fs::metadata(&from.data)
            .await
            .map(|metadata| FileIdentity::of(&metadata))
            .ok();
        if after != Some(identity) || copied_size != original.size {
            let detail = format!(
                "{context}: the source changed during the copy of generation {}",
                original.generation
            );
            return Err(if options.if_source_generation_match.is_some() {
                StorageError::PreconditionFailed {
                    object: source.clone(),
                    detail,
                }
            } else {
                io_error(&context, io::Error::other(detail))
            });
        }
        let written = Written {
            crc32c: original.crc32c,
            content_type: original.content_type.clone(),
            metadata: original.metadata.clone(),
        };
        let store = self.clone();
        let task_context = context.clone();
        let destination = destination.clone();
        blocking(&context, move || {
            store.commit(&destination, temp, written, None, &task_context)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{bytes_stream, conformance};
    use bytes::Bytes;
    use std::io::Write;

    /// Writes `bytes` to `path` as a foreign process would: in place, no
    /// sidecar.
    fn write_foreign(path: &Path, bytes: &[u8]) -> io::Result<()> {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        let mut file = fs::File::create(path)?;
        file.write_all(bytes)?;
        file.sync_all()
    }

    async fn store(dir: &tempfile::TempDir) -> LocalStore {
        LocalStore::open(dir.path())
            .await
            .expect("open store")
            .with_list_page_size(conformance::LIST_PAGE_SIZE)
    }

    #[tokio::test]
    async fn passes_the_conformance_suite() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store(&dir).await;
        store
            .create_bucket("conf-a", "europe-west4")
            .await
            .expect("bucket a");
        store
            .create_bucket("conf-b", "us-central1")
            .await
            .expect("bucket b");
        conformance::run_all(&store, "conf-a", "conf-b").await;
    }

    #[tokio::test]
    async fn bucket_location_is_recorded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store(&dir).await;
        store
            .create_bucket("models-eu", "europe-west4")
            .await
            .expect("create");
        store
            .create_bucket("models-eu", "us-east1")
            .await
            .expect("create again is fine");
        assert_eq!(
            store.bucket_location("models-eu").await.expect("location"),
            Some("europe-west4".to_string())
        );
        fs::create_dir(dir.path().join("by-hand")).expect("mkdir");
        assert_eq!(
            store.bucket_location("by-hand").await.expect("location"),
            None
        );
        assert!(matches!(
            store.bucket_location("nowhere").await,
            Err(StorageError::BucketNotFound { .. })
        ));
        for bad in [".lifeboat", "ab", "Upper", "-dash", "a/b"] {
            assert!(
                matches!(
                    store.create_bucket(bad, "x").await,
                    Err(StorageError::InvalidName { .. })
                ),
                "bucket name {bad:?} accepted"
            );
        }
    }

    #[tokio::test]
    async fn names_that_cannot_be_paths_are_escaped_and_stay_inside_the_store() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store(&dir).await;
        store.create_bucket("names", "local").await.expect("bucket");
        for name in ["../../escape", "/etc/passwd-copy", "a/../../../escape"] {
            let object = ObjectRef::new("names", name);
            store
                .put(&object, bytes_stream("x"), PutOptions::default())
                .await
                .unwrap_or_else(|error| panic!("put {name:?}: {error}"));
            assert_eq!(store.head(&object).await.expect("head").object, object);
        }
        assert!(!dir.path().join("escape").exists());
        assert!(!dir.path().parent().expect("parent").join("escape").exists());
        assert!(!Path::new("/etc/passwd-copy").exists());
        assert_eq!(
            files_under(&dir.path().join("names")),
            Vec::<PathBuf>::new(),
            "escaped names have no plain path"
        );
        // Deleting the last escaped object leaves no folder of its own.
        for name in ["../../escape", "/etc/passwd-copy", "a/../../../escape"] {
            store
                .delete(&ObjectRef::new("names", name), None)
                .await
                .expect("delete");
        }
        assert_eq!(
            fs::read_dir(dir.path().join(".lifeboat/escaped/names"))
                .expect("escaped folder")
                .count(),
            0
        );
    }

    #[tokio::test]
    async fn an_object_and_a_folder_can_share_a_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store(&dir).await;
        store.create_bucket("tree", "local").await.expect("bucket");
        let put = |name: &'static str| {
            let store = store.clone();
            async move {
                store
                    .put(
                        &ObjectRef::new("tree", name),
                        bytes_stream(name),
                        PutOptions::default(),
                    )
                    .await
                    .unwrap_or_else(|error| panic!("put {name}: {error}"))
            }
        };
        put("a/b").await;
        put("a/b/c").await;
        put("a").await;
        put("a/b/c").await;
        let listed: Vec<String> = store
            .list("tree", "a", None)
            .await
            .expect("list")
            .objects
            .into_iter()
            .map(|meta| meta.object.name)
            .collect();
        assert_eq!(listed, ["a", "a/b", "a/b/c"]);
        // The plain path stays a plain file: other processes still read it.
        assert_eq!(
            fs::read(dir.path().join("tree/a/b")).expect("plain"),
            b"a/b"
        );
        for name in ["a", "a/b/c", "a/b"] {
            store
                .delete(&ObjectRef::new("tree", name), None)
                .await
                .expect("delete");
        }
        assert!(
            store
                .list("tree", "", None)
                .await
                .expect("list")
                .objects
                .is_empty()
        );
    }

    #[tokio::test]
    async fn files_written_by_another_process_are_objects() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store(&dir).await;
        store
            .create_bucket("foreign", "local")
            .await
            .expect("bucket");
        let object = ObjectRef::new("foreign", "ckpt/step-10/shard-0");
        let path = dir.path().join("foreign/ckpt/step-10/shard-0");
        write_foreign(&path, b"first shard").expect("write");

        let meta = store.head(&object).await.expect("head foreign file");
        assert_eq!(meta.size, 11);
        assert_eq!(meta.crc32c, crc32c::crc32c(b"first shard"));
        let mtime = FileIdentity::of(&fs::metadata(&path).expect("stat")).mtime_ns;
        assert_eq!(meta.generation, mtime);
        let page = store.list("foreign", "ckpt/", None).await.expect("list");
        assert_eq!(page.objects, vec![meta.clone()]);

        // Rewritten in place by the other process: new crc, larger generation.
        write_foreign(&path, b"second shard!").expect("rewrite");
        let again = store.head(&object).await.expect("head rewritten");
        assert_eq!(again.crc32c, crc32c::crc32c(b"second shard!"));
        assert_eq!(again.size, 13);
        assert!(again.generation > meta.generation);
        let (_, body) = store.get(&object).await.expect("get");
        let bytes: Vec<Bytes> = body.try_collect().await.expect("read");
        assert_eq!(bytes.concat(), b"second shard!");

        // Then written through the store: generation still increases.
        let put = store
            .put(&object, bytes_stream("third"), PutOptions::default())
            .await
            .expect("put over foreign");
        assert!(put.generation > again.generation);
        assert_eq!(store.head(&object).await.expect("head"), put);
    }

    /// A body that yields one chunk and then never ends, like a writer whose
    /// process dies half-way.
    fn stalled_body() -> ByteStream {
        Box::pin(
            futures::stream::once(async { Ok(Bytes::from(vec![7u8; 1 << 20])) })
                .chain(futures::stream::pending()),
        )
    }

    fn files_under(dir: &Path) -> Vec<PathBuf> {
        let mut found = Vec::new();
        for entry in fs::read_dir(dir).expect("read_dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                found.extend(files_under(&path));
            } else {
                found.push(path);
            }
        }
        found
    }

    #[tokio::test]
    async fn an_interrupted_write_leaves_no_torn_object_and_no_temp_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store(&dir).await;
        store.create_bucket("crash", "local").await.expect("bucket");
        let object = ObjectRef::new("crash", "big/model.bin");
        let previous = store
            .put(&object, bytes_stream("old"), PutOptions::default())
            .await
            .expect("first version");

        let interrupted = tokio::time::timeout(
            std::time::Duration::from_millis(300),
            store.put(&object, stalled_body(), PutOptions::default()),
        )
        .await;
        assert!(
            interrupted.is_err(),
            "the stalled put finished: {interrupted:?}"
        );
        // The put future is dropped: the old version is intact.
        assert_eq!(store.head(&object).await.expect("head"), previous);
        let fresh = ObjectRef::new("crash", "never-written");
        let interrupted = tokio::time::timeout(
            std::time::Duration::from_millis(300),
            store.put(&fresh, stalled_body(), PutOptions::default()),
        )
        .await;
        assert!(interrupted.is_err());
        assert!(matches!(
            store.head(&fresh).await,
            Err(StorageError::NotFound { .. })
        ));
        assert_eq!(
            files_under(&dir.path().join("crash")),
            vec![dir.path().join("crash/big/model.bin")]
        );
        assert_eq!(
            files_under(&dir.path().join(".lifeboat/tmp")),
            Vec::<PathBuf>::new()
        );

        // A body that fails: its error comes back, nothing is written.
        let failing: ByteStream = Box::pin(futures::stream::iter([
            Ok(Bytes::from_static(b"partial")),
            Err(StorageError::Verification {
                object: fresh.clone(),
                detail: "source went away".to_string(),
            }),
        ]));
        assert!(matches!(
            store.put(&fresh, failing, PutOptions::default()).await,
            Err(StorageError::Verification { .. })
        ));
        assert!(matches!(
            store.head(&fresh).await,
            Err(StorageError::NotFound { .. })
        ));
        assert_eq!(
            files_under(&dir.path().join(".lifeboat/tmp")),
            Vec::<PathBuf>::new()
        );
    }

    #[tokio::test]
    async fn stores_on_one_root_share_preconditions_and_old_temp_files_go() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = store(&dir).await;
        first
            .create_bucket("shared", "local")
            .await
            .expect("bucket");
        let second = store(&dir).await;
        assert!(Arc::ptr_eq(&first.commit, &second.commit));
        let object = ObjectRef::new("shared", "lease");
        let only_new = || PutOptions {
            if_generation_match: Some(0),
            ..PutOptions::default()
        };
        let (a, b) = tokio::join!(
            first.put(&object, bytes_stream("first"), only_new()),
            second.put(&object, bytes_stream("second"), only_new()),
        );
        assert!(a.is_ok() != b.is_ok(), "both or neither won: {a:?} {b:?}");

        let tmp = dir.path().join(".lifeboat/tmp");
        let old = tmp.join("crashed-write");
        let recent = tmp.join("write-in-progress");
        for path in [&old, &recent] {
            write_foreign(path, b"partial").expect("temp file");
        }
        let two_hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
        fs::File::options()
            .write(true)
            .open(&old)
            .and_then(|file| file.set_modified(two_hours_ago))
            .expect("age the file");
        store(&dir).await;
        assert!(!old.exists(), "an abandoned temp file stayed");
        assert!(recent.exists(), "a recent temp file was removed");
    }

    #[tokio::test]
    async fn deleting_the_last_object_of_a_folder_removes_the_folder() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store(&dir).await;
        store.create_bucket("prune", "local").await.expect("bucket");
        let object = ObjectRef::new("prune", "x/y/z");
        store
            .put(&object, bytes_stream("z"), PutOptions::default())
            .await
            .expect("put");
        store.delete(&object, None).await.expect("delete");
        assert!(!dir.path().join("prune/x").exists());
        assert!(dir.path().join("prune").is_dir());
        assert!(!dir.path().join(".lifeboat/meta/prune/x").exists());
    }
}
