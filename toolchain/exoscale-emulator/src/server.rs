//! The HTTP side: routing by the OpenAPI document, EXO2 signature checks, fault injection,
//! request and response validation, template downloads and state persistence.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, Request, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use rand::RngExt;
use rand::rngs::StdRng;
use serde_json::{Value, json};

use crate::faults::{FaultSpec, roll};
use crate::handlers::{self, ApiError, Ctx, Download, err};
use crate::openapi::spec;
use crate::state::{State, instance_types};

/// How the emulator runs.
#[derive(Debug, Clone)]
pub struct Config {
    pub api_key: String,
    pub api_secret: String,
    /// Saved after every change and loaded at start.
    pub state_file: Option<PathBuf>,
    pub faults: FaultSpec,
    /// How long mutations' operations stay `pending`.
    pub operation_delay: Duration,
    /// The zone of requests to `/v2/...`; `/{zone}/v2/...` addresses any other zone.
    pub default_zone: String,
    /// `Retry-After` seconds sent with injected 429s.
    pub retry_after_secs: u64,
    /// The /24 instances' public addresses come from (its first three octets), instead of
    /// the documentation ranges: `127.0.1` lets a test run real servers at the instances'
    /// addresses on loopback.
    pub instance_network: Option<[u8; 3]>,
}

impl Config {
    pub fn new(api_key: impl Into<String>, api_secret: impl Into<String>) -> Self {
        Self {
            api_key: api_key.into(),
            api_secret: api_secret.into(),
            state_file: None,
            faults: FaultSpec::default(),
            operation_delay: Duration::from_millis(500),
            default_zone: "ch-gva-2".into(),
            retry_after_secs: 1,
            instance_network: None,
        }
    }
}

struct App {
    config: Config,
    state: Mutex<State>,
    rng: Mutex<StdRng>,
    zones: Vec<String>,
    instance_types: Vec<Value>,
    http: reqwest::Client,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn json_response(status: u16, body: &Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn error_response(e: &ApiError) -> Response {
    json_response(e.status, &json!({ "message": e.message }))
}

/// A response whose body breaks off: the client sees a dropped connection.
fn dropped() -> Response {
    let stream = futures_util::stream::once(async {
        Err::<Bytes, std::io::Error>(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "fault: dropped",
        ))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

impl App {
    fn save(&self, state: &State) {
        if let Some(path) = &self.config.state_file
            && let Err(e) = state.save(path)
        {
            tracing::error!("cannot save the state: {e}");
        }
    }

    /// Checks the EXO2-HMAC-SHA256 signature (API-NOTES §2.4).
    fn authenticate(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<(), ApiError> {
        let header = headers
            .get("authorization")
            .and_then(|h| h.to_str().ok())
            .ok_or_else(|| err(403, "missing Authorization header"))?;
        let auth = forge_exoscale::sign::parse_authorization(header).ok_or_else(|| {
            err(
                403,
                "malformed Authorization header: expected EXO2-HMAC-SHA256",
            )
        })?;
        if auth.credential != self.config.api_key {
            return Err(err(403, format!("unknown API key {}", auth.credential)));
        }
        if auth.expires < now_ms() / 1000 {
            return Err(err(403, "request expired"));
        }
        let query: BTreeMap<String, String> = form_urlencoded(uri.query().unwrap_or_default());
        let mut signed = Vec::new();
        for name in &auth.signed_query_args {
            let v = query
                .get(name)
                .ok_or_else(|| err(403, format!("signed query argument {name} is absent")))?;
            signed.push((name.as_str(), v.as_str()));
        }
        let msg =
            forge_exoscale::sign::message(method.as_str(), uri.path(), body, &signed, auth.expires);
        if forge_exoscale::sign::verify(self.config.api_secret.as_bytes(), &msg, &auth.signature) {
            Ok(())
        } else {
            Err(err(403, "invalid request signature"))
        }
    }

    fn new_id(rng: &mut StdRng) -> String {
        let b: [u8; 16] = rng.random();
        let h = hex::encode(b);
        format!(
            "{}-{}-4{}-a{}-{}",
            &h[0..8],
            &h[8..12],
            &h[13..16],
            &h[17..20],
            &h[20..32]
        )
    }

    async fn handle(self: Arc<Self>, req: Request<Body>) -> Response {
        let (parts, body) = req.into_parts();
        let body = match axum::body::to_bytes(body, 1 << 20).await {
            Ok(b) => b,
            Err(_) => return error_response(&err(413, "request body larger than 1 MiB")),
        };
        let path = parts.uri.path().to_string();
        // `/v2/...` is the default zone; `/{zone}/v2/...` any zone of the document.
        let (zone, rest) = match path.strip_prefix("/v2") {
            Some(rest) => (self.config.default_zone.clone(), rest.to_string()),
            None => {
                let mut it = path.trim_start_matches('/').splitn(2, '/');
                let z = it.next().unwrap_or_default().to_string();
                match it.next().and_then(|r| r.strip_prefix("v2")) {
                    Some(rest) if self.zones.contains(&z) => (z, rest.to_string()),
                    _ => return error_response(&err(404, format!("no such path {path}"))),
                }
            }
        };
        let route = match spec().find(parts.method.as_str(), &rest) {
            Ok(m) => m,
            Err(true) => {
                return error_response(&err(
                    405,
                    format!("method {} not allowed on {path}", parts.method),
                ));
            }
            Err(false) => return error_response(&err(404, format!("no such path {path}"))),
        };
        let operation = route.route.operation_id.clone();
        // list-zones is public: the official Python client calls it unsigned.
        if operation != "list-zones"
            && let Err(e) = self.authenticate(&parts.method, &parts.uri, &parts.headers, &body)
        {
            return error_response(&e);
        }
        let faults = &self.config.faults;
        if !faults.latency.is_zero() {
            tokio::time::sleep(faults.latency).await;
        }
        let (rate_limited, server_error, fail_op, drop) = {
            let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
            (
                roll(&mut rng, faults.rate_limit),
                roll(&mut rng, faults.server_error),
                roll(&mut rng, faults.operation_failure),
                roll(&mut rng, faults.drop),
            )
        };
        if rate_limited {
            let mut r = json_response(
                429,
                &json!({ "error": "Too Many Requests", "retry_after": self.config.retry_after_secs }),
            );
            if let Ok(v) = self.config.retry_after_secs.to_string().parse() {
                r.headers_mut().insert("retry-after", v);
            }
            return r;
        }
        if server_error {
            let status = [500u16, 502, 503][(now_ms() % 3) as usize];
            return json_response(
                status,
                &json!({ "message": "injected fault: internal server error" }),
            );
        }

        let query = form_urlencoded(parts.uri.query().unwrap_or_default());
        for (name, value) in &query {
            if let Some(allowed) = spec().query_enum(route.route, name)
                && !allowed.contains(value)
            {
                return error_response(&err(
                    400,
                    format!(
                        "invalid value {value:?} for {name}: expected one of {}",
                        allowed.join(", ")
                    ),
                ));
            }
        }
        let body_json: Value = if body.is_empty() {
            Value::Null
        } else {
            match serde_json::from_slice(&body) {
                Ok(v) => v,
                Err(e) => return error_response(&err(400, format!("invalid JSON body: {e}"))),
            }
        };
        if let Some(schema) = spec().request_schema(route.route) {
            let required = spec()
                .operation(route.route)
                .and_then(|o| o.get("requestBody"))
                .and_then(|b| b.get("required"))
                .and_then(Value::as_bool)
                == Some(true);
            if body_json.is_null() && required {
                return error_response(&err(400, "request body required"));
            }
            if !body_json.is_null() {
                let problems = spec().validate(schema, &body_json, true);
                if !problems.is_empty() {
                    return error_response(&err(
                        400,
                        format!("invalid request: {}", problems.join("; ")),
                    ));
                }
            }
        }

        let mutating = parts.method != Method::GET;
        let now = now_ms();
        let (result, download) = {
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
            let rng = &mut *rng;
            let rng_cell = std::cell::RefCell::new(rng);
            let mut new_id = || App::new_id(&mut rng_cell.borrow_mut());
            let mut letters = |n: usize| -> String {
                let mut r = rng_cell.borrow_mut();
                (0..n)
                    .map(|_| char::from(b'a' + r.random_range(0..26u8)))
                    .collect()
            };
            let mut working = state.clone();
            let mut ctx = Ctx {
                zone: &zone,
                zones: &self.zones,
                instance_types: &self.instance_types,
                params: &route.params,
                query: &query,
                body: &body_json,
                now_ms: now,
                op_delay_ms: self.config.operation_delay.as_millis() as u64,
                new_id: &mut new_id,
                random_letters: &mut letters,
                instance_network: self.config.instance_network,
            };
            match handlers::dispatch(&operation, &mut working, &mut ctx) {
                Ok(mut outcome) if mutating && fail_op => {
                    // The operation fails and changes nothing: keep the old state, record
                    // only the failed operation.
                    let op_id = outcome.body["id"].as_str().unwrap_or_default().to_string();
                    if let Some(mut op) = working.operations.remove(&op_id) {
                        op.failure = Some((
                            "fault".into(),
                            "injected fault: the operation failed".into(),
                        ));
                        op.ready_at_ms = Some(now + ctx.op_delay_ms);
                        outcome.body = handlers::op_json(&op, now);
                        state.operations.insert(op_id, op);
                    }
                    self.save(&state);
                    (Ok(outcome.body), None)
                }
                Ok(outcome) => {
                    *state = working;
                    if mutating {
                        self.save(&state);
                    }
                    (Ok(outcome.body), outcome.download)
                }
                Err(e) => (Err(e), None),
            }
        };
        if let Some(d) = download {
            tokio::spawn(Arc::clone(&self).download(d));
        }
        let response = match result {
            Ok(v) => {
                if let Some(schema) = spec().response_schema(route.route, 200) {
                    let problems = spec().validate(schema, &v, false);
                    if !problems.is_empty() {
                        return error_response(&err(
                            500,
                            format!(
                                "emulator bug: the {operation} answer does not match the OpenAPI schema: {}",
                                problems.join("; ")
                            ),
                        ));
                    }
                }
                json_response(200, &v)
            }
            Err(e) => error_response(&e),
        };
        if drop { dropped() } else { response }
    }

    /// Registers a template as the service does: downloads its URL, checks the MD5
    /// checksum and the QCOW2 format, then ends the operation.
    async fn download(self: Arc<Self>, d: Download) {
        let url = d.template["url"].as_str().unwrap_or_default().to_string();
        let want = d.template["checksum"]
            .as_str()
            .unwrap_or_default()
            .to_ascii_lowercase();
        let (failure, size) = match self.fetch_md5(&url).await {
            Err(e) => (Some(format!("cannot download {url}: {e}")), 0),
            Ok((_, _, magic)) if magic != *b"QFI\xfb" => {
                (Some(format!("{url} is not a QCOW2 image")), 0)
            }
            Ok((md5, _, _)) if md5 != want => (
                Some(format!("checksum mismatch: expected {want}, got {md5}")),
                0,
            ),
            Ok((_, size, _)) => (None, size),
        };
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = now_ms();
        if let Some(op) = state.operations.get_mut(&d.operation) {
            op.ready_at_ms = Some(now + self.config.operation_delay.as_millis() as u64);
            op.failure = failure.clone().map(|m| ("incorrect".to_string(), m));
        }
        if failure.is_none() {
            let mut t = d.template.clone();
            t["size"] = json!(size);
            let id = t["id"].as_str().unwrap_or_default().to_string();
            state.zone(&d.zone).templates.insert(id, t);
        }
        self.save(&state);
    }

    /// Streams `url`, returning its MD5 (hex), length and first four bytes.
    async fn fetch_md5(&self, url: &str) -> Result<(String, u64, [u8; 4]), String> {
        use futures_util::StreamExt as _;
        use md5::Digest as _;
        let resp = self.http.get(url).send().await.map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(format!("HTTP {}", resp.status().as_u16()));
        }
        let mut hasher = md5::Md5::new();
        let mut size = 0u64;
        let mut head = Vec::with_capacity(4);
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| e.to_string())?;
            if head.len() < 4 {
                head.extend(chunk.iter().take(4 - head.len()));
            }
            size += chunk.len() as u64;
            hasher.update(&chunk);
        }
        let mut magic = [0u8; 4];
        magic[..head.len()].copy_from_slice(&head);
        Ok((hex::encode(hasher.finalize()), size, magic))
    }
}

/// Decodes a query string (`a=1&b=x%20y`).
fn form_urlencoded(q: &str) -> BTreeMap<String, String> {
    url::form_urlencoded::parse(q.as_bytes())
        .into_owned()
        .collect()
}

/// A running emulator.
#[derive(Debug)]
pub struct Running {
    pub addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    /// `http://ADDR/v2`, the value for `EXOSCALE_API_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}/v2", self.addr)
    }

    /// Stops the server and waits for it.
    pub fn stop(mut self) {
        self.shutdown_now();
    }

    fn shutdown_now(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown_now();
    }
}

fn build_app(config: Config) -> Result<Arc<App>, String> {
    let state = match &config.state_file {
        Some(p) => State::load(p)?,
        None => State::default(),
    };
    let zones: Vec<String> = spec()
        .component("zone-name")
        .and_then(|z| z.get("enum"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    if !zones.contains(&config.default_zone) {
        return Err(format!(
            "unknown zone {:?}: expected one of {}",
            config.default_zone,
            zones.join(", ")
        ));
    }
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| e.to_string())?;
    Ok(Arc::new(App {
        rng: Mutex::new(config.faults.rng()),
        instance_types: instance_types(&zones),
        zones,
        state: Mutex::new(state),
        config,
        http,
    }))
}

/// Serves on `listener` until `shutdown` resolves.
pub async fn serve(
    config: Config,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let app = build_app(config)?;
    let router = axum::Router::new().fallback(move |req: Request<Body>| {
        let app = Arc::clone(&app);
        async move { app.handle(req).await }
    });
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| e.to_string())
}

/// Starts an emulator on `listen` (port 0 for any) in a thread of its own; it stops when
/// the handle is dropped.
pub fn spawn(config: Config, listen: SocketAddr) -> Result<Running, String> {
    let std_listener = std::net::TcpListener::bind(listen)
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    std_listener
        .set_nonblocking(true)
        .map_err(|e| e.to_string())?;
    let addr = std_listener.local_addr().map_err(|e| e.to_string())?;
    // Fail early on a bad configuration rather than in the thread.
    build_app(config.clone())?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("exoscale-emulator".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!("cannot start the emulator runtime: {e}");
                    return;
                }
            };
            rt.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(std_listener) {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!("cannot listen: {e}");
                        return;
                    }
                };
                if let Err(e) = serve(config, listener, async {
                    let _ = rx.await;
                })
                .await
                {
                    tracing::error!("emulator stopped: {e}");
                }
            });
        })
        .map_err(|e| e.to_string())?;
    Ok(Running {
        addr,
        shutdown: Some(tx),
        thread: Some(thread),
    })
}
