//! `platform.toml`: what to deploy where — the original's `locals.tf` (spec §2.1) plus the
//! values it hard-coded (§2.4), as one validated file.
//!
//! ```toml
//! [platform]
//! name = "paas-staging"                      # prefix of every cloud resource name
//! zone = "de-fra-1"
//! domain = "paas-staging.example.net"
//! admin-networks = ["198.51.100.7/32"]       # who may reach SSH and the Vault API
//! ssh-public-key = "keys/operator.pub"       # optional, registered as <name>-management
//!
//! [publish]
//! bucket = "paas-staging-templates"          # SOS bucket the images are uploaded to
//!
//! [vault]
//! size = 3
//! instance-type = "standard.tiny"
//! disk-size = 10
//! ```
//!
//! Every other key has the default the original used; see docs/deploy.md.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::Deserialize;
use toml::Spanned;

use crate::diag::{SourceFile, TomlError};

mod check;
mod parse;

use check::check_platform_name;

/// The file name at the project root.
pub const PLATFORM_FILE: &str = "platform.toml";

/// Exoscale zones (the `zone-name` enum of the API's OpenAPI document; a test in the
/// emulator crate keeps the two lists equal).
pub const ZONES: &[&str] = &[
    "at-vie-1", "at-vie-2", "bg-sof-1", "ch-dk-2", "ch-gva-2", "de-fra-1", "de-muc-1", "hr-zag-1",
];

/// Instance type families and sizes (API-NOTES §5.2).
pub const INSTANCE_FAMILIES: &[&str] = &[
    "standard",
    "cpu",
    "memory",
    "storage",
    "colossus",
    "gpu",
    "gpu2",
    "gpu3",
    "gpua30",
    "gpua5000",
    "gpu3080ti",
    "gpub300",
    "gpurtx6000pro",
];
pub const INSTANCE_SIZES: &[&str] = &[
    "micro",
    "tiny",
    "small",
    "medium",
    "large",
    "extra-large",
    "huge",
    "mega",
    "titan",
    "jumbo",
    "colossus",
    "titan48c",
];

/// Exoscale's limit of instances per anti-affinity group.
pub const ANTI_AFFINITY_LIMIT: u32 = 8;

/// A validated platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub name: String,
    pub zone: String,
    pub domain: String,
    pub admin_networks: Vec<String>,
    /// Project-relative path of the operator's SSH public key.
    pub ssh_public_key: Option<String>,
    pub publish: Publish,
    pub vault: Pool,
    pub etcd: Pool,
    pub kubernetes: Kubernetes,
    /// How the Vault cluster is initialised and which members it has outside the cloud.
    pub vault_cluster: VaultCluster,
    pub secrets: Secrets,
    pub pki: Pki,
}

/// `[vault]` keys besides the pool's (spec §6.3, defect 16: 5 shares, 3 needed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultCluster {
    pub key_shares: u8,
    pub key_threshold: u8,
    /// `[[vault.member]]`: Vault servers forge bootstraps through a local TLS directory
    /// instead of cloud instances (a lab, bare metal, the tests).
    pub members: Vec<StaticMember>,
}

/// A Vault server outside the cloud.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticMember {
    /// The raft node id.
    pub name: String,
    /// Its API address, `https://HOST:PORT`.
    pub api_addr: String,
    /// Where the member reads `ca.pem`, `server.pem` and `server.key` (relative paths are
    /// relative to the project; an absolute path on the `ssh` host when that is set).
    pub tls_dir: String,
    /// `user@host[:port]`: the TLS directory is on that host, reached over SSH.
    pub ssh: Option<String>,
    /// Run on the member's host after its TLS files changed.
    pub reload_command: Option<String>,
}

/// `[secrets]`: where forge keeps the secrets it makes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Secrets {
    /// Default: `$XDG_DATA_HOME/forge/secrets/<platform>`.
    pub dir: Option<String>,
    /// An age X25519 recipient (`age1...`) every secret is encrypted to.
    pub age_recipient: Option<String>,
}

/// Key algorithm of the CAs and certificates forge and Vault make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAlgorithm {
    EcdsaP256,
    EcdsaP384,
}

impl KeyAlgorithm {
    pub const NAMES: &[&str] = &["ecdsa-p256", "ecdsa-p384"];
    /// Vault's `key_type` and `key_bits`.
    pub fn vault_key(self) -> (&'static str, u32) {
        match self {
            KeyAlgorithm::EcdsaP256 => ("ec", 256),
            KeyAlgorithm::EcdsaP384 => ("ec", 384),
        }
    }
}

/// The subject fields every CA and role carries (the original's
/// `platform_default_tls_subject`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Subject {
    pub organization: Option<String>,
    pub organizational_unit: Option<String>,
    pub country: Option<String>,
    pub province: Option<String>,
    pub locality: Option<String>,
    pub street_address: Option<String>,
    pub postal_code: Option<String>,
}

/// `[pki]` (spec §2.1 / §5.2 lifetimes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pki {
    pub subject: Subject,
    /// CAs (the root, the ICA, the Kubernetes CAs).
    pub ca_key: KeyAlgorithm,
    /// Leaf certificates (PKI roles, Vault bootstrap certificates).
    pub leaf_key: KeyAlgorithm,
    pub root_ca_hours: u64,
    pub ca_hours: u64,
    pub ica_hours: u64,
    pub cert_hours: u64,
    pub bootstrap_cert_hours: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    pub bucket: String,
    /// Zones to register templates in (default: the platform's zone).
    pub zones: Vec<String>,
    /// Lifetime of the presigned URL the template is registered from.
    pub url_lifetime_secs: u64,
}

/// One instance pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    /// The image (in `images/`) whose template the pool runs.
    pub image: String,
    pub size: u32,
    /// `family.size`, e.g. `standard.tiny`.
    pub instance_type: String,
    /// GiB.
    pub disk_size: u32,
    /// Spread members over hypervisors (caps the pool at 8 instances).
    pub anti_affinity: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kubernetes {
    pub cluster_domain: String,
    pub pod_cidr_ipv4: String,
    pub service_cidr_ipv4: String,
    pub pod_cidr_ipv6: String,
    pub service_cidr_ipv6: String,
    pub apiserver_service_ipv4: String,
    pub dns_service_ipv4: String,
    pub node_cidr_mask_ipv4: u8,
    pub node_cidr_mask_ipv6: u8,
    pub control_plane: Pool,
    pub node_pools: BTreeMap<String, Pool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Raw {
    platform: Spanned<RawPlatform>,
    publish: Option<Spanned<RawPublish>>,
    vault: Option<Spanned<RawVault>>,
    etcd: Option<Spanned<RawPool>>,
    kubernetes: Option<Spanned<RawKubernetes>>,
    secrets: Option<Spanned<RawSecrets>>,
    pki: Option<Spanned<RawPki>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawVault {
    image: Option<Spanned<String>>,
    size: Option<Spanned<u32>>,
    instance_type: Option<Spanned<String>>,
    disk_size: Option<Spanned<u32>>,
    anti_affinity: Option<bool>,
    key_shares: Option<Spanned<u8>>,
    key_threshold: Option<Spanned<u8>>,
    #[serde(default)]
    member: Vec<Spanned<RawMember>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawMember {
    name: Spanned<String>,
    api_addr: Spanned<String>,
    tls_dir: Spanned<String>,
    ssh: Option<Spanned<String>>,
    reload_command: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawSecrets {
    dir: Option<Spanned<String>>,
    age_recipient: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawPki {
    organization: Option<String>,
    organizational_unit: Option<String>,
    country: Option<Spanned<String>>,
    province: Option<String>,
    locality: Option<String>,
    street_address: Option<String>,
    postal_code: Option<String>,
    ca_key: Option<Spanned<String>>,
    leaf_key: Option<Spanned<String>>,
    root_ca_years: Option<Spanned<u64>>,
    ca_years: Option<Spanned<u64>>,
    ica_years: Option<Spanned<u64>>,
    cert_hours: Option<Spanned<u64>>,
    bootstrap_cert_days: Option<Spanned<u64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawPlatform {
    name: Spanned<String>,
    zone: Spanned<String>,
    domain: Option<Spanned<String>>,
    admin_networks: Spanned<Vec<Spanned<String>>>,
    ssh_public_key: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawPublish {
    bucket: Spanned<String>,
    zones: Option<Vec<Spanned<String>>>,
    url_lifetime_hours: Option<Spanned<u64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawPool {
    image: Option<Spanned<String>>,
    size: Option<Spanned<u32>>,
    instance_type: Option<Spanned<String>>,
    disk_size: Option<Spanned<u32>>,
    anti_affinity: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawKubernetes {
    cluster_domain: Option<Spanned<String>>,
    pod_cidr_ipv4: Option<Spanned<String>>,
    service_cidr_ipv4: Option<Spanned<String>>,
    pod_cidr_ipv6: Option<Spanned<String>>,
    service_cidr_ipv6: Option<Spanned<String>>,
    apiserver_service_ipv4: Option<Spanned<String>>,
    dns_service_ipv4: Option<Spanned<String>>,
    node_cidr_mask_ipv4: Option<Spanned<u8>>,
    node_cidr_mask_ipv6: Option<Spanned<u8>>,
    control_plane: Option<Spanned<RawPool>>,
    #[serde(default)]
    node_pools: BTreeMap<Spanned<String>, Spanned<RawPool>>,
}

/// Defaults of a pool (the original's values).
struct PoolDefaults {
    image: &'static str,
    size: u32,
    instance_type: &'static str,
    disk_size: u32,
    anti_affinity: bool,
    /// Raft/etcd quorum: an odd size.
    odd: bool,
}

struct Checker<'a> {
    file: &'a SourceFile,
    errors: Vec<TomlError>,
}

/// A parsed CIDR.
fn parse_cidr(s: &str) -> Option<(IpAddr, u8)> {
    let (addr, len) = s.split_once('/')?;
    let addr: IpAddr = addr.parse().ok()?;
    let len: u8 = len.parse().ok()?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    (len <= max).then_some((addr, len))
}

fn in_cidr(ip: IpAddr, (net, len): (IpAddr, u8)) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = if len == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(len))
            };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(len))
            };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Platform, String> {
        Platform::parse(&SourceFile::new("platform.toml", text)).map_err(|e| e.to_string())
    }

    #[test]
    fn minimal_file_gets_the_original_defaults() {
        let p = parse(
            "[platform]\nname = \"paas\"\nzone = \"de-fra-1\"\nadmin-networks = [\"198.51.100.7/32\"]\n",
        );
        let p = p.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            p.vault,
            Pool {
                image: "vault".into(),
                size: 3,
                instance_type: "standard.tiny".into(),
                disk_size: 10,
                anti_affinity: true
            }
        );
        assert_eq!(p.publish.bucket, "paas-templates");
        assert_eq!(p.publish.zones, ["de-fra-1"]);
        assert_eq!(p.kubernetes.cluster_domain, "kubernetes.paas.internal");
        assert_eq!(p.kubernetes.node_pools["general"].size, 3);
    }

    #[test]
    fn errors_say_where_and_what_to_do() {
        let e = parse("[platform]\nname = \"paas\"\nzone = \"de-fra-2\"\nadmin-networks = [\"198.51.100.7\"]\n[vault]\nsize = 4\ninstance-type = \"standard.tyni\"\n").unwrap_err();
        assert!(
            e.contains("platform.toml:3:8: unknown zone `de-fra-2`"),
            "{e}"
        );
        assert!(
            e.contains("platform.toml:4:19: `198.51.100.7` is not a CIDR"),
            "{e}"
        );
        assert!(
            e.contains("platform.toml:6:8: vault: size 4 is even"),
            "{e}"
        );
        assert!(
            e.contains("platform.toml:7:17: unknown instance type `standard.tyni`"),
            "{e}"
        );
        let e = parse("[platform]\nnmae = \"x\"\n").unwrap_err();
        assert!(e.contains("platform.toml:2:1: unknown field `nmae`"), "{e}");
        let e = parse("[platform]\nname = \"Paas\"\nzone = \"de-fra-1\"\nadmin-networks = []\n")
            .unwrap_err();
        assert!(e.contains("invalid platform name `Paas`"), "{e}");
        assert!(e.contains("admin-networks is empty"), "{e}");
        let e = parse("[platform]\nname = \"p\"\nzone = \"de-fra-1\"\nadmin-networks = [\"::/0\"]\n[kubernetes]\ndns-service-ipv4 = \"10.0.0.2\"\n[kubernetes.node-pools.big]\nsize = 12\nanti-affinity = true\n").unwrap_err();
        assert!(
            e.contains("dns-service-ipv4 10.0.0.2 is outside service-cidr-ipv4 10.80.0.0/12"),
            "{e}"
        );
        assert!(e.contains("exceeds the anti-affinity limit of 8"), "{e}");
    }
}
