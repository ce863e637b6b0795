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

use forge_schema::lockfile::{sha512_pin, source_record_key};
use forge_schema::{Integrity, IntegrityHasher, Sha256Digest};
use forge_store::{SourceRecord, Store};
use futures_util::StreamExt;

pub mod oci;

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
    pub integrity: Integrity,
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
            m.integrity,
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

/// What one attempt at one URL ended with.
enum Attempt {
    /// The SHA-256 and the digest in the pin's algorithm.
    Done(Sha256Digest, Integrity),
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
            tokens: Default::default(),
        })
    }

    /// Downloads a small document that has no pinned hash (an archive's signed index),
    /// with the same retries as sources. The caller must verify it (e.g. its signature).
    pub async fn get(&self, url: &str) -> Result<Vec<u8>, FetchError> {
        if self.options.offline {
            return Err(FetchError::Failed {
                name: url.to_string(),
                integrity: Integrity::Sha256(Sha256Digest::from_bytes([0; 32])),
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
                        integrity: Integrity::Sha256(Sha256Digest::from_bytes([0; 32])),
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
                    integrity: Integrity::Sha256(Sha256Digest::from_bytes([0; 32])),
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
            if !unique.iter().any(|u| u.integrity == r.integrity) {
                unique.push(r);
            }
        }
        let results: Vec<(Integrity, Result<Fetched, FetchError>)> =
            futures_util::stream::iter(unique)
                .map(|r| async move { (r.integrity, self.fetch(store, r).await) })
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
            .filter_map(|r| done.get(&r.integrity).cloned())
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
            let key = match &req.integrity {
                Integrity::Sha256(d) => format!("blob-{d}"),
                other => format!("blob-{}-{}", other.algorithm(), other.to_hex()),
            };
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
        if let Some(up) = &self.options.upstream
            && let Some(sha256) = stored_blob(up, &req.integrity)
        {
            let path = store.add_file(&up.blob_path(&sha256), &sha256)?;
            record_alias(store, req, &sha256)?;
            return Ok(Fetched {
                sha256,
                path,
                origin: Origin::Store,
            });
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
                    integrity: req.integrity,
                    urls: req.urls.clone(),
                }],
            });
        }
        if req.urls.is_empty() {
            return Err(FetchError::NoUrl {
                name: req.name.clone(),
                integrity: req.integrity,
            });
        }
        let part = store
            .root()
            .join("tmp")
            .join(format!("fetch-{}.part", req.integrity.to_hex()));
        let mut failures = Vec::new();
        for (index, url) in req.urls.iter().enumerate() {
            if self.options.offline && !url.starts_with("file://") {
                continue;
            }
            // Worth a warning only when another mirror is tried next; otherwise the final
            // error says it all.
            let more = index + 1 < req.urls.len();
            match self.fetch_url(req, url, &part).await {
                Ok((sha256, actual)) if actual == req.integrity => {
                    let path = commit_part(store, &part, &sha256)?;
                    record_alias(store, req, &sha256)?;
                    return Ok(Fetched {
                        sha256,
                        path,
                        origin: Origin::Url(url.clone()),
                    });
                }
                Ok((_, actual)) => {
                    let _ = fs::remove_file(&part);
                    if more {
                        tracing::warn!(
                            "source `{}`: {url} served content with {actual}, expected {}; trying the next URL",
                            req.name,
                            req.integrity
                        );
                    }
                    failures.push(UrlFailure {
                        url: url.clone(),
                        reason: format!("content has {actual}, expected {}", req.integrity),
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
                expected: Box::new(req.integrity),
                actual: Box::new(*actual),
            });
        }
        Err(FetchError::Failed {
            name: req.name.clone(),
            integrity: req.integrity,
            failures,
        })
    }

    fn find_in_source_dirs(
        &self,
        store: &Store,
        req: &FetchRequest,
    ) -> Result<Option<Fetched>, FetchError> {
        let hex = req.integrity.to_hex();
        let algo = req.integrity.algorithm();
        for dir in &self.options.source_dirs {
            for candidate in [
                dir.join(&hex),
                dir.join(algo).join(&hex),
                // An OCI image layout (`blobs/sha256/<hex>`).
                dir.join("blobs").join(algo).join(&hex),
                dir.join(&req.file_name),
            ] {
                if !candidate.is_file() {
                    continue;
                }
                let mut tmp = store.temp_file()?;
                let copied = File::open(&candidate).and_then(|input| {
                    copy_with(
                        input,
                        tmp.as_file_mut(),
                        IntegrityHasher::for_pin(&req.integrity),
                    )
                });
                let (sha256, actual) = match copied {
                    Ok(v) => v,
                    Err(e) => {
                        tracing::warn!("ignoring {}: {e}", candidate.display());
                        continue;
                    }
                };
                if actual != req.integrity {
                    tracing::warn!(
                        "ignoring {}: it has {actual}, source `{}` needs {}",
                        candidate.display(),
                        req.name,
                        req.integrity
                    );
                    continue;
                }
                let path = store.commit_blob_unchecked(tmp, &sha256)?;
                record_alias(store, req, &sha256)?;
                tracing::debug!("source `{}` from {}", req.name, candidate.display());
                return Ok(Some(Fetched {
                    sha256,
                    path,
                    origin: Origin::SourceDir(candidate),
                }));
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
    ) -> Result<(Sha256Digest, Integrity), String> {
        if let Some(path) = url.strip_prefix("file://") {
            return copy_local(Path::new(path), part, &req.integrity);
        }
        let resolved;
        let url = match url.strip_prefix(DEBIAN_SCHEME) {
            Some(path) => {
                let Some(mirror) = &self.options.debian_mirror else {
                    return Err(
                        "no Debian mirror is configured: pass --debian-mirror URL, set FORGE_DEBIAN_MIRROR, or configure apt's sources on this host".into(),
                    );
                };
                resolved = format!(
                    "{}/{}",
                    mirror.trim_end_matches('/'),
                    path.trim_start_matches('/')
                );
                resolved.as_str()
            }
            None => url,
        };
        let transfer = self.progress.start(&req.name, None);
        let mut attempt = 0;
        let result = loop {
            match self.attempt(req, url, part, transfer.as_ref()).await {
                Attempt::Done(d, i) => break Ok((d, i)),
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
    async fn attempt(
        &self,
        req: &FetchRequest,
        url: &str,
        part: &Path,
        transfer: &dyn Transfer,
    ) -> Attempt {
        let (mut hasher, offset) = match hash_part(part, &req.integrity) {
            Ok(v) => v,
            Err(e) => return Attempt::Permanent(format!("cannot read {}: {e}", part.display())),
        };
        let response = match self.send(url, offset, req.accept.as_deref()).await {
            Ok(r) => r,
            Err(reason) => return Attempt::Transient(reason, None),
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
            hasher = IntegrityHasher::for_pin(&req.integrity);
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
        let (sha256, integrity) = hasher.finish();
        Attempt::Done(sha256, integrity)
    }

    /// Sends a GET (from `offset` when resuming). A registry that answers 401 with a
    /// `Bearer` challenge gets an anonymous token from its realm, and the request is sent
    /// again with it (the token is cached for later requests of the same scope).
    async fn send(
        &self,
        url: &str,
        offset: u64,
        accept: Option<&str>,
    ) -> Result<reqwest::Response, String> {
        let build = |token: Option<&str>| {
            let mut request = self.client.get(url);
            if offset > 0 {
                request = request.header(reqwest::header::RANGE, format!("bytes={offset}-"));
            }
            if let Some(a) = accept {
                request = request.header(reqwest::header::ACCEPT, a);
            }
            if let Some(t) = token {
                request = request.bearer_auth(t);
            }
            request
        };
        let cached = self.cached_token(url).await;
        let response = build(cached.as_deref())
            .send()
            .await
            .map_err(|e| describe(&e))?;
        if response.status() != reqwest::StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        let Some(challenge) = response
            .headers()
            .get(reqwest::header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .and_then(oci::BearerChallenge::parse)
        else {
            return Ok(response);
        };
        let token = self.token(&challenge).await?;
        self.tokens
            .lock()
            .await
            .insert(token_scope_key(url), token.clone());
        build(Some(&token)).send().await.map_err(|e| describe(&e))
    }

    async fn cached_token(&self, url: &str) -> Option<String> {
        self.tokens.lock().await.get(&token_scope_key(url)).cloned()
    }

    /// An anonymous token from a registry's token service.
    async fn token(&self, challenge: &oci::BearerChallenge) -> Result<String, String> {
        let mut url = reqwest::Url::parse(&challenge.realm)
            .map_err(|e| format!("token service `{}`: {e}", challenge.realm))?;
        for (k, v) in challenge.query() {
            url.query_pairs_mut().append_pair(k, &v);
        }
        let response = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| format!("token service {}: {}", challenge.realm, describe(&e)))?;
        if !response.status().is_success() {
            return Err(format!(
                "token service {} answered HTTP {}",
                challenge.realm,
                response.status()
            ));
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| format!("token service {}: {}", challenge.realm, describe(&e)))?;
        oci::token_from_response(&body)
            .ok_or_else(|| format!("token service {} sent no token", challenge.realm))
    }
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
