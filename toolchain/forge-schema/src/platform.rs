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
use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

use crate::diag::{Diagnostics, SourceFile, TomlError, did_you_mean};

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

impl Checker<'_> {
    fn err(&mut self, span: Range<usize>, msg: impl Into<String>) -> &mut TomlError {
        self.errors.push(self.file.error(span, msg));
        let last = self.errors.len() - 1;
        &mut self.errors[last]
    }

    fn zone(&mut self, z: &Spanned<String>) {
        if !ZONES.contains(&z.get_ref().as_str()) {
            let help = match did_you_mean(z.get_ref(), ZONES.iter().copied()) {
                Some(s) => format!("did you mean `{s}`?"),
                None => format!("Exoscale zones: {}", ZONES.join(", ")),
            };
            let e = self.err(z.span(), format!("unknown zone `{}`", z.get_ref()));
            e.help = Some(help);
        }
    }

    fn cidr(&mut self, c: &Spanned<String>, family: Option<bool>) -> Option<(IpAddr, u8)> {
        match parse_cidr(c.get_ref()) {
            Some(p) if family.is_none_or(|v4| p.0.is_ipv4() == v4) => Some(p),
            Some(_) => {
                let want = if family == Some(true) {
                    "an IPv4"
                } else {
                    "an IPv6"
                };
                self.err(c.span(), format!("`{}` is not {want} CIDR", c.get_ref()));
                None
            }
            None => {
                let e = self.err(c.span(), format!("`{}` is not a CIDR", c.get_ref()));
                e.help =
                    Some("write an address and a prefix length, e.g. `198.51.100.7/32`".into());
                None
            }
        }
    }

    fn pool(&mut self, raw: Option<Spanned<RawPool>>, d: &PoolDefaults, what: &str) -> Pool {
        let raw = raw.map(Spanned::into_inner).unwrap_or_default();
        let image = raw
            .image
            .as_ref()
            .map_or_else(|| d.image.to_string(), |i| i.get_ref().clone());
        if let Some(i) = &raw.image
            && let Err(e) = crate::paths::check_name(i.get_ref())
        {
            self.err(i.span(), format!("invalid image name: {e}"));
        }
        let size = raw.size.as_ref().map_or(d.size, |s| *s.get_ref());
        let anti_affinity = raw.anti_affinity.unwrap_or(d.anti_affinity);
        if let Some(s) = &raw.size {
            if size == 0 {
                self.err(s.span(), format!("{what}: size must be at least 1"));
            } else if d.odd && size.is_multiple_of(2) {
                let e = self.err(s.span(), format!("{what}: size {size} is even"));
                e.help = Some(format!(
                    "a quorum of {size} members tolerates no more failures than {}; use an odd size",
                    size - 1
                ));
            } else if anti_affinity && size > ANTI_AFFINITY_LIMIT {
                let e = self.err(s.span(), format!("{what}: size {size} exceeds the anti-affinity limit of {ANTI_AFFINITY_LIMIT}"));
                e.help = Some("set `anti-affinity = false` for this pool, or split it".into());
            }
        }
        let instance_type = raw
            .instance_type
            .as_ref()
            .map_or_else(|| d.instance_type.to_string(), |t| t.get_ref().clone());
        if let Some(t) = &raw.instance_type {
            let (family, sz) = t
                .get_ref()
                .split_once('.')
                .unwrap_or(("standard", t.get_ref().as_str()));
            if !INSTANCE_FAMILIES.contains(&family) || !INSTANCE_SIZES.contains(&sz) {
                let candidates: Vec<String> = INSTANCE_SIZES
                    .iter()
                    .map(|s| format!("standard.{s}"))
                    .collect();
                let help = did_you_mean(t.get_ref(), candidates.iter().map(String::as_str))
                    .map(|s| format!("did you mean `{s}`?"))
                    .unwrap_or_else(|| "write FAMILY.SIZE, e.g. `standard.small`".into());
                let e = self.err(t.span(), format!("unknown instance type `{}`", t.get_ref()));
                e.help = Some(help);
            }
        }
        let disk_size = raw.disk_size.as_ref().map_or(d.disk_size, |s| *s.get_ref());
        if let Some(s) = &raw.disk_size
            && !(10..=51200).contains(&disk_size)
        {
            self.err(
                s.span(),
                format!("{what}: disk-size {disk_size} GiB is outside 10-51200"),
            );
        }
        Pool {
            image,
            size,
            instance_type,
            disk_size,
            anti_affinity,
        }
    }
}

impl Checker<'_> {
    fn vault_cluster(&mut self, raw: &RawVault) -> VaultCluster {
        let shares = raw.key_shares.as_ref().map_or(5, |s| *s.get_ref());
        let threshold = raw.key_threshold.as_ref().map_or(3, |s| *s.get_ref());
        if let Some(s) = &raw.key_shares
            && shares == 0
        {
            self.err(s.span(), "key-shares must be at least 1");
        }
        if threshold == 0 || threshold > shares {
            let span = raw
                .key_threshold
                .as_ref()
                .or(raw.key_shares.as_ref())
                .map_or(0..0, Spanned::span);
            let e = self.err(
                span,
                format!("key-threshold {threshold} must be between 1 and key-shares ({shares})"),
            );
            e.help = Some("e.g. key-shares = 5, key-threshold = 3".into());
        }
        let mut members = Vec::new();
        let mut names = std::collections::BTreeSet::new();
        for m in &raw.member {
            let m = m.get_ref();
            if let Err(e) = crate::paths::check_name(m.name.get_ref()) {
                self.err(m.name.span(), format!("invalid member name: {e}"));
            }
            if !names.insert(m.name.get_ref().clone()) {
                self.err(
                    m.name.span(),
                    format!("member `{}` is listed twice", m.name.get_ref()),
                );
            }
            let addr = m.api_addr.get_ref();
            let ok = addr
                .strip_prefix("https://")
                .or_else(|| addr.strip_prefix("http://"))
                .and_then(|rest| rest.rsplit_once(':'))
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
            if !ok {
                let e = self.err(
                    m.api_addr.span(),
                    format!("`{addr}` is not a Vault API address"),
                );
                e.help = Some("write https://HOST:PORT, e.g. `https://10.0.0.5:8200`".into());
            }
            if let Some(ssh) = &m.ssh {
                let v = ssh.get_ref();
                let ok = v
                    .split_once('@')
                    .is_some_and(|(u, h)| !u.is_empty() && !h.is_empty());
                if !ok {
                    let e = self.err(ssh.span(), format!("`{v}` is not an SSH target"));
                    e.help =
                        Some("write USER@HOST or USER@HOST:PORT, e.g. `debian@10.0.0.5`".into());
                }
                if !m.tls_dir.get_ref().starts_with('/') {
                    self.err(
                        m.tls_dir.span(),
                        "tls-dir must be an absolute path on the SSH host",
                    );
                }
            }
            members.push(StaticMember {
                name: m.name.get_ref().clone(),
                api_addr: addr.trim_end_matches('/').to_string(),
                tls_dir: m.tls_dir.get_ref().clone(),
                ssh: m.ssh.as_ref().map(|s| s.get_ref().clone()),
                reload_command: m.reload_command.clone(),
            });
        }
        VaultCluster {
            key_shares: shares,
            key_threshold: threshold,
            members,
        }
    }

    fn secrets(&mut self, raw: RawSecrets) -> Secrets {
        if let Some(r) = &raw.age_recipient {
            let v = r.get_ref();
            if !v.starts_with("age1") || v.len() < 60 {
                let e = self.err(r.span(), format!("`{v}` is not an age X25519 recipient"));
                e.help =
                    Some("make one with `age-keygen` and copy its `age1...` public key".into());
            }
        }
        Secrets {
            dir: raw.dir.map(Spanned::into_inner),
            age_recipient: raw.age_recipient.map(Spanned::into_inner),
        }
    }

    fn key_algorithm(
        &mut self,
        v: Option<&Spanned<String>>,
        default: KeyAlgorithm,
    ) -> KeyAlgorithm {
        let Some(v) = v else { return default };
        match v.get_ref().as_str() {
            "ecdsa-p256" => KeyAlgorithm::EcdsaP256,
            "ecdsa-p384" => KeyAlgorithm::EcdsaP384,
            other => {
                let e = self.err(v.span(), format!("unknown key algorithm `{other}`"));
                e.help = Some(format!("use one of {}", KeyAlgorithm::NAMES.join(", ")));
                default
            }
        }
    }

    fn pki(&mut self, raw: RawPki) -> Pki {
        if let Some(c) = &raw.country
            && (c.get_ref().len() != 2 || !c.get_ref().chars().all(|x| x.is_ascii_uppercase()))
        {
            self.err(
                c.span(),
                format!(
                    "country `{}` is not a two-letter code such as `CH`",
                    c.get_ref()
                ),
            );
        }
        let ca_key = self.key_algorithm(raw.ca_key.as_ref(), KeyAlgorithm::EcdsaP384);
        let leaf_key = self.key_algorithm(raw.leaf_key.as_ref(), KeyAlgorithm::EcdsaP256);
        let mut hours = |v: &Option<Spanned<u64>>, default: u64, per: u64, max: u64, what: &str| {
            let Some(n) = v else { return default * per };
            if *n.get_ref() == 0 || *n.get_ref() > max {
                self.err(n.span(), format!("{what} must be 1-{max}"));
            }
            n.get_ref() * per
        };
        let root_ca_hours = hours(&raw.root_ca_years, 30, 8760, 50, "root-ca-years");
        let ca_hours = hours(&raw.ca_years, 10, 8760, 30, "ca-years");
        let ica_hours = hours(&raw.ica_years, 5, 8760, 30, "ica-years");
        let cert_hours = hours(&raw.cert_hours, 96, 1, 8760, "cert-hours");
        let bootstrap_cert_hours =
            hours(&raw.bootstrap_cert_days, 90, 24, 825, "bootstrap-cert-days");
        Pki {
            subject: Subject {
                organization: raw.organization,
                organizational_unit: raw.organizational_unit,
                country: raw.country.map(Spanned::into_inner),
                province: raw.province,
                locality: raw.locality,
                street_address: raw.street_address,
                postal_code: raw.postal_code,
            },
            ca_key,
            leaf_key,
            root_ca_hours,
            ca_hours,
            ica_hours,
            cert_hours,
            bootstrap_cert_hours,
        }
    }
}

/// Resource names must leave room for suffixes within Exoscale's limits and work as DNS
/// labels and label values.
fn check_platform_name(name: &str) -> Result<(), String> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if name.is_empty() || name.len() > 30 {
        return Err("must be 1-30 characters".into());
    }
    if !ok_chars || !name.starts_with(|c: char| c.is_ascii_lowercase()) || name.ends_with('-') {
        return Err("use lowercase letters, digits and `-`, starting with a letter".into());
    }
    Ok(())
}

impl Platform {
    pub fn parse(file: &SourceFile) -> Result<Self, Diagnostics> {
        let raw: Raw = toml::from_str(&file.text).map_err(|e| file.from_toml(&e))?;
        let mut c = Checker {
            file,
            errors: Vec::new(),
        };
        let p = raw.platform.into_inner();
        if let Err(e) = check_platform_name(p.name.get_ref()) {
            c.err(
                p.name.span(),
                format!("invalid platform name `{}`: {e}", p.name.get_ref()),
            );
        }
        c.zone(&p.zone);
        let name = p.name.get_ref().clone();
        let domain = p
            .domain
            .as_ref()
            .map_or_else(|| format!("{name}.internal"), |d| d.get_ref().clone());
        if let Some(d) = &p.domain
            && (d.get_ref().is_empty()
                || !d.get_ref().split('.').all(|l| {
                    !l.is_empty()
                        && l.len() <= 63
                        && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                }))
        {
            c.err(d.span(), format!("`{}` is not a DNS domain", d.get_ref()));
        }
        if p.admin_networks.get_ref().is_empty() {
            let e = c.err(
                p.admin_networks.span(),
                "admin-networks is empty: nobody could reach SSH or the Vault API",
            );
            e.help = Some("list the operators' networks, e.g. `[\"198.51.100.7/32\"]`".into());
        }
        let mut admin = Vec::new();
        for n in p.admin_networks.get_ref() {
            if c.cidr(n, None).is_some() {
                admin.push(n.get_ref().clone());
            }
        }
        let ssh_public_key = p.ssh_public_key.as_ref().map(|k| k.get_ref().clone());

        let publish = match raw.publish {
            Some(pb) => {
                let pb = pb.into_inner();
                let b = pb.bucket.get_ref();
                let valid = (3..=63).contains(&b.len())
                    && b.chars().all(|c| {
                        c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.'
                    })
                    && b.starts_with(|c: char| c.is_ascii_alphanumeric());
                if !valid {
                    c.err(
                        pb.bucket.span(),
                        format!(
                            "invalid bucket name `{b}`: 3-63 lowercase letters, digits, `-` or `.`"
                        ),
                    );
                }
                let zones = match &pb.zones {
                    Some(zs) => {
                        for z in zs {
                            c.zone(z);
                        }
                        zs.iter().map(|z| z.get_ref().clone()).collect()
                    }
                    None => vec![p.zone.get_ref().clone()],
                };
                let hours = pb.url_lifetime_hours.as_ref().map_or(2, |h| *h.get_ref());
                if let Some(h) = &pb.url_lifetime_hours
                    && !(1..=168).contains(&hours)
                {
                    c.err(
                        h.span(),
                        "url-lifetime-hours must be 1-168 (a presigned URL lives at most 7 days)",
                    );
                }
                Publish {
                    bucket: b.clone(),
                    zones,
                    url_lifetime_secs: hours * 3600,
                }
            }
            None => Publish {
                bucket: format!("{name}-templates"),
                zones: vec![p.zone.get_ref().clone()],
                url_lifetime_secs: 7200,
            },
        };

        let raw_vault = raw.vault.map(Spanned::into_inner).unwrap_or_default();
        let vault_cluster = c.vault_cluster(&raw_vault);
        let vault_pool = RawPool {
            image: raw_vault.image,
            size: raw_vault.size,
            instance_type: raw_vault.instance_type,
            disk_size: raw_vault.disk_size,
            anti_affinity: raw_vault.anti_affinity,
        };
        let secrets = c.secrets(raw.secrets.map(Spanned::into_inner).unwrap_or_default());
        let pki = c.pki(raw.pki.map(Spanned::into_inner).unwrap_or_default());
        let vault = c.pool(
            Some(Spanned::new(0..0, vault_pool)),
            &PoolDefaults {
                image: "vault",
                size: 3,
                instance_type: "standard.tiny",
                disk_size: 10,
                anti_affinity: true,
                odd: true,
            },
            "vault",
        );
        let etcd = c.pool(
            raw.etcd,
            &PoolDefaults {
                image: "etcd",
                size: 3,
                instance_type: "standard.small",
                disk_size: 20,
                anti_affinity: true,
                odd: true,
            },
            "etcd",
        );
        let k = raw.kubernetes.map(Spanned::into_inner).unwrap_or_default();
        let text = |v: &Option<Spanned<String>>, d: &str| {
            v.as_ref()
                .map_or_else(|| d.to_string(), |s| s.get_ref().clone())
        };
        let cluster_domain = text(&k.cluster_domain, &format!("kubernetes.{domain}"));
        let cidr = |c: &mut Checker,
                    v: &Option<Spanned<String>>,
                    d: &str,
                    v4: bool|
         -> (String, Option<(IpAddr, u8)>) {
            match v {
                Some(s) => (s.get_ref().clone(), c.cidr(s, Some(v4))),
                None => (d.to_string(), parse_cidr(d)),
            }
        };
        let (pod4, _) = cidr(&mut c, &k.pod_cidr_ipv4, "10.96.0.0/12", true);
        let (svc4, svc4_net) = cidr(&mut c, &k.service_cidr_ipv4, "10.80.0.0/12", true);
        let (pod6, _) = cidr(&mut c, &k.pod_cidr_ipv6, "fc00::2:0/112", false);
        let (svc6, _) = cidr(&mut c, &k.service_cidr_ipv6, "fc00::1:0/112", false);
        let service_ip =
            |c: &mut Checker, v: &Option<Spanned<String>>, d: &str, what: &str| -> String {
                let Some(s) = v else { return d.to_string() };
                match s.get_ref().parse::<IpAddr>() {
                    Ok(ip) if svc4_net.is_none_or(|n| in_cidr(ip, n)) => {}
                    Ok(_) => {
                        c.err(
                            s.span(),
                            format!("{what} {} is outside service-cidr-ipv4 {svc4}", s.get_ref()),
                        );
                    }
                    Err(_) => {
                        c.err(s.span(), format!("`{}` is not an IP address", s.get_ref()));
                    }
                }
                s.get_ref().clone()
            };
        let apiserver_service_ipv4 = service_ip(
            &mut c,
            &k.apiserver_service_ipv4,
            "10.80.0.1",
            "apiserver-service-ipv4",
        );
        let dns_service_ipv4 =
            service_ip(&mut c, &k.dns_service_ipv4, "10.80.0.2", "dns-service-ipv4");
        let mask = |c: &mut Checker, v: &Option<Spanned<u8>>, d: u8, max: u8| -> u8 {
            let Some(m) = v else { return d };
            if *m.get_ref() > max {
                c.err(
                    m.span(),
                    format!("a node CIDR mask size must be at most {max}"),
                );
            }
            *m.get_ref()
        };
        let node_cidr_mask_ipv4 = mask(&mut c, &k.node_cidr_mask_ipv4, 24, 32);
        let node_cidr_mask_ipv6 = mask(&mut c, &k.node_cidr_mask_ipv6, 120, 128);
        let control_plane = c.pool(
            k.control_plane,
            &PoolDefaults {
                image: "kube-controlplane",
                size: 2,
                instance_type: "standard.medium",
                disk_size: 20,
                anti_affinity: true,
                odd: false,
            },
            "kubernetes.control-plane",
        );
        let mut node_pools = BTreeMap::new();
        let node_defaults = PoolDefaults {
            image: "kube-node",
            size: 3,
            instance_type: "standard.small",
            disk_size: 20,
            anti_affinity: false,
            odd: false,
        };
        if k.node_pools.is_empty() {
            node_pools.insert(
                "general".to_string(),
                c.pool(None, &node_defaults, "kubernetes.node-pools.general"),
            );
        }
        for (pool_name, raw_pool) in k.node_pools {
            if let Err(e) = crate::paths::check_name(pool_name.get_ref()) {
                c.err(pool_name.span(), format!("invalid node pool name: {e}"));
            }
            let what = format!("kubernetes.node-pools.{}", pool_name.get_ref());
            node_pools.insert(
                pool_name.into_inner(),
                c.pool(Some(raw_pool), &node_defaults, &what),
            );
        }
        if !c.errors.is_empty() {
            return Err(Diagnostics::from(c.errors));
        }
        Ok(Platform {
            name,
            zone: p.zone.into_inner(),
            domain,
            admin_networks: admin,
            ssh_public_key,
            publish,
            vault,
            etcd,
            vault_cluster,
            secrets,
            pki,
            kubernetes: Kubernetes {
                cluster_domain,
                pod_cidr_ipv4: pod4,
                service_cidr_ipv4: svc4,
                pod_cidr_ipv6: pod6,
                service_cidr_ipv6: svc6,
                apiserver_service_ipv4,
                dns_service_ipv4,
                node_cidr_mask_ipv4,
                node_cidr_mask_ipv6,
                control_plane,
                node_pools,
            },
        })
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
