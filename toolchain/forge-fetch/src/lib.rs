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

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use forge_schema::{Hasher, Sha256Digest};
use forge_store::Store;
use futures_util::StreamExt;

/// One source to fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchRequest {
    /// How messages name it, e.g. `hello/tool`.
    pub name: String,
    pub urls: Vec<String>,
    pub sha256: Sha256Digest,
    /// Looked up in source directories.
    pub file_name: String,
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
    pub sha256: Sha256Digest,
    pub urls: Vec<String>,
}

/// Why one URL did not deliver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlFailure {
    pub url: String,
    pub reason: String,
    /// Set when the URL served bytes with another hash.
    pub actual: Option<Sha256Digest>,
}

/// Fetch errors.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{} source(s) are not available offline:{}", missing.len(), list_missing(missing))]
    Offline { missing: Vec<Missing> },
    #[error(
        "source `{name}`: sha256 mismatch for {url}\n  expected sha256: {expected}\n  actual sha256:   {actual}\nnothing was stored; if the new content is right, update the recipe's `sha256`"
    )]
    HashMismatch {
        name: String,
        url: String,
        expected: Sha256Digest,
        actual: Sha256Digest,
    },
    #[error(
        "source `{name}` (sha256 {sha256}) could not be fetched:{}",
        list_failures(failures)
    )]
    Failed {
        name: String,
        sha256: Sha256Digest,
        failures: Vec<UrlFailure>,
    },
    #[error("source `{name}` has no URL and is in no source directory (sha256 {sha256})")]
    NoUrl { name: String, sha256: Sha256Digest },
    #[error(transparent)]
    Store(#[from] forge_store::StoreError),
    #[error("cannot set up the HTTP client: {0}")]
    Client(String),
}

fn list_missing(missing: &[Missing]) -> String {
    let mut s = String::new();
    for m in missing {
        s.push_str(&format!(
            "\n  {} ({}, sha256 {}){}",
            m.name,
            m.file_name,
            m.sha256,
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
}

/// What one attempt at one URL ended with.
enum Attempt {
    Done(Sha256Digest),
    Transient(String, Option<Duration>),
    Permanent(String),
}

impl Fetcher {
    pub fn new(options: FetchOptions, progress: Arc<dyn Progress>) -> Result<Self, FetchError> {
        let client = reqwest::Client::builder()
            .user_agent(concat!("forge/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(options.connect_timeout)
            .read_timeout(options.read_timeout)
            .build()
            .map_err(|e| FetchError::Client(e.to_string()))?;
        Ok(Self {
            client,
            options,
            progress,
        })
    }

    /// Downloads a small document that has no pinned hash (an archive's signed index),
    /// with the same retries as sources. The caller must verify it (e.g. its signature).
    pub async fn get(&self, url: &str) -> Result<Vec<u8>, FetchError> {
        if self.options.offline {
            return Err(FetchError::Failed {
                name: url.to_string(),
                sha256: Sha256Digest::from_bytes([0; 32]),
                failures: vec![UrlFailure {
                    url: url.to_string(),
                    reason: "--offline forbids the network".into(),
                    actual: None,
                }],
            });
        }
        let mut attempt = 0;
        loop {
            let result = self.client.get(url).send().await;
            let reason = match result {
                Ok(r) if r.status().is_success() => match r.bytes().await {
                    Ok(b) => return Ok(b.to_vec()),
                    Err(e) => describe(&e),
                },
                Ok(r)
                    if r.status().is_server_error()
                        || r.status() == reqwest::StatusCode::TOO_MANY_REQUESTS =>
                {
                    format!("HTTP {}", r.status())
                }
                Ok(r) => {
                    return Err(FetchError::Failed {
                        name: url.to_string(),
                        sha256: Sha256Digest::from_bytes([0; 32]),
                        failures: vec![UrlFailure {
                            url: url.to_string(),
                            reason: format!("HTTP {}", r.status()),
                            actual: None,
                        }],
                    });
                }
                Err(e) => describe(&e),
            };
            if attempt >= self.options.retries {
                return Err(FetchError::Failed {
                    name: url.to_string(),
                    sha256: Sha256Digest::from_bytes([0; 32]),
                    failures: vec![UrlFailure {
                        url: url.to_string(),
                        reason: format!("{reason} (gave up after {} attempts)", attempt + 1),
                        actual: None,
                    }],
                });
            }
            let wait = self
                .options
                .backoff
                .saturating_mul(1 << attempt.min(16))
                .min(Duration::from_secs(30));
            attempt += 1;
            tracing::warn!(
                "{url}: {reason}; retry {attempt}/{} in {:.1}s",
                self.options.retries,
                wait.as_secs_f64()
            );
            tokio::time::sleep(wait).await;
        }
    }

    /// Fetches every request (duplicates by sha256 once), `parallel` at a time. Results are
    /// in request order. Offline, every missing source is reported together.
    pub async fn fetch_all(
        &self,
        store: &Arc<Store>,
        requests: &[FetchRequest],
    ) -> Result<Vec<Fetched>, FetchError> {
        let mut unique: Vec<&FetchRequest> = Vec::new();
        for r in requests {
            if !unique.iter().any(|u| u.sha256 == r.sha256) {
                unique.push(r);
            }
        }
        let results: Vec<(Sha256Digest, Result<Fetched, FetchError>)> =
            futures_util::stream::iter(unique)
                .map(|r| async move { (r.sha256, self.fetch(store, r).await) })
                .buffer_unordered(self.options.parallel.max(1))
                .collect()
                .await;
        let mut missing = Vec::new();
        let mut done = std::collections::BTreeMap::new();
        let mut first_error = None;
        for (sha, r) in results {
            match r {
                Ok(f) => {
                    done.insert(sha, f);
                }
                Err(FetchError::Offline { missing: m }) => missing.extend(m),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        if !missing.is_empty() {
            missing.sort_by(|a, b| a.name.cmp(&b.name));
            return Err(FetchError::Offline { missing });
        }
        Ok(requests
            .iter()
            .filter_map(|r| done.get(&r.sha256).cloned())
            .collect())
    }

    /// Fetches one source.
    pub async fn fetch(
        &self,
        store: &Arc<Store>,
        req: &FetchRequest,
    ) -> Result<Fetched, FetchError> {
        if let Some(found) = in_store(store, req) {
            return Ok(found);
        }
        // One process fetches a given blob at a time; the others wait, then find it.
        let lock = {
            let store = store.clone();
            let key = format!("blob-{}", req.sha256);
            let name = req.name.clone();
            tokio::task::spawn_blocking(move || {
                store.lock(&key, &|_| {
                    tracing::info!("waiting for another forge process fetching `{name}`")
                })
            })
            .await
            .map_err(|e| FetchError::Client(e.to_string()))??
        };
        let result = self.fetch_locked(store, req).await;
        drop(lock);
        result
    }

    async fn fetch_locked(
        &self,
        store: &Arc<Store>,
        req: &FetchRequest,
    ) -> Result<Fetched, FetchError> {
        if let Some(found) = in_store(store, req) {
            return Ok(found);
        }
        if let Some(found) = self.find_in_source_dirs(store, req)? {
            return Ok(found);
        }
        let local_urls: Vec<&String> = req
            .urls
            .iter()
            .filter(|u| u.starts_with("file://"))
            .collect();
        if self.options.offline && local_urls.is_empty() {
            return Err(FetchError::Offline {
                missing: vec![Missing {
                    name: req.name.clone(),
                    file_name: req.file_name.clone(),
                    sha256: req.sha256,
                    urls: req.urls.clone(),
                }],
            });
        }
        if req.urls.is_empty() {
            return Err(FetchError::NoUrl {
                name: req.name.clone(),
                sha256: req.sha256,
            });
        }
        let part = store
            .root()
            .join("tmp")
            .join(format!("fetch-{}.part", req.sha256));
        let mut failures = Vec::new();
        for (index, url) in req.urls.iter().enumerate() {
            if self.options.offline && !url.starts_with("file://") {
                continue;
            }
            // Worth a warning only when another mirror is tried next; otherwise the final
            // error says it all.
            let more = index + 1 < req.urls.len();
            match self.fetch_url(req, url, &part).await {
                Ok(actual) if actual == req.sha256 => {
                    let path = commit_part(store, &part, &req.sha256)?;
                    return Ok(Fetched {
                        sha256: req.sha256,
                        path,
                        origin: Origin::Url(url.clone()),
                    });
                }
                Ok(actual) => {
                    let _ = fs::remove_file(&part);
                    if more {
                        tracing::warn!(
                            "source `{}`: {url} served content with sha256 {actual}, expected {}; trying the next URL",
                            req.name,
                            req.sha256
                        );
                    }
                    failures.push(UrlFailure {
                        url: url.clone(),
                        reason: format!("content has sha256 {actual}, expected {}", req.sha256),
                        actual: Some(actual),
                    });
                }
                Err(reason) => {
                    if more {
                        tracing::warn!(
                            "source `{}`: {url} failed: {reason}; trying the next URL",
                            req.name
                        );
                    }
                    failures.push(UrlFailure {
                        url: url.clone(),
                        reason,
                        actual: None,
                    });
                }
            }
        }
        let _ = fs::remove_file(&part);
        // A single mirror that served wrong bytes is the common case: say it plainly.
        if let [
            UrlFailure {
                url,
                actual: Some(actual),
                ..
            },
        ] = failures.as_slice()
        {
            return Err(FetchError::HashMismatch {
                name: req.name.clone(),
                url: url.clone(),
                expected: req.sha256,
                actual: *actual,
            });
        }
        Err(FetchError::Failed {
            name: req.name.clone(),
            sha256: req.sha256,
            failures,
        })
    }

    fn find_in_source_dirs(
        &self,
        store: &Store,
        req: &FetchRequest,
    ) -> Result<Option<Fetched>, FetchError> {
        let hex = req.sha256.to_hex();
        for dir in &self.options.source_dirs {
            for candidate in [
                dir.join(&hex),
                dir.join("sha256").join(&hex),
                dir.join(&req.file_name),
            ] {
                if !candidate.is_file() {
                    continue;
                }
                match store.add_file(&candidate, &req.sha256) {
                    Ok(path) => {
                        tracing::debug!("source `{}` from {}", req.name, candidate.display());
                        return Ok(Some(Fetched {
                            sha256: req.sha256,
                            path,
                            origin: Origin::SourceDir(candidate),
                        }));
                    }
                    Err(forge_store::StoreError::HashMismatch { actual, .. }) => {
                        tracing::warn!(
                            "ignoring {}: its sha256 is {actual}, source `{}` needs {}",
                            candidate.display(),
                            req.name,
                            req.sha256
                        );
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(None)
    }

    /// Downloads one URL into `part` with retries; returns the hash of the complete file.
    async fn fetch_url(
        &self,
        req: &FetchRequest,
        url: &str,
        part: &Path,
    ) -> Result<Sha256Digest, String> {
        if let Some(path) = url.strip_prefix("file://") {
            return copy_local(Path::new(path), part);
        }
        let transfer = self.progress.start(&req.name, None);
        let mut attempt = 0;
        let result = loop {
            match self.attempt(url, part, transfer.as_ref()).await {
                Attempt::Done(d) => break Ok(d),
                Attempt::Permanent(reason) => break Err(reason),
                Attempt::Transient(reason, retry_after) => {
                    if attempt >= self.options.retries {
                        break Err(format!("{reason} (gave up after {} attempts)", attempt + 1));
                    }
                    let backoff = self
                        .options
                        .backoff
                        .saturating_mul(1 << attempt.min(16))
                        .min(Duration::from_secs(30));
                    let wait = retry_after.map_or(backoff, |r| r.min(Duration::from_secs(60)));
                    attempt += 1;
                    tracing::warn!(
                        "source `{}`: {reason}; retry {attempt}/{} in {:.1}s",
                        req.name,
                        self.options.retries,
                        wait.as_secs_f64()
                    );
                    tokio::time::sleep(wait).await;
                }
            }
        };
        transfer.finish();
        result
    }

    /// One HTTP request, resuming from what `part` already holds.
    async fn attempt(&self, url: &str, part: &Path, transfer: &dyn Transfer) -> Attempt {
        let (mut hasher, offset) = match hash_part(part) {
            Ok(v) => v,
            Err(e) => return Attempt::Permanent(format!("cannot read {}: {e}", part.display())),
        };
        let mut request = self.client.get(url);
        if offset > 0 {
            request = request.header(reqwest::header::RANGE, format!("bytes={offset}-"));
        }
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => return Attempt::Transient(describe(&e), None),
        };
        let status = response.status();
        let resumed = status == reqwest::StatusCode::PARTIAL_CONTENT
            && content_range_start(&response) == Some(offset);
        if status == reqwest::StatusCode::RANGE_NOT_SATISFIABLE {
            let _ = fs::remove_file(part);
            return Attempt::Transient(
                "server refused to resume; starting over".into(),
                Some(Duration::ZERO),
            );
        }
        if !status.is_success() {
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let reason = format!("HTTP {status}");
            return if status.is_server_error()
                || status == reqwest::StatusCode::TOO_MANY_REQUESTS
                || status == reqwest::StatusCode::REQUEST_TIMEOUT
            {
                Attempt::Transient(reason, retry_after)
            } else {
                Attempt::Permanent(reason)
            };
        }
        let (mut file, mut pos) = if resumed {
            match OpenOptions::new().append(true).open(part) {
                Ok(f) => (f, offset),
                Err(e) => {
                    return Attempt::Permanent(format!("cannot write {}: {e}", part.display()));
                }
            }
        } else {
            // Full response (also when the server ignored our range): start over.
            hasher = Hasher::new();
            match File::create(part) {
                Ok(f) => (f, 0),
                Err(e) => {
                    return Attempt::Permanent(format!("cannot write {}: {e}", part.display()));
                }
            }
        };
        let total = response.content_length().map(|n| n + pos);
        transfer.set_position(pos, total);
        let mut body = response.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    let _ = file.flush();
                    return Attempt::Transient(
                        format!("connection lost after {pos} bytes: {}", describe(&e)),
                        None,
                    );
                }
            };
            if let Err(e) = file.write_all(&chunk) {
                return Attempt::Permanent(format!("cannot write {}: {e}", part.display()));
            }
            hasher.update(&chunk);
            pos += chunk.len() as u64;
            transfer.advance(chunk.len() as u64);
        }
        if let Some(t) = total
            && pos < t
        {
            return Attempt::Transient(format!("connection closed after {pos} of {t} bytes"), None);
        }
        if let Err(e) = file.sync_all() {
            return Attempt::Permanent(format!("cannot write {}: {e}", part.display()));
        }
        Attempt::Done(hasher.finish())
    }
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

/// The source, if the store has it already.
fn in_store(store: &Store, req: &FetchRequest) -> Option<Fetched> {
    store.has_blob(&req.sha256).then(|| Fetched {
        sha256: req.sha256,
        path: store.blob_path(&req.sha256),
        origin: Origin::Store,
    })
}

/// Hash and length of what a partial download already holds.
fn hash_part(part: &Path) -> io::Result<(Hasher, u64)> {
    let mut hasher = Hasher::new();
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

fn copy_local(src: &Path, part: &Path) -> Result<Sha256Digest, String> {
    let input = File::open(src).map_err(|e| format!("cannot read {}: {e}", src.display()))?;
    let mut out =
        File::create(part).map_err(|e| format!("cannot write {}: {e}", part.display()))?;
    let (d, _) = forge_store::fsutil::copy_hashing(input, &mut out)
        .map_err(|e| format!("cannot copy {}: {e}", src.display()))?;
    out.sync_all().map_err(|e| e.to_string())?;
    Ok(d)
}

/// Moves a verified partial download into the store.
fn commit_part(store: &Store, part: &Path, sha256: &Sha256Digest) -> Result<PathBuf, FetchError> {
    Ok(store.commit_tmp_path(part, sha256)?)
}
