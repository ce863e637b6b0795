//! The PKI roles of spec §5.4 with least privilege (defect 32): each role lists the names
//! its consumer really needs; docs/vault.md explains each list.

use serde_json::{Value, json};

use forge_schema::platform::Platform;

use super::{HOUR, subject_fields};

/// The consumers' names, by role (docs/vault.md explains each list).
pub(super) struct RoleSpec {
    pub(super) mount: &'static str,
    pub(super) name: &'static str,
    server: bool,
    client: bool,
    names: Vec<String>,
    /// Names that are not DNS names (`system:...`): hostname checks off.
    not_hostnames: bool,
    ip_sans: bool,
    localhost: bool,
    organization: Option<&'static str>,
    ou: &'static str,
}

pub(super) fn role_specs(p: &Platform) -> Vec<RoleSpec> {
    let n = &p.name;
    let d = &p.domain;
    let cd = &p.kubernetes.cluster_domain;
    let member = |pool: &str| -> Vec<String> {
        vec![
            format!("{n}-{pool}"),
            format!("{n}-{pool}.{d}"),
            format!("{n}-{pool}-*"),
            format!("{n}-{pool}-*.{d}"),
        ]
    };
    let kube_member = || -> Vec<String> {
        vec![
            format!("{n}-kubernetes"),
            format!("{n}-kubernetes.{cd}"),
            format!("{n}-kubernetes-*"),
            format!("{n}-kubernetes-*.{cd}"),
        ]
    };
    let cp = "pki/platform/kubernetes/control-plane";
    let role = |mount, name, server, client, names: Vec<String>| RoleSpec {
        mount,
        name,
        server,
        client,
        names,
        not_hostnames: false,
        ip_sans: false,
        localhost: false,
        organization: None,
        ou: "kubernetes",
    };
    let system = |name, cn: &str, org: Option<&'static str>| RoleSpec {
        not_hostnames: true,
        organization: org,
        ..role(cp, name, false, true, vec![cn.to_string()])
    };
    let mut apiserver_names = kube_member();
    apiserver_names
        .extend(["kubernetes", "kubernetes.default", "kubernetes.default.svc"].map(String::from));
    apiserver_names.push(format!("kubernetes.default.svc.{cd}"));
    vec![
        RoleSpec {
            ip_sans: true,
            ou: "vault",
            ..role("pki/platform/vault", "server", true, false, member("vault"))
        },
        RoleSpec {
            ip_sans: true,
            localhost: true,
            ..role(
                "pki/platform/kubernetes/etcd",
                "server",
                true,
                true,
                member("etcd"),
            )
        },
        RoleSpec {
            ip_sans: true,
            ..role(
                "pki/platform/kubernetes/etcd",
                "apiserver",
                false,
                true,
                vec![format!("{n}-kubernetes")],
            )
        },
        RoleSpec {
            ip_sans: true,
            ..role(cp, "apiserver", true, false, apiserver_names)
        },
        system(
            "controller-manager",
            "system:kube-controller-manager",
            Some("system:kube-controller-manager"),
        ),
        system(
            "scheduler",
            "system:kube-scheduler",
            Some("system:kube-scheduler"),
        ),
        system(
            "konnectivity",
            "system:konnectivity-server",
            Some("system:kube-konnectivity-server"),
        ),
        role(
            cp,
            "konnectivity-apiserver-egress",
            false,
            true,
            vec!["kube-apiserver-konnectivity-client".into()],
        ),
        RoleSpec {
            ip_sans: true,
            localhost: true,
            organization: Some("konnectivity"),
            ..role(
                cp,
                "konnectivity-server-apiserver",
                true,
                false,
                vec!["konnectivity".into()],
            )
        },
        RoleSpec {
            ip_sans: true,
            localhost: true,
            organization: Some("konnectivity"),
            ..role(
                cp,
                "konnectivity-server-cluster",
                true,
                false,
                vec!["konnectivity".into()],
            )
        },
        role(
            "pki/platform/kubernetes/aggregation-layer",
            "metrics-server",
            true,
            false,
            vec![
                "metrics-server.kube-system.svc".into(),
                format!("metrics-server.kube-system.svc.{cd}"),
            ],
        ),
        RoleSpec {
            ip_sans: true,
            ..role(
                "pki/platform/kubernetes/aggregation-layer",
                "apiserver",
                false,
                true,
                kube_member(),
            )
        },
        RoleSpec {
            ip_sans: true,
            organization: Some("system:masters"),
            ..role(
                "pki/platform/kubernetes/kubelet",
                "apiserver",
                false,
                true,
                kube_member(),
            )
        },
        RoleSpec {
            not_hostnames: true,
            organization: Some("system:masters"),
            ..role(
                "pki/platform/kubernetes/client",
                "operator-admin",
                false,
                true,
                vec!["cluster-admin".into()],
            )
        },
    ]
}

pub(super) fn role_body(p: &Platform, r: &RoleSpec) -> Value {
    let (key_type, key_bits) = p.pki.leaf_key.vault_key();
    let ttl = p.pki.cert_hours * HOUR;
    let org = r
        .organization
        .map(str::to_string)
        .or_else(|| p.pki.subject.organization.clone());
    let globs = r.names.iter().any(|n| n.contains('*'));
    let mut b = json!({
        "ttl": ttl,
        "max_ttl": ttl,
        "key_type": key_type,
        "key_bits": key_bits,
        "key_usage": ["DigitalSignature", "KeyAgreement", "KeyEncipherment"],
        "server_flag": r.server,
        "client_flag": r.client,
        "allowed_domains": r.names,
        "allow_bare_domains": true,
        "allow_subdomains": false,
        "allow_glob_domains": globs,
        "allow_wildcard_certificates": false,
        "allow_any_name": false,
        "allow_localhost": r.localhost,
        "allow_ip_sans": r.ip_sans,
        "enforce_hostnames": !r.not_hostnames,
        "organization": org.into_iter().collect::<Vec<_>>(),
        "ou": [r.ou],
        "no_store": false,
    });
    // `system:` names are not hostnames: `enforce_hostnames = false` lets them through
    // while `allowed_domains` still limits the CN to the listed names. (OpenBao's
    // `cn_validations = ["disabled"]` would skip that check as well, so it stays at its
    // default.)
    if let Some(o) = b.as_object_mut() {
        o.extend(subject_fields(p));
    }
    b
}
