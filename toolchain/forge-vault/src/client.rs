//! A thin typed client for the Vault HTTP API.
//!
//! Why not vaultrs: vaultrs 0.8 covers the KV/PKI/token calls, but not `sys/init`,
//! `sys/unseal`, raft join/configuration or mount tuning with the fields forge compares, and
//! each `VaultClient` builds its own HTTP client from its settings. forge needs one client
//! with one TLS policy (only the platform CA trusted, plain HTTP only on loopback), per-call
//! accounting (the no-change run must only read) and Vault's error bodies in its own errors;
//! the API is plain JSON over HTTP, so a small client on reqwest does all of it.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::Value;

use crate::secrets::Secret;

/// What went wrong talking to Vault.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("cannot reach Vault at {addr}: {detail}")]
    Connect { addr: String, detail: String },
    #[error("{method} {addr}/v1/{path}: HTTP {status}: {message}")]
    Api {
        addr: String,
        method: Method,
        path: String,
        status: u16,
        message: String,
    },
    #[error("Vault at {addr} is sealed; run `forge deploy --stage vault` to unseal it")]
    Sealed { addr: String },
    #[error("{0}")]
    Config(String),
    #[error("{addr}/v1/{path}: unexpected answer: {detail}")]
    Decode {
        addr: String,
        path: String,
        detail: String,
    },
}

impl VaultError {
    /// The HTTP status of an API error.
    pub fn status(&self) -> Option<u16> {
        match self {
            VaultError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// Calls made, by kind (benchmarks and tests check the no-change run only reads).
#[derive(Debug, Default)]
pub struct Calls {
    pub reads: AtomicU64,
    pub writes: AtomicU64,
}

impl Calls {
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }
}

/// Vault's multi-line errors ("1 error occurred:\n\t* permission denied") on one line.
fn one_line(raw: &str) -> String {
    raw.lines()
        .map(str::trim)
        .filter(|l| !(l.is_empty() || (l.ends_with("occurred:") && l.contains(" error"))))
        .map(|l| l.trim_start_matches("* "))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Whether a URL's host is a loopback address (or `localhost`).
pub fn is_loopback(addr: &str) -> bool {
    let Ok(u) = url::Url::parse(addr) else {
        return false;
    };
    match u.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    }
}

/// A Vault client for one address.
#[derive(Clone)]
pub struct VaultClient {
    http: reqwest::Client,
    addr: String,
    token: Option<Secret>,
    calls: Arc<Calls>,
}

impl std::fmt::Debug for VaultClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultClient")
            .field("addr", &self.addr)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<String>,
}

impl VaultClient {
    /// A client for `addr` that trusts only `ca_pem` (when given; otherwise the built-in
    /// roots). Plain `http://` is refused unless the host is a loopback address.
    pub fn new(addr: &str, ca_pem: Option<&str>) -> Result<Self, VaultError> {
        let addr = addr.trim_end_matches('/').to_string();
        let u = url::Url::parse(&addr)
            .map_err(|e| VaultError::Config(format!("VAULT_ADDR `{addr}`: {e}")))?;
        match u.scheme() {
            "https" => {}
            "http" if is_loopback(&addr) => {
                tracing::warn!("{addr}: plain HTTP to a loopback Vault (a dev server?)");
            }
            "http" => {
                return Err(VaultError::Config(format!(
                    "{addr}: refusing plain HTTP to a Vault that is not on this machine; use https:// and VAULT_CACERT"
                )));
            }
            s => {
                return Err(VaultError::Config(format!(
                    "VAULT_ADDR `{addr}`: scheme `{s}` is not http(s)"
                )));
            }
        }
        let mut b = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(120))
            .user_agent(concat!("forge/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
                .map_err(|e| VaultError::Config(format!("CA certificate: {e}")))?;
            if certs.is_empty() {
                return Err(VaultError::Config(
                    "the CA file holds no PEM certificate".into(),
                ));
            }
            b = b.tls_certs_only(certs);
        }
        let http = b
            .build()
            .map_err(|e| VaultError::Config(format!("HTTP client: {e}")))?;
        Ok(Self {
            http,
            addr,
            token: None,
            calls: Arc::new(Calls::default()),
        })
    }

    /// The same client (and counters) for another member's address.
    pub fn at(&self, addr: &str) -> Self {
        Self {
            addr: addr.trim_end_matches('/').to_string(),
            ..self.clone()
        }
    }

    /// This client's address, token and counters with `other`'s HTTP client (its TLS
    /// trust).
    pub fn with_http_of(&self, other: &VaultClient) -> Self {
        Self {
            http: other.http.clone(),
            ..self.clone()
        }
    }

    /// The same client with a token.
    pub fn with_token(&self, token: Secret) -> Self {
        Self {
            token: Some(token),
            ..self.clone()
        }
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    pub fn calls(&self) -> &Calls {
        &self.calls
    }

    pub fn host_ip(&self) -> Option<IpAddr> {
        url::Url::parse(&self.addr)
            .ok()?
            .host_str()?
            .trim_matches(['[', ']'])
            .parse()
            .ok()
    }

    /// One call. `Ok(None)` for 404 on reads and for 204 answers.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Option<Value>, VaultError> {
        let is_read = method == Method::GET || method.as_str() == "LIST";
        if is_read {
            self.calls.reads.fetch_add(1, Ordering::Relaxed);
        } else {
            self.calls.writes.fetch_add(1, Ordering::Relaxed);
        }
        let url = format!("{}/v1/{}", self.addr, path);
        tracing::debug!(%method, path, "vault call");
        let mut req = self.http.request(method.clone(), &url);
        if let Some(t) = &self.token {
            req = req.header("X-Vault-Token", t.expose());
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|e| {
            let mut detail = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                detail = format!("{detail}: {s}");
                src = s.source();
            }
            VaultError::Connect {
                addr: self.addr.clone(),
                detail,
            }
        })?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| VaultError::Connect {
            addr: self.addr.clone(),
            detail: e.to_string(),
        })?;
        if status == StatusCode::NOT_FOUND && is_read {
            return Ok(None);
        }
        if !status.is_success() {
            let raw = serde_json::from_str::<ErrorBody>(&text)
                .ok()
                .filter(|b| !b.errors.is_empty())
                .map_or_else(|| text.trim().to_string(), |b| b.errors.join("\n"));
            let message = one_line(&raw);
            if status == StatusCode::SERVICE_UNAVAILABLE && message.contains("sealed") {
                return Err(VaultError::Sealed {
                    addr: self.addr.clone(),
                });
            }
            return Err(VaultError::Api {
                addr: self.addr.clone(),
                method,
                path: path.to_string(),
                status: status.as_u16(),
                message,
            });
        }
        if text.trim().is_empty() {
            return Ok(None);
        }
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| VaultError::Decode {
                addr: self.addr.clone(),
                path: path.to_string(),
                detail: e.to_string(),
            })
    }

    pub async fn read(&self, path: &str) -> Result<Option<Value>, VaultError> {
        self.call(Method::GET, path, None).await
    }

    /// A read's `data` object.
    pub async fn read_data(&self, path: &str) -> Result<Option<Value>, VaultError> {
        Ok(self
            .read(path)
            .await?
            .and_then(|v| v.get("data").cloned())
            .filter(|d| !d.is_null()))
    }

    /// `LIST path`: the `keys`, empty when nothing is there.
    pub async fn list(&self, path: &str) -> Result<Vec<String>, VaultError> {
        let m = Method::from_bytes(b"LIST").map_err(|e| VaultError::Config(e.to_string()))?;
        let v = self.call(m, path, None).await?;
        Ok(v.and_then(|v| v.pointer("/data/keys").cloned())
            .and_then(|k| serde_json::from_value(k).ok())
            .unwrap_or_default())
    }

    pub async fn write(&self, path: &str, body: &Value) -> Result<Option<Value>, VaultError> {
        self.call(Method::POST, path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: &Value) -> Result<Option<Value>, VaultError> {
        self.call(Method::PUT, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Result<(), VaultError> {
        self.call(Method::DELETE, path, None).await.map(|_| ())
    }

    /// `sys/seal-status` (unauthenticated).
    pub async fn seal_status(&self) -> Result<SealStatus, VaultError> {
        let v = self
            .read("sys/seal-status")
            .await?
            .ok_or_else(|| VaultError::Decode {
                addr: self.addr.clone(),
                path: "sys/seal-status".into(),
                detail: "404".into(),
            })?;
        serde_json::from_value(v).map_err(|e| VaultError::Decode {
            addr: self.addr.clone(),
            path: "sys/seal-status".into(),
            detail: e.to_string(),
        })
    }
}

/// `GET sys/seal-status`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct SealStatus {
    pub initialized: bool,
    pub sealed: bool,
    #[serde(default)]
    pub t: u32,
    #[serde(default)]
    pub n: u32,
    #[serde(default)]
    pub progress: u32,
    #[serde(default)]
    pub cluster_name: Option<String>,
    #[serde(default)]
    pub version: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_on_loopback() {
        assert!(VaultClient::new("http://127.0.0.1:8200", None).is_ok());
        assert!(VaultClient::new("http://localhost:8200", None).is_ok());
        let e = VaultClient::new("http://10.0.0.5:8200", None).unwrap_err();
        assert!(e.to_string().contains("refusing plain HTTP"), "{e}");
        assert!(VaultClient::new("ftp://x", None).is_err());
        assert!(VaultClient::new("https://vault.example:8200", None).is_ok());
    }

    #[test]
    fn multi_line_errors_become_one_line() {
        assert_eq!(
            one_line("1 error occurred:\n\t* permission denied\n\n"),
            "permission denied"
        );
        assert_eq!(one_line("2 errors occurred:\n\t* a\n\t* b\n"), "a; b");
        assert_eq!(one_line("plain"), "plain");
    }

    #[test]
    fn debug_hides_the_token() {
        let c = VaultClient::new("https://v:8200", None)
            .map(|c| c.with_token(Secret::new("hvs.SECRET")));
        let s = format!("{c:?}");
        assert!(!s.contains("hvs.SECRET"), "{s}");
    }
}
