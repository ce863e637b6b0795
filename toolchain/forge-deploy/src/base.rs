//! The base stage (spec §4.1): the operator group, the Vault groups and rules, the Vault
//! anti-affinity group, the managed elastic IP, the SSH key and the Vault instance pool.
//!
//! Fixes of the original (Appendix A): operator access comes from `admin-networks` in
//! platform.toml, not from an address detected over plain HTTP (22); the pool depends on
//! the SSH key resource instead of naming it blindly (23); member settings are filled in
//! once per instance by `runcmd`, not at every boot by `bootcmd`.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::error::DeployError;
use crate::resource::{
    Desired, Kind, LABEL_LOCKFILE, LABEL_PLATFORM, LABEL_RESOURCE, LABEL_STAGE, at, flatten,
};
use forge_schema::platform::Platform;

/// The stage name, also the `forge-stage` label.
pub const STAGE: &str = "base";

/// Exoscale's limit on the base64-encoded user-data (API-NOTES §8).
pub const USER_DATA_LIMIT: usize = 32768;

/// What the base stage needs besides platform.toml.
#[derive(Debug, Clone)]
pub struct BaseInputs<'a> {
    pub platform: &'a Platform,
    /// The Vault image's template in the platform's zone (from the lockfile).
    pub vault_template: String,
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

fn labels(p: &Platform, key: &str) -> Value {
    json!({ LABEL_PLATFORM: p.name, LABEL_STAGE: STAGE, LABEL_RESOURCE: key })
}

fn named(key: &str, kind: Kind, name: String) -> Desired {
    Desired {
        key: key.to_string(),
        kind,
        name,
        fields: BTreeMap::new(),
        create_only: BTreeMap::new(),
        deps: Vec::new(),
    }
}

/// An ingress TCP rule on `group` from `peer` (a group key), port `port`.
fn rule(group: &str, port: u16, peer: &str, description: &str) -> Desired {
    let mut r = named(
        &rule_key(group, "ingress", "tcp", Some(port), Some(port), &at(peer)),
        Kind::SecurityGroupRule,
        group.to_string(),
    );
    r.fields.insert("group".into(), json!(at(group)));
    r.fields.insert("flow-direction".into(), json!("ingress"));
    r.fields.insert("protocol".into(), json!("tcp"));
    r.fields.insert("start-port".into(), json!(port));
    r.fields.insert("end-port".into(), json!(port));
    r.fields.insert("security-group".into(), json!(at(peer)));
    r.create_only
        .insert("description".into(), json!(description));
    r.deps = vec![group.to_string(), peer.to_string()];
    r.deps.dedup();
    r
}

/// The key of a rule: its group and everything that identifies it (rules have no update
/// call, so a changed rule is another rule).
pub fn rule_key(
    group: &str,
    direction: &str,
    protocol: &str,
    start: Option<u16>,
    end: Option<u16>,
    peer: &str,
) -> String {
    let ports = match (start, end) {
        (Some(s), Some(e)) if s == e => format!("-{s}"),
        (Some(s), Some(e)) => format!("-{s}-{e}"),
        _ => String::new(),
    };
    let peer = peer.trim_start_matches('@').replace(['/', ':', '.'], "_");
    format!(
        "rule-{}-{direction}-{protocol}{ports}-from-{peer}",
        group.trim_start_matches("sg-")
    )
}

/// The Vault members' user-data: cloud-config rendered by cloud-init's Jinja support
/// from the instance's own metadata, so one pool user-data serves every member. No
/// secrets: TLS material and keys arrive with the Vault stage.
pub fn vault_user_data(p: &Platform) -> String {
    let cluster = format!("{}-vault", p.name);
    let eip = attr_ref("eip-vault", "ip");
    let files =
        "/etc/vault/server-conf.d/vault.hcl /etc/vault/agent-conf.d/vault.hcl /etc/default/vault";
    format!(
        "## template: jinja\n\
#cloud-config\n\
# forge: Vault member of platform {name} (spec §4.1.4). Contains no secrets.\n\
manage_etc_hosts: false\n\
hostname: {{{{ v1.local_hostname }}}}\n\
fqdn: {{{{ v1.local_hostname }}}}.{domain}\n\
write_files:\n\
\x20 - path: /etc/vault/agent-conf.d/.role_id\n\
\x20   owner: vault:vault\n\
\x20   permissions: \"0600\"\n\
\x20   content: \"vault-server\\n\"\n\
\x20 - path: /etc/vault/agent-conf.d/.instance_id\n\
\x20   owner: vault:vault\n\
\x20   permissions: \"0600\"\n\
\x20   content: \"{{{{ v1.instance_id }}}}\\n\"\n\
runcmd:\n\
\x20 - [sed, -i, -e, \"s/CLUSTER_NAME/{cluster}/g\", -e, \"s/CLUSTER_EIP_ADDRESS/{eip}/g\", -e, \"s/CLUSTER_MEMBER_ADDRESS/{{{{ ds.meta_data.public_ipv4 }}}}/g\", -e, \"s/CLUSTER_MEMBER_NAME/{{{{ v1.local_hostname }}}}/g\", -e, \"s/CLUSTER_DOMAIN_NAME/{domain}/g\", {files}]\n",
        name = p.name,
        domain = p.domain,
        files = files.split(' ').collect::<Vec<_>>().join(", "),
    )
}

/// The base stage's resources.
pub fn desired(i: &BaseInputs) -> Result<Vec<Desired>, DeployError> {
    let p = i.platform;
    let n = |s: &str| format!("{}-{s}", p.name);
    let mut out = Vec::new();

    if let Some(key) = &i.ssh_public_key {
        let fingerprint = forge_exoscale::types::ssh_key_fingerprint(key).ok_or_else(|| {
            DeployError::Input(format!(
                "{}: not an OpenSSH public key (expected e.g. `ssh-ed25519 AAAA… comment`)",
                p.ssh_public_key.as_deref().unwrap_or("ssh-public-key")
            ))
        })?;
        let mut k = named("ssh-management", Kind::SshKey, n("management"));
        k.fields.insert("fingerprint".into(), json!(fingerprint));
        k.create_only.insert("public-key".into(), json!(key.trim()));
        out.push(k);
    }

    let mut operator = named("sg-operator", Kind::SecurityGroup, n("operator"));
    let mut sources = p.admin_networks.clone();
    sources.sort();
    sources.dedup();
    operator
        .fields
        .insert("external-sources".into(), json!(sources));
    operator.create_only.insert(
        "description".into(),
        json!(format!("Operators of {} (admin-networks)", p.name)),
    );
    out.push(operator);

    let mut server = named("sg-vault-server", Kind::SecurityGroup, n("vault-server"));
    server.fields.insert("external-sources".into(), json!([]));
    server.create_only.insert(
        "description".into(),
        json!(format!("Hashicorp Vault servers ({})", n("vault"))),
    );
    out.push(server);
    let mut clients = named("sg-vault-clients", Kind::SecurityGroup, n("vault-clients"));
    clients.fields.insert("external-sources".into(), json!([]));
    clients.create_only.insert(
        "description".into(),
        json!(format!("Hashicorp Vault clients ({})", n("vault"))),
    );
    out.push(clients);

    // Spec §4.1.3, all ingress TCP on <P>-vault-server.
    out.push(rule(
        "sg-vault-server",
        8200,
        "sg-vault-server",
        "Vault API between members",
    ));
    out.push(rule(
        "sg-vault-server",
        8201,
        "sg-vault-server",
        "Vault cluster (Raft) between members",
    ));
    out.push(rule(
        "sg-vault-server",
        22,
        "sg-operator",
        "SSH from the operators",
    ));
    out.push(rule(
        "sg-vault-server",
        8200,
        "sg-vault-clients",
        "Vault API from clients",
    ));
    out.push(rule(
        "sg-vault-server",
        8200,
        "sg-operator",
        "Vault API from the operators",
    ));

    if p.vault.anti_affinity {
        let mut g = named("aag-vault", Kind::AntiAffinityGroup, n("vault"));
        g.create_only.insert(
            "description".into(),
            json!(format!("Hashicorp Vault ({})", n("vault"))),
        );
        out.push(g);
    }

    let mut eip = named("eip-vault", Kind::ElasticIp, n("vault"));
    eip.fields.insert(
        "description".into(),
        json!(format!("Hashicorp Vault API endpoint {}", n("vault"))),
    );
    // Only the active, unsealed member answers 200 on /v1/sys/health, so the address follows
    // the leader. The health checker cannot be given the platform CA, hence skip-verify;
    // SNI still selects the cluster name.
    let hc = json!({
        "mode": "https", "port": 8200, "uri": "/v1/sys/health", "interval": 5, "timeout": 2,
        "strikes-ok": 2, "strikes-fail": 2, "tls-sni": n("vault"), "tls-skip-verify": true,
    });
    flatten("healthcheck", &hc, &mut eip.fields);
    eip.fields.insert("labels".into(), labels(p, "eip-vault"));
    out.push(eip);

    let type_id = i
        .instance_types
        .get(&p.vault.instance_type)
        .ok_or_else(|| {
            DeployError::Input(format!(
                "instance type `{}` (platform.toml [vault]) is not offered in {}",
                p.vault.instance_type, p.zone
            ))
        })?;
    let user_data = vault_user_data(p);
    check_user_data(&pool_name(p, "vault"), &user_data)?;
    let mut pool = named("pool-vault", Kind::InstancePool, n("vault"));
    let f = &mut pool.fields;
    f.insert(
        "description".into(),
        json!(format!("Hashicorp Vault ({})", n("vault"))),
    );
    f.insert("size".into(), json!(p.vault.size));
    f.insert("instance-type".into(), json!(type_id));
    f.insert("template".into(), json!(i.vault_template));
    f.insert("disk-size".into(), json!(p.vault.disk_size));
    f.insert("instance-prefix".into(), json!(n("vault")));
    f.insert("public-ip-assignment".into(), json!("dual"));
    f.insert("security-groups".into(), json!([at("sg-vault-server")]));
    f.insert("elastic-ips".into(), json!([at("eip-vault")]));
    let mut deps = vec!["sg-vault-server".to_string(), "eip-vault".to_string()];
    if p.vault.anti_affinity {
        f.insert("anti-affinity-groups".into(), json!([at("aag-vault")]));
        deps.push("aag-vault".into());
    } else {
        f.insert("anti-affinity-groups".into(), json!([]));
    }
    if i.ssh_public_key.is_some() {
        f.insert("ssh-key".into(), json!(at("ssh-management")));
        deps.push("ssh-management".into());
    } else {
        f.insert("ssh-key".into(), Value::Null);
    }
    f.insert("user-data".into(), json!(user_data));
    f.insert("labels".into(), labels(p, "pool-vault"));
    pool.deps = deps;
    out.push(pool);

    // The lockfile label goes on everything that has labels.
    for d in &mut out {
        if let Some(Value::Object(l)) = d.fields.get_mut("labels") {
            l.insert(LABEL_LOCKFILE.into(), json!(i.lockfile_label));
        }
    }
    Ok(out)
}

fn pool_name(p: &Platform, role: &str) -> String {
    format!("{}-{role}", p.name)
}

/// Refuses user-data over the API's limit once base64-encoded (placeholders for addresses
/// not known yet are longer than the addresses, so the check errs on the safe side).
pub fn check_user_data(pool: &str, text: &str) -> Result<(), DeployError> {
    let encoded = text.len().div_ceil(3) * 4;
    if encoded > USER_DATA_LIMIT {
        return Err(DeployError::Input(format!(
            "the user-data of pool {pool} is {encoded} characters in base64, over Exoscale's limit of {USER_DATA_LIMIT}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_data_limit() {
        assert!(check_user_data("p", &"x".repeat(24_576)).is_ok());
        let e = check_user_data("p", &"x".repeat(24_577))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.contains("32772 characters in base64, over Exoscale's limit of 32768"),
            "{e}"
        );
    }
}
