//! Fetching fixed-output sources into the store.
//!
//! A source is known by its SHA-256 before it is fetched. The fetcher looks for it, in
//! order: in the store; in local source directories (`--source-dir`, `FORGE_SOURCE_DIRS`),
//! by `<sha256>`, `sha256/<sha256>` and by file name; then at each URL in turn (mirrors).
//! Downloads stream through SHA-256 into a partial file in the store's `tmp/`, resume with
//! HTTP range requests after a dropped connection (also across runs), and retry transient
//! failures (connection errors, 408, 429, 5xx) with exponential backoff. Bytes that do not
//! hash to the pin are deleted and reported with both hashes; nothing unverified is stored.
//! `--offline` never opens a connection and reports every missing source at once.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use forge_schema::lockfile::{sha512_pin, source_record_key};
use forge_schema::{Integrity, IntegrityHasher, Sha256Digest};
use forge_store::{SourceRecord, Store};

pub mod go;
pub mod oci;

mod fetcher;

/// One source to fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchRequest {
    /// How messages name it, e.g. `hello/tool`.
    pub name: String,
    pub urls: Vec<String>,
    /// The pin: SHA-256 (the store's key) or SHA-512.
    pub integrity: Integrity,
    /// Looked up in source directories.
    pub file_name: String,
    /// `Accept` header to send (registries serve manifests by media type).
    pub accept: Option<String>,
}

impl FetchRequest {
    /// A request for a file pinned by SHA-256.
    pub fn sha256(
        name: String,
        urls: Vec<String>,
        sha256: Sha256Digest,
        file_name: String,
    ) -> Self {
        Self {
            name,
            urls,
            integrity: Integrity::Sha256(sha256),
            file_name,
            accept: None,
        }
    }
}

/// Where a fetched source came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Store,
    SourceDir(PathBuf),
    Url(String),
}

/// Result of a successful fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    pub sha256: Sha256Digest,
    pub path: PathBuf,
    pub origin: Origin,
}

/// A source that could not be found offline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    pub name: String,
    pub file_name: String,
    /// What pins it (`sha256:...`, `h1:...`).
    pub pin: String,
    pub urls: Vec<String>,
}

/// Why one URL did not deliver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlFailure {
    pub url: String,
    pub reason: String,
    /// Set when the URL served bytes with another hash.
    pub actual: Option<Integrity>,
}

/// Fetch errors.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{} source(s) are not available offline:{}", missing.len(), list_missing(missing))]
    Offline { missing: Vec<Missing> },
    #[error(
        "source `{name}`: {algo} mismatch for {url}\n  expected {algo}: {}\n  actual {algo}:   {}\nnothing was stored; if the new content is right, update the recipe's `{algo}`",
        expected.to_hex(), actual.to_hex(), algo = expected.algorithm()
    )]
    HashMismatch {
        name: String,
        url: String,
        expected: Box<Integrity>,
        actual: Box<Integrity>,
    },
    #[error(
        "source `{name}` ({integrity}) could not be fetched:{}",
        list_failures(failures)
    )]
    Failed {
        name: String,
        integrity: Integrity,
        failures: Vec<UrlFailure>,
    },
    #[error("source `{name}` has no URL and is in no source directory ({integrity})")]
    NoUrl { name: String, integrity: Integrity },
    #[error("image source `{name}`: {reason}")]
    Image { name: String, reason: String },
    #[error(
        "Go module {module}: h1 mismatch for {url}\n  expected: {expected}\n  actual:   {actual}\nnothing was stored; if the new content is right, update its pin (go.sum)"
    )]
    GoMismatch {
        module: String,
        url: String,
        expected: String,
        actual: String,
    },
    #[error("Go module {module}: {reason}")]
    Go { module: String, reason: String },
    #[error(transparent)]
    Store(#[from] forge_store::StoreError),
    #[error("cannot set up the HTTP client: {0}")]
    Client(String),
}

fn list_missing(missing: &[Missing]) -> String {
    let mut s = String::new();
    for m in missing {
        s.push_str(&format!(
            "\n  {} ({}, {}){}",
            m.name,
            m.file_name,
            m.pin,
            m.urls
                .first()
                .map(|u| format!(" from {u}"))
                .unwrap_or_default()
        ));
    }
    s.push_str("\nfetch them without --offline, or put the files in a --source-dir");
    s
}

fn list_failures(failures: &[UrlFailure]) -> String {
    failures
        .iter()
        .map(|f| format!("\n  {}: {}", f.url, f.reason))
        .collect()
}

/// Receives progress of transfers (the CLI draws bars with it).
pub trait Progress: Send + Sync {
    /// A transfer of `name` starts, `total` bytes if known.
    fn start(&self, name: &str, total: Option<u64>) -> Box<dyn Transfer>;
}

/// One transfer's progress.
pub trait Transfer: Send {
    fn set_position(&self, pos: u64, total: Option<u64>);
    fn advance(&self, n: u64);
    fn finish(&self);
}

/// Progress that goes nowhere.
#[derive(Debug, Default)]
pub struct NoProgress;

struct NoTransfer;

impl Transfer for NoTransfer {
    fn set_position(&self, _: u64, _: Option<u64>) {}
    fn advance(&self, _: u64) {}
    fn finish(&self) {}
}

impl Progress for NoProgress {
    fn start(&self, _: &str, _: Option<u64>) -> Box<dyn Transfer> {
        Box::new(NoTransfer)
    }
}

/// Fetcher settings.
#[derive(Clone)]
pub struct FetchOptions {
    pub source_dirs: Vec<PathBuf>,
    /// Another store to take sources from before anything else (verified copies), as
    /// `--check` does to rebuild in a fresh store without the network.
    pub upstream: Option<Arc<Store>>,
    /// Archive root that `debian:pool/...` URLs are resolved against.
    pub debian_mirror: Option<String>,
    /// The Go module proxy (`GOPROXY`'s first URL) that Go module sources come from.
    pub go_proxy: Option<String>,
    pub offline: bool,
    /// Downloads at once.
    pub parallel: usize,
    /// Retries of a transient failure per URL (attempts = retries + 1).
    pub retries: u32,
    /// First backoff; doubled each retry, capped at 30 s.
    pub backoff: Duration,
    pub connect_timeout: Duration,
    /// Longest silence while reading a response.
    pub read_timeout: Duration,
}

impl Default for FetchOptions {
    fn default() -> Self {
        Self {
            source_dirs: Vec::new(),
            upstream: None,
            debian_mirror: None,
            go_proxy: None,
            offline: false,
            parallel: 8,
            retries: 4,
            backoff: Duration::from_millis(500),
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(60),
        }
    }
}

/// Fetches sources into a store.
pub struct Fetcher {
    client: reqwest::Client,
    options: FetchOptions,
    progress: Arc<dyn Progress>,
    /// Anonymous bearer tokens of registries, by `realm service scope`.
    tokens: tokio::sync::Mutex<std::collections::HashMap<String, String>>,
}

/// URLs of files in the Debian archive, relative to its root (`debian:pool/main/...`):
/// the configured mirror serves them, so recipes name no mirror host.
pub const DEBIAN_SCHEME: &str = "debian:";

/// Tokens are scoped to a repository: key them by the URL up to `/manifests/` or `/blobs/`.
fn token_scope_key(url: &str) -> String {
    for marker in ["/manifests/", "/blobs/"] {
        if let Some((base, _)) = url.split_once(marker) {
            return base.to_string();
        }
    }
    url.to_string()
}

/// For sources the store cannot find by their own pin (SHA-512), records which blob they
/// are.
fn record_alias(
    store: &Store,
    req: &FetchRequest,
    sha256: &Sha256Digest,
) -> Result<(), FetchError> {
    if let Integrity::Sha512(d) = &req.integrity {
        let pin = sha512_pin(d);
        store.commit_record(&SourceRecord {
            key: source_record_key(&pin),
            pin,
            blob: Some(*sha256),
            manifests: Vec::new(),
            layers: Vec::new(),
        })?;
    }
    Ok(())
}

/// Copies `input` to `out` through `hasher`.
fn copy_with(
    mut input: impl Read,
    out: &mut File,
    mut hasher: IntegrityHasher,
) -> io::Result<(Sha256Digest, Integrity)> {
    let mut buf = vec![0u8; forge_store::fsutil::IO_BUFFER];
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        out.write_all(&buf[..n])?;
        hasher.update(&buf[..n]);
    }
    out.flush()?;
    Ok(hasher.finish())
}

fn describe(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

fn content_range_start(r: &reqwest::Response) -> Option<u64> {
    let v = r
        .headers()
        .get(reqwest::header::CONTENT_RANGE)?
        .to_str()
        .ok()?;
    let rest = v.strip_prefix("bytes ")?;
    rest.split('-').next()?.trim().parse().ok()
}

/// The blob a pin resolves to in the store, if it is there.
pub fn stored_blob(store: &Store, integrity: &Integrity) -> Option<Sha256Digest> {
    let sha256 = match integrity {
        Integrity::Sha256(d) => *d,
        Integrity::Sha512(d) => {
            let key = source_record_key(&sha512_pin(d));
            store.record::<SourceRecord>(&key).ok().flatten()?.blob?
        }
    };
    store.has_blob(&sha256).then_some(sha256)
}

/// The source, if the store has it already.
fn in_store(store: &Store, req: &FetchRequest) -> Option<Fetched> {
    stored_blob(store, &req.integrity).map(|sha256| Fetched {
        sha256,
        path: store.blob_path(&sha256),
        origin: Origin::Store,
    })
}

/// Hash and length of what a partial download already holds.
fn hash_part(part: &Path, pin: &Integrity) -> io::Result<(IntegrityHasher, u64)> {
    let mut hasher = IntegrityHasher::for_pin(pin);
    let mut f = match File::open(part) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((hasher, 0)),
        Err(e) => return Err(e),
    };
    let mut buf = vec![0u8; forge_store::fsutil::IO_BUFFER];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let len = hasher.len();
    Ok((hasher, len))
}

fn copy_local(
    src: &Path,
    part: &Path,
    pin: &Integrity,
) -> Result<(Sha256Digest, Integrity), String> {
    let input = File::open(src).map_err(|e| format!("cannot read {}: {e}", src.display()))?;
    let mut out =
        File::create(part).map_err(|e| format!("cannot write {}: {e}", part.display()))?;
    let d = copy_with(input, &mut out, IntegrityHasher::for_pin(pin))
        .map_err(|e| format!("cannot copy {}: {e}", src.display()))?;
    out.sync_all().map_err(|e| e.to_string())?;
    Ok(d)
}

/// Moves a verified partial download into the store.
fn commit_part(store: &Store, part: &Path, sha256: &Sha256Digest) -> Result<PathBuf, FetchError> {
    Ok(store.commit_tmp_path(part, sha256)?)
}
