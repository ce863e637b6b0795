//! SSH keys, anti-affinity groups and instance pools.

use std::collections::BTreeSet;

use serde::{Serialize, Serializer};

use super::{Attributes, Labels, Ref};
use crate::diff::{Diff, FieldChange};

/// An SSH key registered for the platform's instances.
#[derive(Debug, Clone, PartialEq)]
pub struct SshKey {
    pub name: String,
    /// The MD5 fingerprint Exoscale shows; a different key replaces the resource.
    pub fingerprint: String,
    /// The OpenSSH public key, sent at creation (the API never returns it).
    pub public_key: Option<String>,
}

impl SshKey {
    pub(crate) fn diff(&self, have: Option<&Self>) -> Vec<FieldChange> {
        let mut d = Diff::new(self, have);
        d.replacing("fingerprint", |k| &k.fingerprint);
        d.changes
    }
}

/// An anti-affinity group (nothing of it can change in place; its description is sent at
/// creation only).
#[derive(Debug, Clone, PartialEq)]
pub struct AntiAffinityGroup {
    pub name: String,
    pub description: Option<String>,
}

impl AntiAffinityGroup {
    pub(crate) fn diff(&self, _have: Option<&Self>) -> Vec<FieldChange> {
        Vec::new()
    }
}

/// The template an instance pool starts its members from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Template {
    Id(String),
    /// The image has no template in the zone yet (a plan before `forge publish`).
    Unpublished {
        image: String,
    },
}

impl Serialize for Template {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Template::Id(id) => s.serialize_str(id),
            Template::Unpublished { image } => s.serialize_str(&format!("${{publish.{image}}}")),
        }
    }
}

/// cloud-init user-data; `${key.attr}` stands for an attribute of another resource (an
/// elastic IP's address) until that resource exists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct UserData(pub String);

impl UserData {
    /// Replaces the placeholders whose resource exists.
    pub fn resolve(&mut self, attrs: &Attributes) {
        if !self.0.contains("${") {
            return;
        }
        for (key, map) in attrs {
            for (attr, val) in map {
                self.0 = self.0.replace(&format!("${{{key}.{attr}}}"), val);
            }
        }
    }

    /// Whether a placeholder is left.
    pub fn is_resolved(&self) -> bool {
        !self.0.contains("${")
    }
}

/// An instance pool.
#[derive(Debug, Clone, PartialEq)]
pub struct InstancePool {
    pub name: String,
    pub description: Option<String>,
    pub size: i64,
    /// Instance type id.
    pub instance_type: Option<String>,
    pub template: Option<Template>,
    pub disk_size: Option<i64>,
    pub instance_prefix: Option<String>,
    pub public_ip_assignment: Option<String>,
    pub anti_affinity_groups: BTreeSet<Ref>,
    pub elastic_ips: BTreeSet<Ref>,
    pub private_networks: BTreeSet<Ref>,
    pub security_groups: BTreeSet<Ref>,
    pub ssh_key: Option<Ref>,
    pub user_data: Option<UserData>,
    pub labels: Labels,
}

impl InstancePool {
    pub(crate) fn diff(&self, have: Option<&Self>) -> Vec<FieldChange> {
        let mut d = Diff::new(self, have);
        // Anti-affinity groups are fixed at creation.
        d.replacing("anti-affinity-groups", |p| &p.anti_affinity_groups);
        d.field("description", |p| &p.description);
        d.field("disk-size", |p| &p.disk_size);
        d.field("elastic-ips", |p| &p.elastic_ips);
        d.field("instance-prefix", |p| &p.instance_prefix);
        d.field("instance-type", |p| &p.instance_type);
        d.field("labels", |p| &p.labels);
        d.field("private-networks", |p| &p.private_networks);
        d.field("public-ip-assignment", |p| &p.public_ip_assignment);
        d.field("security-groups", |p| &p.security_groups);
        d.field("size", |p| &p.size);
        d.field("ssh-key", |p| &p.ssh_key);
        d.field("template", |p| &p.template);
        d.field("user-data", |p| &p.user_data);
        d.changes
    }

    /// Fields whose change applies to members created from then on only.
    pub const MEMBER_FIELDS: &'static [&'static str] =
        &["template", "instance-type", "disk-size", "user-data"];
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    pub(crate) fn pool() -> InstancePool {
        InstancePool {
            name: "p-vault".into(),
            description: Some("Vault".into()),
            size: 3,
            instance_type: Some("type-1".into()),
            template: Some(Template::Id("tpl-1".into())),
            disk_size: Some(10),
            instance_prefix: Some("p-vault".into()),
            public_ip_assignment: Some("dual".into()),
            anti_affinity_groups: BTreeSet::from([Ref::key("aag-vault")]),
            elastic_ips: BTreeSet::from([Ref::key("eip-vault")]),
            private_networks: BTreeSet::new(),
            security_groups: BTreeSet::from([Ref::key("sg-b"), Ref::key("sg-a")]),
            ssh_key: None,
            user_data: Some(UserData("#cloud-config\naddr: ${eip-vault.ip}\n".into())),
            labels: Labels::forge("p", "base", "pool-vault"),
        }
    }

    #[test]
    fn only_anti_affinity_groups_force_a_new_pool() {
        let have = pool();
        let mut want = pool();
        want.size = 5;
        want.template = Some(Template::Id("tpl-2".into()));
        let c = want.diff(Some(&have));
        assert_eq!(
            c.iter()
                .map(|c| (c.field.as_str(), c.forces_replacement))
                .collect::<Vec<_>>(),
            [("size", false), ("template", false)]
        );
        want.anti_affinity_groups.clear();
        let c = want.diff(Some(&have));
        assert!(
            c.iter()
                .any(|c| c.field == "anti-affinity-groups" && c.forces_replacement)
        );
    }

    #[test]
    fn references_compare_as_sets() {
        let have = pool();
        let mut want = pool();
        want.security_groups = BTreeSet::from([Ref::key("sg-a"), Ref::key("sg-b")]);
        assert!(want.diff(Some(&have)).is_empty());
    }

    #[test]
    fn user_data_waits_for_the_attribute_it_needs() {
        let mut ud = pool().user_data.unwrap();
        assert!(!ud.is_resolved());
        ud.resolve(&Attributes::new());
        assert!(!ud.is_resolved());
        let attrs = Attributes::from([(
            "eip-vault".to_string(),
            [("ip".to_string(), "203.0.113.7".to_string())].into(),
        )]);
        ud.resolve(&attrs);
        assert!(ud.is_resolved());
        assert_eq!(ud.0, "#cloud-config\naddr: 203.0.113.7\n");
    }

    #[test]
    fn an_unpublished_template_shows_as_a_placeholder() {
        let t = Template::Unpublished {
            image: "vault".into(),
        };
        assert_eq!(serde_json::to_value(t).unwrap(), "${publish.vault}");
    }
}
