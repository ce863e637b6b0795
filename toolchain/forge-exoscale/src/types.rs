//! Serde types for the subset of the Exoscale API v2 that forge uses.
//!
//! Hand-written rather than generated (progenitor/typify) from `openapi-latest.json`: the
//! document has 261 paths and ~700 schemas, of which forge uses a dozen resources; the
//! generated code would be tens of thousands of lines of mostly unused types, and the
//! spec's inline request schemas generate anonymous type names that would change with
//! every upstream spec update. Drift from the spec is caught instead by the emulator's
//! schema tests (tests/exoscale_schema.rs validates responses against the document and
//! the emulator validates every request body forge sends against it).
//!
//! Field names are the API's kebab-case; unknown response fields are ignored, and absent
//! optional fields are not sent.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Labels: a string map (replaced as a whole on update).
pub type Labels = BTreeMap<String, String>;

/// A reference to a resource by id (`{"id": "..."}`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct IdRef {
    pub id: String,
}

impl IdRef {
    pub fn new(id: impl Into<String>) -> Self {
        Self { id: id.into() }
    }
}

/// A reference to an SSH key by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameRef {
    pub name: String,
}

/// An asynchronous operation (API-NOTES §3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Operation {
    pub id: String,
    pub state: OperationState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<Reference>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OperationState {
    Pending,
    Success,
    Failure,
    Timeout,
}

/// The resource an operation affected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reference {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Zone {
    pub name: String,
    #[serde(default)]
    pub api_endpoint: Option<String>,
    #[serde(default)]
    pub sos_endpoint: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct InstanceType {
    pub id: String,
    #[serde(default)]
    pub family: Option<String>,
    #[serde(default)]
    pub size: Option<String>,
    #[serde(default)]
    pub cpus: Option<i64>,
    #[serde(default)]
    pub memory: Option<i64>,
    #[serde(default)]
    pub authorized: Option<bool>,
    #[serde(default)]
    pub zones: Vec<String>,
}

impl InstanceType {
    /// `family.size`, the name clients use (`standard.tiny`).
    pub fn name(&self) -> String {
        format!(
            "{}.{}",
            self.family.as_deref().unwrap_or("standard"),
            self.size.as_deref().unwrap_or("")
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Template {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub checksum: Option<String>,
    #[serde(default)]
    pub size: Option<i64>,
    #[serde(default)]
    pub boot_mode: Option<String>,
    #[serde(default)]
    pub default_user: Option<String>,
    #[serde(default)]
    pub build: Option<String>,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub maintainer: Option<String>,
    #[serde(default)]
    pub visibility: Option<String>,
    #[serde(default)]
    pub zones: Vec<String>,
}

/// Body of `register-template`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RegisterTemplate {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub url: String,
    /// MD5 of the image file, lowercase hex.
    pub checksum: String,
    pub ssh_key_enabled: bool,
    pub password_enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub boot_mode: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maintainer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct SecurityGroup {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub external_sources: Vec<String>,
    #[serde(default)]
    pub rules: Vec<SecurityGroupRule>,
}

/// The peer of a security group rule: a user group by id, or an Exoscale public group.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SecurityGroupPeer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visibility: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct SecurityGroupRule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub flow_direction: String,
    pub protocol: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_port: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_port: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_group: Option<SecurityGroupPeer>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateNamed {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct AntiAffinityGroup {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub instances: Vec<IdRef>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ElasticIpHealthcheck {
    pub mode: String,
    pub port: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strikes_ok: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strikes_fail: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_sni: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_skip_verify: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ElasticIp {
    pub id: String,
    #[serde(default)]
    pub ip: Option<String>,
    #[serde(default)]
    pub addressfamily: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub healthcheck: Option<ElasticIpHealthcheck>,
    #[serde(default)]
    pub labels: Labels,
}

/// Body of `create-elastic-ip` and `update-elastic-ip`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ElasticIpSpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub addressfamily: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<ElasticIpHealthcheck>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<Labels>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct InstancePool {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub size: Option<i64>,
    #[serde(default)]
    pub instance_prefix: Option<String>,
    #[serde(default)]
    pub instance_type: Option<IdRef>,
    #[serde(default)]
    pub template: Option<IdRef>,
    #[serde(default)]
    pub disk_size: Option<i64>,
    #[serde(default)]
    pub user_data: Option<String>,
    #[serde(default)]
    pub labels: Labels,
    #[serde(default)]
    pub anti_affinity_groups: Vec<IdRef>,
    #[serde(default)]
    pub security_groups: Vec<IdRef>,
    #[serde(default)]
    pub elastic_ips: Vec<IdRef>,
    #[serde(default)]
    pub private_networks: Vec<IdRef>,
    #[serde(default)]
    pub ssh_key: Option<NameRef>,
    #[serde(default)]
    pub public_ip_assignment: Option<String>,
    #[serde(default)]
    pub instances: Vec<IdRef>,
}

/// Body of `create-instance-pool` (and, with `size` absent, `update-instance-pool`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct InstancePoolSpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_prefix: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_type: Option<IdRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template: Option<IdRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_size: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_data: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<Labels>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub anti_affinity_groups: Option<Vec<IdRef>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub security_groups: Option<Vec<IdRef>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub elastic_ips: Option<Vec<IdRef>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub private_networks: Option<Vec<IdRef>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssh_key: Option<NameRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_ip_assignment: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Manager {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Instance {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub public_ip: Option<String>,
    #[serde(default)]
    pub labels: Labels,
    #[serde(default)]
    pub manager: Option<Manager>,
    #[serde(default)]
    pub template: Option<IdRef>,
    #[serde(default)]
    pub instance_type: Option<IdRef>,
    #[serde(default)]
    pub security_groups: Vec<IdRef>,
    #[serde(default)]
    pub user_data: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct SshKey {
    pub name: String,
    #[serde(default)]
    pub fingerprint: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct CreateSshKey {
    pub name: String,
    pub public_key: String,
}

/// The MD5 fingerprint (`aa:bb:…`) Exoscale shows for an OpenSSH public key, or `None` if
/// the text is not one.
pub fn ssh_key_fingerprint(key: &str) -> Option<String> {
    use base64::Engine as _;
    use md5::Digest as _;
    let mut parts = key.split_whitespace();
    let algo = parts.next()?;
    if !(algo.starts_with("ssh-") || algo.starts_with("ecdsa-sha2-") || algo.starts_with("sk-")) {
        return None;
    }
    let blob = base64::engine::general_purpose::STANDARD
        .decode(parts.next()?)
        .ok()?;
    // The blob starts with the algorithm name as an SSH string.
    let n = u32::from_be_bytes(blob.get(0..4)?.try_into().ok()?) as usize;
    if blob.get(4..4 + n)? != algo.as_bytes() {
        return None;
    }
    let d = md5::Md5::digest(&blob);
    Some(
        d.iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":"),
    )
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct LoadBalancerHealthcheck {
    pub mode: String,
    pub port: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_sni: Option<String>,
}

/// A network load balancer service (`add-service-to-load-balancer` body and answer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct LoadBalancerService {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub instance_pool: IdRef,
    pub protocol: String,
    pub strategy: String,
    pub port: i64,
    pub target_port: i64,
    pub healthcheck: LoadBalancerHealthcheck,
    #[serde(default, skip_serializing)]
    pub state: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct LoadBalancer {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub ip: Option<String>,
    #[serde(default)]
    pub services: Vec<LoadBalancerService>,
    #[serde(default)]
    pub labels: Labels,
}

/// Body of `create-load-balancer` and `update-load-balancer`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct LoadBalancerSpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<Labels>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct PrivateNetworkLease {
    pub ip: String,
    pub instance_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct PrivateNetwork {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub netmask: Option<String>,
    #[serde(default)]
    pub start_ip: Option<String>,
    #[serde(default)]
    pub end_ip: Option<String>,
    #[serde(default)]
    pub vni: Option<i64>,
    #[serde(default)]
    pub leases: Vec<PrivateNetworkLease>,
    #[serde(default)]
    pub labels: Labels,
}

/// Body of `create-private-network` and `update-private-network`; netmask, start and end
/// together make the network managed (Exoscale runs DHCP for it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct PrivateNetworkSpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub netmask: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_ip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_ip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<Labels>,
}
