//! The Fetcher: a source looked for in the store, then local directories, then at each URL
//! with resume and retries; parallel batches; what was fetched recorded in the store.

use super::*;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use forge_schema::{Integrity, IntegrityHasher, Sha256Digest};
use forge_store::Store;
use futures_util::StreamExt;

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
                    pin: req.integrity.to_string(),
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
