//! The HTTP client: signing each attempt, retries with jittered exponential backoff,
//! typed errors, and waiting for asynchronous operations.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::config::{Config, Credentials};
use crate::error::Error;
use crate::sign;
use crate::types::{Operation, OperationState, Reference};

/// How a call may be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Reads, updates, deletes and waits: retried on 429, 5xx (except 501) and transport
    /// errors.
    Idempotent,
    /// Creates: retried only when the server certainly did nothing (429, or a connection
    /// that was never established). Any other failure is [`Error::Ambiguous`]: the caller
    /// must look the resource up (by name or labels) before trying again.
    Create,
}

/// Retry schedule for transient failures.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    pub min_wait: Duration,
    pub max_wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        // go-retryablehttp (used by egoscale) waits 1 s doubling to 30 s; forge allows six
        // retries instead of four because a deploy makes hundreds of calls.
        Self {
            max_retries: 6,
            min_wait: Duration::from_secs(1),
            max_wait: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// Wait before retry `attempt` (0-based): `min * 2^attempt` capped at `max`, with full
    /// jitter in its upper half so that parallel callers spread out.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let base = self
            .min_wait
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.max_wait);
        let jitter: f64 = rand::random_range(0.5..=1.0);
        base.mul_f64(jitter)
    }
}

/// How operations are polled: the official clients' schedule (3 s for the first 30 s,
/// then rising linearly to 60 s at 15 min), optionally compressed in time for emulators.
#[derive(Debug, Clone)]
pub struct PollPolicy {
    /// The first interval; 3 s in the official clients. The whole schedule scales with it.
    pub min_interval: Duration,
    /// Give up waiting after this long (template registration can take tens of minutes).
    pub timeout: Duration,
}

impl Default for PollPolicy {
    fn default() -> Self {
        Self {
            min_interval: Duration::from_secs(3),
            timeout: Duration::from_secs(3600),
        }
    }
}

impl PollPolicy {
    /// The interval after `elapsed`: egoscale's `clamp(3, 60, a*t + b)` with `a = 57/870`,
    /// `b = 3 - 30a`, in a time unit scaled so that the first interval is `min_interval`.
    pub fn interval(&self, elapsed: Duration) -> Duration {
        let scale = self.min_interval.as_secs_f64() / 3.0;
        if scale <= 0.0 {
            return Duration::ZERO;
        }
        let t = elapsed.as_secs_f64() / scale;
        let a = 57.0 / 870.0;
        let b = 3.0 - 30.0 * a;
        let official = (a * t + b).clamp(3.0, 60.0).floor();
        Duration::from_secs_f64(official * scale)
    }
}

/// Options that tune the client; `from_lookup` reads the test knobs
/// `FORGE_EXOSCALE_RETRY_MIN_MS` and `FORGE_EXOSCALE_POLL_MIN_MS` (for emulators, whose
/// operations finish in milliseconds).
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    pub retry: RetryPolicy,
    pub poll: PollPolicy,
}

impl ClientOptions {
    pub fn from_lookup(get: &dyn Fn(&str) -> Option<String>) -> Self {
        let mut o = Self::default();
        let ms = |n: &str| {
            get(n)
                .and_then(|v| v.parse::<u64>().ok())
                .map(Duration::from_millis)
        };
        if let Some(d) = ms("FORGE_EXOSCALE_RETRY_MIN_MS") {
            o.retry.min_wait = d;
            o.retry.max_wait = o.retry.max_wait.min(d.saturating_mul(30));
        }
        if let Some(d) = ms("FORGE_EXOSCALE_POLL_MIN_MS") {
            o.poll.min_interval = d;
        }
        o
    }
}

/// Counts of HTTP requests by `METHOD /v2/kind[/…]` (ids collapsed), for `--json` reports
/// and benchmarks.
#[derive(Debug, Default)]
pub struct CallStats {
    counts: Mutex<BTreeMap<String, u64>>,
}

impl CallStats {
    fn record(&self, method: &Method, path: &str) {
        let key = format!("{method} {}", collapse_ids(path));
        if let Ok(mut c) = self.counts.lock() {
            *c.entry(key).or_default() += 1;
        }
    }

    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.counts.lock().map(|c| c.clone()).unwrap_or_default()
    }

    pub fn total(&self) -> u64 {
        self.snapshot().values().sum()
    }
}

fn collapse_ids(path: &str) -> String {
    path.split('/')
        .map(|seg| {
            let (head, action) = match seg.split_once(':') {
                Some((h, a)) => (h, Some(a)),
                None => (seg, None),
            };
            let is_id = head.len() == 36 && head.chars().filter(|c| *c == '-').count() == 4;
            let head = if is_id { "{id}" } else { head };
            match action {
                Some(a) => format!("{head}:{a}"),
                None => head.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// A client for one zone's API endpoint.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: url::Url,
    credentials: Credentials,
    zone: String,
    options: ClientOptions,
    stats: Arc<CallStats>,
}

impl Client {
    /// A client for `config.zone`.
    pub fn new(config: &Config, options: ClientOptions) -> Result<Self, Error> {
        Self::for_zone(config, &config.zone, options)
    }

    pub fn for_zone(config: &Config, zone: &str, options: ClientOptions) -> Result<Self, Error> {
        let raw = config.api_url(zone);
        let base = url::Url::parse(&format!("{raw}/"))
            .map_err(|e| Error::Config(format!("API endpoint {raw:?} is not a URL: {e}")))?;
        let http = reqwest::Client::builder()
            .user_agent(concat!("forge/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(120))
            .build()
            .map_err(|e| Error::Config(format!("cannot set up the HTTP client: {e}")))?;
        Ok(Self {
            http,
            base,
            credentials: config.credentials.clone(),
            zone: zone.to_string(),
            options,
            stats: Arc::new(CallStats::default()),
        })
    }

    pub fn zone(&self) -> &str {
        &self.zone
    }

    pub fn stats(&self) -> &Arc<CallStats> {
        &self.stats
    }

    /// Shares the call counters of `other` (clients for several zones, one report).
    pub fn with_stats(mut self, stats: Arc<CallStats>) -> Self {
        self.stats = stats;
        self
    }

    fn url(&self, path: &str, query: &[(&str, &str)]) -> Result<url::Url, Error> {
        let mut url = self
            .base
            .join(path.trim_start_matches('/'))
            .map_err(|e| Error::Config(format!("bad API path {path:?}: {e}")))?;
        if !query.is_empty() {
            let mut q = url.query_pairs_mut();
            for (k, v) in query {
                q.append_pair(k, v);
            }
        }
        Ok(url)
    }

    /// Sends one call (with retries as `retry` allows) and returns the body of a 2xx answer.
    pub async fn call_raw(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<Vec<u8>>,
        retry: Retry,
    ) -> Result<Vec<u8>, Error> {
        let url = self.url(path, query)?;
        let what = format!("{method} {}", url.path());
        let mut attempt = 0u32;
        loop {
            let expires = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
                + sign::DEFAULT_VALIDITY_SECS;
            let body_bytes = body.as_deref().unwrap_or_default();
            let auth = sign::authorization(
                &self.credentials.key,
                self.credentials.secret().as_bytes(),
                method.as_str(),
                url.path(),
                body_bytes,
                query,
                expires,
            );
            let mut req = self
                .http
                .request(method.clone(), url.clone())
                .header("authorization", auth);
            if let Some(b) = &body {
                req = req
                    .header("content-type", "application/json")
                    .body(b.clone());
            }
            self.stats.record(&method, url.path());
            let outcome = req.send().await;
            let can_retry = attempt < self.options.retry.max_retries;
            match outcome {
                Ok(resp) => {
                    let status = resp.status();
                    tracing::debug!("{what} -> {}", status.as_u16());
                    let retry_after = retry_after(&resp);
                    match resp.bytes().await {
                        Ok(bytes) if status.is_success() => return Ok(bytes.to_vec()),
                        Ok(bytes) => {
                            let transient = status == StatusCode::TOO_MANY_REQUESTS
                                || (status.is_server_error()
                                    && status != StatusCode::NOT_IMPLEMENTED);
                            let allowed = status == StatusCode::TOO_MANY_REQUESTS
                                || retry == Retry::Idempotent;
                            if transient && allowed && can_retry {
                                let wait = retry_after
                                    .filter(|_| {
                                        status == StatusCode::TOO_MANY_REQUESTS
                                            || status.as_u16() == 503
                                    })
                                    .map(|d| d.min(self.options.retry.max_wait))
                                    .unwrap_or_else(|| self.options.retry.backoff(attempt));
                                tracing::debug!(%what, status = status.as_u16(), ?wait, "retrying");
                                tokio::time::sleep(wait).await;
                                attempt += 1;
                                continue;
                            }
                            if transient
                                && retry == Retry::Create
                                && status != StatusCode::TOO_MANY_REQUESTS
                            {
                                return Err(Error::Ambiguous {
                                    what,
                                    detail: format!(
                                        "HTTP {}: {}",
                                        status.as_u16(),
                                        error_message(&bytes)
                                    ),
                                });
                            }
                            return Err(Error::Api {
                                what,
                                status: status.as_u16(),
                                message: error_message(&bytes),
                            });
                        }
                        Err(e) => {
                            // The answer was cut off: the server may have acted.
                            if retry == Retry::Idempotent && can_retry {
                                tokio::time::sleep(self.options.retry.backoff(attempt)).await;
                                attempt += 1;
                                continue;
                            }
                            return Err(transport_or_ambiguous(what, e, retry));
                        }
                    }
                }
                Err(e) => {
                    // A connection that was never made cannot have created anything.
                    let safe = retry == Retry::Idempotent || e.is_connect();
                    if safe && can_retry {
                        tracing::debug!(%what, error = %e, "retrying after a transport error");
                        tokio::time::sleep(self.options.retry.backoff(attempt)).await;
                        attempt += 1;
                        continue;
                    }
                    return Err(transport_or_ambiguous(what, e, retry));
                }
            }
        }
    }

    /// A call with a JSON body (or none) and a JSON answer.
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&(impl Serialize + ?Sized)>,
        retry: Retry,
    ) -> Result<T, Error> {
        let body = match body {
            Some(b) => Some(
                serde_json::to_vec(b)
                    .map_err(|e| Error::Config(format!("cannot encode request: {e}")))?,
            ),
            None => None,
        };
        let what = format!("{method} {path}");
        let bytes = self.call_raw(method, path, query, body, retry).await?;
        serde_json::from_slice(&bytes).map_err(|e| Error::Decode {
            what,
            message: e.to_string(),
        })
    }

    pub async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<T, Error> {
        self.call(Method::GET, path, query, None::<&()>, Retry::Idempotent)
            .await
    }

    /// A mutating call that answers with an operation, waited for until it succeeds.
    pub async fn mutate(
        &self,
        method: Method,
        path: &str,
        body: Option<&(impl Serialize + ?Sized)>,
        retry: Retry,
    ) -> Result<Reference, Error> {
        let op: Operation = self.call(method, path, &[], body, retry).await?;
        self.wait(op).await
    }

    /// Polls an operation until it leaves `pending`; its reference on success.
    pub async fn wait(&self, mut op: Operation) -> Result<Reference, Error> {
        let start = Instant::now();
        let mut errors = 0u32;
        loop {
            match op.state {
                OperationState::Success => {
                    return op.reference.ok_or_else(|| Error::Decode {
                        what: format!("operation {}", op.id),
                        message: "a successful operation without a reference".into(),
                    });
                }
                OperationState::Failure | OperationState::Timeout => {
                    return Err(Error::Operation {
                        id: op.id,
                        state: format!("{:?}", op.state).to_lowercase(),
                        reason: op.reason.unwrap_or_default(),
                        message: op.message.unwrap_or_default(),
                    });
                }
                OperationState::Pending => {}
            }
            let elapsed = start.elapsed();
            if elapsed > self.options.poll.timeout {
                return Err(Error::WaitTimeout {
                    id: op.id,
                    secs: elapsed.as_secs(),
                });
            }
            tokio::time::sleep(self.options.poll.interval(elapsed)).await;
            match self
                .get::<Operation>(&format!("operation/{}", op.id), &[])
                .await
            {
                Ok(next) => {
                    errors = 0;
                    op = next;
                }
                // Like the official clients: give up after five failed polls in a row.
                Err(e) if errors >= 4 => return Err(e),
                Err(e) => {
                    errors += 1;
                    tracing::debug!(operation = %op.id, error = %e, "polling failed");
                }
            }
        }
    }
}

fn transport_or_ambiguous(what: String, e: reqwest::Error, retry: Retry) -> Error {
    if retry == Retry::Create && !e.is_connect() {
        Error::Ambiguous {
            what,
            detail: e.to_string(),
        }
    } else {
        Error::Transport {
            what,
            message: error_chain(&e),
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

fn retry_after(resp: &reqwest::Response) -> Option<Duration> {
    let v = resp.headers().get("retry-after")?.to_str().ok()?;
    v.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// The message of an error body in any of the API's shapes (API-NOTES §4).
pub fn error_message(body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
        for key in ["message", "error", "detail", "title"] {
            if let Some(s) = v
                .get(key)
                .and_then(|m| m.as_str())
                .filter(|s| !s.is_empty())
            {
                return s.to_string();
            }
        }
    }
    let text = String::from_utf8_lossy(body).trim().to_string();
    if text.is_empty() {
        "(empty answer)".to_string()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poll_schedule_matches_the_official_clients() {
        let p = PollPolicy::default();
        assert_eq!(p.interval(Duration::ZERO), Duration::from_secs(3));
        assert_eq!(p.interval(Duration::from_secs(30)), Duration::from_secs(3));
        assert_eq!(
            p.interval(Duration::from_secs(465)),
            Duration::from_secs(31)
        );
        assert_eq!(
            p.interval(Duration::from_secs(900)),
            Duration::from_secs(60)
        );
        assert_eq!(
            p.interval(Duration::from_secs(5000)),
            Duration::from_secs(60)
        );
        let fast = PollPolicy {
            min_interval: Duration::from_millis(30),
            ..PollPolicy::default()
        };
        assert_eq!(fast.interval(Duration::ZERO), Duration::from_millis(30));
        assert_eq!(
            fast.interval(Duration::from_secs(9)),
            Duration::from_millis(600)
        );
    }

    #[test]
    fn backoff_doubles_with_jitter_and_a_cap() {
        let r = RetryPolicy::default();
        for attempt in 0..10 {
            let base = Duration::from_secs(1u64 << attempt).min(Duration::from_secs(30));
            let w = r.backoff(attempt);
            assert!(w <= base && w >= base / 2, "attempt {attempt}: {w:?}");
        }
    }

    #[test]
    fn error_bodies_in_every_shape() {
        assert_eq!(
            error_message(br#"{"message":"no such template"}"#),
            "no such template"
        );
        assert_eq!(
            error_message(br#"{"error":"slow down","retry_after":2}"#),
            "slow down"
        );
        assert_eq!(
            error_message(br#"{"type":"x","title":"Not Found","status":404,"detail":"gone"}"#),
            "gone"
        );
        assert_eq!(error_message(b"Bad Gateway"), "Bad Gateway");
    }

    #[test]
    fn ids_are_collapsed_in_call_counts() {
        assert_eq!(
            collapse_ids("/v2/instance-pool/8b9d4f1c-1111-4222-8333-444455556666:scale"),
            "/v2/instance-pool/{id}:scale"
        );
    }
}
