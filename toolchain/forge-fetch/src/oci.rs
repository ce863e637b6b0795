//! Image sources: a container image's layers, pinned by its manifest digest.
//!
//! The Distribution API (`/v2/<repository>/manifests/<digest>`, `/blobs/<digest>`) is a
//! handful of GETs, so this speaks it through the fetcher rather than pulling in a registry
//! client: every manifest and blob is then a fixed-output fetch like any other source
//! (store first, then source directories — an OCI image layout's `blobs/sha256/<hex>`
//! works as one — then the registry and its mirrors; retries, resume, verification).
//! The pinned digest fixes the index or manifest; the manifest fixes every layer's digest,
//! so nothing unverified is ever used.

use std::sync::Arc;

use forge_schema::lockfile::{image_pin, source_record_key};
use forge_schema::oci::{ImageRef, Platform};
use forge_schema::{Integrity, Sha256Digest};
use forge_store::{LayerBlob, SourceRecord, Store};
use serde::Deserialize;

use crate::{FetchError, FetchRequest, Fetcher};

/// Manifest media types forge understands, most specific first.
pub const ACCEPT_MANIFESTS: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.docker.distribution.manifest.v2+json";

/// Layer media types and how their bytes are compressed.
pub fn layer_compression(media_type: &str) -> Option<LayerCompression> {
    match media_type {
        "application/vnd.oci.image.layer.v1.tar"
        | "application/vnd.docker.image.rootfs.diff.tar" => Some(LayerCompression::None),
        "application/vnd.oci.image.layer.v1.tar+gzip"
        | "application/vnd.docker.image.rootfs.diff.tar.gzip" => Some(LayerCompression::Gzip),
        "application/vnd.oci.image.layer.v1.tar+zstd" => Some(LayerCompression::Zstd),
        _ => None,
    }
}

/// How a layer's tar is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerCompression {
    None,
    Gzip,
    Zstd,
}

/// An image to fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRequest {
    /// How messages name it, e.g. `konnectivity-server/proxy-server`.
    pub name: String,
    pub image: ImageRef,
    pub mirrors: Vec<ImageRef>,
    pub digest: Sha256Digest,
    pub platform: Platform,
}

impl ImageRequest {
    /// The pin line, as the lockfile's [`forge_schema::lockfile::LockedSource::pin`].
    pub fn pin(&self) -> String {
        image_pin(
            &format!("sha256:{}", self.digest),
            &self.platform.to_string(),
        )
    }

    /// The key of its source record in the store.
    pub fn record_key(&self) -> Sha256Digest {
        source_record_key(&self.pin())
    }

    fn bases(&self) -> Vec<String> {
        std::iter::once(&self.image)
            .chain(&self.mirrors)
            .map(ImageRef::api_base)
            .collect()
    }

    fn request(&self, what: &str, kind: &str, digest: &Sha256Digest, accept: bool) -> FetchRequest {
        FetchRequest {
            name: format!("{} ({what})", self.name),
            urls: self
                .bases()
                .iter()
                .map(|b| format!("{b}/{kind}/sha256:{digest}"))
                .collect(),
            integrity: Integrity::Sha256(*digest),
            file_name: format!("sha256:{digest}"),
            accept: accept.then(|| ACCEPT_MANIFESTS.to_string()),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    #[serde(default)]
    media_type: String,
    digest: String,
    #[serde(default)]
    platform: Option<DescriptorPlatform>,
    #[serde(default)]
    urls: Vec<String>,
}

#[derive(Deserialize)]
struct DescriptorPlatform {
    os: String,
    architecture: String,
    #[serde(default)]
    variant: Option<String>,
}

/// An index or a manifest: which one is told by the fields present (`mediaType` is
/// optional in OCI documents).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Document {
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Option<Vec<Descriptor>>,
}

fn parse_digest(d: &str) -> Result<Sha256Digest, String> {
    d.strip_prefix("sha256:")
        .ok_or_else(|| format!("digest `{d}` is not a sha256 digest"))?
        .parse()
        .map_err(|e| format!("digest `{d}`: {e}"))
}

impl Fetcher {
    /// Fetches an image's manifests and layers into the store (each verified by digest)
    /// and records them, or finds them recorded already.
    pub async fn fetch_image(
        &self,
        store: &Arc<Store>,
        req: &ImageRequest,
    ) -> Result<SourceRecord, FetchError> {
        let key = req.record_key();
        if let Some(r) = store.record::<SourceRecord>(&key)? {
            return Ok(r);
        }
        let fail = |reason: String| FetchError::Image {
            name: req.name.clone(),
            reason,
        };
        let top = self
            .fetch(
                store,
                &req.request("manifest", "manifests", &req.digest, true),
            )
            .await?;
        let mut manifests = vec![req.digest];
        let doc = read_document(&top.path).map_err(&fail)?;
        let manifest = if let Some(entries) = &doc.manifests {
            let wanted = &req.platform;
            let chosen = entries.iter().find(|m| {
                m.platform.as_ref().is_some_and(|p| {
                    p.os == wanted.os
                        && p.architecture == wanted.architecture
                        && (wanted.variant.is_none() || p.variant == wanted.variant)
                })
            });
            let Some(chosen) = chosen else {
                let available: Vec<String> = entries
                    .iter()
                    .filter_map(|m| m.platform.as_ref())
                    .map(|p| match &p.variant {
                        Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
                        None => format!("{}/{}", p.os, p.architecture),
                    })
                    .collect();
                return Err(fail(format!(
                    "index sha256:{} has no manifest for {wanted} (it has: {})",
                    req.digest,
                    available.join(", ")
                )));
            };
            let digest = parse_digest(&chosen.digest).map_err(&fail)?;
            let fetched = self
                .fetch(
                    store,
                    &req.request("platform manifest", "manifests", &digest, true),
                )
                .await?;
            manifests.push(digest);
            read_document(&fetched.path).map_err(&fail)?
        } else {
            doc
        };
        let (Some(config), Some(layers)) = (&manifest.config, &manifest.layers) else {
            return Err(fail(format!(
                "manifest {} is neither an image index nor an image manifest",
                manifest.media_type.as_deref().unwrap_or("(no media type)")
            )));
        };
        let config_digest = parse_digest(&config.digest).map_err(&fail)?;
        manifests.push(config_digest);
        let mut requests = vec![req.request("config", "blobs", &config_digest, false)];
        let mut layer_blobs = Vec::new();
        for (i, l) in layers.iter().enumerate() {
            if layer_compression(&l.media_type).is_none() {
                return Err(fail(format!(
                    "layer {} has media type `{}`, which forge cannot unpack{}",
                    l.digest,
                    l.media_type,
                    if l.urls.is_empty() {
                        ""
                    } else {
                        " (a foreign layer served from other URLs)"
                    }
                )));
            }
            let digest = parse_digest(&l.digest).map_err(&fail)?;
            requests.push(req.request(&format!("layer {}", i + 1), "blobs", &digest, false));
            layer_blobs.push(LayerBlob {
                digest,
                media_type: l.media_type.clone(),
            });
        }
        self.fetch_all(store, &requests).await?;
        let record = SourceRecord {
            pin: req.pin(),
            key,
            blob: None,
            manifests,
            layers: layer_blobs,
        };
        store.commit_record(&record)?;
        Ok(record)
    }
}

fn read_document(path: &std::path::Path) -> Result<Document, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("manifest is not valid JSON: {e}"))
}

/// A `WWW-Authenticate: Bearer realm=...,service=...,scope=...` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BearerChallenge {
    pub realm: String,
    pub service: Option<String>,
    pub scope: Option<String>,
}

impl BearerChallenge {
    pub fn parse(header: &str) -> Option<Self> {
        let rest = header.trim().strip_prefix("Bearer ")?;
        let mut realm = None;
        let mut service = None;
        let mut scope = None;
        // key="value" pairs separated by commas; values may contain commas (scopes), so
        // split on `,` only outside quotes.
        let mut pairs = Vec::new();
        let mut cur = String::new();
        let mut quoted = false;
        for c in rest.chars() {
            match c {
                '"' => {
                    quoted = !quoted;
                    cur.push(c);
                }
                ',' if !quoted => pairs.push(std::mem::take(&mut cur)),
                _ => cur.push(c),
            }
        }
        pairs.push(cur);
        for p in pairs {
            let Some((k, v)) = p.trim().split_once('=') else {
                continue;
            };
            let v = v.trim().trim_matches('"').to_string();
            match k.trim() {
                "realm" => realm = Some(v),
                "service" => service = Some(v),
                "scope" => scope = Some(v),
                _ => {}
            }
        }
        let realm = realm?;
        (realm.starts_with("https://") || realm.starts_with("http://")).then_some(Self {
            realm,
            service,
            scope,
        })
    }

    /// Query parameters for the token request.
    pub fn query(&self) -> Vec<(&'static str, String)> {
        let mut q = Vec::new();
        if let Some(s) = &self.service {
            q.push(("service", s.clone()));
        }
        if let Some(s) = &self.scope {
            q.push(("scope", s.clone()));
        }
        q
    }
}

/// The token of a token service's JSON answer (`token`, or OAuth2's `access_token`).
pub fn token_from_response(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Answer {
        #[serde(default)]
        token: Option<String>,
        #[serde(default)]
        access_token: Option<String>,
    }
    let a: Answer = serde_json::from_slice(body).ok()?;
    a.token.or(a.access_token).filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        let c = BearerChallenge::parse(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull,push""#,
        )
        .unwrap();
        assert_eq!(c.realm, "https://auth.docker.io/token");
        assert_eq!(c.service.as_deref(), Some("registry.docker.io"));
        assert_eq!(
            c.scope.as_deref(),
            Some("repository:library/busybox:pull,push")
        );
        assert!(BearerChallenge::parse("Basic realm=\"x\"").is_none());
        assert!(BearerChallenge::parse("Bearer service=\"x\"").is_none());
    }

    #[test]
    fn tokens() {
        assert_eq!(
            token_from_response(br#"{"token":"t1"}"#).as_deref(),
            Some("t1")
        );
        assert_eq!(
            token_from_response(br#"{"access_token":"t2"}"#).as_deref(),
            Some("t2")
        );
        assert_eq!(token_from_response(br#"{"token":""}"#), None);
    }
}
