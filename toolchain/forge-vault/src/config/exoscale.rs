//! The Exoscale plugins (spec §5.6, §5.8): catalog entries, the IAM secrets engine with
//! an operation list per role, the auth backend and its roles.

use serde_json::json;

use forge_schema::platform::Platform;

use super::{ExoscaleCredentials, HOUR, Item};

/// Exoscale IAM operations each dynamic key may call (Appendix A #33: the original
/// granted everything with `operations = []`).
pub fn iam_operations(role: &str) -> &'static [&'static str] {
    match role {
        // The etcd membership helper (spec §6.6): its pool, its members, their addresses.
        "etcd-instance-pool" => &["get-instance-pool", "list-instances", "get-instance"],
        // The cloud controller manager: nodes and the load balancers of Services.
        "cloud-controller-manager" => &[
            "get-instance",
            "list-instances",
            "get-instance-type",
            "list-instance-types",
            "get-instance-pool",
            "list-instance-pools",
            "list-load-balancers",
            "get-load-balancer",
            "create-load-balancer",
            "update-load-balancer",
            "delete-load-balancer",
            "add-service-to-load-balancer",
            "update-load-balancer-service",
            "delete-load-balancer-service",
            "get-operation",
            "list-zones",
        ],
        // The cluster autoscaler: scale and evict its node pools.
        "cluster-autoscaler" => &[
            "get-instance-pool",
            "list-instance-pools",
            "scale-instance-pool",
            "evict-instance-pool-members",
            "get-instance",
            "list-instances",
            "get-instance-type",
            "get-operation",
        ],
        _ => &[],
    }
}

/// Binary sha256 of the plugins the Vault image installs (spec §3.0.4).
pub const SECRETS_PLUGIN_SHA256: &str =
    "12a018667c5e820b447821624b15e7d57c4dfd16603e3ee371537cd1e52bb8f3";
pub const AUTH_PLUGIN_SHA256: &str =
    "380c1f0b44c676c10a7895b9c3b559dee6797d5583d606b77f131ce140036e37";

/// The Exoscale plugins' registration, mounts and configuration (spec §5.6, §5.8).
pub fn exoscale_items(p: &Platform, creds: &ExoscaleCredentials) -> Vec<Item> {
    let n = &p.name;
    let args = vec!["-ca-cert=/etc/vault/tls/ca.pem".to_string()];
    let mut items = vec![
        Item::Plugin {
            kind: "secret",
            name: "exoscale".into(),
            command: "vault-plugin-secrets-exoscale".into(),
            sha256: SECRETS_PLUGIN_SHA256.into(),
            args: args.clone(),
        },
        Item::Plugin {
            kind: "auth",
            name: "exoscale".into(),
            command: "vault-plugin-auth-exoscale".into(),
            sha256: AUTH_PLUGIN_SHA256.into(),
            args,
        },
        Item::Mount {
            path: "iam/exoscale".into(),
            kind: "exoscale".into(),
            description: "Exoscale IAM".into(),
            default_ttl: 24 * HOUR,
            max_ttl: 48 * HOUR,
            options: None,
        },
        Item::AuthMount {
            path: "exoscale".into(),
            kind: "exoscale".into(),
            description: "Exoscale instances".into(),
        },
        Item::Config {
            path: "iam/exoscale/config/root".into(),
            body: json!({
                "api_environment": "api",
                "root_api_key": creds.key,
                "root_api_secret": creds.secret.expose(),
                "zone": p.zone,
            }),
            write_only: vec!["root_api_secret"],
        },
        Item::Config {
            path: "iam/exoscale/config/lease".into(),
            body: json!({"ttl": 24 * HOUR, "max_ttl": 48 * HOUR}),
            write_only: vec![],
        },
        Item::Config {
            path: "auth/exoscale/config".into(),
            body: json!({
                "api_environment": "api",
                "api_key": creds.key,
                "api_secret": creds.secret.expose(),
                "approle_mode": true,
                "zone": p.zone,
            }),
            write_only: vec!["api_secret"],
        },
    ];
    for role in [
        "etcd-instance-pool",
        "cloud-controller-manager",
        "cluster-autoscaler",
    ] {
        items.push(Item::Config {
            path: format!("iam/exoscale/role/{role}"),
            body: json!({"operations": iam_operations(role), "renewable": true}),
            write_only: vec![],
        });
    }
    for (role, policy, group) in [
        ("vault-server", "platform-vault-server", "vault-server"),
        ("etcd-server", "platform-kubernetes-etcd", "etcd-server"),
        (
            "kubernetes-control-plane",
            "platform-kubernetes-control-plane",
            "kubernetes-controllers",
        ),
    ] {
        items.push(Item::Config {
            path: format!("auth/exoscale/role/{role}"),
            body: json!({
                "token_policies": ["default", policy],
                "validator": format!(
                    "client_ip == instance_public_ip && \"{n}-{group}\" in instance_security_group_names"
                ),
            }),
            write_only: vec![],
        });
    }
    items
}
