//! The etcd stage (spec §4.3.2, §6.6): the etcd anti-affinity group, the server and
//! clients security groups and their rules, the elastic IP with its health check and the
//! 3-member instance pool whose members create or join the cluster at first boot.
//!
//! The members hold no secret: user-data carries the Platform Root CA (public), the Vault
//! role name and the instance's own id; the member proves who it is to Vault (on Exoscale
//! through the auth plugin, which checks the instance's address and security group).
//! Clients get every member's address as well as the elastic IP
//! ([`crate::PoolHosts::urls`]), so one member's health check does not decide whether
//! etcd is reachable (defect 25).

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine as _;
use forge_schema::contract::{etcd as image, vault};
use forge_schema::platform::Platform;

use crate::base::attr_ref;
use crate::error::DeployError;
use crate::observe::Scope;
use crate::pools::{MemberPool, elastic_ip, health_check, security_group};
use crate::resource::{AntiAffinityGroup, Desired, Kind, Ref, Rule, Spec, Template};

/// The stage name, also the `forge-stage` label.
pub const STAGE: &str = "etcd";

/// The Vault role the members log in with (spec §4.4, §5.8).
pub const VAULT_ROLE: &str = "etcd-server";

/// What the etcd stage manages, and what of the base stage it uses.
pub const SCOPE: Scope = Scope {
    stage: STAGE,
    kinds: &[
        Kind::SecurityGroup,
        Kind::SecurityGroupRule,
        Kind::AntiAffinityGroup,
        Kind::ElasticIp,
        Kind::InstancePool,
    ],
    security_groups: &["etcd-server", "etcd-clients"],
    anti_affinity_groups: &["etcd"],
    ssh_keys: &[],
    adopt_pools: &["etcd"],
    uses: &[
        "sg-operator",
        "sg-vault-clients",
        "eip-vault",
        "ssh-management",
    ],
};

/// What the etcd stage needs besides platform.toml.
#[derive(Debug, Clone)]
pub struct EtcdInputs<'a> {
    pub platform: &'a Platform,
    /// The etcd image's template in the platform's zone (from the lockfile).
    pub template: Template,
    /// Instance type ids by `family.size`.
    pub instance_types: &'a BTreeMap<String, String>,
    /// The Platform Root CA (PEM) the members' agents trust Vault with; `None` in a plan
    /// before the Vault stage made it.
    pub root_ca_pem: Option<&'a str>,
    /// Whether the base stage registers the operator's SSH key.
    pub ssh_key: bool,
    pub lockfile_label: String,
}

/// Stands for the root CA in a plan made before the Vault stage (never resolved, so a
/// deploy cannot send it).
const ROOT_CA_UNKNOWN: &str = "${vault.root-ca}";

/// The members' user-data: Jinja cloud-config, so one text serves every member. It fills
/// in the image's placeholders ([`image::PLACEHOLDERS`]), waits (bounded) for Vault, and
/// runs the first-boot launcher, which starts the agent and creates or joins the cluster.
pub fn etcd_user_data(p: &Platform, root_ca_pem: Option<&str>) -> String {
    let vault_eip = attr_ref("eip-vault", "ip");
    let etcd_eip = attr_ref("eip-etcd", "ip");
    let ca = match root_ca_pem {
        Some(pem) => base64::engine::general_purpose::STANDARD.encode(pem.as_bytes()),
        None => ROOT_CA_UNKNOWN.to_string(),
    };
    let vault_addr = format!("https://{vault_eip}:{}", vault::API_PORT);
    let subst = |pairs: &[(&str, String)], files: &[&str]| {
        let mut line = String::from("  - [sed, -i");
        for (from, to) in pairs {
            line.push_str(&format!(", -e, \"s|{from}|{to}|g\""));
        }
        for f in files {
            line.push_str(&format!(", {f}"));
        }
        line.push_str("]\n");
        line
    };
    let member_ip = "{{ ds.meta_data.public_ipv4 }}".to_string();
    let agent = subst(
        &[
            ("VAULT_ADDRESS", vault_addr.clone()),
            ("CLUSTER_MEMBER_NAME", "{{ v1.local_hostname }}".into()),
            ("CLUSTER_DOMAIN_NAME", p.domain.clone()),
            ("CLUSTER_EIP_ADDRESS", etcd_eip),
            ("CLUSTER_MEMBER_ADDRESS", member_ip.clone()),
            ("EXOSCALE_INSTANCEPOOL_NAME", format!("{}-etcd", p.name)),
            ("EXOSCALE_CLUSTER_ZONE", p.zone.clone()),
            ("CLUSTER_NAME", format!("{}-etcd", p.name)),
        ],
        &[image::AGENT_CONFIG],
    );
    let member_files: Vec<&str> = image::PLACEHOLDERS
        .iter()
        .filter(|(f, _)| *f != image::AGENT_CONFIG)
        .map(|(f, _)| *f)
        .collect();
    let member = subst(&[("CLUSTER_MEMBER_ADDRESS", member_ip)], &member_files);
    format!(
        "## template: jinja\n\
#cloud-config\n\
# forge: etcd member of platform {name} (spec §4.3.2). Contains no secrets.\n\
manage_etc_hosts: false\n\
hostname: {{{{ v1.local_hostname }}}}\n\
fqdn: {{{{ v1.local_hostname }}}}.{domain}\n\
write_files:\n\
\x20 - path: {vault_ca}\n\
\x20   owner: root:root\n\
\x20   permissions: \"0644\"\n\
\x20   encoding: b64\n\
\x20   content: {ca}\n\
\x20 - path: {role_id}\n\
\x20   owner: etcd:etcd\n\
\x20   permissions: \"0600\"\n\
\x20   content: \"{role}\\n\"\n\
\x20 - path: {instance_id}\n\
\x20   owner: etcd:etcd\n\
\x20   permissions: \"0600\"\n\
\x20   content: \"{{{{ v1.instance_id }}}}\\n\"\n\
runcmd:\n\
{agent}{member}\
\x20 - [{wait}, \"{vault_addr}{health}\", --timeout, \"900\", --cacert, {vault_ca}]\n\
\x20 - [{init}]\n",
        name = p.name,
        domain = p.domain,
        vault_ca = image::VAULT_CA,
        role_id = image::AGENT_ROLE_ID,
        instance_id = image::AGENT_INSTANCE_ID,
        role = VAULT_ROLE,
        wait = image::WAIT_HTTP,
        health = vault::HEALTH_PATH,
        init = image::INIT,
    )
}

/// The etcd stage's resources.
pub fn desired(i: &EtcdInputs) -> Result<Vec<Desired>, DeployError> {
    let p = i.platform;
    let n = |s: &str| format!("{}-{s}", p.name);
    let mut out = Vec::new();
    let mut push = |key: &str, spec: Spec| {
        out.push(Desired {
            key: key.to_string(),
            spec,
        })
    };
    for (key, suffix, what) in [
        ("sg-etcd-server", "etcd-server", "servers"),
        ("sg-etcd-clients", "etcd-clients", "clients"),
    ] {
        let description = format!("etcd {what} ({})", n("etcd"));
        push(key, security_group(p, suffix, description));
    }
    // Spec §4.3.2, all ingress TCP on <P>-etcd-server.
    let (client, peer, health) = (image::CLIENT_PORT, image::PEER_PORT, image::HEALTH_PORT);
    for (ports, from, description) in [
        (
            (client, peer),
            "sg-etcd-server",
            "etcd clients and peers between members",
        ),
        (
            (health, client),
            "sg-etcd-clients",
            "etcd health and API from clients",
        ),
        ((22, 22), "sg-operator", "SSH from the operators"),
        (
            (client, client),
            "sg-operator",
            "etcd API from the operators",
        ),
    ] {
        let rule = Rule::tcp_range_from("sg-etcd-server", ports, from, description);
        push(&rule.key(), Spec::SecurityGroupRule(rule));
    }
    if p.etcd.anti_affinity {
        push(
            "aag-etcd",
            Spec::AntiAffinityGroup(AntiAffinityGroup {
                name: n("etcd"),
                description: Some(format!("Etcd ({})", n("etcd"))),
            }),
        );
    }
    // Any member that answers its own /health keeps the address; clients do not depend
    // on it alone (they list every member).
    out.push(elastic_ip(
        p,
        STAGE,
        "etcd",
        format!("etcd endpoint {}", n("etcd")),
        health_check("http", image::HEALTH_PORT, image::HEALTH_PATH),
        &i.lockfile_label,
    ));
    let pool = MemberPool {
        platform: p,
        stage: STAGE,
        role: "etcd",
        description: format!("Etcd ({})", n("etcd")),
        pool: &p.etcd,
        section: "[etcd]",
        template: i.template.clone(),
        instance_types: i.instance_types,
        security_groups: BTreeSet::from([Ref::key("sg-etcd-server"), Ref::key("sg-vault-clients")]),
        elastic_ips: BTreeSet::from([Ref::key("eip-etcd")]),
        anti_affinity: p.etcd.anti_affinity.then(|| Ref::key("aag-etcd")),
        ssh_key: i.ssh_key.then(|| Ref::key("ssh-management")),
        // etcd listens on the member's IPv4 address only (as the original).
        ipv6: false,
        user_data: etcd_user_data(p, i.root_ca_pem),
        lockfile_label: &i.lockfile_label,
    };
    out.push(pool.desired()?);
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use forge_schema::SourceFile;

    fn platform() -> Platform {
        Platform::parse(&SourceFile::new(
            "platform.toml",
            "[platform]\nname = \"paas\"\nzone = \"de-fra-1\"\ndomain = \"paas.example.net\"\nadmin-networks = [\"198.51.100.0/24\"]\n",
        ))
        .unwrap()
    }

    #[test]
    fn user_data_fills_every_placeholder_of_the_image_and_holds_no_secret() {
        let p = platform();
        let ca = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        let ud = etcd_user_data(&p, Some(ca));
        for (file, placeholders) in image::PLACEHOLDERS {
            assert!(ud.contains(file), "{file} is not filled in:\n{ud}");
            for ph in *placeholders {
                assert!(ud.contains(&format!("s|{ph}|")), "{ph} in {file}:\n{ud}");
            }
        }
        assert!(ud.contains("content: \"etcd-server\\n\""), "{ud}");
        assert!(ud.contains("\"s|CLUSTER_NAME|paas-etcd|g\""), "{ud}");
        assert!(
            ud.contains("https://${eip-vault.ip}:8200/v1/sys/health"),
            "{ud}"
        );
        assert!(ud.contains(&base64::engine::general_purpose::STANDARD.encode(ca)));
        assert!(!ud.contains("BEGIN") && !ud.to_lowercase().contains("private"));
        // CLUSTER_NAME last: no other placeholder is rewritten through it.
        let order: Vec<usize> = ["CLUSTER_MEMBER_NAME", "CLUSTER_NAME|"]
            .iter()
            .map(|s| ud.find(s).unwrap())
            .collect();
        assert!(order[0] < order[1]);
        // Without the root CA (a plan before the Vault stage) the text cannot be sent.
        let mut u = crate::resource::UserData(etcd_user_data(&p, None));
        u.resolve(&crate::resource::Attributes::new());
        assert!(!u.is_resolved());
    }

    #[test]
    fn the_stage_has_the_resources_of_the_spec() {
        let p = platform();
        let types = BTreeMap::from([(p.etcd.instance_type.clone(), "t-1".to_string())]);
        let want = desired(&EtcdInputs {
            platform: &p,
            template: Template::Id("tpl".into()),
            instance_types: &types,
            root_ca_pem: Some("ca"),
            ssh_key: false,
            lockfile_label: "sha256-0".into(),
        })
        .unwrap();
        let keys: Vec<&str> = want.iter().map(|d| d.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "sg-etcd-server",
                "sg-etcd-clients",
                "rule-etcd-server-ingress-tcp-2379-2380-from-sg-etcd-server",
                "rule-etcd-server-ingress-tcp-2378-2379-from-sg-etcd-clients",
                "rule-etcd-server-ingress-tcp-22-from-sg-operator",
                "rule-etcd-server-ingress-tcp-2379-from-sg-operator",
                "aag-etcd",
                "eip-etcd",
                "pool-etcd",
            ]
        );
        let Spec::InstancePool(pool) = &want[8].spec else {
            panic!()
        };
        assert_eq!(pool.size, 3);
        assert_eq!(
            pool.security_groups,
            BTreeSet::from([Ref::key("sg-etcd-server"), Ref::key("sg-vault-clients")])
        );
        // Every reference is to this stage's resources or to ones it uses.
        for d in &want {
            for r in d.spec.refs() {
                assert!(
                    keys.contains(&r) || SCOPE.uses.contains(&r),
                    "{} refers to {r}",
                    d.key
                );
            }
        }
    }
}
