//! The resource model: one Rust type per kind of cloud resource, the same type for what
//! forge wants and what exists, compared field by field ([`Spec::diff`]). References to
//! other resources of the platform are [`Ref::Key`]s, resolved to API ids only when a
//! call is made; values known only once another resource exists (an elastic IP's address
//! in user-data) are resolved from its attributes.

mod address;
mod compute;
mod network;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Serialize, Serializer};
use serde_json::Value;

use crate::diff::FieldChange;

pub use address::{ElasticIp, LoadBalancer, LoadBalancerService};
pub use compute::{AntiAffinityGroup, InstancePool, SshKey, Template, UserData};
pub use network::{Direction, Peer, PrivateNetwork, Protocol, Rule, SecurityGroup};

/// Label keys forge puts on the resources that carry labels.
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
    PrivateNetwork,
    SecurityGroup,
    SecurityGroupRule,
    AntiAffinityGroup,
    ElasticIp,
    InstancePool,
    LoadBalancer,
    LoadBalancerService,
}

impl Kind {
    /// Every kind, in creation order.
    pub const ALL: [Kind; 9] = [
        Kind::SshKey,
        Kind::PrivateNetwork,
        Kind::SecurityGroup,
        Kind::SecurityGroupRule,
        Kind::AntiAffinityGroup,
        Kind::ElasticIp,
        Kind::InstancePool,
        Kind::LoadBalancer,
        Kind::LoadBalancerService,
    ];

    pub fn api_name(self) -> &'static str {
        match self {
            Kind::SshKey => "ssh-key",
            Kind::PrivateNetwork => "private-network",
            Kind::SecurityGroup => "security-group",
            Kind::SecurityGroupRule => "security-group-rule",
            Kind::AntiAffinityGroup => "anti-affinity-group",
            Kind::ElasticIp => "elastic-ip",
            Kind::InstancePool => "instance-pool",
            Kind::LoadBalancer => "load-balancer",
            Kind::LoadBalancerService => "load-balancer-service",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.api_name())
    }
}

/// A reference from one resource to another.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Ref {
    /// A resource of the platform, by key (`sg-vault-server`).
    Key(String),
    /// A resource forge does not manage, by API id (or name, for SSH keys).
    Foreign(String),
}

impl Ref {
    pub fn key(key: &str) -> Ref {
        Ref::Key(key.to_string())
    }

    pub fn as_key(&self) -> Option<&str> {
        match self {
            Ref::Key(k) => Some(k),
            Ref::Foreign(_) => None,
        }
    }
}

impl fmt::Display for Ref {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ref::Key(k) => write!(f, "@{k}"),
            Ref::Foreign(id) => write!(f, "id:{id}"),
        }
    }
}

impl Serialize for Ref {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Labels, compared without [`LABEL_LOCKFILE`] (which records, not decides).
#[derive(Debug, Clone, Default, Eq, Serialize)]
#[serde(transparent)]
pub struct Labels(pub BTreeMap<String, String>);

impl PartialEq for Labels {
    fn eq(&self, other: &Self) -> bool {
        let strip = |l: &Labels| {
            l.0.iter()
                .filter(|(k, _)| k.as_str() != LABEL_LOCKFILE)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<BTreeMap<_, _>>()
        };
        strip(self) == strip(other)
    }
}

impl Labels {
    /// forge's labels of a resource: the platform, the stage and the resource's key.
    pub fn forge(platform: &str, stage: &str, key: &str) -> Labels {
        Labels(BTreeMap::from([
            (LABEL_PLATFORM.to_string(), platform.to_string()),
            (LABEL_STAGE.to_string(), stage.to_string()),
            (LABEL_RESOURCE.to_string(), key.to_string()),
        ]))
    }
}

/// Attributes of existing resources others refer to (`eip-vault` → `ip`).
pub type Attributes = BTreeMap<String, BTreeMap<String, String>>;

/// A resource of one kind.
#[derive(Debug, Clone, PartialEq)]
pub enum Spec {
    SshKey(SshKey),
    PrivateNetwork(PrivateNetwork),
    SecurityGroup(SecurityGroup),
    SecurityGroupRule(Rule),
    AntiAffinityGroup(AntiAffinityGroup),
    ElasticIp(ElasticIp),
    InstancePool(InstancePool),
    LoadBalancer(LoadBalancer),
    LoadBalancerService(LoadBalancerService),
}

impl Spec {
    pub fn kind(&self) -> Kind {
        match self {
            Spec::SshKey(_) => Kind::SshKey,
            Spec::PrivateNetwork(_) => Kind::PrivateNetwork,
            Spec::SecurityGroup(_) => Kind::SecurityGroup,
            Spec::SecurityGroupRule(_) => Kind::SecurityGroupRule,
            Spec::AntiAffinityGroup(_) => Kind::AntiAffinityGroup,
            Spec::ElasticIp(_) => Kind::ElasticIp,
            Spec::InstancePool(_) => Kind::InstancePool,
            Spec::LoadBalancer(_) => Kind::LoadBalancer,
            Spec::LoadBalancerService(_) => Kind::LoadBalancerService,
        }
    }

    /// The API name (a rule's is its group's key).
    pub fn name(&self) -> &str {
        match self {
            Spec::SshKey(x) => &x.name,
            Spec::PrivateNetwork(x) => &x.name,
            Spec::SecurityGroup(x) => &x.name,
            Spec::SecurityGroupRule(x) => x.group.as_key().unwrap_or_default(),
            Spec::AntiAffinityGroup(x) => &x.name,
            Spec::ElasticIp(x) => &x.name,
            Spec::InstancePool(x) => &x.name,
            Spec::LoadBalancer(x) => &x.name,
            Spec::LoadBalancerService(x) => &x.name,
        }
    }

    /// The platform resources this one refers to: they are created before it and
    /// deleted after it.
    pub fn refs(&self) -> BTreeSet<&str> {
        let keys: Vec<&Ref> = match self {
            Spec::SecurityGroupRule(r) => {
                let mut v = vec![&r.group];
                if let Peer::Group(p) = &r.peer {
                    v.push(p);
                }
                v
            }
            Spec::InstancePool(p) => p
                .security_groups
                .iter()
                .chain(&p.elastic_ips)
                .chain(&p.anti_affinity_groups)
                .chain(&p.private_networks)
                .chain(p.ssh_key.iter())
                .collect(),
            Spec::LoadBalancerService(s) => vec![&s.load_balancer, &s.instance_pool],
            _ => Vec::new(),
        };
        keys.into_iter().filter_map(Ref::as_key).collect()
    }

    /// Whether this resource needs `key`: it refers to it, or its user-data still holds a
    /// placeholder for one of its attributes.
    pub fn needs(&self, key: &str) -> bool {
        let placeholder = || match self {
            Spec::InstancePool(p) => p
                .user_data
                .as_ref()
                .is_some_and(|u| u.0.contains(&format!("${{{key}."))),
            _ => false,
        };
        self.refs().contains(key) || placeholder()
    }

    /// What changes from `have` to `self` (both of one kind); with `have` `None`, every
    /// field of a creation.
    pub fn diff(&self, have: Option<&Spec>) -> Vec<FieldChange> {
        macro_rules! same_kind {
            ($($v:ident),*) => {
                match self {
                    $(Spec::$v(w) => match have {
                        None => w.diff(None),
                        Some(Spec::$v(h)) => w.diff(Some(h)),
                        Some(other) => vec![FieldChange {
                            field: "kind".into(),
                            old: Some(Value::String(other.kind().to_string())),
                            new: Some(Value::String(self.kind().to_string())),
                            forces_replacement: true,
                        }],
                    },)*
                }
            };
        }
        same_kind!(
            SshKey,
            PrivateNetwork,
            SecurityGroup,
            SecurityGroupRule,
            AntiAffinityGroup,
            ElasticIp,
            InstancePool,
            LoadBalancer,
            LoadBalancerService
        )
    }

    /// Fills in values that depend on other resources' attributes, where they exist.
    pub fn resolve(&mut self, attrs: &Attributes) {
        if let Spec::InstancePool(p) = self
            && let Some(u) = &mut p.user_data
        {
            u.resolve(attrs);
        }
    }

    /// The labels, for the kinds that carry them.
    pub fn labels(&self) -> Option<&Labels> {
        match self {
            Spec::ElasticIp(x) => Some(&x.labels),
            Spec::InstancePool(x) => Some(&x.labels),
            Spec::LoadBalancer(x) => Some(&x.labels),
            Spec::PrivateNetwork(x) => Some(&x.labels),
            _ => None,
        }
    }

    pub fn labels_mut(&mut self) -> Option<&mut Labels> {
        match self {
            Spec::ElasticIp(x) => Some(&mut x.labels),
            Spec::InstancePool(x) => Some(&mut x.labels),
            Spec::LoadBalancer(x) => Some(&mut x.labels),
            Spec::PrivateNetwork(x) => Some(&mut x.labels),
            _ => None,
        }
    }
}

/// A resource forge wants.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    /// Stable key within the platform (`pool-vault`); also the `forge-resource` label.
    pub key: String,
    pub spec: Spec,
}

/// A resource that exists and belongs to the platform.
#[derive(Debug, Clone, PartialEq)]
pub struct Actual {
    pub key: String,
    /// The API id (the name for SSH keys; `group-id/rule-id` for rules,
    /// `nlb-id/service-id` for services).
    pub id: String,
    pub spec: Spec,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn references_print_as_keys_or_ids() {
        assert_eq!(Ref::key("sg-a").to_string(), "@sg-a");
        assert_eq!(Ref::Foreign("1234".into()).to_string(), "id:1234");
        assert_eq!(
            serde_json::to_value(vec![Ref::key("x")]).unwrap(),
            serde_json::json!(["@x"])
        );
    }

    #[test]
    fn labels_compare_without_the_lockfile_label() {
        let mut a = Labels::forge("p", "base", "eip-vault");
        let b = a.clone();
        a.0.insert(LABEL_LOCKFILE.into(), "sha256-1".into());
        assert_eq!(a, b);
        a.0.insert(LABEL_STAGE.into(), "etcd".into());
        assert_ne!(a, b);
    }

    #[test]
    fn a_kind_mismatch_forces_replacement() {
        let g = Spec::AntiAffinityGroup(AntiAffinityGroup {
            name: "p-x".into(),
            description: None,
        });
        let k = Spec::SshKey(SshKey {
            name: "p-x".into(),
            fingerprint: "aa".into(),
            public_key: None,
        });
        let c = g.diff(Some(&k));
        assert_eq!(c.len(), 1);
        assert!(c[0].forces_replacement);
    }
}
