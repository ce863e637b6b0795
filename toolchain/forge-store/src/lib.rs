//! The store: a content-addressed directory shared by every forge project of a user.
//!
//! ```text
//! STORE/
//!   store.lock               shared by every forge process, exclusive for gc and repair
//!   blobs/sha256/<hex>       immutable files named by their SHA-256 (sources, layers)
//!   outputs/<recipe-hash>.json
//!                            what a recipe built: its layer's sha256 and sizes
//!   locks/<key>.lock         one builder or fetcher per key at a time; others wait
//!   roots/<hex>              GC roots: each holds the absolute path of a lockfile
//!   tmp/                     files being written; a killed process leaves them here,
//!                            later runs ignore them and `forge gc` removes them
//! ```
//!
//! Every write goes to `tmp/`, is fsynced, and is renamed into place, so an entry is either
//! whole or absent. Blobs are re-hashed before the rename: a blob's name is its content.

pub mod fsutil;
mod gc;
mod verify;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use forge_schema::Sha256Digest;
use serde::{Deserialize, Serialize};

pub use gc::{GcReport, KeepSet, RootScan};
pub use verify::{Problem, VerifyReport};

/// Store errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot use the store at `{path}`: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("content written for `{expected}` hashes to `{actual}`; nothing was stored")]
    HashMismatch {
        expected: Sha256Digest,
        actual: Sha256Digest,
    },
    #[error(
        "GC root `{}` cannot be read, so nothing was collected: {reason}\nfix that lockfile, or delete it (the root of a deleted lockfile is dropped by the next `forge gc`)",
        lockfile.display()
    )]
    Root { lockfile: PathBuf, reason: String },
    #[error("output record `{path}` is damaged: {reason}; run `forge store verify --repair`")]
    BadOutput { path: PathBuf, reason: String },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

trait IoContext<T> {
    fn at(self, path: &Path) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, path: &Path) -> Result<T> {
        self.map_err(|source| StoreError::Io {
            path: path.to_path_buf(),
            source,
        })
    }
}

/// What a recipe built, recorded in `outputs/<recipe-hash>.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputRecord {
    pub recipe: String,
    pub version: String,
    pub recipe_hash: Sha256Digest,
    pub layer_sha256: Sha256Digest,
    pub layer_size: u64,
    pub content_sha256: Sha256Digest,
}

/// An output record kept in `outputs/`: what some input hash produced.
pub trait Record: Serialize + serde::de::DeserializeOwned {
    /// `""` for recipe layers (`<hash>.json`), else the suffix (`<hash>.KIND.json`).
    const KIND: &'static str;
    /// The input hash the record is filed under.
    fn key(&self) -> Sha256Digest;
    /// Blobs the record points to; it is only valid while they are all present.
    fn blobs(&self) -> Vec<Sha256Digest>;
}

impl Record for OutputRecord {
    const KIND: &'static str = "";
    fn key(&self) -> Sha256Digest {
        self.recipe_hash
    }
    fn blobs(&self) -> Vec<Sha256Digest> {
        vec![self.layer_sha256]
    }
}

/// A base root file system (the locked package set installed), cached by base hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaseRecord {
    pub base_hash: Sha256Digest,
    /// The tar, zstd-compressed like a layer.
    pub tar_zst_sha256: Sha256Digest,
    pub tar_sha256: Sha256Digest,
    pub tar_size: u64,
}

impl Record for BaseRecord {
    const KIND: &'static str = "base";
    fn key(&self) -> Sha256Digest {
        self.base_hash
    }
    fn blobs(&self) -> Vec<Sha256Digest> {
        vec![self.tar_zst_sha256]
    }
}

/// A built disk image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    pub image: String,
    pub image_hash: Sha256Digest,
    pub format: String,
    pub output_sha256: Sha256Digest,
    pub output_size: u64,
    /// The root file system as a tar.zst, kept to name differences (`--check`).
    pub rootfs_sha256: Sha256Digest,
}

impl Record for ImageRecord {
    const KIND: &'static str = "image";
    fn key(&self) -> Sha256Digest {
        self.image_hash
    }
    fn blobs(&self) -> Vec<Sha256Digest> {
        vec![self.output_sha256, self.rootfs_sha256]
    }
}

/// What a source that the store cannot file under its own SHA-256 resolved to: a file
/// pinned by SHA-512 (one blob), or a container image pinned by its manifest digest (the
/// manifests and the layers, in order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceRecord {
    /// The pin line (`sha512 <hex>`, `image sha256:<hex> <platform>`).
    pub pin: String,
    /// `forge_schema::lockfile::source_record_key(pin)`.
    pub key: Sha256Digest,
    /// A SHA-512-pinned file's SHA-256.
    #[serde(default)]
    pub blob: Option<Sha256Digest>,
    /// An image's index (if any), manifest and config blobs.
    #[serde(default)]
    pub manifests: Vec<Sha256Digest>,
    /// An image's layers, bottom first.
    #[serde(default)]
    pub layers: Vec<LayerBlob>,
}

/// One layer of an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerBlob {
    pub digest: Sha256Digest,
    pub media_type: String,
}

impl Record for SourceRecord {
    const KIND: &'static str = "source";
    fn key(&self) -> Sha256Digest {
        self.key
    }
    fn blobs(&self) -> Vec<Sha256Digest> {
        self.blob
            .iter()
            .copied()
            .chain(self.manifests.iter().copied())
            .chain(self.layers.iter().map(|l| l.digest))
            .collect()
    }
}

/// File name of a record.
pub fn record_file_name(kind: &str, hash: &Sha256Digest) -> String {
    if kind.is_empty() {
        format!("{}.json", hash.to_hex())
    } else {
        format!("{}.{kind}.json", hash.to_hex())
    }
}

/// Parses any record file of `outputs/` by its name: its key and blobs.
pub fn parse_record_file(
    name: &str,
    bytes: &[u8],
) -> std::result::Result<(Sha256Digest, Vec<Sha256Digest>), String> {
    fn get<R: Record>(
        bytes: &[u8],
    ) -> std::result::Result<(Sha256Digest, Vec<Sha256Digest>), String> {
        let r: R = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        Ok((r.key(), r.blobs()))
    }
    let stem = name.strip_suffix(".json").ok_or("not a .json file")?;
    let (hex, kind) = stem.split_once('.').unwrap_or((stem, ""));
    let (key, blobs) = match kind {
        "" => get::<OutputRecord>(bytes)?,
        "base" => get::<BaseRecord>(bytes)?,
        "image" => get::<ImageRecord>(bytes)?,
        "source" => get::<SourceRecord>(bytes)?,
        other => return Err(format!("unknown record kind `{other}`")),
    };
    if key.to_hex() != hex {
        return Err("it names another hash".into());
    }
    Ok((key, blobs))
}

/// An open store. Holding it holds a shared lock on `store.lock`, so `forge gc` cannot
/// delete anything underneath a running build.
#[derive(Debug)]
pub struct Store {
    root: PathBuf,
    _lock: File,
    exclusive: bool,
}

/// A held per-key lock; released when dropped.
#[derive(Debug)]
pub struct KeyLock {
    _file: File,
}

/// How a caller wants to hear that it is waiting for another process.
pub type WaitNotice<'a> = &'a dyn Fn(&str);

impl Store {
    /// Opens (creating if needed) the store at `root` for building: many processes at once.
    pub fn open(root: &Path, on_wait: WaitNotice<'_>) -> Result<Self> {
        Self::open_mode(root, false, on_wait)
    }

    /// Opens the store alone, waiting for every other forge process to finish (gc, repair).
    pub fn open_exclusive(root: &Path, on_wait: WaitNotice<'_>) -> Result<Self> {
        Self::open_mode(root, true, on_wait)
    }

    fn open_mode(root: &Path, exclusive: bool, on_wait: WaitNotice<'_>) -> Result<Self> {
        for dir in ["blobs/sha256", "outputs", "locks", "roots", "tmp", "logs"] {
            let d = root.join(dir);
            fs::create_dir_all(&d).at(&d)?;
        }
        let lock_path = root.join("store.lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .at(&lock_path)?;
        let acquired = if exclusive {
            file.try_lock()
        } else {
            file.try_lock_shared()
        };
        match acquired {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                on_wait(if exclusive {
                    "waiting for other forge processes to finish with the store"
                } else {
                    "waiting for `forge gc` to finish with the store"
                });
                if exclusive {
                    file.lock().at(&lock_path)?;
                } else {
                    file.lock_shared().at(&lock_path)?;
                }
            }
            Err(fs::TryLockError::Error(e)) => return Err(e).at(&lock_path),
        }
        let root = fs::canonicalize(root).at(root)?;
        Ok(Self {
            root,
            _lock: file,
            exclusive,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn is_exclusive(&self) -> bool {
        self.exclusive
    }

    /// Where the log of build step `step` (1-based) of the recipe with hash `recipe_hash`
    /// is kept (whether or not it exists): `logs/<hash>.step<N>.log`.
    pub fn log_path(&self, recipe_hash: &Sha256Digest, step: usize) -> PathBuf {
        self.root
            .join("logs")
            .join(format!("{}.step{step}.log", recipe_hash.to_hex()))
    }

    /// Keeps the log of a build step (successful or not) in the store, atomically, and
    /// returns where. A later run of the same step replaces it. `forge gc` removes the logs
    /// of recipes whose outputs it removes.
    pub fn keep_log(&self, recipe_hash: &Sha256Digest, step: usize, log: &Path) -> Result<PathBuf> {
        let dest = self.log_path(recipe_hash, step);
        fsutil::copy_atomic(log, &dest, Some(0o644)).at(&dest)?;
        Ok(dest)
    }

    /// Path of a blob (whether or not it exists).
    pub fn blob_path(&self, digest: &Sha256Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(digest.to_hex())
    }

    pub fn has_blob(&self, digest: &Sha256Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// Re-hashes a blob: `true` if it is there and intact. A damaged blob is deleted (so it
    /// is fetched again) and reported as absent.
    pub fn check_blob(&self, digest: &Sha256Digest) -> Result<bool> {
        let path = self.blob_path(digest);
        match fsutil::hash_file(&path) {
            Ok((actual, _)) if &actual == digest => Ok(true),
            Ok((actual, _)) => {
                tracing::warn!(
                    "blob {} in the store is damaged (its content hashes to {actual}); removing it",
                    digest
                );
                fs::remove_file(&path).at(&path)?;
                Ok(false)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e).at(&path),
        }
    }

    /// Takes the lock for `key` (e.g. `blob-<hex>` or `output-<hex>`), waiting if another
    /// process holds it.
    pub fn lock(&self, key: &str, on_wait: WaitNotice<'_>) -> Result<KeyLock> {
        let path = self.root.join("locks").join(format!("{key}.lock"));
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .at(&path)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                on_wait(key);
                file.lock().at(&path)?;
            }
            Err(fs::TryLockError::Error(e)) => return Err(e).at(&path),
        }
        Ok(KeyLock { _file: file })
    }

    /// A new temporary file in the store's `tmp/`, deleted if dropped uncommitted.
    pub fn temp_file(&self) -> Result<tempfile::NamedTempFile> {
        let dir = self.root.join("tmp");
        tempfile::Builder::new()
            .prefix(&format!("{}-", std::process::id()))
            .tempfile_in(&dir)
            .at(&dir)
    }

    /// A new temporary directory in the store's `tmp/`, deleted when dropped.
    pub fn temp_dir(&self) -> Result<tempfile::TempDir> {
        let dir = self.root.join("tmp");
        tempfile::Builder::new()
            .prefix(&format!("{}-", std::process::id()))
            .tempdir_in(&dir)
            .at(&dir)
    }

    /// Moves a fully written temp file into the store as the blob `expected`, after
    /// re-hashing it. On a mismatch nothing is stored and the temp file is deleted.
    pub fn commit_blob(
        &self,
        tmp: tempfile::NamedTempFile,
        expected: &Sha256Digest,
    ) -> Result<PathBuf> {
        let (actual, _) = fsutil::hash_file(tmp.path()).at(tmp.path())?;
        if &actual != expected {
            return Err(StoreError::HashMismatch {
                expected: *expected,
                actual,
            });
        }
        self.commit_blob_unchecked(tmp, expected)
    }

    /// Like [`Store::commit_blob`] for a caller that hashed the bytes while writing them.
    pub fn commit_blob_unchecked(
        &self,
        tmp: tempfile::NamedTempFile,
        digest: &Sha256Digest,
    ) -> Result<PathBuf> {
        let dest = self.blob_path(digest);
        let f = tmp.as_file();
        f.set_permissions(fs::Permissions::from_mode(0o444))
            .at(tmp.path())?;
        f.sync_all().at(tmp.path())?;
        if dest.is_file() {
            // Another process stored the same content first; ours is redundant.
            return Ok(dest);
        }
        tmp.persist(&dest).map_err(|e| StoreError::Io {
            path: dest.clone(),
            source: e.error,
        })?;
        let dir = self.root.join("blobs/sha256");
        fsutil::sync_dir(&dir).at(&dir)?;
        Ok(dest)
    }

    /// Moves a file that lives in the store's `tmp/` (e.g. a finished download whose bytes
    /// the caller hashed while writing) into place as blob `digest`.
    pub fn commit_tmp_path(&self, path: &Path, digest: &Sha256Digest) -> Result<PathBuf> {
        let dest = self.blob_path(digest);
        let f = File::open(path).at(path)?;
        f.set_permissions(fs::Permissions::from_mode(0o444))
            .at(path)?;
        f.sync_all().at(path)?;
        fs::rename(path, &dest).at(&dest)?;
        let dir = self.root.join("blobs/sha256");
        fsutil::sync_dir(&dir).at(&dir)?;
        Ok(dest)
    }

    /// Stores a copy of a file, verifying it hashes to `expected`.
    pub fn add_file(&self, src: &Path, expected: &Sha256Digest) -> Result<PathBuf> {
        if self.has_blob(expected) {
            return Ok(self.blob_path(expected));
        }
        let mut tmp = self.temp_file()?;
        let reader = File::open(src).at(src)?;
        let (actual, _) = fsutil::copy_hashing(reader, tmp.as_file_mut()).at(tmp.path())?;
        if &actual != expected {
            return Err(StoreError::HashMismatch {
                expected: *expected,
                actual,
            });
        }
        tmp.as_file_mut().flush().at(src)?;
        self.commit_blob_unchecked(tmp, expected)
    }

    fn record_path(&self, kind: &str, hash: &Sha256Digest) -> PathBuf {
        self.root.join("outputs").join(record_file_name(kind, hash))
    }

    /// The recorded output of a recipe hash, if it was built and its layer is present.
    pub fn output(&self, recipe_hash: &Sha256Digest) -> Result<Option<OutputRecord>> {
        self.record(recipe_hash)
    }

    /// Records a recipe output. The layer blob must already be in the store.
    pub fn commit_output(&self, record: &OutputRecord) -> Result<()> {
        self.commit_record(record)
    }

    /// A record of kind `R` for `hash`, if present and every blob it names is in the store.
    pub fn record<R: Record>(&self, hash: &Sha256Digest) -> Result<Option<R>> {
        let path = self.record_path(R::KIND, hash);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).at(&path),
        };
        let record: R = serde_json::from_slice(&bytes).map_err(|e| StoreError::BadOutput {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        if &record.key() != hash {
            return Err(StoreError::BadOutput {
                path,
                reason: "it names another hash".into(),
            });
        }
        if !record.blobs().iter().all(|b| self.has_blob(b)) {
            return Ok(None);
        }
        Ok(Some(record))
    }

    /// Writes a record (atomically). The blobs it names must already be in the store.
    pub fn commit_record<R: Record>(&self, record: &R) -> Result<()> {
        let path = self.record_path(R::KIND, &record.key());
        let mut bytes = serde_json::to_vec_pretty(record).map_err(|e| StoreError::BadOutput {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        bytes.push(b'\n');
        let mut tmp = self.temp_file()?;
        tmp.write_all(&bytes).at(tmp.path())?;
        tmp.as_file()
            .set_permissions(fs::Permissions::from_mode(0o444))
            .at(tmp.path())?;
        tmp.as_file().sync_all().at(tmp.path())?;
        tmp.persist(&path).map_err(|e| StoreError::Io {
            path: path.clone(),
            source: e.error,
        })?;
        let dir = self.root.join("outputs");
        fsutil::sync_dir(&dir).at(&dir)
    }

    /// Registers a lockfile as a GC root: what it pins survives `forge gc`.
    pub fn add_root(&self, lockfile: &Path) -> Result<()> {
        let abs = if lockfile.is_absolute() {
            lockfile.to_path_buf()
        } else {
            std::env::current_dir().at(lockfile)?.join(lockfile)
        };
        let text = abs.to_string_lossy().into_owned();
        let path = self
            .root
            .join("roots")
            .join(Sha256Digest::of(text.as_bytes()).to_hex());
        if fs::read_to_string(&path).is_ok_and(|t| t == text) {
            return Ok(());
        }
        fsutil::write_atomic(&path, text.as_bytes(), None).at(&path)
    }

    /// Registered roots: `(root file, lockfile path)`.
    pub fn roots(&self) -> Result<Vec<(PathBuf, PathBuf)>> {
        let dir = self.root.join("roots");
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).at(&dir)? {
            let entry = entry.at(&dir)?;
            let name = entry.file_name();
            if name.to_string_lossy().starts_with('.') {
                continue;
            }
            let p = entry.path();
            if let Ok(text) = fs::read_to_string(&p) {
                out.push((p, PathBuf::from(text)));
            }
        }
        out.sort();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quiet(_: &str) {}

    #[test]
    fn blobs_are_verified_and_read_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &quiet).unwrap();
        let src = dir.path().join("src");
        fs::write(&src, b"hello").unwrap();
        let good = Sha256Digest::of(b"hello");
        let bad = Sha256Digest::of(b"other");
        assert!(matches!(
            store.add_file(&src, &bad),
            Err(StoreError::HashMismatch { .. })
        ));
        assert!(!store.has_blob(&bad));
        let p = store.add_file(&src, &good).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"hello");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o444
        );
        // Nothing left in tmp.
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn outputs_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &quiet).unwrap();
        let src = dir.path().join("layer");
        fs::write(&src, b"layer").unwrap();
        let layer = Sha256Digest::of(b"layer");
        let rec = OutputRecord {
            recipe: "r".into(),
            version: "1".into(),
            recipe_hash: Sha256Digest::of(b"r"),
            layer_sha256: layer,
            layer_size: 5,
            content_sha256: Sha256Digest::of(b"c"),
        };
        store.commit_output(&rec).unwrap();
        // Layer blob missing: not usable yet.
        assert_eq!(store.output(&rec.recipe_hash).unwrap(), None);
        store.add_file(&src, &layer).unwrap();
        assert_eq!(store.output(&rec.recipe_hash).unwrap(), Some(rec));
    }

    #[test]
    fn exclusive_waits_for_shared() {
        let dir = tempfile::tempdir().unwrap();
        let shared = Store::open(dir.path(), &quiet).unwrap();
        let root = dir.path().to_path_buf();
        let waited = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let w = waited.clone();
        let t = std::thread::spawn(move || {
            let notice = move |_: &str| w.store(true, std::sync::atomic::Ordering::SeqCst);
            Store::open_exclusive(&root, &notice).map(|_| ())
        });
        std::thread::sleep(std::time::Duration::from_millis(200));
        drop(shared);
        t.join().unwrap().unwrap();
        assert!(waited.load(std::sync::atomic::Ordering::SeqCst));
    }
}
