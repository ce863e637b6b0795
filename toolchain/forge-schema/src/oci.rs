//! OCI image references and platforms, as recipes write them.
//!
//! A recipe's `image` source names a repository in a registry
//! (`registry.k8s.io/kas-network-proxy/proxy-server:v0.0.31`) and pins its content by the
//! manifest digest. The tag is informational: only the digest is fetched and trusted.

use std::fmt;

/// A repository in a registry, with an optional (informational) tag.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ImageRef {
    /// Host (and port) of the registry, e.g. `registry.k8s.io` or `127.0.0.1:5000`.
    pub registry: String,
    /// Repository path, e.g. `kas-network-proxy/proxy-server`.
    pub repository: String,
    pub tag: Option<String>,
}

/// Docker Hub's registry host, for references without one (`coredns/coredns:1.9.2`).
pub const DOCKER_HUB: &str = "registry-1.docker.io";

impl ImageRef {
    /// Parses `[registry/]repository[:tag]`. A first component with a `.` or `:` (or
    /// `localhost`) is a registry; otherwise the reference is on Docker Hub, where
    /// one-component names live under `library/`. Digests (`@sha256:...`) belong in the
    /// source's `digest` key, not here.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.contains('@') {
            return Err(format!(
                "`{s}` has a digest; give the repository (and tag) in `image` and the digest in `digest`"
            ));
        }
        if s.is_empty() || s.starts_with('/') || s.ends_with('/') || s.contains("//") {
            return Err(format!("`{s}` is not an image reference"));
        }
        let (first, rest) = match s.split_once('/') {
            Some((f, r)) if f.contains('.') || f.contains(':') || f == "localhost" => (Some(f), r),
            _ => (None, s),
        };
        let (repo, tag) = match rest.rsplit_once(':') {
            Some((r, t)) if !t.contains('/') => (r, Some(t.to_string())),
            _ => (rest, None),
        };
        let repo_ok = repo.split('/').all(|c| {
            !c.is_empty()
                && c.chars().all(|ch| {
                    ch.is_ascii_lowercase() || ch.is_ascii_digit() || matches!(ch, '.' | '_' | '-')
                })
        });
        if !repo_ok {
            return Err(format!(
                "`{repo}` is not a repository name (lowercase letters, digits, `.`, `_`, `-` and `/`)"
            ));
        }
        if let Some(t) = &tag {
            let tag_ok = !t.is_empty()
                && t.len() <= 128
                && t.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
            if !tag_ok {
                return Err(format!("`{t}` is not an image tag"));
            }
        }
        let (registry, repository) = match first {
            Some(r) => (r.to_string(), repo.to_string()),
            None if repo.contains('/') => (DOCKER_HUB.to_string(), repo.to_string()),
            None => (DOCKER_HUB.to_string(), format!("library/{repo}")),
        };
        Ok(Self {
            registry,
            repository,
            tag,
        })
    }

    /// Base URL of the registry's API: plain HTTP for loopback registries (as Docker and
    /// containerd do), HTTPS for every other.
    pub fn api_base(&self) -> String {
        let host = self
            .registry
            .rsplit_once(':')
            .map_or(self.registry.as_str(), |(h, _)| h);
        let scheme = if matches!(host, "localhost" | "127.0.0.1" | "[::1]") {
            "http"
        } else {
            "https"
        };
        format!("{scheme}://{}/v2/{}", self.registry, self.repository)
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        Ok(())
    }
}

/// An OCI platform, `os/architecture[/variant]`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    pub fn parse(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split('/').collect();
        let ok = |p: &str| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        };
        match parts.as_slice() {
            [os, arch] if ok(os) && ok(arch) => Ok(Self {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: None,
            }),
            [os, arch, v] if ok(os) && ok(arch) && ok(v) => Ok(Self {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: Some(v.to_string()),
            }),
            _ => Err(format!(
                "`{s}` is not a platform; write `os/architecture`, e.g. `linux/amd64`"
            )),
        }
    }
}

impl Default for Platform {
    fn default() -> Self {
        Self {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references() {
        let r = ImageRef::parse("registry.k8s.io/kas-network-proxy/proxy-server:v0.0.31").unwrap();
        assert_eq!(r.registry, "registry.k8s.io");
        assert_eq!(r.repository, "kas-network-proxy/proxy-server");
        assert_eq!(r.tag.as_deref(), Some("v0.0.31"));
        assert_eq!(
            r.api_base(),
            "https://registry.k8s.io/v2/kas-network-proxy/proxy-server"
        );
        let hub = ImageRef::parse("coredns/coredns:1.9.2").unwrap();
        assert_eq!(hub.registry, DOCKER_HUB);
        assert_eq!(hub.repository, "coredns/coredns");
        assert_eq!(
            ImageRef::parse("busybox").unwrap().repository,
            "library/busybox"
        );
        let local = ImageRef::parse("127.0.0.1:5000/kas/proxy-server").unwrap();
        assert_eq!(local.tag, None);
        assert_eq!(
            local.api_base(),
            "http://127.0.0.1:5000/v2/kas/proxy-server"
        );
        assert!(ImageRef::parse("x/Y").is_err());
        assert!(ImageRef::parse("a/b@sha256:00").is_err());
        assert!(ImageRef::parse("a/b:bad tag").is_err());
    }

    #[test]
    fn platforms() {
        assert_eq!(Platform::parse("linux/amd64").unwrap(), Platform::default());
        assert_eq!(
            Platform::parse("linux/arm/v7").unwrap().to_string(),
            "linux/arm/v7"
        );
        assert!(Platform::parse("linux").is_err());
    }
}
