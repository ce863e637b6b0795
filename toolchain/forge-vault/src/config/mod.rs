//! The Vault configuration of spec §5.3-5.8, declared as a list of [`Item`]s, compared
//! with what Vault holds ([`plan`]) and applied ([`apply`]).
//!
//! Only forge's own paths are read or written: the mounts below, the `platform-*` and
//! `forge-admin` policies, the `file/` audit device and the Exoscale plugin catalog
//! entries. A mount that exists with another type is a conflict forge reports and never
//! replaces (its data would be lost). Generated secrets (KV) are made once with the OS
//! CSPRNG and never shown; a plan says only that they will be generated.
//!
//! Fixed against the original (Appendix A): issuing URLs carry the port (#12), no trailing
//! space in the etcd CA's CN (#12), every role lists the names its consumer needs instead
//! of `allow_any_name` (#32), `system:masters` only on the two client roles that act as
//! cluster administrators (#32), the unused `cloud-controller-manager` and
//! `konnectivity-agent` roles and the issue path to a role that never existed are gone
//! (#12), the IAM roles list their operations (#33), a file audit device is on.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use futures_util::StreamExt as _;
use rand::{Rng, RngExt};
use serde_json::{Value, json};

use forge_schema::platform::Platform;

use crate::StageError;
use crate::pki::Ca;
use crate::secrets::Secret;

mod exoscale;
mod roles;

pub use exoscale::{AUTH_PLUGIN_SHA256, SECRETS_PLUGIN_SHA256, exoscale_items, iam_operations};
use roles::{role_body, role_specs};

mod compare;
mod write;

pub use compare::plan;
pub use write::apply;

/// Where the policies live in the project.
pub const POLICY_DIR: &str = "manifests/vault/policies";
/// forge's own policy.
pub const ADMIN_POLICY: &str = "forge-admin";

/// The path of the file audit device on the Vault servers.
pub const AUDIT_FILE: &str = "/var/log/vault/audit.log";

/// Reads `manifests/vault/policies/*.hcl` (name = file stem).
pub fn load_policies(project: &Path) -> Result<BTreeMap<String, String>, StageError> {
    let dir = project.join(POLICY_DIR);
    let io = |e| StageError::Io {
        path: dir.clone(),
        source: e,
    };
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(&dir).map_err(io)? {
        let p = e.map_err(io)?.path();
        if p.extension().and_then(|x| x.to_str()) != Some("hcl") {
            continue;
        }
        let Some(name) = p.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        let text = std::fs::read_to_string(&p).map_err(|e| StageError::Io {
            path: p.clone(),
            source: e,
        })?;
        out.insert(name.to_string(), text);
    }
    if !out.contains_key(ADMIN_POLICY) {
        return Err(StageError::Invalid(format!(
            "{}/{ADMIN_POLICY}.hcl is missing: forge needs it for its own token",
            dir.display()
        )));
    }
    Ok(out)
}

/// Exoscale credentials the plugins are configured with (spec §5.6, §5.8).
#[derive(Debug, Clone)]
pub struct ExoscaleCredentials {
    pub key: String,
    pub secret: Secret,
}

/// The inputs of the configuration.
#[derive(Debug, Clone)]
pub struct Inputs<'a> {
    pub platform: &'a Platform,
    /// The Platform Root CA imported into `pki/root`. When the secrets directory holds
    /// none and `pki/root` is empty, apply makes one (key written to `secrets`).
    pub root_ca: Option<&'a Ca>,
    pub secrets: &'a crate::secrets::SecretsDir,
    pub policies: &'a BTreeMap<String, String>,
    /// `Some` when the Vault servers are Exoscale instances running the image's plugins
    /// and credentials were given.
    pub exoscale: Option<ExoscaleCredentials>,
    /// Why the Exoscale plugins are left out, when they are.
    pub exoscale_skip: Option<String>,
}

/// How a PKI mount gets its CA.
#[derive(Debug, Clone, PartialEq)]
pub enum CaSource {
    /// The Platform Root CA, imported.
    Imported,
    /// An intermediate generated inside Vault, signed by `parent`.
    Intermediate { parent: String },
    /// A root generated inside Vault (key never leaves it).
    Internal,
    /// A root generated inside Vault with its key exported once into KV `kv_path`
    /// (the kubelet CA: the controller-manager signs kubelet CSRs with it).
    ExportedTo { kv_path: String },
}

/// Generated KV secrets (spec §5.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvSecret {
    ServiceAccount,
    SecretEncryption,
    BootstrapToken,
}

impl KvSecret {
    fn fields(self) -> &'static [&'static str] {
        match self {
            KvSecret::ServiceAccount => &["private_key", "public_key"],
            KvSecret::SecretEncryption => &["keys"],
            KvSecret::BootstrapToken => &["id", "secret"],
        }
    }

    /// Makes the secret with the OS CSPRNG.
    fn generate(self) -> Result<Value, StageError> {
        let mut rng = rand::rng();
        let alnum = |rng: &mut rand::rngs::ThreadRng, n: usize| -> String {
            const A: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
            (0..n)
                .map(|_| char::from(A[rng.random_range(0..A.len())]))
                .collect()
        };
        Ok(match self {
            KvSecret::ServiceAccount => {
                let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
                    .map_err(|e| StageError::Invalid(format!("service-account key: {e}")))?;
                json!({"private_key": key.serialize_pem(), "public_key": key.public_key_pem()})
            }
            KvSecret::SecretEncryption => {
                // aescbc/secretbox want 32 random bytes, base64 in the encryption config.
                let mut k = [0u8; 32];
                rng.fill_bytes(&mut k);
                json!({"keys": {"key-0": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, k)}})
            }
            KvSecret::BootstrapToken => {
                json!({"id": alnum(&mut rng, 6), "secret": alnum(&mut rng, 16)})
            }
        })
    }
}

/// One piece of declared configuration.
#[derive(Debug, Clone)]
pub enum Item {
    Mount {
        path: String,
        kind: String,
        description: String,
        default_ttl: u64,
        max_ttl: u64,
        options: Option<Value>,
    },
    AuthMount {
        path: String,
        kind: String,
        description: String,
    },
    Ca {
        mount: String,
        common_name: String,
        ttl: u64,
        source: CaSource,
    },
    Urls {
        mount: String,
        issuing: Vec<String>,
    },
    Role {
        mount: String,
        name: String,
        body: Value,
    },
    Kv {
        path: String,
        secret: KvSecret,
    },
    Policy {
        name: String,
        text: String,
    },
    Audit,
    /// A write whose body holds secrets (plugin configuration): compared on the fields
    /// Vault reads back, never shown.
    Config {
        path: String,
        body: Value,
        /// Fields Vault does not return (secrets): sent, not compared.
        write_only: Vec<&'static str>,
    },
    Plugin {
        kind: &'static str,
        name: String,
        command: String,
        sha256: String,
        args: Vec<String>,
    },
}

impl Item {
    /// How the item is named in a plan.
    pub fn address(&self) -> String {
        match self {
            Item::Mount { path, kind, .. } => format!("mount {path} ({kind})"),
            Item::AuthMount { path, kind, .. } => format!("auth {path} ({kind})"),
            Item::Ca { mount, source, .. } => match source {
                CaSource::Imported => format!("ca {mount} (Platform Root CA, imported)"),
                CaSource::Intermediate { parent } => {
                    format!("ca {mount} (intermediate signed by {parent})")
                }
                CaSource::Internal => format!("ca {mount} (root, key inside Vault)"),
                CaSource::ExportedTo { kv_path } => format!("ca {mount} (root, key in {kv_path})"),
            },
            Item::Urls { mount, .. } => format!("urls {mount}"),
            Item::Role { mount, name, .. } => format!("role {mount}/roles/{name}"),
            Item::Kv { path, .. } => format!("secret {path}"),
            Item::Policy { name, .. } => format!("policy {name}"),
            Item::Audit => "audit file/".into(),
            Item::Config { path, .. } => format!("config {path}"),
            Item::Plugin { kind, name, .. } => format!("plugin {kind}/{name}"),
        }
    }
}

pub(crate) const HOUR: u64 = 3600;

/// Subject fields of a role or CA, in Vault's list form.
pub(crate) fn subject_fields(p: &Platform) -> serde_json::Map<String, Value> {
    let s = &p.pki.subject;
    let list = |v: &Option<String>| json!(v.iter().cloned().collect::<Vec<_>>());
    let mut m = serde_json::Map::new();
    m.insert("country".into(), list(&s.country));
    m.insert("province".into(), list(&s.province));
    m.insert("locality".into(), list(&s.locality));
    m.insert("street_address".into(), list(&s.street_address));
    m.insert("postal_code".into(), list(&s.postal_code));
    m
}

/// The declared configuration, in the order it is applied.
pub fn desired(inp: &Inputs<'_>) -> Vec<Item> {
    let p = inp.platform;
    let ca_ttl = p.pki.ca_hours * HOUR;
    let ica_ttl = p.pki.ica_hours * HOUR;
    let root_ttl = p.pki.root_ca_hours * HOUR;
    let cert_ttl = p.pki.cert_hours * HOUR;
    let kv_mount = "kv/platform/kubernetes";
    // (mount, description, TTL, CA). A CA is named `<P> <description>`, the root as the
    // root CA forge made.
    let pki_mounts: Vec<(&str, &str, u64, CaSource)> = vec![
        ("pki/root", "Platform CA", root_ttl, CaSource::Imported),
        (
            "pki/platform/vault",
            "Vault ICA",
            ica_ttl,
            CaSource::Intermediate {
                parent: "pki/root".into(),
            },
        ),
        (
            "pki/platform/kubernetes/etcd",
            "Kubernetes Store (etcd) CA",
            ca_ttl,
            CaSource::Internal,
        ),
        (
            "pki/platform/kubernetes/control-plane",
            "Kubernetes Control-Plane CA",
            ca_ttl,
            CaSource::Internal,
        ),
        (
            "pki/platform/kubernetes/kubelet",
            "Kubernetes Kubelets CA",
            ca_ttl,
            CaSource::ExportedTo {
                kv_path: format!("{kv_mount}/kubelet-pki"),
            },
        ),
        (
            "pki/platform/kubernetes/aggregation-layer",
            "Kubernetes Aggregation-Layer CA",
            ca_ttl,
            CaSource::Internal,
        ),
        (
            "pki/platform/kubernetes/client",
            "Kubernetes Clients CA",
            ca_ttl,
            CaSource::Internal,
        ),
    ];
    let mut items = Vec::new();
    for (path, desc, ttl, _) in &pki_mounts {
        items.push(Item::Mount {
            path: (*path).into(),
            kind: "pki".into(),
            description: (*desc).into(),
            default_ttl: *ttl,
            max_ttl: *ttl,
            options: None,
        });
    }
    items.push(Item::Mount {
        path: kv_mount.into(),
        kind: "kv".into(),
        description: "Kubernetes Secrets".into(),
        default_ttl: cert_ttl,
        max_ttl: cert_ttl,
        options: Some(json!({"version": "1"})),
    });
    // The kubelet CA's key goes to KV when the CA is made, so KV comes first.
    for (path, desc, ttl, source) in pki_mounts {
        let common_name = match source {
            CaSource::Imported => crate::names::root_ca_cn(p),
            _ => format!("{} {desc}", p.name),
        };
        items.push(Item::Ca {
            mount: path.into(),
            common_name,
            ttl,
            source,
        });
        items.push(Item::Urls {
            mount: path.into(),
            issuing: vec![format!("https://vault.{}:8200/v1/{path}/ca", p.domain)],
        });
    }
    for r in role_specs(p) {
        items.push(Item::Role {
            mount: r.mount.into(),
            name: r.name.into(),
            body: role_body(p, &r),
        });
    }
    for (name, secret) in [
        ("service-account", KvSecret::ServiceAccount),
        ("secret-encryption", KvSecret::SecretEncryption),
        ("kubelet-bootstrap-token", KvSecret::BootstrapToken),
    ] {
        items.push(Item::Kv {
            path: format!("{kv_mount}/{name}"),
            secret,
        });
    }
    for (name, text) in inp.policies {
        items.push(Item::Policy {
            name: name.clone(),
            text: text.clone(),
        });
    }
    items.push(Item::Audit);
    if let Some(creds) = &inp.exoscale {
        items.extend(exoscale_items(p, creds));
    }
    items
}

/// What a plan does to an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    Create,
    Update,
    Replace,
    /// Exists in a form forge will not change: apply stops before touching anything.
    Conflict,
}

impl Action {
    pub fn sign(self) -> &'static str {
        match self {
            Action::Create => "+",
            Action::Update => "~",
            Action::Replace => "-/+",
            Action::Conflict => "!",
        }
    }
}

/// One difference.
#[derive(Debug, Clone)]
pub struct Change {
    pub item: Item,
    pub action: Action,
    /// Field by field (`ttl: 3600 -> 345600`); secrets are never shown.
    pub details: Vec<String>,
}

/// The differences between the declared and the actual configuration.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub changes: Vec<Change>,
    /// Things left out, and why.
    pub notes: Vec<String>,
    pub unchanged: usize,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    pub fn render(&self) -> String {
        let mut s = String::new();
        for n in &self.notes {
            let _ = writeln!(s, "note: {n}");
        }
        for c in &self.changes {
            let _ = writeln!(s, "  {} {}", c.action.sign(), c.item.address());
            for d in &c.details {
                let _ = writeln!(s, "      {d}");
            }
        }
        let count = |a| self.changes.iter().filter(|c| c.action == a).count();
        let _ = writeln!(
            s,
            "vault-config: {} to create, {} to update, {} to replace, {} in conflict, {} unchanged.",
            count(Action::Create),
            count(Action::Update),
            count(Action::Replace),
            count(Action::Conflict),
            self.unchanged
        );
        s
    }

    pub fn to_json(&self) -> Value {
        json!({
            "stage": "vault-config",
            "changes": self.changes.iter().map(|c| json!({
                "address": c.item.address(),
                "action": c.action,
                "details": c.details,
            })).collect::<Vec<_>>(),
            "notes": self.notes,
            "unchanged": self.unchanged,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::compare::field_diffs;
    use super::*;

    #[test]
    fn generated_secrets_have_the_documented_shape() {
        let t = KvSecret::BootstrapToken.generate().unwrap();
        let id = t["id"].as_str().unwrap();
        let secret = t["secret"].as_str().unwrap();
        assert_eq!(id.len(), 6);
        assert_eq!(secret.len(), 16);
        assert!(
            id.chars()
                .chain(secret.chars())
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        );
        let a = KvSecret::SecretEncryption.generate().unwrap();
        let b = KvSecret::SecretEncryption.generate().unwrap();
        assert_ne!(a, b);
        let sa = KvSecret::ServiceAccount.generate().unwrap();
        assert!(sa["private_key"].as_str().unwrap().contains("PRIVATE KEY"));
        assert!(sa["public_key"].as_str().unwrap().contains("PUBLIC KEY"));
    }

    #[test]
    fn field_diffs_ignore_unknown_and_write_only_fields() {
        let want = json!({"ttl": 3600, "a": [1], "secret": "s", "new_field": true});
        let have = json!({"ttl": "3600", "a": [2]});
        assert_eq!(
            field_diffs(&want, &have, &["secret"]),
            vec!["a: [2] -> [1]"]
        );
    }
}
