//! The resource model: what forge wants (`Desired`), what exists (`Actual`), both as
//! comparable field maps in which references to other forge resources are written `@key`.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;
use serde_json::Value;

/// Label keys forge puts on the resources that carry labels (pools, elastic IPs).
pub const LABEL_PLATFORM: &str = "forge-platform";
pub const LABEL_STAGE: &str = "forge-stage";
pub const LABEL_RESOURCE: &str = "forge-resource";
/// The lockfile the resource was last written from (informational: not diffed).
pub const LABEL_LOCKFILE: &str = "forge-lockfile";

/// Resource kinds, in the order they are created (deleted in reverse).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    SshKey,
    SecurityGroup,
    SecurityGroupRule,
    AntiAffinityGroup,
    ElasticIp,
    InstancePool,
}

impl Kind {
    pub fn api_name(self) -> &'static str {
        match self {
            Kind::SshKey => "ssh-key",
            Kind::SecurityGroup => "security-group",
            Kind::SecurityGroupRule => "security-group-rule",
            Kind::AntiAffinityGroup => "anti-affinity-group",
            Kind::ElasticIp => "elastic-ip",
            Kind::InstancePool => "instance-pool",
        }
    }

    /// Fields whose change cannot be applied in place.
    pub fn forces_replacement(self, field: &str) -> bool {
        match self {
            Kind::SshKey => field == "fingerprint",
            Kind::ElasticIp => field == "healthcheck.mode",
            Kind::InstancePool => field == "anti-affinity-groups",
            Kind::SecurityGroupRule => true,
            Kind::SecurityGroup | Kind::AntiAffinityGroup => false,
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.api_name())
    }
}

/// A resource forge wants.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    /// Stable key within the platform (`pool-vault`); also the `forge-resource` label.
    pub key: String,
    pub kind: Kind,
    /// The API name (for rules: the group's key).
    pub name: String,
    /// Compared with what exists; flattened (`healthcheck.port`). References: `@key`.
    pub fields: BTreeMap<String, Value>,
    /// Sent at creation only (descriptions of groups that have no update call, the SSH
    /// public key).
    pub create_only: BTreeMap<String, Value>,
    /// Keys this resource refers to.
    pub deps: Vec<String>,
}

/// A resource that exists and belongs to the platform.
#[derive(Debug, Clone, PartialEq)]
pub struct Actual {
    pub key: String,
    pub kind: Kind,
    pub name: String,
    /// The API id (the name for SSH keys; `group-id/rule-id` for rules).
    pub id: String,
    pub fields: BTreeMap<String, Value>,
}

/// Flattens nested objects into dotted keys (`healthcheck.port`); arrays stay values.
pub fn flatten(prefix: &str, v: &Value, out: &mut BTreeMap<String, Value>) {
    match v {
        Value::Object(m) if !m.is_empty() && prefix != "labels" => {
            for (k, x) in m {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, x, out);
            }
        }
        _ => {
            out.insert(prefix.to_string(), v.clone());
        }
    }
}

/// The reference text of a key.
pub fn at(key: &str) -> String {
    format!("@{key}")
}
