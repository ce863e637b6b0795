//! The base stage (spec §4.1): the operator group, the Vault groups and rules, the Vault
//! anti-affinity group, the managed elastic IP, the SSH key and the Vault instance pool.
//!
//! Fixes of the original (Appendix A): operator access comes from `admin-networks` in
//! platform.toml, not from an address detected over plain HTTP (22); the pool depends on
//! the SSH key resource instead of naming it blindly (23); member settings are filled in
//! once per instance by `runcmd`, not at every boot by `bootcmd`.

use std::collections::{BTreeMap, BTreeSet};

use forge_exoscale::types::ElasticIpHealthcheck;
use forge_schema::platform::Platform;

use crate::error::DeployError;
use crate::observe::Scope;
use crate::pools::{MemberPool, elastic_ip, health_check, security_group};
use crate::resource::{
    AntiAffinityGroup, Desired, Kind, Ref, Rule, SecurityGroup, Spec, SshKey, Template,
};
use forge_schema::contract::vault as vault_image;

/// The stage name, also the `forge-stage` label.
pub const STAGE: &str = "base";

/// What the base stage manages.
pub const SCOPE: Scope = Scope {
    stage: STAGE,
    kinds: &[
        Kind::SshKey,
        Kind::SecurityGroup,
        Kind::SecurityGroupRule,
        Kind::AntiAffinityGroup,
        Kind::ElasticIp,
        Kind::InstancePool,
    ],
    security_groups: &["operator", "vault-server", "vault-clients"],
    anti_affinity_groups: &["vault"],
    ssh_keys: &["management"],
    adopt_pools: &["vault"],
    uses: &[],
};

/// What the base stage needs besides platform.toml.
#[derive(Debug, Clone)]
pub struct BaseInputs<'a> {
    pub platform: &'a Platform,
    /// The Vault image's template in the platform's zone (from the lockfile).
    pub vault_template: Template,
    /// Instance type ids by `family.size`.
    pub instance_types: &'a BTreeMap<String, String>,
    /// The operator's SSH public key (OpenSSH text).
    pub ssh_public_key: Option<String>,
    /// `sha256-<12 hex>` of the lockfile, for the informational label.
    pub lockfile_label: String,
}

/// Placeholder in desired values for an attribute of another resource, resolved when
/// that resource exists (`${eip-vault.ip}`).
pub fn attr_ref(key: &str, attr: &str) -> String {
    format!("${{{key}.{attr}}}")
}

/// The Vault members' user-data: cloud-config rendered by cloud-init's Jinja support
/// from the instance's own metadata, so one pool user-data serves every member. No
/// secrets: TLS material and keys arrive with the Vault stage. Which files hold the
/// placeholders is the image's contract ([`vault_image`]).
pub fn vault_user_data(p: &Platform) -> String {
    let cluster = format!("{}-vault", p.name);
    let eip = attr_ref("eip-vault", "ip");
    format!(
        "## template: jinja\n\
#cloud-config\n\
# forge: Vault member of platform {name} (spec §4.1.4). Contains no secrets.\n\
manage_etc_hosts: false\n\
hostname: {{{{ v1.local_hostname }}}}\n\
fqdn: {{{{ v1.local_hostname }}}}.{domain}\n\
write_files:\n\
\x20 - path: {role_id}\n\
\x20   owner: vault:vault\n\
\x20   permissions: \"0600\"\n\
\x20   content: \"vault-server\\n\"\n\
\x20 - path: {instance_id}\n\
\x20   owner: vault:vault\n\
\x20   permissions: \"0600\"\n\
\x20   content: \"{{{{ v1.instance_id }}}}\\n\"\n\
runcmd:\n\
\x20 - [sed, -i, -e, \"s/CLUSTER_NAME/{cluster}/g\", -e, \"s/CLUSTER_EIP_ADDRESS/{eip}/g\", -e, \"s/CLUSTER_MEMBER_ADDRESS/{{{{ ds.meta_data.public_ipv4 }}}}/g\", -e, \"s/CLUSTER_MEMBER_NAME/{{{{ v1.local_hostname }}}}/g\", -e, \"s/CLUSTER_DOMAIN_NAME/{domain}/g\", {files}]\n",
        name = p.name,
        domain = p.domain,
        role_id = vault_image::AGENT_ROLE_ID,
        instance_id = vault_image::AGENT_INSTANCE_ID,
        files = vault_image::PLACEHOLDER_FILES.join(", "),
    )
}

/// The base stage's resources.
pub fn desired(i: &BaseInputs) -> Result<Vec<Desired>, DeployError> {
    let p = i.platform;
    let n = |s: &str| format!("{}-{s}", p.name);
    let mut out = Vec::new();
    let mut push = |key: &str, spec: Spec| {
        out.push(Desired {
            key: key.to_string(),
            spec,
        })
    };

    if let Some(key) = &i.ssh_public_key {
        let fingerprint = forge_exoscale::types::ssh_key_fingerprint(key).ok_or_else(|| {
            DeployError::Input(format!(
                "{}: not an OpenSSH public key (expected e.g. `ssh-ed25519 AAAA… comment`)",
                p.ssh_public_key.as_deref().unwrap_or("ssh-public-key")
            ))
        })?;
        push(
            "ssh-management",
            Spec::SshKey(SshKey {
                name: n("management"),
                fingerprint,
                public_key: Some(key.trim().to_string()),
            }),
        );
    }

    push(
        "sg-operator",
        Spec::SecurityGroup(SecurityGroup {
            name: n("operator"),
            description: Some(format!("Operators of {} (admin-networks)", p.name)),
            external_sources: p.admin_networks.iter().cloned().collect(),
        }),
    );
    for (key, suffix, what) in [
        ("sg-vault-server", "vault-server", "servers"),
        ("sg-vault-clients", "vault-clients", "clients"),
    ] {
        let description = format!("Hashicorp Vault {what} ({})", n("vault"));
        push(key, security_group(p, suffix, description));
    }

    // Spec §4.1.3, all ingress TCP on <P>-vault-server.
    for (port, peer, description) in [
        (
            vault_image::API_PORT,
            "sg-vault-server",
            "Vault API between members",
        ),
        (
            vault_image::CLUSTER_PORT,
            "sg-vault-server",
            "Vault cluster (Raft) between members",
        ),
        (22, "sg-operator", "SSH from the operators"),
        (
            vault_image::API_PORT,
            "sg-vault-clients",
            "Vault API from clients",
        ),
        (
            vault_image::API_PORT,
            "sg-operator",
            "Vault API from the operators",
        ),
    ] {
        let rule = Rule::tcp_from("sg-vault-server", port, peer, description);
        push(&rule.key(), Spec::SecurityGroupRule(rule));
    }

    if p.vault.anti_affinity {
        push(
            "aag-vault",
            Spec::AntiAffinityGroup(AntiAffinityGroup {
                name: n("vault"),
                description: Some(format!("Hashicorp Vault ({})", n("vault"))),
            }),
        );
    }

    // Only the active, unsealed member answers 200 on /v1/sys/health, so the address follows
    // the leader. The health checker cannot be given the platform CA, hence skip-verify;
    // SNI still selects the cluster name.
    let healthcheck = ElasticIpHealthcheck {
        tls_sni: Some(n("vault")),
        tls_skip_verify: Some(true),
        ..health_check("https", vault_image::API_PORT, vault_image::HEALTH_PATH)
    };
    out.push(elastic_ip(
        p,
        STAGE,
        "vault",
        format!("Hashicorp Vault API endpoint {}", n("vault")),
        healthcheck,
        &i.lockfile_label,
    ));

    let pool = MemberPool {
        platform: p,
        stage: STAGE,
        role: "vault",
        description: format!("Hashicorp Vault ({})", n("vault")),
        pool: &p.vault,
        section: "[vault]",
        template: i.vault_template.clone(),
        instance_types: i.instance_types,
        security_groups: BTreeSet::from([Ref::key("sg-vault-server")]),
        elastic_ips: BTreeSet::from([Ref::key("eip-vault")]),
        anti_affinity: p.vault.anti_affinity.then(|| Ref::key("aag-vault")),
        ssh_key: i
            .ssh_public_key
            .as_ref()
            .map(|_| Ref::key("ssh-management")),
        ipv6: true,
        user_data: vault_user_data(p),
        lockfile_label: &i.lockfile_label,
    };
    out.push(pool.desired()?);
    Ok(out)
}
