//! A static HTTP file server on 127.0.0.1 with range requests and scripted faults, for
//! testing downloads against a real socket: retries, resume and mirror fallback.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// A scripted misbehaviour for the next request of a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this status and no body.
    Status(u16),
    /// Answer 429 or 503 with a `Retry-After` of this many seconds.
    RetryAfter(u16, u64),
    /// Send the headers for the whole response, then this many body bytes, then drop the
    /// connection.
    CutAfter(usize),
    /// Answer 200 with the whole file even if a range was asked for.
    IgnoreRange,
}

/// One request the server saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub path: String,
    pub range: Option<String>,
    pub accept: Option<String>,
    pub status: u16,
}

#[derive(Default)]
struct Inner {
    files: BTreeMap<String, Bytes>,
    faults: BTreeMap<String, VecDeque<Fault>>,
    seen: Vec<Seen>,
    /// Paths under this prefix need `Authorization: Bearer <token>`.
    auth: Option<(String, String)>,
}

type Shared = Arc<Mutex<Inner>>;

/// A running file server; stops when dropped.
pub struct FileServer {
    addr: SocketAddr,
    inner: Shared,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn lock(inner: &Shared) -> MutexGuard<'_, Inner> {
    match inner.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

impl FileServer {
    /// Starts a server on an ephemeral port of 127.0.0.1, in its own thread and runtime.
    pub fn start() -> std::io::Result<Self> {
        let inner: Shared = Arc::default();
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let state = inner.clone();
        let thread = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                    return;
                };
                let app = axum::Router::new()
                    .route("/{*path}", axum::routing::get(serve))
                    .with_state(state);
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = rx.await;
                    })
                    .await;
            });
        });
        Ok(Self {
            addr,
            inner,
            shutdown: Some(tx),
            thread: Some(thread),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT/path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}/{}", self.addr, path.trim_start_matches('/'))
    }

    /// Serves `bytes` at `path`.
    pub fn put(&self, path: &str, bytes: impl Into<Bytes>) {
        lock(&self.inner)
            .files
            .insert(path.trim_start_matches('/').to_string(), bytes.into());
    }

    /// Queues a fault for the next request of `path`.
    pub fn fault(&self, path: &str, fault: Fault) {
        lock(&self.inner)
            .faults
            .entry(path.trim_start_matches('/').to_string())
            .or_default()
            .push_back(fault);
    }

    /// Makes paths under `prefix` answer 401 with a registry-style `Bearer` challenge
    /// unless the request carries `token`, which the server hands out at `/token`.
    pub fn require_token(&self, prefix: &str, token: &str) {
        let mut g = lock(&self.inner);
        g.auth = Some((
            prefix.trim_start_matches('/').to_string(),
            token.to_string(),
        ));
        g.files.insert(
            "token".into(),
            Bytes::from(format!("{{\"token\":\"{token}\"}}")),
        );
    }

    /// Every request seen so far.
    pub fn seen(&self) -> Vec<Seen> {
        lock(&self.inner).seen.clone()
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn parse_range(headers: &HeaderMap, len: usize) -> Option<(usize, usize)> {
    let v = headers.get(header::RANGE)?.to_str().ok()?;
    let spec = v.strip_prefix("bytes=")?;
    let (start, end) = spec.split_once('-')?;
    let start: usize = start.parse().ok()?;
    let end: usize = if end.is_empty() {
        len.checked_sub(1)?
    } else {
        end.parse().ok()?
    };
    Some((start, end))
}

async fn serve(
    State(inner): State<Shared>,
    Path(path): Path<String>,
    headers: HeaderMap,
) -> Response {
    let range_header = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let (file, fault, auth) = {
        let mut g = lock(&inner);
        let fault = g.faults.get_mut(&path).and_then(VecDeque::pop_front);
        (g.files.get(&path).cloned(), fault, g.auth.clone())
    };
    let record = |status: u16| {
        lock(&inner).seen.push(Seen {
            path: path.clone(),
            range: range_header.clone(),
            accept: accept.clone(),
            status,
        });
    };
    if let Some((prefix, token)) = auth
        && path.starts_with(&prefix)
    {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if given != Some(format!("Bearer {token}").as_str()) {
            record(401);
            let host = headers
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("127.0.0.1");
            let challenge = format!(
                "Bearer realm=\"http://{host}/token\",service=\"test-registry\",scope=\"repository:test:pull\""
            );
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, challenge)],
            )
                .into_response();
        }
    }
    match fault {
        Some(Fault::Status(code)) => {
            record(code);
            return StatusCode::from_u16(code)
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
                .into_response();
        }
        Some(Fault::RetryAfter(code, secs)) => {
            record(code);
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            return (status, [(header::RETRY_AFTER, secs.to_string())]).into_response();
        }
        _ => {}
    }
    let Some(file) = file else {
        record(404);
        return StatusCode::NOT_FOUND.into_response();
    };
    let range = if fault == Some(Fault::IgnoreRange) {
        None
    } else {
        parse_range(&headers, file.len())
    };
    let (status, body, content_range) = match range {
        Some((start, end)) if start < file.len() && end < file.len() && start <= end => (
            StatusCode::PARTIAL_CONTENT,
            file.slice(start..=end),
            Some(format!("bytes {start}-{end}/{}", file.len())),
        ),
        Some(_) => {
            record(416);
            return StatusCode::RANGE_NOT_SATISFIABLE.into_response();
        }
        None => (StatusCode::OK, file.clone(), None),
    };
    record(status.as_u16());
    let len = body.len();
    let body = match fault {
        Some(Fault::CutAfter(n)) => {
            // Yield the first bytes, give the server time to flush them, then fail the
            // body so the connection is dropped mid-response.
            let first = body.slice(..n.min(len));
            let stream = futures_util::stream::unfold(0u8, move |step| {
                let first = first.clone();
                async move {
                    match step {
                        0 => Some((Ok::<Bytes, std::io::Error>(first), 1)),
                        1 => {
                            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                            Some((
                                Err(std::io::Error::other("connection cut by test fault")),
                                2,
                            ))
                        }
                        _ => None,
                    }
                }
            });
            Body::from_stream(stream)
        }
        _ => Body::from(body),
    };
    let mut resp = Response::builder()
        .status(status)
        .header(header::CONTENT_LENGTH, len.to_string())
        .header(header::ACCEPT_RANGES, "bytes");
    if let Some(cr) = content_range {
        resp = resp.header(header::CONTENT_RANGE, cr);
    }
    resp.body(body)
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}
